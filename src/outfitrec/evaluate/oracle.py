"""The oracle's report: how a Fashion-MNIST dataset's ground truth ranks the fixed candidates.

The true utility and the true false negatives come from `outfitrec.data.oracle`;
this module measures them like any model: AUC / NDCG of the oracle and of the
popularity baseline on a split's fixed candidates, and the share of random-mix
negatives that are false negatives (`outfitrec data oracle`, the demo).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from outfitrec.data.negatives import Candidates, candidates_path, category_pools, random_mix
from outfitrec.data.oracle import false_negative_flags, load_truth, outfit_utility, truth_path, typical_utilities
from outfitrec.data.outfits import DataError, OutfitDataset
from outfitrec.evaluate.baselines import popularity_scores
from outfitrec.evaluate.metrics import mean_metrics


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
