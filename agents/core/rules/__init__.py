"""Rules as data (docs/rules.md "Rules file"): a rules file parsed once into small
objects - anchors, steps, audience predicates, cancels - that the engine runs.

``load_rules(text)`` checks a file and gives its :class:`RuleSet` or raises
:class:`RulesError` with every problem; ``default_rules()`` is the shipped
``default.toml`` (today's rules); ``builtin_text(name)`` a shipped file by name
(``default``, ``lifecycle``: docs/lifecycle.md "Rules").
"""

from __future__ import annotations

import functools
from importlib import resources

from agents.core.rules.model import Problem, Rule, RulesError, RuleSet

__all__ = [
    "BUILTIN",
    "Problem",
    "Rule",
    "RuleSet",
    "RulesError",
    "builtin_text",
    "default_rules",
    "default_text",
    "load_rules",
]


def load_rules(text: str) -> RuleSet:
    """The rule set of a rules file's text; :class:`RulesError` lists every problem."""
    # Imported on use: checking reads the byte budget, whose module reads the
    # settings, which import this package.
    from agents.core.rules.check import load_rules as load

    return load(text)


# The shipped rules files a setting or a flag may name instead of a path.
BUILTIN = ("default", "lifecycle")


def default_text() -> str:
    """The shipped default rules file."""
    return builtin_text("default")


def builtin_text(name: str) -> str:
    """The shipped rules file ``name`` (one of :data:`BUILTIN`)."""
    if name not in BUILTIN:
        raise KeyError(name)
    return resources.files(__name__).joinpath(f"{name}.toml").read_text(encoding="utf-8")


@functools.cache
def default_rules() -> RuleSet:
    """The default rules file, parsed (today's rules and guardrails)."""
    return load_rules(default_text())
