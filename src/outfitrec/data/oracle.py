"""The oracle of a Fashion-MNIST outfit dataset: the true utility of any outfit, and what it tells.

A dataset made by ``outfitrec data make-fmnist`` keeps its ground truth in
``truth.npz``: item attributes, user preferences and compatibility weights
(see ``data/fmnist.py``). From it the oracle computes, for any (user, outfit):

- the true utility (:func:`true_utility`), the score no model can beat;
- whether a sampled negative is a **true false negative**: its utility is at
  least the user's *typical positive* utility, by default the median
  (``quantile=0.5``) of the utilities of the user's training positives
  (:func:`false_negative_flags`, the yardstick for the FND teacher);

The oracle's AUC / NDCG on the fixed test candidates, beside the popularity
baseline's, and the share of random-mix negatives that are false negatives
are `outfitrec.evaluate.oracle.oracle_report` (evaluation imports data, not
the other way round).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from outfitrec.data.fmnist import TruthParams, per_user_quantile, raw_utility
from outfitrec.data.outfits import (
    DataError,
    OutfitDataset,
    Outfits,
    check_fingerprint,
    read_npz_with_header,
    recorded_fingerprint,
)

TRUTH_FILE = "truth.npz"
CHUNK = 200_000  # outfits scored at once (bounds memory on large candidate sets)


def truth_path(path: str | Path) -> Path:
    """`path` itself when it is a file, else the truth.npz of a prepared dataset folder."""
    path = Path(path)
    return path / TRUTH_FILE if path.is_dir() else path


def load_truth(path: str | Path) -> TruthParams:
    """Read truth.npz (a prepared folder or the file), checking every array is there and shapes agree."""
    path = truth_path(path)
    arrays, header = read_npz_with_header(
        path, "ground truth", "outfitrec-truth", " (no ground truth here: only `outfitrec data make-fmnist` has one)"
    )
    check_fingerprint(path, recorded_fingerprint(header), path.parent / "dataset.npz")
    missing = [k for k in TruthParams.ARRAYS if k not in arrays]
    if missing:
        raise DataError(f"{path}: missing key(s) {missing}")
    truth = TruthParams(**{k: arrays[k] for k in TruthParams.ARRAYS}, header=header)
    n_items, n_users = len(truth.item_class), len(truth.user_scale)
    for key in ("item_slot", "item_unseen", "attributes_raw", "attributes"):
        if len(getattr(truth, key)) != n_items:
            raise DataError(f"{path}: key {key!r} has {len(getattr(truth, key))} rows, expected {n_items} items")
    for key in ("attr_w", "class_w", "template_bias", "pair_w", "style_mix", "typical"):
        if len(getattr(truth, key)) != n_users:
            raise DataError(f"{path}: key {key!r} has {len(getattr(truth, key))} rows, expected {n_users} users")
    return truth


def true_utility(truth: TruthParams, users: np.ndarray, items: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """True utility of each (user, outfit), float64 [n]; outfits may be partial (see fmnist.raw_utility)."""
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    mask = np.asarray(mask, dtype=bool)
    if items.shape != mask.shape or items.ndim != 2 or len(users) != len(items):
        raise DataError(f"oracle: users {users.shape}, items {items.shape}, mask {mask.shape} do not fit together")
    if len(users) and (users.min() < 0 or users.max() >= truth.n_users):
        raise DataError(f"oracle: a user is outside 0..{truth.n_users - 1}")
    real = items[mask]
    if len(real) and (real.min() < 0 or real.max() >= len(truth.item_class)):
        raise DataError(f"oracle: an item id is outside 0..{len(truth.item_class) - 1}")
    out = np.empty(len(users))
    for start in range(0, len(users), CHUNK):
        sl = slice(start, start + CHUNK)
        out[sl] = raw_utility(truth, users[sl], items[sl], mask[sl])
    return out


def outfit_utility(truth: TruthParams, outfits: Outfits) -> np.ndarray:
    """True utility of an Outfits batch."""
    return true_utility(truth, outfits.users, outfits.items, outfits.mask)


def typical_utilities(truth: TruthParams, dataset: OutfitDataset, quantile: float = 0.5) -> np.ndarray:
    """Each user's typical positive utility: `quantile` of its training positives' utilities (NaN: no training)."""
    if not 0.0 <= quantile <= 1.0:
        raise DataError(f"oracle: quantile must be in [0, 1], got {quantile}")
    train = dataset.split("train")
    util = outfit_utility(truth, train)
    return per_user_quantile(train.users, util, truth.n_users, quantile)


def false_negative_flags(
    truth: TruthParams,
    users: np.ndarray,
    items: np.ndarray,
    mask: np.ndarray,
    typical: np.ndarray | None = None,
) -> np.ndarray:
    """True where a (user, outfit) is a true false negative: utility >= the user's typical positive utility.

    typical: per-user thresholds [n_users]; default the ones stored in the
    truth (the median of the training positives, header 'typical_quantile').
    A user without training outfits (NaN threshold) never gets a flag.
    """
    thresholds = truth.typical if typical is None else np.asarray(typical, dtype=np.float64)
    if thresholds.shape != (truth.n_users,):
        raise DataError(f"oracle: typical must have shape ({truth.n_users},), got {thresholds.shape}")
    util = true_utility(truth, users, items, mask)
    with np.errstate(invalid="ignore"):
        return util >= thresholds[np.asarray(users, dtype=np.int64)]
