"""loss.own_top: the student's own current top outfits as candidates of the distillation term (issue 15)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_tiny_model, tiny_config

from outfitrec.data.outfits import PAD
from outfitrec.models.scoring import TorchScorer
from outfitrec.models.search import Searcher, SearchIndex, SearchParams, templates_from_dataset
from outfitrec.train.batches import EpochSampler
from outfitrec.train.loop import Trainer, train
from outfitrec.train.own_top import own_top_outfits, training_exclusions
from outfitrec.train.run import RunDir


def _pools(ds):
    train = ds.split("train")
    cats = ds.catalogue.item_category
    seen = np.unique(train.items[train.mask])
    return {int(c): seen[cats[seen] == c] for c in np.unique(cats[seen])}


def test_own_top_outfits_are_the_models_best_over_the_training_items(tiny_dataset):
    ds = tiny_dataset
    train = ds.split("train")
    model = make_tiny_model(ds, steps=20)
    templates = templates_from_dataset(ds.catalogue.category_names, ds.meta, train)
    exclude = training_exclusions(train, ds.n_users)
    pools = _pools(ds)
    params = SearchParams(beam_width=64, shortlist=64, refine_rounds=0)
    rows = own_top_outfits(model, ds.catalogue.item_category, pools, templates, exclude, 5, train.max_size, params)
    assert rows.shape == (ds.n_users, 5, train.max_size) and rows.dtype == np.int64
    allowed = np.concatenate(list(pools.values()))
    # against exhaustive enumeration over the same items (a small catalogue)
    scorer = TorchScorer(model)
    index = SearchIndex.build(scorer, scorer.encode_items(np.arange(ds.catalogue.n_items)), ds.catalogue.item_category)
    index.pools = pools
    exact = Searcher(scorer, index)
    for u in range(min(ds.n_users, 4)):
        got = [frozenset(r[r != PAD].tolist()) for r in rows[u]]
        assert not set(got) & exclude[u], "a user's training outfit is never mined"
        assert np.isin(rows[u][rows[u] != PAD], allowed).all(), "only items of the training pools"
        best = exact.search(u, templates, k=5, exclude=exclude[u], exact=True)
        assert set(got) == {frozenset(r.items) for r in best}


def _sampler(ds, **kw) -> EpochSampler:
    return EpochSampler(ds.split("train"), ds.catalogue.item_category, k=4, batch_size=16, seed=3, **kw)


def test_sampler_appends_own_top_columns_after_the_loss_candidates(tiny_dataset):
    ds = tiny_dataset
    width = ds.split("train").max_size
    mined = np.full((ds.n_users, 3, width), PAD, dtype=np.int64)
    n_items = ds.catalogue.n_items
    assert n_items > 52
    for u in range(ds.n_users):
        for j in range(3):
            mined[u, j, :2] = [u % n_items, 50 + j]  # recognisable rows of real items (the sampler only copies)
    users_without = np.arange(ds.n_users) % 5 == 0
    mined[users_without] = PAD  # nothing found for them: the positive again
    plain = list(_sampler(ds).epoch(1))
    with_top = list(_sampler(ds, own_top=2, pool_size=6).epoch(1, np.where(mined == PAD, PAD, mined)))
    without = list(_sampler(ds, own_top=2, pool_size=6).epoch(1, None))  # before own_top_start: no columns
    for a, b, c in zip(plain, with_top, without):
        assert b.n_rec == 5 and b.items.shape[1] == 1 + 6 + 2 and c.items.shape[1] == 1 + 6
        assert np.array_equal(a.items, b.items[:, :5]), "L_rec's 1 + K are unchanged"
        for user, pos, rows in zip(b.users, b.items[:, 0], b.items[:, 7:]):
            for row in rows:
                if users_without[user]:
                    assert np.array_equal(row, pos)
                else:
                    assert row[0] == user % n_items and row[1] in (50, 51, 52)
    again = list(_sampler(ds, own_top=2, pool_size=6).epoch(1, mined))
    assert all(np.array_equal(x.items, y.items) for x, y in zip(with_top, again)), "a pure function of its inputs"


def test_without_a_distillation_term_own_top_outfits_are_negatives_of_the_loss(tiny_dataset, tiny_data_dir, tmp_path):
    ds = tiny_dataset
    mined = np.tile(ds.split("train").items[0], (ds.n_users, 2, 1))  # [n_users, 2, S]: one outfit for all
    batch = next(iter(_sampler(ds, own_top=2, own_top_negatives=True).epoch(0, mined)))
    assert batch.items.shape[1] == 1 + 4 + 2 and batch.n_rec == 7  # L_rec over all of them
    with pytest.raises(ValueError, match="cannot be combined"):
        _sampler(ds, own_top=2, own_top_negatives=True, pool_size=6)
    cfg = tiny_config(tiny_data_dir, loss={"own_top": 2, "own_top_search": 3}, optim={"epochs": 1})
    trainer = Trainer(cfg, RunDir.open(tmp_path / "probe", cfg, False)[0])
    assert trainer.sampler.own_top == 2 and trainer.sampler.own_top_negatives


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, tiny_data_dir):
    run_dir = tmp_path_factory.mktemp("runs") / "teacher"
    train(tiny_config(tiny_data_dir, model={"dim": 16}, optim={"epochs": 1}), run_dir)
    return run_dir


def test_kd_on_the_students_own_top_trains_and_the_teacher_scores_them(teacher_dir, tiny_data_dir, tmp_path):
    cfg = tiny_config(
        tiny_data_dir,
        loss={"kind": "kd", "teacher": str(teacher_dir), "own_top": 2, "own_top_search": 4, "own_top_start": 1},
        optim={"epochs": 2},
    )
    trainer = Trainer(cfg, RunDir.open(tmp_path / "probe", cfg, False)[0])
    assert trainer.mine_own_top(0) is None  # epoch 0 < own_top_start
    mined = trainer.mine_own_top(1)
    batch = next(iter(trainer.sampler.epoch(1, mined)))
    assert batch.items.shape[1] == 1 + 4 + 2 and batch.n_rec == 5
    terms, _ = trainer.step(batch, __import__("torch").Generator().manual_seed(0))
    assert set(terms) >= {"rec", "kd"}
    metrics = train(cfg, tmp_path / "student")
    history = json.loads((tmp_path / "student/history.json").read_text())
    assert len(history) == 2 and all(np.isfinite(h["train_kd"]) for h in history)
    assert 0.0 <= metrics["test"]["auc"] <= 1.0


def test_own_top_settings_are_bounded(tiny_data_dir):
    from outfitrec.train.config import ConfigError

    with pytest.raises(ConfigError, match="more than loss.own_top_search"):
        tiny_config(tiny_data_dir, loss={"own_top": 30, "own_top_search": 20})
    with pytest.raises(ConfigError, match="own_top_search"):
        tiny_config(tiny_data_dir, loss={"own_top": 2, "own_top_search": 10**9})
