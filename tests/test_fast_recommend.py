"""Fast recommendation (recommend/fast.py): fused attention, collapsed users, the feature cache, the pool."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_recommend_engine import make_tiny_model

from outfitrec.models.outfit_model import ModelConfig, OutfitModel
from outfitrec.models.scoring import TorchScorer
from outfitrec.models.search import Searcher, SearchIndex, SearchStats
from outfitrec.models.set_transformer import MultiHeadAttention, SetTransformer
from outfitrec.recommend.fast import CollapsedScorer, FastSearcher, OutfitPool

TEMPLATE = [0, 1, 2]


@pytest.fixture(scope="module")
def setup(tiny_dataset):
    model = make_tiny_model(tiny_dataset)
    torch_scorer = TorchScorer(model)
    emb = torch_scorer.encode_items(np.arange(tiny_dataset.catalogue.n_items))
    index = SearchIndex.build(torch_scorer, emb, tiny_dataset.catalogue.item_category)
    return model, torch_scorer, CollapsedScorer(model), index


def _sets(recs):
    return [frozenset(r.items) for r in recs]


def test_fused_attention_equals_plain_matmuls():
    """scaled_dot_product_attention gives the plain masked attention's outputs within 1e-5 (padded slots too)."""
    torch.manual_seed(0)
    st = SetTransformer(16, heads=4).eval()
    x = torch.randn(50, 5, 16)
    mask = torch.rand(50, 5) > 0.4
    mask[:, 2] = True
    mask[0] = False  # an empty set: the plain path's first-slot rule
    fused = st(x, mask)
    original = MultiHeadAttention.forward
    try:
        MultiHeadAttention.forward = lambda self, q, k, m, fused=True: original(self, q, k, m, fused=False)
        plain = st(x, mask)
    finally:
        MultiHeadAttention.forward = original
    assert torch.isfinite(fused).all()
    torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-5)
    x2 = x.clone()
    x2[~mask] = 1e3  # garbage in padded slots changes nothing
    torch.testing.assert_close(st(x2, mask)[1:], fused[1:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["anchors", "dot", "history"])
def test_collapsed_users_equal_model_scores(tiny_dataset, kind):
    """sum_k cos(Wz, a_k) (+ the history term) as one dot product per user: the model's scores."""
    cat = tiny_dataset.catalogue
    torch.manual_seed(1)
    if kind == "history":
        config = ModelConfig(encoder="id", dim=16, heads=2, n_anchors=5, user_history="mean", history_size=16)
    else:
        config = ModelConfig(encoder="cnn", size="student", dim=16, heads=2, n_anchors=5, scorer=kind)
    model = OutfitModel(config, tiny_dataset.n_users, cat.n_items, cat.n_categories)
    model.bind_catalogue(cat)
    if kind == "history":
        train = tiny_dataset.split("train")
        users = np.repeat(train.users, train.mask.sum(1))
        model.history_scorer.set_history(users, train.items[train.mask])
        with torch.no_grad():
            model.history_scorer.gain.fill_(0.7)
    model.eval()
    scorer = CollapsedScorer(model)
    assert scorer.user_matrix.shape == (tiny_dataset.n_users, 16 + scorer.history_dim)
    assert (scorer.history_dim > 0) == (kind == "history")
    rng = np.random.default_rng(0)
    items = rng.integers(0, cat.n_items, (40, 3))
    mask = rng.random((40, 3)) > 0.3
    mask[:, 0] = True
    users = rng.integers(0, tiny_dataset.n_users, 40)
    with torch.inference_mode():
        ref = model(torch.from_numpy(users), torch.from_numpy(items), torch.from_numpy(mask)).numpy()
        z = model.outfit_embeddings(torch.from_numpy(items), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(scorer.score_embeddings(users, z), ref, atol=1e-5)
    if kind == "anchors":
        assert scorer.bytes_per_user == 16 * 4  # K=5 anchors of 16 floats -> one vector


def test_feature_cache_returns_the_same_scores(setup):
    model, torch_scorer, scorer, index = setup
    plain = Searcher(torch_scorer, index)
    fast = FastSearcher(scorer, index)
    rng = np.random.default_rng(2)
    rows = np.stack([rng.choice(np.flatnonzero(index.item_category == c), 30) for c in TEMPLATE], axis=1)
    rows[::4, 1] = -1  # partial outfits
    for user in (0, 5):
        first = fast.score_rows(user, rows)
        again = fast.score_rows(user, rows[:, ::-1])  # same outfits, other slot order: cache hits
        np.testing.assert_allclose(first, plain.score_rows(user, rows), atol=1e-5)
        np.testing.assert_allclose(again, first, atol=1e-5)
    assert fast.cache.hits > 0 and len(fast.cache) == len({tuple(sorted(r)) for r in rows.tolist()})
    # a cleared cache is cold: every outfit computed again, the same scores
    fast.cache.clear()
    assert len(fast.cache) == 0 and fast.cache.hits == fast.cache.misses == 0
    np.testing.assert_allclose(fast.score_rows(0, rows), plain.score_rows(0, rows), atol=1e-5)
    assert fast.cache.hits == 0 and fast.cache.misses > 0
    # the same search, the same answers
    for user in range(3):
        a = plain.search(user, [TEMPLATE], 10)
        b = fast.search(user, [TEMPLATE], 10)
        assert _sets(a) == _sets(b)
        np.testing.assert_allclose([r.score for r in a], [r.score for r in b], atol=1e-5)


def test_fast_search_against_exact(setup):
    """The default search and the pool against exact enumeration (8,000 outfits) on the tiny catalogue."""
    _, _, scorer, index = setup
    fast = FastSearcher(scorer, index)
    users = range(12)
    exact = {u: fast.search(u, [TEMPLATE], 10, exact=True) for u in users}
    stats = SearchStats()

    def recall_of(recs, user):
        return len(set(_sets(recs)) & set(_sets(exact[user]))) / 10

    recall = np.mean([recall_of(fast.search(u, [TEMPLATE], 10, stats=stats), u) for u in users])
    assert recall >= 0.9
    assert stats.outfits_scored < 12 * 8000 / 2
    pool = OutfitPool.build(fast, [TEMPLATE], users, per_user=20)
    pool_recall = np.mean([recall_of(pool.top(scorer.user_vector(u), 10), u) for u in users])
    assert pool_recall >= recall - 1e-9  # each seed user's own search is in the pool
    # the pool's scores are the model's
    recs = pool.top(scorer.user_vector(3), 10)
    rows = np.array([r.items for r in recs])
    np.testing.assert_allclose([r.score for r in recs], fast.score_rows(3, rows), atol=1e-5)


def test_engine_pool_and_result_cache(tiny_run, tmp_path):
    from outfitrec.recommend.engine import Recommender

    rec = Recommender.from_run(tiny_run, pool=True)
    assert rec.info["scorer"] == "collapsed" and rec.pool is not None and len(rec.pool) > 0
    for user in range(4):
        train = rec.training_outfits(user)
        pooled = rec.recommend(user, 10)
        assert len(pooled) == 10 and not set(_sets(pooled)) & train
        assert rec.recommend(user, 10) == pooled  # the result cache
        live = rec.recommend(user, 10, use_pool=False)
        assert len(set(_sets(live)) & set(_sets(pooled))) >= 8
        rows = [list(r.items) for r in pooled]
        np.testing.assert_allclose([r.score for r in pooled], rec.score(user, rows), atol=1e-5)
    # a template subset: template ids index the full list
    only = rec.recommend(1, 5, templates=[0])
    assert {r.template for r in only} == {0}
    # the pool is cached beside the checkpoint: a second load reads it
    again = Recommender.from_run(tiny_run, pool=True)
    np.testing.assert_array_equal(again.pool.rows, rec.pool.rows)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_dataset, tiny_data_dir):
    from test_recommend_engine import make_tiny_run

    return make_tiny_run(tiny_dataset, tiny_data_dir, tmp_path_factory.mktemp("fast_run"))
