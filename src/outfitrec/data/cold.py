"""Cold-user training splits: keep only N training outfits per user (the paper's N = 1 and 5).

Validation and test are left untouched, so a cold-user run is evaluated on
exactly the same candidates as a full run. Which outfits a user keeps is a
seeded random choice; users with N outfits or fewer keep them all.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from outfitrec.data.outfits import DataError, OutfitDataset, atomic_folder
from outfitrec.data.prepare import DATASET_FILE, resolve_dataset_path


def cold_user_split(dataset: OutfitDataset, n: int, seed: int = 0) -> OutfitDataset:
    """A copy of `dataset` whose train split keeps at most `n` outfits per user (in their original order)."""
    if n < 1:
        raise DataError(f"cold users: n must be at least 1, got {n}")
    train = dataset.split("train")
    rng = np.random.default_rng(seed)
    # a random key per outfit; within each user keep the n smallest keys
    keys = rng.random(len(train))
    order = np.lexsort((keys, train.users))
    sorted_users = train.users[order]
    first = np.searchsorted(sorted_users, sorted_users, side="left")
    rank = np.arange(len(order)) - first
    keep = np.sort(order[rank < n])
    splits = dict(dataset.splits)
    splits["train"] = train.subset(keep)
    meta = {**dataset.meta, "cold_users": {"n": n, "seed": seed, "train_before": len(train)}}
    name = dataset.meta.get("name", "dataset")
    meta["name"] = f"{name}-cold{n}"
    return OutfitDataset(dataset.catalogue, dataset.n_users, splits, meta, dataset.user_names)


def write_cold_folder(path: str | Path, out: str | Path, n: int, seed: int = 0, overwrite: bool = False) -> Path:
    """A prepared folder at `out` with the cold train split and the source folder's evaluation files.

    The candidate and FITB files of `path` (valid/test only depend on those
    splits) are copied, so cold and full runs share their evaluation data.
    """
    src = resolve_dataset_path(path)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise DataError(f"{out}: exists and is not empty (pass --overwrite)")
    cold = cold_user_split(OutfitDataset.load(src), n, seed)
    with atomic_folder(out) as tmp:
        for extra in sorted(src.parent.glob("*.npz")):
            if extra.name.startswith(("candidates_", "fitb_", "truth")):
                shutil.copyfile(extra, tmp / extra.name)
        cold.save(tmp / DATASET_FILE)
    return out / DATASET_FILE
