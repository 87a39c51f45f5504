"""CLI commands: `outfitrec data make-fmnist` and `outfitrec data oracle`."""

from __future__ import annotations

import json
import time
from enum import StrEnum
from pathlib import Path

import typer


class Preset(StrEnum):
    tiny = "tiny"
    default = "default"
    large = "large"


class ImageSource(StrEnum):
    fmnist = "fmnist"
    procedural = "procedural"


def make_fmnist(
    out: Path = typer.Argument(..., help="The prepared dataset folder to write."),
    preset: Preset = typer.Option(Preset.default, "--preset", help="tiny (tests), default (demo), large (scale)."),
    seed: int = typer.Option(None, "--seed", help="One seed, one dataset: generation is deterministic. [default: 0]"),
    draw: int = typer.Option(
        None,
        "--draw",
        help="A numbered draw of the preset (data/fmnist.py DRAWS): 1 = seed 0, the preset's unseen share; "
        "2 = seed 1, unseen share 0.4 (the second draw of the main comparison). Not with --seed / --unseen.",
    ),
    images: ImageSource = typer.Option(
        ImageSource.fmnist,
        "--images",
        help="fmnist: the real images (package dataset-fashion-mnist); procedural: drawn stand-ins.",
    ),
    fmnist_dir: Path = typer.Option(Path("/usr/share/datasets/fashion-mnist"), "--fmnist-dir", help="IDX files."),
    n_users: int | None = typer.Option(None, "--users", min=1, help="Override the preset's number of users."),
    train_outfits: int | None = typer.Option(None, "--train-outfits", min=1, help="Override: training outfits."),
    items_per_class: int | None = typer.Option(None, "--items-per-class", min=2, help="Override: images per class."),
    unseen_share: float | None = typer.Option(None, "--unseen", help="Override: share of items held out of training."),
    temperature: float | None = typer.Option(None, "--temperature", help="Override: Gumbel-max temperature."),
    candidates_per_draw: int | None = typer.Option(None, "--candidates", min=1, help="Override: M per draw."),
    k: int = typer.Option(10, "--k", min=1, help="Random-mix negatives per evaluation positive."),
    polyvore_u: bool = typer.Option(True, "--polyvore-u/--no-polyvore-u", help="Also write the Polyvore-U layout."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a dataset already in OUT."),
) -> None:
    """Generate a Fashion-MNIST outfit dataset with known ground truth into a prepared folder."""
    from outfitrec.data.fmnist import draw_settings, generate, preset_config, write_fmnist
    from outfitrec.data.io import check_output_folder
    from outfitrec.data.negatives import check_seed
    from outfitrec.data.outfits import DataError

    if draw is not None:
        if seed is not None or unseen_share is not None:
            raise DataError("make-fmnist: --draw sets the seed and the unseen share; drop --seed / --unseen")
        seed, unseen_share = draw_settings(draw)
    seed = 0 if seed is None else seed
    check_seed(seed)
    check_output_folder(out, (fmnist_dir,), overwrite)  # fail before generating
    start = time.perf_counter()
    config = preset_config(
        preset.value,
        n_users=n_users,
        train_outfits=train_outfits,
        items_per_class=items_per_class,
        unseen_share=unseen_share,
        temperature=temperature,
        candidates_per_draw=candidates_per_draw,
    )
    overridden = config != preset_config(preset.value)
    data = generate(
        preset.value,
        seed,
        images=images.value,
        fmnist_dir=fmnist_dir,
        config=config if overridden else None,
        progress=True,
    )
    summary = write_fmnist(data, out, k=k, seed=seed, polyvore_u=polyvore_u, overwrite=overwrite, inputs=(fmnist_dir,))
    summary["total_s"] = round(time.perf_counter() - start, 3)
    print(json.dumps(summary, indent=1))


def oracle(
    path: Path = typer.Argument(..., help="A folder made by `outfitrec data make-fmnist`."),
    split: str = typer.Option("test", "--split", help="Whose fixed candidates to score: valid or test."),
    quantile: float | None = typer.Option(
        None, "--quantile", help="Typical positive = this quantile of the user's training utilities (default: 0.5)."
    ),
    train_sample: int = typer.Option(20_000, "--train-sample", min=1, help="Training positives to mix negatives for."),
    flags: Path | None = typer.Option(None, "--flags", help="Write per-candidate utilities and flags to this .npz."),
    as_json: Path | None = typer.Option(None, "--json", help="Also write the report to this JSON file."),
) -> None:
    """True-utility oracle: AUC/NDCG on fixed candidates, popularity beside it, true false negatives."""
    from outfitrec.data.outfits import save_npz_atomic, write_text_atomic
    from outfitrec.evaluate.oracle import oracle_report

    report, arrays = oracle_report(path, split=split, quantile=quantile, train_sample=train_sample)
    text = json.dumps(report, indent=1)
    print(text)
    if as_json is not None:
        write_text_atomic(as_json, text + "\n")
    if flags is not None:
        save_npz_atomic(flags, arrays)


def register_data(data_app: typer.Typer) -> None:
    """Add the Fashion-MNIST commands to the `data` group."""
    data_app.command("make-fmnist")(make_fmnist)
    data_app.command("oracle")(oracle)
