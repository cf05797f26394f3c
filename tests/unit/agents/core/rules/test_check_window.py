"""Send windows in the rules file (docs/send-windows.md "In the rules file"): the
file's default zone and ``[send_window]``, a rule's own table or ``"none"``, every
problem located, and rule versions that move only when a rule has a window."""

from __future__ import annotations

import pytest

from agents.core.rules import default_rules, default_text, load_rules
from agents.core.rules.check import check_rules
from agents.core.rules.check_window import describe
from agents.core.rules.model import HOUR, Problem
from agents.core.windows import Policy, Window

RULES = """
[[rule]]
name = "second_purchase"
priority = 10
anchor = "first_order"
steps = ["P7D", "P14D"]
cancel_on = ["purchase"]

[[rule]]
name = "winback"
priority = 20
anchor = "last_order"
steps = ["P30D"]
{winback}
"""
FILE_WINDOW = """
[send_window]
windows = [ { days = "weekdays", open = "09:00", close = "20:00" } ]
max_delay = "PT36H"
"""


def text(head: str = "", winback: str = "") -> str:
    return "format = 1\n" + head + RULES.format(winback=winback)


def problems(source: str) -> list[Problem]:
    found = check_rules(source)
    assert found, "the file was accepted"
    return found


def only(source: str) -> Problem:
    (problem,) = problems(source)
    return problem


def line_of(source: str, start: str) -> int:
    """The 1-based line of the first line of ``source`` that starts with ``start``."""
    return next(i for i, x in enumerate(source.splitlines(), 1) if x.startswith(start))


# --- effective windows -------------------------------------------------------------------


def test_every_rule_inherits_the_file_window_with_the_default_zone() -> None:
    rules = load_rules(text('default_timezone = "America/New_York"\n' + FILE_WINDOW))
    first, second = (r.send_window for r in rules.rules)
    assert first is not None and first == second
    assert first.windows.windows == (Window(frozenset(range(5)), 9 * 60, 20 * 60),)
    assert first.policy == Policy("defer", 36 * HOUR)
    assert first.zone is None and first.default_zone == "America/New_York"


def test_without_default_timezone_the_default_zone_is_utc() -> None:
    rules = load_rules(text(FILE_WINDOW))
    assert all(r.send_window and r.send_window.default_zone == "UTC" for r in rules.rules)


def test_a_rule_table_replaces_the_whole_file_table() -> None:
    own = (
        'send_window = { windows = [ { days = ["sat", "sun"], open = "22:00", '
        'close = "01:00" } ], policy = "drop", zone = "Europe/Berlin" }'
    )
    rules = load_rules(text('default_timezone = "Asia/Kathmandu"\n' + FILE_WINDOW, own))
    inherited, replaced = (r.send_window for r in rules.rules)
    assert inherited is not None and inherited.policy == Policy("defer", 36 * HOUR)
    assert replaced is not None
    assert replaced.windows.windows == (Window(frozenset({5, 6}), 22 * 60, 60),)
    assert replaced.policy == Policy("drop")  # not the file's max_delay
    assert replaced.zone == "Europe/Berlin" and replaced.default_zone == "Asia/Kathmandu"


def test_a_rule_table_written_as_a_section_is_read_too() -> None:
    own = '[rule.send_window]\nwindows = [ { days = "all", open = "10:00", close = "18:00" } ]\n'
    rules = load_rules(text(winback=own))
    assert rules.rules[0].send_window is None
    window = rules.rules[1].send_window
    assert window is not None and window.windows.windows[0].open == 10 * 60


def test_none_bypasses_the_file_window() -> None:
    rules = load_rules(text(FILE_WINDOW, 'send_window = "none"'))
    assert rules.rules[0].send_window is not None
    assert rules.rules[1].send_window is None


def test_no_window_anywhere_and_default_timezone_alone_do_nothing() -> None:
    assert all(r.send_window is None for r in load_rules(text()).rules)
    alone = load_rules(text('default_timezone = "Europe/Berlin"\n'))
    assert all(r.send_window is None for r in alone.rules)
    assert alone.versions() == load_rules(text()).versions()


# --- versions ------------------------------------------------------------------------


def test_the_default_file_keeps_its_versions() -> None:
    assert "send_window" not in default_text() and "default_timezone" not in default_text()
    assert default_rules().versions() == {
        "second_purchase": "a96b21391447",
        "inactivity": "47985eb3b3cf",
        "overdue": "3a1ef9db52f4",
    }


def test_a_window_changes_the_version_and_none_keeps_it() -> None:
    plain = load_rules(text()).versions()
    windowed = load_rules(text(FILE_WINDOW, 'send_window = "none"')).versions()
    assert windowed["second_purchase"] != plain["second_purchase"]
    assert windowed["winback"] == plain["winback"]


def test_default_timezone_changes_only_the_versions_of_rules_with_a_window() -> None:
    berlin = load_rules(
        text('default_timezone = "Europe/Berlin"\n' + FILE_WINDOW, 'send_window = "none"')
    )
    tokyo = load_rules(
        text('default_timezone = "Asia/Tokyo"\n' + FILE_WINDOW, 'send_window = "none"')
    )
    assert berlin.versions()["second_purchase"] != tokyo.versions()["second_purchase"]
    assert berlin.versions()["winback"] == tokyo.versions()["winback"]


