"""A run killed with SIGKILL resumes from last/ and ends with the same metrics as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import tiny_config

from outfitrec.train.config import ConfigError
from outfitrec.train.loop import train

EPOCHS = 8
SETTINGS = {
    "optim": {"epochs": EPOCHS, "patience": EPOCHS},  # no early stop: the kill lands mid-run
    "model": {"dropout": 0.1},  # dropout and augmentations must replay exactly too
    "contrastive": {"enabled": True},
    "data": {"hard_share": 0.25},
}


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_metrics(tiny_data_dir, tmp_path):
    config = tiny_config(tiny_data_dir, **SETTINGS)
    config_file = tmp_path / "run.yaml"
    config_file.write_text(config.to_yaml())

    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "outfitrec", "train", "-c", str(config_file), "--run-dir", str(killed)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    state = killed / "last" / "state.json"
    deadline = time.monotonic() + 120
    while not state.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    epoch_at_kill = json.loads(state.read_text())["epoch"]
    assert not (killed / "metrics.json").exists() and epoch_at_kill < EPOCHS, "the run ended before the kill"

    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr
    info = json.loads((killed / "run.json").read_text())
    assert len(info["resumes"]) == 1

    uninterrupted = train(config, tmp_path / "uninterrupted")
    resumed_metrics = json.loads((killed / "metrics.json").read_text())
    assert resumed_metrics == json.loads(json.dumps(uninterrupted))
    history = json.loads((killed / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
    straight = json.loads((tmp_path / "uninterrupted" / "history.json").read_text())
    assert [h["train_loss"] for h in history] == [h["train_loss"] for h in straight]


def test_resume_refuses_another_config(tiny_data_dir, tmp_path):
    config = tiny_config(tiny_data_dir, optim={"epochs": 1})
    train(config, tmp_path / "run")
    other = tiny_config(tiny_data_dir, optim={"epochs": 1, "lr": 0.01})
    with pytest.raises(ConfigError, match="optim.lr: 0.003 -> 0.01"):
        train(other, tmp_path / "run", resume=True)
    # resuming a finished run recomputes the same final metrics without training
    again = train(None, tmp_path / "run", resume=True)
    assert again == json.loads((tmp_path / "run" / "metrics.json").read_text())
    # a larger epoch budget extends the run: the same as training 2 epochs from the start
    extended = train(tiny_config(tiny_data_dir, optim={"epochs": 2}), tmp_path / "run", resume=True)
    straight = train(tiny_config(tiny_data_dir, optim={"epochs": 2}), tmp_path / "straight")
    assert extended == straight and extended["epochs"] == 2
