"""The model catalog: prices, context windows, output limits and capabilities per model.

Rule: prices are integers in nano-dollars per token (USD 1 per million tokens is 1,000
nano-dollars per token), so every cost is an exact integer sum and replaying a log gives
the same cost to the last nano-dollar. Nothing here does IO; the catalog is data.

The catalog is the built-in one (`agents._catalog_data`: Anthropic, OpenAI, Gemini and a
few open models, plus the scripted provider's made-up `scripted-*` models) extended by a
team's catalog file. The shell reads that file (TOML, named by TURNLOG_MODEL_CATALOG),
hands its parsed contents to `Catalog.from_toml_data`, and installs the result with
`use_catalog` once, before any agent file is loaded or any input decided; every lookup
here (`find_model`, `model_info`, `CATALOG`) then sees it. A catalog file entry:

    [models."qwen-local"]          # the name agent files use
    provider = "ollama"            # the named endpoint that serves it
    api_model = "qwen2.5:7b"       # the id the endpoint knows (default: the name)
    context_window = 32768
    max_output_tokens = 4096
    input = "0"                    # USD per million tokens, as text or a number
    output = "0"                   # cache_read / cache_write default to input,
    tools = true                   # reasoning to output; vision, thinking false

An entry replaces a built-in one of the same name. A model no catalog knows is a
`ModelNotFound` naming the catalog file and the known models.

A provider may answer with a dated model id (`claude-sonnet-4-5-20250929`); lookups
resolve it to the catalog entry without the date suffix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from agents._catalog_data import ALIASES, ROWS
from agents.errors import ContractError
from agents.events import Usage

__all__ = [
    "BUILTIN",
    "CATALOG",
    "Catalog",
    "CatalogError",
    "ModelInfo",
    "ModelNotFound",
    "active_catalog",
    "answer_cost_nanos",
    "cost_nanos",
    "find_model",
    "model_info",
    "nanos_from_usd",
    "per_mtok",
    "usd_from_nanos",
    "use_catalog",
]

NANOS_PER_USD = 1_000_000_000


class CatalogError(ContractError):
    """A catalog file entry is invalid; the message names the file, the model and the field."""


class ModelNotFound(ContractError):
    """A model no catalog knows; the message names the catalog file and the known models."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model. Prices are nano-dollars per token.

    `provider` names the endpoint that serves the model (agents.providers.endpoints:
    "anthropic", "openai", "gemini", "ollama", ... or one a team defines); `api_model` is
    the id sent to it when that differs from `name`. `reasoning_nanos` prices reasoning
    (thinking) tokens, `Usage.reasoning_tokens` (a part of the output tokens); None: the
    output price.
    """

    name: str
    provider: str
    input_nanos: int
    output_nanos: int
    cache_read_nanos: int
    cache_write_nanos: int
    context_window: int
    max_output_tokens: int
    reasoning_nanos: int | None = None
    tools: bool = True
    vision: bool = False
    thinking: bool = False
    api_model: str | None = None
    source: str = "built-in"

    @property
    def wire_name(self) -> str:
        """The model id the endpoint is sent."""
        return self.api_model or self.name

    @property
    def reasoning_price(self) -> int:
        return self.output_nanos if self.reasoning_nanos is None else self.reasoning_nanos


def per_mtok(usd: str | float | Decimal) -> int:
    """USD per million tokens (text, exact) -> nano-dollars per token.

    Raises ValueError for a negative price or one finer than a nano-dollar per token.
    """
    try:
        value = Decimal(str(usd)) * 1000
    except InvalidOperation:
        raise ValueError(f"{usd!r} is not a number") from None
    if value < 0:
        raise ValueError(f"a price cannot be negative (got {usd!r})")
    if value != value.to_integral_value():
        raise ValueError(f"{usd!r} USD per million tokens is finer than 1 nano-dollar a token")
    return int(value)


def _builtin_row(row: tuple[str, str, str, str, str, str, int, int, str]) -> ModelInfo:
    name, provider, inp, out, c_read, c_write, window, out_max, caps = row
    return ModelInfo(
        name=name,
        provider=provider,
        input_nanos=per_mtok(inp),
        output_nanos=per_mtok(out),
        cache_read_nanos=per_mtok(c_read),
        cache_write_nanos=per_mtok(c_write),
        context_window=window,
        max_output_tokens=out_max,
        tools="t" in caps,
        vision="v" in caps,
        thinking="k" in caps,
    )


def _scripted(name: str, window: int, out_max: int, inp: int, out: int) -> ModelInfo:
    # The scripted provider: tiny windows make compaction and budgets easy to trigger.
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


_SCRIPTED = (
    _scripted("scripted-small", 8_000, 1_024, 100, 500),
    _scripted("scripted-medium", 32_000, 2_048, 200, 1_000),
    _scripted("scripted-large", 200_000, 8_192, 1_000, 5_000),
    _scripted("scripted-summarizer", 32_000, 2_048, 50, 250),
)

_DATED = re.compile(r"^(?P<base>.+?)-(?:\d{8}|latest)$")

# The fields of a catalog file entry and what each takes.
_PRICE_FIELDS = {
    "input": "input_nanos",
    "output": "output_nanos",
    "cache_read": "cache_read_nanos",
    "cache_write": "cache_write_nanos",
    "reasoning": "reasoning_nanos",
}
_INT_FIELDS = ("context_window", "max_output_tokens")
_BOOL_FIELDS = ("tools", "vision", "thinking")
_STR_FIELDS = ("provider", "api_model")
_KNOWN_FIELDS = frozenset({*_PRICE_FIELDS, *_INT_FIELDS, *_BOOL_FIELDS, *_STR_FIELDS, "aliases"})
_REQUIRED = ("provider", "context_window", "max_output_tokens", "input", "output")


@dataclass(frozen=True)
class Catalog(Mapping[str, ModelInfo]):
    """Models by name, plus aliases; immutable. `sources` names where entries came from
    ("built-in", then each catalog file) and appears in every unknown-model error."""

    models: Mapping[str, ModelInfo]
    aliases: Mapping[str, str] = field(default_factory=dict)
    sources: tuple[str, ...] = ("built-in",)

    def __getitem__(self, name: str) -> ModelInfo:
        return self.models[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    def __hash__(self) -> int:
        return id(self)

    def find(self, name: str) -> ModelInfo | None:
        """The entry for `name` (aliases and dated ids resolved), or None."""
        found = self.models.get(name)
        if found is not None:
            return found
        alias = self.aliases.get(name)
        if alias is not None:
            return self.models.get(alias)
        m = _DATED.match(name)
        if m is not None:
            base = m.group("base")
            return self.models.get(base) or self.models.get(self.aliases.get(base, ""))
        return None

    def info(self, name: str) -> ModelInfo:
        """The entry for `name`; ModelNotFound naming the catalog files and known models."""
        found = self.find(name)
        if found is None:
            raise ModelNotFound(
                f"Model {name!r} is not in the model catalog ({self.describe_sources()}); "
                f"known: {', '.join(sorted(self.models))}."
            )
        return found

    def describe_sources(self) -> str:
        files = [s for s in self.sources if s != "built-in"]
        if not files:
            return (
                "the built-in catalog; add models in a catalog file named by TURNLOG_MODEL_CATALOG"
            )
        return "the built-in catalog and " + ", ".join(files)

    def by_provider(self, provider: str) -> tuple[ModelInfo, ...]:
        return tuple(m for m in self.models.values() if m.provider == provider)

    def extended(
        self,
        models: Iterable[ModelInfo],
        *,
        aliases: Mapping[str, str] | None = None,
        source: str,
    ) -> Catalog:
        """This catalog with `models` added (replacing entries of the same name)."""
        merged = dict(self.models)
        merged.update({m.name: m for m in models})
        return Catalog(merged, {**self.aliases, **(aliases or {})}, (*self.sources, source))

    def from_toml_data(self, data: Mapping[str, Any], *, source: str) -> Catalog:
        """This catalog extended by a parsed catalog file (`tomllib.loads` of it).

        `source` is the file's path, named in every error. CatalogError for a bad entry.
        """
        unknown_tables = sorted(set(data) - {"models"})
        if unknown_tables:
            raise CatalogError(
                f"{source}: unknown table(s) {', '.join(unknown_tables)}; a catalog file "
                'holds [models."<name>"] tables.'
            )
        models = data.get("models", {})
        if not isinstance(models, Mapping):
            raise CatalogError(f"{source}: 'models' must be a table of [models.\"<name>\"].")
        parsed: list[ModelInfo] = []
        aliases: dict[str, str] = {}
        for name, entry in models.items():
            info, names = _parse_entry(str(name), entry, source)
            parsed.append(info)
            for alias in names:
                aliases[alias] = info.name
        return self.extended(parsed, aliases=aliases, source=source)


def _parse_entry(name: str, entry: Any, source: str) -> tuple[ModelInfo, list[str]]:
    where = f"{source}: model {name!r}"
    if not isinstance(entry, Mapping):
        raise CatalogError(f"{where}: must be a table.")
    extra = sorted(set(entry) - _KNOWN_FIELDS)
    if extra:
        raise CatalogError(
            f"{where}: unknown field(s) {', '.join(extra)} "
            f"(known: {', '.join(sorted(_KNOWN_FIELDS))})."
        )
    missing = [f for f in _REQUIRED if f not in entry]
    if missing:
        raise CatalogError(f"{where}: missing field(s) {', '.join(missing)}.")
    values: dict[str, Any] = {"name": name, "source": source}
    for key in _STR_FIELDS:
        if key in entry:
            if not isinstance(entry[key], str) or not entry[key].strip():
                raise CatalogError(f"{where}: {key} must be a non-empty string.")
            values[key] = entry[key].strip()
    for key in _INT_FIELDS:
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CatalogError(f"{where}: {key} must be a positive integer (got {value!r}).")
        values[key] = value
    if values["max_output_tokens"] > values["context_window"]:
        raise CatalogError(f"{where}: max_output_tokens must be <= context_window.")
    for key, attr in _PRICE_FIELDS.items():
        if key not in entry:
            continue
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise CatalogError(f"{where}: {key} must be USD per million tokens (got {value!r}).")
        try:
            values[attr] = per_mtok(value)
        except ValueError as exc:
            raise CatalogError(f"{where}: {key}: {exc}.") from None
    values.setdefault("cache_read_nanos", values["input_nanos"])
    values.setdefault("cache_write_nanos", values["input_nanos"])
    for key in _BOOL_FIELDS:
        if key in entry:
            if not isinstance(entry[key], bool):
                raise CatalogError(f"{where}: {key} must be true or false.")
            values[key] = entry[key]
    names = entry.get("aliases", [])
    if not isinstance(names, list) or not all(isinstance(a, str) and a for a in names):
        raise CatalogError(f"{where}: aliases must be a list of names.")
    return ModelInfo(**values), list(names)


BUILTIN = Catalog(
    {m.name: m for m in (*map(_builtin_row, ROWS), *_SCRIPTED)}, dict(ALIASES), ("built-in",)
)

_active: list[Catalog] = [BUILTIN]


def use_catalog(catalog: Catalog) -> Catalog:
    """Install `catalog` for every lookup of this process; returns the one it replaces.

    The composition root calls it once, before agent files are loaded (they are checked
    against the catalog) and before any input is decided (calls are priced from it).
    Tests that install one put the previous one back.
    """
    previous = _active[0]
    _active[0] = catalog
    return previous


def active_catalog() -> Catalog:
    return _active[0]


class _ActiveView(Mapping[str, ModelInfo]):
    """`CATALOG`: the installed catalog, seen through one long-lived name (modules that
    imported it keep seeing the catalog installed later)."""

    def __getitem__(self, name: str) -> ModelInfo:
        return _active[0][name]

    def __iter__(self) -> Iterator[str]:
        return iter(_active[0])

    def __len__(self) -> int:
        return len(_active[0])

    def __repr__(self) -> str:
        return f"CATALOG({len(self)} models; {_active[0].describe_sources()})"


CATALOG: Mapping[str, ModelInfo] = _ActiveView()


def find_model(name: str) -> ModelInfo | None:
    """The installed catalog's entry for `name` (dated ids and aliases resolved), or None."""
    return _active[0].find(name)


