"""`outfitrec demo` on the tiny Fashion-MNIST preset, and the runner's reuse rules it trains through."""

from __future__ import annotations

import yaml
from conftest import tiny_config
from typer.testing import CliRunner

from outfitrec.cli import app
from outfitrec.experiments.runner import train_or_reuse

# every run of the demo as small as it gets: one epoch of a narrow student-size CNN
TINY_RUNS = [
    *("-s", "optim.epochs=1", "-s", "model.size=student", "-s", "model.dim=8", "-s", "model.heads=2"),
    *("-s", "model.n_anchors=2", "-s", "data.negatives=2", "-s", "runtime.threads=1", "-s", "runtime.progress=false"),
]
RUNS = ("teacher", "student_distilled")


def test_demo_trains_each_run_once_and_reuses_every_step(tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    args = ["demo", "--data", str(data), "--runs", str(runs), "--preset", "tiny", *TINY_RUNS]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert all(f"trained: {runs / name}" in first.output for name in RUNS)
    distilled = yaml.safe_load((runs / "student_distilled" / "config.yaml").read_text())
    assert distilled["loss"]["teacher"] == str(runs / "teacher")
    assert distilled["name"] == "fmnist_student_whole_distilled"
    results = (runs / "results.md").read_text()
    rows = [line.split(" | ")[0] for line in results.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[:6] == ["| model", "| oracle (true utility)", "| popularity", "| EASE", *(f"| {name}" for name in RUNS)]
    assert "Top-3 outfits for user 0" in results

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "dataset.npz exists: reused" in again.output
    assert all(f"reused: {runs / name}" in again.output for name in RUNS)
    assert "trained:" not in again.output
    table = [line for line in results.splitlines() if line.startswith("| ")]
    assert [line for line in (runs / "results.md").read_text().splitlines() if line.startswith("| ")] == table


def test_train_or_reuse_retrains_a_changed_config_or_when_fresh(tiny_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    config = tiny_config(tiny_data_dir, optim={"epochs": 1})
    status, metrics, history, _ = train_or_reuse(config, run_dir)
    assert status == "trained" and len(history) == 1 and 0.0 <= metrics["test"]["auc"] <= 1.0
    assert train_or_reuse(config, run_dir)[0] == "reused"
    runtime_only = tiny_config(tiny_data_dir, optim={"epochs": 1}, runtime={"eval_batch_size": 128})
    assert train_or_reuse(runtime_only, run_dir)[0] == "reused"  # runtime settings do not change what a run computes
    (run_dir / "metrics.json").unlink()  # killed after its last epoch, before the final metrics
    assert train_or_reuse(config, run_dir)[0] == "resumed"
    changed = tiny_config(tiny_data_dir, optim={"epochs": 1, "lr": 0.01})
    assert train_or_reuse(changed, run_dir)[0] == "trained"  # the folder held another config's run: not reused
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["optim"]["lr"] == 0.01
    assert train_or_reuse(changed, run_dir, fresh=True)[0] == "trained"
