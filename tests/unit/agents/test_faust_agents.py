"""The agents' stop handling (agents/faust_agents.py): a batch in flight finishes
before a stop takes effect, so Faust's acks on stop never cover unprocessed events."""

from __future__ import annotations

import asyncio

import pytest

from agents import faust_agents
from agents.faust_agents import EXIT_STOPPED_MID_BATCH, finish_before_stop


def test_a_stop_mid_batch_lets_the_batch_finish_then_stops() -> None:
    done: list[str] = []

    async def batch() -> None:
        for step in ("outputs", "rows", "settled"):
            await asyncio.sleep(0.01)
            done.append(step)

    async def scenario() -> None:
        agent = asyncio.ensure_future(finish_before_stop(batch()))
        await asyncio.sleep(0.005)  # inside the batch
        agent.cancel()  # what a worker stop does to the agent's task
        with pytest.raises(asyncio.CancelledError):
            await agent
        assert done == ["outputs", "rows", "settled"]  # all of it, before the stop

    asyncio.run(scenario())


def test_a_failing_batch_raises_its_error() -> None:
    async def batch() -> None:
        raise ValueError("send failed")

    with pytest.raises(ValueError, match="send failed"):
        asyncio.run(finish_before_stop(batch()))


def test_a_second_stop_exits_without_acking(monkeypatch: pytest.MonkeyPatch) -> None:
    exits: list[int] = []

    class Exited(Exception):
        pass

    def fake_exit(code: int) -> None:
        exits.append(code)
        raise Exited  # os._exit never returns

    monkeypatch.setattr(faust_agents.os, "_exit", fake_exit)

    async def batch() -> None:
        await asyncio.sleep(10)

    async def scenario() -> None:
        agent = asyncio.ensure_future(finish_before_stop(batch()))
        await asyncio.sleep(0.01)
        agent.cancel()
        await asyncio.sleep(0.01)
        agent.cancel()  # the stop will not wait
        with pytest.raises(Exited):
            await agent

    asyncio.run(scenario())
    assert exits == [EXIT_STOPPED_MID_BATCH]
