"""``RETENTION_RULES_FILE`` (streams/config/loading.py): the rules file is read and
checked when the configuration loads, so a worker never starts on a file that cannot
run, and the deprecated aliases cannot silently lose to it (docs/rules.md
"Environment aliases", "Checks")."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.core.rules import builtin_text, default_rules, default_text
from agents.core.settings import DAY, HOUR
from streams.config import Config, ConfigError, load_config
from streams.config.loading import MAX_RULES_FILE_BYTES

ROOT = Path(__file__).resolve().parents[4]
EXAMPLES = ROOT / "docs" / "examples" / "rules"

BAD = """format = 1

[[rule]]
name = "vip"
priority = 10
anchor = "first_order"
steps = ["P7D", "P3D"]

[[rule]]
name = "Bad Name"
priority = 10
anchor = "nowhere"
steps = ["P1D"]
"""


def _load(**env: str) -> Config:
    return load_config({f"RETENTION_{k}": v for k, v in env.items()}, use_stack_file=False)


def _file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_unset_runs_the_default_file_edited_by_the_aliases() -> None:
    config = _load(MIN_GAP="PT48H")
    assert config.rules_file is None and config.rules_text is None
    assert config.core.rules is None
    assert config.core.min_gap == 48 * HOUR
    assert config.core.rule_set.versions() == default_rules().versions()


def test_a_file_reaches_the_core_with_its_rules_and_guardrails() -> None:
    path = EXAMPLES / "collide_arbitrated.toml"
    config = _load(RULES_FILE=str(path))
    assert config.rules_file == str(path)
    assert config.rules_text == path.read_text(encoding="utf-8")
    rules = config.core.rule_set
    assert [r.name for r in rules.active] == ["cross_sell", "second_purchase"]
    assert rules.guardrails.arbitration is True
    assert config.core.rules is rules
    assert config.describe()["rules_file"] == str(path)


def test_the_files_guardrails_win_over_the_core_fields(tmp_path: Path) -> None:
    text = (EXAMPLES / "transactional.toml").read_text()
    text = text.replace("format = 1\n", 'format = 1\n\n[guardrails]\nmin_gap = "P3D"\n', 1)
    config = _load(RULES_FILE=_file(tmp_path, text))
    assert config.core.min_gap == 3 * DAY


def test_an_invalid_file_is_one_line_with_the_count_the_first_problem_and_the_fix(
    tmp_path: Path,
) -> None:
    path = _file(tmp_path, BAD)
    with pytest.raises(ConfigError) as err:
        _load(RULES_FILE=path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"RETENTION_RULES_FILE={path}: ")
    assert " problems, first: line " in message
    assert message.endswith(f"; run retention rules check {path}")


def test_a_file_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"1 problem, first: .*not valid TOML"):
        _load(RULES_FILE=_file(tmp_path, "format = = 1\n"))


def test_a_missing_file_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"RETENTION_RULES_FILE=/nonexistent/r\.toml: cannot"):
        _load(RULES_FILE="/nonexistent/r.toml")


def test_an_oversized_file_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    text = "format = 1\n" + "# padding\n" * (MAX_RULES_FILE_BYTES // 10 + 1)
    with pytest.raises(ConfigError, match="larger than 256 KiB"):
        _load(RULES_FILE=_file(tmp_path, text))


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("MIN_GAP", "P2D"),
        ("SECOND_PURCHASE_STEPS", "P1D,P2D"),
        ("OVERDUE_ENABLED", "false"),
        ("HOLDOUT_PERCENT", "5"),
        ("ATTRIBUTION_WINDOW", "P2D"),
    ],
)
def test_an_alias_beside_a_rules_file_is_refused(env: str, value: str) -> None:
    path = str(EXAMPLES / "collide.toml")
    with pytest.raises(ConfigError) as err:
        _load(RULES_FILE=path, **{env: value})
    message = str(err.value)
    assert "\n" not in message
    assert f"RETENTION_{env} is also set; set it in the rules file" in message


def test_an_alias_in_the_config_toml_beside_a_rules_file_is_refused(tmp_path: Path) -> None:
    toml = tmp_path / "retention.toml"
    toml.write_text("frequency_cap = 3\n")
    env = {"RETENTION_CONFIG": str(toml), "RETENTION_RULES_FILE": str(EXAMPLES / "collide.toml")}
    with pytest.raises(ConfigError, match="RETENTION_FREQUENCY_CAP is also set"):
        load_config(env, use_stack_file=False)


def test_a_shipped_file_by_name_runs_the_lifecycle_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RETENTION_RULES_FILE=lifecycle runs the shipped lifecycle.toml (docs/lifecycle.md
    "Rules"); a file of that name in the working directory still wins."""
    monkeypatch.chdir(tmp_path)
    config = _load(RULES_FILE="lifecycle")
    assert config.rules_text == builtin_text("lifecycle")
    names = [r.name for r in config.core.rule_set.active]
    assert "cart_abandonment" in names and "second_purchase" in names
    (tmp_path / "lifecycle").write_text(default_text(), encoding="utf-8")
    assert _load(RULES_FILE="lifecycle").core.rule_set == default_rules()
