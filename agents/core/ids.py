"""Deterministic identifiers, so consumers can deduplicate and replays agree."""

from __future__ import annotations

import hashlib
import uuid

from agents.core.timeutil import iso

TRIGGER_NAMESPACE = uuid.UUID("6f1d3c1e-4b7a-5e0f-9c2d-7a1e0b5c3d21")


def trigger_id(customer_id: str, rule: str, step: int, anchor_at: int) -> str:
    """UUIDv5 of (customer, rule, step, anchor): the same firing always gets the same id."""
    return str(
        uuid.uuid5(TRIGGER_NAMESPACE, f"{customer_id}\x1f{rule}\x1f{step}\x1f{iso(anchor_at)}")
    )


def holdout_bucket(customer_id: str, salt: str) -> float:
    """A stable number in [0, 100) from the customer id: below holdout_percent = control group."""
    digest = hashlib.sha256(f"{salt}\x1f{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100.0
