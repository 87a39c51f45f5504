"""Fill-in-the-blank (FITB) questions: one item of an outfit blanked, which candidate completes it?

A question is a positive outfit, the slot that is blanked, and C candidate
items for that slot; **column 0 of `candidates` is the true item** (as in
Polyvore-U's `fill_in_blank_test`, and what `evaluate.metrics.fitb_accuracy`
assumes by default). Generated questions use the true item plus 3 distractors
of the same category drawn from the split's item pool, seeded, so two runs
with one seed write identical files. Loaders of released FITB files (DiFashion,
Polyvore-U) produce the same arrays.

File `fitb_{split}.npz` (written atomically, no pickle):
  users [n], items / categories / mask [n, S] (the complete true outfit),
  outfit_ids [n], blank [n] (slot index), candidates [n, C] (global item ids),
  header (JSON bytes: format, meta).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from outfitrec.data.negatives import category_pools, check_seed, provenance
from outfitrec.data.outfits import (
    PAD,
    DataError,
    OutfitDataset,
    Outfits,
    check_fingerprint,
    read_npz_with_header,
    recorded_fingerprint,
    save_npz_atomic,
)

N_DISTRACTORS = 3
_KEYS = ("users", "items", "categories", "mask", "outfit_ids", "blank", "candidates")


class NoFitbQuestions(DataError):
    """No question can be drawn: every category of the outfits has too few items for the distractors."""


@dataclass
class FitbQuestions:
    """FITB questions; `candidates[:, 0]` is the true item of the blanked slot."""

    users: np.ndarray
    items: np.ndarray
    categories: np.ndarray
    mask: np.ndarray
    outfit_ids: np.ndarray
    blank: np.ndarray
    candidates: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.users = np.asarray(self.users, dtype=np.int64)
        self.items = np.asarray(self.items, dtype=np.int64).reshape(len(self.users), -1)
        self.categories = np.asarray(self.categories, dtype=np.int64).reshape(self.items.shape)
        self.mask = np.asarray(self.mask, dtype=bool).reshape(self.items.shape)
        self.outfit_ids = np.asarray(self.outfit_ids, dtype=np.int64)
        self.blank = np.asarray(self.blank, dtype=np.int64)
        self.candidates = np.asarray(self.candidates, dtype=np.int64).reshape(len(self.users), -1)
        n = len(self.users)
        for name in ("outfit_ids", "blank"):
            if getattr(self, name).shape != (n,):
                raise DataError(f"fitb: {name} must have shape ({n},)")
        if n:
            rows = np.arange(n)
            if (self.blank < 0).any() or (self.blank >= self.items.shape[1]).any():
                raise DataError("fitb: a blank slot index is outside the outfit")
            if not self.mask[rows, self.blank].all():
                raise DataError("fitb: a blank slot is a padded slot")
            if not np.array_equal(self.items[rows, self.blank], self.candidates[:, 0]):
                raise DataError("fitb: candidates[:, 0] must be the true item of the blanked slot")

    def __len__(self) -> int:
        return len(self.users)

    @property
    def n_candidates(self) -> int:
        return self.candidates.shape[1]

    def outfits(self) -> Outfits:
        """The complete true outfits (the question before blanking)."""
        return Outfits(self.users, self.items, self.categories, self.mask, self.outfit_ids)

    def partial_outfits(self) -> Outfits:
        """The outfits with the blank slot masked out (what a recommender completes)."""
        rows = np.arange(len(self))
        items, cats, mask = self.items.copy(), self.categories.copy(), self.mask.copy()
        items[rows, self.blank], cats[rows, self.blank], mask[rows, self.blank] = PAD, PAD, False
        return Outfits(self.users, items, cats, mask, self.outfit_ids)

    def candidate_outfits(self, item_category: np.ndarray) -> Outfits:
        """Each question's C completed outfits, rows [i*C:(i+1)*C] for question i (column 0 true)."""
        c = self.n_candidates
        rep = np.repeat(np.arange(len(self)), c)
        items, cats = self.items[rep].copy(), self.categories[rep].copy()
        slot = self.blank[rep]
        flat = self.candidates.reshape(-1)
        items[np.arange(len(rep)), slot] = flat
        cats[np.arange(len(rep)), slot] = np.asarray(item_category)[flat]
        return Outfits(self.users[rep], items, cats, self.mask[rep], self.outfit_ids[rep])

    def without_answer_repeats(self) -> tuple[FitbQuestions, int]:
        """(the questions none of whose distractors equals the answer, how many were dropped)."""
        keep = ~(self.candidates[:, 1:] == self.candidates[:, :1]).any(axis=1)
        if keep.all():
            return self, 0
        rows = np.flatnonzero(keep)
        kept = FitbQuestions(
            *(getattr(self, k)[rows] for k in _KEYS), meta={**self.meta, "dropped_answer_repeats": int((~keep).sum())}
        )
        return kept, int((~keep).sum())

    def save(self, path: str | Path) -> None:
        arrays = {k: getattr(self, k) for k in _KEYS}
        header = {"format": "outfitrec-fitb", "meta": self.meta}
        arrays["header"] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
        save_npz_atomic(path, arrays)

    @classmethod
    def load(cls, path: str | Path, n_users: int | None = None, n_items: int | None = None) -> FitbQuestions:
        """Load a `fitb_{split}.npz`, checking users and items against the dataset's bounds when given."""
        arrays, header = read_npz_with_header(path, "FITB", "outfitrec-fitb")
        check_fingerprint(path, recorded_fingerprint(header), Path(path).parent / "dataset.npz")
        missing = [k for k in _KEYS if k not in arrays]
        if missing:
            raise DataError(f"{path}: not an outfitrec FITB file (missing {missing})")
        try:
            questions = cls(*(arrays[k] for k in _KEYS), meta=header.get("meta", {}))
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None
        if n_users is not None and len(questions):
            bad = np.flatnonzero((questions.users < 0) | (questions.users >= n_users))
            if len(bad):
                raise DataError(f"{path}: question {int(bad[0])}: unknown user {int(questions.users[bad[0]])}")
        if n_items is not None and len(questions):
            real = np.concatenate([np.where(questions.mask, questions.items, 0), questions.candidates], axis=1)
            bad = np.flatnonzero(((real < 0) | (real >= n_items)).any(axis=1))
            if len(bad):
                raise DataError(f"{path}: question {int(bad[0])}: item id outside 0..{n_items - 1}")
        return questions


