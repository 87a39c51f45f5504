"""The oracle of a Fashion-MNIST outfit dataset: the true utility of any outfit, and what it tells.

A dataset made by ``outfitrec data make-fmnist`` keeps its ground truth in
``truth.npz``: item attributes, user preferences and compatibility weights
(see ``data/fmnist.py``). From it the oracle computes, for any (user, outfit):

- the true utility (:func:`true_utility`), the score no model can beat;
- whether a sampled negative is a **true false negative**: its utility is at
  least the user's *typical positive* utility, by default the median
  (``quantile=0.5``) of the utilities of the user's training positives
  (:func:`false_negative_flags`, the yardstick for the FND teacher);
- the oracle's AUC / NDCG on the fixed test candidates, beside the popularity
  baseline's, and the share of random-mix negatives that are false negatives
  (:func:`oracle_report`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from outfitrec.data.fmnist import TruthParams, per_user_quantile, raw_utility
from outfitrec.data.negatives import Candidates, candidates_path, category_pools, random_mix
from outfitrec.data.outfits import (
    DataError,
    OutfitDataset,
    Outfits,
    check_fingerprint,
    read_npz_with_header,
    recorded_fingerprint,
)
from outfitrec.evaluate.baselines import popularity_scores
from outfitrec.evaluate.metrics import mean_metrics

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


def _metrics(cands: Candidates, pos_scores: np.ndarray, neg_scores: np.ndarray) -> dict[str, float]:
    m = mean_metrics(cands.positives.users, pos_scores, cands.negatives.users, neg_scores)
    return {"auc": m["auc"], "ndcg": m["ndcg"], "ndcg@10": m["ndcg@10"], "n_users": m["n_users"]}


def oracle_report(
    data_dir: str | Path,
    split: str = "test",
    quantile: float | None = None,
    train_sample: int = 20_000,
    k: int = 10,
    seed: int = 0,
) -> tuple[dict, dict[str, np.ndarray]]:
    """Oracle and popularity metrics on a split's fixed candidates, and false-negative shares.

    Returns (report, arrays): arrays hold per-candidate utilities and
    false-negative flags of the split's negatives (for `--flags`). The
    training-negative share is measured on K fresh random-mix negatives of up to
    `train_sample` training positives (drawn from the training item pool, as
    the training loop draws them; seed fixed).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: not a prepared dataset folder")
    dataset = OutfitDataset.load(data_dir / "dataset.npz")
    truth = load_truth(data_dir)
    if truth.n_users != dataset.n_users or len(truth.item_class) != dataset.catalogue.n_items:
        raise DataError(
            f"{truth_path(data_dir)}: truth is for {truth.n_users} users / {len(truth.item_class)} items, "
            f"the dataset has {dataset.n_users} / {dataset.catalogue.n_items}"
        )
    stored_q = float(truth.header.get("typical_quantile", 0.5))
    q = stored_q if quantile is None else float(quantile)
    typical = truth.typical if q == stored_q else typical_utilities(truth, dataset, q)
    cands = Candidates.load(candidates_path(data_dir, split), dataset.n_users, dataset.catalogue.n_items)
    pos_u = outfit_utility(truth, cands.positives)
    neg_u = outfit_utility(truth, cands.negatives)
    neg_flags = false_negative_flags(truth, cands.negatives.users, cands.negatives.items, cands.negatives.mask, typical)
    pos_pop = popularity_scores(dataset, cands.positives)
    neg_pop = popularity_scores(dataset, cands.negatives)

    train = dataset.split("train")
    rng = np.random.default_rng(seed)
    sample = train if len(train) <= train_sample else train.subset(np.sort(rng.choice(len(train), train_sample, False)))
    pools = category_pools(train.items, dataset.catalogue.item_category)
    forbidden = set(train.item_sets())
    train_negs = random_mix(sample, pools, k, rng, forbidden)
    train_flags = false_negative_flags(truth, train_negs.users, train_negs.items, train_negs.mask, typical)

    per_example = neg_flags.reshape(len(cands.positives), cands.k)
    report = {
        "dataset": str(data_dir),
        "split": split,
        "n_positives": len(cands.positives),
        "k": cands.k,
        "oracle": _metrics(cands, pos_u, neg_u),
        "popularity": _metrics(cands, pos_pop, neg_pop),
        "typical_quantile": q,
        "false_negatives": {
            "share_of_negatives": float(neg_flags.mean()),
            "count": int(neg_flags.sum()),
            "examples_with_any": float(per_example.any(axis=1).mean()),
            "train_random_mix_share": float(train_flags.mean()),
            "train_random_mix_sampled": len(train_negs),
        },
        "utility": {
            "positives_mean": float(pos_u.mean()),
            "negatives_mean": float(neg_u.mean()),
            "typical_mean": float(np.nanmean(typical)),
        },
    }
    arrays = {
        "pos.utility": pos_u,
        "neg.utility": neg_u,
        "neg.false_negative": neg_flags,
        "typical": typical,
    }
    return report, arrays
