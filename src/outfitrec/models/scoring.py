"""Encoding each distinct item once, and the numpy faces of a model: the one place for both.

- `item_grids` is the grouping every scorer relies on: the outfits of several
  (items, mask) groups share ONE pass of their distinct real items through the
  item encoder (the expensive CNN), then each group gets its [N, S, d] grid of
  item embeddings back (zeros in padded slots). The model's own
  `outfit_embeddings` and the training step (`outfit_embeddings_of`: a batch
  and its augmented views) both go through it.
- `CachedScorer`: a numpy `ScoreFn` (users, items, mask) -> scores [n] for the
  evaluation protocol, the teacher's thresholds and hybrids; item embeddings
  are computed once per item and cached across calls.
- `TorchScorer`: the numpy `OutfitScorer` of the recommender's search
  (encode_items / encode_outfits / score_embeddings on arrays).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from outfitrec.data.outfits import PAD


def item_grids(
    encode_items: Callable[[Tensor], Tensor],
    groups: Sequence[tuple[Tensor, Tensor]],
    item_table: Tensor | None = None,
) -> list[Tensor]:
    """Item embeddings [N, S, d] of each (items [N, S], mask [N, S]) group, every distinct real item encoded once.

    Padded slots (mask False) get zeros and are never encoded; with `item_table` ([n_items, d], e.g. from
    `OutfitModel.encode_all_items`) the embeddings are read from it instead of encoded.
    """
    masks = [mask.bool() for _, mask in groups]
    real = torch.cat([items[mask] for (items, _), mask in zip(groups, masks)])
    if item_table is not None:
        flat = item_table[real]
    else:
        unique, inverse = torch.unique(real, return_inverse=True)
        flat = encode_items(unique)[inverse]
    out, start = [], 0
    for (items, _), mask in zip(groups, masks):
        n = int(mask.sum())
        grid = flat.new_zeros((*items.shape, flat.shape[-1]))
        grid[mask] = flat[start : start + n]
        start += n
        out.append(grid)
    return out


def outfit_embeddings_of(model: nn.Module, groups: Sequence[tuple[Tensor, Tensor]]) -> list[Tensor]:
    """Outfit embeddings z [N, d] of each (items [N, S], mask [N, S]) group, each distinct item encoded once."""
    grids = item_grids(model.encode_items, groups)
    return [model.encode_outfits(grid, mask.bool()) for grid, (_, mask) in zip(grids, groups)]


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


class CachedScorer:
    """A `ScoreFn` for an OutfitModel that encodes each distinct item once.

    item_ids: the items the evaluation will touch (encoded up front, in
    batches); items met later are encoded on first use and cached too. The
    model is put in eval mode and scored without gradients.
    """

    def __init__(self, model, item_ids: np.ndarray | None = None, batch_size: int = 512) -> None:
        self.model = model
        self.batch_size = int(batch_size)
        self.device = model_device(model)
        self.ids = np.zeros(0, dtype=np.int64)
        self.emb: torch.Tensor | None = None
        if item_ids is not None:
            self.add_items(item_ids)

    @torch.no_grad()
    def add_items(self, item_ids: np.ndarray) -> None:
        """Encode (once) the given items that are not cached yet."""
        ids = np.unique(np.asarray(item_ids, dtype=np.int64))
        ids = ids[ids != PAD]
        new = np.setdiff1d(ids, self.ids, assume_unique=True)
        if len(new) == 0:
            return
        self.model.eval()
        chunks = []
        for start in range(0, len(new), self.batch_size * 4):
            part = torch.as_tensor(new[start : start + self.batch_size * 4], device=self.device)
            chunks.append(self.model.encode_items(part))
        new_emb = torch.cat(chunks)
        merged = np.concatenate([self.ids, new])
        order = np.argsort(merged, kind="stable")
        emb = new_emb if self.emb is None else torch.cat([self.emb, new_emb])
        self.ids, self.emb = merged[order], emb[torch.as_tensor(order, device=emb.device)]

    @torch.no_grad()
    def __call__(self, users: np.ndarray, items: np.ndarray, mask: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        mask = np.asarray(mask, dtype=bool)
        self.add_items(items[mask])
        self.model.eval()
        out = np.empty(len(users), dtype=np.float64)
        for start in range(0, len(users), self.batch_size):
            sl = slice(start, start + self.batch_size)
            m = mask[sl]
            rows = np.searchsorted(self.ids, np.where(m, items[sl], self.ids[0]))
            emb = self.emb[torch.as_tensor(rows, device=self.device)]
            m_t = torch.as_tensor(m, device=self.device)
            z = self.model.encode_outfits(emb, m_t)
            s = self.model.score_embeddings(torch.as_tensor(users[sl], device=self.device), z)
            out[sl] = s.double().cpu().numpy()
        return out


class TorchScorer:
    """`OutfitScorer` (models/search.py) over a PyTorch `OutfitModel`: numpy in and out, eval mode, no autograd."""

    def __init__(self, model) -> None:
        self.model = model.eval()

    def encode_items(self, item_ids: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = self.model.encode_items(torch.as_tensor(np.asarray(item_ids), dtype=torch.long))
        return out.float().numpy()

    def encode_outfits(self, item_emb: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            z = self.model.encode_outfits(
                torch.from_numpy(np.ascontiguousarray(item_emb, np.float32)),
                torch.from_numpy(np.ascontiguousarray(mask, bool)),
            )
        return z.float().numpy()

    def score_embeddings(self, users: np.ndarray, z: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            s = self.model.score_embeddings(
                torch.as_tensor(np.asarray(users), dtype=torch.long),
                torch.from_numpy(np.ascontiguousarray(z, np.float32)),
            )
        return s.float().numpy()
