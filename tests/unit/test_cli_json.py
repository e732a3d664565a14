"""Every printing command of `turnlog` takes --json (the README's promise), found by
walking the real command tree, so a new command without it fails here."""

from __future__ import annotations

from typing import Any

import typer

from turnlog.cli import app, load_extensions

# Commands that run until stopped and print no result: their output is their log, JSON
# lines whenever it is not a terminal (streams.logs). And a pass-through to one of
# Kafka's own tools, whose output is that tool's.
EXEMPT = {"worker session", "worker all", "worker scheduler", "ui", "a2a serve", "dev kafka-cli"}
EXEMPT |= {"budgets watch"}  # the budget watcher, like the workers


def _commands(command: Any, path: tuple[str, ...] = ()) -> dict[str, Any]:
    subs = getattr(command, "commands", None)
    if not subs:
        return {" ".join(path): command}
    found: dict[str, Any] = {}
    for name, sub in subs.items():
        found |= _commands(sub, (*path, name))
    return found


def test_every_printing_command_takes_json() -> None:
    load_extensions()
    commands = _commands(typer.main.get_command(app))
    assert {"settings", "topics ensure", "db migrate", "replay", "events", "show"} <= set(commands)
    missing = sorted(
        name
        for name, command in commands.items()
        if name not in EXEMPT
        and not any("--json" in getattr(p, "opts", ()) for p in command.params)
    )
    assert missing == []
