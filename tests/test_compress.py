"""Whole-model students (issue 14): the serving presets, their checkpoints and serving, the compress experiment."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from conftest import tiny_config

from outfitrec.experiments import definitions
from outfitrec.experiments.runner import config_hash
from outfitrec.models.checkpoint import load_model, load_run, save_model
from outfitrec.models.outfit_model import SERVING_PRESETS, ModelConfig, OutfitModel
from outfitrec.train.config import load_config
from outfitrec.train.loop import train

# the model section of configs/fmnist_teacher.yaml and fmnist_student.yaml (the backbone-only student)
TEACHER = {"encoder": "cnn", "size": "teacher", "dim": 64, "heads": 4, "n_anchors": 16, "dropout": 0.0}
STUDENT = {**TEACHER, "size": "student"}


def _model(dataset, **fields) -> OutfitModel:
    torch.manual_seed(0)
    cat = dataset.catalogue
    model = OutfitModel(ModelConfig(**fields), dataset.n_users, cat.n_items, cat.n_categories)
    model.bind_catalogue(cat)
    return model.eval()


@pytest.mark.parametrize("preset", sorted(SERVING_PRESETS))
def test_whole_presets_shrink_what_serving_pays_for(tiny_dataset, preset):
    teacher = _model(tiny_dataset, **TEACHER)
    student = _model(tiny_dataset, **STUDENT)
    whole = _model(tiny_dataset, **{**STUDENT, **SERVING_PRESETS[preset]})
    assert len(whole.outfit_encoder.blocks) == SERVING_PRESETS[preset]["blocks"] < len(teacher.outfit_encoder.blocks)
    # the backbone is the student's; the rest (Set Transformer, anchors, heads) shrinks by far
    assert whole.parameter_counts()["backbone"] == student.parameter_counts()["backbone"]
    assert whole.parameter_counts()["rest"] * 10 < student.parameter_counts()["rest"]
    t, w = teacher.bytes_per_user(), whole.bytes_per_user()
    assert t == {"stored": 16 * 64 * 4, "served": 64 * 4}
    assert w["served"] == SERVING_PRESETS[preset]["user_dim"] * 2  # float16
    assert w["served"] * 10 <= t["served"] and w["stored"] * 10 <= t["stored"]
    width = SERVING_PRESETS[preset]["user_dim"]
    if SERVING_PRESETS[preset].get("scorer") == "dot":
        assert whole.scorer.users.weight.shape == (tiny_dataset.n_users, width)
    else:
        assert whole.scorer.anchors.shape == (tiny_dataset.n_users, 4, width)


def test_the_dot_scorer_with_user_dim_scores_e_u_against_a_projection(tiny_dataset):
    """<e_u, W z>: W [user_dim, outfit_dim] without bias; no projection when user_dim is the outfit width."""
    same = _model(tiny_dataset, **{**STUDENT, "scorer": "dot", "dim": 16, "heads": 2, "user_dim": 16})
    assert same.scorer.project is None and same.scorer.users.weight.shape[1] == 16
    model = _model(tiny_dataset, **{**STUDENT, "scorer": "dot", "dim": 16, "heads": 2, "user_dim": 5})
    assert model.scorer.project.weight.shape == (5, 16) and model.scorer.project.bias is None
    users, z = torch.tensor([0, 1, 0]), torch.randn(3, 16)
    with torch.no_grad():
        expected = (model.scorer.users.weight[users] * (z @ model.scorer.project.weight.T)).sum(-1)
        assert torch.allclose(model.score_embeddings(users, z), expected, atol=1e-6)
    assert model.bytes_per_user() == {"stored": 5 * 4, "served": 5 * 4}


def test_a_half_precision_item_table_scores_like_float32(tiny_dataset):
    model = _model(tiny_dataset, **{**STUDENT, **SERVING_PRESETS["whole"]})
    test = tiny_dataset.split("test")
    users, items, mask = (torch.as_tensor(a) for a in (test.users, test.items, test.mask))
    with torch.no_grad():
        table = model.encode_all_items()
        full = model(users, items, mask, item_table=table)
        half = model(users, items, mask, item_table=table.half())
        assert half.dtype == torch.float32
        assert torch.allclose(full, half, atol=2e-2)
        assert not torch.equal(full, half)  # the rounding is real


@pytest.mark.parametrize("preset", sorted(SERVING_PRESETS))
def test_whole_student_trains_saves_loads_and_serves(tiny_data_dir, tmp_path, preset):
    """A training run of the preset, its checkpoint round trip, and the recommender's float16 storage."""
    from outfitrec.recommend.engine import Recommender
    from outfitrec.recommend.fast import CollapsedScorer

    model_fields = {**tiny_config(tiny_data_dir).model.model_dump(), **SERVING_PRESETS[preset]}
    config = tiny_config(tiny_data_dir, model=model_fields, optim={"epochs": 1})
    metrics = train(config, tmp_path / "run")
    assert 0.0 <= metrics["test"]["auc"] <= 1.0
    run = load_run(tmp_path / "run")
    model = run.model.eval()
    for key, value in SERVING_PRESETS[preset].items():
        assert getattr(model.config, key) == value
    save_model(model, tmp_path / "copy", {"role": "test"})
    again = load_model(tmp_path / "copy").eval()
    again.bind_catalogue(run.dataset.catalogue)
    test = run.dataset.split("test")
    args = [torch.as_tensor(a) for a in (test.users, test.items, test.mask)]
    with torch.no_grad():
        assert torch.equal(model(*args), again(*args))

    scorer = CollapsedScorer(model)
    assert scorer.user_matrix.dtype == np.float16
    assert scorer.bytes_per_user == model.bytes_per_user()["served"]
    z = model.outfit_embeddings(args[1], args[2]).detach().numpy()
    with torch.no_grad():
        ref = model.score_embeddings(args[0], torch.from_numpy(z)).numpy()
    got = scorer.score_embeddings(test.users, z)
    assert np.abs(got - ref).max() <= 4e-3 * max(1.0, np.abs(ref).max())

    rec = Recommender.from_run(tmp_path / "run", cache=False)
    assert rec.index.item_emb.dtype == np.float16 and rec.info["bytes_per_user"] == scorer.bytes_per_user
    recs = rec.recommend(0, k=3, use_pool=False)
    assert len(recs) == 3 and all(np.isfinite(r.score) for r in recs)


