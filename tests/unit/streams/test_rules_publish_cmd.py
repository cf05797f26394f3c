"""`retention rules publish FILE [--effective T] [--dry-run]`: what it writes, what it
refuses (exit 2, one line each) and what a dry run says, with the rules topic, the
table's stream clocks and the wall clock faked at the boundary (docs/operations.md
"Changing rules live")."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import orjson
import pytest

from agents.core.engine import Engine
from agents.core.rules import default_text, load_rules
from agents.core.rules.history import Version, set_id
from agents.core.settings import CoreSettings
from agents.core.state import CustomerState
from agents.core.timeutil import iso, parse_timestamp, to_micros
from streams.cli import main
from streams.config import Config
from streams.ops import publish as publishing
from streams.ops.registry import Published, Registry, published, record_bytes
from streams.ops.tables import TableSnapshot
from tests.unit.agents.factories import T0, at, feed_in_time_order, purchase

SEED = default_text()
SOONER = SEED.replace('steps = ["P7D", "P14D", "P30D"]', 'steps = ["P5D", "P14D", "P30D"]')
NOW = to_micros(parse_timestamp("2026-12-07T06:00:00Z"))
CLOCK = to_micros(parse_timestamp("2026-06-01T00:00:00Z"))
INPUTS = [
    (t, p)
    for t in ("retention.purchases", "retention.sessions", "retention.consents")
    for p in range(4)
]


class Clock:
    """A partition's stream clock as the table's changelog holds it."""

    def __init__(self, at: int) -> None:
        self.at = at

    def watermark(self) -> int:
        return self.at


@dataclass
class Fake:
    """The deployment as publish sees it: the rules topic, the table, the inputs."""

    records: list[bytes] = field(default_factory=lambda: [record_bytes(published(SEED, None, 0))])
    clocks: dict[int, int] = field(default_factory=lambda: {p: CLOCK for p in range(4)})
    markers: list[tuple[str, int, bytes]] = field(default_factory=list)

    async def registry(self, config: Config) -> Registry:
        from streams.ops.registry import parse_record

        return Registry.of(parse_record(r) for r in self.records)

    async def table(self, config: Config) -> TableSnapshot:
        return TableSnapshot(clocks={p: Clock(c) for p, c in self.clocks.items()})  # type: ignore[misc]

    async def write(self, config: Config, p: Published) -> None:
        self.records.append(record_bytes(p))

    async def send(self, config: Config, version: Version) -> list[tuple[str, int]]:
        from streams.ops.registry import marker_bytes

        self.markers.extend((t, p, marker_bytes(version)) for t, p in INPUTS)
        return INPUTS

    def live(self) -> publishing.Live:
        return publishing.Live(self.registry, self.table, self.write, self.send, lambda: NOW)


@pytest.fixture(autouse=True)
def _isolated_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RETENTION_HOME", str(tmp_path / "home"))
    for name in list(os.environ):
        if name.startswith("RETENTION_") and name != "RETENTION_HOME":
            monkeypatch.delenv(name)
    monkeypatch.setenv("RETENTION_CLOCK", "stream")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Fake:
    f = Fake()
    monkeypatch.setattr(publishing, "LIVE", f.live())
    return f


def publish(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, *args: str
) -> tuple[int, str, str, str]:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    code = main(["rules", "publish", str(path), *args])
    out, err = capsys.readouterr()
    return code, out, err, str(path)


def test_publish_writes_the_version_and_a_marker_to_every_input_partition(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake: Fake
) -> None:
    at = iso(CLOCK + 1)
    code, out, err, path = publish(tmp_path, capsys, SOONER, "--effective", at)
    assert (code, err) == (0, "")
    vid = set_id(load_rules(SOONER))
    assert out == (
        f"{path}: version {vid} effective {at} published to retention.rules; marker "
        "written to 12 input partitions (retention.consents x4, retention.purchases x4, "
        "retention.sessions x4)\n"
    )
    record = orjson.loads(fake.records[-1])
    assert (record["version"], record["effective_at"], record["rules"]) == (vid, at, SOONER)
    assert record["published_at"] == iso(NOW)
    assert {(t, p) for t, p, _ in fake.markers} == set(INPUTS)
    marker = orjson.loads(fake.markers[0][2])
    assert marker == {
        "schema": "control/rules",
        "effective_at": at,
        "rules": SOONER,
        "version": vid,
    }


def test_refusals_exit_2_one_line_each_and_publish_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake: Fake
) -> None:
    before = list(fake.records)
    fake.clocks[2] = CLOCK + 10
    lifecycle = SEED.replace('lapsed_after = "P60D"', 'lapsed_after = "P90D"')
    code, out, err, path = publish(tmp_path, capsys, lifecycle, "--effective", iso(CLOCK + 5))
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith(
        f"retention: {path}: lifecycle: lifecycle cannot change on a live deployment"
    )
    assert lines[1] == (
        f"retention: {path}: effective {iso(CLOCK + 5)} is not after the stream clock of customer "
        f"partition 2 ({iso(CLOCK + 10)}; 1 partition past it): give a later time"
    )
    assert fake.records == before and fake.markers == []


def test_stream_mode_needs_effective_and_a_bad_time_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake: Fake
) -> None:
    code, _, err, path = publish(tmp_path, capsys, SOONER)
    assert (code, err) == (
        2,
        f"retention: {path}: stream clock mode: give --effective T, a time of the stream\n",
    )
    code, _, err, _ = publish(tmp_path, capsys, SOONER, "--effective", "tomorrow")
    assert code == 2 and err.startswith(
        "retention: --effective: expected YYYY-MM-DD or an RFC 3339"
    )
    assert fake.markers == []


def test_a_file_that_does_not_load_is_refused_with_its_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake: Fake
) -> None:
    code, _, err, path = publish(tmp_path, capsys, SEED.replace('"P7D", "P14D"', '"P14D", "P7D"'))
    assert code == 2
    assert (
        err.splitlines()[-1]
        == f"retention: {path}: not published; run retention rules check {path}"
    )
    assert fake.markers == []


def test_the_newest_file_again_is_refused_but_the_same_command_resends_its_markers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake: Fake
) -> None:
    at = iso(CLOCK + 1)
    assert publish(tmp_path, capsys, SOONER, "--effective", at)[0] == 0
    vid = set_id(load_rules(SOONER))
    code, _, err, path = publish(tmp_path, capsys, SOONER, "--effective", iso(CLOCK + 2))
    assert code == 2
    assert err == (
        f"retention: {path}: version {vid} is the newest published (effective {at}): "
        f"publishing it again changes nothing; repeat its command (--effective {at}) to send "
        "its markers again (an earlier version may be published again: a rollback)\n"
    )
    assert len(fake.markers) == len(INPUTS)
    # An interrupted publish is finished by repeating it, even once clocks passed T.
    fake.clocks[0] = CLOCK + 100
    code, out, err, path = publish(tmp_path, capsys, SOONER, "--effective", at)
    assert (code, err) == (0, "")
    assert out.startswith(f"{path}: version {vid} effective {at} was published already; marker")
    assert len(fake.records) == 2  # the seed and the version, once
    assert len(fake.markers) == 2 * len(INPUTS)
    # Going back to the seed's file later is a new version of its own: a rollback.
    back = iso(CLOCK + 200)
    fake.clocks[0] = CLOCK + 150
    code, out, err, path = publish(tmp_path, capsys, SEED, "--effective", back)
    assert (code, err) == (0, "")
    assert f"effective {back} published to" in out
    assert len(fake.records) == 3 and len(fake.markers) == 3 * len(INPUTS)


def mid_ladder(n: int, days: float) -> dict[str, CustomerState]:
    """``n`` customers with one order at T0, the table as of ``days`` after it (the
    second_purchase ladder running, nothing fired yet)."""
    engine = Engine(CoreSettings(rules=load_rules(SEED)))
    out = {}
    for i in range(n):
        cid = f"cus_{i}"
        state = CustomerState(customer_id=cid, partition=0)
        feed_in_time_order(engine, state, [purchase(cid, T0)], at(days=days))
        out[cid] = state
    return out


def test_a_dry_run_says_what_the_change_does_to_customers_mid_ladder(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fake: Fake,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = mid_ladder(3, days=6)
    fake.clocks = {p: at(days=6) for p in range(4)}

    async def table(config: Config) -> TableSnapshot:
        snap = await fake.table(config)
        snap.customers = rows
        return snap

    monkeypatch.setattr(publishing, "LIVE", replace(fake.live(), table=table))
    effective = iso(at(days=6) + 1)
    pinned = SOONER.replace(
        'steps = ["P5D", "P14D", "P30D"]', 'steps = ["P5D", "P14D", "P30D"]\non_change = "pin"'
    )
    # Restart (the default): step 1, moved to day 5, is due before T: superseded.
    code, out, err, path = publish(tmp_path, capsys, SOONER, "--effective", effective, "--dry-run")
    assert (code, err) == (0, "")
    vid = set_id(load_rules(SOONER))
    assert out.splitlines() == [
        f"{path}: version {vid} effective {effective}: dry run, nothing published",
        "  inactivity: 3 customers mid-ladder: unchanged 3",
        "  second_purchase: 3 customers mid-ladder: restarted 3 with 3 steps superseded",
    ]
    code, out, err, path = publish(tmp_path, capsys, pinned, "--effective", effective, "--dry-run")
    assert (code, err) == (0, "")
    assert out.splitlines()[1:] == [
        "  inactivity: 3 customers mid-ladder: unchanged 3",
        "  second_purchase: 3 customers mid-ladder: pinned 3",
    ]
    assert fake.markers == [] and len(fake.records) == 1
