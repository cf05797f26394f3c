"""A rules file's text -> :class:`RuleSet`, or every problem at once
(docs/rules.md "Rules file", "Checks").

Each problem names where it is - a path in the document (``rule[2].steps[1]``,
``rule "vip".audience.orders``, ``guardrails.min_gap``; rules and steps count from
1) and, found by scanning the text, its line - and says what is wrong in words a
marketer reads.  Nothing is half-loaded: a file with any problem gives no rule set.
"""

from __future__ import annotations

import functools
import re
import string
import tomllib
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from agents.core.rules.abstract import Anchor, Predicate, Step
from agents.core.rules.anchors import ANCHORS, MIN_ORDERS_FLOOR, FirstOrder
from agents.core.rules.audience import (
    CONSENT_MODES,
    PREDICATE_KEYS,
    Consent,
    DaysSinceFirstOrder,
    Orders,
    Spend,
    Stage,
)
from agents.core.rules.cancel import EVENT_KINDS
from agents.core.rules.model import (
    FORMAT,
    MAX_LADDER_STEPS,
    MAX_RULES,
    MAX_TOTAL_STEPS,
    NAME_PATTERN,
    PLACEHOLDERS,
    GuardrailValues,
    Lifecycle,
    Problem,
    Rule,
    RulesError,
    RuleSet,
)
from agents.core.rules.steps import Cadence, Fixed
from agents.core.stages import STAGES
from agents.core.timeutil import parse_duration

TOP_KEYS = ("format", "guardrails", "lifecycle", "rule")
GUARDRAIL_KEYS = (
    "holdout_percent",
    "holdout_salt",
    "min_gap",
    "frequency_cap",
    "frequency_window",
    "attribution_window",
    "arbitration",
)
LIFECYCLE_KEYS = ("at_risk_after", "lapsed_after", "priority")
RULE_KEYS = (
    "name",
    "priority",
    "enabled",
    "description",
    "channel",
    "reason",
    "anchor",
    "cancel_on",
    "steps",
    "transactional",
    "arbitration",
    "audience",
)
MAX_PRIORITY = 1_000_000
MAX_TEXT = 500
MAX_CHANNEL = 64
MAX_MIN_ORDERS = 1000
_NAME = re.compile(NAME_PATTERN)
_CURRENCY = re.compile(r"[A-Z]{3}")
_DECIMAL = re.compile(r"[0-9]{1,16}(?:\.[0-9]{1,15})?")
# Where a key of a section is: its line.
Where = Callable[[str], int | None]
_TOML_LINE = re.compile(r"at line (\d+)")
# A header that ends a rule's or a section's lines (a [rule.audience] table does not).
_SECTION = re.compile(r"\s*\[\[|\s*\[\s*(?:guardrails|lifecycle)\s*\]")


def load_rules(text: str) -> RuleSet:
    """The rule set of a rules file's text; :class:`RulesError` lists every problem."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_LINE.search(str(exc))
        line = int(found.group(1)) if found else None
        raise RulesError([Problem("file", f"this is not valid TOML ({exc})", line)]) from None
    checker = _Checker(text)
    rules = checker.rule_set(doc)
    if checker.problems or rules is None:
        raise RulesError(checker.problems)
    return rules


def check_rules(text: str) -> list[Problem]:
    """Every problem of a rules file (empty: it runs)."""
    try:
        load_rules(text)
    except RulesError as exc:
        return exc.problems
    return []


class _Lines:
    """Line numbers found by scanning the text: a section's header, a key in it."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.rule_headers = [
            i for i, x in enumerate(self.lines) if re.match(r"\s*\[\[\s*rule\s*\]\]", x)
        ]

    def section(self, name: str) -> int | None:
        pattern = re.compile(rf"\s*\[\s*{re.escape(name)}\s*\]")
        return next((i for i, x in enumerate(self.lines) if pattern.match(x)), None)

    def rule(self, index: int) -> int | None:
        return self.rule_headers[index] if index < len(self.rule_headers) else None

    def key(self, header: int | None, key: str) -> int | None:
        """The 1-based line of ``key = ...`` (or of a ``[rule.key]`` table) in the
        section whose header is on line ``header``; the header's line if not found."""
        if header is None:
            return None
        pattern = re.compile(rf"\s*(?:{re.escape(key)}\s*=|\[\s*rule\.{re.escape(key)}\s*\])")
        for i in range(header, len(self.lines)):
            if _SECTION.match(self.lines[i]):
                break
            if pattern.match(self.lines[i]):
                return i + 1
        return header


