"""The evaluation protocol: reference metrics through evaluate_scores, cached scoring, FITB, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TESTVECTORS

from outfitrec.data.fitb import write_fitb_files
from outfitrec.data.negatives import Candidates
from outfitrec.data.outfits import DataError, Outfits
from outfitrec.data.prepare import resolve_dataset_path
from outfitrec.evaluate.metrics import mean_metrics
from outfitrec.evaluate.protocol import (
    evaluate_model,
    evaluate_scores,
    evaluate_split,
    format_table,
)
from outfitrec.models.checkpoint import checkpoint_dir_of
from outfitrec.models.outfit_model import ModelConfig, OutfitModel
from outfitrec.models.scoring import CachedScorer


def _outfits(users, ids) -> Outfits:
    n = len(users)
    items = np.asarray(ids, dtype=np.int64).reshape(n, 1)
    return Outfits(np.asarray(users), items, np.zeros_like(items), np.ones_like(items, bool), np.asarray(ids))


def test_evaluate_scores_reproduces_the_fhn_test_vectors():
    """Candidates built from the reference vectors, scored by lookup: mean AUC and NDCG to 1e-9."""
    vectors = json.loads((TESTVECTORS / "metrics_fhn.json").read_text())
    scores, pos_users, neg_users, pos_ids, neg_ids = [], [], [], [], []
    for u, user in enumerate(vectors["users"]):
        for s in user["pos"]:
            pos_users.append(u)
            pos_ids.append(len(scores))
            scores.append(s)
        for s in user["neg"]:
            neg_users.append(u)
            neg_ids.append(len(scores))
            scores.append(s)
    table = np.asarray(scores)
    # users have varying numbers of negatives: metrics are per user, k is not used
    cands = Candidates(_outfits(pos_users, pos_ids), _outfits(neg_users, neg_ids), 1, {})

    def lookup(users, items, mask):
        return table[items[:, 0]]

    out = evaluate_scores(lookup, cands)
    assert out["auc"] == pytest.approx(vectors["mean_auc"], abs=1e-9)
    assert out["ndcg"] == pytest.approx(vectors["mean_ndcg"], abs=1e-9)
    assert out["n_users"] == len(vectors["users"])


@pytest.fixture(scope="module")
def tiny_model(tiny_dataset):
    torch.manual_seed(0)
    cat = tiny_dataset.catalogue
    cfg = ModelConfig(encoder="cnn", size="student", dim=8, heads=2, n_anchors=3, dropout=0.0)
    model = OutfitModel(cfg, tiny_dataset.n_users, cat.n_items, cat.n_categories)
    model.bind_catalogue(cat)
    return model.eval()


def test_cached_scorer_equals_the_model_forward(tiny_model, tiny_dataset):
    test = tiny_dataset.split("test")
    scorer = CachedScorer(tiny_model, test.items[test.mask][:5], batch_size=4)  # rest encoded on first use
    got = scorer(test.users, test.items, test.mask)
    with torch.no_grad():
        want = tiny_model(torch.as_tensor(test.users), torch.as_tensor(test.items), torch.as_tensor(test.mask))
    np.testing.assert_allclose(got, want.double().numpy(), atol=1e-5)
    assert len(scorer.ids) == len(np.unique(test.items[test.mask]))


def test_evaluate_model_on_the_candidate_files_with_fitb(tiny_model, tiny_dataset, tiny_data_dir, tmp_path):
    # a copy of the folder with FITB questions (the shared fixture folder stays as it is)
    for f in tiny_data_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    write_fitb_files(tiny_dataset, tmp_path, seed=0)
    out = evaluate_model(tiny_model, tiny_dataset, tmp_path, "test")
    cands = Candidates.load(tmp_path / "candidates_test.npz")
    scorer = CachedScorer(tiny_model)
    pos = scorer(cands.positives.users, cands.positives.items, cands.positives.mask)
    neg = scorer(cands.negatives.users, cands.negatives.items, cands.negatives.mask)
    want = mean_metrics(cands.positives.users, pos, cands.negatives.users, neg)
    assert out["auc"] == pytest.approx(want["auc"], abs=1e-12)
    assert out["ndcg@10"] == pytest.approx(want["ndcg@10"], abs=1e-12)
    assert 0.0 <= out["fitb"] <= 1.0 and out["fitb_n"] > 0
    assert 0.0 <= out["popularity"]["auc"] <= 1.0
    assert "| model |" in format_table({"model": out})


def test_a_perfect_score_function_scores_one(tiny_dataset, tiny_data_dir):
    cands = Candidates.load(tiny_data_dir / "candidates_valid.npz")
    positives = set(map(tuple, cands.positives.items.tolist()))

    def oracle(users, items, mask):
        return np.asarray([1.0 if tuple(row) in positives else 0.0 for row in items.tolist()])

    out = evaluate_split(oracle, tiny_dataset, tiny_data_dir, "valid")
    assert out["auc"] == 1.0 and out["ndcg"] == pytest.approx(1.0)


def test_bad_paths_are_reported(tmp_path):
    with pytest.raises(DataError, match="no such dataset"):
        resolve_dataset_path(tmp_path / "missing")
    with pytest.raises(DataError, match="not a prepared dataset folder"):
        resolve_dataset_path(tmp_path)
    with pytest.raises(DataError, match="neither a run directory"):
        checkpoint_dir_of(tmp_path)


def test_load_dataset_stays_importable_from_the_protocol(tiny_data_dir):
    # field case 01's script (and user code written against 0.1) imports it from here
    from outfitrec.evaluate.protocol import load_dataset

    dataset, folder = load_dataset(tiny_data_dir)
    assert folder == tiny_data_dir and dataset.n_users == 12
