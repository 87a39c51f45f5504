"""Experiments end to end on the tiny synthetic data: runs, reuse, tables, plots, cost, qualitative figures."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from outfitrec.data.outfits import DataError
from outfitrec.experiments import definitions
from outfitrec.experiments.core import run_experiment
from outfitrec.experiments.qualitative import pca_2d
from outfitrec.experiments.report import summarize, write_results
from outfitrec.experiments.runner import Lab, RunResult, Variant, config_hash


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def lab_results(tiny_data_dir, tmp_path_factory):
    """Teacher + plain student + FND (2 seeds) trained once on the tiny data at the smoke scale."""
    runs = tmp_path_factory.mktemp("runs")
    lab = Lab(tiny_data_dir, runs, "smoke")
    main = {v.name: v for v in definitions.main_variants("smoke")}
    variants = [main["teacher"], main["student"], main["fnd"]]
    return lab, variants, lab.run_all(variants, [0, 1])


@pytest.mark.slow
def test_runs_write_tables_and_plot(lab_results, tmp_path):
    lab, variants, results = lab_results
    assert [(r.variant.name, r.seed) for r in results] == [
        ("teacher", 0),
        ("student", 0),
        ("fnd", 0),
        ("student", 1),
        ("fnd", 1),
    ]
    paths = write_results(tmp_path, "main", results, "title", "outfitrec experiment main")
    for key in ("runs", "summary", "table", "plot"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0
    runs = _read_csv(paths["runs"])
    assert len(runs) == 5 and {"variant", "seed", "test_auc", "valid_auc", "run_dir"} <= set(runs[0])
    summary = {row["variant"]: row for row in _read_csv(paths["summary"])}
    assert set(summary) == {"teacher", "student", "fnd"}
    assert summary["student"]["n"] == "2" and summary["fnd"]["d_auc_n"] == "2"
    # the paired difference is the mean of per-seed differences of the runs' own metrics
    by = {(r.variant.name, r.seed): r.metrics["test"]["auc"] for r in results}
    expected = np.mean([by[("fnd", s)] - by[("student", s)] for s in (0, 1)])
    assert math.isclose(float(summary["fnd"]["d_auc_mean"]), expected, rel_tol=1e-4, abs_tol=1e-6)
    table = paths["table"].read_text()
    table_rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    assert len(table_rows) == 1 + 3  # header + one row per variant
    assert "Δ AUC (paired)" in table and "outfitrec experiment main" in table
    # the FND runs logged the teacher's flags, the student's did not
    assert summary["fnd"]["fn_flagged_share"] != "" and summary["student"]["fn_flagged_share"] == ""


@pytest.mark.slow
def test_same_config_reuses_the_run(lab_results):
    lab, variants, results = lab_results
    again = lab.run_variant(variants[1], 0)
    assert again.run_dir == results[1].run_dir
    assert lab.log[-1].startswith("reused")
    # another seed or another loss is another run directory
    assert config_hash(lab.variant_config(variants[1], 0)) != config_hash(lab.variant_config(variants[1], 1))
    assert lab.variant_config(variants[2], 0).loss.teacher == str(results[0].run_dir)


def test_summarize_pairs_by_seed():
    """Worked example: differences are taken per seed, then averaged (not difference of means of other seeds)."""

    def result(name, seed, auc, baseline="student"):
        v = Variant(name, baseline=None if name == "student" else baseline)
        return RunResult(v, seed, Path("."), {"test": {"auc": auc, "ndcg": auc}}, [], 1.0)

    rs = [result("student", 0, 0.60), result("student", 1, 0.70), result("kd", 0, 0.63), result("kd", 1, 0.71)]
    rows = {r["variant"]: r for r in summarize(rs, "test")}
    assert math.isclose(rows["kd"]["d_auc_mean"], 0.02)
    assert math.isclose(rows["kd"]["d_auc_std"], np.std([0.03, 0.01], ddof=1))
    assert math.isclose(rows["student"]["auc_std"], np.std([0.6, 0.7], ddof=1))
    assert math.isnan(rows["student"]["d_auc_mean"])


def test_pca_2d_recovers_the_main_axis():
    rng = np.random.default_rng(0)
    x = np.zeros((50, 5))
    x[:, 3] = rng.normal(0, 10, 50)
    x[:, 1] = rng.normal(0, 1, 50)
    proj = pca_2d(x)
    assert proj.shape == (50, 2)
    assert abs(np.corrcoef(proj[:, 0], x[:, 3])[0, 1]) > 0.999
    assert pca_2d(np.ones((3, 1))).shape == (3, 2)


@pytest.mark.slow
def test_qualitative_and_cost(lab_results, tmp_path):
    lab, _, _ = lab_results
    paths = run_experiment("qualitative", lab.data, seeds=1, out=tmp_path / "q", scale="smoke", runs=lab.runs_root)
    for key in ("space", "top"):
        assert paths[key].is_file() and paths[key].read_bytes()[:4] == b"\x89PNG"
    paths = run_experiment("cost", lab.data, out=tmp_path / "c", scale="smoke", runs=lab.runs_root)
    rows = {r["model"]: r for r in _read_csv(paths["csv"])}
    assert set(rows) == {"teacher", "student"}
    assert int(rows["student"]["backbone_params"]) * 20 <= int(rows["teacher"]["backbone_params"])
    assert float(rows["student"]["encode_ms_per_item"]) > 0


def test_cli_rejects_bad_input(tiny_data_dir, tmp_path):
    from outfitrec.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["experiment", "nope", "--data", str(tiny_data_dir), "--out", str(tmp_path)])
    assert result.exit_code != 0
    with pytest.raises(DataError, match="unknown scale"):
        run_experiment("main", tiny_data_dir, scale="huge", out=tmp_path)
    with pytest.raises(DataError, match="unknown name"):
        run_experiment("mian", tiny_data_dir, out=tmp_path)


@pytest.mark.parametrize(
    ("kind", "presets"),
    [("images", ("fmnist_teacher", "fmnist_student")), ("ids", ("difashion_teacher", "difashion_student"))],
)
def test_full_scale_trains_what_the_presets_train(kind, presets):
    """The `full` experiment scale is the dataset presets of `make demo`: same data, model, optim and loss."""
    from outfitrec.experiments.scales import base_config
    from outfitrec.train.config import config_from_dict, load_config

    for preset in presets:
        expected = load_config(preset)
        role = expected.role
        got = config_from_dict(base_config(kind, role, "full", str(expected.data.path)), source="test")
        for section in ("data", "model", "optim"):
            assert getattr(got, section) == getattr(expected, section), (preset, section)
        assert (got.loss.kind, got.loss.temperature) == (expected.loss.kind, expected.loss.temperature)


@pytest.mark.slow
def test_cold_experiment_evaluates_cold_users_only(tiny_data_dir, tmp_path):
    """The cold study: half the users cold among warm ones; its metrics count the cold users only."""
    paths = run_experiment("cold", tiny_data_dir, seeds=1, out=tmp_path / "cold", scale="smoke", runs=tmp_path / "runs")
    rows = {r["variant"]: r for r in _read_csv(paths["runs"])}
    assert {"teacher-cold1", "student-cold1", "kd-cold1", "fnd-cold5"} <= set(rows)
    metrics = [json.loads((Path(r["run_dir"]) / "metrics.json").read_text()) for r in rows.values()]
    assert {m["test"]["n_users"] for m in metrics} <= {5, 6}  # 12 users, half of them cold (some lack a test outfit)
    assert "cold users' valid/test candidates only" in Path(paths["table"]).read_text()


def test_backbone_study_adds_the_tiny_id_student_on_id_data_only(tiny_data_dir, tmp_path):
    """The 6-wide id student (under 1/20 of the id teacher) is a backbone variant on id data, not on images."""
    images = {v.name for v in definitions.backbone_variants("smoke", "images")}
    ids = {v.name: v for v in definitions.backbone_variants("smoke", "ids")}
    assert not any("tiny" in name for name in images)
    assert {"student-tiny", "fnd+kd-tiny", "mse-tiny"} <= set(ids)
    assert ids["fnd+kd-tiny"].baseline == "student-tiny" and ids["fnd+kd-tiny"].uses_teacher
    from outfitrec.experiments.runner import deep_merge
    from outfitrec.experiments.scales import base_config
    from outfitrec.train.config import ConfigError, config_from_dict

    raw = deep_merge(base_config("ids", "student", "full", str(tiny_data_dir)), ids["student-tiny"].overrides)
    assert config_from_dict(raw, source="test").model.size == "tiny"
    with pytest.raises(ConfigError, match="needs encoder 'id'"):  # a CNN has no tiny preset
        Lab(tiny_data_dir, tmp_path / "runs", "smoke").config("student", ids["student-tiny"].overrides, 0, "x")


@pytest.mark.slow
def test_a_variant_can_name_its_own_teacher(lab_results):
    lab, _, _ = lab_results
    teachers = {v.name: v for v in definitions.teachers_variants("smoke")}
    assert {"teacher", "hybrid", "student", "fnd+kd", "fnd+kd+cf", "kd-hybrid", "fnd+kd-ease"} <= set(teachers)
    assert lab.variant_config(teachers["fnd+kd-ease"], 0).loss.teacher == "baseline:ease"
    # without its own teacher a distilling variant reads the shared teacher run
    assert lab.variant_config(teachers["fnd+kd"], 0).loss.teacher == str(lab.teacher_dir())
    # the hybrid: the shared teacher mixed with EASE and PureSVD on validation, one row, and a teacher
    hybrid = lab.run_variant(teachers["hybrid"], 0)
    assert {"valid", "test"} <= set(hybrid.metrics) and (hybrid.run_dir / "hybrid.json").is_file()
    assert lab.variant_config(teachers["kd-hybrid"], 1).loss.teacher == str(hybrid.run_dir)
    result = lab.run_variant(teachers["fnd+kd-hybrid"], 0)
    assert 0.0 <= result.metrics["test"]["auc"] <= 1.0
    # a student mixed with the same baselines: one hybrid per seed, made of that seed's run
    result = lab.run_variant(teachers["fnd+kd"], 0)
    mixed = lab.run_variant(teachers["fnd+kd+cf"], 0)
    assert mixed.seed == 0 and mixed.run_dir.name.startswith(f"hybrid-{result.run_dir.name}")
    assert json.loads((mixed.run_dir / "hybrid.json").read_text())["components"][0]["source"].endswith(
        result.run_dir.name
    )
    # on id data the students are the tiny preset
    ids = {v.name: v for v in definitions.teachers_variants("smoke", "ids")}
    assert ids["student"].overrides["model"]["size"] == "tiny"


def test_the_path_of_a_mixed_row_builds_nothing(lab_results):
    lab, _, _ = lab_results
    teachers = {v.name: v for v in definitions.teachers_variants("smoke")}
    path = lab.run_dir_of(teachers["fnd+kd+cf"], 7)  # seed 7: its student run does not exist
    assert path.name.startswith("hybrid-fnd+kd-s7-") and not path.exists()
    assert not lab.run_dir_of(teachers["fnd+kd"], 7).exists()
