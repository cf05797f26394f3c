"""`retention model fit` and `evaluate` (docs/prediction.md): the published CDNOW
estimates reproduced through the command, a deterministic model file, a clear
refusal below the minimum data, and the holdout comparison an analyst reads."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.core.rules import default_text, load_rules
from agents.core.rules.check import TOP_KEYS
from streams.cli import main
from tests.fixtures.cdnow import Unavailable, sample_file, write_history
from tests.fixtures.tools import missing

# Fader, Hardie & Lee (2005), CDNOW sample, 39 weeks to 1997-09-30.
PUBLISHED = {"r": "0.243", "alpha": "4.41", "a": "0.793", "b": "2.43"}


@pytest.fixture(scope="module")
def cdnow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CDNOW sample as a purchase history; a download that fails is a failure
    under CI, a skip elsewhere."""
    try:
        sample = sample_file()
    except Unavailable as exc:
        missing(f"the CDNOW sample (pip download lifetimes==0.11.3): {exc}")
    out = tmp_path_factory.mktemp("cdnow") / "history.jsonl"
    assert write_history(sample, out) == 6919
    return out


@pytest.fixture(autouse=True)
def _isolated_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RETENTION_") and name != "RETENTION_HOME":
            monkeypatch.delenv(name)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _fit(capsys: pytest.CaptureFixture[str], history: Path, *extra: str) -> dict[str, Any]:
    code, out, err = _run(
        capsys, "model", "fit", "--from-file", str(history), "--until", "1997-09-30",
        "--format", "json", *extra,
    )  # fmt: skip
    assert code == 0, err
    doc: dict[str, Any] = orjson.loads(out)
    return doc


