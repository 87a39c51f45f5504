"""Checkpoints: safetensors + JSON round trip gives identical scores; bad files give clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from outfitrec.models import CheckpointError, ModelConfig, OutfitModel, load_model, read_model_info, save_model


def trained_like_model(dataset, encoder: str) -> OutfitModel:
    torch.manual_seed(1)
    cat = dataset.catalogue
    model = OutfitModel(
        ModelConfig(encoder=encoder, size="student", dim=16, n_anchors=4),
        dataset.n_users,
        cat.n_items,
        cat.n_categories,
    )
    model.bind_catalogue(cat)
    with torch.no_grad():  # move every weight away from its initial value
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("encoder", ["cnn", "id"])
def test_round_trip_identical_scores(tiny_dataset, tmp_path, encoder):
    model = trained_like_model(tiny_dataset, encoder)
    model.set_seen_items(np.arange(0, tiny_dataset.catalogue.n_items, 2))
    tr = tiny_dataset.split("train")
    users, items, mask = (torch.from_numpy(a) for a in (tr.users, tr.items, tr.mask))
    before = model(users, items, mask)
    save_model(model, tmp_path / "ck", meta={"role": "teacher", "epoch": 3})
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["model.json", "model.safetensors"]
    loaded = load_model(tmp_path / "ck")
    assert not loaded.training and loaded.checkpoint_meta == {"role": "teacher", "epoch": 3}
    loaded.bind_catalogue(tiny_dataset.catalogue)
    assert torch.equal(loaded(users, items, mask), before)
    info = read_model_info(tmp_path / "ck" / "model.json")
    assert info["config"] == model.config and info["n_items"] == tiny_dataset.catalogue.n_items


def test_corrupted_weights_are_reported(tiny_dataset, tmp_path):
    save_model(trained_like_model(tiny_dataset, "id"), tmp_path / "ck")
    weights = tmp_path / "ck" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_model(tmp_path / "ck")
    weights.write_bytes(bytes(data[:40]))  # truncated, hash removed: the safetensors reader must refuse it
    info = json.loads((tmp_path / "ck" / "model.json").read_text())
    del info["weights_sha256"]
    (tmp_path / "ck" / "model.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="safetensors"):
        load_model(tmp_path / "ck")


def test_mismatched_shapes_name_the_tensor(tiny_dataset, tmp_path):
    save_model(trained_like_model(tiny_dataset, "id"), tmp_path / "ck")
    path = tmp_path / "ck" / "model.json"
    info = json.loads(path.read_text())
    info["n_users"] += 1
    del info["weights_sha256"]
    path.write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="scorer.anchors"):
        load_model(tmp_path / "ck")


def test_bad_json_and_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "nothing")
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "model.json").write_text(
        '{"format": "outfitrec-model", "version": 1, "n_users": 2, '
        '"n_items": 3, "n_categories": 1, "config": {"encoder": "gan"}}'
    )
    with pytest.raises(CheckpointError, match="config.encoder"):
        load_model(tmp_path / "ck")
    (tmp_path / "ck" / "model.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="model.json"):
        load_model(tmp_path / "ck")
