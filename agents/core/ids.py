"""Deterministic identifiers, so consumers can deduplicate and replays agree."""

from __future__ import annotations

import hashlib
import uuid

from agents.core.timeutil import iso

TRIGGER_NAMESPACE = uuid.UUID("6f1d3c1e-4b7a-5e0f-9c2d-7a1e0b5c3d21")
# uuid5 is SHA-1 over the namespace's bytes, then the name: the namespace part is
# hashed once here and copied per id (every decision, nudge and outcome has one).
_NAMESPACE_SHA1 = hashlib.sha1(TRIGGER_NAMESPACE.bytes, usedforsecurity=False)
# RFC 4122 version 5 and variant bits, as uuid.UUID(bytes=..., version=5) sets them,
# set on the hex text: the version digit (13th) is 5, the variant digit (17th) keeps
# its two low bits under a high 10.
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def trigger_id(
    customer_id: str, rule: str, step: int, anchor_at: int, key: str | None = None
) -> str:
    """UUIDv5 of (customer, rule, step, anchor): the same firing always gets the same
    id.  A keyed ladder's firing (a cart's: docs/lifecycle.md "Rules") adds its key,
    so two carts anchored at one instant get distinct ids."""
    return trigger_id_at(customer_id, rule, step, iso(anchor_at), key)


def trigger_id_at(
    customer_id: str, rule: str, step: int, anchor_iso: str, key: str | None = None
) -> str:
    """:func:`trigger_id` with the anchor already formatted by ``iso``.

    Exactly ``str(uuid.uuid5(TRIGGER_NAMESPACE, name))`` (property-tested), without
    building a ``uuid.UUID``.
    """
    digest = _NAMESPACE_SHA1.copy()
    name = f"{customer_id}\x1f{rule}\x1f{step}\x1f{anchor_iso}"
    if key is not None:
        name = f"{name}\x1f{key}"
    digest.update(name.encode())
    h = digest.hexdigest()  # the UUID is its first 32 digits, two of them overwritten
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def holdout_bucket(customer_id: str, salt: str) -> float:
    """A stable number in [0, 100) from the customer id: below holdout_percent = control group."""
    digest = hashlib.sha256(f"{salt}\x1f{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100.0