def test_the_cdnow_fit_gives_the_published_bgnbd_parameters(
    cdnow: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = _fit(capsys, cdnow)
    bg = doc["models"]["bgnbd"]
    assert {k: f"{v:.3g}" for k, v in bg["params"].items()} == PUBLISHED
    assert bg["time_unit"] == "week"
    assert bg["log_likelihood"] == pytest.approx(-9582.4, abs=0.05)
    assert (doc["data"]["customers"], doc["data"]["repeat_buyers"]) == (2357, 946)
    assert doc["data"]["from"] == "1997-01-01T00:00:00Z"
    # MBG/NBD fits at least as well (one more way to explain the silent).
    assert doc["models"]["mbgnbd"]["log_likelihood"] >= bg["log_likelihood"]
    # Gamma-Gamma on the same sample: p, q, v = 6.25, 3.74, 15.4 as reported for it.
    spend = doc["gamma_gamma"]["USD"]
    assert {k: f"{v:.3g}" for k, v in spend["params"].items()} == {
        "p": "6.25", "q": "3.74", "v": "15.4",
    }  # fmt: skip
    assert spend["customers"] == 946


def test_the_model_file_is_the_same_for_any_line_order_and_names_its_version(
    cdnow: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    shuffled = tmp_path / "shuffled.jsonl"
    lines = cdnow.read_bytes().splitlines()
    random.Random(7).shuffle(lines)
    shuffled.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "model.json"
    code, text, err = _run(
        capsys, "model", "fit", "--from-file", str(shuffled), "--until", "1997-09-30",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    doc = orjson.loads(out.read_bytes())
    assert doc == _fit(capsys, cdnow)
    # The fit time defaults to the last order at or before --until.
    assert doc["fitted_at"] == "1997-09-30T00:00:00Z"
    assert len(doc["version"]) == 12 and doc["version"] in text and str(out) in text
    moved = _fit(capsys, cdnow, "--fitted-at", "2026-01-01")
    assert moved["fitted_at"] == "2026-01-01T00:00:00Z" and moved["version"] != doc["version"]


def test_format_toml_prints_the_model_table_a_rules_file_takes(
    cdnow: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = _fit(capsys, cdnow)
    code, text, err = _run(
        capsys, "model", "fit", "--from-file", str(cdnow), "--until", "1997-09-30",
        "--format", "toml",
    )  # fmt: skip
    assert code == 0, err
    table = tomllib.loads(text)["model"]
    # The same fit as the model file: its version, unit and every parameter exactly.
    assert table["version"] == doc["version"]
    assert table["time_unit"] == "week" and table["fitted_at"] == "1997-09-30T00:00:00Z"
    for kind in ("mbgnbd", "bgnbd"):
        assert table[kind] == doc["models"][kind]["params"]
    assert table["gamma_gamma"] == {"USD": doc["gamma_gamma"]["USD"]["params"]}
    # Pasted at the end of a rules file, the rules check accepts it (docs/prediction.md
    # "Publishing a model").
    if "model" not in TOP_KEYS:
        pytest.skip("the rules file's [model] table is parsed by the churn_risk engine work")
    rules: Any = load_rules(default_text() + "\n" + text)  # .model: the engine work
    model = rules.model
    assert model.version == doc["version"]
    assert model.kinds["bgnbd"].r == doc["models"]["bgnbd"]["params"]["r"]


def test_too_little_data_is_refused_with_what_is_missing(
    cdnow: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(
        capsys, "model", "fit", "--from-file", str(cdnow), "--until", "1997-01-20",
    )  # fmt: skip
    assert code == 1 and out == ""
    assert "not enough data to fit" in err and "weeks of history (need 8, --min-weeks)" in err
    code, _, err = _run(
        capsys, "model", "fit", "--from-file", str(cdnow), "--until", "1997-09-30",
        "--min-customers", "3000", "--min-repeat-buyers", "1000",
    )  # fmt: skip
    assert code == 1
    assert "2357 customers (need 3000" in err and "946 repeat buyers (need 1000" in err
    code, _, err = _run(
        capsys, "model", "fit", "--from-file", "nope.jsonl", "--until", "2026-01-01"
    )
    assert code == 2 and "no such file" in err


def test_evaluate_compares_the_holdout_in_total_per_frequency_and_per_p_alive_decile(
    cdnow: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    chart = tmp_path / "eval.html"
    code, out, err = _run(
        capsys, "model", "evaluate", "--from-file", str(cdnow), "--calibration-end",
        "1997-09-30", "--until", "1998-06-30", "--format", "json", "--chart", str(chart),
    )  # fmt: skip
    assert code == 0, err
    doc = orjson.loads(out)
    assert doc["holdout_length"] == 39 and doc["customers"] == 2357
    totals = doc["totals"]
    groups = doc["by_frequency"]
    assert [g["x"] for g in groups] == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert sum(g["customers"] for g in groups) == 2357
    assert sum(g["actual"] for g in groups) == totals["actual"] == 1882
    for kind in ("bgnbd", "mbgnbd"):
        # The models predict the holdout to within 20 %, and more for those who bought more.
        assert abs(totals["expected"][kind] / totals["actual"] - 1) < 0.2
        expected = [g["expected"][kind] / g["customers"] for g in groups]
        assert expected == sorted(expected)
        deciles = doc["by_p_alive"][kind]
        assert [d["decile"] for d in deciles] == list(range(1, 11))
        assert sum(d["customers"] for d in deciles) == 2357
    # MBG/NBD: the likeliest-alive tenth orders again far more often than the least.
    mbg = doc["by_p_alive"]["mbgnbd"]
    assert mbg[-1]["share_ordered_again"] > 2 * mbg[0]["share_ordered_again"]
    page = chart.read_text()
    assert page.count("<svg") == 3 and "<script" not in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    code, table, _ = _run(
        capsys, "model", "evaluate", "--from-file", str(cdnow), "--calibration-end",
        "1997-09-30", "--until", "1998-06-30",
    )  # fmt: skip
    assert code == 0 and "total" in table and "1,882" in table and "decile" in table


def test_no_other_command_pays_for_loading_scipy() -> None:
    # Every command's parser is built at start-up; `retention worker` must not load scipy.
    code = (
        "import sys; from streams.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('scipy', 'numpy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
