"""Rules as data (docs/rules.md "Rules file"): a rules file parsed once into small
objects - anchors, steps, audience predicates, cancels - that the engine runs.

``load_rules(text)`` checks a file and gives its :class:`RuleSet` or raises
:class:`RulesError` with every problem; ``default_rules()`` is the shipped
``default.toml`` (today's rules).
"""

from __future__ import annotations

import functools
from importlib import resources

from agents.core.rules.model import Problem, Rule, RulesError, RuleSet

__all__ = [
    "Problem",
    "Rule",
    "RuleSet",
    "RulesError",
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


def default_text() -> str:
    """The shipped default rules file."""
    return resources.files(__name__).joinpath("default.toml").read_text(encoding="utf-8")


@functools.cache
def default_rules() -> RuleSet:
    """The default rules file, parsed (today's rules and guardrails)."""
    return load_rules(default_text())
