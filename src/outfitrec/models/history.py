"""A collaborative user representation from the user's own items (FISM / PureSVD style), beside the anchors.

`ModelConfig.user_history = "mean"` gives the model a collaborative channel of
width c (`HistoryScorer.dim`): each item's raw id vector e_i (encoder 'id';
zero for an item unseen in training) is mapped by a linear R to c numbers that
bypass the item head and the Set Transformer; the outfit's channel is their
mean over its real items, zc(o) = mean_{i in o} R e_i, and occupies the last c
entries of the outfit embedding z (so z stays [B, d] and every
`score_embeddings(users, z)` caller gets the same scores as `forward`). A
user is the mean of the channel over the items of their training outfits and
extra history, h_u = mean_{j in H_u} R e_j, recomputed from the id table at
every call: no free parameters per user, so a user is served from their items
alone. The history term is gain * <zc(o), h_u>; the model's score adds it to
the anchors' score. With the id table initialised from the right singular
vectors of the user x item matrix (`id_init="svd"`) and R selecting the top c
components, the term ranks each user's outfits like PureSVD of rank c before
any training.

`history` (the users' item ids, -1 padded, [n_users, H]) is a persistent buffer:
it is saved in the checkpoint with the weights.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


class HistoryScorer(nn.Module):
    """gain * <zc, h_u>, h_u = mean of R e_j over user u's history items (see the module docstring)."""

    def __init__(self, n_users: int, id_width: int, dim: int, history_size: int) -> None:
        super().__init__()
        self.dim = dim
        self.project = nn.Linear(id_width, dim, bias=False)
        with torch.no_grad():  # R starts as the selection of the first `dim` id coordinates
            self.project.weight.zero_()
            self.project.weight[:, :dim].copy_(torch.eye(dim))
        self.gain = nn.Parameter(torch.ones(()))
        self.register_buffer("history", torch.full((n_users, history_size), -1, dtype=torch.long))

    def set_history(self, users: np.ndarray, items: np.ndarray, seed: int = 0) -> None:
        """Fill the buffer from (user, item) pairs: each user's distinct items, a seeded subset when over H."""
        users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
        n_users, size = self.history.shape
        table = np.full((n_users, size), -1, dtype=np.int64)
        pairs = np.unique(users * (int(items.max(initial=0)) + 1) + items) if len(items) else np.zeros(0, np.int64)
        width = int(items.max(initial=0)) + 1
        pu, pi = pairs // width, pairs % width
        rng = np.random.default_rng(seed)
        starts = np.searchsorted(pu, np.arange(n_users + 1))
        for u in range(n_users):
            own = pi[starts[u] : starts[u + 1]]
            if len(own) > size:
                own = np.sort(rng.choice(own, size, replace=False))
            table[u, : len(own)] = own
        self.history.copy_(torch.from_numpy(table))

    def user_vectors(self, users: Tensor, id_vectors) -> Tensor:
        """h_u [U, c] of the given users: mean of R e_j over their history (zeros for an empty history)."""
        ids = self.history[users]  # [U, H]
        valid = (ids >= 0).to(self.project.weight.dtype)
        vec = self.project(id_vectors(ids.clamp(min=0)))  # [U, H, c]
        return (vec * valid.unsqueeze(-1)).sum(1) / valid.sum(1, keepdim=True).clamp_min(1.0)

    def forward(self, users: Tensor, zc: Tensor, id_vectors) -> Tensor:
        """users [B], outfit channels zc [B, c] -> history scores [B]."""
        if torch.onnx.is_in_onnx_export():  # plain gather: no Unique op in the exported graph
            return self.gain * (zc * self.user_vectors(users, id_vectors)).sum(-1)
        unique, inverse = torch.unique(users, return_inverse=True)  # a batch of 1 + K candidates repeats users
        h = self.user_vectors(unique, id_vectors)
        return self.gain * (zc * h[inverse]).sum(-1)
