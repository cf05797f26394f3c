"""Every cite of a README or docs/ section names a section that exists.

A cite is the README or a docs/ file followed by one or more quoted section names
(joined by commas, "and" or "to"), as code comments, docstrings and the docs write
them; it may run over several comment lines.  A name is found when it is a heading
of that file or the bold label of a bullet in it, or the start of one up to a
colon, comma or parenthesis (a heading "Byte budget, pending and deduplication" is
found as "Byte budget").  A docs/ file that is named must exist.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("agents", "streams", "tests", "deploy", "docs", "schemas")
TOP_FILES = ("README.md", "Makefile", "Dockerfile", "docker-compose.yml", "pyproject.toml")
SUFFIXES = {".py", ".md", ".yml", ".yaml", ".json", ".toml"}

_QUOTED = r"""(?:"[^\s"][^"]{0,80}"|'[^\s'][^']{0,80}')"""
# A document, an optional markdown link target, a separator (so that the README's
# possessive is no cite), then the quoted names.
_CITE = re.compile(
    r"\b(README|docs/[\w-]+\.md)(?:\]\([^)\s]*\))?(?:,\s*|\s+|\s*\()\(?("
    + _QUOTED
    + r"(?:\s*(?:,|and|to)\s*"
    + _QUOTED
    + r")*)"
)
_DOC = re.compile(r"\bdocs/[\w-]+\.md\b")
_HEADING = re.compile(r"^#+\s+(.+?)\s*$", re.MULTILINE)
_BULLET_LABEL = re.compile(r"^\s*[*-] \*\*(.+?)\*\*", re.MULTILINE)


def _sources() -> list[Path]:
    found = [ROOT / name for name in TOP_FILES if (ROOT / name).exists()]
    for folder in FOLDERS:
        found += [
            p
            for p in (ROOT / folder).rglob("*")
            if p.suffix in SUFFIXES and p.is_file() and "node_modules" not in p.parts
        ]  # node_modules: npm-installed test tools (tests/tools/), not ours
    return sorted(found)


def _flat(text: str) -> str:
    """Lines joined, comment markers dropped, so a cite can run over lines."""
    return re.sub(r"\s*\n\s*(?:#\s*)?", " ", text)


def cites(text: str) -> list[tuple[str, str]]:
    """(document, section name) for every cite in the text."""
    out: list[tuple[str, str]] = []
    for match in _CITE.finditer(_flat(text)):
        out += [(match.group(1), q[1:-1]) for q in re.findall(_QUOTED, match.group(2))]
    return out


def anchors(markdown: str) -> set[str]:
    """The headings and bold bullet labels of a markdown file, markup dropped."""
    found = _HEADING.findall(markdown) + _BULLET_LABEL.findall(markdown)
    return {name.replace("`", "").strip() for name in found}


def is_found(name: str, names: set[str]) -> bool:
    return any(a == name or re.match(re.escape(name) + r"\s*[,:(]", a) for a in names)


def test_a_cite_is_found_across_comment_lines_and_a_missing_section_is_not() -> None:
    design, readme = "docs/design.md", "README"  # not cites themselves: this file is read too
    text = f'# see {design}, "The batched\n    # hot path" and {readme} "Time", "A stuck clock"'
    assert cites(text) == [
        ("docs/design.md", "The batched hot path"),
        ("README", "Time"),
        ("README", "A stuck clock"),
    ]
    assert cites("the README's table") == []
    names = anchors("# T\n## Byte budget, pending and deduplication\n* **A stuck clock**: x\n")
    assert is_found("Byte budget", names) and is_found("A stuck clock", names)
    assert not is_found("Byte", names) and not is_found("Input events", names)


def test_every_cited_section_exists() -> None:
    docs: dict[str, set[str]] = {"README": anchors((ROOT / "README.md").read_text())}
    for path in sorted((ROOT / "docs").glob("*.md")):
        docs[f"docs/{path.name}"] = anchors(path.read_text())
    wrong: list[str] = []
    for path in _sources():
        text = path.read_text()
        where = path.relative_to(ROOT)
        wrong += [f"{where}: {d} is no file" for d in _DOC.findall(text) if d not in docs]
        for doc, name in cites(text):
            if doc in docs and not is_found(name, docs[doc]):
                wrong.append(f'{where}: {doc} "{name}" is no section of it')
    assert not wrong, "\n".join(wrong)
