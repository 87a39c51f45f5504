"""Prepared dataset folders: build one from a source format, and load one.

A prepared folder (docs/DESIGN.md) holds `dataset.npz`, `candidates_valid.npz`
/ `candidates_test.npz` (K random-mix negatives per positive, fixed by seed)
and `fitb_valid.npz` / `fitb_test.npz` for the splits present. FITB
questions come from the source's own FITB files when it has them (DiFashion
validation, Polyvore-U `fill_in_blank_test`) and are generated otherwise.
The folder is built in a hidden temporary folder and swapped in (io.atomic_folder),
with a manifest `outfitrec.json` (dataset hash, fingerprint, seed, counts)
written last; every derived file records the fingerprint of its dataset, and
readers refuse a mismatch. FITB files are optional (skipped with a warning
when no question can be drawn).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from outfitrec.data.difashion import load_difashion
from outfitrec.data.fitb import FitbQuestions, fitb_path, write_fitb_files
from outfitrec.data.io import (
    atomic_folder,
    check_output_folder,
    file_sha256,
    image_folders,
    read_manifest,
    write_manifest,
)
from outfitrec.data.negatives import check_seed, provenance, write_candidate_files
from outfitrec.data.outfits import DataError, OutfitDataset
from outfitrec.data.plain import read_plain, write_plain
from outfitrec.data.polyvore_u import load_polyvore_u
from outfitrec.data.stats import training_leaks

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


def load_dataset(path: str | Path) -> tuple[OutfitDataset, Path]:
    """A prepared dataset: (dataset, its folder) from the folder or its dataset .npz.

    Raises DataError for a path that is neither, an unreadable file, or a
    dataset that is not the one its folder's manifest names (a folder mixed by
    an interrupted write). The evaluation files beside it (`candidates_{split}.npz`,
    `fitb_{split}.npz`) are read on demand: `Candidates.load`, `load_fitb`.
    """
    file = resolve_dataset_path(path)
    dataset = OutfitDataset.load(file)
    check_manifest(file, dataset)
    return dataset, file.parent


def check_manifest(file: Path, dataset: OutfitDataset) -> None:
    """Refuse a dataset file whose folder's manifest names another dataset (a folder mixed by an interrupted write)."""
    info = read_manifest(file.parent)
    if info is None or info.get("dataset", {}).get("file") != file.name:
        return
    expected = info["dataset"].get("fingerprint")
    if expected and dataset.fingerprint and expected != dataset.fingerprint:
        raise DataError(
            f"{file}: is not the dataset its folder's manifest names (fingerprint {dataset.fingerprint}, "
            f"manifest {expected}); prepare the folder again"
        )


def load_fitb(
    path: str | Path, split: str, dataset: OutfitDataset | None = None, required: bool = True
) -> FitbQuestions | None:
    """The FITB questions of a split in a prepared folder (or beside a dataset .npz), checked against the dataset.

    dataset: the folder's dataset when already loaded (else it is read). With
    required=False a folder without `fitb_{split}.npz` gives None; otherwise
    (and for a damaged file, or one made from another dataset) DataError.
    """
    if dataset is None:
        dataset, folder = load_dataset(path)
    else:
        folder = resolve_dataset_path(path).parent
    file = fitb_path(folder, split)
    if not required and not file.is_file():
        return None
    return FitbQuestions.load(file, dataset.n_users, dataset.catalogue.n_items)


def load_source(src: str | Path, fmt: str) -> OutfitDataset:
    """Load a dataset in one of FORMATS ('npz' takes a prepared folder or a dataset .npz)."""
    if fmt == "difashion":
        return load_difashion(src)
    if fmt == "polyvore-u":
        return load_polyvore_u(src)
    if fmt == "plain":
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


def folder_facts(dataset: OutfitDataset, dataset_file: Path, **extra) -> dict:
    """The manifest facts of a folder holding `dataset` saved at `dataset_file`: hashes and counts."""
    return {
        "dataset": {
            "file": dataset_file.name,
            "sha256": file_sha256(dataset_file),
            "fingerprint": dataset.fingerprint,
            "users": dataset.n_users,
            "items": dataset.catalogue.n_items,
            "outfits": {s: len(o) for s, o in dataset.splits.items()},
        },
        **extra,
    }


def warn_training_leaks(dataset: OutfitDataset) -> None:
    """Warn, per split, how many valid / test positives are the same user's training outfits."""
    for split, (leaked, total) in training_leaks(dataset).items():
        if leaked:
            verb = "is a training outfit" if leaked == 1 else "are training outfits"
            warnings.warn(f"{leaked} of {total} {split} outfits {verb} of the same user", stacklevel=2)


def _checked_fitb(questions: FitbQuestions, where: str) -> FitbQuestions:
    """Shipped FITB questions without those whose distractor equals the answer (warning with the count)."""
    kept, dropped = questions.without_answer_repeats()
    if dropped:
        warnings.warn(f"{where}: {dropped} FITB questions dropped: a distractor equals the answer", stacklevel=2)
    return kept


def prepare(
    src: str | Path, out: str | Path, fmt: str, k: int = 10, seed: int = 0, overwrite: bool = False
) -> dict[str, Path]:
    """Build a prepared folder at `out` from `src` in format `fmt`; returns {what: path} of files written.

    Raises DataError for a negative seed, an output that is, contains or lies
    inside the source (or its image folders), an existing folder without
    --overwrite or not written by outfitrec, and any bad input. FITB files are
    left out (one warning) when no FITB question can be drawn. The folder is
    swapped in whole, with a manifest (`outfitrec.json`) written last.
    """
    check_seed(seed)
    out = check_output_folder(out, [src], overwrite)
    dataset = load_source(src, fmt)
    check_output_folder(out, [src, *image_folders(dataset.catalogue.image_paths)], overwrite)
    if "train" not in dataset.splits or len(dataset.splits["train"]) == 0:
        raise DataError(f"{src}: the train split is empty")
    warn_training_leaks(dataset)
    shipped = {s: _checked_fitb(q, f"{src} ({s})") for s, q in _source_fitb(src, fmt, dataset).items()}
    with atomic_folder(out) as tmp:
        dataset.save(tmp / DATASET_FILE)
        written = {"dataset": out / DATASET_FILE}
        for split, path in write_candidate_files(dataset, tmp, k=k, seed=seed).items():
            written[f"candidates_{split}"] = out / path.name
        for split, questions in shipped.items():
            questions.meta.update(provenance(dataset))
            questions.save(fitb_path(tmp, split))
            written[f"fitb_{split}"] = out / fitb_path(tmp, split).name
        missing = tuple(s for s in ("valid", "test") if s not in shipped)
        for split, path in write_fitb_files(dataset, tmp, seed=seed, splits=missing, optional=True).items():
            written[f"fitb_{split}"] = out / path.name
        write_manifest(tmp, "prepared", **folder_facts(dataset, tmp / DATASET_FILE, seed=seed, k=k, source_format=fmt))
    return written


def convert(src: str | Path, dst: str | Path, from_format: str, overwrite: bool = False) -> OutfitDataset:
    """Convert a dataset in `from_format` ('difashion', 'polyvore-u', 'npz', 'plain') to the plain format."""
    check_output_folder(dst, [src], overwrite)
    dataset = load_source(src, from_format)
    write_plain(dataset, dst, overwrite=overwrite, inputs=(src,))
    return dataset
