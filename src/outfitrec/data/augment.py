"""Outfit augmentations for contrastive learning (method.md §4): erase and replace.

Both work on padded torch batches (``items`` / ``categories`` int64 [B, S]
with ``PAD`` where ``mask`` is False), are vectorised over the batch (no
Python loop over rows) and draw a fixed number of random numbers per row from
the given ``torch.Generator``, so a batch's augmentation depends only on the
generator's state and the batch, never on the content of other rows.

- :func:`erase_one` masks one random real item of each outfit; an outfit with
  a single real item is left unchanged (an empty outfit has no embedding).
- :func:`replace_one` swaps one random real item for a random item of the
  same category, different from the current one whenever the category's pool
  holds another item.

This is the one module of ``data`` allowed to import torch; it never imports
models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from outfitrec.data.outfits import PAD, DataError

__all__ = ["CategoryPools", "as_category_pools", "erase_one", "replace_one"]


@dataclass(frozen=True)
class CategoryPools:
    """Items of each category, packed for vectorised sampling.

    flat: int64 [N], the items sorted by (category, item id); category c owns
    flat[offsets[c]:offsets[c + 1]] (empty when c has no items).
    offsets: int64 [C + 1]. key_base: an integer larger than every item id, so
    that category * key_base + item is increasing along ``flat`` and an item's
    position in its pool is one ``searchsorted``.
    """

    flat: Tensor
    offsets: Tensor
    key_base: int

    @property
    def n_categories(self) -> int:
        return int(self.offsets.numel()) - 1

    @property
    def sizes(self) -> Tensor:
        """int64 [C]: number of items of each category."""
        return self.offsets[1:] - self.offsets[:-1]

    @property
    def keys(self) -> Tensor:
        cats = torch.repeat_interleave(torch.arange(self.n_categories, device=self.flat.device), self.sizes)
        return cats * self.key_base + self.flat

    def to(self, device: torch.device | str) -> CategoryPools:
        return CategoryPools(self.flat.to(device), self.offsets.to(device), self.key_base)

    def pool(self, category: int) -> Tensor:
        """The (sorted) items of one category."""
        return self.flat[int(self.offsets[category]) : int(self.offsets[category + 1])]

    @classmethod
    def from_dict(cls, pools: Mapping[int, np.ndarray | Tensor | list[int]]) -> CategoryPools:
        """From {category id: item ids}, e.g. ``outfitrec.data.negatives.category_pools`` output (numpy).

        Duplicates and PAD entries are dropped; category ids must be >= 0 and
        item ids >= 0.
        """
        per_cat: dict[int, np.ndarray] = {}
        for cat, ids in pools.items():
            if int(cat) < 0:
                raise DataError(f"category pools: key {cat}: category ids must be >= 0")
            arr = ids.detach().cpu().numpy() if isinstance(ids, Tensor) else np.asarray(ids)
            arr = np.unique(arr.astype(np.int64).ravel())
            arr = arr[arr != PAD]
            if (arr < 0).any():
                raise DataError(f"category pools: key {cat}: item ids must be >= 0, got {int(arr.min())}")
            per_cat[int(cat)] = arr
        n_cat = max(per_cat, default=-1) + 1
        sizes = np.zeros(n_cat, dtype=np.int64)
        for cat, arr in per_cat.items():
            sizes[cat] = len(arr)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        flat = np.concatenate([per_cat.get(c, np.zeros(0, np.int64)) for c in range(n_cat)] or [np.zeros(0, np.int64)])
        key_base = int(flat.max()) + 1 if len(flat) else 1
        return cls(torch.from_numpy(flat.astype(np.int64)), torch.from_numpy(offsets), key_base)

    @classmethod
    def from_padded(cls, table: Tensor) -> CategoryPools:
        """From a padded table [C, P]: row c lists category c's items, PAD (-1) fills the rest."""
        if table.ndim != 2:
            raise DataError(f"category pools: padded table must be [C, P], got shape {tuple(table.shape)}")
        rows = table.detach().cpu().numpy()
        pools = CategoryPools.from_dict({c: rows[c][rows[c] != PAD] for c in range(rows.shape[0])})
        return pools.to(table.device)


def as_category_pools(pools: CategoryPools | Mapping[int, np.ndarray | Tensor] | Tensor) -> CategoryPools:
    """Normalise any accepted pool form (CategoryPools, {cat: ids} dict, padded [C, P] tensor)."""
    if isinstance(pools, CategoryPools):
        return pools
    if isinstance(pools, Tensor):
        return CategoryPools.from_padded(pools)
    if isinstance(pools, Mapping):
        return CategoryPools.from_dict(pools)
    raise TypeError(f"pools must be CategoryPools, a dict or a padded tensor, got {type(pools).__name__}")


