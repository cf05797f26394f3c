"""The options of the sample (:mod:`streams.feed.sample`): how noisy its delivery is.

Every rate is a probability per event (0 disables it), and the defaults are the
sample's default output.  Besides the noise every real producer fleet makes
(duplicates, retries, shuffles, late events, malformed messages), the options
give what real and hostile data do and the defaults never show, all off by
default: events later than the stream's allowed lateness, a file grouped by
customer (as warehouse exports are), purchases re-delivered long after the
original, a retry stamped when it was sent, an opt-out and an opt-in of one
customer at the same instant, and more than three currencies.  Also off by default:
a time zone per customer (the events' ``timezone``, docs/send-windows.md "The
customer's zone"), with some customers without one, some with a name tzdata does not
know, and some who move to another zone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from agents.core.timeutil import MICROS_PER_DAY, MICROS_PER_SECOND

DAY = MICROS_PER_DAY
HOUR = 3600 * MICROS_PER_SECOND

# With SampleOptions.currencies above 3, the first (currencies - 3) of these join,
# each as likely as USD.
EXTRA_CURRENCIES = (
    "JPY", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "AUD", "CAD", "NZD",
    "SGD", "HKD", "INR", "BRL", "MXN", "ZAR", "TRY", "KRW", "CNY", "ILS", "THB",
)  # fmt: skip

DEFAULT_DUPLICATE_RATE = 0.01
DEFAULT_RETRY_RATE = 0.005
DEFAULT_MALFORMED_RATE = 0.005
DEFAULT_LATE_RATE = 0.02
DEFAULT_SHUFFLE_RATE = 0.05
DEFAULT_MAX_LATENESS = 12 * HOUR
DEFAULT_CONSENT_RATE = 0.04
DEFAULT_PROSPECT_RATE = 0.2
# The stream tolerates events up to one day late; the sample stays strictly below.
MAX_ALLOWED_LATENESS = DAY
DEFAULT_BEYOND_LATENESS = 3 * DAY
DEFAULT_FAR_DUPLICATE_AFTER = 60 * DAY
DEFAULT_RESTAMP_AFTER = 2 * HOUR
# Local shuffles move an event by at most this much event time (and never more
# than max_lateness).
SHUFFLE_WINDOW = 1 * HOUR

# Zones for SampleOptions.zones: the ones issue 22 names (a 30-minute DST shift, +05:45,
# the day Apia skipped, +03:30 without DST, no DST at all) and others with and
# without DST in both hemispheres, 24 in all.
WORLD_ZONES = (
    "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu",
    "Pacific/Apia", "Asia/Tehran", "Asia/Riyadh", "America/Los_Angeles",
    "Europe/London", "Europe/Lisbon", "Europe/Helsinki", "Africa/Cairo",
    "Africa/Lagos", "Asia/Kolkata", "Asia/Tokyo", "Asia/Singapore",
    "Australia/Sydney", "Australia/Adelaide", "Pacific/Auckland", "Pacific/Chatham",
    "America/Sao_Paulo", "America/St_Johns", "America/Chicago", "America/Phoenix",
)  # fmt: skip
# Names the events of SampleOptions.invalid_zone_share's customers carry: a typo, a
# wrong case, an offset that is no zone, a zone on another planet.  None is in tzdata.
INVALID_ZONES = ("Europe/Berln", "america/new_york", "GMT+25", "Mars/Olympus_Mons")


@dataclass(frozen=True, slots=True)
class SampleOptions:
    """How noisy the delivery is; every rate is a probability per event (0 disables)."""

    duplicate_rate: float = DEFAULT_DUPLICATE_RATE
    retry_rate: float = DEFAULT_RETRY_RATE  # per purchase
    malformed_rate: float = DEFAULT_MALFORMED_RATE
    late_rate: float = DEFAULT_LATE_RATE
    shuffle_rate: float = DEFAULT_SHUFFLE_RATE
    max_lateness: int = DEFAULT_MAX_LATENESS  # micros of event time
    consent_rate: float = DEFAULT_CONSENT_RATE  # share of customers
    prospect_rate: float = DEFAULT_PROSPECT_RATE  # share of customers with sessions only
    # The blind spots of the defaults (all off by default):
    # events delivered exactly ``beyond_lateness`` of event time late (over the
    # stream's allowed lateness, 1 day by default);
    beyond_lateness_rate: float = 0.0
    beyond_lateness: int = DEFAULT_BEYOND_LATENESS  # micros
    # the file grouped by customer (each customer's lines in arrival order);
    customer_order: bool = False
    # purchases whose exact line is delivered again ``far_duplicate_after`` later;
    far_duplicate_rate: float = 0.0  # per purchase
    far_duplicate_after: int = DEFAULT_FAR_DUPLICATE_AFTER  # micros of event time
    # purchases re-sent with a new event_id AND a new ``occurred_at``, ``restamp_after``
    # later (a retry stamped when it was sent): which copy counts then depends on
    # the order they are read in (docs/budget.md "Byte budget, pending and deduplication");
    restamped_retry_rate: float = 0.0  # per purchase
    restamp_after: int = DEFAULT_RESTAMP_AFTER  # micros of event time
    # consenting customers who also send the opposite consent at the same instant
    # as their opt-out (in either order);
    consent_tie_rate: float = 0.0
    # how many currencies orders use (3: EUR, USD, GBP).
    currencies: int = 3
    # Each customer's events carry ``timezone``, one of ``zones`` drawn per customer
    # (none, the default: no event has the field).  The zones are drawn from a random
    # stream of their own, so apart from the field the lines are those without zones.
    zones: tuple[str, ...] = ()
    # Shares of the customers whose events carry no zone, and a name tzdata does not
    # know (one of INVALID_ZONES: ignored and counted, the event applied);
    zoneless_share: float = 0.0
    invalid_zone_share: float = 0.0
    # and of those who move to another of ``zones`` at an instant of the window (their
    # events from then on carry the new one).
    moved_zone_share: float = 0.0
    # The lifecycle (docs/lifecycle.md "Sample and demo"): sign-ups, product views,
    # carts (orders from a cart as purchase/2), checkouts, abandoned and emptied carts,
    # cancellations, drawn from a random stream of their own so that the orders,
    # sessions and consents are those of the sample without them.
    lifecycle: bool = False

    def check(self) -> None:
        """Raise ValueError naming the first unusable option."""
        for name in (
            "duplicate_rate",
            "retry_rate",
            "malformed_rate",
            "late_rate",
            "shuffle_rate",
            "consent_rate",
            "prospect_rate",
            "beyond_lateness_rate",
            "far_duplicate_rate",
            "consent_tie_rate",
            "restamped_retry_rate",
            "zoneless_share",
            "invalid_zone_share",
            "moved_zone_share",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.late_rate + self.shuffle_rate > 1.0:
            raise ValueError("late_rate + shuffle_rate must not exceed 1")
        if not 0 <= self.max_lateness < MAX_ALLOWED_LATENESS:
            raise ValueError("max_lateness must be at least 0 and strictly less than one day")
        if self.beyond_lateness < 1:
            raise ValueError("beyond_lateness must be positive")
        if self.far_duplicate_after < 0:
            raise ValueError("far_duplicate_after must not be negative")
        if self.restamp_after < 1:
            raise ValueError("restamp_after must be positive")
        if self.zoneless_share + self.invalid_zone_share > 1.0:
            raise ValueError("zoneless_share + invalid_zone_share must not exceed 1")
        if not self.zones and (
            self.zoneless_share or self.invalid_zone_share or self.moved_zone_share
        ):
            raise ValueError("zoneless_share, invalid_zone_share and moved_zone_share need zones")
        if not 3 <= self.currencies <= 3 + len(EXTRA_CURRENCIES):
            raise ValueError(
                f"currencies must be between 3 and {3 + len(EXTRA_CURRENCIES)}, "
                f"got {self.currencies}"
            )


def arrival_key(rng: random.Random, opts: SampleOptions, t: int) -> int:
    """The arrival key of an event at ``t``: ``t``, or later for a late, shuffled or
    beyond-lateness one (the sample's delivery noise, drawn from ``rng``)."""
    u = rng.random()
    key = t
    if u < opts.late_rate:
        key = t + rng.randrange(opts.max_lateness + 1)
    elif u < opts.late_rate + opts.shuffle_rate:
        key = t + rng.randrange(min(SHUFFLE_WINDOW, opts.max_lateness) + 1)
    if opts.beyond_lateness_rate and rng.random() < opts.beyond_lateness_rate:
        key = t + opts.beyond_lateness
    return key


def later_key(rng: random.Random, opts: SampleOptions, t: int, key: int) -> int:
    """An arrival key after ``key`` that is still within max_lateness of ``t`` (a
    duplicate's or a retry's)."""
    room = t + opts.max_lateness - key
    return key + (rng.randrange(room + 1) if room > 0 else 0)
