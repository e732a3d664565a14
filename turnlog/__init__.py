"""turnlog: event-sourced LLM agents on Kafka and Postgres.

The Python client is `turnlog.Client` (turnlog.client); it is imported on first use, so
that `import turnlog.settings` (every CLI command, the dev tooling) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from turnlog._layout import check_top_level_packages

# Before anything imports agents/schemas/streams/projections: are they ours? (_layout)
check_top_level_packages()

if TYPE_CHECKING:
    from turnlog.client import Client, Outcome, OutcomeTimeout, Sent

__all__ = ["Client", "Outcome", "OutcomeTimeout", "Sent"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from turnlog import client

        return getattr(client, name)
    raise AttributeError(f"module 'turnlog' has no attribute {name!r}")
