"""Effects run once per intention, not once per ownership: a rebalance storm.

Session workers join and leave the group every 1-2 s (SIGTERM: plain rebalances, no
crash; and SIGKILL) while sessions run a shell command that is not idempotent, each run counted as a
file in the sandbox (tests/integration/storm.py). What is checked:

- no recorded call ran twice, whoever owned its partition;
- a call recorded as completed ran exactly once;
- a call whose outcome became unknown was not run again: the agent says
  `on_unknown_outcome = "fail"`, so it failed by name;
- every session completed its turns, seqs gap-free, nothing lost;
- rebalances left partitions in place (workers logged `kept` partitions).

On the worker before "effects once per intention", this storm ran 130 of 360 calls twice.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from agents.events import TurnCompleted, TurnFailed
from streams.topics import TopicNames, ensure_topics
from tests.integration.storm import storm
from tests.support.harness import lost_inputs, seq_problems

PARTITIONS = 4
SESSIONS = 60
TURNS = 6


@pytest.fixture
async def names(kafka_bootstrap: str, unique_prefix: str) -> TopicNames:
    return (await ensure_topics(kafka_bootstrap, unique_prefix, partitions=PARTITIONS)).names


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
async def test_a_rebalance_storm_runs_each_side_effect_at_most_once(
    kafka_bootstrap: str, names: TopicNames, unique_prefix: str, tmp_path: Path, kill: bool
) -> None:
    # SIGKILL: a killed owner's calls in flight die with it (bubblewrap's
    # die-with-parent); the new owner never runs them again, they fail as unknown.
    result = await storm(
        kafka_bootstrap,
        names,
        unique_prefix,
        tmp_path,
        sessions=SESSIONS,
        turns=TURNS,
        kill=kill,
        max_changes=8 if kill else 12,
    )
    events = result.events
    assert seq_problems(events) == []
    assert lost_inputs(result.requests, events) == []
    assert [e for e in events if isinstance(e.payload, TurnFailed)] == []
    ended = Counter(e.session_id for e in events if isinstance(e.payload, TurnCompleted))
    assert sorted(ended.values()) == [TURNS] * SESSIONS

    assert len(result.calls) == SESSIONS * TURNS
    assert result.completed | set(result.failed) == set(result.calls)
    assert result.twice == {}, f"side effects run more than once: {result.twice}"
    for key in result.completed:
        runs = result.runs[result.calls[key]]
        assert runs == 1, f"{key} completed but ran {runs} times"
    for key, error in result.failed.items():
        assert "unknown" in error, f"{key} failed for another reason: {error}"
    assert sum(result.runs.values()) <= len(result.calls)
    assert result.changes >= 3, "the storm ended before the workers changed"
    if not kill:
        assert result.kept > 0, "no rebalance kept a partition in place"
        assert result.failed == {}, "a clean stop drains its calls: none may end unknown"
