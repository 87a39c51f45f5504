"""CLI command: `outfitrec features` (frozen backbone features, cached on disk)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add `outfitrec features` to the main app."""
