"""Erase / replace augmentations: hypothesis invariants, determinism, uniformity, pool forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from outfitrec.data.augment import CategoryPools, as_category_pools, erase_one, replace_one
from outfitrec.data.negatives import category_pools
from outfitrec.data.outfits import PAD, DataError


def make_batch(seed: int, b: int, s: int, n_cat: int, per_cat: int, contiguous: bool):
    """Random padded outfits over a catalogue where item i has category i // per_cat (some pools of size 1)."""
    rng = np.random.default_rng(seed)
    item_category = np.repeat(np.arange(n_cat), per_cat)
    sizes = rng.integers(0, s + 1, size=b)
    mask = np.zeros((b, s), dtype=bool)
    for r, n in enumerate(sizes):
        cols = np.arange(n) if contiguous else rng.choice(s, size=n, replace=False)
        mask[r, cols] = True
    items = np.where(mask, rng.integers(0, n_cat * per_cat, size=(b, s)), PAD)
    cats = np.where(mask, item_category[np.where(mask, items, 0)], PAD)
    return torch.from_numpy(items), torch.from_numpy(mask), torch.from_numpy(cats), item_category


batches = st.builds(
    make_batch,
    seed=st.integers(0, 2**31 - 1),
    b=st.integers(1, 8),
    s=st.integers(1, 5),
    n_cat=st.integers(1, 4),
    per_cat=st.integers(1, 4),
    contiguous=st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(batch=batches, gseed=st.integers(0, 2**31 - 1))
def test_erase_invariants(batch, gseed):
    items, mask, _, _ = batch
    before_items, before_mask = items.clone(), mask.clone()
    new_items, new_mask = erase_one(items, mask, torch.Generator().manual_seed(gseed))
    assert torch.equal(items, before_items) and torch.equal(mask, before_mask)  # inputs untouched
    n_old, n_new = mask.sum(1), new_mask.sum(1)
    # exactly one item fewer, unless the outfit has a single item (or none)
    assert torch.equal(n_new, torch.where(n_old >= 2, n_old - 1, n_old))
    assert not (new_mask & ~mask).any()  # only real slots can be erased
    assert (new_items[~mask] == PAD).all()  # padded slots untouched
    assert torch.equal(new_items[new_mask], items[new_mask])  # surviving items unchanged
    assert (new_items[mask & ~new_mask] == PAD).all()  # erased slot follows the PAD convention


@settings(max_examples=60, deadline=None)
@given(batch=batches, gseed=st.integers(0, 2**31 - 1), form=st.sampled_from(["dict", "padded", "pools"]))
def test_replace_invariants(batch, gseed, form):
    items, mask, cats, item_category = batch
    np_pools = {int(c): np.flatnonzero(item_category == c) for c in np.unique(item_category)}
    if form == "dict":
        pools = np_pools
    elif form == "pools":
        pools = CategoryPools.from_dict(np_pools)
    else:
        width = max(len(v) for v in np_pools.values())
        pools = torch.full((len(np_pools), width), PAD, dtype=torch.long)
        for c, v in np_pools.items():
            pools[c, : len(v)] = torch.from_numpy(v)
    before = items.clone()
    new_items, new_mask = replace_one(items, mask, cats, pools, torch.Generator().manual_seed(gseed))
    assert torch.equal(items, before) and torch.equal(new_mask, mask)
    changed = new_items != items
    assert not (changed & ~mask).any()  # padded slots untouched
    assert (changed.sum(1) <= 1).all()  # one item at most
    # the new item is of the slot's category: categories are preserved
    real_new = new_items[mask]
    assert torch.equal(torch.from_numpy(item_category)[real_new], cats[mask])
    # exactly one change when every real item's category has another item to swap in; none when no real item
    pool_size = torch.from_numpy(np.bincount(item_category))
    swappable = torch.where(mask, pool_size[cats.clamp(min=0)] > 1, True).all(1) & mask.any(1)
    assert (changed.sum(1)[swappable] == 1).all()
    assert (changed.sum(1)[~mask.any(1)] == 0).all()


def test_deterministic_given_generator():
    items, mask, cats, item_category = make_batch(7, 32, 4, 3, 5, contiguous=False)
    pools = category_pools(np.arange(len(item_category)), item_category)
    for fn in (
        lambda g: erase_one(items, mask, g),
        lambda g: replace_one(items, mask, cats, pools, g),
    ):
        a = fn(torch.Generator().manual_seed(11))
        b = fn(torch.Generator().manual_seed(11))
        c = fn(torch.Generator().manual_seed(12))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert not torch.equal(a[0], c[0])


def test_slot_and_item_choice_are_uniform():
    # one outfit of 3 real items (slots 0, 2, 3; slot 1 padded), repeated 3000 times in one batch
    n = 3000
    items = torch.tensor([[0, PAD, 5, 9]]).repeat(n, 1)
    mask = items != PAD
    cats = torch.tensor([[0, PAD, 1, 2]]).repeat(n, 1)
    _, new_mask = erase_one(items, mask, torch.Generator().manual_seed(0))
    erased = (mask & ~new_mask).sum(0)
    assert erased[1] == 0 and erased.sum() == n
    assert all(abs(int(x) - n / 3) < 150 for x in erased[[0, 2, 3]])  # ~8 standard deviations
    # replace: pool of category 1 is {4, 5, 6, 7}; the current item 5 is never drawn, the other three uniformly
    pools = {0: np.array([0, 1]), 1: np.array([4, 5, 6, 7]), 2: np.array([8, 9, 10])}
    new_items, _ = replace_one(items, mask, cats, pools, torch.Generator().manual_seed(1))
    col2 = new_items[:, 2][new_items[:, 2] != 5]
    counts = torch.bincount(col2, minlength=8)[[4, 6, 7]]
    assert counts.sum() == len(col2) and abs(len(col2) - n / 3) < 150
    assert all(abs(int(x) - len(col2) / 3) < 100 for x in counts)
    assert set(new_items[:, 0].tolist()) <= {0, 1} and set(new_items[:, 3].tolist()) <= {8, 9, 10}


def test_erase_never_removes_the_last_item():
    items = torch.tensor([[3, PAD], [PAD, 4], [PAD, PAD]])
    mask = items != PAD
    new_items, new_mask = erase_one(items, mask, torch.Generator().manual_seed(0))
    assert torch.equal(new_items, items) and torch.equal(new_mask, mask)


def test_replace_single_item_pool_and_item_outside_pool():
    # category 0 holds only item 2: nothing else to swap in -> unchanged
    items = torch.tensor([[2]])
    same = replace_one(items, items != PAD, torch.tensor([[0]]), {0: np.array([2])}, torch.Generator().manual_seed(0))
    assert torch.equal(same[0], items)
    # an item absent from its category's pool (e.g. a test item) is replaced by any pool item
    items = torch.tensor([[50]])
    new, _ = replace_one(items, items != PAD, torch.tensor([[1]]), {1: np.array([3])}, torch.Generator())
    assert new.tolist() == [[3]]


def test_replace_missing_category_raises_data_error():
    items = torch.tensor([[0, 1]])
    with pytest.raises(DataError, match="category 2"):
        replace_one(
            items, items != PAD, torch.tensor([[0, 2]]), {0: np.array([0, 5])}, torch.Generator().manual_seed(3)
        )


def test_pools_from_category_pools_output():
    item_category = np.array([1, 0, 1, 2, 0])
    pools = as_category_pools(category_pools(np.array([4, 0, 1, 2, 3, PAD]), item_category))
    assert pools.flat.tolist() == [1, 4, 0, 2, 3] and pools.offsets.tolist() == [0, 2, 4, 5]
    assert pools.pool(1).tolist() == [0, 2] and pools.sizes.tolist() == [2, 2, 1]
    padded = torch.tensor([[4, 1, PAD], [2, 0, PAD], [3, PAD, PAD]])
    again = as_category_pools(padded)
    assert torch.equal(again.flat, pools.flat) and torch.equal(again.offsets, pools.offsets)
    with pytest.raises(DataError, match="key -1"):
        CategoryPools.from_dict({-1: np.array([1])})
