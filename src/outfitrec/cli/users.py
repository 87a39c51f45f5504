"""CLI commands: users add (new users folded in without retraining)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from outfitrec.cli.recommend import DATA_HELP, RUN_HELP, load_recommender
from outfitrec.data.outfits import DataError

users_app = typer.Typer(help="New users without retraining (fold-in: the model frozen).", no_args_is_help=True)


@users_app.command("add")
def add(
    run: Path = typer.Argument(..., help=RUN_HELP),
    outfits: Path = typer.Option(
        ..., "--outfits", help="CSV of liked outfits: header user,item_ids; item names or indices separated by ;"
    ),
    out: Path = typer.Option(..., "--out", "-o", help="output folder (users.safetensors + users.json); not in RUN"),
    data: Path | None = typer.Option(None, "--data", help=DATA_HELP),
    steps: int | None = typer.Option(None, "--steps", min=0, help="Adam steps of the fold-in (default 300)"),
    lr: float | None = typer.Option(None, "--lr", min=0.0, help="learning rate of the fold-in (default 0.02)"),
    seed: int = typer.Option(0, "--seed", min=0, help="seed of the fold-in (random mixes, start, samples)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing folder written by outfitrec"),
) -> None:
    """Fit new users from their liked outfits with the model frozen and write them as an overlay folder.

    `outfitrec recommend RUN --users-from OUT --user NAME` and `outfitrec serve RUN --users-from OUT`
    load it; the run directory is never written.
    """
    from outfitrec.data.io import check_output_folder
    from outfitrec.data.outfits import PAD
    from outfitrec.recommend.users import read_outfits_csv

    rec = load_recommender(run, data)
    inputs = [run, outfits] + ([] if rec.info.get("dataset") is None else [Path(rec.info["dataset"]).parent])
    check_output_folder(out, inputs, overwrite)  # before the work: a bad --out fails at once
    params = rec.fold_in_params(steps=steps, lr=lr, seed=seed)
    added = []
    for name, rows in read_outfits_csv(outfits, rec.dataset.catalogue, rec.max_size):
        start = time.perf_counter()
        try:
            liked = [[int(i) for i in row if i != PAD] for row in rows]  # rows are PAD-padded to max_size
            user = rec.add_user(liked, name, params)
        except DataError as exc:
            raise DataError(f"{outfits}: user {name!r}: {exc}") from None
        added.append(user)
        seconds = time.perf_counter() - start
        print(f"user {user} ({name}): {len(rows)} liked outfits, fitted in {seconds * 1000:.0f} ms")
    rec.overlay(added).save(out, inputs, overwrite)
    print(f"wrote {out} ({len(added)} users)")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.add_typer(users_app, name="users")
