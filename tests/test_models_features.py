"""Frozen EfficientNet-Lite2: local ImageNet weights load; feature extraction is cached and resumable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from outfitrec.data.outfits import Catalogue, DataError
from outfitrec.models import ModelConfig, OutfitModel
from outfitrec.models.features import (
    FEATURE_DIM,
    backbone_features,
    efficientnet_parameter_count,
    extract_features,
    load_efficientnet_lite2,
    weights_path,
)


@pytest.fixture(scope="module")
def backbone():
    return load_efficientnet_lite2()


@pytest.fixture(scope="module")
def small_catalogue(tiny_dataset) -> Catalogue:
    """Five items of the tiny dataset (EfficientNet costs ~0.1 s per image on one core)."""
    cat = tiny_dataset.catalogue
    ids = np.array([0, 1, 20, 21, 40])
    return Catalogue(cat.item_category[ids], cat.category_names, images=cat.images[ids])


def test_pretrained_weights_are_the_wheels(backbone):
    assert weights_path().name.startswith("efficientnet-lite2") and weights_path().is_file()
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    name = "_conv_stem.weight"
    assert torch.equal(backbone.state_dict()[name], state[name])  # not a random initialisation
    assert 4_000_000 < efficientnet_parameter_count() < 6_000_000


def test_features_of_grey_and_rgb_items(backbone, small_catalogue):
    grey = small_catalogue.images[:2]
    feats = backbone_features(backbone, grey)
    assert feats.shape == (2, FEATURE_DIM) and feats.dtype == np.float32 and np.isfinite(feats).all()
    assert not np.allclose(feats[0], feats[1])
    rgb = np.repeat(grey[..., None], 3, axis=-1)  # a grey image given as RGB: the same features
    assert np.allclose(backbone_features(backbone, rgb), feats, atol=1e-4)


def test_extraction_resumes_after_interruption(backbone, small_catalogue, tmp_path):
    first = extract_features(
        small_catalogue, tmp_path / "a", chunk_size=2, max_chunks=1, model=backbone, progress=False
    )
    assert not first["complete"] and first["computed_chunks"] == 1 and first["remaining_chunks"] == 2
    assert not (tmp_path / "a" / "features.npy").exists()
    assert (tmp_path / "a" / "chunks" / "chunk_000000.npy").exists()
    second = extract_features(small_catalogue, tmp_path / "a", chunk_size=2, model=backbone, progress=False)
    assert second["complete"] and second["skipped_chunks"] == 1 and second["computed_chunks"] == 2
    assert not (tmp_path / "a" / "chunks").exists()
    uninterrupted = extract_features(small_catalogue, tmp_path / "b", chunk_size=2, model=backbone, progress=False)
    resumed = np.load(tmp_path / "a" / "features.npy")
    assert np.array_equal(resumed, np.load(tmp_path / "b" / "features.npy"))
    assert uninterrupted["computed_chunks"] == 3
    again = extract_features(small_catalogue, tmp_path / "a", chunk_size=2, model=backbone, progress=False)
    assert again["already_done"]

    # the cached features drive a 'pretrained' model
    config = ModelConfig(encoder="pretrained", features_path=str(tmp_path / "a" / "features.npy"), dim=16, n_anchors=4)
    model = OutfitModel(config, 2, small_catalogue.n_items, small_catalogue.n_categories)
    model.bind_catalogue(small_catalogue)
    scores = model.eval()(torch.tensor([0, 1]), torch.tensor([[0, 2, 4], [1, 3, 4]]), torch.ones(2, 3, dtype=bool))
    assert scores.shape == (2,) and torch.isfinite(scores).all()
    assert model.parameter_counts()["backbone"] == efficientnet_parameter_count()


def test_features_command_resumes(tmp_path):
    from typer.testing import CliRunner

    from outfitrec.cli import app
    from outfitrec.data.outfits import DataError
    from outfitrec.data.synthetic import make_synthetic

    make_synthetic(n_users=2, items_per_category=1, outfits_per_user=3).save(tmp_path / "data" / "dataset.npz")
    args = ["features", str(tmp_path / "data"), str(tmp_path / "out"), "--chunk-size", "2", "--threads", "1"]
    first = CliRunner().invoke(app, [*args, "--max-chunks", "1"])
    assert first.exit_code == 0, first.output
    assert '"complete": false' in first.output
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0 and '"skipped_chunks": 1' in second.output
    assert np.load(tmp_path / "out" / "features.npy").shape == (3, FEATURE_DIM)
    bad = CliRunner().invoke(app, ["features", str(tmp_path / "missing"), str(tmp_path / "o2")])
    assert isinstance(bad.exception, DataError) and "missing" in str(bad.exception)


def test_features_of_another_dataset_are_refused(backbone, tmp_path):
    """Same item count, other content: neither an unfinished nor a finished extraction is reused."""
    from outfitrec.data.synthetic import make_synthetic

    a, b = tmp_path / "a", tmp_path / "b"
    for folder, seed in ((a, 0), (b, 1)):
        folder.mkdir()
        make_synthetic(n_users=3, items_per_category=1, outfits_per_user=2, seed=seed).save(folder / "dataset.npz")
    out = tmp_path / "feats"
    first = extract_features(a, out, chunk_size=2, max_chunks=1, model=backbone, progress=False)
    assert not first["complete"]
    with pytest.raises(DataError, match="another dataset"):
        extract_features(b, out, chunk_size=2, model=backbone, progress=False)
    done = extract_features(a, out, chunk_size=2, model=backbone, progress=False)
    assert done["complete"]
    with pytest.raises(DataError, match="made from another dataset"):
        extract_features(b, out, chunk_size=2, model=backbone, progress=False)
    assert extract_features(a, out, chunk_size=2, model=backbone, progress=False)["already_done"]
