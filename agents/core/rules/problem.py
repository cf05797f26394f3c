"""One problem of a rules file (docs/rules.md "Checks"), shared by the rules check
and the send-window check (agents/core/windows.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a rules file: where (a path in the document such as
    ``rule[2].steps[1]``, and a line when known) and what, in a marketer's words."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.path}: {self.message}"
