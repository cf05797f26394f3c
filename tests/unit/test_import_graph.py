"""No import cycle among the project's modules (docs/design.md, "Layout").

The graph is read from the source with ``ast``: every import counts, at module
level, under ``if TYPE_CHECKING:`` and inside functions, because a cycle hidden
behind a deferred import is still two modules that cannot be understood (or
tested) one without the other.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("streams", "agents", "schemas")


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imported(module: str, is_package: bool, tree: ast.AST) -> set[str]:
    """Every dotted name ``tree`` imports (``from a import b`` also names ``a.b``)."""
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def import_graph(sources: dict[str, tuple[bool, str]]) -> dict[str, set[str]]:
    """module -> the project modules it imports; ``sources``: module -> (is package, code)."""
    graph: dict[str, set[str]] = {m: set() for m in sources}
    for module, (is_package, code) in sources.items():
        for name in imported(module, is_package, ast.parse(code)):
            while name and name not in sources:  # a.b.func -> a.b
                name = name.rpartition(".")[0]
            # A module importing its own package's __init__ (or itself) is no cycle.
            if name and name != module and not module.startswith(name + "."):
                graph[module].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def project_graph() -> dict[str, set[str]]:
    sources = {
        m: (p.name == "__init__.py", p.read_text(encoding="utf-8"))
        for m, p in project_modules().items()
    }
    return import_graph(sources)


def test_no_import_cycle_in_streams_agents_schemas() -> None:
    graph = project_graph()
    assert len(graph) > 50  # the whole tree was read
    assert cycles(graph) == []


def test_the_observers_do_not_import_the_app() -> None:
    graph = project_graph()
    for observer in ("streams.worker.metrics", "streams.web.summary", "streams.web.views"):
        assert "streams.worker.app" not in graph[observer], observer
    assert graph["streams.worker.observe"] <= {"streams.config", "agents.core.engine"}


def test_the_pure_core_imports_no_faust_kafka_or_redis() -> None:
    for module, path in project_modules().items():
        if module.startswith("agents.core"):
            names = imported(module, path.name == "__init__.py", ast.parse(path.read_text()))
            roots = {n.split(".")[0] for n in names}
            assert not roots & {"faust", "mode", "aiokafka", "redis", "streams"}, module


def test_the_rules_package_reads_only_the_core_and_the_record_names() -> None:
    """Rules as data stay pure (docs/rules.md "Rules file"): the rule classes import the
    core, the event kinds of schemas.records, the standard library and orjson only."""
    allowed_roots = {"agents", "schemas", "orjson", "__future__"}
    for module, path in project_modules().items():
        if not module.startswith("agents.core.rules"):
            continue
        names = imported(module, path.name == "__init__.py", ast.parse(path.read_text()))
        for name in names:
            root = name.split(".")[0]
            if root in allowed_roots:
                assert name.startswith(
                    ("agents.core", "schemas.records", "orjson", "__future__")
                ), (
                    module,
                    name,
                )
            else:
                assert root in sys.stdlib_module_names, (module, name)


def test_a_cycle_behind_type_checking_or_a_local_import_is_found() -> None:
    sources = {
        "p": (True, ""),
        "p.app": (False, "from p.metrics import Metrics\n"),
        "p.metrics": (
            False,
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from p.views import V\n",
        ),
        "p.views": (False, "def register():\n    from p import app\n"),
        "p.leaf": (False, "import p.metrics\nfrom . import app\n"),
    }
    assert cycles(import_graph(sources)) == [["p.app", "p.metrics", "p.views"]]
    sources["p.views"] = (False, "def register():\n    pass\n")
    assert cycles(import_graph(sources)) == []


# The offline reference is the oracle the engine is tested against (docs/design.md):
# it reads the rules file with its own code, so it may not use the engine's rule
# classes or the engine itself, not even under TYPE_CHECKING or inside a function.
# Nor the engine's reading of send windows: agents/offline/windows.py is the brute
# force it is tested against (docs/send-windows.md "The brute-force reading").
# Nor the engine's P(alive) and crossing: agents/offline/churn.py has its own.
ENGINE_SIDE = (
    "agents.core.rules",
    "agents.core.engine",
    "agents.core.emissions",
    "agents.core.windows",
    "agents.core.prediction",
)


def engine_side_imports(module: str, is_package: bool, code: str) -> list[str]:
    names = imported(module, is_package, ast.parse(code))
    return sorted(n for n in names if any(n == e or n.startswith(e + ".") for e in ENGINE_SIDE))


def test_the_offline_reference_does_not_import_the_engine_or_its_rule_classes() -> None:
    modules = {m: p for m, p in project_modules().items() if m.startswith("agents.offline")}
    assert {
        "agents.offline.reference",
        "agents.offline.rulebook",
        "agents.offline.windows",
    } <= modules.keys()
    wrong = {
        m: used
        for m, p in modules.items()
        if (used := engine_side_imports(m, p.name == "__init__.py", p.read_text()))
    }
    assert not wrong, wrong


def test_the_reference_check_sees_a_rule_class_imported_anywhere() -> None:
    module = "agents.offline.reference"
    assert engine_side_imports(module, False, "from agents.core.rules.anchors import First\n")
    assert engine_side_imports(module, False, "def f():\n    import agents.core.rules\n")
    assert engine_side_imports(module, False, "from agents.core import engine\n")
    assert engine_side_imports(module, False, "from ..core.rules import load_rules\n")
    assert engine_side_imports(
        "agents.offline.windows", False, "from agents.core.windows import inside\n"
    )
    assert not engine_side_imports(
        "agents.offline.windows", False, "from agents.core.zones import load_zone\n"
    )
    assert not engine_side_imports(module, False, "from agents.core.timeutil import iso\n")
    assert engine_side_imports(
        "agents.offline.churn", False, "from agents.core.prediction import crossing_at\n"
    )
