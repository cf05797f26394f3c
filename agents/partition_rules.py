"""The rules versions of the customer processor's partitions (docs/rules.md
"Changing rules"): each partition's :class:`RuleHistory`, the engine that runs it, and
how a version is adopted - once, at its effective time or, when the partition's clock
has passed that (a late version), just after the clock, logged and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from agents.core.engine import Engine
from agents.core.rules import RulesError, RuleSet, load_rules
from agents.core.rules.history import RuleHistory, Version, compatible, set_id
from agents.messages import CODE_INVALID_RULES
from agents.partition import PartitionRuntime
from agents.wire import BadMessage, time_text

log = logging.getLogger(__name__)


class PartitionVersions:
    """The versions every partition starts from and how each adopts more."""

    def __init__(self, engine: Engine, published: Sequence[Version] = ()) -> None:
        self.engine = engine
        # The worker's rules: every partition's history starts from them; a change
        # after them must keep their lifecycle.
        self.seed = RuleHistory(engine.history.versions[:1])
        # Published versions the worker read from the rules topic at start; each
        # partition adopts those it has not switched to yet, as it would a marker.
        self.published = tuple(v for v in published if v.effective_at is not None)
        # Versions a partition learned of after its clock had passed their time.
        self.late = 0

    def engine_for(self, history: RuleHistory) -> Engine:
        """The engine of a partition: the worker's own while it runs the seed alone."""
        return self.engine if history == self.seed else self.engine.with_history(history)

    def restore(self, rt: PartitionRuntime, watermark: int) -> None:
        """A partition seen again after its assignment adopts the published versions
        it has not (its own were read back from its rows)."""
        for v in self.published:
            assert v.effective_at is not None
            try:
                self.adopt(rt, v.id, v.rules, v.text, v.effective_at, watermark)
            except BadMessage as exc:  # checked by publish; a refusal here is logged
                log.error(
                    "partition %d: published rules version %s refused: %s", rt.partition, v.id, exc
                )

    def marker(
        self, rt: PartitionRuntime, version: str, effective_at: int, text: str, watermark: int
    ) -> bool:
        """A ``rules`` marker's version, adopted unless known (or refused before);
        True when the partition's history changed (its due index must be rebuilt)."""
        if self.known(rt, version, effective_at) or version in rt.refused:
            return False
        try:
            rules = load_rules(text)
        except RulesError as exc:
            rt.refused.add(version)
            raise BadMessage(
                f"control/rules: the rules do not load: {exc}", CODE_INVALID_RULES
            ) from None
        try:
            self.adopt(rt, version, rules, text, effective_at, watermark)
        except BadMessage:
            rt.refused.add(version)
            raise
        return True

    @staticmethod
    def known(rt: PartitionRuntime, version: str, effective_at: int) -> bool:
        return any(
            v.id == version and v.effective_at == effective_at for v in rt.engine.history.versions
        )

    def adopt(
        self,
        rt: PartitionRuntime,
        version: str,
        rules: RuleSet,
        text: str,
        effective_at: int,
        watermark: int,
    ) -> None:
        """Add the version to the partition's history: applied at its effective time,
        or just after the partition's clock if that has passed it (a late version,
        logged and counted); an incompatible or out-of-order one is refused."""
        if self.known(rt, version, effective_at):
            return
        if set_id(rules) != version:
            raise BadMessage(
                f"control/rules: version {version[:40]!r} is not the rules' set id {set_id(rules)}",
                CODE_INVALID_RULES,
            )
        problems = compatible(self.seed.current.rules, rules)
        if problems:
            why = "; ".join(str(p) for p in problems)
            raise BadMessage(f"control/rules: version {version}: {why}", CODE_INVALID_RULES)
        history = rt.engine.history
        applied = effective_at if effective_at > watermark else watermark + 1
        last = history.current.applied_at
        if last is not None and applied <= last:
            raise BadMessage(
                f"control/rules: version {version} takes effect at {time_text(applied)}, not "
                f"after version {history.current.id} at {time_text(last)}",
                CODE_INVALID_RULES,
            )
        if applied != effective_at:
            self.late += 1
            log.warning(
                "partition %d learned of rules version %s late: declared effective at %s, "
                "its clock was at %s; applied at %s. See retention_rules_late_total.",
                rt.partition,
                version,
                time_text(effective_at),
                time_text(watermark),
                time_text(applied),
            )
        rt.engine = self.engine_for(
            history.add(Version(version, rules, text, effective_at, applied))
        )
        rt.history_changed = True

    @staticmethod
    def states(rt: PartitionRuntime, watermark: int) -> list[tuple[Version, bool, bool]]:
        """The partition's versions with (in force, scheduled) as its clock stands: in
        force is the newest applied at or before the clock, scheduled any applied after."""
        history = rt.engine.history
        now = history.at(watermark)
        return [
            (v, v is now, v.applied_at is not None and v.applied_at > watermark)
            for v in history.versions
        ]
