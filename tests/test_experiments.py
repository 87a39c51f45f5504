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
    assert [(r.variant.name, r.seed) for r in results] == [  # main: one teacher per seed
        ("teacher", 0),
        ("student", 0),
        ("fnd", 0),
        ("teacher", 1),
        ("student", 1),
        ("fnd", 1),
    ]
    paths = write_results(tmp_path, "main", results, "title", "outfitrec experiment main")
    for key in ("runs", "summary", "table", "plot"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0
    runs = _read_csv(paths["runs"])
    assert len(runs) == 6 and {"variant", "seed", "test_auc", "valid_auc", "run_dir"} <= set(runs[0])
    summary = {row["variant"]: row for row in _read_csv(paths["summary"])}
    assert set(summary) == {"teacher", "student", "fnd"}
    assert summary["student"]["n"] == "2" and summary["fnd"]["d_auc_n"] == "2" and summary["teacher"]["n"] == "2"
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


def test_main_pairs_each_student_seed_with_the_teacher_of_its_seed(tiny_data_dir, tmp_path):
    """Teacher seeds: one teacher per seed, each distilling student of seed s taught by the teacher of seed s."""
    from outfitrec.experiments.runner import is_shared
    from outfitrec.train.config import load_config

    main = {v.name: v for v in definitions.main_variants("quick")}
    assert {"teacher", "teacher+cl", "teacher-es", "fnd+cl@teacher+cl", "fnd+cl@teacher-es", "fnd+cl@t0"} <= set(main)
    for name in ("teacher", "teacher+cl", "teacher-es"):
        assert main[name].role == "teacher" and main[name].per_seed and not is_shared(main[name])
    # the fair teacher gets the best student's contrastive settings; the converged one early stopping
    best = load_config("fmnist_student_distilled").contrastive.model_dump()
    assert {k: best[k] for k in definitions.CL["contrastive"]} == definitions.CL["contrastive"]
    assert main["teacher+cl"].overrides == definitions.CL
    assert main["teacher-es"].overrides == {"optim": {"epochs": 30, "patience": 3}}
    taught = [v for v in main.values() if v.uses_teacher and v.name != "fnd+cl@t0"]
    assert taught and all(isinstance(v.teacher, Variant) for v in taught)
    assert main["fnd+cl@teacher+cl"].teacher is main["teacher+cl"]
    assert main["fnd+cl@teacher-es"].teacher is main["teacher-es"]
    assert main["fnd"].teacher is main["teacher"]

    lab = Lab(tiny_data_dir, tmp_path / "runs", "smoke", no_train=True)  # paths only: nothing is trained
    teacher = [lab.run_dir_of(main["teacher"], s) for s in (0, 1, 2)]
    assert len(set(teacher)) == 3 and teacher[0] == lab.teacher_dir()  # seed 0 is the shared teacher's run
    for s in (0, 1, 2):
        assert lab.variant_config(main["fnd"], s).loss.teacher == str(teacher[s])
        assert lab.variant_config(main["fnd+cl@teacher-es"], s).loss.teacher == str(
            lab.run_dir_of(main["teacher-es"], s)
        )
        # the variance-split twin: every seed taught by the seed-0 teacher
        assert lab.variant_config(main["fnd+cl@t0"], s).loss.teacher == str(teacher[0])
    # where both configs agree (seed 0) the twin is the same run
    assert lab.run_dir_of(main["fnd+cl@t0"], 0) == lab.run_dir_of(main["fnd+cl"], 0)
    assert lab.run_dir_of(main["fnd+cl@t0"], 1) != lab.run_dir_of(main["fnd+cl"], 1)
    assert not any(p.exists() for p in teacher) and lab.log == []
    # other experiments keep the one shared teacher
    alpha = {v.name: v for v in definitions.alpha_variants("quick")}
    assert alpha["fnd"].teacher is None and lab.variant_config(alpha["fnd"], 2).loss.teacher == str(teacher[0])


def test_main_comparison_carries_the_shipped_whole_model_student_as_compress_runs_it(tiny_data_dir, tmp_path):
    """Full scale: main's whole-model variants are compress's (same run folders), taught by the seed's teachers."""
    main = {v.name: v for v in definitions.main_variants("full")}
    compress = {v.name: v for v in definitions.compress_variants("full")}
    assert set(definitions.MAIN_WHOLE_MODEL) <= set(main)
    lab = Lab(tiny_data_dir, tmp_path / "runs", "full", no_train=True)
    for name in definitions.MAIN_WHOLE_MODEL:
        for s in (0, 2):
            assert lab.run_dir_of(main[name], s) == lab.run_dir_of(compress[name], s)
    for s in (0, 1):
        distilled = lab.variant_config(main["whole-dot-long+fnd+cl"], s)
        assert distilled.loss.teacher == str(lab.run_dir_of(main["teacher"], s))
        fair = lab.variant_config(main["whole-dot-long+fnd+cl@teacher+cl"], s)
        assert fair.loss.teacher == str(lab.run_dir_of(main["teacher+cl"], s))
    # the demo's preset is the FND + CL variant's model and losses
    from outfitrec.train.config import load_config

    shipped = load_config("fmnist_student_whole_distilled")
    assert distilled.model == shipped.model and distilled.contrastive == shipped.contrastive
    assert (distilled.loss.kind, distilled.loss.alpha) == (shipped.loss.kind, shipped.loss.alpha)
    claimed = {c.a for c in definitions.MAIN_CLAIMS} | {c.b for c in definitions.MAIN_CLAIMS}
    assert set(definitions.MAIN_WHOLE_MODEL) <= claimed | {"whole-dot-long+cl"}


def _result(name, seed, auc, baseline="student", role="student", per_seed=False, spread_of=None, share=None):
    v = Variant(name, baseline=baseline, role=role, per_seed=per_seed, spread_of=spread_of)
    metrics = {"test": {"auc": auc, "ndcg": auc}}
    if share is not None:
        metrics["true_utility"] = {"true_share": share, "oracle_recall@10": 0.0}
    return RunResult(v, seed, Path("."), metrics, [], 1.0)


def test_per_seed_teachers_are_paired_by_seed_and_the_spread_is_split():
    from outfitrec.experiments.report import spread_markdown, spread_rows

    rs = [
        _result("student", 0, 0.60, None),
        _result("student", 1, 0.70, None),
        _result("student", 2, 0.65, None),
        _result("teacher", 0, 0.70, role="teacher", per_seed=True),
        _result("teacher", 1, 0.75, role="teacher", per_seed=True),
        _result("teacher", 2, 0.80, role="teacher", per_seed=True),
        _result("fnd+cl", 0, 0.70),
        _result("fnd+cl", 1, 0.74),
        _result("fnd+cl", 2, 0.78),
        _result("fnd+cl@t0", 0, 0.70, "fnd+cl", spread_of="fnd+cl"),
        _result("fnd+cl@t0", 1, 0.71, "fnd+cl", spread_of="fnd+cl"),
        _result("fnd+cl@t0", 2, 0.72, "fnd+cl", spread_of="fnd+cl"),
    ]
    rows = {r["variant"]: r for r in summarize(rs, "test")}
    # seed by seed: (0.70 - 0.60, 0.75 - 0.70, 0.80 - 0.65), not every teacher against every student
    assert rows["teacher"]["d_auc_n"] == 3 and math.isclose(rows["teacher"]["d_auc_mean"], 0.10)
    # the shared (one-run) teacher is still paired with every student seed
    shared = summarize([*rs[:3], _result("teacher", 0, 0.70, role="teacher")], "test")
    assert shared[-1]["d_auc_n"] == 3 and math.isclose(shared[-1]["d_auc_mean"], 0.05)
    split = {r["metric"]: r for r in spread_rows(list(rows.values()))}
    # std 0.04 with both seeds, 0.01 with the student seed alone: 1 - 0.01² / 0.04² of the variance is the teacher's
    assert math.isclose(split["auc"]["std_both"], 0.04) and math.isclose(split["auc"]["std_student"], 0.01)
    assert math.isclose(split["auc"]["teacher_share"], 1 - 1 / 16)
    assert split["auc"]["variant"] == "fnd+cl" and split["auc"]["n"] == 3
    assert math.isnan(split["true_share"]["teacher_share"])  # no true-utility figures here
    assert "94%" in spread_markdown(list(split.values()), "test")
    # a twin spread wider than the variant's: the teacher's share is 0, not negative
    wide = [dict(rows["fnd+cl"]), dict(rows["fnd+cl@t0"], auc_std=0.08)]
    assert spread_rows(wide)[0]["teacher_share"] == 0.0


def _rows(values: dict[str, list[float]], key: str = "test_auc") -> list[dict]:
    return [{"variant": v, "seed": str(s), key: str(x)} for v, xs in values.items() for s, x in enumerate(xs)]


def test_claims_hold_or_not_by_the_sign_of_the_paired_difference(tmp_path):
    from outfitrec.experiments.report import (
        Claim,
        claim_deltas,
        claim_verdict,
        compare_claims,
        read_results,
        to_csv,
        write_claims,
    )

    beats = Claim("FND + CL beats the plain student", "fnd+cl", "student")
    at_least = Claim("distilled >= teacher", "fnd+cl", "teacher", op=">=")
    draw1 = _rows({"student": [0.60, 0.70, 0.65], "fnd+cl": [0.63, 0.72, 0.70], "teacher": [0.66]})
    draw1[-1]["role"] = "teacher"  # a runs.csv without the `shared` column: a teacher's only run is shared
    draw2 = _rows({"student": [0.60, 0.70, 0.65], "fnd+cl": [0.59, 0.75, 0.64], "teacher": [0.70, 0.69, 0.66]})
    # paired by seed; the one-run teacher of draw 1 against every seed
    assert np.allclose(claim_deltas(draw1, beats, "test"), [0.03, 0.02, 0.05])
    assert np.allclose(claim_deltas(draw1, at_least, "test"), [-0.03, 0.06, 0.04])
    assert np.allclose(claim_deltas(draw2, at_least, "test"), [-0.11, 0.06, -0.02])
    # a per-seed variant with fewer seeds finished is paired on the seeds both have, a shared run with every seed
    fewer = [*_rows({"student": [0.60, 0.70, 0.65], "fnd+cl": [0.63]}), {"variant": "t", "seed": "0", "test_auc": "1"}]
    assert np.allclose(claim_deltas(fewer, beats, "test"), [0.03])
    fewer[-1]["shared"] = "True"
    assert np.allclose(claim_deltas(fewer, Claim("t", "t", "student"), "test"), [0.40, 0.30, 0.35])
    assert claim_verdict([0.03, 0.02, 0.05], ">") == "holds"
    assert claim_verdict([-0.01, 0.06, -0.02], ">") == "holds (within noise)"
    assert claim_verdict([-0.03, -0.02], ">") == "does not hold"
    assert claim_verdict([0.0, 0.0], ">=") == "holds (within noise)"
    assert claim_verdict([0.0, 0.0], ">") == "does not hold (within noise)"
    assert claim_verdict([0.01], ">") == "holds (one pair: no noise estimate)"
    assert claim_verdict([], ">") == "not measured"
    missing = Claim("CL helps the teacher", "teacher+cl", "teacher")
    rows = compare_claims({"draw 1": (draw1, "test"), "draw 2": (draw2, "test")}, [beats, at_least, missing])
    assert [r["all"] for r in rows] == [
        "holds on all (within noise or one seed on some)",
        "mixed",
        "not measured everywhere",
    ]
    assert rows[0]["draw 1_verdict"] == "holds" and rows[0]["draw 2_verdict"] == "holds (within noise)"
    assert rows[1]["draw 2_verdict"] == "does not hold (within noise)"
    assert math.isclose(rows[0]["draw 1_delta_mean"], 0.10 / 3) and rows[0]["draw 2_n"] == 3
    # true-utility claims read their own column
    shares = _rows({"student": [0.3, 0.4], "fnd+cl": [0.2, 0.3]}, "true_share")
    worse = compare_claims({"a": (shares, "test")}, [Claim("x", "fnd+cl", "student", "true_share")])
    assert worse[0]["a_verdict"] == "does not hold" and worse[0]["all"] == "holds on none"

    # from two results folders: the tables side by side and the claims
    folders = {}
    for label, rows_ in (("draw1", draw1), ("draw2", draw2)):
        folder = tmp_path / label
        folder.mkdir()
        (folder / "runs.csv").write_text(to_csv(rows_))
        summary = [{"variant": "student", "n": 3, "auc_mean": 0.65, "auc_std": 0.05, "true_share_mean": ""}]
        (folder / "summary.csv").write_text(to_csv(summary))
        folders[label] = folder
    paths = write_claims(tmp_path, folders, [beats, at_least], "outfitrec experiment main --compare x", "title")
    text = paths["claims"].read_text()
    assert "| student | 0.6500 ± 0.0500 (n=3) | - | 0.6500 ± 0.0500 (n=3) | - |" in text
    assert "| FND + CL beats the plain student (fnd+cl > student) | auc | +0.0333 ± 0.0153 (n=3) | holds |" in text
    assert "outfitrec experiment main --compare x" in text and len(_read_csv(paths["claims_csv"])) == 2
    assert read_results(folders["draw1"])[2] == "test"
    with pytest.raises(DataError, match="runs.csv"):
        read_results(tmp_path / "nowhere")


def test_compare_is_for_the_main_comparison_only(tiny_data_dir, tmp_path):
    with pytest.raises(DataError, match="use it with main"):
        run_experiment("alpha", tiny_data_dir, out=tmp_path, scale="smoke", compare=tmp_path)
    with pytest.raises(DataError, match="no runs.csv"):
        run_experiment("main", tiny_data_dir, out=tmp_path, scale="smoke", compare=tmp_path / "none")


@pytest.mark.slow
def test_a_longer_teacher_continues_the_teacher_run_and_equals_one_trained_from_scratch(tiny_data_dir, tmp_path):
    """teacher-es starts from the teacher's finished run (copy + resume with the larger budget): same result."""
    main = {v.name: v for v in definitions.main_variants("smoke")}
    teacher = main["teacher"]
    assert main["teacher-es"].extends is teacher
    longer = Variant("teacher-4", {"optim": {"epochs": 4, "patience": 9}}, role="teacher", per_seed=True)
    lab = Lab(tiny_data_dir, tmp_path / "a", "smoke", true_utility=False)
    extended = lab.run_variant(Variant(**{**longer.__dict__, "extends": teacher}), 0)
    assert any(line.startswith("extends") for line in lab.log)
    base = lab.run_dir_of(teacher, 0)
    first = json.loads((base / "history.json").read_text())
    assert len(first) == 2 and len(extended.history) == 4
    assert [h["valid_auc"] for h in extended.history[:2]] == [h["valid_auc"] for h in first]
    fresh = Lab(tiny_data_dir, tmp_path / "b", "smoke", true_utility=False).run_variant(longer, 0)
    assert [h["valid_auc"] for h in fresh.history] == [h["valid_auc"] for h in extended.history]
    assert fresh.metrics["test"]["auc"] == extended.metrics["test"]["auc"]
    with pytest.raises(DataError, match="differs in more than"):
        other = Variant("x", {"optim": {"epochs": 4, "lr": 0.1}}, role="teacher", per_seed=True, extends=teacher)
        lab.run_variant(other, 0)
