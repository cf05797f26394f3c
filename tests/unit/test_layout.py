"""Commands depend on library modules only (README "Layout").

A command module (streams/commands/*) parses arguments, calls library code and
prints; what two commands, or a command and a test, share lives in a library
module.  Imports are read from the source (function-level ones included).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = "streams.commands"
# The commands' own helper: how a failure is printed, not library code.
SHARED = f"{COMMANDS}._common"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def _modules(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _is_command(name: str) -> bool:
    return name == COMMANDS or name.startswith(COMMANDS + ".")


def test_only_the_cli_reaches_into_command_modules() -> None:
    wrong: dict[str, list[str]] = {}
    for path in _modules("streams", "agents", "schemas", "tests"):
        inside = path.is_relative_to(ROOT / "streams" / "commands")
        used = [
            name
            for name in sorted(_imports(path))
            if _is_command(name) and not (inside and name.startswith(SHARED))
        ]
        if used:
            wrong[str(path.relative_to(ROOT))] = used
    assert not wrong, f"move what these share to a library module: {wrong}"


def test_the_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from streams.commands.report import run\n")
    assert "streams.commands.report" in _imports(module)
