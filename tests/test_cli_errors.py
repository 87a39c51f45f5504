"""The CLI's one error boundary: every user error is one line `error: ...` on stderr, exit code 2."""

from __future__ import annotations

import json
import sys

import pytest
import yaml
from conftest import tiny_config

from outfitrec.cli import main, user_error_message
from outfitrec.train.loop import train

ID_MODEL = {"encoder": "id", "size": "student", "dim": 8, "heads": 2, "n_anchors": 3}


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run `outfitrec ARGS` through main() in-process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["outfitrec", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (0 if code is None else code), out, err


def assert_one_line(code: int, err: str, pattern: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and pattern in lines[0], lines[0]


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, tiny_data_dir):
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(tiny_config(tiny_data_dir, model=ID_MODEL, optim={"epochs": 1}).to_yaml())
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_data_dir):
    run = tmp_path_factory.mktemp("cli_errors") / "run"
    train(tiny_config(tiny_data_dir, model=ID_MODEL, optim={"epochs": 1}), run)
    return run


def test_non_finite_loss_is_one_line_and_the_run_dir_stays_usable(monkeypatch, capsys, config_file, tmp_path):
    """Field case 03: lr=1e30 diverges at once; nothing is left behind; the second try in the same --run-dir
    trains. A folder that existed before the refused run keeps only what a fresh run clears."""
    run = tmp_path / "run"
    code, _, err = run_cli(monkeypatch, capsys, "train", "-c", config_file, "--set", "optim.lr=1e30", "--run-dir", run)
    assert_one_line(code, err, "loss is nan; lower optim.lr")
    assert err.startswith("error: epoch 1, step ")
    assert not run.exists()  # the refused run's folder, made by that call, is removed
    run.mkdir()
    code, _, err = run_cli(monkeypatch, capsys, "train", "-c", config_file, "--set", "optim.lr=1e30", "--run-dir", run)
    assert_one_line(code, err, "loss is nan; lower optim.lr")
    assert run.is_dir() and (run / "config.yaml").is_file() and not (run / "model").exists()
    code, out, err = run_cli(monkeypatch, capsys, "train", "-c", config_file, "--run-dir", run)
    assert code == 0, err
    assert "model (test)" in out and (run / "model" / "model.json").is_file()
    # now it holds a trained run: a fresh train refuses, naming --resume
    code, _, err = run_cli(monkeypatch, capsys, "train", "-c", config_file, "--run-dir", run)
    assert_one_line(code, err, "use --resume")


def test_run_dir_that_is_a_file_or_holds_foreign_files(monkeypatch, capsys, config_file, tmp_path):
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(monkeypatch, capsys, "train", "-c", config_file, "--run-dir", tmp_path / "file")
    assert_one_line(code, err, "is not a directory")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    code, _, err = run_cli(monkeypatch, capsys, "train", "-c", config_file, "--run-dir", tmp_path / "mine")
    assert_one_line(code, err, "not a run's (notes.txt)")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(("device", "message"), [("gpu", "unknown device 'gpu'"), ("cuda:99", "cuda:99")])
def test_unknown_device(monkeypatch, capsys, config_file, tmp_path, trained, device, message):
    import torch

    if device.startswith("cuda") and torch.cuda.device_count() > 99:
        pytest.skip("a machine with 100 GPUs")
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "train",
        "-c",
        config_file,
        "--set",
        f"runtime.device={device}",
        "--run-dir",
        tmp_path / "r",
    )
    assert_one_line(code, err, message)
    assert not (tmp_path / "r").exists()  # refused before the run directory was made
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", trained, "--device", device)
    assert_one_line(code, err, message)


def test_unwritable_output_is_one_line(monkeypatch, capsys, trained, tmp_path):
    (tmp_path / "a-file").write_text("x")
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", trained, "--out", tmp_path / "a-file" / "m.json")
    assert_one_line(code, err, "a-file")


def test_unknown_user_and_k_bound_in_recommend_and_complete(monkeypatch, capsys, trained):
    code, _, err = run_cli(monkeypatch, capsys, "recommend", trained, "--user", "99")
    assert_one_line(code, err, "user 99 not found (users are 0..11)")
    code, _, err = run_cli(monkeypatch, capsys, "complete", trained, "--user", "99", "--items", "0")
    assert_one_line(code, err, "user 99 not found")
    code, _, err = run_cli(monkeypatch, capsys, "recommend", trained, "--user", "1", "--k", "5000")
    assert_one_line(code, err, "k must be 1..1000, got 5000")
    code, _, err = run_cli(monkeypatch, capsys, "complete", trained, "--user", "1", "--items", "999")
    assert_one_line(code, err, "item 999 not found")


