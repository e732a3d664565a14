"""Session commands of `turnlog`: produce requests, show what they did.

    turnlog send --agent NAME [--session ID] [--follow] "text"
    turnlog approve SESSION CALL_ID [--by WHO] [--reason ...] [--follow]
    turnlog deny SESSION CALL_ID --reason ... [--by WHO] [--follow]
    turnlog cancel SESSION [--reason ...]
    turnlog close SESSION [--reason ...]
    turnlog fork SESSION --at SEQ [--agent NAME] [--session NEW_ID]
    turnlog events SESSION [--from SEQ] [--follow]

Rule: every command produces exactly one request (or reads), then — unless --no-wait —
reports what the session worker did with it, read from the events it caused; the exit
code says how it ended: 0 done/completed, 3 turn failed, 4 cancelled, 5 rejected,
6 no answer in time (is a worker running?), 1 an error of ours (bad settings, no Kafka).
`--follow` keeps reading until the turn the request started or continued ends, printing
progress (tool calls, approval prompts with the command that answers them, streamed
answers). `--json` prints JSON instead: one object, or with --follow one per line.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from agents.events import Event, TokenDelta

__all__ = ["outcome_dict", "register"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
FollowOpt = Annotated[
    bool, typer.Option("--follow", "-f", help="Stream progress until the turn ends.")
]
WaitOpt = Annotated[
    bool, typer.Option("--wait/--no-wait", help="Wait for the worker's decision on it.")
]
TimeoutOpt = Annotated[float, typer.Option(help="Seconds to wait for an outcome.")]


def _client() -> Any:
    from turnlog.client import Client

    return Client.from_settings()


def outcome_dict(outcome: Any) -> dict[str, Any]:
    """The JSON form of a client Outcome (without its events)."""
    return {
        "status": outcome.status,
        "session_id": outcome.session_id,
        "request_id": outcome.request_id,
        "turn_id": outcome.turn_id,
        "answer": outcome.answer,
        "structured": outcome.structured,  # the answer as JSON (an agent's output_schema)
        "reason": outcome.reason,
        "last_seq": outcome.last_seq,
        "cost_nanos": outcome.cost_nanos,
        "usd": round(outcome.cost_nanos / 1e9, 9),
        "usage": None
        if outcome.usage is None
        else {
            "input_tokens": outcome.usage.input_tokens,
            "output_tokens": outcome.usage.output_tokens,
            "cache_read_tokens": outcome.usage.cache_read_tokens,
            "cache_write_tokens": outcome.usage.cache_write_tokens,
        },
        "exit_code": outcome.exit_code,
    }


def _item_json(item: Event | TokenDelta) -> str:
    from schemas.codec import event_to_dict

    if isinstance(item, TokenDelta):
        return json.dumps(
            {
                "kind": "delta",
                "session_id": item.session_id,
                "call_id": item.call_id,
                "index": item.index,
                "text": item.text,
                "done": item.done,
            },
            ensure_ascii=False,
        )
    return json.dumps({"kind": "event", "event": event_to_dict(item)}, ensure_ascii=False)


def _summary_line(outcome: Any) -> str:
    where = f"session {outcome.session_id}"
    if outcome.status == "completed":
        return f"completed · {where} · {outcome.cost_nanos / 1e9:.6f} USD\n{outcome.answer or ''}"
    if outcome.status == "accepted":
        last = outcome.events[-1] if outcome.events else None
        what = f" ({type(last.payload).__name__} at seq {last.seq})" if last else ""
        return f"accepted{what} · {where}"
    if outcome.status == "queued":
        return (
            f"{outcome.reason} · {where} · it starts when the running turn ends "
            f"(drop it: turnlog cancel {outcome.session_id} --queued {outcome.request_id})"
        )
    if outcome.status == "forked":
        return f"forked · new session {outcome.session_id}"
    reason = f": {outcome.reason}" if outcome.reason else ""
    return f"{outcome.status} · {where}{reason}"


async def _run(
    sent_factory: Any,
    *,
    follow: bool,
    wait: bool,
    as_json: bool,
    timeout: float,
    until_default: str = "accepted",
    deltas: bool = True,
    header: bool = True,
) -> int:
    from turnlog._render import LiveRenderer
    from turnlog.client import TIMEOUT_EXIT_CODE, OutcomeTimeout

    async with _client() as client:
        sent = await sent_factory(client)
        if header and not as_json:
            typer.echo(f"session {sent.session_id}  request {sent.request_id}")
        if not wait and not follow:
            if as_json:
                typer.echo(
                    json.dumps(
                        {
                            "status": "sent",
                            "session_id": sent.session_id,
                            "request_id": sent.request_id,
                            "partition": sent.partition,
                        }
                    )
                )
            return 0
        until = "turn" if follow else until_default
        renderer = LiveRenderer(typer.echo, show_deltas=deltas)

        def on_item(item: Event | TokenDelta) -> None:
            if not follow:
                return
            if as_json:
                typer.echo(_item_json(item))
            else:
                renderer(item)

        try:
            outcome = await client.outcome(
                sent, until=until, timeout=timeout, on_item=on_item if follow else None
            )
        except OutcomeTimeout as exc:
            if as_json:
                typer.echo(
                    json.dumps(
                        {
                            "status": "timeout",
                            "session_id": sent.session_id,
                            "request_id": sent.request_id,
                            "reason": str(exc),
                        }
                    )
                )
            else:
                typer.echo(str(exc), err=True)
            return TIMEOUT_EXIT_CODE
    if as_json:
        typer.echo(json.dumps(outcome_dict(outcome), ensure_ascii=False))
    else:
        typer.echo(_summary_line(outcome))
    return int(outcome.exit_code)


def _exit(code: int) -> None:
    if code:
        raise typer.Exit(code)


def send_command(
    text: Annotated[str, typer.Argument(help="The user message.")],
    agent: Annotated[str | None, typer.Option(help="Agent of a new session.")] = None,
    session: Annotated[
        str | None, typer.Option("--session", "-s", help="Continue this session.")
    ] = None,
    follow: FollowOpt = False,
    wait: WaitOpt = True,
    deltas: Annotated[bool, typer.Option(help="Stream the answer's tokens.")] = True,
    timeout: TimeoutOpt = 300.0,
    as_json: JsonOpt = False,
    image: Annotated[
        list[Path] | None,
        typer.Option(
            "--image",
            metavar="FILE",
            help="Attach an image (PNG, JPEG, GIF, WebP) or a PDF; repeatable.",
        ),
    ] = None,
    by_reference: Annotated[
        bool,
        typer.Option(
            "--by-reference",
            help="Put the files in the blob store (TURNLOG_BLOB_DIR) and send their sha256 "
            "instead of the bytes (for files over the request limit).",
        ),
    ] = False,
    client_name: Annotated[
        str | None,
        typer.Option(
            "--client",
            envvar="TURNLOG_CLIENT",
            help="The requester identity the message carries (per-client rate limits and "
            "budgets key on it).",
        ),
    ] = None,
) -> None:
    """Send a user message; a new session (its id is printed) when --session is absent."""
    if session is None and agent is None:
        raise typer.BadParameter(
            "a new session needs --agent (or pass --session)", param_hint="--agent"
        )
    attachments = _attachments(image or [], by_reference)

    async def make(client: Any) -> Any:
        return await client.send_message(
            text, agent=agent, session_id=session, attachments=attachments, client=client_name
        )

    _exit(
        asyncio.run(
            _run(make, follow=follow, wait=wait, as_json=as_json, timeout=timeout, deltas=deltas)
        )
    )


def _attachments(files: list[Path], by_reference: bool) -> list[Any]:
    from agents.errors import ContractError
    from agents.providers.blobs import DirectoryBlobStore, attachment
    from turnlog.settings import load_settings

    store = DirectoryBlobStore(load_settings().blob_dir) if by_reference and files else None
    try:
        return [attachment(f, store=store) for f in files]
    except ContractError as exc:
        raise typer.BadParameter(str(exc), param_hint="--image") from None


def model_command(
    session: Annotated[str, typer.Argument(help="The session id.")],
    model: Annotated[str, typer.Argument(help="A model of the catalog (built-in or yours).")],
    wait: WaitOpt = True,
    timeout: TimeoutOpt = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Switch the session's later LLM calls to MODEL (recorded as ModelChanged; a call in
    flight finishes on its model). Rejected for a model the catalog does not know or one
    that lacks what the session needs (tools, vision)."""

    async def make(client: Any) -> Any:
        return await client.set_model(session, model)

    _exit(asyncio.run(_run(make, follow=False, wait=wait, as_json=as_json, timeout=timeout)))


