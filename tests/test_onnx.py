"""ONNX export of the student: parity with onnxruntime, and the recommender running on it."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_tiny_run

from outfitrec.data.outfits import DataError
from outfitrec.recommend.engine import Recommender, checkpoint_hash
from outfitrec.recommend.onnx_export import GRAPHS, OnnxScorer, export_onnx, parity_report, read_manifest

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