def test_the_yaml_presets_are_the_measured_whole_model_student():
    """configs/fmnist_student_whole*.yaml train the compress experiment's whole-dot-long runs (plain, FND + CL)."""
    from outfitrec.experiments.runner import deep_merge
    from outfitrec.experiments.scales import base_config
    from outfitrec.train.config import config_from_dict

    variants = {v.name: v for v in definitions.compress_variants("full")}
    plain, distilled = load_config("fmnist_student_whole"), load_config("fmnist_student_whole_distilled")
    teacher = "runs/demo/teacher"
    for config, name in ((plain, "whole-dot-long"), (distilled, "whole-dot-long+fnd+cl")):
        raw = deep_merge(base_config("images", "student", "full", str(config.data.path)), variants[name].overrides)
        if variants[name].uses_teacher:
            raw = deep_merge(raw, {"loss": {"teacher": teacher}})
        assert config_hash(config) == config_hash(config_from_dict(raw, "test")), name
    assert distilled.loss.teacher == teacher
    assert distilled.loss == load_config("fmnist_student_distilled").loss


def test_compress_variants_pair_each_distilled_student_with_its_plain_one():
    for scale, schedules in (("full", {"": None, "-long": definitions.LONG["optim"]}), ("quick", {"": None})):
        variants = {v.name: v for v in definitions.compress_variants(scale)}
        expected = {"teacher", "teacher+cl", "student", "fnd+cl"}
        for preset in SERVING_PRESETS:
            for suffix, optim in schedules.items():
                name = preset + suffix
                expected |= {name, f"{name}+cl", f"{name}+fnd+cl", f"{name}+fnd+cl@teacher+cl"}
                fair = variants[f"{name}+fnd+cl@teacher+cl"]
                assert fair.teacher.name == "teacher+cl" and fair.baseline == f"{name}+fnd+cl"
                assert fair.overrides == variants[f"{name}+fnd+cl"].overrides
                plain, distilled, cl = variants[name], variants[f"{name}+fnd+cl"], variants[f"{name}+cl"]
                assert not cl.uses_teacher and cl.baseline == name and cl.overrides["contrastive"]["enabled"]
                assert cl.overrides["model"] == SERVING_PRESETS[preset] and cl.overrides.get("optim") == optim
                assert cl.overrides.get("loss") is None
                assert plain.overrides["model"] == SERVING_PRESETS[preset] and not plain.uses_teacher
                assert plain.overrides.get("optim") == optim
                assert distilled.uses_teacher and distilled.baseline == name
                assert distilled.overrides["model"] == SERVING_PRESETS[preset]
                assert distilled.overrides.get("optim") == optim
                assert distilled.overrides["loss"]["kind"] == "fnd" and distilled.overrides["contrastive"]["enabled"]
        assert set(variants) == expected, scale
        assert variants["teacher"].role == "teacher"


def test_config_hash_ignores_later_model_fields_at_their_default():
    """Runs trained before a model field existed keep their directory names (and are reused, not retrained).

    fc6d8985 is the run directory hash of configs/fmnist_teacher.yaml before `blocks`, `user_dim` and
    `serving_dtype` existed (runs/experiments/*-full/runs/teacher-s0-fc6d8985). A new ModelConfig field belongs
    in runner.LATER_MODEL_FIELDS.
    """
    teacher = load_config("fmnist_teacher")
    assert config_hash(teacher) == "fc6d8985"
    changed = teacher.model_copy(update={"model": teacher.model.model_copy(update={"blocks": 1})})
    assert config_hash(changed) != "fc6d8985"


def _read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_compress_experiment_writes_the_pareto_table(tiny_data_dir, tmp_path):
    from outfitrec.experiments.core import run_experiment

    only = ["teacher", "whole", "whole+fnd+cl"]
    paths = run_experiment(
        "compress", tiny_data_dir, seeds=1, out=tmp_path / "out", scale="smoke", runs=tmp_path / "runs", only=only
    )
    rows = {r["variant"]: r for r in _read_csv(paths["pareto_csv"])}
    assert set(rows) == set(only)
    for name in ("whole", "whole+fnd+cl"):
        assert int(rows[name]["bytes_per_user_served"]) == 24
        assert float(rows[name]["outfits_per_s"]) > 0 and float(rows[name]["recommend_p50_ms"]) > 0
        assert float(rows[name]["served_auc_mean"]) == pytest.approx(float(rows[name]["auc_mean"]), abs=0.05)
    assert paths["pareto_plot"].read_bytes()[:4] == b"\x89PNG"
    text = paths["table"].read_text()
    assert "Targets (issue 14)" in text and "outfitrec experiment compress" in text
