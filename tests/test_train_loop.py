"""The one training loop on the tiny synthetic data: every role, run directory, objectives, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import tiny_config
from safetensors.torch import load_file
from typer.testing import CliRunner

from outfitrec.cli import app
from outfitrec.models.checkpoint import load_model
from outfitrec.train.config import ConfigError
from outfitrec.train.loop import Progress, early_stopping, objective, train


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, tiny_data_dir):
    run_dir = tmp_path_factory.mktemp("runs") / "teacher"
    metrics = train(tiny_config(tiny_data_dir, model={"dim": 16}), run_dir)
    return run_dir, metrics


def test_teacher_run_directory_is_complete(teacher_run):
    run_dir, metrics = teacher_run
    for name in ("config.yaml", "run.json", "metrics.json", "history.json", "model/model.json", "last/state.json"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tb").iterdir())
    info = json.loads((run_dir / "run.json").read_text())
    assert info["seed"] == 0 and info["git_revision"] and info["torch"] and info["finished"]
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    for split in ("valid", "test"):
        assert 0.0 <= saved[split]["auc"] <= 1.0 and "ndcg" in saved[split] and "ndcg@10" in saved[split]
        assert "auc" in saved["popularity"][split]
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and all(np.isfinite(h["train_loss"]) for h in history)
    # the best checkpoint loads and is the epoch early stopping picked
    model = load_model(run_dir / "model")
    assert model.checkpoint_meta["epoch"] == saved["best_epoch"]
    state = json.loads((run_dir / "last/state.json").read_text())
    tensors = load_file(str(run_dir / "last" / state["tensors"]))
    assert any(k.startswith("optim.") for k in tensors) and "rng.torch" in tensors


def test_distilled_student_with_pool_contrastive_and_flags(teacher_run, tiny_data_dir, tmp_path):
    teacher_dir, _ = teacher_run
    teacher_before = load_model(teacher_dir / "model").state_dict()
    cfg = tiny_config(
        tiny_data_dir,
        loss={"kind": "fnd+kd", "teacher": str(teacher_dir), "teacher_pool": 7, "alpha": -0.5},
        contrastive={"enabled": True, "augmentations": "both", "scope": "within"},
        data={"hard_share": 0.25},
    )
    metrics = train(cfg, tmp_path / "student")
    assert 0.0 <= metrics["test"]["auc"] <= 1.0
    history = json.loads((tmp_path / "student/history.json").read_text())
    for h in history:
        assert {"train_fnd", "train_kd", "train_cl", "train_reg", "fn_flagged", "fn_flagged_share"} <= set(h)
        assert 0 < h["fn_flagged"] < h["steps"] * 16 * 7
    # the teacher is frozen: its checkpoint is untouched, and no projection head leaks into the student's
    after = load_model(teacher_dir / "model").state_dict()
    assert all(torch.equal(teacher_before[k], after[k]) for k in after)
    student = load_model(tmp_path / "student/model")
    assert not any("head" in k and "net" in k for k in student.state_dict())
    state = json.loads((tmp_path / "student/last/state.json").read_text())
    assert any(k.startswith("head.") for k in load_file(str(tmp_path / "student/last" / state["tensors"])))


@pytest.mark.parametrize("kind", ["kd", "mse", "rd"])
def test_each_kd_baseline_trains(kind, teacher_run, tiny_data_dir, tmp_path):
    cfg = tiny_config(tiny_data_dir, loss={"kind": kind, "teacher": str(teacher_run[0])}, optim={"epochs": 1})
    history_key = {"kd": "train_kd", "mse": "train_mse", "rd": "train_rd"}[kind]
    train(cfg, tmp_path / kind)
    assert history_key in json.loads((tmp_path / kind / "history.json").read_text())[0]


def test_objective_fnd_with_alpha_zero_is_the_plain_softmax(tiny_data_dir):
    torch.manual_seed(0)
    scores, teacher = torch.randn(5, 6), torch.randn(5, 6)
    thresholds = torch.randn(5)
    plain = objective(tiny_config(tiny_data_dir), scores, 6, None, None)
    fnd = objective(
        tiny_config(tiny_data_dir, loss={"kind": "fnd", "teacher": "t", "alpha": 0.0}), scores, 6, teacher, thresholds
    )
    assert torch.equal(plain["rec"], fnd["fnd"])
    # with a teacher pool, L_rec sees only the first 1 + K columns, the distillation term all of them
    kd = objective(tiny_config(tiny_data_dir, loss={"kind": "kd", "teacher": "t"}), scores, 4, teacher, None)
    assert torch.equal(kd["rec"], objective(tiny_config(tiny_data_dir), scores[:, :4], 4, None, None)["rec"])


def test_early_stopping_keeps_the_best_and_stops_after_patience_epochs_without_one():
    p = Progress()
    aucs = [0.60, 0.70, 0.70, 0.705, float("nan"), 0.69]  # min_delta 0.01: 0.705 is no improvement on 0.70
    states = []
    for auc in aucs:
        p = early_stopping(p, auc, min_delta=0.01, patience=3)
        states.append((p.epoch, p.best, p.best_epoch, p.bad_epochs, p.stopped, p.improved))
    assert states == [
        (1, 0.60, 1, 0, False, True),
        (2, 0.70, 2, 0, False, True),
        (3, 0.70, 2, 1, False, False),
        (4, 0.70, 2, 2, False, False),
        (5, 0.70, 2, 3, True, False),  # a NaN is never an improvement
        (6, 0.70, 2, 4, True, False),
    ]
    assert early_stopping(Progress(), float("nan"), 0.0, 1) == Progress(epoch=1, bad_epochs=1, stopped=True)
    assert not Progress().improved


def test_a_fresh_run_never_overwrites_an_existing_one(teacher_run, tiny_data_dir):
    with pytest.raises(ConfigError, match="not empty"):
        train(tiny_config(tiny_data_dir), teacher_run[0])


def test_cli_train_evaluate_score(tiny_data_dir, tmp_path):
    runner = CliRunner()
    run_dir = tmp_path / "cli"
    args = ["train", "-c", "tiny_student", "--run-dir", str(run_dir), "--set", f"data.path={tiny_data_dir}"]
    result = runner.invoke(app, [*args, "--set", "optim.epochs=1"])
    assert result.exit_code == 0, result.output
    assert "model (test)" in result.output and (run_dir / "metrics.json").is_file()
    result = runner.invoke(app, ["evaluate", str(run_dir), "--split", "valid"])
    assert result.exit_code == 0, result.output
    written = json.loads((run_dir / "eval_valid.json").read_text())
    trained = json.loads((run_dir / "metrics.json").read_text())["valid"]
    assert written["auc"] == pytest.approx(trained["auc"], abs=1e-12)
    result = runner.invoke(app, ["score", str(run_dir), "--user", "3", "--items", "0,20,40"])
    assert result.exit_code == 0, result.output
    assert np.isfinite(float(result.output.strip()))


def test_cli_reports_bad_config_and_input(tiny_data_dir, tmp_path, monkeypatch, capsys):
    """Through outfitrec.cli.main: bad input is one line on stderr naming the file and key, exit code 2."""
    from outfitrec.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(f"data:\n  path: {tiny_data_dir}\n  batchsize: 3\n")
    for argv, message in (
        (["train", "-c", str(bad), "--run-dir", str(tmp_path / "r")], "bad.yaml: unknown key 'data.batchsize'"),
        (["evaluate", str(tmp_path)], "neither a run directory with a model/ checkpoint"),
    ):
        monkeypatch.setattr("sys.argv", ["outfitrec", *argv])
        with pytest.raises(SystemExit) as exc:
            main()
        assert exc.value.code == 2
        assert message in capsys.readouterr().err
