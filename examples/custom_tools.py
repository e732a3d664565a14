"""Sample custom tools, named by import path in an agent file:

    tools:
      - calculator
      - examples.custom_tools:word_count
      - examples.custom_tools:slugify
      - examples.custom_tools:UnitConversion

Each shape a custom tool can take is shown once. Nothing here is registered at import
time: the agent definition names what it wants, and the registry imports it.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.tools import ToolContext, tool

__all__ = ["UnitConversion", "slugify", "word_count"]


def word_count(
    text: Annotated[str, Field(description="The text whose words to count.")],
    unique: Annotated[bool, Field(description="Count distinct words only.")] = False,
) -> dict[str, int]:
    """Count the words of a text (sequences of letters, digits and apostrophes)."""
    words = re.findall(r"[\w']+", text.lower())
    return {"words": len(set(words)) if unique else len(words), "characters": len(text)}


@tool(timeout_s=2, idempotent=True)
async def slugify(title: str, ctx: ToolContext, max_length: int = 60) -> str:
    """Turn a title into a URL slug such as 'hello-world'."""
    # ctx is injected by the registry and is not part of the schema the model sees.
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return slug[:max_length].rstrip("-") or "untitled"


_FACTORS = {"m": 1.0, "km": 1000.0, "mi": 1609.344, "ft": 0.3048}


class UnitConversion(BaseModel):
    """Convert a length between metres, kilometres, miles and feet."""

    model_config = ConfigDict(extra="forbid")

    value: float
    source: Literal["m", "km", "mi", "ft"]
    target: Literal["m", "km", "mi", "ft"]

    def run(self) -> str:
        converted = self.value * _FACTORS[self.source] / _FACTORS[self.target]
        return f"{self.value:g} {self.source} = {converted:.6g} {self.target}"
