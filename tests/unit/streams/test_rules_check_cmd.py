"""`retention rules check FILE`: every problem of a rules file with where it is, or
its enabled rules with their versions; the exit status says which (docs/rules.md
"Checks")."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from agents.core.rules import default_rules
from streams.cli import main

ROOT = Path(__file__).resolve().parents[3]

SEVERAL = """format = 1

[guardrails]
min_gap = "soon"

[[rule]]
name = "vip"
priority = 10
anchor = "first_order"
steps = ["P7D", "P3D"]
colour = "gold"

[[rule]]
name = "Welcome Back"
priority = 10
anchor = "last_session"
steps = ["P1D"]
"""


@pytest.fixture(autouse=True)
def _isolated_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RETENTION_HOME", str(tmp_path / "home"))
    for name in list(os.environ):
        if name.startswith("RETENTION_") and name != "RETENTION_HOME":
            monkeypatch.delenv(name)


def _check(path: Path | str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["rules", "check", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_every_problem_is_printed_with_file_line_and_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(SEVERAL)
    code, out, err = _check(path, capsys)
    assert code == 1
    lines = out.splitlines()
    assert len(lines) >= 4, out
    for line in lines:
        assert re.match(rf"{re.escape(str(path))}(:\d+)?: \S.*: \S", line), line
    text = "\n".join(lines)
    assert f"{path}:4: guardrails.min_gap: " in text
    assert f'{path}:11: rule "vip".colour: ' in text
    assert re.search(rf"{re.escape(str(path))}:10: rule \"vip\"\.steps\[2\]: ", text)
    assert "rule[2].name" in text  # a bad name: located by its index
    assert "priority" in text  # the duplicate priority 10
    assert err == f"retention: {path}: {len(lines)} problems\n"


def test_a_valid_file_lists_its_enabled_rules_with_priority_steps_and_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = ROOT / "agents" / "core" / "rules" / "default.toml"
    code, out, err = _check(path, capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"{path}: ok, 3 enabled rules"
    versions = default_rules().versions()
    assert len(lines) == 4
    for line, (name, version) in zip(lines[1:], versions.items(), strict=True):
        assert line.split()[0] == name
        assert f"rule_version {version}" in line
    assert "priority  10" in lines[1] and "steps P7D, P14D, P30D" in lines[1]
    assert "steps max(P7D, 2x median gap)" in lines[3]


def test_disabled_rules_are_named_and_flags_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (ROOT / "docs" / "examples" / "rules" / "transactional.toml").read_text()
    text += '\n[[rule]]\nname = "off"\npriority = 99\nenabled = false\nanchor = "first_order"\n'
    text += 'steps = ["P1D"]\n'
    path = tmp_path / "rules.toml"
    path.write_text(text)
    code, out, _ = _check(path, capsys)
    assert code == 0
    assert out.splitlines()[0] == f"{path}: ok, 2 enabled rules (1 disabled: off)"
    assert "review_request" in out and "transactional" in out.splitlines()[1]


def test_a_file_that_is_not_toml_exits_2_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("format = 1\nname = = 2\n")
    code, out, _ = _check(path, capsys)
    assert code == 2
    assert out.startswith(f"{path}:2: file: this is not valid TOML")


def test_a_missing_file_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _check(tmp_path / "nope.toml", capsys)
    assert (code, out) == (2, "")
    assert err == f"retention: no such rules file: {tmp_path / 'nope.toml'}\n"


WINDOWED = """format = 1
default_timezone = "America/New_York"

[send_window]
windows = [ { days = "weekdays", open = "09:00", close = "20:00" } ]
max_delay = "PT36H"

[[rule]]
name = "welcome"
priority = 10
anchor = "first_order"
steps = ["P1D"]

[[rule]]
name = "receipt"
priority = 20
anchor = "last_order"
steps = ["PT1H"]
send_window = "none"

[[rule]]
name = "sunday"
priority = 30
anchor = "last_order"
steps = ["P7D"]
[rule.send_window]
windows = [ { days = "sun", open = "10:00", close = "12:00" } ]
policy = "drop"
zone = "Europe/Berlin"
"""


def test_a_file_with_send_windows_shows_each_rule_s_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(WINDOWED)
    code, out, _ = _check(path, capsys)
    assert code == 0
    windows = [line.strip() for line in out.splitlines() if "window:" in line]
    assert windows == [
        "window: weekdays 09:00-20:00 (customer zone, default America/New_York), defer max PT36H",
        "window: none (sent at the due time)",
        "window: sun 10:00-12:00 (zone Europe/Berlin), drop",
    ]


def test_a_bad_send_window_is_printed_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(WINDOWED.replace('"none"', '"off"').replace('"09:00"', '"9am"'))
    code, out, _ = _check(path, capsys)
    assert code == 1
    assert out.splitlines() == [
        f"{path}:5: send_window.windows[0].open: '9am' is not a local time: "
        "write HH:MM, 00:00 to 23:59",
        f'{path}:19: rule "receipt".send_window: \'off\' is not a send window: write "none" '
        "(sent at the due time, whatever the file's [send_window] says) or a table such as "
        '{ windows = [{ days = "weekdays", open = "09:00", close = "20:00" }] }',
    ]


def test_the_shipped_lifecycle_file_by_name(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`retention rules check lifecycle` checks the shipped lifecycle.toml
    (docs/lifecycle.md "Rules"): its cart, milestone and anniversary rules listed."""
    monkeypatch.chdir(tmp_path)
    assert main(["rules", "check", "lifecycle"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("lifecycle: ok, 8 enabled rules")
    assert "cart_abandonment" in out and "steps order 3, order 5, order 10" in out
    assert "steps 1 year, 2 years, 3 years" in out
