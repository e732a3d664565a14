"""Agent definitions: what an agent is, loaded from a TOML or YAML file and validated.

Rule: a definition is data — frozen, validated on load, secret-free. Every validation
error names the agent and the field (`agent 'researcher': budget.session_usd: must be
> 0`). Credentials never appear in an agent file: keys that look like credentials
(api_key, password, token, ...) and values that look like API keys are rejected, because
the file's content is hashed into the session log; credentials stay in the environment
of the process that executes the effects. `definition_hash` is the sha256 of the
canonical JSON of a definition, recorded in SessionStarted. Nothing here does IO: the
files are read by agents.agentfile, which hands their data to `parse_definitions`.

File layout (TOML shown; YAML has the same shape):

    [agents.assistant]
    model = "claude-sonnet-4-5"
    fallbacks = ["claude-haiku-4-5"]
    system_prompt = "You are a helpful assistant."
    tools = ["calculator", "shell", "delegate"]
    delegates = ["researcher"]
    max_iterations = 8
    [agents.assistant.budget]
    turn_usd = 0.50
    [agents.assistant.compaction]
    strategy = "summarize"            # sliding_window | oldest_first | summarize
    [[agents.assistant.policy.rules]]
    name = "shell-needs-approval"
    tool = "shell"
    action = "require_approval"

    [agents.assistant.mcp.time]        # an MCP server: its tools are offered as time__<tool>
    command = ["mcp-server-time"]      # stdio (confined), or url = "http://host/mcp"
    tools = ["get_current_time"]       # the tools allowed ("*": every tool it offers)
    env = ["TIME_API_KEY"]             # names of variables passed to it (never values)

    [[schedules]]                      # optional: runs of an agent on a schedule
    id = "nightly-report"              # (see README "Scheduled agents")
    agent = "assistant"
    cron = "0 2 * * *"                 # or every = "15m", or at = "2026-12-24T09:00:00Z"
    timezone = "Europe/Berlin"
    message = "Write the nightly report."

    [tools.lookup]                     # optional: extra (non built-in) tool specs
    description = "..."
    idempotent = true                  # safe to run twice for one call (default false)
    input_schema = { type = "object", properties = { q = { type = "string" } } }
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agents import variants as _variants
from agents.budget import LATER_BUDGET_DEFAULTS, BudgetConfig, parse_projects
from agents.errors import AgentDefinitionError
from agents.guardrails import LATER_GUARDRAIL_DEFAULTS, Guardrail, schema_problem
from agents.llm import ToolSpec, canonical_json, sha256_hex
from agents.orchestration import parse_mode
from agents.policy import Policy
from agents.pricing import CATALOG, active_catalog, find_model
from agents.ratelimit import LATER_RATE_DEFAULTS, RateLimit
from agents.response_cache import CacheConfig

__all__ = [
    "AGENT_NAME_PATTERN",
    "AgentDefinition",
    "CompactionConfig",
    "CompactionStrategy",
    "Deadlines",
    "McpServer",
    "RemoteAgent",
    "definition_hash",
    "parse_definitions",
]

AGENT_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"

_SECRET_KEY = re.compile(
    r"^(?:.*[_-])?(?:api[_-]?key|apikey|secret|secret[_-]?key|client[_-]?secret|password|"
    r"passwd|pwd|access[_-]?key|access[_-]?token|auth[_-]?token|refresh[_-]?token|bearer|"
    r"credentials?|private[_-]?key|token)$",
    re.IGNORECASE,
)
_SECRET_VALUE = re.compile(
    r"(sk-ant-[A-Za-z0-9_-]{8,}|\bsk-[A-Za-z0-9]{20,}|-----BEGIN [A-Z ]*PRIVATE KEY-----|"
    r"\bAKIA[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{20,})"
)


class CompactionStrategy(str, Enum):
    SLIDING_WINDOW = "sliding_window"
    OLDEST_FIRST = "oldest_first"
    SUMMARIZE = "summarize"


class CompactionConfig(BaseModel):
    """Compaction starts when the estimated context exceeds `trigger_ratio` of the
    model's context window. sliding_window keeps the last `keep_last` entries;
    oldest_first drops the oldest entries until the context is under `target_ratio`
    (never fewer than `keep_last` left); summarize replaces all but the last `keep_last`
    entries with a summary written by `summarize_model` (default: the agent's model)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: CompactionStrategy = CompactionStrategy.SLIDING_WINDOW
    trigger_ratio: float = Field(default=0.8, gt=0, le=1)
    target_ratio: float = Field(default=0.5, gt=0, lt=1)
    keep_last: int = Field(default=6, ge=1)
    summarize_model: str | None = None
    summary_max_tokens: int = Field(default=1024, ge=1)


_MAX_DEADLINE_S = 30 * 24 * 3600  # a month: beyond that a "deadline" is a typo


class Deadlines(BaseModel):
    """Seconds an effect may stay pending before it is re-issued (same effect id), and
    how many attempts it gets before the core fails it. `approval_s` is how long a tool
    call waits for a human before it is denied as expired.

    A tool that is not idempotent is never re-issued: when its deadline passes without
    an outcome (its worker died, or lost the partition, mid-call), nobody knows whether
    it ran. `on_unknown_outcome` says what the session does then: `ask` a human (the
    call waits for approval again; a grant runs it once more) or `fail` the call."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    llm_s: float = Field(default=300, gt=0, le=_MAX_DEADLINE_S)
    tool_s: float = Field(default=120, gt=0, le=_MAX_DEADLINE_S)
    approval_s: float = Field(default=3600, gt=0, le=_MAX_DEADLINE_S)
    child_s: float = Field(default=1800, gt=0, le=_MAX_DEADLINE_S)
    max_attempts: int = Field(default=3, ge=1)
    on_unknown_outcome: Literal["ask", "fail"] = "ask"


MCP_SERVER_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_HEADER_ENV = r"^[A-Za-z0-9-]+=[A-Za-z_][A-Za-z0-9_]*$"  # "X-Api-Key=VARIABLE"


class McpServer(BaseModel):
    """An MCP server an agent uses: a `command` run over stdio (confined like the shell
    tool: no credentials, no network unless `network`, only `read_only` paths and its own
    directory visible) or a streamable-HTTP `url`. `tools` lists the server's tools the
    agent may call (`"*"`: every tool it offers, so the agent's version follows the
    server); each is offered as `<server>__<tool>`. Secrets are named, never written:
    `env` lists variables of the worker passed to a stdio server, `headers_env` maps an
    HTTP header to the variable holding its value (`"X-Api-Key=VAR"`), `bearer_token_env` names the variable
    sent as `Authorization: Bearer`. `idempotent` lists tools safe to run twice."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command: tuple[str, ...] = ()
    url: str | None = None
    tools: tuple[str, ...] = Field(min_length=1)
    env: tuple[Annotated[str, Field(pattern=_ENV_NAME)], ...] = ()
    headers_env: tuple[Annotated[str, Field(pattern=_HEADER_ENV)], ...] = ()
    bearer_token_env: str | None = Field(default=None, pattern=_ENV_NAME)
    read_only: tuple[str, ...] = ()
    network: bool = False
    idempotent: tuple[str, ...] = ()
    timeout_s: float = Field(default=60.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _one_transport(self) -> McpServer:
        if bool(self.command) == (self.url is not None):
            raise ValueError("give either command (stdio) or url (streamable HTTP)")
        if self.url is not None and not re.match(r"^https?://[^/\s]+", self.url):
            raise ValueError(f"url: {self.url!r} is not an http(s) URL")
        if self.url is not None and (self.env or self.read_only or self.network):
            raise ValueError("env, read_only and network are for stdio servers only")
        if self.command and (self.headers_env or self.bearer_token_env):
            raise ValueError("headers_env and bearer_token_env are for HTTP servers only")
        unlisted = [t for t in self.idempotent if "*" not in self.tools and t not in self.tools]
        if unlisted:
            raise ValueError(f"idempotent: {', '.join(unlisted)} not among the tools allowed")
        return self


class RemoteAgent(BaseModel):
    """How a worker reaches a remote A2A delegate (keyed by its URL, the delegate's name
    without `a2a:`): `bearer_token_env` names the worker's variable holding the token
    the remote agent wants (`turnlog a2a serve` bound beyond loopback wants one)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bearer_token_env: str | None = Field(default=None, pattern=_ENV_NAME)


class StageLimit(BaseModel):
    """A pipeline stage's limits when a batch runs the pipeline (streams.batch): at most
    `max_concurrency` items in the stage at once, at most `max_per_minute` started in
    any minute. A team turn outside a batch starts its members as they come."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_concurrency: int | None = Field(default=None, ge=1, le=100_000)
    max_per_minute: int | None = Field(default=None, ge=1, le=1_000_000)


class TeamConfig(BaseModel):
    """A team agent (`[agents.X.team]`): every turn runs `members` as an orchestration
    (agents.orchestration) on the user's message, with no model deciding it; the combined
    result is the turn's answer. `mode`: all | race | quorum:N | sequential; `combine`:
    concatenate | first | last | vote (default by mode); `timeout_s`: each member's
    allowance (default: deadlines.child_s)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    members: tuple[Annotated[str, Field(min_length=1)], ...] = Field(min_length=1)
    mode: str = "all"
    combine: Literal["concatenate", "first", "last", "vote"] | None = None
    timeout_s: float | None = Field(default=None, gt=0, le=7 * 86400)
    # mode all: the first failure stops the members still running.
    fail_fast: bool = False
    # A pipeline's (mode sequential) stage limits in batches, by member name.
    limits: dict[str, StageLimit] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _mode(self) -> TeamConfig:
        parsed = parse_mode(self.mode, len(self.members))
        if isinstance(parsed, str):
            raise ValueError(f"mode: {parsed}")
        unknown = sorted(set(self.limits) - set(self.members))
        if unknown:
            raise ValueError(f"limits: {', '.join(unknown)} is not a member of the team")
        if self.limits and self.mode != "sequential":
            raise ValueError("limits: stage limits are for pipelines (mode sequential)")
        return self


class AgentDefinition(BaseModel):
    """One agent. `tools` names tool specs of the registry; `delegates` names the agents
    the `delegate` tool may start (empty: delegation is not offered)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=AGENT_NAME_PATTERN)
    description: str = ""
    model: str
    fallbacks: tuple[str, ...] = ()
    system_prompt: str = Field(min_length=1)
    tools: tuple[str, ...] = ()
    delegates: tuple[str, ...] = ()
    policy: Policy = Policy()
    budget: BudgetConfig = BudgetConfig()
    compaction: CompactionConfig = CompactionConfig()
    max_iterations: int = Field(default=10, ge=1, le=1000)
    max_tokens: int = Field(default=1024, ge=1)
    temperature: float = Field(default=0.0, ge=0, le=1)
    deadlines: Deadlines = Deadlines()
    # Messages that arrive during a turn wait for it, up to this many (0: rejected).
    max_queued: int = Field(default=8, ge=0, le=1000)
    # A tool call cut off at max_tokens is never run: ask again once with twice the
    # max_tokens (up to the model's output limit), or fail the turn.
    on_truncated_tool_call: Literal["retry", "fail"] = "retry"
    # Sessions keep the version of this definition they started on ("pin"), until an
    # UpgradeAgent moves them; "follow" moves them to the served version at a turn start.
    on_change: Literal["pin", "follow"] = "pin"
    # MCP servers by name; their allowed tools join `tools` when a worker binds them.
    mcp: dict[str, McpServer] = Field(default_factory=dict)
    # Remote A2A delegates by URL: how to authenticate to them.
    a2a: dict[str, RemoteAgent] = Field(default_factory=dict)
    # Extended thinking: the tokens the model may think before it answers (0: off;
    # else at least 1,024 and below max_tokens). Sent to models whose catalog entry says
    # they think; thinking tokens are billed as output.
    thinking_budget: int = Field(default=0, ge=0)
    # A team agent: its turns run these members instead of calling the model.
    team: TeamConfig | None = None
    # The agents the `handoff` tool may hand the conversation to.
    handoffs: tuple[str, ...] = ()
    # Checks on the user's input and the model's output (agents.guardrails).
    guardrails: tuple[Guardrail, ...] = ()
    # The JSON schema of the final answer (agents.structured); None: free text.
    output_schema: dict[str, Any] | None = None
    # The project the agent's sessions count towards (a [projects.<name>] budget across
    # sessions, agents.budget.ProjectBudget); None: none.
    project: str | None = Field(default=None, pattern=AGENT_NAME_PATTERN)
    # Prompt variants (A/B tests): one per session, by weight (agents.variants).
    variants: tuple[_variants.Variant, ...] = ()
    # Messages and LLM tokens per session per minute (agents.ratelimit); None: no limit.
    rate_limit: RateLimit | None = None
    # Reuse an identical LLM request's answer for ttl_s seconds (agents.response_cache).
    cache: CacheConfig | None = None

    @model_validator(mode="after")
    def _cross_checks(self) -> AgentDefinition:
        # Raised as "field: message" so that _format can name the field.
        problems = list(_cross_problems(self))
        if problems:
            raise ValueError(" | ".join(f"{f}: {m}" for f, m in problems))
        return self

    @property
    def model_chain(self) -> tuple[str, ...]:
        return (self.model, *self.fallbacks)

    @property
    def summarize_model(self) -> str:
        return self.compaction.summarize_model or self.model


def _cross_problems(d: AgentDefinition) -> Iterator[tuple[str, str]]:
    known = f"{', '.join(sorted(CATALOG))}; catalog: {active_catalog().describe_sources()}"
    for field, name in [("model", d.model), *(("fallbacks", f) for f in d.fallbacks)]:
        if find_model(name) is None:
            yield field, f"unknown model {name!r} (known: {known})"
    if len(set(d.model_chain)) != len(d.model_chain):
        yield "fallbacks", "a model appears twice in model + fallbacks"
    sm = d.compaction.summarize_model
    if sm is not None and find_model(sm) is None:
        yield "compaction.summarize_model", f"unknown model {sm!r} (known: {known})"
    if len(set(d.tools)) != len(d.tools):
        yield "tools", "a tool is listed twice"
    if d.compaction.target_ratio >= d.compaction.trigger_ratio:
        yield "compaction.target_ratio", "must be < compaction.trigger_ratio"
    for name in d.model_chain:
        info = find_model(name)
        if info is not None and d.max_tokens > info.max_output_tokens:
            yield (
                "max_tokens",
                (f"must be <= {info.max_output_tokens} (the output limit of {name!r})"),
            )
    if d.thinking_budget:
        if d.thinking_budget < 1024:
            yield "thinking_budget", "must be 0 (off) or at least 1024"
        elif d.thinking_budget >= d.max_tokens:
            yield "thinking_budget", f"must be < max_tokens ({d.max_tokens})"
        info = find_model(d.model)
        if info is not None and not info.thinking:
            yield (
                "thinking_budget",
                f"model {d.model!r} does not think (its catalog entry has thinking = false)",
            )
    if d.delegates and "delegate" not in d.tools and "delegate_many" not in d.tools:
        yield "delegates", "needs the 'delegate' (or 'delegate_many') tool in tools"
    for child in d.delegates:
        if child.startswith("a2a:") and not re.match(r"^a2a:https?://[^/\s]+", child):
            yield "delegates", f"{child!r}: a remote A2A agent is 'a2a:' + its http(s) URL"
    for url in d.a2a:
        if f"a2a:{url}" not in d.delegates:
            yield f"a2a.{url}", f"the agent has no delegate 'a2a:{url}' to reach this way"
    for server in d.mcp:
        if not re.match(MCP_SERVER_PATTERN, server):
            yield f"mcp.{server}", f"server names must match {MCP_SERVER_PATTERN}"
    if "delegate" in d.tools and not d.delegates:
        yield "tools", "the 'delegate' tool needs at least one agent in delegates"
    if "delegate_many" in d.tools and not d.delegates:
        yield "tools", "the 'delegate_many' tool needs at least one agent in delegates"
    if ("handoff" in d.tools) != bool(d.handoffs):
        yield "handoffs", "the 'handoff' tool and a list of handoffs go together"
    names = [g.name for g in d.guardrails]
    if len(set(names)) != len(names):
        yield "guardrails", "two guardrails have the same name"
    for g in d.guardrails:
        if g.model is not None and find_model(g.model) is None:
            yield f"guardrails.{g.name}.model", f"unknown model {g.model!r} (known: {known})"
    names = [v.name for v in d.variants]
    if len(set(names)) != len(names):
        yield "variants", "two variants have the same name"
    for v in d.variants:
        info = None if v.model is None else find_model(v.model)
        if v.model is not None and info is None:
            yield f"variants.{v.name}.model", f"unknown model {v.model!r} (known: {known})"
        elif info is not None and d.max_tokens > info.max_output_tokens:
            yield (
                f"variants.{v.name}.model",
                f"max_tokens {d.max_tokens} is over the output limit of {v.model!r} "
                f"({info.max_output_tokens})",
            )
    if d.output_schema is not None:
        problem = schema_problem(d.output_schema)
        if problem is not None:
            yield "output_schema", problem


_LATER_DEFAULTS: dict[str, object] = {
    "max_queued": 8,
    "on_truncated_tool_call": "retry",
    "on_change": "pin",
    "mcp": {},
    "a2a": {},
    "thinking_budget": 0,
    "team": None,
    "handoffs": [],
    "guardrails": [],
    "output_schema": None,
    "project": None,
    "variants": [],
    "rate_limit": None,
    "cache": None,
}


def definition_hash(definition: AgentDefinition) -> str:
    """sha256 of the canonical JSON of the definition (pinned in SessionStarted).

    Fields added after the first release are left out while they hold their default, so
    a definition that does not use them keeps the hash its sessions recorded."""
    data = definition.model_dump(mode="json")
    if definition.deadlines.on_unknown_outcome == "ask":
        del data["deadlines"]["on_unknown_outcome"]
    if data.get("team") is not None and not data["team"].get("limits"):
        data["team"].pop("limits", None)
    for name, default in LATER_BUDGET_DEFAULTS.items():
        if data["budget"].get(name) == default:
            del data["budget"][name]
    for name, default in _LATER_DEFAULTS.items():
        if data.get(name) == default:
            del data[name]
    rate = data.get("rate_limit") or {}
    for name, default in LATER_RATE_DEFAULTS.items():
        if name in rate and rate[name] == default:
            del rate[name]
    for rule in data.get("guardrails", ()):
        for name, default in LATER_GUARDRAIL_DEFAULTS.items():
            if rule.get(name) == default:
                del rule[name]
    return sha256_hex(canonical_json(data))


# --------------------------------------------------------------------------- errors


_MESSAGES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "string_too_short": "must not be empty",
    "string_pattern_mismatch": "must match {pattern}",
}


