"""A checkpoint knows the user / item numbering of its training data; every consumer refuses another one."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config

import outfitrec.models.checkpoint as checkpoint
from outfitrec.data.negatives import write_candidate_files
from outfitrec.data.outfits import Catalogue, DataError, OutfitDataset
from outfitrec.data.synthetic import make_synthetic
from outfitrec.evaluate.protocol import evaluate_run
from outfitrec.models.checkpoint import check_data_numbering, data_numbering, load_model, read_model_info
from outfitrec.recommend.engine import Recommender
from outfitrec.train.loop import train

ID_MODEL = {"encoder": "id", "size": "student", "dim": 8, "heads": 2, "n_anchors": 3}


def _folder(dataset: OutfitDataset, path: Path) -> Path:
    path.mkdir(parents=True)
    dataset.save(path / "dataset.npz")
    write_candidate_files(dataset, path, k=4, seed=0)
    return path


def _renamed(dataset: OutfitDataset, users=None, items=None, categories=None) -> OutfitDataset:
    cat = dataset.catalogue
    catalogue = Catalogue(
        cat.item_category,
        list(categories if categories is not None else cat.category_names),
        item_names=items if items is not None else cat.item_names,
        images=cat.images,
    )
    names = users if users is not None else dataset.user_names
    return replace(dataset, catalogue=catalogue, user_names=np.asarray(names), fingerprint=None)


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_dataset):
    root = tmp_path_factory.mktemp("numbering")
    named = _renamed(tiny_dataset, users=[f"user{i}" for i in range(tiny_dataset.n_users)])
    data = _folder(named, root / "data")
    run = root / "run"
    train(tiny_config(data, model=ID_MODEL, optim={"epochs": 1}), run)
    return named, data, run, root


def test_model_json_holds_the_numbering(base):
    named, _, run, _ = base
    info = read_model_info(run / "model")
    assert info["data"]["n_users"] == 12 and info["data"]["n_items"] == 60 and info["data"]["n_categories"] == 3
    assert info["data"]["user_names"][:2] == ["user0", "user1"]
    assert info["data"] == data_numbering(named)
    assert load_model(run / "model").checkpoint_data == info["data"]


def test_evaluate_refuses_renumbered_users(base):
    named, _, run, root = base
    renumbered = _folder(_renamed(named, users=list(named.user_names[::-1])), root / "renumbered")
    with pytest.raises(
        DataError, match=r"^model: user names differ from the dataset's \(user 0 is user0 there, user11 here\)"
    ):
        evaluate_run(run, "test", renumbered)
    assert evaluate_run(run, "test")["n_users"] == 12  # its own data still evaluates


def test_evaluate_refuses_other_counts_and_names(base, tiny_dataset):
    named, _, run, root = base
    more = _folder(make_synthetic(n_users=14, items_per_category=20, outfits_per_user=8, seed=0), root / "more")
    with pytest.raises(DataError, match="^model: the model knows 12 users, the dataset has 14"):
        evaluate_run(run, "test", more)
    items = [f"it{i}" for i in range(60)]
    with pytest.raises(DataError, match=r"item names differ from the dataset's \(item 0 is 0 there, it0 here\)"):
        check_data_numbering(load_model(run / "model"), _renamed(named, items=items))
    with pytest.raises(DataError, match=r"category names differ .*category 0 is top there, hat here"):
        check_data_numbering(load_model(run / "model"), _renamed(named, categories=["hat", "bottom", "shoes"]))


def test_large_numberings_are_compared_by_hash(base, monkeypatch):
    named, _, run, _ = base
    monkeypatch.setattr(checkpoint, "MAX_STORED_NAMES", 5)
    info = data_numbering(named)
    assert (
        "user_names" not in info and "item_names" not in info and info["category_names"] == ["top", "bottom", "shoes"]
    )
    renumbered = _renamed(named, users=list(named.user_names[::-1]))
    with pytest.raises(DataError, match=r"user names differ from the dataset's \(SHA-256 [0-9a-f]{12} there"):
        check_data_numbering({"n_users": 12, "data": info}, renumbered)


def test_distillation_refuses_a_teacher_of_other_data(base):
    named, _, run, root = base
    renumbered = _folder(_renamed(named, users=list(named.user_names[::-1])), root / "renumbered-teacher")
    config = tiny_config(renumbered, model=ID_MODEL, optim={"epochs": 1}, loss={"kind": "fnd", "teacher": str(run)})
    with pytest.raises(DataError, match=r"^teacher: user names differ from the dataset's \(user 0 is user0 there"):
        train(config, root / "student")
    assert not (root / "student").exists()  # refused: no half-made run folder is left for later runs
    more = _folder(make_synthetic(n_users=14, items_per_category=20, outfits_per_user=8, seed=1), root / "more-t")
    config = tiny_config(more, model=ID_MODEL, optim={"epochs": 1}, loss={"kind": "fnd", "teacher": str(run)})
    with pytest.raises(DataError, match="^teacher: the teacher knows 12 users, the dataset has 14"):
        train(config, root / "student-more")
    # the failed runs trained nothing: the same run directory is usable again
    good = tiny_config(more, model=ID_MODEL, optim={"epochs": 1})
    assert train(good, root / "student-more")["test"]["n_users"] == 14


def test_recommender_refuses_other_data(base):
    named, data, run, root = base
    renumbered = _folder(_renamed(named, users=list(named.user_names[::-1])), root / "renumbered-rec")
    with pytest.raises(DataError, match="user names differ"):
        Recommender.from_run(run / "model", renumbered, cache=False)
    assert Recommender.from_run(run / "model", data, cache=False).info["n_users"] == 12


def test_old_checkpoints_are_checked_by_their_counts(base, tmp_path):
    named, _, run, _ = base
    old = tmp_path / "old"
    old.mkdir()
    (old / "model.safetensors").write_bytes((run / "model" / "model.safetensors").read_bytes())
    info = json.loads((run / "model" / "model.json").read_text())
    del info["data"]
    (old / "model.json").write_text(json.dumps(info))
    model = load_model(old)
    assert model.checkpoint_data is None
    check_data_numbering(model, _renamed(named, users=list(named.user_names[::-1])))  # names unknown: accepted
    more = make_synthetic(n_users=14, items_per_category=20, outfits_per_user=8, seed=0)
    with pytest.raises(DataError, match="the model knows 12 users, the dataset has 14"):
        check_data_numbering(model, more)
    fewer_items = make_synthetic(n_users=12, items_per_category=10, outfits_per_user=8, seed=0)
    with pytest.raises(DataError, match="the model knows 60 items, the dataset has 30"):
        check_data_numbering(model, fewer_items)
