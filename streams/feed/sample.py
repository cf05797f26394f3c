"""A realistic, deterministic sample of input events (JSONL), for the demo, tests and benchmarks.

Customers behave as repeat-buying models (BG/NBD) say they do: each buyer has
their own purchase rate, drawn from a gamma distribution, and after every
purchase drops out for good with their own probability, drawn from a beta
distribution. First purchases are spread over the window; sessions are more
frequent than orders, start a little before the first order and trail off after
the customer drops out; some customers are session-only prospects and a few
send consent events (opt-out, some opt back in).

Delivery then looks like a real producer fleet's: the file is in arrival order,
which is event-time order perturbed by exact duplicates (same ``event_id``), order
retries (same ``order_id``, new ``event_id``), local shuffles, late events (at
most ``max_lateness`` of event time after events already sent) and a sprinkling of
malformed messages, one of each kind in :data:`MALFORMED_KINDS` before any repeats.

Off by default (the default output is unchanged), :class:`SampleOptions`
(:mod:`streams.feed.sample_options`) also gives what real and hostile data do and
the defaults never show: events later than the stream's allowed lateness, a file
grouped by customer (as warehouse exports are), purchases re-delivered long after
the original, an opt-out and an opt-in of one customer at the same instant, and
more than three currencies; and a time zone per customer on every event of theirs
(``SampleOptions.zones``: some customers without one, some with an unknown name,
some moving to another zone), drawn from a random stream of its own so that the
lines are otherwise the same as without zones.

Everything is drawn from one ``random.Random(seed)``: the same arguments give the
same bytes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import orjson

from agents.core.timeutil import (
    MICROS_PER_DAY,
    MICROS_PER_SECOND,
    to_micros,
)
from streams.feed.lifecycle import Lifecycle
from streams.feed.sample_options import (
    EXTRA_CURRENCIES,
    INVALID_ZONES,
    SampleOptions,
    arrival_key,
    later_key,
)

DAY = MICROS_PER_DAY
HOUR = 3600 * MICROS_PER_SECOND
MINUTE = 60 * MICROS_PER_SECOND
MILLI = 1000

# --- the customer model (rates per day) --------------------------------------------
# Purchase rate ~ Gamma(shape, scale): mean 0.9 / 40 per day, about one order every
# six weeks while a customer is active, with a long tail of rare and frequent buyers.
PURCHASE_RATE_SHAPE = 0.9
PURCHASE_RATE_SCALE = 1 / 40
# Drop-out probability after each purchase ~ Beta(a, b): mean 0.5, which gives a
# repeat purchase rate of about a third in a year, typical of online retail.
DROPOUT_A = 2.0
DROPOUT_B = 2.0
# Sessions per order while active, uniform in this range, plus a floor rate so
# rare buyers still visit now and then.
SESSIONS_PER_ORDER = (2.0, 6.0)
SESSION_RATE_FLOOR = 1 / 60
# Browsing before the first order: a geometric number of sessions (mean about 1.5)
# within this many days before it.
PRE_PURCHASE_DAYS = 14
PRE_PURCHASE_CONTINUE = 0.6
# After dropping out, sessions continue for an exponential time with this mean.
BROWSING_TAIL_DAYS = 20.0
# Prospects: a few sessions (geometric, mean about 2.5) over at most this many days.
PROSPECT_SPAN_DAYS = 30
PROSPECT_CONTINUE = 0.6
# Opt-outs that are later reversed.
OPT_BACK_IN_SHARE = 0.35
# Order value: log-normal around EUR 37 (median), in cents.
AMOUNT_MU = 3.6
AMOUNT_SIGMA = 0.6

CURRENCIES = ("EUR",) * 8 + ("USD", "GBP")
PURCHASE_CHANNELS = ("web", "web", "app", "store")
SESSION_CHANNELS = ("web", "web", "ios", "android")
CONSENT_CHANNELS = ("email", "preferences")
# Share of customers whose producer writes local time with an offset instead of Z.
OFFSET_SHARE = 0.25
OFFSETS_MINUTES = (60, 120, -300, -480, 330, 540)
# Share of purchases whose amount is a JSON number instead of a decimal string.
NUMERIC_AMOUNT_SHARE = 0.2

# Malformed messages: kind -> the dead-letter code validation gives it.
MALFORMED_KINDS: dict[str, str] = {
    "invalid_json": "invalid_json",
    "naive_timestamp": "naive_timestamp",
    "missing_field": "missing_field",
    "unknown_schema": "unknown_schema",
    "negative_amount": "invalid_field",
    "bad_currency": "invalid_field",
    "too_large": "too_large",
}
# Oversized messages are 70 kB each: rare after the first one, so a big sample
# stays a sensible size.
TOO_LARGE_WEIGHT = 0.02
TOO_LARGE_PADDING = 70_000


def default_end() -> int:
    """Today 00:00 UTC, in micros."""
    today = datetime.now(UTC).date()
    return to_micros(datetime(today.year, today.month, today.day, tzinfo=UTC))


class _Clock:
    """RFC 3339 rendering of millisecond-aligned micros, with date and clock-face caches."""

    def __init__(self) -> None:
        self._dates: dict[int, str] = {}
        self._faces: dict[int, str] = {}
        self._epoch = date(1970, 1, 1).toordinal()

    def render(self, micros: int, offset_minutes: int, suffix: str) -> str:
        day, rest = divmod(micros + offset_minutes * MINUTE, DAY)
        second, ms = divmod(rest // MILLI, 1000)
        day_text = self._dates.get(day)
        if day_text is None:
            day_text = self._dates[day] = date.fromordinal(self._epoch + day).isoformat() + "T"
        face = self._faces.get(second)
        if face is None:
            minutes, s = divmod(second, 60)
            face = self._faces[second] = f"{minutes // 60:02d}:{minutes % 60:02d}:{s:02d}."
        return f"{day_text}{face}{ms:03d}{suffix}"


def _dumps(obj: dict[str, Any]) -> bytes:
    # orjson's result keeps its whole write buffer (about 4 kB) allocated; an exact
    # copy keeps a large sample's memory at the size of its lines.
    return bytes(memoryview(orjson.dumps(obj)))


def _pick(rng: random.Random, items: tuple[str, ...]) -> str:
    # Random.choice draws bits in a loop; one float is enough for these small tuples.
    return items[int(rng.random() * len(items))]


def _offset_suffix(minutes: int) -> str:
    if minutes == 0:
        return "Z"
    sign = "+" if minutes > 0 else "-"
    h, m = divmod(abs(minutes), 60)
    return f"{sign}{h:02d}:{m:02d}"


class _Generator:
    """One run: draws customers, then delivery noise, into (arrival key, seq, line) entries."""

    def __init__(self, customers: int, days: int, seed: int, end: int, opts: SampleOptions):
        self.rng = random.Random(seed)
        self.customers = customers
        self.end = end - end % MILLI
        self.start = self.end - days * DAY
        self.opts = opts
        self.clock = _Clock()
        self.entries: list[tuple[int, int, bytes]] = []
        self.seq = 0
        self.orders = 0
        self.sessions = 0
        self.malformed = 0
        self.customer = 0  # index of the customer being drawn
        # The customer's zone: (first, moved at, then); the move never when None.
        self.zone: tuple[str | None, int | None, str | None] = (None, None, None)
        # Zones have their own stream: the other draws stay those of a run without zones.
        self.zone_rng = random.Random(f"zones-{seed}")
        self.owners: list[int] = []  # customer index of each entry, by seq
        self.currency_table = (
            CURRENCIES
            if opts.currencies == 3
            else CURRENCIES + EXTRA_CURRENCIES[: opts.currencies - 3]
        )
        # The lifecycle events have their own stream too (streams/feed/lifecycle.py).
        self.life = Lifecycle(self, seed) if opts.lifecycle else None

    def render(self, micros: int, offset_minutes: int, suffix: str) -> str:
        return self.clock.render(micros, offset_minutes, suffix)

    # -- helpers ------------------------------------------------------------------

    def _time(self, lo: float, hi: float) -> int:
        """A millisecond-aligned instant in [lo, hi], clipped to the window."""
        lo = max(lo, self.start)
        hi = min(hi, self.end)
        t = int(lo + self.rng.random() * (hi - lo))
        return t - t % MILLI

    def _event_id(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    def _push(self, key: int, line: bytes) -> None:
        self.entries.append((key, self.seq, line))
        self.owners.append(self.customer)
        self.seq += 1

    # -- customers ----------------------------------------------------------------

    def run(self) -> list[tuple[int, int, bytes]]:
        rng = self.rng
        for index in range(self.customers):
            customer_id = f"cust-{index + 1:07d}"
            self.customer = index
            offset = rng.choice(OFFSETS_MINUTES) if rng.random() < OFFSET_SHARE else 0
            suffix = _offset_suffix(offset)
            if self.opts.zones:
                self.zone = self._draw_zone()
            if rng.random() < self.opts.prospect_rate:
                times = self._prospect()
                purchases: list[int] = []
            else:
                purchases, times = self._buyer()
            first_seen = min(times + purchases) if times or purchases else None
            for t in purchases:
                self._purchase(customer_id, t, offset, suffix)
            for t in times:
                self._session(customer_id, t, offset, suffix)
            if first_seen is not None and rng.random() < self.opts.consent_rate:
                out_at = self._time(first_seen, self.end)
                tie = self.opts.consent_tie_rate and rng.random() < self.opts.consent_tie_rate
                if tie and rng.random() < 0.5:
                    self._consent(customer_id, out_at, "opted_in", offset, suffix)
                    tie = False
                self._consent(customer_id, out_at, "opted_out", offset, suffix)
                if tie:
                    self._consent(customer_id, out_at, "opted_in", offset, suffix)
                if rng.random() < OPT_BACK_IN_SHARE:
                    back_at = self._time(out_at, self.end)
                    self._consent(customer_id, back_at, "opted_in", offset, suffix)
            if self.life is not None:
                self.life.customer(customer_id, times, purchases, offset, suffix)
        if self.opts.customer_order:
            owners = self.owners
            self.entries.sort(key=lambda e: (owners[e[1]], e[0], e[1]))
        else:
            self.entries.sort()
        return self.entries

    def _draw_zone(self) -> tuple[str | None, int | None, str | None]:
        rng, opts = self.zone_rng, self.opts
        u = rng.random()
        if u < opts.zoneless_share:
            return (None, None, None)
        if u < opts.zoneless_share + opts.invalid_zone_share:
            return (_pick(rng, INVALID_ZONES), None, None)
        first = _pick(rng, opts.zones)
        if rng.random() < opts.moved_zone_share:
            return (first, self._time_in(rng, self.start, self.end), _pick(rng, opts.zones))
        return (first, None, None)

    @staticmethod
    def _time_in(rng: random.Random, lo: int, hi: int) -> int:
        t = int(lo + rng.random() * (hi - lo))
        return t - t % MILLI

    def _zoned(self, event: dict[str, Any], t: int) -> dict[str, Any]:
        """The event with the customer's zone at ``t`` as its ``timezone`` (if any)."""
        first, moved_at, then = self.zone
        name = then if moved_at is not None and t >= moved_at else first
        if name is not None:
            event["timezone"] = name
        return event

    def _prospect(self) -> list[int]:
        rng = self.rng
        begin = self._time(self.start, self.end)
        span = min(PROSPECT_SPAN_DAYS * DAY, self.end - begin)
        times = [begin]
        while rng.random() < PROSPECT_CONTINUE:
            times.append(self._time(begin, begin + span))
        return times

    def _buyer(self) -> tuple[list[int], list[int]]:
        """BG/NBD: Poisson purchases at the customer's rate until they drop out."""
        rng = self.rng
        rate = rng.gammavariate(PURCHASE_RATE_SHAPE, PURCHASE_RATE_SCALE)
        dropout = rng.betavariate(DROPOUT_A, DROPOUT_B)
        session_rate = rate * rng.uniform(*SESSIONS_PER_ORDER) + SESSION_RATE_FLOOR
        first = self._time(self.start, self.end)
        purchases = [first]
        t = first
        alive = True
        while True:
            if rng.random() < dropout:
                alive = False
                break
            t += int(rng.expovariate(rate) * DAY) if rate > 0 else self.end + 1
            if t > self.end:
                break
            t -= t % MILLI
            purchases.append(t)
        active_until = self.end
        if not alive:
            active_until = min(
                self.end, purchases[-1] + int(rng.expovariate(1 / BROWSING_TAIL_DAYS) * DAY)
            )
        sessions: list[int] = []
        while rng.random() < PRE_PURCHASE_CONTINUE:
            sessions.append(self._time(first - PRE_PURCHASE_DAYS * DAY, first))
        s = first
        while True:
            s += int(rng.expovariate(session_rate) * DAY)
            if s > active_until:
                break
            sessions.append(s - s % MILLI)
        return purchases, sessions

    # -- events -------------------------------------------------------------------

    def _purchase(self, customer_id: str, t: int, offset: int, suffix: str) -> None:
        rng = self.rng
        self.orders += 1
        cents = max(1, round(rng.lognormvariate(AMOUNT_MU, AMOUNT_SIGMA) * 100))
        amount: str | float = f"{cents // 100}.{cents % 100:02d}"
        if rng.random() < NUMERIC_AMOUNT_SHARE:
            amount = cents / 100
        event = {
            "schema": "purchase/1",
            "event_id": self._event_id(),
            "customer_id": customer_id,
            "occurred_at": self.clock.render(t, offset, suffix),
            "order_id": f"ord-{self.orders:08d}",
            "amount": amount,
            "currency": _pick(rng, self.currency_table),
            "channel": _pick(rng, PURCHASE_CHANNELS),
        }
        if self.life is not None:
            # Its views, cart and cancellation; with a cart, the order becomes purchase/2.
            self.life.order(event, t, cents, offset, suffix)
        key = self._deliver(t, self._zoned(event, t))
        if self.opts.retry_rate and rng.random() < self.opts.retry_rate:
            # A producer retry that regenerates the event_id: same order, same payload and
            # occurred_at, so the order's time does not hinge on which copy arrives first.
            retry = dict(event, event_id=self._event_id())
            self._push(self._later(t, key), _dumps(retry))
        if self.opts.restamped_retry_rate and rng.random() < self.opts.restamped_retry_rate:
            # The same order sent again later under a new event_id and its own send time.
            when = min(t + self.opts.restamp_after, self.end)
            restamped = dict(
                event,
                event_id=self._event_id(),
                occurred_at=self.clock.render(when, offset, suffix),
            )
            self._push(when, _dumps(restamped))
        if self.opts.far_duplicate_rate and rng.random() < self.opts.far_duplicate_rate:
            # The very same line again, long after: many other events come in between.
            self._push(t + self.opts.far_duplicate_after, _dumps(event))

    def _session(self, customer_id: str, t: int, offset: int, suffix: str) -> None:
        self.sessions += 1
        event = {
            "schema": "session/1",
            "event_id": self._event_id(),
            "customer_id": customer_id,
            "occurred_at": self.clock.render(t, offset, suffix),
            "session_id": f"ses-{self.sessions:09d}",
            "channel": _pick(self.rng, SESSION_CHANNELS),
        }
        self._deliver(t, self._zoned(event, t))

    def _consent(self, customer_id: str, t: int, status: str, offset: int, suffix: str) -> None:
        event = {
            "schema": "consent/1",
            "event_id": self._event_id(),
            "customer_id": customer_id,
            "occurred_at": self.clock.render(t, offset, suffix),
            "status": status,
            "channel": _pick(self.rng, CONSENT_CHANNELS),
        }
        self._deliver(t, self._zoned(event, t))

    # -- delivery noise -----------------------------------------------------------

    def _later(self, t: int, key: int) -> int:
        return later_key(self.rng, self.opts, t, key)

    def _deliver(self, t: int, event: dict[str, Any]) -> int:
        """Queue an event at its arrival key (event time + delay); returns the key."""
        rng = self.rng
        opts = self.opts
        line = _dumps(event)
        key = arrival_key(rng, opts, t)
        self._push(key, line)
        if opts.duplicate_rate and rng.random() < opts.duplicate_rate:
            self._push(self._later(t, key), line)
        if opts.malformed_rate and rng.random() < opts.malformed_rate:
            self._push(key, self._malformed(event, line))
        return key

    def _malformed(self, event: dict[str, Any], line: bytes) -> bytes:
        rng = self.rng
        kinds = list(MALFORMED_KINDS)
        if self.malformed < len(kinds):
            kind = kinds[self.malformed]
        else:
            weights = [TOO_LARGE_WEIGHT if k == "too_large" else 1.0 for k in kinds]
            kind = rng.choices(kinds, weights)[0]
        self.malformed += 1
        if kind == "invalid_json":
            return line[: len(line) // 2]
        bad = dict(event, event_id=self._event_id())
        if kind == "naive_timestamp":
            bad["occurred_at"] = str(bad["occurred_at"])[:23]
        elif kind == "missing_field":
            del bad["customer_id"]
        elif kind == "unknown_schema":
            bad["schema"] = rng.choice(("refund/1", "purchase/2", "Purchase"))
        elif kind in ("negative_amount", "bad_currency"):
            self.orders += 1
            bad = {
                "schema": "purchase/1",
                "event_id": bad["event_id"],
                "customer_id": event["customer_id"],
                "occurred_at": event["occurred_at"],
                "order_id": f"ord-{self.orders:08d}",
                "amount": "-12.50" if kind == "negative_amount" else "12.50",
                "currency": rng.choice(("euro", "eur", "E1")) if kind == "bad_currency" else "EUR",
            }
        else:  # too_large
            bad["note"] = "x" * TOO_LARGE_PADDING
        return _dumps(bad)


def generate(
    customers: int,
    days: int,
    seed: int = 1,
    end: int | None = None,
    *,
    options: SampleOptions | None = None,
) -> Iterator[bytes]:
    """Yield JSONL lines (without newlines) in arrival order.

    Every valid event's ``occurred_at`` lies in ``[end - days, end]`` (micros;
    ``end`` defaults to today 00:00 UTC). Deterministic for given arguments.
    """
    if customers < 0:
        raise ValueError("customers must not be negative")
    if days < 1:
        raise ValueError("days must be at least 1")
    opts = options or SampleOptions()
    opts.check()
    entries = _Generator(customers, days, seed, default_end() if end is None else end, opts).run()
    for _, _, line in entries:
        yield line


__all__ = [
    "MALFORMED_KINDS",
    "default_end",
    "generate",
]
