"""Ranking metrics: FHN reference vectors, tie-aware NDCG against brute force, non-finite scores refused."""

from __future__ import annotations

import itertools
import json
import time

import numpy as np
import pytest
from conftest import TESTVECTORS
from hypothesis import given, settings
from hypothesis import strategies as st

from outfitrec.evaluate.metrics import (
    NonFiniteScores,
    auc,
    fitb_accuracy,
    mean_metrics,
    ndcg,
    ndcg_at,
    ndcg_at_each_cutoff,
    per_user_metrics,
)

VECTORS = json.loads((TESTVECTORS / "metrics_fhn.json").read_text())


def _plain_curve(rel_in_order: np.ndarray) -> np.ndarray:
    """FHN's NDCG@k curve of one fixed order (no ties): gain 2^rel - 1, discount log2(max(rank, 2))."""
    disc = np.log2(np.maximum(np.arange(1, len(rel_in_order) + 1), 2))
    ideal = np.sort(rel_in_order)[::-1]
    return np.cumsum((2.0**rel_in_order - 1) / disc) / np.cumsum((2.0**ideal - 1) / disc)


def _brute_force_curve(pos, neg) -> np.ndarray:
    """The expected NDCG@k curve over every order of the tied candidates (all permutations, then sorted)."""
    scores = np.concatenate([pos, neg])
    rel = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    curves = []
    for perm in itertools.permutations(range(len(scores))):
        perm = np.asarray(perm)
        order = perm[np.argsort(-scores[perm], kind="stable")]  # a uniformly random order within ties
        curves.append(_plain_curve(rel[order]))
    return np.mean(curves, axis=0)


# --------------------------------------------------------------------------- reference values


def test_reproduces_the_fhn_reference_vectors_without_ties():
    for u, user in enumerate(VECTORS["users"]):
        assert auc(user["pos"], user["neg"]) == pytest.approx(VECTORS["per_user_auc"][u], abs=1e-12)
        assert ndcg(user["pos"], user["neg"]) == pytest.approx(VECTORS["per_user_ndcg"][u], abs=1e-12)
        curve = ndcg_at_each_cutoff(user["pos"], user["neg"])
        order = np.argsort(-np.r_[user["pos"], user["neg"]], kind="stable")
        rel = np.r_[np.ones(len(user["pos"])), np.zeros(len(user["neg"]))][order]
        np.testing.assert_allclose(curve, _plain_curve(rel), atol=1e-12)
    tie = VECTORS["auc_tie_case"]
    assert auc(tie["user"]["pos"], tie["user"]["neg"]) == pytest.approx(tie["auc"])


def test_reference_vectors_through_mean_metrics():
    users_pos, scores_pos, users_neg, scores_neg = [], [], [], []
    for u, user in enumerate(VECTORS["users"]):
        users_pos += [u] * len(user["pos"])
        scores_pos += user["pos"]
        users_neg += [u] * len(user["neg"])
        scores_neg += user["neg"]
    m = mean_metrics(users_pos, scores_pos, users_neg, scores_neg)
    assert m["auc"] == pytest.approx(VECTORS["mean_auc"], abs=1e-12)
    assert m["ndcg"] == pytest.approx(VECTORS["mean_ndcg"], abs=1e-12)
    assert m["n_users"] == len(VECTORS["users"])


def test_one_positive_and_ten_tied_negatives():
    """Field case 01 (a): a constant scorer is not ranked first among equals."""
    assert auc([1.0], [1.0] * 10) == 0.5
    assert ndcg([1.0], [1.0] * 10) == pytest.approx(0.3386, abs=5e-5)
    assert ndcg_at([1.0], [1.0] * 10) == pytest.approx(0.4777, abs=5e-5)
    assert ndcg_at([1.0], [1.0] * 10, k=1) == pytest.approx(1 / 11)
    # exactly: every rank gets the gain 1/11
    disc = 1 / np.log2(np.maximum(np.arange(1, 12), 2))
    np.testing.assert_allclose(ndcg_at_each_cutoff([1.0], [1.0] * 10), np.cumsum(disc) / 11)


