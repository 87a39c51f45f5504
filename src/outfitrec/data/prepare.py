"""Prepared dataset folders: build one from a source format, and load one.

A prepared folder (docs/DESIGN.md) holds `dataset.npz`, `candidates_valid.npz`
/ `candidates_test.npz` (K random-mix negatives per positive, fixed by seed)
and `fitb_valid.npz` / `fitb_test.npz` for the splits present. FITB
questions come from the source's own FITB files when it has them (DiFashion
validation, Polyvore-U `fill_in_blank_test`) and are generated otherwise.
The folder is built in a temporary folder and renamed: a failure leaves no
half-built output.
"""

from __future__ import annotations

from pathlib import Path

from outfitrec.data.fitb import FitbQuestions, fitb_path, write_fitb_files
from outfitrec.data.negatives import Candidates, candidates_path, write_candidate_files
from outfitrec.data.outfits import DataError, OutfitDataset, atomic_folder

FORMATS = ("difashion", "polyvore-u", "plain", "npz")
DATASET_FILE = "dataset.npz"


def resolve_dataset_path(path: str | Path, origin: str = "") -> Path:
    """`--data PATH`: a prepared folder (its dataset.npz) or a dataset .npz file itself.

    `origin` names where the path came from (e.g. a config file's key) in the error.
    """
    given = Path(path)
    if given.is_dir() and not (given / DATASET_FILE).is_file():
        raise DataError(f"{origin + ': ' if origin else ''}{given}: not a prepared dataset folder (no {DATASET_FILE})")
    path = given / DATASET_FILE if given.is_dir() else given
    if not path.is_file():
        raise DataError(
            f"{origin + ': ' if origin else ''}{path}: no such dataset file (expected a prepared folder or a .npz)"
        )
    return path


def run_data_path(run_dir: str | Path) -> Path:
    """The dataset.npz a training run used: data.path of its resolved config.yaml.

    data.path is taken as written (absolute, or relative to the working
    directory), else relative to the run directory.
    """
    import yaml

    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise DataError(f"{config_path}: missing (not a run directory?); pass --data")
    try:
        config = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError as exc:
        raise DataError(f"{config_path}: not valid YAML ({exc})") from exc
    data_path = (config or {}).get("data", {}).get("path") if isinstance(config, dict) else None
    if not data_path:
        raise DataError(f"{config_path}: key data.path is missing")
    for base in (Path("."), run_dir):
        candidate = base / data_path
        if candidate.exists():
            return resolve_dataset_path(candidate, f"{config_path}:data.path")
    raise DataError(f"{config_path}:data.path: {data_path} does not exist")


def load_prepared(path: str | Path) -> tuple[OutfitDataset, dict[str, Candidates]]:
    """The dataset and the fixed evaluation candidates present beside it, checked against its bounds."""
    file = resolve_dataset_path(path)
    dataset = OutfitDataset.load(file)
    candidates = {}
    for split in ("valid", "test"):
        c_path = candidates_path(file.parent, split)
        if c_path.exists():
            candidates[split] = Candidates.load(c_path, n_users=dataset.n_users, n_items=dataset.catalogue.n_items)
    return dataset, candidates


def load_fitb(path: str | Path, split: str) -> FitbQuestions:
    """The FITB questions of a split in a prepared folder (or beside a dataset .npz)."""
    file = resolve_dataset_path(path)
    dataset = OutfitDataset.load(file)
    return FitbQuestions.load(fitb_path(file.parent, split), dataset.n_users, dataset.catalogue.n_items)


def load_source(src: str | Path, fmt: str) -> OutfitDataset:
    """Load a dataset in one of FORMATS ('npz' takes a prepared folder or a dataset .npz)."""
    if fmt == "difashion":
        from outfitrec.data.difashion import load_difashion

        return load_difashion(src)
    if fmt == "polyvore-u":
        from outfitrec.data.polyvore_u import load_polyvore_u

        return load_polyvore_u(src)
    if fmt == "plain":
        from outfitrec.data.plain import read_plain

        return read_plain(src)
    if fmt == "npz":
        return OutfitDataset.load(resolve_dataset_path(src))
    raise DataError(f"unknown format {fmt!r} (expected one of {FORMATS})")


def _source_fitb(src: str | Path, fmt: str, dataset: OutfitDataset) -> dict[str, FitbQuestions]:
    """FITB questions shipped with the source, by split."""
    if fmt == "difashion":
        from outfitrec.data.difashion import difashion_fitb_splits, load_difashion_fitb

        return {s: load_difashion_fitb(src, dataset, s) for s in difashion_fitb_splits(src, dataset)}
    if fmt == "polyvore-u":
        from outfitrec.data.polyvore_u import FITB_FILE, find_tuples_folder, load_polyvore_u_fitb

        if (find_tuples_folder(src) / FITB_FILE).exists() and "test" in dataset.splits:
            return {"test": load_polyvore_u_fitb(src)}
    return {}


def prepare(
    src: str | Path, out: str | Path, fmt: str, k: int = 10, seed: int = 0, overwrite: bool = False
) -> dict[str, Path]:
    """Build a prepared folder at `out` from `src` in format `fmt`; returns {what: path} of files written."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise DataError(f"{out}: exists and is not empty (pass --overwrite)")
    dataset = load_source(src, fmt)
    if "train" not in dataset.splits or len(dataset.splits["train"]) == 0:
        raise DataError(f"{src}: the train split is empty")
    shipped = _source_fitb(src, fmt, dataset)
    with atomic_folder(out) as tmp:
        dataset.save(tmp / DATASET_FILE)
        written = {"dataset": out / DATASET_FILE}
        for split, path in write_candidate_files(dataset, tmp, k=k, seed=seed).items():
            written[f"candidates_{split}"] = out / path.name
        for split, questions in shipped.items():
            questions.save(fitb_path(tmp, split))
            written[f"fitb_{split}"] = out / fitb_path(tmp, split).name
        missing = tuple(s for s in ("valid", "test") if s not in shipped)
        for split, path in write_fitb_files(dataset, tmp, seed=seed, splits=missing).items():
            written[f"fitb_{split}"] = out / path.name
    return written