class _Checker:
    def __init__(self, text: str) -> None:
        self.problems: list[Problem] = []
        self.lines = _Lines(text)

    def add(self, path: str, message: str, line: int | None = None) -> None:
        self.problems.append(Problem(path, message, line))

    # --- the whole file --------------------------------------------------------------

    def rule_set(self, doc: dict[str, Any]) -> RuleSet | None:
        for key in doc:
            if key not in TOP_KEYS:
                self.add(key, f"unknown setting {key!r} (known: {', '.join(TOP_KEYS)})")
        fmt = doc.get("format")
        if fmt is None:
            self.add("format", f"say which format the file is written in: format = {FORMAT}")
        elif fmt != FORMAT or isinstance(fmt, bool):
            self.add("format", f"format {fmt!r} is not one this version reads (only {FORMAT})")
        guardrails = self.guardrails(doc.get("guardrails", {}))
        lifecycle = self.lifecycle(doc.get("lifecycle", {}))
        raw_rules = doc.get("rule", [])
        if not isinstance(raw_rules, list):
            self.add("rule", "rules are written as [[rule]] sections")
            raw_rules = []
        if len(raw_rules) > MAX_RULES:
            self.add(
                "rule",
                f"{len(raw_rules)} rules: at most {MAX_RULES} fit in a customer's record "
                "(the byte budget)",
            )
        rules = [self.rule(i, raw, guardrails) for i, raw in enumerate(raw_rules)]
        kept = [r for r in rules if r is not None]
        self.across_rules(raw_rules, lifecycle)
        if self.problems:
            return None
        rule_set = RuleSet(tuple(kept), guardrails, lifecycle)
        self.budget(rule_set)
        return rule_set

    def across_rules(self, raw_rules: list[Any], lifecycle: Lifecycle) -> None:
        """Unique names, unique priorities, the steps in all: read from every rule,
        also one with problems of its own (so that they are all reported at once)."""
        names: set[str] = set()
        priorities: dict[int, str] = {}
        total = 0
        for index, raw in enumerate(raw_rules):
            if not isinstance(raw, dict):
                continue
            name, priority = raw.get("name"), raw.get("priority")
            path = f'rule "{name}"' if isinstance(name, str) else f"rule[{index + 1}]"
            line = _one_based(self.lines.rule(index))
            if isinstance(name, str):
                if name in names:
                    self.add(path, "two rules have this name: names must be unique", line)
                names.add(name)
            if raw.get("enabled", True) is False:
                continue
            steps = raw.get("steps")
            total += len(steps) if isinstance(steps, list) else 0
            if isinstance(priority, bool) or not isinstance(priority, int):
                continue
            other = priorities.get(priority)
            at = self.key_line(line, "priority")
            if other is not None:
                self.add(
                    f"{path}.priority",
                    f"priority {priority} is also {other}'s: each enabled rule needs its own, "
                    "it decides which of two nudges due at once goes first",
                    at,
                )
            priorities[priority] = path.removeprefix("rule ")
            if priority == lifecycle.priority:
                self.add(
                    f"{path}.priority",
                    f"priority {priority} is the lifecycle's (lifecycle.priority): pick "
                    "another, so it is clear whether the rule sees the stage before or after "
                    "it changes",
                    at,
                )
        if total > MAX_TOTAL_STEPS:
            self.add(
                "rule",
                f"the enabled rules have {total} steps in all: at most {MAX_TOTAL_STEPS} fit "
                "in a customer's record (the byte budget)",
            )

    def budget(self, rule_set: RuleSet) -> None:
        # Imported here: the settings carry a rule set, so they import this package.
        from agents.core.budget import FIRINGS_BUDGET, firing_memory
        from agents.core.settings import CoreSettings

        memory = firing_memory(CoreSettings(rules=rule_set))
        if not memory.fits:
            self.add(
                "guardrails",
                f"a customer's record could have to remember {memory.entries} firings "
                f"({memory.bytes} bytes, over {FIRINGS_BUDGET}): lower the frequency cap, "
                "lengthen the shortest steps of rules anchored on activity or sessions, or "
                "shorten the attribution window",
                self.lines.section("guardrails"),
            )

    # --- sections ----------------------------------------------------------------------

    def table(
        self, raw: Any, path: str, known: tuple[str, ...], line: int | None
    ) -> dict[str, Any]:
        if not isinstance(raw, dict):
            self.add(path, "this should be a table of settings", line)
            return {}
        for key in raw:
            if key not in known:
                self.add(
                    f"{path}.{key}",
                    f"unknown setting {key!r} (known: {', '.join(known)})",
                    self.key_line(line, key),
                )
        return raw

    def key_line(self, header: int | None, key: str) -> int | None:
        return self.lines.key(header, key)

    def guardrails(self, raw: Any) -> GuardrailValues:
        header = _one_based(self.lines.section("guardrails"))
        d = self.table(raw, "guardrails", GUARDRAIL_KEYS, header)
        default = GuardrailValues()
        at: Where = functools.partial(self.lines.key, header)
        percent = self.number(d, "holdout_percent", "guardrails", 0, 100, at)
        salt = d.get("holdout_salt", default.holdout_salt)
        if not isinstance(salt, str) or not salt:
            self.add("guardrails.holdout_salt", "the salt is a non-empty text", at("holdout_salt"))
            salt = default.holdout_salt
        cap = self.whole(d, "frequency_cap", "guardrails", 1, 1000, at)
        return GuardrailValues(
            holdout_percent=default.holdout_percent if percent is None else percent,
            holdout_salt=salt,
            min_gap=self.duration(
                d, "min_gap", "guardrails", at, zero=True, default=default.min_gap
            ),
            frequency_cap=default.frequency_cap if cap is None else cap,
            frequency_window=self.duration(
                d, "frequency_window", "guardrails", at, default=default.frequency_window
            ),
            attribution_window=self.duration(
                d, "attribution_window", "guardrails", at, default=default.attribution_window
            ),
            arbitration=self.flag(d, "arbitration", "guardrails", default.arbitration, at),
        )

    def lifecycle(self, raw: Any) -> Lifecycle:
        header = _one_based(self.lines.section("lifecycle"))
        d = self.table(raw, "lifecycle", LIFECYCLE_KEYS, header)
        default = Lifecycle()
        at: Where = functools.partial(self.lines.key, header)
        at_risk = self.duration(d, "at_risk_after", "lifecycle", at, default=default.at_risk_after)
        lapsed = self.duration(d, "lapsed_after", "lifecycle", at, default=default.lapsed_after)
        if at_risk >= lapsed:
            self.add(
                "lifecycle",
                "at_risk_after must be shorter than lapsed_after: a customer is at risk "
                "before they have lapsed",
                header,
            )
        priority = self.whole(d, "priority", "lifecycle", 0, MAX_PRIORITY, at)
        return Lifecycle(at_risk, lapsed, default.priority if priority is None else priority)

    # --- one rule ------------------------------------------------------------------------

    def rule(self, index: int, raw: Any, guardrails: GuardrailValues) -> Rule | None:
        header = _one_based(self.lines.rule(index))
        path = f"rule[{index + 1}]"
        if not isinstance(raw, dict):
            self.add(path, "a rule is a [[rule]] section", header)
            return None
        before = len(self.problems)
        name = raw.get("name")
        if isinstance(name, str) and _NAME.fullmatch(name):
            path = f'rule "{name}"'
        elif name is None:
            self.add(path, 'every rule needs a name (name = "...")', header)
        else:
            self.add(
                f"{path}.name",
                f"{name!r} is not a rule name: lower-case letters, digits and _, starting "
                "with a letter, at most 40 characters",
                self.key_line(header, "name"),
            )
        self.table(raw, path, RULE_KEYS, header)
        at: Where = functools.partial(self.lines.key, header)
        priority = self.whole(raw, "priority", path, 0, MAX_PRIORITY, at)
        if priority is None and "priority" not in raw:
            self.add(f"{path}.priority", "every rule needs a priority (a whole number)", header)
        enabled = self.flag(raw, "enabled", path, True, at)
        description = self.text(raw, "description", path, at) or ""
        channel = self.text(raw, "channel", path, at, limit=MAX_CHANNEL)
        reason = self.reason(raw, path, at)
        anchor = self.anchor(raw.get("anchor"), path, at("anchor"))
        cancel_on = self.cancel_on(raw.get("cancel_on", []), path, at("cancel_on"))
        steps = self.steps(raw.get("steps"), path, at("steps"))
        transactional = self.flag(raw, "transactional", path, False, at)
        arbitration = self.flag(raw, "arbitration", path, guardrails.arbitration, at)
        if transactional and raw.get("arbitration") is True:
            self.add(
                f"{path}.arbitration",
                "a transactional rule is never outranked and never outranks: remove arbitration",
                at("arbitration"),
            )
        audience = self.audience(raw.get("audience", {}), path, at("audience"))
        if len(self.problems) > before or anchor is None or priority is None:
            return None
        assert isinstance(name, str)
        return Rule(
            name=name,
            priority=priority,
            anchor=anchor,
            steps=steps,
            cancel_on=cancel_on,
            audience=audience,
            enabled=enabled,
            description=description,
            channel=channel,
            reason=reason,
            transactional=transactional,
            arbitration=arbitration and not transactional,
        )

    def reason(self, raw: dict[str, Any], path: str, at: Where) -> str | None:
        text = self.text(raw, "reason", path, at)
        if text is None:
            return None
        try:
            fields = list(string.Formatter().parse(text))
        except ValueError:
            self.add(
                f"{path}.reason",
                "a { or } without its pair: write {{ and }} for the characters themselves",
                at("reason"),
            )
            return None
        for _, field, spec, conversion in fields:
            if field is None:
                continue
            if field not in PLACEHOLDERS or spec or conversion:
                self.add(
                    f"{path}.reason",
                    f"{{{field}}} is not a placeholder a reason may use "
                    f"(known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})",
                    at("reason"),
                )
        return text

    def anchor(self, raw: Any, path: str, line: int | None) -> Anchor | None:
        where = f"{path}.anchor"
        kinds = ", ".join(ANCHORS)
        if raw is None:
            self.add(where, f"every rule needs an anchor ({kinds})", line)
            return None
        params: dict[str, Any] = {}
        if isinstance(raw, dict):
            kind = raw.get("kind")
            params = {k: v for k, v in raw.items() if k != "kind"}
        else:
            kind = raw
        cls = ANCHORS.get(kind) if isinstance(kind, str) else None
        if kind is None:
            self.add(
                where, f'write the anchor\'s kind: {{ kind = "last_order", ... }} ({kinds})', line
            )
            return None
        if cls is None:
            self.add(where, f"{kind!r} is not an anchor this version knows ({kinds})", line)
            return None
        known = () if cls is FirstOrder else ("min_orders",)
        for key in params:
            if key not in known:
                self.add(f"{where}.{key}", f"the {kind} anchor has no setting {key!r}", line)
        if "min_orders" not in params or cls is FirstOrder:
            return cls()
        n = params["min_orders"]
        low = MIN_ORDERS_FLOOR[cls.kind]
        if isinstance(n, bool) or not isinstance(n, int) or not low <= n <= MAX_MIN_ORDERS:
            self.add(
                f"{where}.min_orders",
                f"min_orders is a whole number from {low} to {MAX_MIN_ORDERS}",
                line,
            )
            return None
        return cls(min_orders=n)  # type: ignore[call-arg]

    def cancel_on(self, raw: Any, path: str, line: int | None) -> tuple[str, ...]:
        where = f"{path}.cancel_on"
        if not isinstance(raw, list):
            self.add(where, 'cancel_on is a list of event kinds, e.g. ["purchase"]', line)
            return ()
        out: list[str] = []
        for i, kind in enumerate(raw, 1):
            if kind not in EVENT_KINDS:
                self.add(
                    f"{where}[{i}]",
                    f"{kind!r} is not an event kind ({', '.join(EVENT_KINDS)})",
                    line,
                )
            elif kind in out:
                self.add(f"{where}[{i}]", f"{kind!r} is listed twice", line)
            else:
                out.append(kind)
        return tuple(out)

    def steps(self, raw: Any, path: str, line: int | None) -> tuple[Step, ...]:
        where = f"{path}.steps"
        if not isinstance(raw, list) or not raw:
            self.add(
                where, 'every rule needs steps: a list of durations such as ["P7D", "P14D"]', line
            )
            return ()
        if len(raw) > MAX_LADDER_STEPS:
            self.add(where, f"{len(raw)} steps: a rule has at most {MAX_LADDER_STEPS}", line)
        out: list[Step] = []
        for i, item in enumerate(raw, 1):
            at = f"{where}[{i}]"
            if isinstance(item, dict):
                if len(raw) > 1:
                    self.add(
                        at,
                        "a cadence step must be the rule's only step (its time is per customer, "
                        "so it cannot be ordered among fixed steps)",
                        line,
                    )
                cadence = self.cadence(item, at, line)
                if cadence is not None:
                    out.append(cadence)
                continue
            micros = self.micros(item, at, line)
            if micros is None:
                continue
            previous = out[-1] if out else None
            if isinstance(previous, Fixed) and micros <= previous.micros:
                self.add(
                    at,
                    f"{item} is not later than the step before it: steps must be strictly "
                    "increasing",
                    line,
                )
            out.append(Fixed(micros))
        return tuple(out)

    def cadence(self, raw: dict[str, Any], at: str, line: int | None) -> Cadence | None:
        for key in raw:
            if key not in ("cadence", "floor"):
                self.add(f"{at}.{key}", f"a cadence step has no setting {key!r}", line)
        k = raw.get("cadence")
        if isinstance(k, bool) or not isinstance(k, int | float) or not 1 <= k <= 100:
            self.add(
                f"{at}.cadence",
                "cadence is how many of the customer's usual gaps between orders to wait: "
                "a number from 1 to 100",
                line,
            )
            return None
        if "floor" not in raw:
            self.add(f"{at}.floor", 'a cadence step needs a floor, e.g. floor = "P7D"', line)
            return None
        floor = self.micros(raw["floor"], f"{at}.floor", line)
        return None if floor is None else Cadence(float(k), floor)

    def audience(self, raw: Any, path: str, line: int | None) -> tuple[Predicate, ...]:
        where = f"{path}.audience"
        if not isinstance(raw, dict):
            self.add(where, "the audience is a table of conditions", line)
            return ()
        out: list[Predicate] = []
        table = line
        for key, value in raw.items():
            at = f"{where}.{key}"
            line = self.lines.key(table, key)
            predicate: Predicate | None = None
            if key == "orders":
                bounds = self.bounds(value, at, line)
                predicate = None if bounds is None else Orders(*bounds)
            elif key == "days_since_first_order":
                bounds = self.bounds(value, at, line)
                predicate = None if bounds is None else DaysSinceFirstOrder(*bounds)
            elif key == "stage":
                predicate = self.stage(value, at, line)
            elif key == "spend":
                predicate = self.spend(value, at, line)
            elif key == "consent":
                if value in CONSENT_MODES:
                    predicate = Consent(value)
                else:
                    self.add(at, f"consent is one of {', '.join(CONSENT_MODES)}", line)
            else:
                self.add(
                    at,
                    f"{key!r} is not an audience condition this version knows "
                    f"({', '.join(PREDICATE_KEYS)})",
                    line,
                )
            if predicate is not None:
                out.append(predicate)
        return tuple(out)

    def bounds(self, raw: Any, at: str, line: int | None) -> tuple[int | None, int | None] | None:
        if not isinstance(raw, dict) or not raw:
            self.add(at, "write a range: { min = 1, max = 3 } (either bound may be left out)", line)
            return None
        ok = True
        for key, value in raw.items():
            if key not in ("min", "max"):
                self.add(f"{at}.{key}", "a range has only min and max", line)
                ok = False
            elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                self.add(f"{at}.{key}", f"{key} is a whole number, 0 or more", line)
                ok = False
        low, high = raw.get("min"), raw.get("max")
        if ok and low is not None and high is not None and low > high:
            self.add(at, f"min {low} is above max {high}: nobody could match", line)
            ok = False
        return (low, high) if ok else None

    def stage(self, raw: Any, at: str, line: int | None) -> Stage | None:
        if not isinstance(raw, list) or not raw:
            self.add(at, f"stage is a list of stages ({', '.join(STAGES)})", line)
            return None
        bad = [s for s in raw if s not in STAGES]
        for s in bad:
            self.add(at, f"{s!r} is not a lifecycle stage ({', '.join(STAGES)})", line)
        return None if bad else Stage(frozenset(raw))

    def spend(self, raw: Any, at: str, line: int | None) -> Spend | None:
        if not isinstance(raw, dict):
            self.add(
                at, 'spend is { currency = "EUR", min = "50.00" } (either bound optional)', line
            )
            return None
        ok = True
        for key in raw:
            if key not in ("currency", "min", "max"):
                self.add(f"{at}.{key}", "spend has only currency, min and max", line)
                ok = False
        currency = raw.get("currency")
        if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
            self.add(f"{at}.currency", "the currency is a three-letter code such as EUR", line)
            ok = False
        amounts: dict[str, Decimal | None] = {"min": None, "max": None}
        for key in amounts:
            value = raw.get(key)
            if value is None:
                continue
            if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
                self.add(
                    f"{at}.{key}",
                    f'{key} is an amount written as text, e.g. "50.00" (exact, no rounding)',
                    line,
                )
                ok = False
                continue
            try:
                amounts[key] = Decimal(value)
            except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
                ok = False
        low, high = amounts["min"], amounts["max"]
        if ok and low is None and high is None:
            self.add(at, "give spend a min, a max or both", line)
            ok = False
        if ok and low is not None and high is not None and low > high:
            self.add(at, f"min {low} is above max {high}: nobody could match", line)
            ok = False
        return Spend(str(currency), low, high) if ok else None

    # --- values --------------------------------------------------------------------------

    def micros(self, raw: Any, at: str, line: int | None, *, zero: bool = False) -> int | None:
        if not isinstance(raw, str):
            self.add(at, f'{raw!r} is not a duration: write e.g. "P7D" or "PT24H"', line)
            return None
        try:
            micros = parse_duration(raw) // timedelta(microseconds=1)
        except ValueError as exc:
            self.add(at, str(exc), line)
            return None
        if micros < 0 or (micros == 0 and not zero):
            self.add(
                at,
                f"{raw} is {'negative' if micros < 0 else 'zero'}: "
                "a duration here must be longer than zero",
                line,
            )
            return None
        return micros

    def duration(
        self, d: dict[str, Any], key: str, path: str, at: Where, *, default: int, zero: bool = False
    ) -> int:
        if key not in d:
            return default
        micros = self.micros(d[key], f"{path}.{key}", at(key), zero=zero)
        return default if micros is None else micros

    def number(
        self, d: dict[str, Any], key: str, path: str, low: float, high: float, at: Where
    ) -> float | None:
        if key not in d:
            return None
        value = d[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            self.add(f"{path}.{key}", f"{key} is a number from {low:g} to {high:g}", at(key))
            return None
        return float(value)

    def whole(
        self, d: dict[str, Any], key: str, path: str, low: int, high: int, at: Where
    ) -> int | None:
        if key not in d:
            return None
        value = d[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.add(f"{path}.{key}", f"{key} is a whole number from {low} to {high}", at(key))
            return None
        return value

    def flag(self, d: dict[str, Any], key: str, path: str, default: bool, at: Where) -> bool:
        value = d.get(key, default)
        if not isinstance(value, bool):
            self.add(f"{path}.{key}", f"{key} is true or false", at(key))
            return default
        return value

    def text(
        self, d: dict[str, Any], key: str, path: str, at: Where, *, limit: int = MAX_TEXT
    ) -> str | None:
        value = d.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            self.add(
                f"{path}.{key}", f"{key} is a non-empty text of at most {limit} characters", at(key)
            )
            return None
        return value


def _one_based(index: int | None) -> int | None:
    return None if index is None else index + 1
