"""Negative outfits: type-aware random mix and hard negatives, and the fixed
candidate files every evaluation of a split reads.

Random mix (FHN): each item of a positive outfit is replaced by a random item
of the same category from the split's item pool; a sample equal (as a set) to
any known positive is rejected and drawn again. Hard negatives: positive
outfits of other users, given to this user.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from outfitrec.data.outfits import PAD, DataError, Outfits, read_npz_with_header, save_npz_atomic

MAX_REDRAWS = 50


def category_pools(items: np.ndarray, item_category: np.ndarray) -> dict[int, np.ndarray]:
    """Category id -> sorted unique item ids among `items` (PAD ignored)."""
    ids = np.unique(np.asarray(items)[np.asarray(items) != PAD])
    cats = np.asarray(item_category)[ids]
    return {int(c): ids[cats == c] for c in np.unique(cats)}


def random_mix(
    positives: Outfits,
    pools: dict[int, np.ndarray],
    k: int,
    rng: np.random.Generator,
    forbidden: set[frozenset[int]] | None = None,
) -> Outfits:
    """K type-aware random-mix negatives per positive, rows [i*k:(i+1)*k] for positive i.

    forbidden: outfits (item sets) a negative must not equal; default the
    positives themselves.
    """
    forbidden = set(positives.item_sets()) if forbidden is None else forbidden
    rep = positives.subset(np.repeat(np.arange(len(positives)), k))
    items = rep.items.copy()
    _fill_random(items, rep.categories, rep.mask, pools, rng, np.ones(len(items), dtype=bool))
    for _ in range(MAX_REDRAWS):
        bad = np.array([frozenset(r[m].tolist()) in forbidden for r, m in zip(items, rep.mask)], dtype=bool)
        if not bad.any():
            break
        _fill_random(items, rep.categories, rep.mask, pools, rng, bad)
    else:
        bad = np.array([frozenset(r[m].tolist()) in forbidden for r, m in zip(items, rep.mask)], dtype=bool)
        if bad.any():
            row = int(np.flatnonzero(bad)[0]) // k
            raise DataError(
                f"negatives: positive row {row} (user {int(positives.users[row])}): every random mix drawn "
                f"{MAX_REDRAWS} times equals a positive; the category pools are too small for K={k} negatives"
            )
    return Outfits(rep.users, items, rep.categories, rep.mask, rep.outfit_ids)


def _fill_random(
    items: np.ndarray,
    categories: np.ndarray,
    mask: np.ndarray,
    pools: dict[int, np.ndarray],
    rng: np.random.Generator,
    rows: np.ndarray,
) -> None:
    """Redraw, in place, every real slot of the selected rows from its category's pool."""
    for cat in np.unique(categories[rows][mask[rows]]):
        pool = pools.get(int(cat))
        if pool is None or len(pool) == 0:
            raise DataError(f"negatives: category {int(cat)} has no items in the pool")
        where = (categories == cat) & mask & rows[:, None]
        items[where] = pool[rng.integers(0, len(pool), size=int(where.sum()))]


def hard_negatives(positives: Outfits, k: int, rng: np.random.Generator) -> Outfits:
    """K positive outfits of other users per positive, given to this positive's user."""
    n = len(positives)
    if n < 2 or len(np.unique(positives.users)) < 2:
        raise DataError("hard negatives need positive outfits of at least two users")
    rep_users = np.repeat(positives.users, k)
    picks = rng.integers(0, n, size=n * k)
    for _ in range(MAX_REDRAWS * 4):
        same = positives.users[picks] == rep_users
        if not same.any():
            break
        picks[same] = rng.integers(0, n, size=int(same.sum()))
    chosen = positives.subset(picks)
    return Outfits(rep_users, chosen.items, chosen.categories, chosen.mask, np.repeat(positives.outfit_ids, k))


