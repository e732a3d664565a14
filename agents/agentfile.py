"""Reading agent files: the one place that turns a path into agent definitions.

Rule: the core (agents.definitions, agents.registry) validates data and reads no files;
this module, a shell module of the agents package like agents.providers and
agents.tools, reads the file it is given (TOML or YAML), parses it, and hands the data
to `parse_definitions`. Errors name the file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from agents.definitions import AgentDefinition, parse_definitions
from agents.errors import AgentDefinitionError
from agents.limits import Limits
from agents.llm import ToolSpec
from agents.registry import AgentRegistry

__all__ = ["load_definitions", "registry_from_file"]


def load_definitions(
    path: str | Path,
) -> tuple[tuple[AgentDefinition, ...], dict[str, ToolSpec]]:
    """Read and validate an agent file (.toml, .yaml or .yml)."""
    p = Path(path)
    if p.suffix not in (".toml", ".yaml", ".yml"):
        raise AgentDefinitionError(f"{p}: agent files end in .toml, .yaml or .yml")
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise AgentDefinitionError(f"{p}: cannot read the agent file: {exc}") from exc
    data: Any
    if p.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise AgentDefinitionError(f"{p}: not valid TOML: {exc}") from exc
    else:
        import yaml  # imported here: only YAML agent files need the parser

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise AgentDefinitionError(f"{p}: not valid YAML: {exc}") from exc
    return parse_definitions(data, str(p))


def registry_from_file(path: str | Path, *, limits: Limits | None = None) -> AgentRegistry:
    """Load and validate an agent file (TOML or YAML) into a registry."""
    definitions, tools = load_definitions(path)
    try:
        return AgentRegistry(definitions, tools, limits=limits)
    except AgentDefinitionError as exc:
        raise AgentDefinitionError(f"{path}: {exc}") from exc
