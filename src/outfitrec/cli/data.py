"""CLI commands: `outfitrec data ...` (stats, loaders/converters, negatives, Fashion-MNIST)."""

from __future__ import annotations

import json
import warnings
from enum import StrEnum
from pathlib import Path

import typer

from outfitrec.cli import fmnist as fmnist_cli

data_app = typer.Typer(help="Build, convert, inspect and check outfit datasets.", no_args_is_help=True)
fmnist_cli.register_data(data_app)


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


@data_app.callback()
def _data_group() -> None:
    """Warnings of the data commands are printed as one line each (`warning: ...`)."""
    warnings.formatwarning = _one_line_warning


class SourceFormat(StrEnum):
    difashion = "difashion"
    polyvore_u = "polyvore-u"
    plain = "plain"
    npz = "npz"


class NegativeKind(StrEnum):
    random = "random"
    hard = "hard"


def _guess_format(path: Path) -> str:
    """The format of a dataset path, for commands that take any dataset."""
    if path.is_file() or (path / "dataset.npz").is_file():
        return "npz"
    if (path / "train.npy").is_file():
        return "difashion"
    if (path / "items.csv").is_file():
        return "plain"
    return "polyvore-u"


@data_app.command()
def stats(
    path: Path = typer.Argument(..., help="A prepared folder, dataset .npz, DiFashion, Polyvore-U or plain folder."),
    fmt: SourceFormat | None = typer.Option(None, "--format", help="Source format (default: guessed from PATH)."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """Print users, items, categories, outfits per split and per user, outfit sizes, unseen-item shares."""
    from outfitrec.data.prepare import load_source
    from outfitrec.data.stats import dataset_stats, format_stats

    dataset = load_source(path, fmt.value if fmt else _guess_format(path))
    result = dataset_stats(dataset)
    print(json.dumps(result, indent=1) if as_json else format_stats(result))


@data_app.command()
def prepare(
    src: Path = typer.Argument(..., help="The source dataset."),
    out: Path = typer.Argument(..., help="The prepared folder to write."),
    fmt: SourceFormat = typer.Option(..., "--format", help="Format of SRC."),
    k: int = typer.Option(10, "--k", min=1, help="Random-mix negatives per evaluation positive."),
    seed: int = typer.Option(0, "--seed", help="Seed of the negatives and the generated FITB questions."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
) -> None:
    """Write a prepared folder: dataset.npz, candidates_{valid,test}.npz, fitb_{valid,test}.npz."""
    from outfitrec.data.prepare import prepare as run_prepare

    for name, path in run_prepare(src, out, fmt.value, k=k, seed=seed, overwrite=overwrite).items():
        print(f"{name:<18} {path}")


@data_app.command()
def negatives(
    path: Path = typer.Argument(..., help="A prepared folder or dataset .npz."),
    k: int = typer.Option(10, "--k", min=1, help="Negatives per positive."),
    seed: int = typer.Option(0, "--seed", help="Seed: one seed always writes identical files."),
    kind: NegativeKind = typer.Option(NegativeKind.random, "--kind", help="random (type-aware mix) or hard."),
    splits: str = typer.Option("valid,test", "--splits", help="Comma-separated splits."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: beside the dataset)."),
) -> None:
    """(Re)write the fixed evaluation candidates of splits: candidates_{split}.npz (or _hard)."""
    from outfitrec.data.negatives import category_pools, check_seed, make_candidates, provenance, write_candidate_files
    from outfitrec.data.outfits import DataError, OutfitDataset
    from outfitrec.data.prepare import resolve_dataset_path

    check_seed(seed)
    file = resolve_dataset_path(path)
    dataset = OutfitDataset.load(file)
    target = out if out is not None else file.parent
    if target.exists() and not target.is_dir():
        raise DataError(f"{target}: exists and is a file, not a folder")
    wanted = tuple(s.strip() for s in splits.split(",") if s.strip())
    for split in wanted:
        dataset.split(split)  # clear error for a missing or empty split
    if kind is NegativeKind.random:
        written = write_candidate_files(dataset, target, k=k, seed=seed, splits=wanted)
    else:
        written = {}
        for offset, split in enumerate(wanted):
            positives = dataset.split(split)
            pools = category_pools(positives.items, dataset.catalogue.item_category)
            meta = {"split": split, **provenance(dataset)}
            cands = make_candidates(positives, pools, k=k, seed=seed + offset, kind="hard", meta=meta)
            written[split] = Path(target) / f"candidates_{split}_hard.npz"
            cands.save(written[split])
    if not written:
        raise DataError(f"{file}: none of the splits {wanted} is present")
    for split, p in written.items():
        print(f"{split:<6} {p}")


@data_app.command()
def convert(
    src: Path = typer.Argument(..., help="The source dataset."),
    dst: Path = typer.Argument(..., help="The plain-format folder to write (docs/data-format.md)."),
    from_format: SourceFormat = typer.Option(..., "--from", help="Format of SRC."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace DST if it exists."),
) -> None:
    """Convert a dataset to outfitrec's plain CSV format."""
    from outfitrec.data.prepare import convert as run_convert

    dataset = run_convert(src, dst, from_format.value, overwrite=overwrite)
    n = {s: len(o) for s, o in dataset.splits.items()}
    print(f"wrote {dst}: {dataset.catalogue.n_items} items, {dataset.n_users} users, outfits {n}")


@data_app.command()
def cold(
    path: Path = typer.Argument(..., help="A prepared folder or dataset .npz."),
    out: Path = typer.Argument(..., help="The cold-user prepared folder to write."),
    n: int = typer.Option(1, "--n", min=1, help="Training outfits kept per user."),
    seed: int = typer.Option(0, "--seed", help="Seed of the choice of cold users and kept outfits."),
    share: float = typer.Option(
        1.0,
        "--share",
        help="Fraction of users made cold; below 1 the others keep all their outfits and the folder's "
        "valid/test candidates keep the cold users only.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
) -> None:
    """Write a prepared folder whose train split keeps N outfits per cold user."""
    from outfitrec.data.cold import write_cold_folder
    from outfitrec.data.outfits import OutfitDataset

    file = write_cold_folder(path, out, n, seed=seed, overwrite=overwrite, share=share)
    cold = OutfitDataset.load(file)
    n_cold = len(cold.meta["cold_users"]["users"])
    print(f"wrote {file}: {len(cold.splits['train'])} training outfits; {n_cold} cold users ({n} outfits each at most)")


def register(app: typer.Typer) -> None:
    """Add `outfitrec data` to the main app."""
    app.add_typer(data_app, name="data")
