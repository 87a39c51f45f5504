"""Ranking metrics as FHN and LPAE compute them (per user, then averaged over users), tie-aware, finite.

AUC: the probability that a positive scores above a negative, ties counting
one half (sklearn's roc_auc_score). NDCG: all of a user's candidates ranked by
score; gain 2^rel - 1; discount log2(max(rank, 2)) with ranks from 1; NDCG@k
for every cut-off k = 1..n, averaged over k (FHN utils/metrics.py).

Ties: candidates with equal scores share their gain (McSherry & Najork 2008,
"Computing information retrieval performance measures efficiently in the
presence of tied scores"; sklearn.metrics.ndcg_score's default). Every rank of
a tied group gets the group's mean gain, which is exactly the expected NDCG
over a uniformly random order of the tied candidates. Without ties this is the
plain FHN NDCG; with ties a scorer can no longer win by luck of the sort order
(a constant scorer gets 0.3386 with 1 positive and 10 negatives, not 1.0).

Non-finite scores (NaN, +-inf) are refused with a ValueError: a NaN has no
rank, and an evaluation that quietly ranks it somewhere reports a number of a
model that does not score at all.

Everything is vectorised over users (one sort of all candidates), so an
evaluation over thousands of users costs a few array passes.
"""

from __future__ import annotations

import numpy as np

NDCG_CUTOFF = 10


class NonFiniteScores(ValueError):
    """Scores with NaN or inf: no ranking metric of them means anything."""


def _non_finite_message(counts: dict[str, np.ndarray], total: int) -> str | None:
    """'NaN for N outfits (a positives, b negatives) and inf for M outfits (...)', or None when all are finite."""
    parts = []
    for kind, test in (("NaN", np.isnan), ("inf", np.isinf)):
        per = {name: int(test(scores).sum()) for name, scores in counts.items()}
        n = sum(per.values())
        if n:
            detail = ", ".join(f"{v} {name}" for name, v in per.items()) if len(per) > 1 else ""
            parts.append(f"{kind} for {n} outfit{'s' if n != 1 else ''}" + (f" ({detail})" if detail else ""))
    if not parts:
        return None
    return f"scores contain {' and '.join(parts)}, of {total} scored; a ranking of non-finite scores means nothing"


def check_finite(scores: np.ndarray, what: str = "scores", **others: np.ndarray) -> np.ndarray:
    """`scores` as float64; NonFiniteScores (a ValueError) naming how many are NaN / inf when any is not finite.

    `others`: more named score arrays checked (and counted) together, e.g.
    check_finite(pos, "positives", negatives=neg).
    """
    scores = np.asarray(scores, dtype=np.float64)
    arrays = {what: scores} | {k: np.asarray(v, dtype=np.float64) for k, v in others.items()}
    if all(np.isfinite(a).all() for a in arrays.values()):
        return scores
    message = _non_finite_message(arrays, sum(a.size for a in arrays.values()))
    raise NonFiniteScores(message + " (did the model diverge? a NaN weight scores every outfit NaN)")


def _discounts(n: int) -> np.ndarray:
    """1 / log2(max(rank, 2)) for ranks 1..n."""
    return 1.0 / np.log2(np.maximum(np.arange(1, n + 1), 2))


def _ranked(users: np.ndarray, scores: np.ndarray, rel: np.ndarray) -> dict[str, np.ndarray]:
    """Every candidate sorted by (user, score descending), with tie groups, positions and per-user segments.

    Returns the sorted users / rel, the tie-shared gain of each rank, each
    rank's 0-based position within its user, and per user (sorted ids):
    start offset, number of candidates, number of positives.
    """
    order = np.lexsort((-scores, users))
    u, s, r = users[order], scores[order], rel[order]
    n = len(u)
    # tie groups: runs of equal (user, score)
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = (u[1:] != u[:-1]) | (s[1:] != s[:-1])
    group_start = np.flatnonzero(new_group)
    group_size = np.diff(np.append(group_start, n))
    group_pos = np.add.reduceat(r, group_start) if n else np.zeros(0)
    gain = np.repeat(group_pos / group_size, group_size)
    # users
    new_user = np.ones(n, dtype=bool)
    new_user[1:] = u[1:] != u[:-1]
    user_start = np.flatnonzero(new_user)
    user_size = np.diff(np.append(user_start, n))
    user_pos = (np.add.reduceat(r, user_start) if n else np.zeros(0)).astype(np.int64)
    position = np.arange(n) - np.repeat(user_start, user_size)
    return {
        "users": u[user_start],
        "rel": r,
        "gain": gain,
        "group_start": group_start,
        "group_size": group_size,
        "position": position,
        "user_start": user_start,
        "user_size": user_size,
        "user_pos": user_pos,
    }


