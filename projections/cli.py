"""Hook of the projection commands into `turnlog` (turnlog.cli loads `projections.cli`).

The commands themselves live in turnlog/cli_projections.py.
"""

from __future__ import annotations

from turnlog.cli_projections import register

__all__ = ["register"]
