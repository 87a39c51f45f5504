"""The `outfitrec` command line: a thin layer over the library.

Each sub-module registers its commands on the one Typer app; bad input
(`DataError`, `ConfigError`) is reported as one clear line, exit code 2.
"""

from __future__ import annotations

import sys

import typer

from outfitrec.cli import baseline as baseline_cli
from outfitrec.cli import data as data_cli
from outfitrec.cli import demo as demo_cli
from outfitrec.cli import experiment as experiment_cli
from outfitrec.cli import features as features_cli
from outfitrec.cli import recommend as recommend_cli
from outfitrec.cli import train as train_cli
from outfitrec.data.outfits import DataError

app = typer.Typer(
    help="Personalized outfit recommendation: data, training, distillation, serving.", no_args_is_help=True
)


@app.command()
def version() -> None:
    """Print the outfitrec version."""
    from outfitrec import __version__

    print(__version__)


for module in (data_cli, features_cli, train_cli, experiment_cli, recommend_cli, demo_cli, baseline_cli):
    module.register(app)


def main() -> None:
    try:
        app()
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
