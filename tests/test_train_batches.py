"""Per-epoch training examples: seeded by (seed, epoch), type-aware, hard share, teacher pool, step pool."""

from __future__ import annotations

import numpy as np

from outfitrec.train.batches import EpochSampler


def _sampler(ds, **kw) -> EpochSampler:
    train = ds.split("train")
    args = {"k": 4, "batch_size": 16, "seed": 3}
    args.update(kw)
    return EpochSampler(train, ds.catalogue.item_category, **args)


def _stack(batches, attr):
    return np.concatenate([getattr(b, attr) for b in batches])


def test_an_epoch_is_a_pure_function_of_seed_and_epoch(tiny_dataset):
    a, b = _sampler(tiny_dataset), _sampler(tiny_dataset)
    e2_first = list(a.epoch(2))
    list(b.epoch(0)), list(b.epoch(1))  # drawing other epochs first changes nothing
    e2_second = list(b.epoch(2))
    assert np.array_equal(_stack(e2_first, "items"), _stack(e2_second, "items"))
    e3 = list(a.epoch(3))
    assert not np.array_equal(_stack(e2_first, "items"), _stack(e3, "items"))  # re-drawn every epoch
    other_seed = list(_sampler(tiny_dataset, seed=4).epoch(2))
    assert not np.array_equal(_stack(e2_first, "items"), _stack(other_seed, "items"))


def test_each_positive_once_with_k_type_aware_negatives(tiny_dataset):
    sampler = _sampler(tiny_dataset)
    train = tiny_dataset.split("train")
    batches = list(sampler.epoch(0))
    assert len(batches) == sampler.n_batches
    index = _stack(batches, "index")
    assert sorted(index.tolist()) == list(range(len(train)))
    positives = set(train.item_sets())
    cat = tiny_dataset.catalogue.item_category
    for batch in batches:
        assert batch.items.shape[1:] == (1 + 4, train.max_size) and batch.n_rec == 5
        assert np.array_equal(batch.items[:, 0], train.items[batch.index])
        neg = batch.items[:, 1:][batch.mask[:, 1:]]
        assert np.array_equal(cat[neg], batch.categories[:, 1:][batch.mask[:, 1:]])  # same category per slot
        assert np.array_equal(batch.categories[:, 1:], np.repeat(batch.categories[:, :1], 4, axis=1))
        for row, m in zip(batch.items[:, 1:].reshape(-1, train.max_size), batch.mask[:, 1:].reshape(-1, 3)):
            assert frozenset(row[m].tolist()) not in positives


def test_hard_share_gives_other_users_positives(tiny_dataset):
    train = tiny_dataset.split("train")
    by_set = {}
    for u, s in zip(train.users, train.item_sets()):
        by_set.setdefault(s, set()).add(int(u))
    sampler = _sampler(tiny_dataset, hard_share=0.5)
    assert sampler.k_hard == 2 and sampler.k_random == 2
    for batch in sampler.epoch(0):
        for user, rows, masks in zip(batch.users, batch.items[:, 3:], batch.mask[:, 3:]):
            for row, m in zip(rows, masks):
                owners = by_set[frozenset(row[m].tolist())]
                assert owners - {int(user)}, "a hard negative is a positive outfit of another user"


def test_teacher_pool_adds_columns_without_changing_the_k(tiny_dataset):
    plain = list(_sampler(tiny_dataset).epoch(1))
    pooled = list(_sampler(tiny_dataset, pool_size=9).epoch(1))
    for a, b in zip(plain, pooled):
        assert b.items.shape[1] == 10 and b.n_rec == 5
        assert np.array_equal(a.items, b.items[:, :5])


def test_step_pool_bounds_the_distinct_items_of_a_step(tiny_dataset):
    full = list(_sampler(tiny_dataset, k=10, seed=0).epoch(0))
    bounded = list(_sampler(tiny_dataset, k=10, seed=0, step_pool=2).epoch(0))
    for b in bounded:
        negatives = b.items[:, 1:][b.mask[:, 1:]]
        cats = b.categories[:, 1:][b.mask[:, 1:]]
        for c in np.unique(cats):
            assert len(np.unique(negatives[cats == c])) <= 2  # 2 drawn items per category at most
    assert np.mean([len(np.unique(b.items[b.mask])) for b in bounded]) < np.mean(
        [len(np.unique(a.items[a.mask])) for a in full]
    )
