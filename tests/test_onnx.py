"""ONNX export of the student: parity with onnxruntime, and the recommender running on it."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_tiny_run

from outfitrec.data.outfits import DataError
from outfitrec.recommend.engine import Recommender, checkpoint_hash
from outfitrec.recommend.onnx_export import GRAPHS, OnnxScorer, export_onnx, item_inputs, parity_report, read_manifest

ATOL = 1e-4


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_dataset, tiny_data_dir):
    return make_tiny_run(tiny_dataset, tiny_data_dir, tmp_path_factory.mktemp("onnx_run"), steps=10)


@pytest.fixture(scope="module")
def torch_engine(run):
    return Recommender.from_run(run, backend="torch")


def test_export_and_parity(run, torch_engine, tmp_path):
    model = torch_engine.scorer.model
    digest = checkpoint_hash(run / "model")
    paths = export_onnx(model, tmp_path, digest)
    assert {p.name for p in paths} == {f"{g}.onnx" for g in GRAPHS} | {"manifest.json"}
    manifest = read_manifest(tmp_path)
    assert manifest["item_input"] == "pixels" and manifest["item_input_dtype"] == "uint8"
    assert OnnxScorer.exists(tmp_path, digest) and not OnnxScorer.exists(tmp_path, "other")
    report = parity_report(model, tmp_path, torch_engine.dataset)
    assert set(report) == set(GRAPHS)
    for graph, err in report.items():
        assert err < ATOL, (graph, err)


def test_recommender_on_onnx_matches_torch(run, torch_engine):
    onnx_engine = Recommender.from_run(run, backend="onnx")
    assert onnx_engine.info["backend"] == "onnx"
    assert (run / "model" / "onnx" / "manifest.json").is_file()
    np.testing.assert_allclose(onnx_engine.index.item_emb, torch_engine.index.item_emb, atol=ATOL)
    for user in (0, 7):
        a = torch_engine.recommend(user, k=5)
        b = onnx_engine.recommend(user, k=5)
        np.testing.assert_allclose([r.score for r in a], [r.score for r in b], atol=ATOL)
        assert [r.items for r in a][:2] == [r.items for r in b][:2]
    outfits = [[0, 20, 40], [3, 45]]
    np.testing.assert_allclose(onnx_engine.score(4, outfits), torch_engine.score(4, outfits), atol=ATOL)


def test_missing_export_is_reported(tmp_path):
    with pytest.raises(DataError, match="no ONNX export here"):
        read_manifest(tmp_path)


@pytest.mark.slow
def test_dynamo_exporter_is_the_fallback(tiny_dataset, tmp_path, monkeypatch):
    """When the legacy exporter fails, the dynamo exporter writes the same graphs (dynamic batch sizes)."""
    import torch

    from outfitrec.models.outfit_model import ModelConfig, OutfitModel

    cat = tiny_dataset.catalogue
    config = ModelConfig(encoder="id", size="tiny", dim=8, heads=2, n_anchors=2)
    model = OutfitModel(config, tiny_dataset.n_users, cat.n_items, cat.n_categories)
    model.bind_catalogue(cat)
    export = torch.onnx.export

    def legacy_fails(*args, **kwargs):
        if not kwargs.get("dynamo"):
            raise RuntimeError("legacy exporter unavailable")
        return export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", legacy_fails)
    export_onnx(model.eval(), tmp_path)
    scorer = OnnxScorer(tmp_path, lambda ids: item_inputs(model, ids))
    rng = np.random.default_rng(0)
    users, emb = np.arange(5) % tiny_dataset.n_users, rng.normal(size=(5, 3, 8)).astype(np.float32)
    mask = np.ones((5, 3), dtype=bool)
    mask[0, 2] = False
    with torch.no_grad():
        ref = model.score_embeddings(
            torch.as_tensor(users), model.encode_outfits(torch.as_tensor(emb), torch.as_tensor(mask))
        )
    np.testing.assert_allclose(scorer.score_embeddings(users, scorer.encode_outfits(emb, mask)), ref.numpy(), atol=ATOL)
    np.testing.assert_allclose(
        scorer.encode_items(np.arange(7)), model.encode_items(torch.arange(7)).detach().numpy(), atol=ATOL
    )