def approve_command(
    session: Annotated[str, typer.Argument(help="The session id.")],
    call_id: Annotated[str, typer.Argument(help="The tool call awaiting approval.")],
    by: Annotated[str, typer.Option(help="Who decides (recorded in the log).")] = "cli",
    reason: Annotated[str | None, typer.Option(help="Why (recorded).")] = None,
    follow: FollowOpt = False,
    wait: WaitOpt = True,
    timeout: TimeoutOpt = 300.0,
    as_json: JsonOpt = False,
) -> None:
    """Grant a tool call that awaits approval."""

    async def make(client: Any) -> Any:
        return await client.approve(session, call_id, by=by, reason=reason)

    _exit(asyncio.run(_run(make, follow=follow, wait=wait, as_json=as_json, timeout=timeout)))


def deny_command(
    session: Annotated[str, typer.Argument(help="The session id.")],
    call_id: Annotated[str, typer.Argument(help="The tool call awaiting approval.")],
    reason: Annotated[str, typer.Option(help="Why (the model is told).")],
    by: Annotated[str, typer.Option(help="Who decides (recorded in the log).")] = "cli",
    follow: FollowOpt = False,
    wait: WaitOpt = True,
    timeout: TimeoutOpt = 300.0,
    as_json: JsonOpt = False,
) -> None:
    """Deny a tool call that awaits approval (the turn goes on without it)."""

    async def make(client: Any) -> Any:
        return await client.deny(session, call_id, reason=reason, by=by)

    _exit(asyncio.run(_run(make, follow=follow, wait=wait, as_json=as_json, timeout=timeout)))


