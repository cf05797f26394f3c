"""RETENTION_FAULT: where and when the crash tests' worker kills itself."""

from __future__ import annotations

import signal

import pytest

from streams.worker.faults import POINTS, FaultInjector


@pytest.fixture
def kills(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sent: list[int] = []
    monkeypatch.setattr("streams.worker.faults.os.kill", lambda pid, sig: sent.append(sig))
    return sent


def test_a_slice_point_fires_once_when_its_output_count_is_reached(kills: list[int]) -> None:
    fault = FaultInjector("after_writes:1000")
    fault.hit("after_sends", 5000)  # another point never counts
    for outputs in (400, 400):
        fault.hit("after_writes", outputs)
    assert kills == []
    fault.hit("after_writes", 700)  # 800 -> 1500 crosses 1000: this slice
    assert kills == [signal.SIGKILL]
    fault.hit("after_writes", 700)
    assert kills == [signal.SIGKILL]


def test_counting_hits_is_the_default_weight(kills: list[int]) -> None:
    fault = FaultInjector("ingest_after_sends:3")
    fault.hit("ingest_after_sends")
    fault.hit("ingest_after_sends")
    assert kills == []
    fault.hit("ingest_after_sends")
    assert kills == [signal.SIGKILL]


def test_unset_never_kills(kills: list[int]) -> None:
    fault = FaultInjector.from_env({})
    for point in POINTS:
        fault.hit(point, 10**9)
    assert kills == []


@pytest.mark.parametrize("spec", ["after_sends", "after_sends:0", "nowhere:3", "after_writes:x"])
def test_a_bad_spec_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="RETENTION_FAULT"):
        FaultInjector(spec)
