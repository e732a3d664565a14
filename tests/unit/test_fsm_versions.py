"""Agent versions: a session runs on the definition it started with until an event moves
it (agents.versions)."""

from __future__ import annotations

from agents.definitions import definition_hash
from agents.events import AgentVersionChanged, LlmCallRequested, SendMessage, UpgradeAgent
from agents.fold import fold
from agents.registry import AgentRegistry
from tests.unit.test_fsm_support import REGISTRY, Driver, agent, make_registry, types

V1 = REGISTRY.get("assistant")
V2 = agent("assistant", system_prompt="You are assistant, version two.")
V2_FOLLOW = agent("assistant", system_prompt="You are assistant, v3.", on_change="follow")


def session_on_v1() -> Driver:
    d = Driver()
    d.send(SendMessage("hello"), agent="assistant")
    d.answer("hi")
    assert d.state.definition_hash == definition_hash(V1)
    return d


def serving(*current: object, old: tuple[object, ...] = (V1,)) -> AgentRegistry:
    return make_registry(*current).with_versions(old)  # type: ignore[arg-type]


def _prompt_hash(events: list) -> str:
    return next(
        e.payload for e in events if isinstance(e.payload, LlmCallRequested)
    ).system_prompt_hash


def test_a_changed_file_does_not_change_a_pinned_session() -> None:
    d = session_on_v1()
    d.registry = serving(V2)
    events = d.send(SendMessage("again"))
    assert "AgentVersionChanged" not in types(events)
    assert _prompt_hash(events) == REGISTRY.info("assistant").system_prompt_hash
    assert d.state.definition_hash == definition_hash(V1)


def test_a_following_agent_moves_at_the_next_turn_start_and_says_so() -> None:
    d = session_on_v1()
    d.registry = serving(V2_FOLLOW)
    events = d.send(SendMessage("again"))
    assert types(events)[0] == "AgentVersionChanged"
    changed = events[0].payload
    assert isinstance(changed, AgentVersionChanged)
    assert (changed.from_hash, changed.to_hash, changed.reason) == (
        definition_hash(V1),
        definition_hash(V2_FOLLOW),
        "follow",
    )
    assert _prompt_hash(events) == d.registry.info("assistant").system_prompt_hash
    assert fold(d.log, "s1") == d.state


def test_a_version_nobody_serves_moves_to_the_served_one_recorded() -> None:
    d = session_on_v1()
    d.registry = make_registry(V2)  # v1's content was never published
    events = d.send(SendMessage("again"))
    assert types(events)[0] == "AgentVersionChanged"
    assert events[0].payload.reason == "unavailable"
    assert d.state.definition_hash == definition_hash(V2)


def test_upgrade_moves_an_idle_session_to_the_served_or_a_named_version() -> None:
    d = session_on_v1()
    d.registry = serving(V2)
    events = d.send(UpgradeAgent())
    assert types(events) == ["AgentVersionChanged"]
    assert d.state.definition_hash == definition_hash(V2)
    # and back, by hash
    events = d.send(UpgradeAgent(definition_hash(V1)))
    assert events[0].payload.reason == "upgrade"
    assert d.state.definition_hash == definition_hash(V1)
    assert fold(d.log, "s1") == d.state


def test_upgrade_during_a_turn_is_rejected() -> None:
    d = Driver(serving(V2))
    d.send(SendMessage("hello"), agent="assistant")
    events = d.send(UpgradeAgent(definition_hash(V1)))
    assert types(events) == ["RequestRejected"]


def test_a_harmless_edit_keeps_its_hash_only_if_nothing_changed() -> None:
    # the hash covers the whole definition: any edit is a new version (verify --agents
    # tells whether it decides anything differently)
    assert definition_hash(V1) != definition_hash(V2)
    assert definition_hash(agent("assistant")) == definition_hash(V1)


def test_the_request_sent_to_the_model_is_the_pinned_versions_not_the_files() -> None:
    from agents.context import build_llm_request
    from agents.fsm import decide_built

    d = session_on_v1()
    d.registry = serving(V2)
    _, after, built = decide_built(d.state, d.request(SendMessage("again")), d.registry)
    (request,) = built.values()
    assert request.system == V1.system_prompt
    # and the executor's rebuild from the state agrees
    call = after.turn.llm  # type: ignore[union-attr]
    assert build_llm_request(after, call, d.registry).digest() == request.digest()
