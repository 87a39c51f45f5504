"""Pure loss functions of score tensors (method.md §2-§4).

Every recommendation loss here takes a score matrix ``scores`` of shape
``[B, 1 + K]`` whose column 0 is the positive outfit and columns 1..K the
sampled negatives of the same user (the loss contract in docs/DESIGN.md).
Teacher tensors are always detached inside the loss, so a loss can never send
a gradient into the teacher, whatever the caller forgot to wrap in
``torch.no_grad``.

An optional boolean ``valid`` mask ``[B, 1 + K]`` marks candidates that take
part; ``False`` columns (padding when rows have different candidate counts,
e.g. a teacher pool larger than the loss's K) are ignored as if absent.
Column 0 must always be valid.

The combination "fnd+kd" is a plain sum in the training loop: every loss
returns a scalar from the same ``[B, 1 + K]`` inputs, so the terms compose.
"""

from __future__ import annotations

import re
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "softmax_loss",
    "fnd_loss",
    "fnd_deltas",
    "fnd_flags",
    "user_thresholds",
    "kd_loss",
    "score_regression_loss",
    "ranking_distillation_loss",
    "rd_weights",
    "nt_xent",
]


# --------------------------------------------------------------------------- helpers


def _check_scores(scores: Tensor, name: str = "scores") -> None:
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"{name} must be [B, 1+K] with K >= 1 (column 0 the positive), got {tuple(scores.shape)}")


def _check_teacher(scores: Tensor, teacher_scores: Tensor) -> None:
    if teacher_scores.shape != scores.shape:
        raise ValueError(
            f"teacher_scores shape {tuple(teacher_scores.shape)} must equal the student's {tuple(scores.shape)}: "
            "both score the same 1+K candidates"
        )


def _check_valid(scores: Tensor, valid: Tensor | None) -> Tensor | None:
    if valid is None:
        return None
    if valid.shape != scores.shape or valid.dtype != torch.bool:
        raise ValueError(
            f"valid must be a bool tensor of shape {tuple(scores.shape)}, got {valid.dtype} {tuple(valid.shape)}"
        )
    if not bool(valid[:, 0].all()):
        raise ValueError("valid[:, 0] must be True: column 0 is the positive and always takes part")
    return valid


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _masked_log_softmax(logits: Tensor, valid: Tensor | None) -> Tensor:
    """log softmax over the valid columns; invalid columns get -inf (and receive no gradient)."""
    if valid is not None:
        logits = logits.masked_fill(~valid, float("-inf"))
    return F.log_softmax(logits, dim=1)


def _positive_nll(logits: Tensor, valid: Tensor | None) -> Tensor:
    """Mean over rows of -log softmax(logits)[:, 0]: the one cross-entropy every softmax-type loss shares.

    softmax_loss and fnd_loss both end here, which is what makes fnd_loss with
    alpha = 0 bit-for-bit equal to softmax_loss.
    """
    return -_masked_log_softmax(logits, valid)[:, 0].mean()


# --------------------------------------------------------------------------- L_rec


def softmax_loss(scores: Tensor, temperature: float = 1.0, valid: Tensor | None = None) -> Tensor:
    """method.md L_rec: mean over the batch of -log softmax(scores / T)[:, 0].

    The positive competes with its K sampled negatives; T sharpens (T < 1) or
    flattens (T > 1) the softmax, which matters because cosine-sum scores live
    in a bounded range.
    """
    _check_scores(scores)
    _check_temperature(temperature)
    valid = _check_valid(scores, valid)
    return _positive_nll(scores / temperature, valid)


# --------------------------------------------------------------------------- FND


def fnd_flags(teacher_scores: Tensor, threshold: Tensor, valid: Tensor | None = None) -> Tensor:
    """Which sampled negatives the teacher suspects to be false negatives: bool [B, K].

    A negative is flagged when the teacher scores it at least as high as the
    user's radius r_u (teacher score >= threshold: inside the radius), the same
    test as the hard FND variant. teacher_scores is [B, 1+K] (column 0, the
    positive, is not a negative and is dropped); threshold is [B] (r_u of each
    row's user). Invalid (padded) negatives are never flagged.
    """
    _check_scores(teacher_scores, "teacher_scores")
    threshold = _check_threshold(teacher_scores, threshold)
    flags = teacher_scores.detach()[:, 1:] >= threshold.detach()[:, None]
    if valid is not None:
        valid = _check_valid(teacher_scores, valid)
        flags = flags & valid[:, 1:]
    return flags