@dataclass
class Candidates:
    """A split's fixed evaluation candidates: positives and K negatives each.

    negatives rows [i*k:(i+1)*k] belong to positive i (same user).
    """

    positives: Outfits
    negatives: Outfits
    k: int
    meta: dict

    def save(self, path: str | Path) -> None:
        arrays = {}
        for prefix, outfits in (("pos", self.positives), ("neg", self.negatives)):
            for key in ("users", "items", "categories", "mask", "outfit_ids"):
                arrays[f"{prefix}.{key}"] = getattr(outfits, key)
        header = {"format": "outfitrec-candidates", "k": self.k, "meta": self.meta}
        arrays["header"] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
        save_npz_atomic(path, arrays)

    @classmethod
    def load(cls, path: str | Path, n_users: int | None = None, n_items: int | None = None) -> Candidates:
        """Load, checking users and items against the dataset's bounds when given."""
        arrays, header = read_npz_with_header(path, "candidates", "outfitrec-candidates")
        parts = {
            p: Outfits(*(arrays[f"{p}.{k}"] for k in ("users", "items", "categories", "mask", "outfit_ids")))
            for p in ("pos", "neg")
        }
        k = int(header["k"])
        if len(parts["neg"]) != k * len(parts["pos"]):
            raise DataError(f"{path}: {len(parts['neg'])} negatives for {len(parts['pos'])} positives with k={k}")
        for p, outfits in parts.items():
            if n_users is not None and len(outfits):
                bad = np.flatnonzero((outfits.users < 0) | (outfits.users >= n_users))
                if len(bad):
                    raise DataError(f"{path}: {p} row {int(bad[0])}: unknown user {int(outfits.users[bad[0]])}")
            if n_items is not None:
                real = np.where(outfits.mask, outfits.items, 0)
                bad = np.flatnonzero(((real < 0) | (real >= n_items)).any(axis=1))
                if len(bad):
                    raise DataError(f"{path}: {p} row {int(bad[0])}: item id outside 0..{n_items - 1}")
        return cls(parts["pos"], parts["neg"], k, header.get("meta", {}))

    def users_and_flat(self) -> tuple[Outfits, Outfits]:
        return self.positives, self.negatives


def make_candidates(
    positives: Outfits,
    pools: dict[int, np.ndarray],
    k: int = 10,
    seed: int = 0,
    kind: str = "random",
    forbidden: set[frozenset[int]] | None = None,
    meta: dict | None = None,
) -> Candidates:
    """Fixed evaluation candidates for a split; `kind` is 'random' (random mix) or 'hard'."""
    if len(positives) == 0:
        raise DataError("negatives: the split has no positive outfits")
    rng = np.random.default_rng(seed)
    if kind == "random":
        negatives = random_mix(positives, pools, k, rng, forbidden)
    elif kind == "hard":
        negatives = hard_negatives(positives, k, rng)
    else:
        raise DataError(f"negatives: unknown kind {kind!r} (expected 'random' or 'hard')")
    info = {"kind": kind, "seed": seed, "k": k, **(meta or {})}
    return Candidates(positives, negatives, k, info)


def candidates_path(data_dir: str | Path, split: str) -> Path:
    """Where a prepared dataset folder keeps a split's fixed evaluation candidates."""
    return Path(data_dir) / f"candidates_{split}.npz"


def write_candidate_files(
    dataset, data_dir: str | Path, k: int = 10, seed: int = 0, splits: tuple[str, ...] = ("valid", "test")
) -> dict[str, Path]:
    """Write `candidates_{split}.npz` (K random-mix negatives per positive) for each split present.

    Each split draws from its own item pool; a negative may equal no positive of
    any split. Split s uses seed + index of s, so files are identical for one seed.
    """
    forbidden: set[frozenset[int]] = set()
    for outfits in dataset.splits.values():
        forbidden.update(outfits.item_sets())
    written = {}
    for offset, split in enumerate(splits):
        if split not in dataset.splits:
            continue
        positives = dataset.split(split)
        pools = category_pools(positives.items, dataset.catalogue.item_category)
        cands = make_candidates(
            positives,
            pools,
            k=k,
            seed=seed + offset,
            forbidden=forbidden,
            meta={"split": split, "dataset": dataset.meta.get("name", "")},
        )
        path = candidates_path(data_dir, split)
        cands.save(path)
        written[split] = path
    return written
