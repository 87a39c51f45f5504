"""Beam search against exact enumeration, on a real tiny OutfitModel."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from conftest import make_tiny_model

from outfitrec.cli import app
from outfitrec.data.outfits import PAD, DataError, Outfits
from outfitrec.models.scoring import TorchScorer
from outfitrec.models.search import (
    Searcher,
    SearchIndex,
    SearchParams,
    SearchStats,
    templates_from_dataset,
)
from outfitrec.serve.app import RecommendRequest

TEMPLATE = [0, 1, 2]  # top, bottom, shoes


def search(scorer, index, user, templates, k=10, stats=None, exclude=None, diverse=False, exact=False, fixed=(), **kw):
    """One search with SearchParams(**kw) (beam_width, shortlist, refine_*)."""
    return Searcher(scorer, index, SearchParams(**kw)).search(user, templates, k, fixed, exclude, diverse, exact, stats)


@pytest.fixture(scope="module")
def setup(tiny_dataset):
    model = make_tiny_model(tiny_dataset)
    scorer = TorchScorer(model)
    emb = scorer.encode_items(np.arange(tiny_dataset.catalogue.n_items))
    index = SearchIndex.build(scorer, emb, tiny_dataset.catalogue.item_category)
    return model, scorer, index


@pytest.fixture(scope="module")
def exact_top10(setup):
    """The exact top-10 (all 8,000 outfits scored) of each user."""
    _, scorer, index = setup
    return {user: search(scorer, index, user, [TEMPLATE], k=10, exact=True) for user in range(12)}


def _sets(recs):
    return [frozenset(r.items) for r in recs]


def test_partial_outfit_scores_match_the_model(setup):
    """Rows with PAD slots are scored as masked partial outfits, exactly as the model scores them."""
    model, scorer, index = setup
    rows = np.array([[0, 25, 45], [0, 25, PAD], [PAD, 25, PAD], [7, PAD, 59]])
    got = Searcher(scorer, index).score_rows(3, rows)
    with torch.no_grad():
        ref = model(
            torch.full((4,), 3), torch.from_numpy(np.where(rows == PAD, 0, rows)), torch.from_numpy(rows != PAD)
        )
    np.testing.assert_allclose(got, ref.numpy(), atol=1e-5)
    # the cached one-item outfit embeddings are the model's
    single = Searcher(scorer, index).score_rows(3, np.array([[5]]))
    proxy = scorer.score_embeddings(np.array([3]), index.single_z[[5]])
    np.testing.assert_allclose(single, proxy, atol=1e-5)


def test_exhaustive_beam_equals_exact(setup, exact_top10):
    """With every item shortlisted and a beam holding every pair, the beam search is exhaustive."""
    _, scorer, index = setup
    for user in range(3):
        exact = exact_top10[user]
        beam = search(scorer, index, user, [TEMPLATE], k=10, beam_width=400, shortlist=20, refine_rounds=0)
        assert _sets(beam) == _sets(exact)
        np.testing.assert_allclose([r.score for r in beam], [r.score for r in exact], atol=1e-5)


def test_beam_recall_and_work(setup, exact_top10):
    """Shortlists of 12 of 20 items: high recall of the exact top-10 while scoring a fifth of the outfits.

    Without the refinement the same search loses a third of the exact top-10 on this barely trained model.
    """
    _, scorer, index = setup
    recalls, plain_recalls = [], []
    for user, exact_recs in exact_top10.items():
        exact = set(_sets(exact_recs))
        stats = SearchStats()
        beam = set(
            _sets(
                search(
                    scorer, index, user, [TEMPLATE], k=10, beam_width=16, shortlist=12, refine_rounds=10, stats=stats
                )
            )
        )
        plain = search(scorer, index, user, [TEMPLATE], k=10, beam_width=16, shortlist=12, refine_rounds=0)
        recalls.append(len(exact & beam) / 10)
        plain_recalls.append(len(exact & set(_sets(plain))) / 10)
        assert stats.outfits_scored < 20**3 / 5  # measured: 806-1490, mean 1032
    assert np.mean(recalls) >= 0.9, recalls
    assert np.mean(plain_recalls) < np.mean(recalls)


def test_exclude_skips_to_the_next_best(setup, exact_top10):
    _, scorer, index = setup
    exact = exact_top10[2][:3]
    without_best = search(scorer, index, 2, [TEMPLATE], k=2, exclude={frozenset(exact[0].items)})
    assert _sets(without_best) == _sets(exact[1:])


def test_diverse_never_repeats_an_item(setup):
    _, scorer, index = setup
    # a narrow search forces the re-search that bans used items
    recs = search(scorer, index, 5, [TEMPLATE], k=10, diverse=True, beam_width=4, shortlist=3)
    assert len(recs) == 10
    items = [i for r in recs for i in r.items]
    assert len(items) == len(set(items))
    exact = search(scorer, index, 5, [TEMPLATE], k=10, diverse=True, exact=True)
    assert exact[0].items == search(scorer, index, 5, [TEMPLATE], k=1, exact=True)[0].items


def test_complete_matches_exact_completion(setup):
    _, scorer, index = setup
    for fixed in ([3], [3, 27], [45]):
        exact = search(scorer, index, 1, [TEMPLATE], k=5, fixed=fixed, exact=True)
        beam = search(scorer, index, 1, [TEMPLATE], k=5, fixed=fixed)
        assert all(set(fixed) <= set(r.items) for r in beam)
        assert _sets(beam) == _sets(exact)
    # items that fit no slot of the template: no candidates
    query = Searcher(scorer, index).query(1, fixed=[0, 1])
    rows, scores = query.beam_candidates(TEMPLATE, query.rank_items(TEMPLATE))
    assert len(rows) == 0 and len(scores) == 0


def test_several_templates_and_repeated_categories(setup):
    """Templates of different sizes compete on score; a category filling two slots never repeats an item."""
    _, scorer, index = setup
    templates = [TEMPLATE, [0, 2], [0, 0, 1, 2]]
    recs = search(scorer, index, 0, templates, k=12, exact=False, beam_width=64, shortlist=20)
    exact_parts = [search(scorer, index, 0, [t], k=12, exact=True) for t in templates]
    best = sorted((r.score for part in exact_parts for r in part), reverse=True)[:12]
    assert {r.template for r in recs} <= {0, 1, 2}
    np.testing.assert_allclose(sorted((r.score for r in recs), reverse=True)[:3], best[:3], atol=1e-5)
    rows, _ = Searcher(scorer, index).query(0).enumerate_candidates([0, 0, 2])
    assert len(rows) == 20 * 19 // 2 * 20  # unordered pairs of distinct tops x shoes
    assert all(len(set(r)) == 3 for r in rows)


def test_templates_from_meta_or_training(tiny_dataset):
    names = tiny_dataset.catalogue.category_names
    assert templates_from_dataset(names, tiny_dataset.meta) == [[0, 1, 2]]
    derived = templates_from_dataset(names, {}, tiny_dataset.split("train"))
    assert derived == [[0, 1, 2]]
    cat = tiny_dataset.catalogue.item_category
    mixed = Outfits.from_rows([0] * 10, [[0, 20, 40]] * 7 + [[0, 40]] * 3, cat)
    assert templates_from_dataset(names, {}, mixed, min_share=0.2) == [[0, 1, 2], [0, 2]]
    with pytest.raises(DataError, match=r"templates\[0\] names category 'hat'"):
        templates_from_dataset(names, {"templates": [["hat", "top"]]})
    with pytest.raises(DataError, match="no meta"):
        templates_from_dataset(names, {}, None)


def test_exact_refuses_huge_enumerations(setup):
    _, scorer, index = setup
    with pytest.raises(DataError, match="max_combinations"):
        Searcher(scorer, index).query(0).enumerate_candidates(TEMPLATE, max_combinations=100)


def test_search_params_are_the_defaults_of_cli_and_service(setup):
    """One SearchParams: the CLI's options and the service's request read its defaults; a searcher uses them."""
    defaults = SearchParams()
    assert RecommendRequest(user=0).beam_width == defaults.beam_width
    assert RecommendRequest(user=0).shortlist == defaults.shortlist
    command = next(c for c in app.registered_commands if c.callback.__name__ == "recommend")
    options = inspect.signature(command.callback).parameters
    assert options["beam_width"].default.default == defaults.beam_width
    assert options["shortlist"].default.default == defaults.shortlist
    _, scorer, index = setup
    a = Searcher(scorer, index).search(4, [TEMPLATE], k=5)
    b = search(scorer, index, 4, [TEMPLATE], k=5, beam_width=defaults.beam_width, shortlist=defaults.shortlist)
    assert a == b
    with pytest.raises(TypeError):
        search(scorer, index, 4, [TEMPLATE], k=5, beam=3)