def cancel_command(
    session: Annotated[str, typer.Argument(help="The session id.")],
    reason: Annotated[str | None, typer.Option(help="Why (recorded).")] = None,
    queued: Annotated[
        str | None,
        typer.Option(
            "--queued",
            metavar="REQUEST_ID",
            help="Drop only this queued message (its request id); the turn goes on.",
        ),
    ] = None,
    drop_queue: Annotated[
        bool, typer.Option("--drop-queue", help="Also drop every queued message.")
    ] = False,
    wait: WaitOpt = True,
    timeout: TimeoutOpt = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Cancel the turn in progress: its LLM calls and tools are stopped and its child
    sessions cancelled; the next queued message then starts (unless --drop-queue).
    Exit code 0 when it was cancelled (or the queued message dropped)."""

    async def make(client: Any) -> Any:
        return await client.cancel(
            session, reason=reason, queued_request_id=queued, drop_queue=drop_queue
        )

    code = asyncio.run(
        _run(make, follow=False, wait=wait, as_json=as_json, timeout=timeout, until_default="turn")
    )
    _exit(0 if code == 4 else code)


def upgrade_command(
    session: Annotated[str, typer.Argument(help="The session id.")],
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="HASH|latest",
            help="The definition hash to move to (turnlog.agents), or latest: the version "
            "the workers serve now.",
        ),
    ] = "latest",
    wait: WaitOpt = True,
    timeout: TimeoutOpt = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Move an idle session to another version of its agent (sessions keep the version
    they started on until moved; recorded as AgentVersionChanged)."""

    async def make(client: Any) -> Any:
        return await client.upgrade(session, to_hash=None if to == "latest" else to)

    _exit(asyncio.run(_run(make, follow=False, wait=wait, as_json=as_json, timeout=timeout)))


def close_command(
    session: Annotated[str, typer.Argument(help="The session id.")],
    reason: Annotated[str | None, typer.Option(help="Why (recorded).")] = None,
    wait: WaitOpt = True,
    timeout: TimeoutOpt = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Close the session (a turn in progress is cancelled); it accepts nothing after."""

    async def make(client: Any) -> Any:
        return await client.close_session(session, reason=reason)

    _exit(
        asyncio.run(
            _run(
                make,
                follow=False,
                wait=wait,
                as_json=as_json,
                timeout=timeout,
                until_default="turn",
            )
        )
    )


def fork_command(
    session: Annotated[str, typer.Argument(help="The session to fork.")],
    at: Annotated[int, typer.Option("--at", min=1, help="Last seq of the shared history.")],
    agent: Annotated[str | None, typer.Option(help="Agent of the fork (default: same).")] = None,
    new_session: Annotated[
        str | None, typer.Option("--session", help="Id of the new session (default: new).")
    ] = None,
    wait: WaitOpt = True,
    timeout: TimeoutOpt = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Start a new live session whose history is SESSION's up to --at (the original is
    untouched). Send it messages with `turnlog send --session NEW_ID`."""

    async def make(client: Any) -> Any:
        return await client.fork(session, at, agent=agent, into=new_session)

    _exit(
        asyncio.run(
            _run(
                make,
                follow=False,
                wait=wait,
                as_json=as_json,
                timeout=timeout,
                until_default="turn",
            )
        )
    )


def events_command(
    session: Annotated[str, typer.Argument(help="The session id.")],
    from_seq: Annotated[int, typer.Option("--from", min=1, help="First seq shown.")] = 1,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep waiting for new events.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print a session's own events from Kafka (read_committed), in seq order. Without
    --follow, a session with no events, or --from past its last seq, is an error (exit
    code 1); with it, the command waits for them."""
    from turnlog._render import LiveRenderer
    from turnlog.replay import SessionNotFound

    renderer = LiveRenderer(typer.echo, show_deltas=False)

    async def run() -> None:
        last = 0
        async with _client() as client:
            async for ev in client.events(session, from_seq=1, follow=follow):
                last = ev.seq
                if ev.seq >= from_seq:
                    typer.echo(_item_json(ev)) if as_json else renderer(ev)
            where = (
                f"{client.topics.events} (partition {client.partition_of(session)} of "
                f"{client.partitions})"
            )
        if last == 0:
            raise SessionNotFound(f"Session {session} has no events in {where}.")
        if from_seq > last:
            raise SessionNotFound(
                f"Session {session} has events up to seq {last}; --from {from_seq} is past its end."
            )

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        return


def register(app: typer.Typer) -> None:
    app.command("send")(send_command)
    app.command("approve")(approve_command)
    app.command("deny")(deny_command)
    app.command("cancel")(cancel_command)
    app.command("upgrade")(upgrade_command)
    app.command("model")(model_command)
    app.command("close")(close_command)
    app.command("fork")(fork_command)
    app.command("events")(events_command)
