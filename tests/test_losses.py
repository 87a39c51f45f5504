"""Losses against values worked out by hand on tiny cases (arithmetic in the comments / via math.exp)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from outfitrec.losses import (
    fnd_deltas,
    fnd_flags,
    fnd_loss,
    kd_loss,
    nt_xent,
    ranking_distillation_loss,
    rd_weights,
    score_regression_loss,
    softmax_loss,
    user_thresholds,
)

E = math.exp
LN = math.log


def t(*rows: list[float], grad: bool = False) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64, requires_grad=grad)


def close(x: torch.Tensor, expected: float, tol: float = 1e-12) -> None:
    assert abs(float(x) - expected) < tol, (float(x), expected)


# ---------------------------------------------------------------- softmax_loss


def test_softmax_loss_by_hand():
    s = t([2.0, 1.0, 0.0])
    # -log(e^2 / (e^2 + e^1 + e^0)) = log(1 + e^-1 + e^-2) = log(1.503215) = 0.407606
    close(softmax_loss(s), LN(1 + E(-1) + E(-2)))
    close(softmax_loss(s), 0.4076059644, 1e-9)
    # T = 2: logits [1, 0.5, 0] -> log(1 + e^-0.5 + e^-1) = 0.680270
    close(softmax_loss(s, temperature=2.0), LN(1 + E(-0.5) + E(-1)))
    close(softmax_loss(s, temperature=2.0), 0.6802696706, 1e-9)


def test_softmax_loss_batch_mean_and_valid_mask():
    s = t([2.0, 1.0, 0.0], [0.0, 0.0, 1e9])
    valid = torch.tensor([[True, True, True], [True, True, False]])
    # row 2 with its third candidate absent: -log(e^0 / (e^0 + e^0)) = log 2
    expected = (LN(1 + E(-1) + E(-2)) + LN(2)) / 2
    close(softmax_loss(s, valid=valid), expected)
    s = t([2.0, 1.0, 0.0], [0.0, 0.0, 1e9], grad=True)
    softmax_loss(s, valid=valid).backward()
    assert torch.isfinite(s.grad).all() and s.grad[1, 2] == 0


def test_softmax_loss_rejects_bad_input():
    with pytest.raises(ValueError, match="column 0"):
        softmax_loss(t([1.0]))
    with pytest.raises(ValueError, match="temperature"):
        softmax_loss(t([1.0, 0.0]), temperature=0.0)
    with pytest.raises(ValueError, match="valid"):
        softmax_loss(t([1.0, 0.0]), valid=torch.tensor([[False, True]]))


# ---------------------------------------------------------------- FND


S = [2.0, 1.0, 0.0]  # student: positive 2, negatives 1 and 0
TS = [5.0, 3.0, 0.0]  # teacher: negative 1 above the radius, negative 2 below
R = 2.0  # r_u


def test_fnd_soft_by_hand():
    # Delta = 0.5 * ([3, 0] - 2) = [+0.5, -1.0]
    # L = -log(e^2 / (e^2 + e^(1+0.5) + e^(0-1))) = log(1 + e^-0.5 + e^-3) = 0.504597
    loss = fnd_loss(t(S), t(TS), torch.tensor([R], dtype=torch.float64), alpha=0.5, variant="soft")
    close(loss, LN(1 + E(-0.5) + E(-3)))
    close(loss, 0.5045969023, 1e-9)


def test_fnd_hard_by_hand():
    # Delta = 0.5 * [+1 (3 >= 2), -1 (0 < 2)] = [+0.5, -0.5]
    # L = log(1 + e^(1.5-2) + e^(-0.5-2)) = log(1 + e^-0.5 + e^-2.5) = 0.523909
    loss = fnd_loss(t(S), t(TS), torch.tensor([R], dtype=torch.float64), alpha=0.5, variant="hard")
    close(loss, LN(1 + E(-0.5) + E(-2.5)))
    close(loss, 0.5239090562, 1e-9)


def test_fnd_temperature_scales_scores_not_offsets():
    # T = 2: logits [1, 0.5, 0] + Delta [0, +0.5, -1] = [1, 1, -1]
    # L = log(1 + e^0 + e^-2) = log(2 + e^-2) = 0.758624
    loss = fnd_loss(t(S), t(TS), torch.tensor([R], dtype=torch.float64), alpha=0.5, temperature=2.0)
    close(loss, LN(2 + E(-2)))


def test_fnd_threshold_and_teacher_on_equal_boundary_is_flagged_in_hard():
    # t = r exactly: hard counts it as inside the radius (+1), soft gives Delta = 0
    d_hard = fnd_deltas(t([0.0, 2.0]), torch.tensor([2.0], dtype=torch.float64), alpha=1.0, variant="hard")
    d_soft = fnd_deltas(t([0.0, 2.0]), torch.tensor([2.0], dtype=torch.float64), alpha=1.0, variant="soft")
    assert d_hard.tolist() == [[0.0, 1.0]] and d_soft.tolist() == [[0.0, 0.0]]


@pytest.mark.parametrize("variant", ["soft", "hard"])
@pytest.mark.parametrize("temperature", [1.0, 0.1, 3.0])
def test_fnd_alpha_zero_is_exactly_softmax(variant, temperature):
    g = torch.Generator().manual_seed(0)
    s = torch.randn(7, 11, generator=g)
    ts = torch.randn(7, 11, generator=g) * 5
    thr = torch.randn(7, generator=g)
    plain = softmax_loss(s, temperature)
    assert torch.equal(fnd_loss(s, ts, thr, alpha=0.0, variant=variant, temperature=temperature), plain)
    valid = torch.ones(7, 11, dtype=torch.bool)
    valid[2, 5:] = False
    plain_v = softmax_loss(s, temperature, valid=valid)
    assert torch.equal(fnd_loss(s, ts, thr, 0.0, variant, temperature, valid=valid), plain_v)
    # same gradient too
    s1 = s.clone().requires_grad_()
    s2 = s.clone().requires_grad_()
    softmax_loss(s1, temperature).backward()
    fnd_loss(s2, ts, thr, 0.0, variant, temperature).backward()
    assert torch.equal(s1.grad, s2.grad)


@pytest.mark.parametrize("variant", ["soft", "hard"])
def test_fnd_sign_behaviour(variant):
    thr = torch.tensor([R], dtype=torch.float64)
    s = t([1.0, 0.5])
    plain = float(softmax_loss(s))
    flagged = t([0.0, 3.0])  # the one negative is inside the radius: a suspected false negative
    ordinary = t([0.0, 1.0])  # below the radius
    assert fnd_flags(flagged, thr).tolist() == [[True]]
    assert fnd_flags(ordinary, thr).tolist() == [[False]]
    # alpha > 0: a flagged negative grows its softmax share -> loss larger; an ordinary one -> smaller
    assert float(fnd_loss(s, flagged, thr, 0.5, variant)) > plain
    assert float(fnd_loss(s, ordinary, thr, 0.5, variant)) < plain
    # alpha < 0 reverses both (forgive suspected false negatives)
    assert float(fnd_loss(s, flagged, thr, -0.5, variant)) < plain
    assert float(fnd_loss(s, ordinary, thr, -0.5, variant)) > plain


def test_fnd_positive_column_has_no_offset():
    # a huge teacher score on the positive must not matter
    thr = torch.tensor([0.0], dtype=torch.float64)
    a = fnd_loss(t(S), t([100.0, 3.0, 0.0]), thr, 0.7)
    b = fnd_loss(t(S), t([-100.0, 3.0, 0.0]), thr, 0.7)
    assert torch.equal(a, b)


def test_fnd_flags_by_hand_with_valid():
    ts = t([9.0, 1.0, 2.5, 3.0], [9.0, 5.0, 0.0, 7.0])
    thr = torch.tensor([2.5, 6.0], dtype=torch.float64)
    valid = torch.tensor([[True, True, True, True], [True, True, True, False]])
    assert fnd_flags(ts, thr).tolist() == [[False, True, True], [False, False, True]]
    assert fnd_flags(ts, thr, valid).tolist() == [[False, True, True], [False, False, False]]


# ---------------------------------------------------------------- thresholds


def test_user_thresholds_by_hand():
    scores = torch.tensor([3.0, 4.0, 1.0, 6.0, 2.0, 10.0])
    users = torch.tensor([0, 1, 0, 1, 0, 3])
    # user 0: [3, 1, 2] -> sorted [1, 2, 3]; user 1: [4, 6]; user 2: none; user 3: [10]
    # user 2 falls back to the aggregate over all six scores [1, 2, 3, 4, 6, 10]
    mean = user_thresholds(scores, users, 4, "mean")
    assert mean.tolist() == pytest.approx([2.0, 5.0, 26 / 6, 10.0])
    assert user_thresholds(scores, users, 4, "min").tolist() == pytest.approx([1.0, 4.0, 1.0, 10.0])
    # median of 6 sorted values: (3 + 4) / 2
    assert user_thresholds(scores, users, 4, "median").tolist() == pytest.approx([2.0, 5.0, 3.5, 10.0])
    # q0.25 (linear): user 0 position 0.5 -> 1.5; user 1 position 0.25 -> 4.5; all six: position 1.25 -> 2.25
    assert user_thresholds(scores, users, 4, "q0.25").tolist() == pytest.approx([1.5, 4.5, 2.25, 10.0])
    assert user_thresholds(scores, users, 4, "q1").tolist() == pytest.approx([3.0, 6.0, 10.0, 10.0])


def test_user_thresholds_matches_numpy_per_user():
    rng = np.random.default_rng(3)
    users = rng.integers(0, 9, size=200)
    scores = rng.normal(size=200)
    for agg, fn in [("mean", np.mean), ("min", np.min), ("median", np.median), ("q0.3", lambda x: np.quantile(x, 0.3))]:
        got = user_thresholds(torch.tensor(scores), torch.tensor(users), 9, agg).numpy()
        want = [fn(scores[users == u]) for u in range(9)]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_user_thresholds_rejects_bad_aggregate_and_users():
    with pytest.raises(ValueError, match="aggregate"):
        user_thresholds(torch.ones(2), torch.zeros(2, dtype=torch.long), 1, "q1.5")
    with pytest.raises(ValueError, match="aggregate"):
        user_thresholds(torch.ones(2), torch.zeros(2, dtype=torch.long), 1, "max")
    with pytest.raises(ValueError, match="user ids"):
        user_thresholds(torch.ones(2), torch.tensor([0, 5]), 3)


# ---------------------------------------------------------------- KD baselines


def test_kd_loss_by_hand():
    # student uniform: p_s = [1/3, 1/3, 1/3]; teacher logits [ln 2, 0, 0] -> p_t = [1/2, 1/4, 1/4]
    # KL = 1/2 ln(1/2 / 1/3) + 2 * 1/4 ln(1/4 / 1/3) = 0.5 ln 1.5 + 0.5 ln 0.75 = 0.058892
    s = t([0.0, 0.0, 0.0])
    ts = t([LN(2), 0.0, 0.0])
    close(kd_loss(s, ts), 0.5 * LN(1.5) + 0.5 * LN(0.75))
    close(kd_loss(s, ts), 0.0588915178, 1e-9)
    # T = 2: teacher logits [ln2/2, 0, 0] -> p_t = [r, 1, 1] / (r + 2), r = sqrt(2); times T^2 = 4
    r = math.sqrt(2)
    p = [r / (r + 2), 1 / (r + 2), 1 / (r + 2)]
    close(kd_loss(s, ts, temperature=2.0), 4 * sum(pi * LN(pi * 3) for pi in p))
    # identical distributions -> 0
    close(kd_loss(ts, ts), 0.0)


def test_kd_loss_valid_mask_equals_submatrix():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(3, 5, generator=g, dtype=torch.float64)
    ts = torch.randn(3, 5, generator=g, dtype=torch.float64)
    valid = torch.ones(3, 5, dtype=torch.bool)
    valid[:, 3:] = False
    close(kd_loss(s, ts, 1.5, valid=valid), float(kd_loss(s[:, :3], ts[:, :3], 1.5)))
    s.requires_grad_()
    kd_loss(s, ts, valid=valid).backward()
    assert torch.isfinite(s.grad).all() and (s.grad[:, 3:] == 0).all()


def test_score_regression_by_hand():
    # ((1-1)^2 + (2-0)^2 + (3-6)^2) / 3 = 13/3
    close(score_regression_loss(t([1.0, 2.0, 3.0]), t([1.0, 0.0, 6.0])), 13 / 3)
    valid = torch.tensor([[True, True, False]])
    close(score_regression_loss(t([1.0, 2.0, 3.0]), t([1.0, 0.0, 6.0]), valid), 4 / 2)


def test_rd_weights_by_hand():
    # rank weights exp(-1), exp(-2) normalised: 1/(1+e^-1), e^-1/(1+e^-1)
    w = rd_weights(2, "rank", lam=1.0)
    assert w.tolist() == pytest.approx([1 / (1 + E(-1)), E(-1) / (1 + E(-1))])
    assert rd_weights(4, "uniform").tolist() == [0.25] * 4


def test_ranking_distillation_by_hand():
    s = t([2.0, 1.0, 0.0])
    ts = t([0.0, 1.0, 3.0])  # teacher ranks negative column 2 first, then column 1
    z = E(2) + E(1) + E(0)
    # top 1: -log(e^0 / Z) = log(e^2 + e + 1) = 2.407606
    close(ranking_distillation_loss(s, ts, top_n=1), LN(z))
    # top 2, rank weights w1 = 1/(1+e^-1) on column 2, w2 = e^-1/(1+e^-1) on column 1
    w1, w2 = 1 / (1 + E(-1)), E(-1) / (1 + E(-1))
    close(ranking_distillation_loss(s, ts, top_n=2), -(w1 * LN(E(0) / z) + w2 * LN(E(1) / z)))
    # uniform weights
    close(ranking_distillation_loss(s, ts, top_n=2, weighting="uniform"), -(0.5 * LN(1 / z) + 0.5 * LN(E(1) / z)))
    with pytest.raises(ValueError, match="top_n"):
        ranking_distillation_loss(s, ts, top_n=3)


def test_ranking_distillation_never_picks_an_absent_candidate():
    s = t([2.0, 1.0, 0.0])
    ts = t([0.0, 1.0, 99.0])  # the padded column has the highest teacher score
    valid = torch.tensor([[True, True, False]])
    # only column 1 can be chosen; softmax over the two valid columns: -log(e^1 / (e^2 + e^1))
    close(ranking_distillation_loss(s, ts, 1, valid=valid), LN(E(2) + E(1)) - 1)
    # top 2 with one absent: the absent one's weight is dropped and the rest renormalised
    close(ranking_distillation_loss(s, ts, 2, valid=valid), LN(E(2) + E(1)) - 1)


# ---------------------------------------------------------------- no gradient to the teacher, shapes compose


def test_no_gradient_reaches_teacher_and_losses_compose():
    g = torch.Generator().manual_seed(2)
    s = torch.randn(4, 6, generator=g, requires_grad=True)
    ts = torch.randn(4, 6, generator=g, requires_grad=True)
    thr = torch.randn(4, generator=g, requires_grad=True)
    total = (
        fnd_loss(s, ts, thr, 0.5)
        + fnd_loss(s, ts, thr, -0.5, "hard")
        + kd_loss(s, ts, 2.0)
        + score_regression_loss(s, ts)
        + ranking_distillation_loss(s, ts, 2)
        + softmax_loss(s)
    )
    assert total.ndim == 0
    total.backward()
    assert ts.grad is None and thr.grad is None
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


def test_teacher_shape_must_match():
    with pytest.raises(ValueError, match="teacher_scores"):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 4))


# ---------------------------------------------------------------- NT-Xent


def test_nt_xent_two_pairs_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    b = torch.tensor([[2.0, 0.0], [1.0, 1.0]], dtype=torch.float64)  # normalised: (1, 0), (c, c), c = 1/sqrt 2
    c = 1 / math.sqrt(2)
    # T = 0.5 -> logits are 2 * cosine. Cosines: a0.b0 = 1, a0.a1 = 0, a0.b1 = c, a1.b0 = 0, a1.b1 = c, b0.b1 = c
    l_a0 = -LN(E(2) / (E(2) + E(0) + E(2 * c)))  # twin b0; others a1, b1
    l_a1 = -LN(E(2 * c) / (E(2 * c) + E(0) + E(0)))  # twin b1; others a0, b0
    l_b0 = l_a0  # twin a0; others a1 (0), b1 (c)
    l_b1 = LN(3)  # twin a1 (c); others a0 (c), b0 (c): all equal
    close(nt_xent(a, b, temperature=0.5), (l_a0 + l_a1 + l_b0 + l_b1) / 4)
    close(nt_xent(a, b, temperature=0.5, group_size=2), (l_a0 + l_a1 + l_b0 + l_b1) / 4)


def test_nt_xent_perfect_alignment_limit():
    # twins identical, different outfits orthogonal: loss = log(1 + 6 e^{-1/T}) -> 0 as T -> 0
    a = torch.eye(4, dtype=torch.float64)
    for temp in [1.0, 0.2, 0.05]:
        close(nt_xent(a, a.clone(), temperature=temp), LN(1 + 6 * E(-1 / temp)))
    assert float(nt_xent(a, a, temperature=0.02)) < 1e-20


def test_nt_xent_group_vs_batch():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(6, 5, generator=g, dtype=torch.float64)
    b = a + 0.3 * torch.randn(6, 5, generator=g, dtype=torch.float64)
    batch = nt_xent(a, b, 0.2)
    grouped = nt_xent(a, b, 0.2, group_size=3)
    # group mode = mean of the per-example losses (each view contrasted only within its 3 outfits)
    close(grouped, float((nt_xent(a[:3], b[:3], 0.2) + nt_xent(a[3:], b[3:], 0.2)) / 2))
    # fewer negatives -> strictly smaller loss than contrasting across the batch
    assert float(grouped) < float(batch)
    close(nt_xent(a, b, 0.2, group_size=6), float(batch))
    # scale invariance (cosine)
    close(nt_xent(3 * a, 0.5 * b, 0.2), float(batch))
    with pytest.raises(ValueError, match="divide"):
        nt_xent(a, b, group_size=4)