def _per_user(users: np.ndarray, scores: np.ndarray, rel: np.ndarray) -> dict[str, np.ndarray]:
    """AUC, NDCG (mean over cut-offs) and NDCG@10 of every user present (each must have both kinds)."""
    k = _ranked(users, scores, rel)
    n = len(k["rel"])
    if n == 0:
        empty = np.zeros(0)
        return {"user": k["users"], "auc": empty, "ndcg": empty, "ndcg@10": empty}
    size, n_pos = k["user_size"], k["user_pos"]
    n_neg = size - n_pos
    # AUC (Mann-Whitney): per positive, the negatives ranked below it plus half the tied ones.
    # Within the descending order, negatives after the positive's tie group are below it.
    rel = k["rel"]
    neg = 1.0 - rel
    group_neg = np.add.reduceat(neg, k["group_start"])
    group_of = np.repeat(np.arange(len(k["group_start"])), k["group_size"])
    user_of = np.repeat(np.arange(len(size)), size)
    # negatives at or after each rank within its user (reverse cumulative sum per user)
    neg_cum = np.cumsum(neg)  # negatives at ranks <= i (global)
    user_end_cum = neg_cum[k["user_start"] + size - 1]
    group_end = k["group_start"] + k["group_size"] - 1
    below_group = user_end_cum[user_of] - neg_cum[group_end][group_of]  # negatives after the tie group
    credit = rel * (below_group + 0.5 * group_neg[group_of])
    auc = np.bincount(user_of, weights=credit, minlength=len(size)) / (n_pos * n_neg)
    # NDCG@k for k = 1..size of every user: tie-shared gains / ideal DCG (all positives first)
    disc = _discounts(int(size.max()))
    pos = k["position"]
    dcg_cum = np.cumsum(k["gain"] * disc[pos])
    start_cum = np.where(k["user_start"] > 0, dcg_cum[k["user_start"] - 1], 0.0)
    dcg = dcg_cum - start_cum[user_of]
    ideal_cum = np.cumsum(disc)
    idcg = ideal_cum[np.minimum(pos, n_pos[user_of] - 1)]
    curve = dcg / idcg
    ndcg = np.bincount(user_of, weights=curve, minlength=len(size)) / size
    ndcg_at_10 = curve[k["user_start"] + np.minimum(NDCG_CUTOFF, size) - 1]
    return {"user": k["users"], "auc": auc, "ndcg": ndcg, "ndcg@10": ndcg_at_10, "_curve": curve, "_size": size}


def _one_user(pos: np.ndarray, neg: np.ndarray) -> dict[str, np.ndarray]:
    pos = np.atleast_1d(np.asarray(pos, dtype=np.float64))
    neg = np.atleast_1d(np.asarray(neg, dtype=np.float64))
    check_finite(pos, "positives", negatives=neg)
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("a ranking metric needs at least one positive and one negative")
    scores = np.concatenate([pos, neg])
    rel = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    return _per_user(np.zeros(len(scores), dtype=np.int64), scores, rel)


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney AUC of one user's positive and negative scores (ties = 1/2)."""
    return float(_one_user(pos, neg)["auc"][0])


