"""The stream clock of a customer partition and the manual wall clock."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.core.clock import (
    NEVER,
    STREAM,
    WALL,
    ManualClock,
    StreamClock,
    clock_mode,
    source_name,
    system_clock,
)
from agents.core.settings import DAY, HOUR
from tests.unit.agents.factories import T0, at

PURCHASES = source_name("retention.purchases", 0)
SESSIONS = source_name("retention.sessions", 0)
SOURCE_3 = source_name("retention.consents", 1)


def clock(lateness: int = 0) -> StreamClock:
    return StreamClock((PURCHASES, SESSIONS), lateness)


def test_source_names_are_topic_colon_partition() -> None:
    assert PURCHASES == "retention.purchases:0"


def test_a_source_that_has_sent_nothing_holds_the_watermark_back() -> None:
    c = clock()
    assert c.watermark() == NEVER
    c.observe(PURCHASES, at(days=10))
    assert c.watermark() == NEVER


def test_the_watermark_is_the_minimum_over_sources() -> None:
    c = clock()
    c.observe(PURCHASES, at(days=10))
    c.observe(SESSIONS, at(days=3))
    assert c.watermark() == at(days=3)
    c.observe(SESSIONS, at(days=12))
    assert c.watermark() == at(days=10)


def test_an_older_event_does_not_move_a_source_back() -> None:
    c = clock()
    c.observe(PURCHASES, at(days=10))
    c.observe(SESSIONS, at(days=10))
    c.observe(PURCHASES, at(days=2))
    assert c.watermark() == at(days=10)


def test_lateness_is_subtracted() -> None:
    c = clock(lateness=DAY)
    c.observe(PURCHASES, at(days=10))
    c.observe(SESSIONS, at(days=10, hours=6))
    assert c.watermark() == at(days=9)


def test_markers_raise_a_source_and_an_advance_from_every_source_moves_the_clock() -> None:
    c = clock(lateness=DAY)
    c.observe(PURCHASES, at(days=10))
    c.mark(PURCHASES, at(days=40))
    assert c.watermark() == NEVER  # sessions have said nothing yet
    c.mark(SESSIONS, at(days=40))
    assert c.watermark() == at(days=40)
    c.mark(SESSIONS, at(days=20))  # an older marker changes nothing
    assert c.watermark() == at(days=40)
    c.observe(PURCHASES, at(days=45))
    c.observe(SESSIONS, at(days=45))
    assert c.watermark() == at(days=44)  # events beyond the marker take over again


def test_restore_from_to_dict_gives_the_same_watermark() -> None:
    c = clock(lateness=HOUR)
    c.observe(PURCHASES, at(days=3))
    c.observe(SESSIONS, at(days=5))
    c.mark(SESSIONS, at(days=9))
    data = orjson.loads(orjson.dumps(c.to_dict()))
    restored = StreamClock.restore((PURCHASES, SESSIONS), HOUR, data)
    assert restored.watermark() == c.watermark() == at(days=3) - HOUR
    assert restored == c


def test_restore_without_data_starts_from_nothing() -> None:
    assert StreamClock.restore((PURCHASES,), DAY, None).watermark() == NEVER


def test_a_clock_with_no_sources_never_advances() -> None:
    c = StreamClock((), 0)
    c.observe(PURCHASES, at(days=1))
    assert c.watermark() == NEVER


def test_manual_clock_moves_only_when_told() -> None:
    wall = ManualClock(T0)
    assert wall() == wall() == T0
    wall.advance(90.5)
    assert wall() == T0 + 90_500_000


def test_system_clock_is_micros_since_the_epoch() -> None:
    assert 1_700_000_000_000_000 < system_clock() < 5_000_000_000_000_000


MOVES = st.lists(
    st.tuples(
        st.sampled_from(["observe", "mark"]),
        st.sampled_from([PURCHASES, SESSIONS, "retention.consents:0"]),
        st.integers(min_value=0, max_value=50),
    ),
    max_size=40,
)


@given(MOVES, st.integers(min_value=0, max_value=10))
def test_the_cached_watermark_is_always_the_one_computed_afresh(
    moves: list[tuple[str, str, int]], lateness: int
) -> None:
    # The cache survives moves of a source above the minimum; whatever the order
    # of events and markers (from a source of the clock or not), it must equal a
    # clock rebuilt from the same data.
    c = StreamClock((PURCHASES, SESSIONS, SOURCE_3), lateness)
    for kind, source, t in moves:
        getattr(c, kind)(source, t)
        fresh = StreamClock.restore(c.sources, lateness, orjson.loads(orjson.dumps(c.to_dict())))
        assert c.watermark() == fresh.watermark()


def test_the_config_string_picks_the_clock_mode_and_stays_its_name() -> None:
    assert clock_mode("wall") is WALL and WALL.name == "wall" and not WALL.event_time
    assert clock_mode("stream") is STREAM and STREAM.name == "stream" and STREAM.event_time
    with pytest.raises(ValueError, match="unknown clock mode 'live'"):
        clock_mode("live")


def test_wall_mode_reads_the_wall_and_leaves_the_stream_clock_alone() -> None:
    c, wall = clock(), ManualClock(at(days=3))
    WALL.observe(c, PURCHASES, at(days=10))
    WALL.observe(c, SESSIONS, at(days=10))
    assert c.watermark() == NEVER
    assert WALL.now(c, wall) == at(days=3)
    assert not WALL.is_late(at(days=1), at(days=3))  # nothing is late on the wall clock


def test_stream_mode_reads_the_watermark_the_events_moved() -> None:
    c, wall = clock(), ManualClock(at(days=3))
    STREAM.observe(c, PURCHASES, at(days=10))
    STREAM.observe(c, SESSIONS, at(days=12))
    assert STREAM.now(c, wall) == at(days=10)
    assert STREAM.is_late(at(days=10), STREAM.now(c, wall))
    assert not STREAM.is_late(at(days=10) + 1, STREAM.now(c, wall))
