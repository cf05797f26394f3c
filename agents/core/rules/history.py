"""Rule versions in force over event time (docs/rules.md "Changing rules").

A deployment runs one rules file at a time, and a change takes effect at an event
time: a step due at D is judged under the version with the greatest applied time
<= D.  :class:`RuleHistory` is that list for one customer partition: the seed (the
version the deployment started with, in force from the beginning of time) and the
published versions after it, each with the instant this partition switched to it.
That instant is the declared ``effective_at`` unless the partition learned of the
version after its clock had passed it (then the partition's clock: a late version,
reported by the worker).

Plain values; the engine and the customer processor build on them, the offline
reference reads rule changes with its own code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson

from agents.core.rules.model import Problem, RuleSet

# How long a pin lasts, in versions: a ladder pinned to a version restarts at the
# switch to the 8th version after it (docs/rules.md "Changing rules"), so at most 8
# versions are ever in use at once.  An event-time rule: every worker, restart and
# replay retires a pin at the same switch.
MAX_VERSIONS = 8
# Versions a partition stores (rows of the table): far more than the 8 a pin can
# reach, so a version is dropped only long after every pin to it was retired (each
# switch wakes every customer of the partition).
MAX_KEPT_VERSIONS = 32
# The control record that carries a rules change on input topics, in history files
# and on the rules topic.
CONTROL_RULES = "control/rules"


# Why a published version must keep the seed's lifecycle and attribution window: they
# are not per rule, so no policy can say what happens to customers mid-way.
LIFECYCLE_FIXED = (
    "lifecycle cannot change on a live deployment: every customer's stage would move "
    "at once; start a new deployment"
)
ATTRIBUTION_FIXED = (
    "attribution_window cannot change on a live deployment: conversions of nudges "
    "already sent would be judged by another window; start a new deployment"
)


def compatible(seed: RuleSet, new: RuleSet) -> list[Problem]:
    """What stops ``new`` from following ``seed`` on a live deployment (docs/rules.md
    "Changing rules"): a different ``[lifecycle]`` or ``attribution_window``.  Rules
    and every other guardrail may change."""
    problems: list[Problem] = []
    if seed.lifecycle != new.lifecycle:
        problems.append(Problem("lifecycle", LIFECYCLE_FIXED))
    if seed.guardrails.attribution_window != new.guardrails.attribution_window:
        problems.append(Problem("guardrails.attribution_window", ATTRIBUTION_FIXED))
    return problems


def set_id(rules: RuleSet) -> str:
    """The version of a whole rules file: the first 12 hex digits of sha256 of its
    canonical form (rules in file order, guardrails, lifecycle, the model when there
    is one; comments, spacing and descriptions do not count)."""
    g = rules.guardrails
    doc = {
        "format": rules.format,
        "rules": [{**r.canonical(), "enabled": r.enabled} for r in rules.rules],
        "guardrails": {
            "holdout_percent": g.holdout_percent,
            "holdout_salt": g.holdout_salt,
            "min_gap": g.min_gap,
            "frequency_cap": g.frequency_cap,
            "frequency_window": g.frequency_window,
            "attribution_window": g.attribution_window,
            "arbitration": g.arbitration,
        },
        "lifecycle": None if rules.lifecycle is None else rules.lifecycle.canonical(),
    }
    # Only with a [model]: a file without one keeps its version (docs/prediction.md
    # "The churn_risk rule").
    if rules.model is not None:
        doc["model"] = rules.model.canonical()
    text = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(text).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Version:
    """One rules file in a partition's history.

    ``applied_at`` None: the seed, in force from the beginning.  ``effective_at`` is
    what the publisher declared (None for the seed); ``applied_at`` differs from it
    only for a late version.  ``text`` is the file as published (kept so that a
    restarted worker and ``GET /retention/rules`` show exactly what runs)."""

    id: str
    rules: RuleSet
    text: str
    effective_at: int | None = None
    applied_at: int | None = None

    @property
    def late(self) -> bool:
        return self.applied_at != self.effective_at


class RuleHistory:
    """The versions of one partition, seed first, applied times strictly increasing."""

    __slots__ = ("versions",)

    def __init__(self, versions: tuple[Version, ...]) -> None:
        if not versions:
            raise ValueError("a rule history needs its seed")
        times: list[int] = []
        for i, v in enumerate(versions):
            if v.applied_at is None:
                if i:
                    raise ValueError("only the seed may have no applied time")
                continue
            if times and v.applied_at <= times[-1]:
                raise ValueError("applied times must increase strictly")
            times.append(v.applied_at)
        self.versions = versions

    @classmethod
    def seed(cls, rules: RuleSet, text: str = "") -> RuleHistory:
        return cls((Version(set_id(rules), rules, text),))

    @property
    def current(self) -> Version:
        """The newest version (in force once the clock reaches its applied time)."""
        return self.versions[-1]

    def at(self, t: int) -> Version:
        """The version in force at ``t``: the greatest applied time <= t (the oldest
        kept one for an earlier ``t``)."""
        found = self.versions[0]
        for v in self.versions[1:]:
            assert v.applied_at is not None
            if v.applied_at > t:
                break
            found = v
        return found

    def after(self, t: int | None) -> Version | None:
        """The first switch later than ``t`` (None: before every switch).  Once the
        bound has dropped the original seed, the oldest kept version is a switch too."""
        for v in self.versions:
            if v.applied_at is not None and (t is None or v.applied_at > t):
                return v
        return None

    def by_id(self, version_id: str) -> Version | None:
        return next((v for v in self.versions if v.id == version_id), None)

    def add(self, version: Version) -> RuleHistory:
        """This history with ``version`` appended (its applied time must be later than
        the newest's); past :data:`MAX_KEPT_VERSIONS` the oldest is dropped and the
        next one becomes the seed."""
        last = self.versions[-1].applied_at
        if version.applied_at is None or (last is not None and version.applied_at <= last):
            raise ValueError("a new version must apply after the newest one")
        versions = (*self.versions, version)
        if len(versions) > MAX_KEPT_VERSIONS:
            versions = versions[len(versions) - MAX_KEPT_VERSIONS :]
        return RuleHistory(versions)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RuleHistory) and self.versions == other.versions

    def __hash__(self) -> int:
        return hash(tuple((v.id, v.applied_at) for v in self.versions))
