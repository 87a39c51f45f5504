"""Cold-user training splits: keep only N training outfits per cold user (the paper's N = 1 and 5).

Two designs, by `share` (the fraction of users made cold):
- share = 1: every user is cold; validation and test are left untouched, so a
  cold run is evaluated on exactly the same candidates as a full run.
- share < 1: cold users inside a warm population (a new user joining a
  service whose catalogue and other users are known): the other users keep
  all their training outfits, so the item encoders still learn; the written
  folder's valid/test candidates keep the cold users' rows only, so every
  metric measured on it is a cold-user metric.
Which users are cold and which outfits they keep are seeded random choices;
users with N outfits or fewer keep them all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from outfitrec.data.io import atomic_folder, check_output_folder, write_manifest
from outfitrec.data.negatives import Candidates, check_seed
from outfitrec.data.outfits import DataError, OutfitDataset, restamp_npz
from outfitrec.data.prepare import DATASET_FILE, folder_facts, resolve_dataset_path


def cold_user_split(dataset: OutfitDataset, n: int, seed: int = 0, share: float = 1.0) -> OutfitDataset:
    """A copy of `dataset` whose train split keeps at most `n` outfits per cold user (in their original order).

    share: the fraction of users made cold (a seeded choice); the others keep every training outfit.
    The cold users are listed in meta["cold_users"]["users"].
    """
    if n < 1:
        raise DataError(f"cold users: n must be at least 1, got {n}")
    if not 0.0 < share <= 1.0:
        raise DataError(f"cold users: share must be in (0, 1], got {share}")
    train = dataset.split("train")
    rng = np.random.default_rng(seed)
    # a random key per outfit; within each user keep the n smallest keys
    keys = rng.random(len(train))
    order = np.lexsort((keys, train.users))
    sorted_users = train.users[order]
    first = np.searchsorted(sorted_users, sorted_users, side="left")
    rank = np.arange(len(order)) - first
    if share >= 1.0:
        cold_users = np.arange(dataset.n_users)
    else:
        n_cold = max(1, int(round(share * dataset.n_users)))
        cold_users = np.sort(rng.permutation(dataset.n_users)[:n_cold])
    keep = np.sort(order[(rank < n) | ~np.isin(sorted_users, cold_users)])
    splits = dict(dataset.splits)
    splits["train"] = train.subset(keep)
    info = {"n": n, "seed": seed, "train_before": len(train), "share": share, "users": cold_users.tolist()}
    meta = {**dataset.meta, "cold_users": info}
    name = dataset.meta.get("name", "dataset")
    meta["name"] = f"{name}-cold{n}"
    return OutfitDataset(dataset.catalogue, dataset.n_users, splits, meta, dataset.user_names, history=dataset.history)


def write_cold_folder(
    path: str | Path, out: str | Path, n: int, seed: int = 0, overwrite: bool = False, share: float = 1.0
) -> Path:
    """A prepared folder at `out` with the cold train split and the source folder's evaluation files.

    share = 1: the candidate and FITB files of `path` are copied (recording the
    cold dataset's fingerprint), so cold and full runs share their evaluation data. share < 1: the candidate files keep
    the cold users' rows only (FITB files are left out: FITB is not a
    per-user study here).
    """
    src = resolve_dataset_path(path)
    check_seed(seed)
    out = check_output_folder(out, [src.parent], overwrite)
    dataset = OutfitDataset.load(src)
    cold = cold_user_split(dataset, n, seed, share)
    cold_users = np.asarray(cold.meta["cold_users"]["users"], dtype=np.int64)
    with atomic_folder(out) as tmp:
        cold.save(tmp / DATASET_FILE)
        for extra in sorted(p for p in src.parent.glob("*.npz") if not p.name.startswith(".")):
            if extra.name.startswith("truth") or (extra.name.startswith("fitb_") and share >= 1.0):
                restamp_npz(extra, tmp / extra.name, cold.fingerprint)
            elif extra.name.startswith("candidates_"):
                candidates = Candidates.load(extra, dataset.n_users, dataset.catalogue.n_items)
                if share < 1.0:
                    candidates = restrict_candidates(candidates, cold_users)
                candidates.meta["dataset_fingerprint"] = cold.fingerprint
                candidates.save(tmp / extra.name)
        write_manifest(tmp, "cold", **folder_facts(cold, tmp / DATASET_FILE, seed=seed, source=str(src)))
    return out / DATASET_FILE


def restrict_candidates(candidates: Candidates, users: np.ndarray) -> Candidates:
    """The evaluation candidates of `users` only (each positive with its k negatives)."""
    rows = np.flatnonzero(np.isin(candidates.positives.users, users))
    if len(rows) == 0:
        raise DataError("cold users: none of the cold users has an evaluation candidate")
    k = candidates.k
    neg_rows = (rows[:, None] * k + np.arange(k)[None, :]).ravel()
    meta = {**candidates.meta, "restricted_to_users": len(np.unique(candidates.positives.users[rows]))}
    return Candidates(candidates.positives.subset(rows), candidates.negatives.subset(neg_rows), k, meta)
