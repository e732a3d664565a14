"""Guardrails benchmark: the core's cost of evaluating 20 guardrail rules per message.

    .venv/bin/python bench/guardrails.py [--repeat 7] [--number 2000]

The 20 rules are an agent file's worth of the deterministic kinds, all on the same side
(input): 8 substring (4 ignoring case), 6 regex, 2 max_length, 2 json_schema, 2
required_fields, all warn except one redact (so a matching message is also rewritten).
Messages: a short question (~60 characters), a long one (~4 KB of prose), one whose
text matches several rules (a key, a card number, an email), and a JSON object (what
the json_schema and required_fields rules parse). Per message kind: the median over
`--repeat` runs of `--number` evaluations of `agents.guardrails.check` (µs per
message), and the same for the rules compiled freshly from the agent file's data (the
cost a worker pays once per agent version, not per message). Nothing here does IO or
asserts; the figures go to BENCHMARKS.md ("Guardrails") by hand.
"""

from __future__ import annotations

import argparse
import json
import statistics
import timeit
from typing import Any

from agents.guardrails import Guardrail, check

SCHEMA = {
    "type": "object",
    "properties": {"order": {"type": "integer"}, "items": {"type": "array"}},
    "required": ["order"],
}


def rules() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    words = ["password", "ssn", "confidential", "internal only"]
    for i, w in enumerate(words):
        out.append({"kind": "substring", "pattern": w, "action": "warn", "name": f"s{i}"})
        out.append(
            {"kind": "substring", "pattern": w.upper(), "ignore_case": True, "action": "warn",
             "name": f"si{i}"}
        )  # fmt: skip
    patterns = [
        r"sk-live-[A-Za-z0-9]+",
        r"\b(?:\d[ -]?){13,16}\b",
        r"[\w.+-]+@[\w-]+\.[\w.]+",
        r"\b\d{3}-\d{2}-\d{4}\b",
        r"(?i)ignore (all )?previous instructions",
        r"\bAKIA[0-9A-Z]{16}\b",
    ]
    for i, p in enumerate(patterns):
        action = "redact" if i == 0 else "warn"
        out.append({"kind": "regex", "pattern": p, "action": action, "name": f"r{i}"})
    out.append({"kind": "max_length", "max": 8000, "action": "warn", "name": "m0"})
    out.append({"kind": "max_length", "max": 2000, "action": "warn", "name": "m1"})
    out.append({"kind": "json_schema", "json_schema": SCHEMA, "action": "warn", "name": "j0"})
    out.append({"kind": "json_schema", "json_schema": {"type": "object"}, "action": "warn",
                "name": "j1"})  # fmt: skip
    out.append({"kind": "required_fields", "fields": ["order"], "action": "warn", "name": "f0"})
    out.append({"kind": "required_fields", "fields": ["order", "items"], "action": "warn",
                "name": "f1"})  # fmt: skip
    return [{"on": "input", **r} for r in out]


MESSAGES = {
    "short (60 chars)": "What were last quarter's sales figures for the north region?",
    "long (4 KB)": ("The quarterly report covers revenue, costs and the outlook. " * 70)[:4096],
    "matching (several rules)": (
        "My key is sk-live-abc123DEF and my card 4111 1111 1111 1111; mail me at "
        "a.person@example.com. This is confidential."
    ),
    "JSON object": json.dumps({"order": 1234, "items": [{"sku": "A1", "qty": 2}] * 5}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=2000)
    args = parser.parse_args()
    data = rules()
    assert len(data) == 20
    compiled = [Guardrail.model_validate(r) for r in data]
    print(f"{len(compiled)} rules; median of {args.repeat} x {args.number} evaluations")
    print("| message | trips | µs per message |")
    print("|---|---|---|")
    for label, text in MESSAGES.items():
        trips = len(check(compiled, "input", text).trips)
        times = timeit.repeat(
            lambda text=text: check(compiled, "input", text),  # type: ignore[misc]
            repeat=args.repeat,
            number=args.number,
        )
        us = statistics.median(times) / args.number * 1e6
        print(f"| {label} | {trips} | {us:.1f} |")
    build = timeit.repeat(
        lambda: [Guardrail.model_validate(r) for r in data], repeat=args.repeat, number=50
    )
    print(f"\nbuilding the 20 rules from the agent file's data: "
          f"{statistics.median(build) / 50 * 1e6:.0f} µs (once per agent version)")  # fmt: skip


if __name__ == "__main__":
    main()
