"""User scorers: how much user u likes outfit embedding z.

AnchorScorer (LPAE): each user owns K anchor vectors; the score is the sum of
the cosine similarities between W z and the anchors, so a user with several
tastes can like outfits near any of its anchors. The log-det regulariser keeps
a user's anchors spread out (tr G - log det G is minimal when the anchors are
orthonormal). The paper's sum acts as ONE vector (the sum of the unit anchors), so
a user with several tastes is scored as their average; `pool='lse'` (ours, issue
15) keeps them apart: K * tau * log mean_k exp(cos_k / tau), which is the sum as
tau -> inf and K * max_k cos_k as tau -> 0 (same range [-K, K]). DotScorer: one
embedding per user, score = <e_u, z>: the plain baseline.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GRAM_EPS = 1e-4  # added to the Gram matrix's diagonal: log det stays finite when anchors are dependent


class AnchorScorer(nn.Module):
    """score(u, z) = sum_k cos(W z, a_uk) for K learnable anchors a_uk per user (range [-K, K]).

    z [B, dim]; W: dim -> user_dim (default dim); anchors [n_users, K, user_dim].
    """

    def __init__(
        self,
        n_users: int,
        dim: int,
        n_anchors: int = 64,
        user_dim: int | None = None,
        pool: str = "sum",
        pool_temperature: float = 0.1,
    ) -> None:
        super().__init__()
        if pool not in ("sum", "lse"):
            raise ValueError(f"anchor pool must be 'sum' or 'lse', got {pool!r}")
        user_dim = user_dim or dim
        self.anchors = nn.Parameter(torch.randn(n_users, n_anchors, user_dim) / user_dim**0.5)
        self.project = nn.Linear(dim, user_dim)
        self.pool, self.pool_temperature = pool, float(pool_temperature)

    def forward(self, users: Tensor, z: Tensor) -> Tensor:
        wz = F.normalize(self.project(z), dim=-1)  # [B, d]
        if self.pool == "lse":
            cos = (wz.unsqueeze(1) * F.normalize(self.anchors[users], dim=-1)).sum(-1)  # [B, K]
            k, tau = cos.shape[-1], self.pool_temperature
            return k * tau * (torch.logsumexp(cos / tau, dim=-1) - math.log(k))
        # sum_k cos(wz, a_k) = <wz, sum_k a_k / |a_k|>: sum each distinct user's unit anchors once
        # (a batch of 1 + K candidates repeats every user), then one dot product per outfit.
        if torch.onnx.is_in_onnx_export():  # plain gather: no Unique op in the exported graph
            return (wz * F.normalize(self.anchors[users], dim=-1).sum(dim=1)).sum(dim=-1)
        unique, inverse = torch.unique(users, return_inverse=True)
        centre = F.normalize(self.anchors[unique], dim=-1).sum(dim=1)  # [U, d]
        return (wz * centre[inverse]).sum(dim=-1)

    def regularizer(self, users: Tensor | None = None) -> Tensor:
        """Mean over users (all, or the given ones) of tr(G) - log det(G + eps I), G = A A^T [K, K]."""
        anchors = self.anchors if users is None else self.anchors[torch.unique(users)]
        return gram_logdet_penalty(anchors)


def gram_logdet_penalty(anchors: Tensor, eps: float = GRAM_EPS) -> Tensor:
    """tr(G) - log det(G + eps I) averaged over the leading dimension; anchors [U, K, d]."""
    gram = anchors @ anchors.transpose(-1, -2)  # [U, K, K], positive semi-definite
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    # Cholesky of a matrix made positive definite by eps I: log det = 2 sum log diag(L), stable.
    chol, info = torch.linalg.cholesky_ex(gram + eps * eye)
    if bool((info != 0).any()):  # only when float round-off breaks positive definiteness
        logdet = torch.linalg.slogdet(gram + eps * eye).logabsdet
    else:
        logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(dim=-1)
    trace = torch.diagonal(gram, dim1=-2, dim2=-1).sum(dim=-1)
    return (trace - logdet).mean()


class DotScorer(nn.Module):
    """score(u, z) = <e_u, z>: a single embedding per user; with user_dim (ours, issue 14) <e_u, W z>.

    z [B, dim]; W: dim -> user_dim without bias (a bias would add a per-user constant, which no ranking of one
    user's outfits sees); e_u [user_dim]. W z is user-independent, so a served user is user_dim numbers.
    """

    def __init__(self, n_users: int, dim: int, user_dim: int | None = None) -> None:
        super().__init__()
        width = user_dim or dim
        self.project = nn.Linear(dim, width, bias=False) if width != dim else None
        self.users = nn.Embedding(n_users, width)
        nn.init.normal_(self.users.weight, std=width**-0.5)

    def forward(self, users: Tensor, z: Tensor) -> Tensor:
        if self.project is not None:
            z = self.project(z)
        return (self.users(users) * z).sum(dim=-1)

    def regularizer(self, users: Tensor | None = None) -> Tensor:
        """No anchors, nothing to spread: zero (kept so the loop treats both scorers alike)."""
        return self.users.weight.new_zeros(())
