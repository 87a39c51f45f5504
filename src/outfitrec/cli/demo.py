"""CLI command: `outfitrec demo`, the main job on the embedded default dataset."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add `outfitrec demo` to the main app."""
