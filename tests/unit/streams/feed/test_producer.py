"""Where `retention produce` / `replay` send a line (streams/feed/producer.py): each
input contract to its own topic (README "Topics and schemas")."""

from __future__ import annotations

import orjson
import pytest

from streams.config import Config
from streams.feed.producer import route

CONFIG = Config(topic_prefix="shop.")


@pytest.mark.parametrize(
    ("schema", "topic"),
    [
        ("purchase/1", "shop.retention.purchases"),
        ("purchase/2", "shop.retention.purchases"),
        ("session/1", "shop.retention.sessions"),
        ("consent/1", "shop.retention.consents"),
        ("signup/1", "shop.retention.signups"),
        ("product_view/1", "shop.retention.product_views"),
        ("cart/1", "shop.retention.carts"),
        ("order_cancelled/1", "shop.retention.order_cancellations"),
    ],
)
def test_a_line_goes_to_its_contracts_topic_keyed_by_its_customer(schema: str, topic: str) -> None:
    line = orjson.dumps({"schema": schema, "customer_id": "cus_1"})
    assert route(CONFIG, line, None) == (topic, b"cus_1")
    assert topic in CONFIG.topics.inputs()


def test_unknown_and_unreadable_lines_go_to_purchases_to_become_dead_letters_there() -> None:
    for line in (b"{not json", orjson.dumps({"schema": "cart/2", "customer_id": "c"})):
        assert route(CONFIG, line, None)[0] == "shop.retention.purchases"
    # --topic wins over the schema
    cart = orjson.dumps({"schema": "cart/1", "customer_id": "c"})
    assert route(CONFIG, cart, "shop.retention.sessions")[0] == "shop.retention.sessions"
