"""How a CLI command reports a failure (README "CLI")."""

from __future__ import annotations

import sys


def fail(message: str, code: int = 1) -> int:
    """One line on stderr; the exit status (2: bad argument, 1: failed operation)."""
    print(f"retention: {message}", file=sys.stderr)
    return code