def _check_threshold(scores: Tensor, threshold: Tensor | float) -> Tensor:
    threshold = torch.as_tensor(threshold, dtype=scores.dtype, device=scores.device)
    if threshold.ndim == 0:
        threshold = threshold.expand(scores.shape[0])
    if threshold.shape != (scores.shape[0],):
        raise ValueError(
            f"threshold must be [B] = ({scores.shape[0]},) (r_u of each row's user), got {tuple(threshold.shape)}"
        )
    return threshold


def fnd_deltas(
    teacher_scores: Tensor,
    threshold: Tensor,
    alpha: float,
    variant: Literal["soft", "hard"] = "soft",
    valid: Tensor | None = None,
) -> Tensor:
    """The FND logit offsets Delta [B, 1+K] (column 0, the positive, and invalid columns are 0).

    soft: Delta_j = alpha * (t_j - r_u);  hard: Delta_j = alpha * (+1 if t_j >= r_u else -1).
    alpha > 0 raises the share of suspected false negatives in the softmax
    (loss larger than plain) and lowers that of ordinary negatives (loss
    smaller); alpha < 0 forgives suspected false negatives. Detached: the
    offsets are constants of the student's loss.
    """
    _check_scores(teacher_scores, "teacher_scores")
    if variant not in ("soft", "hard"):
        raise ValueError(f"variant must be 'soft' or 'hard', got {variant!r}")
    threshold = _check_threshold(teacher_scores, threshold).detach()
    t_neg = teacher_scores.detach()[:, 1:]
    if variant == "soft":
        neg = alpha * (t_neg - threshold[:, None])
    else:
        sign = torch.where(t_neg >= threshold[:, None], 1.0, -1.0).to(t_neg.dtype)
        neg = alpha * sign
    delta = torch.cat([torch.zeros_like(neg[:, :1]), neg], dim=1)
    if valid is not None:
        delta = torch.where(valid, delta, torch.zeros_like(delta))
    return delta


def fnd_loss(
    scores: Tensor,
    teacher_scores: Tensor,
    threshold: Tensor,
    alpha: float,
    variant: Literal["soft", "hard"] = "soft",
    temperature: float = 1.0,
    valid: Tensor | None = None,
) -> Tensor:
    """False Negative Distillation loss (method.md §3, our reconstruction).

    L = -log( e^{s+/T} / (e^{s+/T} + sum_j e^{s-_j/T + Delta_j}) ), averaged over the batch,
    with Delta from :func:`fnd_deltas` added to the temperature-scaled NEGATIVE
    logits only. Delta is added after dividing by T so that alpha keeps its
    meaning (an offset in softmax logits) whatever the temperature.

    threshold: [B], r_u of each row's user (see :func:`user_thresholds`).
    alpha = 0 gives exactly :func:`softmax_loss` (the same computation plus 0).
    No gradient reaches teacher_scores or threshold.
    """
    _check_scores(scores)
    _check_teacher(scores, teacher_scores)
    _check_temperature(temperature)
    valid = _check_valid(scores, valid)
    delta = fnd_deltas(teacher_scores, threshold, alpha, variant, valid)
    return _positive_nll(scores / temperature + delta, valid)


_QUANTILE = re.compile(r"^q(0(\.\d+)?|1(\.0+)?)$")


def _aggregate_q(aggregate: str) -> float | None:
    """The quantile an aggregate name stands for, or None for 'mean'."""
    if aggregate == "mean":
        return None
    if aggregate == "min":
        return 0.0
    if aggregate == "median":
        return 0.5
    if _QUANTILE.match(aggregate):
        return float(aggregate[1:])
    raise ValueError(
        f"threshold aggregate must be 'mean', 'min', 'median' or 'q<p>' with 0 <= p <= 1, got {aggregate!r}"
    )


