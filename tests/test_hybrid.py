"""Hybrid scorers: a trained run plus collaborative baselines, standardised, weights tuned on validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tiny_config

from outfitrec.data.outfits import DataError, OutfitDataset
from outfitrec.evaluate.hybrid import (
    Component,
    HybridScorer,
    build_hybrid,
    crossfit_auc,
    evaluate_hybrid,
    is_hybrid,
    load_hybrid,
    save_hybrid,
    tune_hybrid,
)
from outfitrec.train.loop import train


def test_weighted_sum_of_standardised_scores():
    a = lambda u, i, m: np.asarray([1.0, 3.0])  # noqa: E731
    b = lambda u, i, m: np.asarray([10.0, 0.0])  # noqa: E731
    h = HybridScorer(
        [Component("baseline:x", 1.0, mean=2.0, std=1.0), Component("baseline:y", 0.5, mean=0, std=5)], [a, b]
    )
    dummy = np.zeros((2, 1))
    np.testing.assert_allclose(h(dummy[:, 0], dummy, dummy), [-1.0 + 0.5 * 2.0, 1.0 + 0.0])
    np.testing.assert_allclose(h.component_scores(dummy[:, 0], dummy, dummy), [[-1.0, 1.0], [2.0, 0.0]])


@pytest.fixture(scope="module")
def run_and_data(tmp_path_factory, tiny_data_dir):
    run_dir = tmp_path_factory.mktemp("hyb") / "run"
    train(tiny_config(tiny_data_dir, optim={"epochs": 1}), run_dir)
    return run_dir, OutfitDataset.load(tiny_data_dir / "dataset.npz")


def test_build_tune_save_load_evaluate(run_and_data, tiny_data_dir, tmp_path):
    run_dir, dataset = run_and_data
    comps = [Component(f"run:{run_dir}"), Component("baseline:ease")]
    hybrid = build_hybrid(comps, dataset, tiny_data_dir / "dataset.npz")
    train_split = dataset.split("train")
    z = hybrid.component_scores(train_split.users, train_split.items, train_split.mask)
    np.testing.assert_allclose(z.mean(axis=1), 0.0, atol=1e-6)  # standardised on the training positives
    np.testing.assert_allclose(z.std(axis=1), 1.0, atol=1e-6)
    best, tried = tune_hybrid(hybrid, dataset, tiny_data_dir, grid=(0.0, 0.5, 1.0))
    assert set(tried) == {0.0, 0.5, 1.0} and best == max(tried.values())
    a = hybrid.components[1].weight
    assert a in tried and hybrid.components[0].weight == pytest.approx(1.0 - a)
    save_hybrid(hybrid, tmp_path / "h", tiny_data_dir / "dataset.npz", {"valid_auc": best})
    assert is_hybrid(tmp_path / "h") and not is_hybrid(run_dir)
    back = load_hybrid(tmp_path / "h", dataset, tiny_data_dir / "dataset.npz")
    test = dataset.split("test")
    np.testing.assert_allclose(back(test.users, test.items, test.mask), hybrid(test.users, test.items, test.mask))
    metrics = evaluate_hybrid(back, dataset, tiny_data_dir)
    assert metrics["valid"]["auc"] == pytest.approx(best)
    assert 0.0 <= metrics["test"]["auc"] <= 1.0
    # a hybrid folder teaches a student like any other teacher
    cfg = tiny_config(tiny_data_dir, loss={"kind": "kd", "teacher": str(tmp_path / "h")}, optim={"epochs": 1})
    train(cfg, tmp_path / "student")
    assert "train_kd" in json.loads((tmp_path / "student" / "history.json").read_text())[0]


def test_crossfit_equals_the_plain_auc_when_nothing_is_tuned(run_and_data, tiny_data_dir):
    _, dataset = run_and_data
    hybrid = build_hybrid([Component("baseline:ease")], dataset)  # one component: weight 1, nothing to choose
    plain = evaluate_hybrid(hybrid, dataset, tiny_data_dir, splits=("valid",))["valid"]["auc"]
    assert crossfit_auc(hybrid, dataset, tiny_data_dir) == pytest.approx(plain, abs=1e-12)
    two = build_hybrid([Component("baseline:ease"), Component("baseline:puresvd")], dataset)
    assert 0.0 <= crossfit_auc(two, dataset, tiny_data_dir, grid=(0.0, 0.5, 1.0)) <= 1.0


def test_bad_component_and_file(run_and_data, tmp_path):
    _, dataset = run_and_data
    with pytest.raises(DataError, match="must start with"):
        build_hybrid([Component("ease")], dataset)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "hybrid.json").write_text("{not json")
    with pytest.raises(DataError, match="not a valid hybrid"):
        load_hybrid(tmp_path / "bad", dataset)


def test_cli_hybrid(run_and_data, tiny_data_dir, tmp_path):
    from typer.testing import CliRunner

    from outfitrec.cli import app

    run_dir, _ = run_and_data
    res = CliRunner().invoke(app, ["hybrid", str(run_dir), "--out", str(tmp_path / "h"), "--grid", "0,1"])
    assert res.exit_code == 0, res.output
    assert "hybrid (valid)" in res.output and "hybrid (test)" in res.output
    metrics = json.loads((tmp_path / "h" / "metrics.json").read_text())
    assert {"valid", "test"} <= set(metrics) and is_hybrid(tmp_path / "h")
