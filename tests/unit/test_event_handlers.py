"""Every event type is handled by every concern that reads events, so a new event type
cannot be silently unhandled: the core's evolve, the phase rule the projection uses, the
Postgres projection, and the renderer of `send --follow`, the demo and `replay`."""

from __future__ import annotations

from typing import get_args

import pytest

from agents.events import EventPayload
from agents.evolve import _HANDLERS as EVOLVE
from agents.phases import MOVES, STILL
from projections.fold import EVENTS_ROW_ONLY, PROJECTS
from turnlog._render import DESCRIBES
from turnlog.console.timeline import EVENT_VIEWS

EVENT_TYPES = frozenset(get_args(EventPayload))


def test_the_event_union_is_what_the_concerns_are_checked_against() -> None:
    assert len(EVENT_TYPES) >= 29
    assert all(isinstance(t, type) for t in EVENT_TYPES)


@pytest.mark.parametrize(
    ("concern", "handled"),
    [
        ("agents.evolve", frozenset(EVOLVE)),
        ("agents.phases (MOVES | STILL)", frozenset(MOVES) | STILL),
        ("projections.fold (PROJECTS | EVENTS_ROW_ONLY)", frozenset(PROJECTS) | EVENTS_ROW_ONLY),
        ("turnlog._render", frozenset(DESCRIBES)),
        ("turnlog.console.timeline", frozenset(EVENT_VIEWS)),
    ],
)
def test_every_event_type_has_a_handler(concern: str, handled: frozenset[type]) -> None:
    missing = sorted(t.__name__ for t in EVENT_TYPES - handled)
    assert not missing, f"{concern} has no handler for {missing}"
    extra = sorted(t.__name__ for t in handled - EVENT_TYPES)
    assert not extra, f"{concern} handles types that are not events: {extra}"


def test_a_type_is_either_moving_or_still_and_either_projected_or_events_row_only() -> None:
    assert not frozenset(MOVES) & STILL
    assert not frozenset(PROJECTS) & EVENTS_ROW_ONLY
