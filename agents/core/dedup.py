"""Bounded dedup memory of one customer (docs/budget.md "Deduplication").

* :class:`RecentIds` - the newest ``capacity`` event ids, as 64-bit hashes (a
  redelivery is recognised while its event_id is among the customer's newest 512);
* :class:`OrderFilter` - every order_id the customer ever had, in bounded space:
  exact 64-bit hashes up to :data:`EXACT_ORDERS` orders, then a Bloom filter of
  :data:`BLOOM_BITS` bits and :data:`BLOOM_HASHES` probes holding them all.

A "seen" answer for a new id is a false positive: about n^2 / 2^65 while the set is
exact (under 10^-13 for 1,024 orders), and (1 - e^(-kn/m))^k for the Bloom filter:
0.001% at 2,000 orders, 0.2% at 5,000, 5% at 10,000.  The offline reference uses
this same code, so it makes the same decision, a false positive included.

Both serialise to one short ASCII string (base64), decoded only when used, so a
row's size and its (de)serialisation cost are bounded whatever the history.
"""

from __future__ import annotations

import base64
import bisect
import functools
import hashlib
import struct

EXACT_ORDERS = 1024
BLOOM_BITS = 1 << 16  # 8 KiB
BLOOM_HASHES = 7


@functools.lru_cache(maxsize=4096)  # seen() then remember(): one hash per id
def hash64(text: str) -> int:
    """A stable 64-bit hash of an id (the same in every process and version)."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _pack(values: list[int]) -> str:
    return base64.b64encode(struct.pack(f">{len(values)}Q", *values)).decode("ascii")


def _unpack(text: str) -> list[int]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f">{len(raw) // 8}Q", raw))


class RecentIds:
    """The newest ``capacity`` id hashes, oldest first."""

    __slots__ = ("_values", "_wire")

    def __init__(self, wire: str = "") -> None:
        self._wire: str | None = wire
        self._values: list[int] | None = None

    @classmethod
    def of(cls, ids: list[str]) -> RecentIds:
        out = cls()
        out._values = [hash64(x) for x in ids]
        out._wire = None
        return out

    def _list(self) -> list[int]:
        if self._values is None:
            self._values = _unpack(self._wire or "")
        return self._values

    def __contains__(self, text: str) -> bool:
        return hash64(text) in self._list()

    def __len__(self) -> int:
        return len(self._list())

    def add(self, text: str, capacity: int) -> None:
        values = self._list()
        values.append(hash64(text))
        if len(values) > capacity:
            del values[: len(values) - capacity]
        self._wire = None

    def to_wire(self) -> str:
        if self._wire is None:
            self._wire = _pack(self._list())
        return self._wire

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RecentIds) and self.to_wire() == other.to_wire()

    __hash__ = None  # type: ignore[assignment]


class OrderFilter:
    """Every order id ever added; "x:" + exact sorted hashes, or "b:<n>:" + Bloom bits."""

    __slots__ = ("_bits", "_exact", "_wire", "count")

    def __init__(self, wire: str = "") -> None:
        self._wire: str | None = wire
        self._exact: list[int] | None = None
        self._bits: bytearray | None = None
        self.count = 0
        if wire.startswith("b:"):
            self.count = int(wire.split(":", 2)[1])
        elif wire.startswith("x:"):
            body = wire[2:]
            self.count = (len(body) * 3 // 4 - body[-2:].count("=")) // 8

    def _load(self) -> None:
        if self._exact is not None or self._bits is not None:
            return
        wire = self._wire or ""
        if wire.startswith("b:"):
            self._bits = bytearray(base64.b64decode(wire.split(":", 2)[2]))
        else:
            self._exact = _unpack(wire[2:]) if wire.startswith("x:") else []

    @property
    def exact(self) -> bool:
        self._load()
        return self._bits is None

    def __contains__(self, text: str) -> bool:
        self._load()
        h = hash64(text)
        if self._bits is None:
            assert self._exact is not None
            i = bisect.bisect_left(self._exact, h)
            return i < len(self._exact) and self._exact[i] == h
        return all(self._bits[p >> 3] & (1 << (p & 7)) for p in _probes(h))

    def add(self, text: str) -> None:
        self._load()
        h = hash64(text)
        self._wire = None
        if self._bits is None:
            assert self._exact is not None
            i = bisect.bisect_left(self._exact, h)
            if i < len(self._exact) and self._exact[i] == h:
                return
            self._exact.insert(i, h)
            self.count += 1
            if len(self._exact) > EXACT_ORDERS:
                self._bits = bytearray(BLOOM_BITS // 8)
                for old in self._exact:
                    _set(self._bits, old)
                self._exact = None
            return
        _set(self._bits, h)
        self.count += 1

    def to_wire(self) -> str:
        if self._wire is None:
            if self._bits is not None:
                self._wire = f"b:{self.count}:" + base64.b64encode(self._bits).decode("ascii")
            else:
                self._wire = "x:" + _pack(self._exact or [])
        return self._wire

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OrderFilter) and self.to_wire() == other.to_wire()

    __hash__ = None  # type: ignore[assignment]


def _probes(h: int) -> list[int]:
    # Double hashing (Kirsch-Mitzenmacher) from the two halves of the 64-bit hash.
    h1, h2 = h & 0xFFFFFFFF, (h >> 32) | 1
    return [(h1 + i * h2) % BLOOM_BITS for i in range(BLOOM_HASHES)]


def _set(bits: bytearray, h: int) -> None:
    for p in _probes(h):
        bits[p >> 3] |= 1 << (p & 7)
