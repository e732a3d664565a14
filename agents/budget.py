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

Alerts (soft thresholds, before the hard stop): `alert_at` lists fractions of every limit
the budget sets (session_tokens, session_usd, and day_usd across sessions), `alert_at_usd`
amounts of a session's spend. A session's spend only grows, so a threshold is crossed
once: the decision whose charges take the spend from below a threshold to at or above it
records one BudgetAlert per threshold (agents.fsm, after the handler). Day budgets
(`day_usd`: every session of the agent in one UTC day) are the budget watcher's
(streams.budgets): no session sees the others' spend.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from typing import Annotated, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agents.errors import AgentDefinitionError
from agents.events import BudgetAlert, BudgetExceeded, BudgetLimitReached, BudgetScope, BudgetUnit
from agents.pricing import ModelInfo, nanos_from_usd

__all__ = [
    "LATER_BUDGET_DEFAULTS",
    "BudgetConfig",
    "ProjectBudget",
    "Reservation",
    "Spend",
    "Threshold",
    "block_reason",
    "check_budget",
    "crossed",
    "estimate_reservation",
    "parse_projects",
    "session_alerts",
    "thresholds",
]


class BudgetConfig(BaseModel):
    """Limits; a limit left out is unlimited."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    session_tokens: int | None = Field(default=None, gt=0)
    session_usd: Decimal | None = Field(default=None, gt=0)
    turn_tokens: int | None = Field(default=None, gt=0)
    turn_usd: Decimal | None = Field(default=None, gt=0)
    # Soft thresholds (see the module docstring): fractions of each limit, USD amounts.
    alert_at: tuple[Annotated[float, Field(gt=0, le=1)], ...] = ()
    alert_at_usd: tuple[Annotated[Decimal, Field(gt=0)], ...] = ()
    # Every session of the agent in one UTC day (the budget watcher enforces it).
    day_usd: Decimal | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _alerts_need_a_limit(self) -> BudgetConfig:
        if self.alert_at and not (self.session_tokens or self.session_usd or self.day_usd):
            raise ValueError(
                "alert_at: fractions need a limit to be fractions of "
                "(session_tokens, session_usd or day_usd)"
            )
        return self

    @property
    def day_nanos(self) -> int | None:
        return None if self.day_usd is None else nanos_from_usd(str(self.day_usd))

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


# Fields added after the first release: left out of the definition hash at their default.
LATER_BUDGET_DEFAULTS: dict[str, object] = {"alert_at": [], "alert_at_usd": [], "day_usd": None}


class Threshold(NamedTuple):
    """One soft threshold: `amount` in the limit's unit; `fraction` when it came from
    alert_at (None: an alert_at_usd amount)."""

    amount: int
    fraction: float | None


def thresholds(
    limit: int | None, fractions: Sequence[float], amounts: Sequence[int] = ()
) -> tuple[Threshold, ...]:
    """The thresholds of one limit, in ascending order, one per amount (a fraction and an
    amount that land on the same value are one threshold: the fraction's)."""
    found: dict[int, Threshold] = {a: Threshold(a, None) for a in amounts}
    if limit is not None:
        for f in fractions:
            amount = int((Decimal(str(f)) * limit).to_integral_value(ROUND_CEILING))
            found[amount] = Threshold(amount, f)
    return tuple(found[a] for a in sorted(found))


def crossed(marks: Sequence[Threshold], before: int, after: int) -> tuple[Threshold, ...]:
    """The thresholds a spend going from `before` to `after` reaches: below before, at
    or above after. A spend that only grows crosses each threshold once."""
    return tuple(t for t in marks if before < t.amount <= after)


def session_alerts(
    config: BudgetConfig, session_id: str, before: Spend, after: Spend
) -> list[BudgetAlert]:
    """The BudgetAlerts of a session whose actual spend went from `before` to `after`:
    tokens first, then USD, each in ascending threshold order."""
    if not (config.alert_at or config.alert_at_usd):
        return []
    alerts: list[BudgetAlert] = []
    usd_amounts = [nanos_from_usd(str(a)) for a in config.alert_at_usd]
    for unit, limit, amounts, was, now in (
        (BudgetUnit.TOKENS, config.session_tokens, (), before.tokens, after.tokens),
        (BudgetUnit.USD, config.session_nanos, usd_amounts, before.nanos, after.nanos),
    ):
        if now <= was:
            continue
        for t in crossed(thresholds(limit, config.alert_at, amounts), was, now):
            alerts.append(
                BudgetAlert(
                    scope=BudgetScope.SESSION.value,
                    key=session_id,
                    unit=unit.value,
                    threshold=t.amount,
                    spent=now,
                    limit=limit,
                    fraction=t.fraction,
                )
            )
    return alerts


def block_reason(block: BudgetLimitReached | None, now: datetime) -> str | None:
    """Why a new turn (or the next LLM call) is refused: a budget across sessions is
    spent and its period has not ended at `now`; None when nothing blocks."""
    if block is None or now >= block.until:
        return None
    return (
        f"The {block.scope} budget of {block.key!r} for {block.period} is spent: "
        f"{block.spent} of its limit of {block.limit} nano-dollars (day_usd) across its "
        f"sessions; no new turn until {block.until.isoformat()}."
    )


class ProjectBudget(BaseModel):
    """A project's budget across sessions (`[projects.<name>]` in an agent file): every
    session of the agents whose definition says `project = "<name>"`, per UTC day."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    day_usd: Decimal = Field(gt=0)
    alert_at: tuple[Annotated[float, Field(gt=0, le=1)], ...] = ()

    @property
    def day_nanos(self) -> int:
        return nanos_from_usd(str(self.day_usd))


def parse_projects(
    raw: object, source: str = "<data>", table: str = "projects"
) -> dict[str, ProjectBudget]:
    """The `projects` table of an agent file (absent: none), validated; errors name the
    project and the field. `table = "clients"`: the per-client budgets
    (`[clients.<name>]`, `[clients."*"]` for every client not named), same fields."""
    if raw is None:
        return {}
    what = table[:-1]
    if not isinstance(raw, dict):
        raise AgentDefinitionError(f"{source}: {table} must be a table of [{table}.<name>]")
    found: dict[str, ProjectBudget] = {}
    for name, body in raw.items():
        try:
            found[str(name)] = ProjectBudget.model_validate(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'table'}: {e['msg']}" for e in exc.errors()
            )
            raise AgentDefinitionError(f"{source}: {what} {name!r}: {problems}") from exc
    return found
