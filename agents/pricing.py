"""The model catalog: prices, context windows and output limits per model.

Rule: prices are integers in nano-dollars per token (USD 1 per million tokens is 1,000
nano-dollars per token), so every cost is an exact integer sum and replaying a log gives
the same cost to the last nano-dollar. Nothing here does IO; the catalog is data.

Anthropic prices are the published list prices (standard tier, 5-minute cache writes).
`scripted-*` models belong to the scripted provider used by tests and demos: made-up,
cheap prices and small context windows, so that budgets and compaction are easy to hit.

A provider may answer with a dated model id (`claude-sonnet-4-5-20250929`); lookups
resolve it to the catalog entry without the date suffix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

from agents.errors import ContractError
from agents.events import Usage

__all__ = [
    "CATALOG",
    "ModelInfo",
    "cost_nanos",
    "find_model",
    "model_info",
    "nanos_from_usd",
    "usd_from_nanos",
]

NANOS_PER_USD = 1_000_000_000


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model. Prices are nano-dollars per token."""

    name: str
    provider: str
    input_nanos: int
    output_nanos: int
    cache_read_nanos: int
    cache_write_nanos: int
    context_window: int
    max_output_tokens: int


def _per_mtok(usd: str) -> int:
    """USD per million tokens, as text (exact) -> nano-dollars per token."""
    whole, _, frac = usd.partition(".")
    frac = (frac + "000")[:3]
    return int(whole) * 1000 + int(frac)


def _anthropic(
    name: str, inp: str, out: str, cache_read: str, cache_write: str, out_max: int
) -> ModelInfo:
    return ModelInfo(
        name=name,
        provider="anthropic",
        input_nanos=_per_mtok(inp),
        output_nanos=_per_mtok(out),
        cache_read_nanos=_per_mtok(cache_read),
        cache_write_nanos=_per_mtok(cache_write),
        context_window=200_000,
        max_output_tokens=out_max,
    )


def _scripted(name: str, window: int, out_max: int, inp: int, out: int) -> ModelInfo:
    return ModelInfo(
        name=name,
        provider="scripted",
        input_nanos=inp,
        output_nanos=out,
        cache_read_nanos=inp // 10,
        cache_write_nanos=inp * 5 // 4,
        context_window=window,
        max_output_tokens=out_max,
    )


_MODELS: tuple[ModelInfo, ...] = (
    #          name                  input   output  c.read  c.write  max output
    _anthropic("claude-opus-4-5", "5", "25", "0.50", "6.25", 64_000),
    _anthropic("claude-opus-4-1", "15", "75", "1.50", "18.75", 32_000),
    _anthropic("claude-opus-4-0", "15", "75", "1.50", "18.75", 32_000),
    _anthropic("claude-sonnet-4-5", "3", "15", "0.30", "3.75", 64_000),
    _anthropic("claude-sonnet-4-0", "3", "15", "0.30", "3.75", 64_000),
    _anthropic("claude-3-7-sonnet", "3", "15", "0.30", "3.75", 64_000),
    _anthropic("claude-haiku-4-5", "1", "5", "0.10", "1.25", 64_000),
    _anthropic("claude-3-5-haiku", "0.80", "4", "0.08", "1", 8_192),
    _anthropic("claude-3-haiku", "0.25", "1.25", "0.03", "0.30", 4_096),
    # The scripted provider: tiny windows make compaction and budgets easy to trigger.
    _scripted("scripted-small", 8_000, 1_024, 100, 500),
    _scripted("scripted-medium", 32_000, 2_048, 200, 1_000),
    _scripted("scripted-large", 200_000, 8_192, 1_000, 5_000),
    _scripted("scripted-summarizer", 32_000, 2_048, 50, 250),
)

# Aliases the Anthropic API accepts for the same model.
_ALIASES = {
    "claude-opus-4": "claude-opus-4-0",
    "claude-sonnet-4": "claude-sonnet-4-0",
    "claude-opus-4-1-latest": "claude-opus-4-1",
    "claude-3-7-sonnet-latest": "claude-3-7-sonnet",
    "claude-3-5-haiku-latest": "claude-3-5-haiku",
}

CATALOG: Mapping[str, ModelInfo] = MappingProxyType({m.name: m for m in _MODELS})

_DATED = re.compile(r"^(?P<base>.+?)-(?:\d{8}|latest)$")


def find_model(name: str) -> ModelInfo | None:
    """The catalog entry for `name` (dated ids and aliases resolved), or None."""
    found = CATALOG.get(name)
    if found is not None:
        return found
    alias = _ALIASES.get(name)
    if alias is not None:
        return CATALOG[alias]
    m = _DATED.match(name)
    if m is not None:
        base = m.group("base")
        return CATALOG.get(base) or (CATALOG.get(_ALIASES[base]) if base in _ALIASES else None)
    return None


def model_info(name: str) -> ModelInfo:
    """The catalog entry for `name`; ContractError naming the model when it is unknown."""
    found = find_model(name)
    if found is None:
        known = ", ".join(sorted(CATALOG))
        raise ContractError(f"Model {name!r} is not in the pricing catalog (known: {known}).")
    return found


def cost_nanos(model: str | ModelInfo, usage: Usage) -> int:
    """Exact cost of `usage` at `model`'s prices, in nano-dollars."""
    info = model if isinstance(model, ModelInfo) else model_info(model)
    return (
        usage.input_tokens * info.input_nanos
        + usage.output_tokens * info.output_nanos
        + usage.cache_read_tokens * info.cache_read_nanos
        + usage.cache_write_tokens * info.cache_write_nanos
    )


def nanos_from_usd(usd: str | float) -> int:
    """USD amount -> nano-dollars, exactly for decimal text (`"0.25"`)."""
    return int((Decimal(str(usd)) * NANOS_PER_USD).to_integral_value())


def usd_from_nanos(nanos: int) -> float:
    return nanos / NANOS_PER_USD
