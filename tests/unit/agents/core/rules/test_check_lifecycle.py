"""The lifecycle's rule parts, checked (docs/lifecycle.md "Rules"): the signup,
last_view and cart anchors, order and anniversary steps, each problem located."""

from __future__ import annotations

from agents.core.rules import builtin_text, default_text, load_rules
from agents.core.rules.anchors import Cart, LastView, Signup
from agents.core.rules.check import check_rules
from agents.core.rules.model import Problem
from agents.core.rules.steps import Anniversary, OrderMilestone


def rule(anchor: str, steps: str, extra: str = "") -> str:
    return (
        f'format = 1\n\n[[rule]]\nname = "r"\npriority = 7\nanchor = {anchor}\n'
        f"steps = {steps}\n{extra}"
    )


def problems(text: str) -> list[Problem]:
    found = check_rules(text)
    assert found, "the file was accepted"
    return found


def test_the_new_anchors_and_milestone_steps_load() -> None:
    signup = load_rules(rule('"signup"', '["PT24H", "PT72H"]')).rules[0]
    view = load_rules(rule('"last_view"', '["PT4H"]', 'cancel_on = ["purchase"]\n')).rules[0]
    cart = load_rules(rule('{ kind = "cart", exit = "any_product" }', '["PT1H"]')).rules[0]
    orders = load_rules(rule('"first_order"', "[{ order = 3 }, { order = 5 }]")).rules[0]
    years = load_rules(rule('"first_order"', "[{ anniversary = 1 }, { anniversary = 2 }]")).rules[0]
    assert signup.anchor == Signup() and view.anchor == LastView()
    assert cart.anchor == Cart("any_product")
    assert orders.steps == (OrderMilestone(3), OrderMilestone(5))
    assert years.steps == (Anniversary(1), Anniversary(2))
    # The exit is part of what the rule does: a different version.
    plain = load_rules(rule('"cart"', '["PT1H"]')).rules[0]
    assert plain.anchor == Cart() and plain.version != cart.version
    assert cart.anchor.canonical() == {"kind": "cart", "exit": "any_product"}
    assert plain.anchor.canonical() == {"kind": "cart"}


def test_min_orders_on_signup_and_an_unknown_cart_exit_are_located() -> None:
    (found,) = problems(rule('{ kind = "signup", min_orders = 1 }', '["PT24H"]'))
    assert found.path == 'rule "r".anchor.min_orders' and found.line == 6
    (found,) = problems(rule('{ kind = "cart", exit = "basket" }', '["PT1H"]'))
    assert found.path == 'rule "r".anchor.exit' and "any_product" in found.message


def test_purchase_cannot_cancel_a_cart_ladder_but_session_can() -> None:
    (found,) = problems(rule('"cart"', '["PT1H"]', 'cancel_on = ["purchase"]\n'))
    assert found.path == 'rule "r".cancel_on' and found.line == 8
    assert "another cart" in found.message
    assert not check_rules(rule('"cart"', '["PT1H"]', 'cancel_on = ["session"]\n'))


def test_a_cart_rule_cannot_be_pinned() -> None:
    (found,) = problems(rule('"cart"', '["PT1H"]', 'on_change = "pin"\n'))
    assert found.path == 'rule "r".on_change' and found.line == 8


def test_milestone_steps_need_first_order_increasing_unmixed_in_range() -> None:
    (found,) = problems(rule('"last_order"', "[{ order = 3 }]"))
    assert found.path == 'rule "r".anchor' and "first_order" in found.message
    (found,) = problems(rule('"first_order"', "[{ order = 3 }]", 'cancel_on = ["purchase"]\n'))
    assert found.path == 'rule "r".cancel_on'
    found_all = problems(rule('"first_order"', '[{ order = 5 }, { order = 5 }, "P7D"]'))
    assert [p.path for p in found_all] == ['rule "r".steps[2].order', 'rule "r".steps[3]']
    (found,) = problems(rule('"first_order"', "[{ order = 3 }, { anniversary = 1 }]"))
    assert found.path == 'rule "r".steps[2]' and "mixed" in found.message
    bad = problems(rule('"first_order"', "[{ anniversary = 0 }, { anniversary = 11 }]"))
    assert [p.path for p in bad] == [
        'rule "r".steps[1].anniversary',
        'rule "r".steps[2].anniversary',
    ]
    (found,) = problems(rule('"first_order"', "[{ order = 1001 }]"))
    assert "1 to 1000" in found.message
    (found,) = problems(rule('"first_order"', "[{ order = 3, every = 2 }]"))
    assert found.path == 'rule "r".steps[1].every'


def test_lifecycle_toml_is_the_default_file_plus_five_rules() -> None:
    lifecycle = load_rules(builtin_text("lifecycle"))
    default = load_rules(default_text())
    assert builtin_text("default") == default_text()
    by_name = {r.name: r for r in lifecycle.rules}
    for rule_ in default.rules:
        assert by_name[rule_.name].version == rule_.version  # the default rules unchanged
    assert lifecycle.guardrails == default.guardrails and lifecycle.lifecycle == default.lifecycle
    new = {r.name: r for r in lifecycle.rules if default.rule(r.name) is None}
    assert {n: (r.priority, r.anchor.kind) for n, r in new.items()} == {
        "welcome": (5, "signup"),
        "browse_abandonment": (6, "last_view"),
        "cart_abandonment": (4, "cart"),
        "order_milestone": (40, "first_order"),
        "anniversary": (45, "first_order"),
    }
    assert [s.label() for s in new["order_milestone"].steps] == ["order 3", "order 5", "order 10"]
    assert [s.label() for s in new["anniversary"].steps] == ["1 year", "2 years", "3 years"]
    assert new["browse_abandonment"].cancel_on == ("purchase",)
    assert not new["order_milestone"].transactional
