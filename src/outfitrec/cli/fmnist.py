"""CLI commands: `outfitrec data make-fmnist` and `outfitrec data oracle`."""

from __future__ import annotations

import typer


def register_data(data_app: typer.Typer) -> None:
    """Add the Fashion-MNIST commands to the `data` group."""
