"""The Makefile holds to the docs: every `make X` the README and docs/ name is a target
`make help` lists, and the slow tier is what docs/testing.md says: left out of
`make test` and the tiers, run by `make test-slow`."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = (ROOT / "Makefile").read_text()
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


def _helped_targets() -> set[str]:
    # The lines `make help` prints: "target [target ...]: prerequisites  ## help".
    names: set[str] = set()
    for line in re.findall(r"^([a-z][a-z0-9 -]*):.*## ", MAKEFILE, re.MULTILINE):
        names.update(line.split())
    return names


def _recipe(target: str) -> str:
    match = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)+)", MAKEFILE, re.MULTILINE)
    assert match, f"no recipe for {target}"
    return match.group(1)


def test_every_make_target_the_docs_name_is_listed_by_make_help() -> None:
    named = {
        (path.name, target)
        for path in DOCS
        for target in re.findall(r"`make ([a-z][a-z0-9-]*)", path.read_text())
    }
    assert named, "the docs name no make target"
    missing = sorted(f"{doc}: make {t}" for doc, t in named if t not in _helped_targets())
    assert not missing, missing


def test_the_slow_tier_is_left_out_of_make_test_and_run_by_make_test_slow() -> None:
    for target in ("test", "integration", "e2e"):
        assert '-m "not slow"' in _recipe(target), f"make {target} runs the slow tests"
    assert "-m slow tests" in _recipe("test-slow")
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^\s*"slow: ', pyproject, re.MULTILINE), "the slow marker is not declared"
    testing = (ROOT / "docs" / "testing.md").read_text()
    assert "`make test-slow`" in testing