@pytest.mark.parametrize(
    "args, pattern",
    [
        (["recommend", "RUN", "--k", "0"], "outfitrec recommend: Invalid value for '--k'"),
        (["recommend", "RUN", "--bogus"], "No such option: --bogus"),
        (["no-such-command"], "No such command 'no-such-command'"),
        (["train", "--config"], "Option '--config' requires an argument"),
    ],
)
def test_usage_errors_are_one_line(monkeypatch, capsys, trained, args, pattern):
    """Typer's parser errors (bad option values, unknown options or commands) end as one line too, exit 2."""
    code, out, err = run_cli(monkeypatch, capsys, *[trained if a == "RUN" else a for a in args])
    assert_one_line(code, err, pattern)
    assert out == ""


def test_negative_seed_and_repeated_item_are_one_line(monkeypatch, capsys, config_file, trained, tmp_path):
    """Fresh-clone review: a negative run seed ended in a traceback inside the sampler; `score` took an item twice."""
    run = tmp_path / "neg"
    code, _, err = run_cli(monkeypatch, capsys, "train", "-c", config_file, "--set", "data.seed=-1", "--run-dir", run)
    assert_one_line(code, err, "field 'data.seed': Input should be greater than or equal to 0")
    assert not run.exists()
    code, _, err = run_cli(monkeypatch, capsys, "score", trained, "--user", "1", "--items", "0,0")
    assert_one_line(code, err, "an item appears twice")
    code, out, _ = run_cli(monkeypatch, capsys, "score", trained, "--user", "1", "--items", "0")
    assert code == 0 and float(out.strip()) == float(out.strip())  # a finite number


def test_help_and_success_still_exit_zero(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "recommend", "--help")
    assert code == 0 and "Usage" in out
    code, out, _ = run_cli(monkeypatch, capsys, "version")
    assert code == 0 and out.strip()


def test_damaged_resume_state(monkeypatch, capsys, tiny_data_dir, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(tiny_data_dir, model=ID_MODEL, optim={"epochs": 1}), run)
    state = run / "last" / "state.json"
    (tensors,) = (run / "last").glob("state-*.safetensors")
    good_state, good_tensors = state.read_text(), tensors.read_bytes()
    config = run / "config.yaml"  # a second epoch to train on resume
    raw = yaml.safe_load(config.read_text())
    raw["optim"]["epochs"] = 2
    config.write_text(yaml.safe_dump(raw))
    resume = ("train", "--resume", "--run-dir", run)

    tensors.write_bytes(good_tensors[: len(good_tensors) // 2])  # truncated
    code, _, err = run_cli(monkeypatch, capsys, *resume)
    assert_one_line(code, err, "truncated or edited")
    tensors.write_bytes(good_tensors)

    edited = json.loads(good_state)
    edited["epoch"] = 5
    state.write_text(json.dumps(edited))
    code, _, err = run_cli(monkeypatch, capsys, *resume)
    assert_one_line(code, err, "checksum differs")

    state.write_text(good_state[: len(good_state) // 2])
    code, _, err = run_cli(monkeypatch, capsys, *resume)
    assert_one_line(code, err, "not readable JSON")

    state.write_text(good_state)
    code, out, err = run_cli(monkeypatch, capsys, *resume)
    assert code == 0, err
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2


def test_which_exceptions_are_user_errors():
    assert user_error_message(IsADirectoryError(21, "Is a directory", "out")) == "out: Is a directory"
    assert user_error_message(OSError(30, "Read-only file system", "a", None, "b")) == "a -> b: Read-only file system"
    assert user_error_message(FloatingPointError("loss is nan")) == "loss is nan"
    assert user_error_message(RuntimeError("a bug")) is None
    assert user_error_message(KeyError("a bug")) is None
    assert user_error_message(IndexError("a bug")) is None


def test_a_bug_keeps_its_traceback(monkeypatch):
    import outfitrec.cli as cli

    def broken(**_) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "app", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main()
