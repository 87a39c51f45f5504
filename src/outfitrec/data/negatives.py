"""Negative outfits: type-aware random mix and hard negatives, and the fixed
candidate files every evaluation of a split reads.

Random mix (FHN): each item of a positive outfit is replaced by a random item
of the same category from the split's item pool; a sample equal (as a set) to
any known positive is rejected and drawn again. Hard negatives: positive
outfits of other users, given to this user.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from outfitrec.data.outfits import (
    PAD,
    DataError,
    Outfits,
    check_fingerprint,
    read_npz_with_header,
    recorded_fingerprint,
    save_npz_atomic,
)

DATASET_FILE = "dataset.npz"

MAX_REDRAWS = 50


class NoRandomMix(DataError):
    """Some positives have no allowed random mix; `rows` are their indices."""

    def __init__(self, message: str, rows: np.ndarray) -> None:
        super().__init__(message)
        self.rows = rows


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
    fallback_pools: dict[int, np.ndarray] | None = None,
    where: str = "negatives",
) -> Outfits:
    """K type-aware random-mix negatives per positive, rows [i*k:(i+1)*k] for positive i.

    forbidden: outfits (item sets) a negative must not equal; default the
    positives themselves. The K negatives of one positive are distinct: a
    sample equal to a forbidden outfit or to an earlier negative of the same
    positive is drawn again. Rows still bad after MAX_REDRAWS rounds are drawn
    from `fallback_pools` (e.g. the whole catalogue's items per category) when
    given. Raises DataError (naming `where`, the outfit id and user) when a
    positive has no allowed mix at all; repeats left because fewer than K
    distinct mixes exist are kept with a warning.
    """
    forbidden = set(positives.item_sets()) if forbidden is None else forbidden
    rep = positives.subset(np.repeat(np.arange(len(positives)), k))
    items = rep.items.copy()
    _fill_random(items, rep.categories, rep.mask, pools, rng, np.ones(len(items), dtype=bool))
    bad = _bad_mixes(items, rep.mask, k, forbidden)
    for stage_pools in (pools, _merged_pools(pools, fallback_pools)):
        for _ in range(MAX_REDRAWS):
            if not bad.any():
                break
            _fill_random(items, rep.categories, rep.mask, stage_pools, rng, bad)
            bad = _bad_mixes(items, rep.mask, k, forbidden)
        if fallback_pools is None:
            break
    last_pools = _merged_pools(pools, fallback_pools)
    taken = _bad_mixes(items, rep.mask, 1, forbidden)  # group size 1: forbidden only, repeats allowed
    for _ in range(MAX_REDRAWS):
        if not taken.any():
            break
        _fill_random(items, rep.categories, rep.mask, last_pools, rng, taken)
        taken = _bad_mixes(items, rep.mask, 1, forbidden)
    bad = _bad_mixes(items, rep.mask, k, forbidden)
    if taken.any():
        rows = np.unique(np.flatnonzero(taken) // k)
        row = int(rows[0])
        raise NoRandomMix(
            f"{where}: outfit {int(positives.outfit_ids[row])} (user {int(positives.users[row])}): every random "
            f"mix drawn {MAX_REDRAWS} times equals a positive; no item of its categories can replace its items",
            rows,
        )
    if bad.any():
        affected = len(np.unique(np.flatnonzero(bad) // k))
        warnings.warn(
            f"{where}: {int(bad.sum())} negatives repeat an earlier negative of the same positive "
            f"({affected} positives have fewer than K={k} distinct random mixes)",
            stacklevel=2,
        )
    return Outfits(rep.users, items, rep.categories, rep.mask, rep.outfit_ids)


def _repeats_in_row(ids: np.ndarray) -> np.ndarray:
    """bool [m, k]: entries of ids [m, k] equal to an earlier entry of the same row."""
    dup = np.zeros(ids.shape, dtype=bool)
    for j in range(1, ids.shape[1]):
        dup[:, j] = (ids[:, :j] == ids[:, j : j + 1]).any(axis=1)
    return dup


def _bad_mixes(items: np.ndarray, mask: np.ndarray, k: int, forbidden: set[frozenset[int]]) -> np.ndarray:
    """Rows equal to a forbidden outfit or to an earlier row of the same group of k."""
    bad = np.zeros(len(items), dtype=bool)
    for start in range(0, len(items), k):
        seen: set[frozenset[int]] = set()
        for r in range(start, start + k):
            key = frozenset(items[r][mask[r]].tolist())
            bad[r] = key in forbidden or key in seen
            seen.add(key)
    return bad


def _merged_pools(pools: dict[int, np.ndarray], extra: dict[int, np.ndarray] | None) -> dict[int, np.ndarray]:
    """Per category, the union of `pools` and `extra` (sorted unique ids)."""
    merged = dict(pools)
    for c, ids in (extra or {}).items():
        merged[c] = np.union1d(merged.get(c, np.zeros(0, dtype=np.int64)), ids)
    return merged


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


def hard_negatives(positives: Outfits, k: int, rng: np.random.Generator, where: str = "hard negatives") -> Outfits:
    """K positive outfits of other users per positive, given to this positive's user.

    A pick is never one of the user's own positives: neither a row of this
    user nor another user's outfit holding the same items as one of hers.
    The K picks of a positive are distinct outfits (by item set), redrawn up
    to MAX_REDRAWS times; a user with fewer than K allowed outfits gets
    repeats, with a warning. Raises DataError when fewer than two users have
    positives, or a user has no allowed outfit.
    """
    n = len(positives)
    if n < 2 or len(np.unique(positives.users)) < 2:
        raise DataError(f"{where}: need positive outfits of at least two users")
    index: dict[frozenset[int], int] = {}
    set_id = np.asarray([index.setdefault(s, len(index)) for s in positives.item_sets()], dtype=np.int64)
    own: dict[int, set[int]] = {}
    for u, sid in zip(positives.users.tolist(), set_id.tolist()):
        own.setdefault(u, set()).add(sid)
    picks = np.empty(n * k, dtype=np.int64)
    for u in np.unique(positives.users):
        allowed = np.flatnonzero((positives.users != u) & ~np.isin(set_id, list(own[int(u)])))
        mine = np.flatnonzero(np.repeat(positives.users == u, k))
        if len(allowed) == 0:
            raise DataError(f"{where}: user {int(u)}: every other user's outfit is one of her own positives")
        rows = allowed[rng.integers(0, len(allowed), size=(len(mine) // k, k))]
        enough = len(np.unique(set_id[allowed])) >= k
        for _ in range(MAX_REDRAWS if enough else 0):
            dup = _repeats_in_row(set_id[rows])
            if not dup.any():
                break
            rows[dup] = allowed[rng.integers(0, len(allowed), size=int(dup.sum()))]
        picks[mine] = rows.reshape(-1)
    repeated = _repeats_in_row(set_id[picks].reshape(n, k))
    if repeated.any():
        warnings.warn(
            f"{where}: {int(repeated.sum())} hard negatives repeat an earlier one of the same positive "
            f"({int(repeated.any(1).sum())} positives: their users have fewer than K={k} distinct allowed outfits "
            f"of other users, or {MAX_REDRAWS} redraws found none)",
            stacklevel=2,
        )
    chosen = positives.subset(picks)
    rep_users = np.repeat(positives.users, k)
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
        here = sorted(q.stem.removeprefix("candidates_") for q in Path(path).parent.glob("candidates_*.npz"))
        hint = f" (this dataset has candidates for: {', '.join(here)}; --split {here[0]})" if here else ""
        arrays, header = read_npz_with_header(path, "candidates", "outfitrec-candidates", hint)
        check_fingerprint(path, recorded_fingerprint(header), Path(path).parent / DATASET_FILE)
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


def make_candidates(
    positives: Outfits,
    pools: dict[int, np.ndarray],
    k: int = 10,
    seed: int = 0,
    kind: str = "random",
    forbidden: set[frozenset[int]] | None = None,
    meta: dict | None = None,
    fallback_pools: dict[int, np.ndarray] | None = None,
) -> Candidates:
    """Fixed evaluation candidates for a split; `kind` is 'random' (random mix) or 'hard'.

    fallback_pools: per category, where random mixes are drawn when the split's
    pools have no allowed one (the catalogue's items). Raises DataError for a
    negative seed, an empty split, or no allowed negative.
    """
    check_seed(seed)
    where = f"negatives (split {meta['split']})" if meta and "split" in meta else "negatives"
    if len(positives) == 0:
        raise DataError(f"{where}: the split has no positive outfits")
    rng = np.random.default_rng(seed)
    if kind == "random":
        positives, negatives = _random_mix_or_skip(positives, pools, k, seed, forbidden, fallback_pools, where)
    elif kind == "hard":
        negatives = hard_negatives(positives, k, rng, where=f"hard {where}")
    else:
        raise DataError(f"negatives: unknown kind {kind!r} (expected 'random' or 'hard')")
    info = {"kind": kind, "seed": seed, "k": k, **(meta or {})}
    return Candidates(positives, negatives, k, info)


def check_seed(seed: int) -> int:
    """A seed must be a non-negative integer (numpy refuses negative seeds with a traceback)."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed: {seed!r} is not a non-negative integer")
    return int(seed)


def provenance(dataset) -> dict:
    """What a derived file records of the dataset it was made from: its name and fingerprint."""
    return {"dataset": dataset.meta.get("name", ""), "dataset_fingerprint": dataset.fingerprint}


def _random_mix_or_skip(positives, pools, k, seed, forbidden, fallback_pools, where) -> tuple[Outfits, Outfits]:
    """(positives, their random mixes), leaving out, with a warning naming them, positives no mix can negate.

    Raises NoRandomMix when no positive is left.
    """
    try:
        return positives, random_mix(positives, pools, k, np.random.default_rng(seed), forbidden, fallback_pools, where)
    except NoRandomMix as exc:
        if len(exc.rows) == len(positives):
            raise
        ids = ", ".join(str(int(i)) for i in positives.outfit_ids[exc.rows[:5]])
        more = f" and {len(exc.rows) - 5} more" if len(exc.rows) > 5 else ""
        warnings.warn(
            f"{where}: {len(exc.rows)} positives left out (outfit ids {ids}{more}): every random mix of theirs "
            "equals a positive outfit",
            stacklevel=3,
        )
        keep = np.setdiff1d(np.arange(len(positives)), exc.rows)
        kept = positives.subset(keep)
        return kept, random_mix(kept, pools, k, np.random.default_rng(seed), forbidden, fallback_pools, where)


def candidates_path(data_dir: str | Path, split: str) -> Path:
    """Where a prepared dataset folder keeps a split's fixed evaluation candidates."""
    return Path(data_dir) / f"candidates_{split}.npz"


def write_candidate_files(
    dataset, data_dir: str | Path, k: int = 10, seed: int = 0, splits: tuple[str, ...] = ("valid", "test")
) -> dict[str, Path]:
    """Write `candidates_{split}.npz` (K random-mix negatives per positive) for each split present.

    Each split draws from its own item pool (the catalogue's when the split's has
    no allowed mix); a negative may equal no positive of any split. Split s uses
    seed + index of s, so files are identical for one seed.
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
            meta={"split": split, **provenance(dataset)},
            fallback_pools=dataset.catalogue.items_by_category(),
        )
        path = candidates_path(data_dir, split)
        cands.save(path)
        written[split] = path
    return written
