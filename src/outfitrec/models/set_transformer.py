"""Set Transformer outfit encoder (Lee et al. 2019): 2 SAB blocks, then PMA with one seed.

An outfit is a set of item embeddings with a boolean mask (True = real item).
Masked slots are never used as attention keys, so they cannot change the
embedding of a real slot nor the pooled outfit embedding: a padded slot, or
whatever garbage sits in it, leaves the score unchanged. Attention runs through
`torch.nn.functional.scaled_dot_product_attention` (fused; equal to the plain
matmuls within 1e-5, tests/test_fast_recommend.py); an ONNX export, and a query
whose set has no real key, take the plain matmuls, which mask the same way.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MultiHeadAttention(nn.Module):
    """Multi-head attention of `query` [B, Q, d] over `keys` [B, S, d] where `key_mask` [B, S] is True."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"model dim {dim} is not divisible by the number of heads {heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_dim).transpose(1, 2)  # [B, h, n, dh]

    def forward(self, query: Tensor, keys: Tensor, key_mask: Tensor, fused: bool = True) -> Tensor:
        q, k, v = self._split(self.q(query)), self._split(self.k(keys)), self._split(self.v(keys))
        if fused and not torch.onnx.is_in_onnx_export():
            # SetTransformer guarantees a real key per set (a row without one would be NaN here).
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=key_mask[:, None, None, :], dropout_p=self.dropout.p if self.training else 0.0
            )
            return self.out(out.transpose(1, 2).reshape(query.shape[0], query.shape[1], -1))
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # [B, h, Q, S]
        # finfo.min rather than -inf: exp() of it is exactly 0 against any real key, and a
        # row without real keys (never produced by OutfitModel) stays finite instead of NaN.
        logits = logits.masked_fill(~key_mask[:, None, None, :], torch.finfo(logits.dtype).min)
        weights = self.dropout(torch.softmax(logits, dim=-1))
        out = (weights @ v).transpose(1, 2).reshape(query.shape[0], query.shape[1], -1)
        return self.out(out)


class MAB(nn.Module):
    """Multihead attention block: H = LN(X + MHA(X, Y)); out = LN(H + ReLU(Linear(H)))."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(dim, heads, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.feed_forward = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, y: Tensor, y_mask: Tensor) -> Tensor:
        h = self.norm1(x + self.dropout(self.attention(x, y, y_mask)))
        return self.norm2(h + self.dropout(torch.relu(self.feed_forward(h))))


class SAB(nn.Module):
    """Set attention block: every real slot attends to the real slots of its own set."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.mab = MAB(dim, heads, dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.mab(x, x, mask)


class PMA(nn.Module):
    """Pooling by multihead attention with `seeds` learned query vectors (one here: the outfit embedding)."""

    def __init__(self, dim: int, heads: int, seeds: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.seed = nn.Parameter(torch.empty(1, seeds, dim))
        nn.init.xavier_uniform_(self.seed)
        self.mab = MAB(dim, heads, dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.mab(self.seed.expand(x.shape[0], -1, -1), x, mask)


class SetTransformer(nn.Module):
    """Item embeddings [B, S, d] + mask [B, S] -> outfit embedding z [B, d] (2 SAB + PMA, one seed)."""

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.0, blocks: int = 2) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(SAB(dim, heads, dropout) for _ in range(blocks))
        self.pool = PMA(dim, heads, seeds=1, dropout=dropout)

    def forward(self, items: Tensor, mask: Tensor) -> Tensor:
        mask = mask.bool()
        # An outfit with no real item has nothing to attend to: let it see its (zeroed) first
        # slot so the result is finite; real outfits are unaffected. Avoids a host sync.
        empty = ~mask.any(dim=1, keepdim=True)
        first = torch.zeros_like(mask)
        first[:, 0] = True
        mask = mask | (empty & first)
        x = items
        for block in self.blocks:
            x = block(x, mask)
        return self.pool(x, mask).squeeze(1)
