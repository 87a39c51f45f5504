"""Collaborative baselines (EASE, item-kNN, user-kNN, PureSVD): hand-worked examples, aggregation, registry, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from outfitrec.cli import app
from outfitrec.data.outfits import PAD, DataError
from outfitrec.evaluate.baselines import (
    BASELINES,
    COLLABORATIVE,
    aggregate_outfits,
    baseline_params,
    ease_scores,
    fit_baseline,
    interactions,
    item_popularity,
    itemknn_scores,
    popularity_scores,
    puresvd_factors,
    userknn_scores,
)
from outfitrec.evaluate.protocol import evaluate_baseline, evaluate_baselines, evaluate_split
from outfitrec.experiments.report import baselines_table

runner = CliRunner()
R2 = 1 / np.sqrt(2)


def _ease_direct(X: np.ndarray, lam: float) -> np.ndarray:
    """EASE straight from Steck (2019), items x items, as an independent reference."""
    P = np.linalg.inv(X.T @ X + lam * np.eye(X.shape[1]))
    B = np.eye(X.shape[1]) - P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return X @ B


def test_ease_hand_worked():
    # X^T X + I = 2 I + 2 J  ->  P = 0.5 I - 0.125 J: diag 0.375, off-diagonal -0.125, so B_ij = 1/3 off the diagonal
    X = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1]], dtype=float)
    B = np.full((3, 3), 1 / 3)
    np.fill_diagonal(B, 0.0)
    np.testing.assert_allclose(ease_scores(sp.csr_matrix(X), 1.0), X @ B, atol=1e-12)
    assert ease_scores(sp.csr_matrix(X), 1.0)[0, 2] == pytest.approx(2 / 3)


def test_ease_users_side_equals_items_side(rng):
    X = (rng.random((5, 12)) < 0.4).astype(float)  # more items than users: the Woodbury (users') side
    for lam in (0.5, 10.0):
        np.testing.assert_allclose(ease_scores(sp.csr_matrix(X), lam), _ease_direct(X, lam), atol=1e-9)
    Xt = (rng.random((12, 5)) < 0.4).astype(float)  # more users than items: the items' side
    np.testing.assert_allclose(ease_scores(sp.csr_matrix(Xt), 3.0), _ease_direct(Xt, 3.0), atol=1e-9)
    with pytest.raises(DataError, match="lam"):
        ease_scores(sp.csr_matrix(X), 0.0)


def test_itemknn_hand_worked(rng):
    # items as columns: i0 = (1, 1), i1 = (1, 0), i2 = (0, 1); cos(0,1) = cos(0,2) = 1/sqrt2, cos(1,2) = 0
    X = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 1]], dtype=float))
    np.testing.assert_allclose(itemknn_scores(X, 0), [[R2, R2, R2], [R2, R2, R2]], atol=1e-12)
    # k=1: i0 keeps i1 (tie with i2 broken by column order), i1 keeps i0, i2 keeps i0
    np.testing.assert_allclose(itemknn_scores(X, 1), [[R2, R2, R2], [0, R2, R2]], atol=1e-12)
    Y = sp.csr_matrix((rng.random((6, 9)) < 0.4).astype(float))
    np.testing.assert_allclose(itemknn_scores(Y, 100), itemknn_scores(Y, 0), atol=1e-12)


def test_userknn_hand_worked():
    # cos(u0,u1) = 1/2, cos(u0,u2) = 0, cos(u1,u2) = 1/sqrt2
    X = sp.csr_matrix(np.array([[1, 1, 0], [1, 0, 1], [0, 0, 1]], dtype=float))
    # k=1: u0 keeps u1, u1 keeps u2 (1/sqrt2 > 1/2), u2 keeps u1
    np.testing.assert_allclose(userknn_scores(X, 1), [[0.5, 0, 0.5], [0, 0, R2], [R2, 0, R2]], atol=1e-12)
    # all neighbours: u1 = 1/2 u0 + 1/sqrt2 u2
    np.testing.assert_allclose(userknn_scores(X, 0), [[0.5, 0, 0.5], [0.5, 0.5, R2], [R2, 0, R2]], atol=1e-12)


def test_puresvd_projects_on_the_top_singular_vectors(rng):
    X = (rng.random((7, 10)) < 0.5).astype(float)
    users, items = puresvd_factors(sp.csr_matrix(X), 3)
    _, _, vt = np.linalg.svd(X)
    V = vt[:3].T
    np.testing.assert_allclose(users @ items.T, X @ V @ V.T, atol=1e-8)
    users, items = puresvd_factors(sp.csr_matrix(X), 50)  # clamped to the largest rank ARPACK gives
    assert items.shape[1] == 6
    with pytest.raises(DataError, match="at least 1"):
        puresvd_factors(sp.csr_matrix(X), 0)


def test_aggregate_outfits():
    per_slot = np.array([[1.0, 2.0, 9.0], [4.0, -1.0, 7.0], [5.0, 5.0, 5.0]])
    mask = np.array([[True, True, False], [True, True, True], [False, False, False]])
    np.testing.assert_allclose(aggregate_outfits(per_slot, mask, "mean"), [1.5, 10 / 3, 0.0])
    np.testing.assert_allclose(aggregate_outfits(per_slot, mask, "sum"), [3.0, 10.0, 0.0])
    np.testing.assert_allclose(aggregate_outfits(per_slot, mask, "max"), [2.0, 7.0, 0.0])
    with pytest.raises(DataError, match="aggregate"):
        aggregate_outfits(per_slot, mask, "median")


def test_interactions_binary_and_counts(tiny_dataset):
    binary = interactions(tiny_dataset, binary=True)
    counts = interactions(tiny_dataset, binary=False)
    assert set(np.unique(binary.X.data)) == {1.0}
    np.testing.assert_allclose(np.asarray(counts.X.sum(axis=0)).ravel(), item_popularity(tiny_dataset)[binary.seen])
    assert (binary.column_of[binary.seen] == np.arange(len(binary.seen))).all()
    assert (binary.column_of >= 0).sum() == len(binary.seen)


@pytest.mark.parametrize("name", list(BASELINES))
def test_fitted_baseline_is_a_score_fn(name, tiny_dataset, tiny_data_dir):
    model = fit_baseline(name, tiny_dataset)
    valid = tiny_dataset.split("valid")
    scores = model(valid.users, valid.items, valid.mask)
    assert scores.shape == (len(valid),) and np.isfinite(scores).all()
    # padded slots do not change a score; an item never seen in training scores 0
    items = np.concatenate([valid.items, np.full((len(valid), 2), PAD)], axis=1)
    mask = np.concatenate([valid.mask, np.zeros((len(valid), 2), bool)], axis=1)
    np.testing.assert_allclose(model(valid.users, items, mask), scores)
    unseen = np.flatnonzero(model.column_of < 0)
    if len(unseen):
        assert model.item_scores(valid.users[:1], unseen[:1]) == 0.0
    # item scores agree with the fitted matrix
    u, i = valid.users[:3], valid.items[:3, 0]
    assert model.item_scores(u, i).shape == (3,)
    m = evaluate_split(model, tiny_dataset, tiny_data_dir, "valid")
    assert 0.0 <= m["auc"] <= 1.0


def test_popularity_in_the_registry_matches_popularity_scores(tiny_dataset):
    valid = tiny_dataset.split("valid")
    model = fit_baseline("popularity", tiny_dataset)
    np.testing.assert_allclose(model(valid.users, valid.items, valid.mask), popularity_scores(tiny_dataset, valid))


def test_ease_baseline_matches_the_closed_form(tiny_dataset):
    model = fit_baseline("ease", tiny_dataset, lam=5.0, aggregate="sum")
    data = interactions(tiny_dataset)
    expected = _ease_direct(data.X.toarray(), 5.0)
    train = tiny_dataset.split("train")
    u, items = train.users[0], train.items[0][train.mask[0]]
    np.testing.assert_allclose(
        model(np.array([u]), items[None, :], np.ones((1, len(items)), bool)),
        [expected[u, data.column_of[items]].sum()],
        rtol=1e-5,
    )


def test_registry_parameters():
    assert set(COLLABORATIVE) < set(BASELINES)
    assert baseline_params("ease", lam="30")["lam"] == 30.0
    assert baseline_params("userknn", k="7", binary="false") == {
        "k": 7,
        "binary": False,
        "aggregate": "mean",
        "history": 1.0,
    }
    with pytest.raises(DataError, match="unknown baseline"):
        baseline_params("svdpp")
    with pytest.raises(DataError, match="unknown parameter"):
        baseline_params("ease", k=3)
    with pytest.raises(DataError, match="cannot read"):
        baseline_params("ease", lam="abc")
    with pytest.raises(DataError, match="aggregate"):
        baseline_params("ease", aggregate="median")


def test_evaluate_baseline_is_cached(tiny_dataset, tiny_data_dir):
    first = evaluate_baseline("ease", tiny_dataset, tiny_data_dir, "valid", lam=7.0)
    assert (tiny_data_dir / "baselines_cache.json").is_file()
    assert first["params"]["lam"] == 7.0 and "fit_seconds" in first
    again = evaluate_baseline("ease", tiny_dataset, tiny_data_dir, "valid", lam=7.0)
    assert again == first
    fresh = evaluate_baseline("ease", tiny_dataset, tiny_data_dir, "valid", cache=False, lam=7.0)
    assert fresh["auc"] == first["auc"]
    # another training set (same folder) is another cache entry, not the stored one
    sub = tiny_dataset.__class__(
        tiny_dataset.catalogue,
        tiny_dataset.n_users,
        {**tiny_dataset.splits, "train": tiny_dataset.split("train").subset(np.arange(20))},
        tiny_dataset.meta,
    )
    other = evaluate_baseline("ease", sub, tiny_data_dir, "valid", lam=7.0)
    assert other["info"]["nnz"] < first["info"]["nnz"]
    rows = evaluate_baselines(tiny_dataset, tiny_data_dir, "valid")
    assert list(rows) == list(COLLABORATIVE)
    table = baselines_table(rows, "valid")
    assert "| ease |" in table and "lam=" in table


def test_cli_baseline(tiny_data_dir, tmp_path):
    out = tmp_path / "ease.json"
    result = runner.invoke(app, ["baseline", "ease", "--data", str(tiny_data_dir), "--set", "lam=3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| ease (valid) |" in result.output
    saved = json.loads(out.read_text())
    assert saved["params"]["lam"] == 3.0 and saved["split"] == "valid" and 0 <= saved["auc"] <= 1
    out_all = tmp_path / "all.json"
    args = ["baseline", "all", "--data", str(tiny_data_dir), "--split", "test", "-s", "userknn.k=3"]
    result = runner.invoke(app, [*args, "--out", str(out_all)])
    assert result.exit_code == 0, result.output
    for name in BASELINES:
        assert f"| {name} (test) |" in result.output
    saved = json.loads(out_all.read_text())
    assert set(saved["baselines"]) == set(BASELINES) and saved["baselines"]["userknn"]["params"]["k"] == 3
    result = runner.invoke(app, ["baseline", "all", "--data", str(tiny_data_dir), "--set", "k=3"])
    assert isinstance(result.exception, DataError)
    result = runner.invoke(app, ["baseline", "nope", "--data", str(tiny_data_dir)])
    assert isinstance(result.exception, DataError)
