"""`current_time`: the current date and time in an IANA time zone.

Rule: this is the only tool that reads the clock, and it reads it through
`ToolContext.clock`, so a test (or a replay) can pin "now". Zone names go through
`zoneinfo` only; anything it does not know is refused with an example of a valid name.
"""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field

from agents.tools.context import ToolContext
from agents.tools.errors import ToolRefused

__all__ = ["current_time", "zone"]


def zone(name: str) -> ZoneInfo:
    """The zone called `name`, or ToolRefused naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # ValueError: a key zoneinfo rejects outright, such as an absolute path.
        raise ToolRefused(
            f"Unknown time zone {name!r}; use an IANA name such as 'UTC', "
            "'Europe/Paris' or 'America/New_York'."
        ) from None


async def current_time(
    ctx: ToolContext,
    timezone: Annotated[
        str,
        Field(
            description="IANA time zone name, e.g. 'Europe/Paris'. Defaults to UTC.",
            min_length=1,
            max_length=64,
        ),
    ] = "UTC",
) -> str:
    """Return the current date and time in the given IANA time zone, as ISO 8601 with the
    UTC offset, followed by the weekday and the zone's abbreviation."""
    local = ctx.clock().astimezone(zone(timezone))
    return f"{local.isoformat(timespec='seconds')} ({local:%A}, {local.tzname()}, {timezone})"
