"""Budgets (reserve, fail closed, order of checks) and the pricing catalog."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from agents.budget import BudgetConfig, Reservation, Spend, check_budget, estimate_reservation
from agents.errors import ContractError
from agents.events import BudgetScope, BudgetUnit, Usage
from agents.pricing import (
    CATALOG,
    cost_nanos,
    find_model,
    model_info,
    nanos_from_usd,
    usd_from_nanos,
)


def test_catalog_prices_are_the_published_ones_in_nanos_per_token() -> None:
    sonnet = model_info("claude-sonnet-4-5")
    assert (sonnet.input_nanos, sonnet.output_nanos) == (3_000, 15_000)  # $3 / $15 per MTok
    assert (sonnet.cache_read_nanos, sonnet.cache_write_nanos) == (300, 3_750)
    opus = model_info("claude-opus-4-1")
    assert (opus.input_nanos, opus.output_nanos, opus.cache_write_nanos) == (15_000, 75_000, 18_750)
    haiku = model_info("claude-haiku-4-5")
    assert (haiku.input_nanos, haiku.output_nanos, haiku.cache_read_nanos) == (1_000, 5_000, 100)
    assert model_info("claude-3-5-haiku").cache_read_nanos == 80
    assert model_info("scripted-small").context_window == 8_000
    assert {"anthropic", "openai", "gemini", "ollama", "scripted"} <= {
        m.provider for m in CATALOG.values()
    }


def test_dated_ids_and_aliases_resolve() -> None:
    assert model_info("claude-sonnet-4-5-20250929").name == "claude-sonnet-4-5"
    assert model_info("claude-sonnet-4").name == "claude-sonnet-4-0"
    assert model_info("claude-3-5-haiku-latest").name == "claude-3-5-haiku"
    assert find_model("gpt-4") is None


def test_unknown_model_is_a_contract_error_naming_it() -> None:
    with pytest.raises(ContractError, match="'gpt-4' is not in the model catalog"):
        cost_nanos("gpt-4", Usage(1, 1))


def test_cost_is_exact_integer_arithmetic() -> None:
    usage = Usage(
        input_tokens=1_000_000,
        output_tokens=1_000_000,
        cache_read_tokens=1_000_000,
        cache_write_tokens=1_000_000,
    )
    # $3 + $15 + $0.30 + $3.75 = $22.05
    assert cost_nanos("claude-sonnet-4-5", usage) == 22_050_000_000
    assert cost_nanos("claude-sonnet-4-5", Usage(1, 0, 1, 0)) == 3_300
    assert nanos_from_usd("0.1") + nanos_from_usd("0.2") == nanos_from_usd("0.3")
    assert usd_from_nanos(22_050_000_000) == pytest.approx(22.05)


def test_reservation_uses_the_dearest_model_of_the_chain() -> None:
    r = estimate_reservation(
        [model_info("claude-haiku-4-5"), model_info("claude-sonnet-4-5")],
        context_tokens=1_000,
        max_tokens=100,
    )
    assert r == Reservation(tokens=1_100, nanos=1_000 * 3_000 + 100 * 15_000)


def config(**kw: object) -> BudgetConfig:
    return BudgetConfig.model_validate(kw)


def test_within_every_limit() -> None:
    cfg = config(turn_tokens=100, session_tokens=1_000, turn_usd="0.01", session_usd="1")
    assert (
        check_budget(
            cfg, turn=Spend(0, 0), session=Spend(0, 0), requested=Reservation(100, 10_000_000)
        )
        is None
    )


@pytest.mark.parametrize(
    "cfg,turn,session,requested,expected",
    [
        (
            {"turn_tokens": 100},
            Spend(50, 0),
            Spend(50, 0),
            Reservation(51, 0),
            (BudgetScope.TURN, BudgetUnit.TOKENS, 100, 50, 51),
        ),
        (
            {"turn_usd": "0.000001"},
            Spend(0, 600),
            Spend(0, 600),
            Reservation(1, 401),
            (BudgetScope.TURN, BudgetUnit.USD, 1_000, 600, 401),
        ),
        (
            {"session_tokens": 10},
            Spend(0, 0),
            Spend(9, 0),
            Reservation(2, 0),
            (BudgetScope.SESSION, BudgetUnit.TOKENS, 10, 9, 2),
        ),
        (
            {"session_usd": "2"},
            Spend(0, 0),
            Spend(0, 2 * 10**9),
            Reservation(0, 1),
            (BudgetScope.SESSION, BudgetUnit.USD, 2 * 10**9, 2 * 10**9, 1),
        ),
        # turn limits are checked before session limits, tokens before USD
        (
            {"turn_tokens": 1, "session_tokens": 1, "turn_usd": "0.000000001"},
            Spend(0, 0),
            Spend(0, 0),
            Reservation(5, 5),
            (BudgetScope.TURN, BudgetUnit.TOKENS, 1, 0, 5),
        ),
    ],
)
def test_first_broken_limit_is_reported(
    cfg: dict, turn: Spend, session: Spend, requested: Reservation, expected: tuple
) -> None:
    exceeded = check_budget(config(**cfg), turn=turn, session=session, requested=requested)
    assert exceeded is not None
    got = (exceeded.scope, exceeded.unit, exceeded.limit, exceeded.used, exceeded.requested)
    assert got == expected


def test_usd_is_kept_exact() -> None:
    cfg = config(session_usd=0.1, turn_usd="0.000000001")
    assert cfg.session_usd == Decimal("0.1") and cfg.session_nanos == 100_000_000
    assert cfg.turn_nanos == 1


@pytest.mark.parametrize("field", ["session_tokens", "turn_tokens", "session_usd", "turn_usd"])
def test_limits_must_be_positive(field: str) -> None:
    with pytest.raises(ValidationError):
        config(**{field: 0})