def _check_batch(items: Tensor, mask: Tensor) -> None:
    if items.ndim != 2 or mask.shape != items.shape:
        raise ValueError(f"items and mask must both be [B, S], got {tuple(items.shape)} and {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be bool, got {mask.dtype}")


def _random_real_slot(mask: Tensor, u: Tensor) -> Tensor:
    """Column index of a uniformly chosen real slot per row (given uniforms u [B]); rows with none get 0."""
    n_real = mask.sum(dim=1)
    rank = (u * n_real).floor().to(torch.long).clamp(max=(n_real - 1).clamp(min=0))
    hit = mask & (torch.cumsum(mask.to(torch.long), dim=1) - 1 == rank[:, None])
    return hit.to(torch.long).argmax(dim=1)


def erase_one(items: Tensor, mask: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Mask out one uniformly chosen real item of every outfit with at least two real items.

    Returns new (items, mask); the erased slot becomes PAD / False. Outfits
    with fewer than two real items are returned unchanged: erasing the last
    item would leave nothing to embed. Inputs are not modified.
    """
    _check_batch(items, mask)
    u = torch.rand(items.shape[0], generator=generator, device=items.device)
    slot = _random_real_slot(mask, u)
    rows = torch.arange(items.shape[0], device=items.device)
    erasable = mask.sum(dim=1) >= 2
    new_mask = mask.clone()
    new_items = items.clone()
    new_mask[rows, slot] = mask[rows, slot] & ~erasable
    new_items[rows, slot] = torch.where(erasable, torch.full_like(slot, PAD), items[rows, slot])
    return new_items, new_mask


def replace_one(
    items: Tensor,
    mask: Tensor,
    categories: Tensor,
    pools: CategoryPools | Mapping[int, np.ndarray | Tensor] | Tensor,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Swap one uniformly chosen real item of every outfit for a random item of the same category.

    The new item is uniform over the category's pool minus the current item
    (so it differs whenever the pool holds another item; a pool of only the
    current item leaves the outfit unchanged). Categories are preserved by
    construction. Returns new (items, mask) with the mask unchanged, the same
    shape as :func:`erase_one`. Outfits without real items are unchanged.
    Raises DataError when a chosen item's category has no items in the pool.
    """
    _check_batch(items, mask)
    if categories.shape != items.shape:
        raise ValueError(f"categories must have the items' shape {tuple(items.shape)}, got {tuple(categories.shape)}")
    cp = as_category_pools(pools).to(items.device)
    b = items.shape[0]
    u_slot = torch.rand(b, generator=generator, device=items.device)
    u_item = torch.rand(b, generator=generator, device=items.device)
    has_real = mask.any(dim=1)
    slot = _random_real_slot(mask, u_slot)
    rows = torch.arange(b, device=items.device)
    cur = items[rows, slot]
    cat = torch.where(has_real, categories[rows, slot], torch.zeros_like(cur))

    if not bool(has_real.any()):
        return items.clone(), mask.clone()

    # Every real slot's category must have items, whichever slot the draw picks: an error must not depend on luck.
    all_in_range = (categories >= 0) & (categories < cp.n_categories)
    all_c = categories.clamp(0, max(cp.n_categories - 1, 0))
    all_size = torch.where(all_in_range, cp.sizes[all_c], 0) if cp.n_categories else torch.zeros_like(categories)
    bad = mask & (all_size == 0)
    if bool(bad.any()):
        r, c = (int(x) for x in bad.nonzero()[0])
        raise DataError(
            f"replace_one: row {r}, slot {c}: category {int(categories[r, c])} of item {int(items[r, c])} "
            "has no items in the pools"
        )
    cat_c = cat.clamp(0, max(cp.n_categories - 1, 0))
    size = cp.sizes[cat_c]
    # From here every row with a real item has a non-empty pool, so flat is non-empty.
    start = cp.offsets[cat_c]

    # Position of the current item within its pool, if it is there at all.
    keys = cp.keys
    key = cat_c * cp.key_base + cur
    at = torch.searchsorted(keys, key).clamp(max=keys.numel() - 1)
    found = has_real & (cur >= 0) & (cur < cp.key_base) & (keys[at] == key)  # ids beyond key_base are in no pool
    pos_in_pool = at - start

    # Uniform among the pool minus the current item: n - 1 choices, stepping over its position.
    n_choices = torch.where(found, size - 1, size)
    j = torch.minimum((u_item * n_choices).floor().to(torch.long), (n_choices - 1).clamp(min=0))
    j = torch.where(found & (j >= pos_in_pool), j + 1, j)
    drawn = cp.flat[(start + j).clamp(max=cp.flat.numel() - 1)]
    change = has_real & (n_choices > 0)
    new_items = items.clone()
    new_items[rows, slot] = torch.where(change, drawn, cur)
    return new_items, mask.clone()
