"""The fast paths, measured against the plain code they replace, now that restores read
snapshots (issue 13 asked which of them still pay for their complexity).

Run: .venv/bin/python bench/fastpaths.py [--events N] [--rounds R]

Each pair runs interleaved (A B, B A, ...) in one process, rates per CPU-second of this
process (time.process_time), best of the rounds:

  - decode: the generated fast reader (schemas/_fastread.py, the path of the projector,
    replay and a restore's tail) vs fastavro's reference reader, over the events of one
    generated session log;
  - evolve: the positional state construction of agents.evolve._next vs
    SessionState._replace, folding the same log from scratch (replay, verify, a fork's
    base, a session rebuilt without a snapshot);
  - decide: with the shell's ContextMemo vs without (every LLM call's messages built
    whole), producing the log of one long session.

Writes the figures, with this command, to the "Fast paths" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import fsm as fsm_bench  # bench/ is on sys.path: these run as scripts
from _report import write_section

import agents.evolve as evolve_module
from agents.context import ContextMemo
from agents.events import Event
from agents.fold import fold
from agents.state import SessionState
from schemas import codec


def _replace_next(state: SessionState, ev: Event, **changes: Any) -> SessionState:
    """agents.evolve._next as plain code: the same state, through NamedTuple._replace."""
    cid = ev.causation_id
    recent = state.recent_requests
    if cid is not None and (not recent or recent[-1] != cid):
        if len(recent) >= evolve_module.RECENT_REQUESTS:
            recent = recent[1 - evolve_module.RECENT_REQUESTS :]
        recent = (*recent, cid)
    return state._replace(last_seq=ev.seq, recent_requests=recent, **changes)


def ab(
    rounds: int, n: int, a: Callable[[], object], b: Callable[[], object]
) -> tuple[float, float]:
    """Best rate (n per CPU-second) of `a` and of `b`, run interleaved."""
    best = {0: float("inf"), 1: float("inf")}
    for r in range(rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for which in order:
            start = time.process_time()
            (a if which == 0 else b)()
            best[which] = min(best[which], time.process_time() - start)
    return n / best[0], n / best[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()

    reg = fsm_bench.registry()
    log, _ = fsm_bench.session_log(args.events, reg)
    sid = log[0].session_id
    n = len(log)

    blobs = [codec.encode_event(e) for e in log]
    writers = [codec._writer_of("Event", b) for b in blobs]
    fast_dec, ref_dec = ab(
        args.rounds,
        n,
        lambda: [codec.decode_event(b) for b in blobs],
        lambda: [
            codec._decode_with_fastavro("Event", b, w) for b, w in zip(blobs, writers, strict=True)
        ],
    )

    positional = evolve_module._next

    def fold_with(step: Callable[..., SessionState]) -> Callable[[], object]:
        def run() -> object:
            evolve_module._next = step
            try:
                return fold(log, sid)
            finally:
                evolve_module._next = positional

        return run

    assert fold_with(_replace_next)() == fold_with(positional)()
    pos_rate, rep_rate = ab(args.rounds, n, fold_with(positional), fold_with(_replace_next))

    def decide_with(memo: bool) -> Callable[[], object]:
        def run() -> object:
            fsm_bench.MEMO = ContextMemo() if memo else None
            return fsm_bench.session_log(args.events, reg)

        return run

    memo_rate, whole_rate = ab(max(2, args.rounds // 3), n, decide_with(True), decide_with(False))

    rows = [
        ("decode", "generated fast reader", fast_dec, "fastavro reference reader", ref_dec),
        ("evolve (fold)", "positional _next", pos_rate, "SessionState._replace", rep_rate),
        ("decide", "with the shell's ContextMemo", memo_rate, "no memo", whole_rate),
    ]
    for what, a_name, a_rate, b_name, b_rate in rows:
        print(
            f"{what:14s} {a_name:30s} {a_rate:>10,.0f}/s   {b_name:28s} {b_rate:>10,.0f}/s"
            f"   {a_rate / b_rate:4.2f}x"
        )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = "\n".join(
        f"| {what} | {a_name} | {a_rate:,.0f} | {b_name} | {b_rate:,.0f} | {a_rate / b_rate:.2f}× |"
        for what, a_name, a_rate, b_name, b_rate in rows
    )
    write_section(
        "## Fast paths",
        f"""## Fast paths

`.venv/bin/python bench/fastpaths.py --events {args.events} --rounds {args.rounds}` —
measured {when} on {platform.machine()}, Python {platform.python_version()}, one session
log of {n:,} events generated by the FSM (bench/fsm.py's agent mix). Events per
CPU-second of the benchmark process, best of interleaved rounds.

| path | fast path | events/s | plain code | events/s | ratio |
|---|---|---|---|---|---|
{table}

Reading. Since restores read snapshots, none of the three is on a takeover's critical
path any more; each still pays where it runs. The fast reader decodes every event the
projector, replay and verify read, and a restore's tail. Positional construction is
eight lines in `agents.evolve._next` and speeds every fold (replay, verify, a fork's
base, a session rebuilt because its snapshot was unreadable). Without the memo a long
session's decide rebuilds its whole window at every LLM call, quadratic in its length;
the memo is now the shell's (`agents.context.ContextMemo`, one per session worker), not
process-wide state of the core. All three stay.
""",
    )


if __name__ == "__main__":
    main()