def test_three_positives_thirty_tied_negatives_per_user():
    """Field case 01 (b): per user 3 positives + 30 negatives, all tied: NDCG 0.2367, NDCG@10 0.1816."""
    users = np.repeat(np.arange(6), 3)
    m = mean_metrics(users, np.zeros(18), np.repeat(np.arange(6), 30), np.zeros(180))
    assert m["auc"] == 0.5
    assert m["ndcg"] == pytest.approx(0.2367, abs=5e-5)
    assert m["ndcg@10"] == pytest.approx(0.1816, abs=5e-5)


@pytest.mark.parametrize(
    ("pos", "neg"),
    [
        ([1.0], [1.0, 1.0, 0.0]),
        ([1.0, 1.0], [1.0, 2.0, 0.0]),
        ([0.5, 0.2], [0.5, 0.2, 0.2, 0.9]),
        ([3.0, 1.0, 1.0], [1.0, 2.0, 3.0]),
        ([0.0], [0.0]),
        ([2.0, 2.0], [2.0, 2.0, 2.0]),
        ([0.3, 0.1], [0.2, 0.4]),  # no ties: the plain order
    ],
)
def test_tie_aware_ndcg_is_the_expectation_over_all_orders(pos, neg):
    want = _brute_force_curve(np.asarray(pos), np.asarray(neg))
    got = ndcg_at_each_cutoff(pos, neg)
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert ndcg(pos, neg) == pytest.approx(want.mean(), abs=1e-12)
    assert ndcg_at(pos, neg) == pytest.approx(want[min(10, len(want)) - 1], abs=1e-12)


# --------------------------------------------------------------------------- invariants (hypothesis)

small_scores = st.lists(st.integers(-2, 2).map(float), min_size=1, max_size=4)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(pos=small_scores, neg=small_scores)
def test_brute_force_on_random_small_cases(pos, neg):
    """Heavy ties (5 distinct values): the closed form equals the mean over every permutation."""
    np.testing.assert_allclose(ndcg_at_each_cutoff(pos, neg), _brute_force_curve(np.asarray(pos), np.asarray(neg)))


scores_list = st.lists(st.floats(-5, 5, allow_nan=False, width=32), min_size=1, max_size=12)


@settings(max_examples=100, deadline=None)
@given(pos=scores_list, neg=scores_list, shift=st.floats(-3, 3, width=32), scale=st.floats(0.5, 10, width=32))
def test_invariants(pos, neg, shift, scale):
    pos, neg = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    curve = ndcg_at_each_cutoff(pos, neg)
    a = auc(pos, neg)
    assert np.all((curve >= -1e-12) & (curve <= 1 + 1e-12)) and 0.0 <= a <= 1.0
    # the order of the inputs does not matter
    rng = np.random.default_rng(0)
    assert ndcg(rng.permutation(pos), rng.permutation(neg)) == pytest.approx(ndcg(pos, neg), abs=1e-12)
    # a positive affine map of the scores changes nothing (when the floats keep the same ties)
    mapped_pos, mapped_neg = pos * scale + shift, neg * scale + shift
    if len(np.unique(np.r_[mapped_pos, mapped_neg])) == len(np.unique(np.r_[pos, neg])):
        assert ndcg(mapped_pos, mapped_neg) == pytest.approx(ndcg(pos, neg), abs=1e-9)
    # every score equal: the value of a random order, the same as every other constant
    tied = ndcg(np.zeros(len(pos)), np.zeros(len(neg)))
    assert tied == pytest.approx(ndcg(np.ones(len(pos)), np.ones(len(neg))))
    # separating the positives above all negatives is perfect, below all is the worst
    assert ndcg(np.full(len(pos), 10.0), np.zeros(len(neg))) == pytest.approx(1.0)
    worst = ndcg(np.zeros(len(pos)), np.full(len(neg), 10.0))
    assert worst <= tied + 1e-12 <= 1.0 + 1e-12
    assert auc(np.full(len(pos), 10.0), np.zeros(len(neg))) == 1.0


