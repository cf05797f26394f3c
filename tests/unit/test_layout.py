"""Commands depend on library modules only; every module has one home (README "Layout").

A command module (streams/cli/*) parses arguments, calls library code and
prints; what two commands, or a command and a test, share lives in a library
module.  Imports are read from the source (function-level ones included).
docs/design.md "Layout" names the home of each concept; every module under
streams/ (a package's `__init__.py` too, unless it is only a docstring) is named
there exactly once.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = "streams.cli"
# The package itself is `retention`'s entry point (`main`), not a command; the
# commands' own helper says how a failure is printed, not library code.
NOT_COMMANDS = ("__init__", "__main__", "_common")
SHARED = f"{COMMANDS}._common"
# What a newcomer looks for (issue 18): each has a row in docs/design.md "Layout".
CONCEPTS = {
    "worker", "rules", "clock", "dedup", "pending", "reports", "read model",
    "web", "CLI", "bench", "local stack", "contracts",
}  # fmt: skip


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


def _command_modules() -> set[str]:
    folder = ROOT / "streams" / "cli"
    return {f"{COMMANDS}.{p.stem}" for p in folder.glob("*.py") if p.stem not in NOT_COMMANDS}


def _is_command(name: str, commands: set[str]) -> bool:
    return any(name == c or name.startswith(c + ".") for c in commands)


def test_only_the_cli_reaches_into_command_modules() -> None:
    commands = _command_modules()
    assert f"{COMMANDS}.report" in commands and f"{COMMANDS}.local" in commands
    wrong: dict[str, list[str]] = {}
    for path in _modules("streams", "agents", "schemas", "tests"):
        # The commands' helper is theirs alone: outside streams/cli/ it counts as one.
        reach = commands if path.is_relative_to(ROOT / "streams" / "cli") else commands | {SHARED}
        used = [name for name in sorted(_imports(path)) if _is_command(name, reach)]
        if used:
            wrong[str(path.relative_to(ROOT))] = used
    assert not wrong, f"move what these share to a library module: {wrong}"


def test_the_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from streams.cli.report import run\n")
    assert "streams.cli.report" in _imports(module)


def _layout_table() -> dict[str, list[str]]:
    """The paths of each row of docs/design.md's concept table (under "## Layout")."""
    text = (ROOT / "docs" / "design.md").read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    start = lines.index("| concept | path | holds |") + 2  # past the header and its rule
    table: dict[str, list[str]] = {}
    for line in lines[start:]:
        if not line.startswith("| "):
            break
        cells = line.removeprefix("| ").split(" | ")
        table[cells[0]] = re.findall(r"`([^`]+)`", cells[1])
    return table


def _is_marker(module: Path) -> bool:
    """A package's `__init__.py` that holds nothing but its docstring."""
    body = ast.parse(module.read_text()).body
    return module.name == "__init__.py" and len(body) <= 1


def test_every_path_in_the_layout_table_exists() -> None:
    table = _layout_table()
    assert table.keys() >= CONCEPTS, CONCEPTS - table.keys()
    missing = [p for row in table.values() for p in row if not (ROOT / p).exists()]
    assert not missing, f'docs/design.md "Layout" names paths that do not exist: {missing}'


def test_every_streams_module_has_exactly_one_home_in_the_layout_table() -> None:
    paths = [p for row in _layout_table().values() for p in row]
    counts: dict[str, int] = {}
    for module in _modules("streams"):
        if _is_marker(module):
            continue
        name = str(module.relative_to(ROOT))
        counts[name] = sum(name == p or (p.endswith("/") and name.startswith(p)) for p in paths)
    wrong = {name: n for name, n in counts.items() if n != 1}
    assert not wrong, f'docs/design.md "Layout": modules named 0 or 2+ times: {wrong}'