def _format(agent: str, exc: ValidationError) -> str:
    lines: list[str] = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        template = _MESSAGES.get(err["type"])
        if template is not None:
            msg = template.format(**err.get("ctx", {}))
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
        if not loc and ": " in msg:  # a cross-field check: already "field: message"
            lines.extend(f"agent {agent!r}: {part}" for part in msg.split(" | "))
        else:
            lines.append(f"agent {agent!r}: {loc + ': ' if loc else ''}{msg}")
    return "; ".join(lines)


def _find_secrets(node: Any, path: str) -> Iterator[str]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            sub = f"{path}.{key}" if path else str(key)
            if _SECRET_KEY.match(str(key)):
                yield (
                    f"{sub}: looks like a credential; agent files are secret-free (keep "
                    "credentials in the environment of the process that runs the effects)"
                )
            else:
                yield from _find_secrets(value, sub)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _find_secrets(value, f"{path}.{i}")
    elif isinstance(node, str) and _SECRET_VALUE.search(node):
        yield f"{path}: contains what looks like a credential; agent files are secret-free"


# --------------------------------------------------------------------------- loading


def parse_definitions(
    data: Mapping[str, Any], source: str = "<data>"
) -> tuple[tuple[AgentDefinition, ...], dict[str, ToolSpec]]:
    """Validate a parsed agent file: (definitions, extra tool specs by name)."""
    if not isinstance(data, Mapping):
        raise AgentDefinitionError(f"{source}: the top level must be a table/mapping")
    # `schedules` ([[schedules]]) is read by the scheduler (streams.scheduler_plan),
    # `projects` and `clients` (budgets across sessions) by the budget watcher
    # (streams.budgets).
    unknown = sorted(set(data) - {"agents", "tools", "schedules", "projects", "clients"})
    if unknown:
        raise AgentDefinitionError(
            f"{source}: unknown top-level key(s) {', '.join(unknown)} "
            "(expected: agents, tools, schedules, projects, clients)"
        )
    parse_projects(data.get("projects"), source)  # a broken project budget fails the load
    parse_projects(data.get("clients"), source, "clients")
    agents_raw = data.get("agents")
    if not isinstance(agents_raw, Mapping) or not agents_raw:
        raise AgentDefinitionError(f"{source}: needs an [agents.<name>] table per agent")
    definitions: list[AgentDefinition] = []
    for name, raw in agents_raw.items():
        if not isinstance(raw, Mapping):
            raise AgentDefinitionError(f"{source}: agent {name!r}: must be a table/mapping")
        secrets = list(_find_secrets(raw, ""))
        if secrets:
            raise AgentDefinitionError(
                f"{source}: " + "; ".join(f"agent {name!r}: {s}" for s in secrets)
            )
        body = dict(raw)
        if "name" in body and body["name"] != name:
            raise AgentDefinitionError(
                f"{source}: agent {name!r}: name: must equal the table key {name!r}"
            )
        body["name"] = name
        try:
            definitions.append(AgentDefinition.model_validate(body))
        except ValidationError as exc:
            raise AgentDefinitionError(f"{source}: {_format(str(name), exc)}") from exc
    tools: dict[str, ToolSpec] = {}
    tools_raw = data.get("tools") or {}
    if not isinstance(tools_raw, Mapping):
        raise AgentDefinitionError(f"{source}: tools must be a table of tool specs")
    for tname, spec in tools_raw.items():
        if not isinstance(spec, Mapping) or not isinstance(spec.get("description"), str):
            raise AgentDefinitionError(
                f"{source}: tool {tname!r}: needs a description (and an input_schema table)"
            )
        schema = spec.get("input_schema", {"type": "object"})
        extra = sorted(set(spec) - {"description", "input_schema", "idempotent"})
        if not isinstance(schema, Mapping) or extra:
            raise AgentDefinitionError(
                f"{source}: tool {tname!r}: only description, input_schema (a table) and "
                "idempotent allowed"
            )
        idempotent = spec.get("idempotent", False)
        if not isinstance(idempotent, bool):
            raise AgentDefinitionError(
                f"{source}: tool {tname!r}: idempotent: must be true or false"
            )
        tools[str(tname)] = ToolSpec(str(tname), spec["description"], dict(schema), idempotent)
    return tuple(definitions), tools