def user_thresholds(
    teacher_pos_scores: Tensor,
    users: Tensor,
    n_users: int,
    aggregate: str = "mean",
) -> Tensor:
    """Per-user radius r_u [n_users]: an aggregate of the teacher's scores of the user's training positives.

    aggregate: 'mean', 'min', 'median' or 'q<p>' (e.g. 'q0.25'); quantiles
    interpolate linearly between order statistics (numpy's default, so
    'median' of an even count is the mean of the two middle values).
    Vectorised: one stable sort by score, one stable sort by user, then each
    user's sorted run is indexed directly. A user with no training positives
    gets the same aggregate over all positives (a neutral radius rather than
    NaN, which would poison the soft offsets).
    """
    scores = teacher_pos_scores.detach().flatten()
    users = users.flatten().to(torch.long)
    if scores.shape != users.shape:
        raise ValueError(f"teacher_pos_scores {tuple(scores.shape)} and users {tuple(users.shape)} must match")
    if scores.numel() == 0:
        raise ValueError("user_thresholds needs at least one training positive")
    if int(users.min()) < 0 or int(users.max()) >= n_users:
        raise ValueError(f"user ids must lie in [0, {n_users}), got [{int(users.min())}, {int(users.max())}]")
    q = _aggregate_q(aggregate)
    scores_f = scores.to(torch.float64)  # exact-enough sums for users with many positives
    counts = torch.bincount(users, minlength=n_users)
    if q is None:
        sums = torch.zeros(n_users, dtype=torch.float64, device=scores.device).index_add_(0, users, scores_f)
        out = sums / counts.clamp(min=1)
        fallback = scores_f.mean()
    else:
        order = torch.sort(scores_f, stable=True).indices
        order = order[torch.sort(users[order], stable=True).indices]  # grouped by user, ascending score within
        sorted_scores = scores_f[order]
        starts = torch.cumsum(counts, 0) - counts
        pos = q * (counts.clamp(min=1) - 1).to(torch.float64)
        lo = pos.floor().to(torch.long)
        hi = pos.ceil().to(torch.long)
        last = scores_f.numel() - 1
        v_lo = sorted_scores[(starts + lo).clamp(max=last)]
        v_hi = sorted_scores[(starts + hi).clamp(max=last)]
        out = v_lo + (v_hi - v_lo) * (pos - lo.to(torch.float64))
        fallback = torch.quantile(scores_f, q)
    out = torch.where(counts > 0, out, fallback)
    return out.to(teacher_pos_scores.dtype)


# --------------------------------------------------------------------------- KD baselines


def kd_loss(scores: Tensor, teacher_scores: Tensor, temperature: float = 1.0, valid: Tensor | None = None) -> Tensor:
    """Plain KD on the sampled candidates: KL(softmax(t/T) || softmax(s/T)) over the 1+K columns, * T^2, batch mean.

    The T^2 factor (Hinton et al.) keeps the gradient scale independent of T.
    """
    _check_scores(scores)
    _check_teacher(scores, teacher_scores)
    _check_temperature(temperature)
    valid = _check_valid(scores, valid)
    log_p_s = _masked_log_softmax(scores / temperature, valid)
    log_p_t = _masked_log_softmax(teacher_scores.detach() / temperature, valid)
    if valid is not None:  # 0 * (-inf - -inf) would be NaN: zero the absent columns before combining
        log_p_s = torch.where(valid, log_p_s, torch.zeros_like(log_p_s))
        log_p_t = torch.where(valid, log_p_t, torch.zeros_like(log_p_t))
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)
    return kl.mean() * temperature**2


def score_regression_loss(scores: Tensor, teacher_scores: Tensor, valid: Tensor | None = None) -> Tensor:
    """Score regression: mean squared error between student and teacher scores over all (valid) candidates."""
    _check_scores(scores)
    _check_teacher(scores, teacher_scores)
    valid = _check_valid(scores, valid)
    sq = (scores - teacher_scores.detach()) ** 2
    if valid is None:
        return sq.mean()
    return (sq * valid).sum() / valid.sum()


def rd_weights(top_n: int, weighting: Literal["rank", "uniform"] = "rank", lam: float = 1.0) -> Tensor:
    """Weights of the teacher's top-n negatives as extra positives, summing to 1.

    'rank': w_r proportional to exp(-r / lam) for rank r = 1..top_n, the
    position importance of Ranking Distillation (Tang & Wang, KDD 2018): the
    teacher's top candidate counts most, lam sets how fast the weight decays.
    'uniform': 1 / top_n each.
    """
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    if weighting == "uniform":
        w = torch.ones(top_n, dtype=torch.float64)
    elif weighting == "rank":
        if not lam > 0:
            raise ValueError(f"lam must be > 0, got {lam}")
        w = torch.exp(-torch.arange(1, top_n + 1, dtype=torch.float64) / lam)
    else:
        raise ValueError(f"weighting must be 'rank' or 'uniform', got {weighting!r}")
    return w / w.sum()


