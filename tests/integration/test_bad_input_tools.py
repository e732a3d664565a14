"""Bad input from the MODEL on the live platform: a tool call that tries to leave the
sandbox, or to fetch a host that is not allowed, ends as ToolCallFailed with the tool's
refusal on the session log, the model is told, and the turn still completes. (The tools'
refusals themselves are unit-tested in tests/unit/test_tools_*.py.)
"""

from __future__ import annotations

from pathlib import Path

from agents.events import (
    LlmCallCompleted,
    PolicyAction,
    SendMessage,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    TurnCompleted,
)
from agents.tools import ToolSettings
from streams.topics import TopicNames
from tests.support.live import (
    live_platform,
    load_agents,
    load_script,
    new_session_id,
)


async def test_traversal_and_disallowed_host_are_refused_on_the_log(
    kafka_bootstrap: str, names: TopicNames, tmp_path: Path
) -> None:
    sandbox = tmp_path / "sandbox" / "inner"
    sandbox.mkdir(parents=True)
    # If the traversal were followed, this is what it would read.
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0:SECRET\n")
    settings = ToolSettings(sandbox_dir=sandbox, allowed_hosts=("api.allowed.test",))
    async with live_platform(
        kafka_bootstrap,
        names,
        registry=load_agents(),
        provider=load_script("script.yaml"),
        tool_settings=settings,
    ) as live:
        cases = {
            "read passwd": ("read_file", ("../../etc/passwd", "'..'", "sandbox")),
            "fetch example": ("http_get", ("http://example.com/", "refused", "example.com")),
        }
        sessions = {text: new_session_id("reader") for text in cases}
        for text, session in sessions.items():
            await live.client.send(session, SendMessage(f"please {text}"), agent="reader")
        for text, session in sessions.items():
            tool, says = cases[text]
            done = await live.log.wait_for_type(session, TurnCompleted)
            events = live.log.events(session)
            [requested] = live.log.of_type(session, ToolCallRequested)
            assert requested.name == tool and requested.decision is PolicyAction.ALLOW
            [failed] = live.log.of_type(session, ToolCallFailed)
            assert failed.call_id == requested.call_id
            for phrase in says:
                assert phrase in failed.error, (phrase, failed.error)
            assert "SECRET" not in failed.error
            assert not live.log.of_type(session, ToolCallCompleted)
            # The model was told the refusal (the script echoes the tool result).
            answer = next(e for e in events if e.seq == done.answer_seq).payload
            assert isinstance(answer, LlmCallCompleted)
            assert failed.error in answer.text
        live.worker.assert_alive()
