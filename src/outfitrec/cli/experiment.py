"""CLI command: `outfitrec experiment NAME` (the paper's experiments, method.md §6)."""

from __future__ import annotations

from pathlib import Path

import typer


def experiment_cmd(
    name: str = typer.Argument(
        ...,
        help="main, alpha, threshold, cold, hard, augment, backbone, batch, teachers, compress, cost or qualitative.",
    ),
    data: Path = typer.Option(Path("datasets/fmnist-default"), "--data", help="Prepared dataset folder."),
    seeds: int = typer.Option(3, "--seeds", help="Student seeds per variant (0 .. N-1)."),
    out: Path = typer.Option(None, "--out", help="Results folder (default runs/experiments/<data>-<scale>/NAME)."),
    scale: str = typer.Option(
        "quick", "--scale", help="quick (sized for a small CPU), full (all data, more epochs), smoke (tests)."
    ),
    runs: Path = typer.Option(
        None,
        "--runs",
        help="Run directories, shared by experiments (default runs/experiments/<data>-<scale>/runs).",
    ),
    variants: str = typer.Option(
        None, "--variants", help="Comma-separated variant names: train only these (split an experiment over processes)."
    ),
    no_train: bool = typer.Option(
        False, "--no-train", help="Train nothing: write the tables from the runs finished so far."
    ),
    compare: Path = typer.Option(
        None,
        "--compare",
        help="main only: the results folder of the main comparison on another draw (e.g. another "
        "`make-fmnist --draw`); writes claims.md: both tables side by side, each claim held or not on each.",
    ),
) -> None:
    """Train (or reuse) an experiment's runs; write CSV, a Markdown table and plots into the results folder."""
    from outfitrec.experiments.core import main_argv, run_experiment

    only = [v.strip() for v in variants.split(",") if v.strip()] if variants else None
    paths = run_experiment(
        name, data, seeds, out, scale, runs, command=main_argv(), only=only, no_train=no_train, compare=compare
    )
    for key, path in paths.items():
        typer.echo(f"{key}: {path}")
    table = paths.get("table")
    if table is not None and Path(table).is_file():
        typer.echo(Path(table).read_text())


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("experiment")(experiment_cmd)
