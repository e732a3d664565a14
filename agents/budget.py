"""Budgets: per-session and per-turn limits in tokens and USD, reserved before each LLM
call, fail closed.

Rule: before an LLM call is requested, the core reserves an estimate of its cost — the
estimated context tokens plus `max_tokens` of output, priced at the most expensive
model of the call's model chain (a fallback may serve it) — and the call is requested
only if spend + reservation stays within every configured limit. Otherwise the turn ends
with BudgetExceeded and TurnFailed: never "call first and find out". When the outcome
arrives the reservation is released and the actual usage is charged. A child session's
cost (CompleteChildSession) is charged to the parent as it completes.

Money is nano-dollars internally; USD appears only in agent files. Tokens counted against
token limits are all tokens of a call: input, output, cache read and cache write.
Nothing here does IO.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from agents.events import BudgetExceeded, BudgetScope, BudgetUnit
from agents.pricing import ModelInfo, nanos_from_usd

__all__ = ["BudgetConfig", "Reservation", "Spend", "check_budget", "estimate_reservation"]


class BudgetConfig(BaseModel):
    """Limits; a limit left out is unlimited."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    session_tokens: int | None = Field(default=None, gt=0)
    session_usd: Decimal | None = Field(default=None, gt=0)
    turn_tokens: int | None = Field(default=None, gt=0)
    turn_usd: Decimal | None = Field(default=None, gt=0)

    @property
    def session_nanos(self) -> int | None:
        return None if self.session_usd is None else nanos_from_usd(str(self.session_usd))

    @property
    def turn_nanos(self) -> int | None:
        return None if self.turn_usd is None else nanos_from_usd(str(self.turn_usd))


class Reservation(NamedTuple):
    tokens: int
    nanos: int


class Spend(NamedTuple):
    """What has been charged (actual usage plus any outstanding reservation)."""

    tokens: int
    nanos: int


def estimate_reservation(
    models: Sequence[ModelInfo], context_tokens: int, max_tokens: int
) -> Reservation:
    """The hold for one call: context + max output, at the dearest model of the chain."""
    input_price = max(m.input_nanos for m in models)
    output_price = max(m.output_nanos for m in models)
    return Reservation(
        tokens=context_tokens + max_tokens,
        nanos=context_tokens * input_price + max_tokens * output_price,
    )


def check_budget(
    config: BudgetConfig, *, turn: Spend, session: Spend, requested: Reservation
) -> BudgetExceeded | None:
    """The first limit that `requested` would break, turn limits before session limits
    and tokens before USD; None when the call fits every limit."""
    checks: tuple[tuple[BudgetScope, BudgetUnit, int | None, int, int], ...] = (
        (BudgetScope.TURN, BudgetUnit.TOKENS, config.turn_tokens, turn.tokens, requested.tokens),
        (BudgetScope.TURN, BudgetUnit.USD, config.turn_nanos, turn.nanos, requested.nanos),
        (
            BudgetScope.SESSION,
            BudgetUnit.TOKENS,
            config.session_tokens,
            session.tokens,
            requested.tokens,
        ),
        (BudgetScope.SESSION, BudgetUnit.USD, config.session_nanos, session.nanos, requested.nanos),
    )
    for scope, unit, limit, used, want in checks:
        if limit is not None and used + want > limit:
            return BudgetExceeded(scope=scope, unit=unit, limit=limit, used=used, requested=want)
    return None
