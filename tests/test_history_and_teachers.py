"""User history as data (OutfitDataset.history), baselines fitted with it, and any scorer as a teacher."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import DIFASHION, tiny_config

from outfitrec.data.outfits import DataError, OutfitDataset
from outfitrec.evaluate.baselines import fit_baseline, interactions
from outfitrec.train.loop import Teacher, load_teacher, train


def _with_history(dataset: OutfitDataset, pairs) -> OutfitDataset:
    return OutfitDataset(
        dataset.catalogue, dataset.n_users, dataset.splits, dataset.meta, dataset.user_names, history=pairs
    )


def test_history_round_trips_and_is_checked(tiny_dataset, tmp_path):
    pairs = np.array([[0, 1], [0, 5], [3, 7]])
    ds = _with_history(tiny_dataset, pairs)
    ds.save(tmp_path / "dataset.npz")
    back = OutfitDataset.load(tmp_path / "dataset.npz")
    np.testing.assert_array_equal(back.history, pairs)
    assert OutfitDataset.load(tmp_path / "dataset.npz").fingerprint != tiny_dataset.fingerprint
    with pytest.raises(DataError, match="history has a user"):
        _with_history(tiny_dataset, [[tiny_dataset.n_users, 0]])
    with pytest.raises(DataError, match="history has an item"):
        _with_history(tiny_dataset, [[0, tiny_dataset.catalogue.n_items]])


def test_interactions_add_history_with_its_weight(tiny_dataset):
    train_split = tiny_dataset.split("train")
    seen = np.unique(train_split.items[train_split.mask])
    unseen = int(np.setdiff1d(np.arange(tiny_dataset.catalogue.n_items), seen)[0])
    own = int(train_split.items[train_split.users == 0][0][0])  # an item of user 0's first training outfit
    ds = _with_history(tiny_dataset, [[0, unseen], [0, own]])
    plain = interactions(ds, history=0.0)
    assert plain.column_of[unseen] == -1  # history off: the item stays unseen
    mixed = interactions(ds, history=0.5)
    X = mixed.X.toarray()
    assert X[0, mixed.column_of[unseen]] == 0.5  # a history-only entry has the history weight
    assert X[0, mixed.column_of[own]] == 1.0  # an outfit entry keeps the larger value
    assert mixed.X.nnz == plain.X.nnz + 1
    # the fitted baseline scores the history item for user 0 (EASE: items co-liked by others score > 0)
    fn = fit_baseline("ease", ds, history=0.5)
    assert fn.column_of[unseen] >= 0


def test_baseline_teacher_scores_are_standardised(tiny_data_dir):
    dataset = OutfitDataset.load(tiny_data_dir / "dataset.npz")
    train_split = dataset.split("train")
    cfg = tiny_config(tiny_data_dir, loss={"kind": "kd", "teacher": "baseline:ease"})
    teacher = load_teacher("baseline:ease", dataset, train_split, cfg, torch.device("cpu"))
    assert isinstance(teacher, Teacher) and teacher.model is None
    t = teacher.score(
        torch.as_tensor(train_split.users), torch.as_tensor(train_split.items), torch.as_tensor(train_split.mask)
    )
    assert t.shape == (len(train_split),)
    assert float(t.mean()) == pytest.approx(0.0, abs=1e-5)  # standardised on the training positives
    assert float(t.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    assert teacher.thresholds.shape == (dataset.n_users,)
    raw = fit_baseline("ease", dataset)(train_split.users, train_split.items, train_split.mask)
    np.testing.assert_allclose(t.numpy(), (raw - teacher.offset) / teacher.scale, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["kd", "fnd"])
def test_a_student_distils_from_a_baseline(kind, tiny_data_dir, tmp_path):
    cfg = tiny_config(tiny_data_dir, loss={"kind": kind, "teacher": "baseline:ease"}, optim={"epochs": 1})
    metrics = train(cfg, tmp_path / kind)
    assert 0.0 <= metrics["test"]["auc"] <= 1.0
    history = json.loads((tmp_path / kind / "history.json").read_text())
    assert f"train_{kind}" in history[0] and "fn_flagged_share" in history[0]


def test_unknown_baseline_teacher_is_one_clear_error(tiny_data_dir, tmp_path):
    cfg = tiny_config(tiny_data_dir, loss={"kind": "kd", "teacher": "baseline:nope"}, optim={"epochs": 1})
    with pytest.raises(DataError, match="unknown baseline 'nope'"):
        train(cfg, tmp_path / "x")


@pytest.mark.skipif(not DIFASHION.is_dir(), reason="DiFashion release not present")
def test_difashion_history_is_loaded():
    from outfitrec.data.difashion import load_difashion

    ds = load_difashion(DIFASHION)
    assert ds.history is not None and ds.history.shape == (72529, 2)
    assert len(np.unique(ds.history[:, 0])) == ds.n_users


def test_model_teacher_scores_from_its_item_table_as_from_its_encoder(tiny_dataset, tiny_data_dir, tmp_path):
    """The frozen teacher's items are encoded once (item_table); its scores are those of re-encoding them."""
    from conftest import make_tiny_run

    run = make_tiny_run(tiny_dataset, tiny_data_dir, tmp_path / "teacher")
    dataset = OutfitDataset.load(tiny_data_dir / "dataset.npz")
    train_split = dataset.split("train")
    cfg = tiny_config(tiny_data_dir, loss={"kind": "fnd", "teacher": str(run)})
    teacher = load_teacher(str(run), dataset, train_split, cfg, torch.device("cpu"))
    assert teacher.item_table is not None and teacher.item_table.shape[0] == dataset.catalogue.n_items
    users, items, mask = (torch.as_tensor(a) for a in (train_split.users, train_split.items, train_split.mask))
    cached = teacher.score(users, items, mask)
    fresh = teacher.model(users, items, mask)  # every item through the item encoder again
    torch.testing.assert_close(cached, fresh, rtol=1e-5, atol=1e-5)
    # its thresholds r_u come from the same table: the mean of its scores of each user's training positives
    for u in (0, 3):
        mean = float(fresh[users == u].mean())
        assert float(teacher.thresholds[u]) == pytest.approx(mean, rel=1e-5, abs=1e-5)
