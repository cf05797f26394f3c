"""A rules file's text -> :class:`RuleSet`, or every problem at once
(docs/rules.md "Rules file", "Checks").

Each problem names where it is - a path in the document (``rule[2].steps[1]``,
``rule "vip".audience.orders``, ``guardrails.min_gap``; rules and steps count from
1) and, found by scanning the text, its line - and says what is wrong in words a
marketer reads.  Nothing is half-loaded: a file with any problem gives no rule set.

This module checks the file as a whole, its guardrails, lifecycle and each rule;
a rule's anchor, cancels and steps are checked in ``check_timing``, its audience
in ``check_audience``, single values (and the line scan) in ``check_base``.
"""

from __future__ import annotations

import functools
import re
import string
import tomllib
from typing import Any

from agents.core.rules.abstract import KeyedAnchor
from agents.core.rules.check_audience import AudienceChecks
from agents.core.rules.check_base import Where, one_based
from agents.core.rules.check_model import DEFAULT_MODEL_KIND, ModelChecks, is_churn_steps
from agents.core.rules.check_timing import TimingChecks
from agents.core.rules.check_window import WindowChecks
from agents.core.rules.model import (
    FORMAT,
    MAX_RULES,
    MAX_TOTAL_STEPS,
    NAME_PATTERN,
    ON_CHANGE,
    ON_CHANGE_PIN,
    ON_CHANGE_RESTART,
    PLACEHOLDERS,
    GuardrailValues,
    Lifecycle,
    Problem,
    Rule,
    RulesError,
    RuleSet,
)
from agents.core.windows import SendWindowSetting

TOP_KEYS = (
    "format",
    "default_timezone",
    "guardrails",
    "lifecycle",
    "send_window",
    "model",
    "rule",
)
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
    "on_change",
    "send_window",
    "model",
)
MAX_PRIORITY = 1_000_000
MAX_CHANNEL = 64
_NAME = re.compile(NAME_PATTERN)
_TOML_LINE = re.compile(r"at line (\d+)")


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


class _Checker(TimingChecks, AudienceChecks, WindowChecks, ModelChecks):
    """The whole file: top-level keys, guardrails, lifecycle, the send window, the
    model, each rule and what spans rules."""

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
        default_zone = self.default_timezone(doc)
        window = self.file_window(doc, default_zone)
        if "model" in doc:
            self.model_values = self.model(doc["model"])
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
        rules = [
            self.rule(i, raw, guardrails, window, default_zone) for i, raw in enumerate(raw_rules)
        ]
        kept = [r for r in rules if r is not None]
        self.across_rules(raw_rules, lifecycle)
        if self.problems:
            return None
        rule_set = RuleSet(tuple(kept), guardrails, lifecycle, model=self.model_values)
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
            line = one_based(self.lines.rule(index))
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

    def guardrails(self, raw: Any) -> GuardrailValues:
        header = one_based(self.lines.section("guardrails"))
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
        header = one_based(self.lines.section("lifecycle"))
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

    def rule(
        self,
        index: int,
        raw: Any,
        guardrails: GuardrailValues,
        file_window: SendWindowSetting | None,
        default_zone: str,
    ) -> Rule | None:
        header = one_based(self.lines.rule(index))
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
        raw_steps = raw.get("steps")
        if isinstance(raw_steps, list) and is_churn_steps(raw_steps):
            kind = raw.get("model", DEFAULT_MODEL_KIND)
            steps = self.churn_steps(raw_steps, kind, path, at("steps"))
            self.churn_anchor(anchor, path, at("anchor"))
        else:
            if "model" in raw:
                self.add(
                    f"{path}.model",
                    "model is for a rule with p_alive_below steps",
                    at("model"),
                )
            steps = self.steps(raw_steps, path, at("steps"))
        if anchor is not None:
            self.settled(anchor, cancel_on, steps, path, at("anchor"))
            self.lifecycle_shapes(anchor, cancel_on, steps, path, at)
        transactional = self.flag(raw, "transactional", path, False, at)
        arbitration = self.flag(raw, "arbitration", path, guardrails.arbitration, at)
        if transactional and raw.get("arbitration") is True:
            self.add(
                f"{path}.arbitration",
                "a transactional rule is never outranked and never outranks: remove arbitration",
                at("arbitration"),
            )
        audience = self.audience(raw.get("audience", {}), path, at("audience"))
        on_change = raw.get("on_change", ON_CHANGE_RESTART)
        if on_change not in ON_CHANGE:
            self.add(
                f"{path}.on_change",
                f"on_change is {' or '.join(repr(c) for c in ON_CHANGE)}: what a published "
                "change does to customers mid-ladder",
                at("on_change"),
            )
        if on_change == ON_CHANGE_PIN and isinstance(anchor, KeyedAnchor):
            self.add(
                f"{path}.on_change",
                "a cart rule restarts at a published change (one ladder per cart): remove "
                'on_change = "pin"',
                at("on_change"),
            )
        send_window = self.rule_window(raw, path, at("send_window"), file_window, default_zone)
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
            on_change=on_change,
            send_window=send_window,
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