def ranking_distillation_loss(
    scores: Tensor,
    teacher_scores: Tensor,
    top_n: int = 1,
    weighting: Literal["rank", "uniform"] = "rank",
    lam: float = 1.0,
    temperature: float = 1.0,
    valid: Tensor | None = None,
) -> Tensor:
    """Ranking-Distillation-style term on the sampled candidates (no full ranking needed).

    The teacher's top_n highest-scoring sampled NEGATIVES of each row are
    treated as extra positives with weights w (:func:`rd_weights`):
    L_RD = mean over rows of -sum_r w_r log softmax(s/T)[top_r],
    a log-likelihood over the same 1+K candidates as L_rec. This is only the
    distillation term; the loop adds it to L_rec with its own weight, as RD
    adds its term to the ranking loss. top_n must not exceed K; with a valid
    mask, absent negatives are never chosen and their weight is dropped (the
    row's remaining weights are renormalised).
    """
    _check_scores(scores)
    _check_teacher(scores, teacher_scores)
    _check_temperature(temperature)
    valid = _check_valid(scores, valid)
    k = scores.shape[1] - 1
    if not 1 <= top_n <= k:
        raise ValueError(f"top_n must be in [1, K={k}], got {top_n}")
    t_neg = teacher_scores.detach()[:, 1:]
    if valid is not None:
        t_neg = t_neg.masked_fill(~valid[:, 1:], float("-inf"))
    top = torch.topk(t_neg, top_n, dim=1).indices + 1  # column indices into [B, 1+K]
    w = rd_weights(top_n, weighting, lam).to(scores.dtype).to(scores.device).expand(scores.shape[0], top_n)
    if valid is not None:
        w = w * torch.gather(valid, 1, top)
        w = w / w.sum(dim=1, keepdim=True).clamp(min=torch.finfo(w.dtype).tiny)
    log_p = _masked_log_softmax(scores / temperature, valid)
    chosen = torch.gather(log_p, 1, top)
    if valid is not None:
        chosen = torch.where(w > 0, chosen, torch.zeros_like(chosen))
    return -(w * chosen).sum(dim=1).mean()


# --------------------------------------------------------------------------- contrastive


def nt_xent(view_a: Tensor, view_b: Tensor, temperature: float = 0.2, group_size: int | None = None) -> Tensor:
    """SimCLR NT-Xent between two views of N outfits (method.md §4), averaged over the 2N views.

    view_a, view_b: [N, p] projections; row i of both is the same outfit.
    Similarity is cosine / T. For each view its twin (the other view of the
    same outfit) is the positive; the negatives are the other views of its
    group: group_size = 1+K contrasts within each training example's 1+K
    outfits (rows [g*(1+K), (g+1)*(1+K)), 2K negatives per view, as in the
    paper), None contrasts across the whole batch (2N-2 negatives). Averaging
    (not summing) keeps lambda meaningful across batch sizes.
    """
    if view_a.ndim != 2 or view_a.shape != view_b.shape:
        raise ValueError(f"views must both be [N, p], got {tuple(view_a.shape)} and {tuple(view_b.shape)}")
    _check_temperature(temperature)
    n, p = view_a.shape
    if n == 0:
        raise ValueError("nt_xent needs at least one outfit")
    g = n if group_size is None else group_size
    if g < 1 or n % g != 0:
        raise ValueError(f"group_size {group_size} must divide the number of outfits N = {n}")
    a = F.normalize(view_a, dim=1).reshape(n // g, g, p)
    b = F.normalize(view_b, dim=1).reshape(n // g, g, p)
    z = torch.cat([a, b], dim=1)  # [G, 2g, p]: views a_0..a_{g-1}, b_0..b_{g-1}
    sim = torch.bmm(z, z.transpose(1, 2)) / temperature  # [G, 2g, 2g]
    eye = torch.eye(2 * g, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, float("-inf"))  # a view is not its own negative
    idx = torch.arange(2 * g, device=z.device)
    twin = (idx + g) % (2 * g)
    log_p = F.log_softmax(sim, dim=2)
    return -log_p[:, idx, twin].mean()
