"""The topics a deployment reads and writes, and Kafka's limit on their names."""

from __future__ import annotations

from dataclasses import dataclass, fields

# Kafka's limit on a topic name; the prefix goes before the longest name we use.
MAX_TOPIC_NAME = 249


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names; every one can be renamed, and a prefix isolates whole deployments."""

    purchases: str = "retention.purchases"  # purchase/1 and purchase/2
    sessions: str = "retention.sessions"
    consents: str = "retention.consents"
    # The lifecycle's inputs (docs/lifecycle.md "Inputs").
    signups: str = "retention.signups"
    product_views: str = "retention.product_views"
    carts: str = "retention.carts"
    order_cancellations: str = "retention.order_cancellations"
    nudges: str = "retention.nudges"
    decisions: str = "retention.decisions"
    outcomes: str = "retention.outcomes"
    dlq: str = "retention.dlq"
    # Internal: validated events re-keyed by customer_id, plus clock messages.
    customer_events: str = "retention.customer-events"
    # The registry of published rules versions (docs/rules.md "Changing rules"): one
    # partition, compacted, key = the set id (@ the effective time after the seed).
    # Not an input: markers reach the partitions through the input topics, in order
    # with the events.
    rules: str = "retention.rules"

    def inputs(self) -> tuple[str, ...]:
        """Every input topic: ingest reads them all, and in stream mode each of their
        partitions is a source of every customer partition's clock (docs/time.md)."""
        return (
            self.purchases,
            self.sessions,
            self.consents,
            self.signups,
            self.product_views,
            self.carts,
            self.order_cancellations,
        )

    def outputs(self) -> tuple[str, ...]:
        return (self.nudges, self.decisions, self.outcomes, self.dlq)

    def all(self) -> tuple[str, ...]:
        return (*self.inputs(), *self.outputs(), self.customer_events, self.rules)

    def resolve(self, name: str) -> str:
        """A short name (``nudges``, ``customer_events`` or ``customer-events``) or a full
        topic name, as the CLI takes it."""
        short = {f.name: getattr(self, f.name) for f in fields(Topics)}
        short.update({k.replace("_", "-"): v for k, v in short.items()})
        return str(short.get(name, name))