def ndcg_at_each_cutoff(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Tie-aware NDCG@k for k = 1..n_candidates of one user (binary relevance)."""
    return _one_user(pos, neg)["_curve"]


def ndcg(pos: np.ndarray, neg: np.ndarray) -> float:
    """FHN/LPAE NDCG of one user: tie-aware NDCG@k averaged over every cut-off k."""
    return float(_one_user(pos, neg)["ndcg"][0])


def ndcg_at(pos: np.ndarray, neg: np.ndarray, k: int = NDCG_CUTOFF) -> float:
    """Tie-aware NDCG@k of one user (cut-off clipped to the number of candidates)."""
    if k < 1:
        raise ValueError(f"ndcg_at: k must be >= 1, got {k}")
    curve = ndcg_at_each_cutoff(pos, neg)
    return float(curve[min(k, len(curve)) - 1])


def per_user_metrics(
    users_pos: np.ndarray, scores_pos: np.ndarray, users_neg: np.ndarray, scores_neg: np.ndarray
) -> dict[str, np.ndarray]:
    """AUC, NDCG and NDCG@10 for every user that has positives and negatives (tie-aware, finite only).

    Returns arrays keyed 'user', 'auc', 'ndcg', 'ndcg@10'. Users with only
    positives or only negatives are left out. ValueError on NaN / inf scores.
    """
    users_pos, users_neg = np.asarray(users_pos).reshape(-1), np.asarray(users_neg).reshape(-1)
    scores_pos = np.asarray(scores_pos, dtype=np.float64).reshape(-1)
    scores_neg = np.asarray(scores_neg, dtype=np.float64).reshape(-1)
    check_finite(scores_pos, "positives", negatives=scores_neg)
    if scores_pos.shape != users_pos.shape or scores_neg.shape != users_neg.shape:
        raise ValueError(
            f"scores and users differ in length: {len(scores_pos)} vs {len(users_pos)} positives, "
            f"{len(scores_neg)} vs {len(users_neg)} negatives"
        )
    both = np.intersect1d(users_pos, users_neg)
    keep_pos, keep_neg = np.isin(users_pos, both), np.isin(users_neg, both)
    users = np.concatenate([users_pos[keep_pos], users_neg[keep_neg]])
    scores = np.concatenate([scores_pos[keep_pos], scores_neg[keep_neg]])
    rel = np.concatenate([np.ones(int(keep_pos.sum())), np.zeros(int(keep_neg.sum()))])
    out = _per_user(users, scores, rel)
    return {key: out[key] for key in ("user", "auc", "ndcg", "ndcg@10")}


def mean_metrics(
    users_pos: np.ndarray, scores_pos: np.ndarray, users_neg: np.ndarray, scores_neg: np.ndarray
) -> dict[str, float]:
    """Per-user metrics averaged over users: {'auc', 'ndcg', 'ndcg@10', 'n_users'}."""
    per_user = per_user_metrics(users_pos, scores_pos, users_neg, scores_neg)
    some = len(per_user["user"]) > 0
    return {
        "auc": float(per_user["auc"].mean()) if some else float("nan"),
        "ndcg": float(per_user["ndcg"].mean()) if some else float("nan"),
        "ndcg@10": float(per_user["ndcg@10"].mean()) if some else float("nan"),
        "n_users": int(len(per_user["user"])),
    }


def fitb_accuracy(candidate_scores: np.ndarray, answer: np.ndarray | None = None) -> float:
    """Share of fill-in-the-blank questions whose true candidate scores highest, ties shared.

    candidate_scores: [n_questions, n_candidates]; answer: the true column of
    each question (default 0, the first candidate, as in Polyvore-U). A question
    whose true candidate ties with m others at the top counts 1 / (1 + m): the
    expected accuracy when ties are broken at random, so a constant scorer gets
    chance (1 / n_candidates), neither a lucky 1 nor a flattering-to-others 0
    (the tie-aware reading of AUC and NDCG here). NaN / inf: ValueError.
    """
    scores = check_finite(candidate_scores, "FITB scores")
    if not len(scores):
        return float("nan")
    answer = np.zeros(len(scores), dtype=np.int64) if answer is None else np.asarray(answer)
    true = scores[np.arange(len(scores)), answer]
    top = scores.max(axis=1)
    tied = (scores == top[:, None]).sum(axis=1)  # candidates at the top, the true one included when it is there
    return float(np.where(true == top, 1.0 / tied, 0.0).mean())