def make_fitb(
    positives: Outfits,
    pools: dict[int, np.ndarray],
    seed: int = 0,
    n_distractors: int = N_DISTRACTORS,
    meta: dict | None = None,
    fallback_pools: dict[int, np.ndarray] | None = None,
) -> FitbQuestions:
    """One question per positive outfit: a random slot blanked, the true item + distractors.

    The blank is drawn among the outfit's slots whose category has at least
    n_distractors other items in `pools`; outfits with no such slot are skipped
    (their count is in meta['skipped']). Distractors are distinct, never the
    true item, drawn uniformly from the category's pool. A category with too
    few items in `pools` (a small split) draws from `fallback_pools` (e.g. the
    whole catalogue's items of that category) when given.
    """
    check_seed(seed)
    if len(positives) == 0:
        raise DataError("fitb: the split has no positive outfits")
    rng = np.random.default_rng(seed)
    pools = dict(pools)
    for c, pool in (fallback_pools or {}).items():
        if len(pools.get(c, ())) <= n_distractors:
            pools[c] = pool
    kept, blanks, cands = [], [], []
    for i in range(len(positives)):
        slots = np.flatnonzero(positives.mask[i])
        usable = [s for s in slots if len(pools.get(int(positives.categories[i, s]), ())) > n_distractors]
        if not usable:
            continue
        slot = int(usable[rng.integers(0, len(usable))])
        true_item = int(positives.items[i, slot])
        pool = pools[int(positives.categories[i, slot])]
        true_pos = int(np.searchsorted(pool, true_item))
        if true_pos < len(pool) and pool[true_pos] == true_item:
            picks = rng.choice(len(pool) - 1, size=n_distractors, replace=False)
            picks[picks >= true_pos] += 1  # skip the true item
        else:  # true item not in the pool (e.g. a train pool for a valid outfit)
            picks = rng.choice(len(pool), size=n_distractors, replace=False)
        kept.append(i)
        blanks.append(slot)
        cands.append([true_item, *pool[picks].tolist()])
    if not kept:
        raise NoFitbQuestions(
            f"fitb: no outfit has a category with more than {n_distractors} items to draw distractors"
        )
    sub = positives.subset(np.asarray(kept))
    info = {"seed": seed, "n_distractors": n_distractors, "skipped": len(positives) - len(kept), **(meta or {})}
    return FitbQuestions(
        sub.users, sub.items, sub.categories, sub.mask, sub.outfit_ids, np.asarray(blanks), np.asarray(cands), info
    )


def fitb_path(data_dir: str | Path, split: str) -> Path:
    """Where a prepared dataset folder keeps a split's FITB questions."""
    return Path(data_dir) / f"fitb_{split}.npz"


def write_fitb_files(
    dataset: OutfitDataset,
    data_dir: str | Path,
    seed: int = 0,
    splits: tuple[str, ...] = ("valid", "test"),
    n_distractors: int = N_DISTRACTORS,
    optional: bool = False,
) -> dict[str, Path]:
    """Write `fitb_{split}.npz` for each non-empty split present; split s uses seed + its index.

    optional: a split where no question can be drawn (categories too small) is
    skipped with a warning instead of raising DataError.
    """
    written, skipped, reason = {}, [], ""
    for offset, split in enumerate(splits):
        if split not in dataset.splits or len(dataset.splits[split]) == 0:
            continue
        positives = dataset.split(split)
        pools = category_pools(positives.items, dataset.catalogue.item_category)
        try:
            questions = make_fitb(
                positives,
                pools,
                seed=seed + offset,
                n_distractors=n_distractors,
                meta={"split": split, **provenance(dataset), "source": "generated"},
                fallback_pools=dataset.catalogue.items_by_category(),
            )
        except NoFitbQuestions as exc:
            if not optional:
                raise
            skipped.append(split)
            reason = str(exc)
            continue
        path = fitb_path(data_dir, split)
        questions.save(path)
        written[split] = path
    if skipped:
        names = ", ".join(f"fitb_{s}.npz" for s in skipped)
        warnings.warn(f"{reason}; {names} not written (FITB files are optional)", stacklevel=2)
    return written
