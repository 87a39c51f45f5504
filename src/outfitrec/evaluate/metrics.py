"""Ranking metrics as FHN and LPAE compute them (per user, then averaged over users).

AUC: the probability that a positive scores above a negative, ties counting
one half (sklearn's roc_auc_score). NDCG: all of a user's candidates ranked by
score; gain 2^rel - 1; discount log2(max(rank, 2)) with ranks from 1; NDCG@k
for every cut-off k = 1..n, averaged over k (FHN utils/metrics.py).
"""

from __future__ import annotations

import numpy as np


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney AUC of one user's positive and negative scores (ties = 1/2)."""
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.float64)
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("auc needs at least one positive and one negative")
    neg_sorted = np.sort(neg)
    below = np.searchsorted(neg_sorted, pos, side="left")
    below_or_equal = np.searchsorted(neg_sorted, pos, side="right")
    return float((below + 0.5 * (below_or_equal - below)).sum() / (len(pos) * len(neg)))


def ndcg_at_each_cutoff(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """NDCG@k for k = 1..n_candidates of one user (binary relevance)."""
    scores = np.concatenate([np.asarray(pos, np.float64), np.asarray(neg, np.float64)])
    rel = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    order = np.argsort(-scores, kind="stable")
    gains = 2.0 ** rel[order] - 1.0
    ideal = 2.0 ** np.sort(rel)[::-1] - 1.0
    discount = np.log2(np.maximum(np.arange(1, len(scores) + 1), 2))
    dcg = np.cumsum(gains / discount)
    idcg = np.cumsum(ideal / discount)
    return dcg / idcg


def ndcg(pos: np.ndarray, neg: np.ndarray) -> float:
    """FHN/LPAE NDCG of one user: NDCG@k averaged over every cut-off k."""
    return float(ndcg_at_each_cutoff(pos, neg).mean())


def ndcg_at(pos: np.ndarray, neg: np.ndarray, k: int = 10) -> float:
    """Plain NDCG@k of one user (cut-off clipped to the number of candidates)."""
    curve = ndcg_at_each_cutoff(pos, neg)
    return float(curve[min(k, len(curve)) - 1])


def per_user_metrics(
    users_pos: np.ndarray, scores_pos: np.ndarray, users_neg: np.ndarray, scores_neg: np.ndarray
) -> dict[str, np.ndarray]:
    """AUC, NDCG and NDCG@10 for every user that has positives and negatives.

    Returns arrays keyed 'user', 'auc', 'ndcg', 'ndcg@10'.
    """
    users_pos, users_neg = np.asarray(users_pos), np.asarray(users_neg)
    scores_pos, scores_neg = np.asarray(scores_pos), np.asarray(scores_neg)
    pos_order = np.argsort(users_pos, kind="stable")
    neg_order = np.argsort(users_neg, kind="stable")
    up, sp = users_pos[pos_order], scores_pos[pos_order]
    un, sn = users_neg[neg_order], scores_neg[neg_order]
    users = np.intersect1d(np.unique(up), np.unique(un))
    p_lo, p_hi = np.searchsorted(up, users, "left"), np.searchsorted(up, users, "right")
    n_lo, n_hi = np.searchsorted(un, users, "left"), np.searchsorted(un, users, "right")
    out = {"user": users, "auc": np.empty(len(users)), "ndcg": np.empty(len(users)), "ndcg@10": np.empty(len(users))}
    for i in range(len(users)):
        pos, neg = sp[p_lo[i] : p_hi[i]], sn[n_lo[i] : n_hi[i]]
        curve = ndcg_at_each_cutoff(pos, neg)
        out["auc"][i] = auc(pos, neg)
        out["ndcg"][i] = curve.mean()
        out["ndcg@10"][i] = curve[min(10, len(curve)) - 1]
    return out


def mean_metrics(
    users_pos: np.ndarray, scores_pos: np.ndarray, users_neg: np.ndarray, scores_neg: np.ndarray
) -> dict[str, float]:
    """Per-user metrics averaged over users: {'auc', 'ndcg', 'ndcg@10', 'n_users'}."""
    per_user = per_user_metrics(users_pos, scores_pos, users_neg, scores_neg)
    return {
        "auc": float(per_user["auc"].mean()) if len(per_user["user"]) else float("nan"),
        "ndcg": float(per_user["ndcg"].mean()) if len(per_user["user"]) else float("nan"),
        "ndcg@10": float(per_user["ndcg@10"].mean()) if len(per_user["user"]) else float("nan"),
        "n_users": int(len(per_user["user"])),
    }


def fitb_accuracy(candidate_scores: np.ndarray, answer: np.ndarray | None = None) -> float:
    """Share of fill-in-the-blank questions whose true candidate scores highest.

    candidate_scores: [n_questions, n_candidates]; answer: the true column of
    each question (default 0, the first candidate, as in Polyvore-U). Ties count
    as wrong, so a constant scorer gets 0, not a lucky 1.
    """
    scores = np.asarray(candidate_scores, dtype=np.float64)
    answer = np.zeros(len(scores), dtype=np.int64) if answer is None else np.asarray(answer)
    true = scores[np.arange(len(scores)), answer]
    others = scores.copy()
    others[np.arange(len(scores)), answer] = -np.inf
    return float((true > others.max(axis=1)).mean()) if len(scores) else float("nan")