def model_info(name: str) -> ModelInfo:
    """The installed catalog's entry for `name`; ModelNotFound (a ContractError) naming
    the catalog file and the known models when it is unknown."""
    return _active[0].info(name)


def cost_nanos(model: str | ModelInfo, usage: Usage) -> int:
    """Exact cost of `usage` at `model`'s prices, in nano-dollars."""
    info = model if isinstance(model, ModelInfo) else model_info(model)
    reasoning = usage.reasoning_tokens
    return (
        usage.input_tokens * info.input_nanos
        + (usage.output_tokens - reasoning) * info.output_nanos
        + reasoning * info.reasoning_price
        + usage.cache_read_tokens * info.cache_read_nanos
        + usage.cache_write_tokens * info.cache_write_nanos
    )


def answer_cost_nanos(model: str, requested: str, usage: Usage) -> int:
    """The cost of an answer by `model` to a call that asked for `requested`. An unknown
    answering model is priced as the requested one (always in the catalog): an outcome
    is never rejected over pricing, or its turn would stall until the deadline."""
    return cost_nanos(find_model(model) or model_info(requested), usage)


def nanos_from_usd(usd: str | float) -> int:
    """USD amount -> nano-dollars, exactly for decimal text (`"0.25"`)."""
    return int((Decimal(str(usd)) * NANOS_PER_USD).to_integral_value())


def usd_from_nanos(nanos: int) -> float:
    return nanos / NANOS_PER_USD
