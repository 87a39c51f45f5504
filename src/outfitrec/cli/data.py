"""CLI commands: `outfitrec data ...` (stats, loaders/converters, negatives, Fashion-MNIST)."""

from __future__ import annotations

import typer

from outfitrec.cli import fmnist as fmnist_cli

data_app = typer.Typer(help="Build, convert, inspect and check outfit datasets.", no_args_is_help=True)
fmnist_cli.register_data(data_app)


def register(app: typer.Typer) -> None:
    """Add `outfitrec data` to the main app."""
    app.add_typer(data_app, name="data")