# --- problems, located -----------------------------------------------------------------


def test_an_unknown_default_timezone_is_located() -> None:
    problem = only(text('default_timezone = "Mars/Olympus_Mons"\n'))
    assert problem.path == "default_timezone" and problem.line == 2
    assert "not a time zone" in problem.message


@pytest.mark.parametrize("value", ['"europe/berlin"', '"../../etc/passwd"', '"Factory"', "5"])
def test_a_bad_default_timezone_is_refused(value: str) -> None:
    assert only(text(f"default_timezone = {value}\n")).path == "default_timezone"


def test_an_unknown_fixed_zone_is_located_in_the_file_and_in_a_rule() -> None:
    source = text(FILE_WINDOW + 'zone = "Europe/Berlinn"\n')
    file_zone = only(source)
    assert file_zone.path == "send_window.zone" and file_zone.line == line_of(source, "zone")
    own = (
        'send_window = { windows = [ { days = "all", open = "09:00", close = "20:00" } ], '
        'zone = "Moon/Tranquility" }'
    )
    source = text(winback=own)
    rule_zone = only(source)
    assert rule_zone.path == 'rule "winback".send_window.zone'
    assert (
        rule_zone.line == line_of(source, "send_window") and "Moon/Tranquility" in rule_zone.message
    )


def test_a_bad_window_in_the_file_table_is_located() -> None:
    problem = only(text(FILE_WINDOW.replace('"09:00"', '"9am"')))
    assert problem.path == "send_window.windows[0].open" and problem.line == 4
    assert "HH:MM" in problem.message


def test_a_bad_window_in_a_rule_section_is_located_at_its_key() -> None:
    own = (
        "[rule.send_window]\n"
        'policy = "defer"\n'
        'windows = [ { days = ["mon", "someday"], open = "09:00", close = "20:00" } ]\n'
    )
    source = text(winback=own)
    problem = only(source)
    assert problem.path == 'rule "winback".send_window.windows[0].days'
    assert (
        problem.line == line_of(source, "windows = [ { days = [") and "someday" in problem.message
    )


def test_off_is_not_a_send_window_and_the_message_says_what_is() -> None:
    source = text(FILE_WINDOW, 'send_window = "off"')
    problem = only(source)
    assert problem.path == 'rule "winback".send_window'
    assert problem.line == line_of(source, "send_window")
    assert '"none"' in problem.message and "table" in problem.message


def test_the_file_send_window_must_be_a_table() -> None:
    problem = only(text('send_window = "none"\n'))
    assert problem.path == "send_window" and problem.line == 2


def test_max_delay_with_drop_inside_a_rule_is_located() -> None:
    own = (
        'send_window = { windows = [ { days = "all", open = "09:00", close = "20:00" } ], '
        'policy = "drop", max_delay = "PT2H" }'
    )
    source = text(winback=own)
    problem = only(source)
    assert problem.path == 'rule "winback".send_window.max_delay'
    assert problem.line == line_of(source, "send_window")


def test_every_window_problem_is_reported_at_once() -> None:
    head = 'default_timezone = "Nowhere/City"\n' + FILE_WINDOW.replace('"20:00"', '"25:00"')
    found = problems(text(head, 'send_window = "off"'))
    assert [p.path for p in found] == [
        "default_timezone",
        "send_window.windows[0].close",
        'rule "winback".send_window',
    ]


def test_a_window_problem_in_an_unnamed_rule_counts_the_rule_from_one() -> None:
    source = text(winback='send_window = "off"').replace('"winback"', '"Win-Back"')
    assert {p.path for p in problems(source)} == {"rule[2].name", "rule[2].send_window"}


# --- the summary -----------------------------------------------------------------------


def test_describe_says_the_windows_the_zone_and_the_policy() -> None:
    rules = load_rules(
        text(
            'default_timezone = "America/New_York"\n' + FILE_WINDOW,
            'send_window = { windows = [ { days = ["fri", "sat"], open = "22:00", '
            'close = "01:00" }, { days = "sun", open = "10:00", close = "12:30" } ], '
            'policy = "drop", zone = "Europe/Berlin" }',
        )
    )
    first, second = (r.send_window for r in rules.rules)
    assert first is not None and second is not None
    assert describe(first) == (
        "weekdays 09:00-20:00 (customer zone, default America/New_York), defer max PT36H"
    )
    assert describe(second) == "fri,sat 22:00-01:00; sun 10:00-12:30 (zone Europe/Berlin), drop"


def test_windows_written_as_array_tables_are_read_and_located() -> None:
    tables = '\n[[send_window.windows]]\ndays = "weekdays"\nopen = "09:00"\nclose = "{close}"\n'
    rules = load_rules(text(tables.format(close="20:00")))
    assert all(r.send_window is not None for r in rules.rules)
    source = text(tables.format(close="2000"))
    problem = only(source)
    assert problem.path == "send_window.windows[0].close"
    assert problem.line == line_of(source, "[[send_window.windows]]")