@settings(max_examples=50, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(0, 4), st.booleans(), st.integers(-2, 2).map(float)), min_size=2, max_size=40)
)
def test_per_user_metrics_equal_the_one_user_functions(data):
    """The vectorised per-user path equals auc / ndcg / ndcg_at of each user alone (users in any order)."""
    users = np.asarray([d[0] for d in data])
    is_pos = np.asarray([d[1] for d in data])
    scores = np.asarray([d[2] for d in data])
    out = per_user_metrics(users[is_pos], scores[is_pos], users[~is_pos], scores[~is_pos])
    expected_users = sorted(set(users[is_pos]) & set(users[~is_pos]))
    assert out["user"].tolist() == expected_users
    for i, u in enumerate(expected_users):
        p, n = scores[is_pos & (users == u)], scores[~is_pos & (users == u)]
        assert out["auc"][i] == pytest.approx(auc(p, n), abs=1e-12)
        assert out["ndcg"][i] == pytest.approx(ndcg(p, n), abs=1e-12)
        assert out["ndcg@10"][i] == pytest.approx(ndcg_at(p, n, 10), abs=1e-12)


def test_auc_matches_the_pairwise_definition():
    rng = np.random.default_rng(1)
    for _ in range(20):
        pos, neg = rng.integers(0, 4, 5).astype(float), rng.integers(0, 4, 7).astype(float)
        pairs = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        assert auc(pos, neg) == pytest.approx(pairs.mean())


def test_vectorised_over_thousands_of_users_is_fast():
    rng = np.random.default_rng(0)
    n_users, per = 5000, 3
    users_pos = np.repeat(np.arange(n_users), per)
    users_neg = np.repeat(np.arange(n_users), per * 10)
    scores_pos = rng.integers(0, 20, len(users_pos)).astype(float)  # many ties
    scores_neg = rng.integers(0, 20, len(users_neg)).astype(float)
    start = time.perf_counter()
    m = mean_metrics(users_pos, scores_pos, users_neg, scores_neg)
    assert time.perf_counter() - start < 2.0
    assert m["n_users"] == n_users and 0.45 < m["auc"] < 0.55


# --------------------------------------------------------------------------- non-finite scores


@pytest.mark.parametrize(
    ("pos", "neg", "message"),
    [
        ([np.nan], [0.1, 0.2], r"NaN for 1 outfit\b"),
        ([0.5], [np.nan, np.nan], "NaN for 2 outfits"),
        ([np.inf], [0.1], r"inf for 1 outfit\b"),
        ([0.5], [-np.inf, np.nan], r"NaN for 1 outfit\b"),
    ],
)
def test_non_finite_scores_are_refused(pos, neg, message):
    for fn in (auc, ndcg, ndcg_at, ndcg_at_each_cutoff):
        with pytest.raises(ValueError, match=f"scores contain .*{message}"):
            fn(pos, neg)
    with pytest.raises(NonFiniteScores, match=message):
        mean_metrics([0] * len(pos), pos, [0] * len(neg), neg)


def test_mean_metrics_counts_the_non_finite_outfits():
    with pytest.raises(ValueError, match=r"scores contain NaN for 3 outfits \(2 positives, 1 negatives\)"):
        mean_metrics([0, 1, 1], [np.nan, 0.2, np.nan], [0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match=r"NaN for 1 outfit\b"):
        fitb_accuracy(np.array([[0.1, np.nan]]))


def test_empty_inputs():
    with pytest.raises(ValueError, match="at least one positive"):
        auc([], [0.1])
    m = mean_metrics([0], [1.0], [1], [0.0])  # no user with both kinds
    assert m["n_users"] == 0 and np.isnan(m["auc"])
    with pytest.raises(ValueError, match="k must be"):
        ndcg_at([1.0], [0.0], k=0)


def test_fitb_shares_ties_like_a_random_tie_break():
    """Worked by hand: a clear win 1, a two-way tie at the top 1/2, a constant row 1/4, a loss 0."""
    scores = np.array(
        [
            [0.9, 0.1, 0.2, 0.3],  # true (column 0) alone on top: 1
            [0.5, 0.5, 0.1, 0.2],  # tied with one other: 1/2
            [0.3, 0.3, 0.3, 0.3],  # constant: 1/4 (chance)
            [0.2, 0.7, 0.7, 0.1],  # true below a tie of others: 0
        ]
    )
    assert fitb_accuracy(scores) == pytest.approx((1 + 0.5 + 0.25 + 0) / 4)
    assert fitb_accuracy(scores[[2]]) == pytest.approx(0.25)
    assert fitb_accuracy(scores[[3]], answer=np.array([1])) == pytest.approx(0.5)
    assert np.isnan(fitb_accuracy(np.zeros((0, 4))))
