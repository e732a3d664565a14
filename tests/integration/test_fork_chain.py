"""Forks of forks on the live worker: a fork point inside the source's own fork ancestry
is served by the ancestor that wrote it, and a restarted worker rebuilds such a session
from the log.

Real broker, the real session worker in this process, the demo agents and script.
"""

from __future__ import annotations

from pathlib import Path

from agents.agentfile import registry_from_file
from agents.events import ForkSession, SendMessage, SessionForked, TurnCompleted
from agents.fsm import fold
from agents.providers.scripted import ScriptedProvider
from agents.state import window_entries
from streams.topics import TopicNames
from tests.support.live import live_platform, new_session_id, payloads
from turnlog.replay import load_session_log, replay

ROOT = Path(__file__).resolve().parents[2]


def _platform(bootstrap: str, names: TopicNames, tmp_path: Path):  # type: ignore[no-untyped-def]
    return live_platform(
        bootstrap,
        names,
        registry=registry_from_file(ROOT / "examples/agents.toml"),
        provider=ScriptedProvider.from_file(ROOT / "examples/demo.script.yaml"),
        sandbox=tmp_path,
    )


async def test_a_fork_of_a_fork_inside_the_shared_ancestry_and_after_a_restart(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    a, b, c = new_session_id("a"), new_session_id("b"), new_session_id("c")
    async with _platform(kafka_bootstrap, names, tmp_path) as live:
        await live.client.send(a, SendMessage("what is 17*23?"), agent="assistant")
        first = await live.log.wait_for_type(a, TurnCompleted)
        turn1_end = next(e.seq for e in live.log.events(a) if e.payload is first)
        await live.client.send(a, SendMessage("what is 17*23?"))
        await live.log.wait_for(a, lambda evs: len(payloads(evs, TurnCompleted)) == 2, "a turn 2")

        # b forks a after its first turn and runs a turn of its own.
        await live.client.send(b, ForkSession(a, turn1_end))
        await live.log.wait_for_type(b, SessionForked)
        await live.client.send(b, SendMessage("what is 17*23?"))
        await live.log.wait_for_type(b, TurnCompleted)

        # c forks b at a seq that b inherited from a: served from a's log.
        await live.client.send(c, ForkSession(b, turn1_end - 1))
        forked = await live.log.wait_for_type(c, SessionForked)
        assert (forked.source_session_id, forked.at_seq) == (b, turn1_end - 1)
        assert live.log.events(c)[0].seq == turn1_end
        live.worker.assert_alive()

    # A new worker rebuilds c (fork of a fork) from the log and serves its next turn.
    async with _platform(kafka_bootstrap, names, tmp_path) as live:
        await live.client.send(c, SendMessage("what is 17*23?"))
        done = await live.log.wait_for_type(c, TurnCompleted)
        assert done.turn_no == 2  # turn numbers go on from the shared ancestry
        own = live.log.events(c)
        ancestry = [e for e in live.log.events(a) if e.seq < turn1_end]
        state = fold([*ancestry, *own], c)
        # c's context: a's first turn up to its final answer's call, then c's own turn.
        texts = [e.text for e in window_entries(state.history)]
        assert texts[0] == "what is 17*23?"
        assert texts.count("what is 17*23?") == 2
        live.worker.assert_alive()

    # `turnlog replay` reads the same ancestry (c -> b -> a) and folds to the same state.
    log = await load_session_log(kafka_bootstrap, names, c)
    assert [e.session_id for e in log.events[: log.own_from]] == [a] * (turn1_end - 1)
    assert replay(log).state == state
