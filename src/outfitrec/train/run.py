"""Run directories: resolved config, provenance, metrics, TensorBoard, best and last checkpoints.

Layout of a run directory:

  config.yaml    the resolved RunConfig (every field, defaults included)
  run.json       seed, git revision, torch/numpy/python versions, start/end times, resumes
  history.json   one record per finished epoch (losses, validation metrics, flags, seconds)
  metrics.json   final valid + test metrics of the best checkpoint, popularity baseline
  tb/            TensorBoard scalars
  model/         the best checkpoint (models/checkpoint.py: model.safetensors + model.json)
  last/          resume state: state.json + state-EPOCH.safetensors

Every file is written through a temporary file and a rename, so a run killed
at any moment (kill -9) leaves either the old or the new version of each file,
never half of one. The resume state is two files; `last/state.json` is the
commit point: it names the tensor file it belongs to, and is replaced only
after that file is complete. The best checkpoint is a directory: a new one is
written to `model.tmp/`, then swapped in (`model/` -> `model.old/`,
`model.tmp/` -> `model/`); `recover()` finishes or rolls back a swap that a
kill interrupted. No pickle anywhere: tensors go to safetensors, everything
else to JSON (optimizer state and RNG states are flattened into both).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from outfitrec.data.io import atomic_file, file_sha256
from outfitrec.data.outfits import write_text_atomic
from outfitrec.train.config import ConfigError, RunConfig, config_from_dict

STATE_JSON = "state.json"


def git_revision() -> str:
    """`git rev-parse HEAD` of the source tree, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    rev = out.stdout.strip()
    return rev if out.returncode == 0 and rev else "unknown"


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read JSON ({exc})") from None


def save_tensors_atomic(path: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    """safetensors file through a temporary file + rename (tensors copied contiguous, sharing broken)."""
    with atomic_file(path) as tmp:
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, tmp)


# --------------------------------------------------------------------------- state flattening


def flatten_optimizer(optimizer: torch.optim.Optimizer, prefix: str = "optim.") -> tuple[dict, dict]:
    """Optimizer state_dict -> (tensors for safetensors, JSON-able rest)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            name = f"{pid}.{key}"
            if torch.is_tensor(value):
                tensors[prefix + name] = value
            else:
                scalars[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict, prefix: str = "optim.") -> dict:
    """(tensors, JSON rest) -> an optimizer state_dict for `load_state_dict`."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix):
            pid, key = name[len(prefix) :].split(".", 1)
            state.setdefault(int(pid), {})[key] = value
    for name, value in meta["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def rng_states() -> tuple[dict[str, torch.Tensor], dict]:
    """The torch, numpy (global) and python RNG states as (tensors, JSON)."""
    np_state = np.random.get_state()
    tensors = {
        "rng.torch": torch.get_rng_state(),
        "rng.numpy_keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
    }
    py = random.getstate()
    meta = {
        "numpy": [str(np_state[0]), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py[0], list(py[1]), py[2]],
    }
    return tensors, meta


def restore_rng_states(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def module_tensors(module: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in module.state_dict().items()}


def load_module_tensors(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str) -> None:
    sd = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as exc:  # the code's model changed since the state was saved
        first = str(exc).strip().splitlines()[-1].strip()
        raise ConfigError(f"resume state ({prefix}*) does not fit the current model: {first}") from None


# --------------------------------------------------------------------------- the run directory


class RunDir:
    """One run's directory and its atomic writers."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.yaml")
    run_json = property(lambda self: self.path / "run.json")
    metrics_json = property(lambda self: self.path / "metrics.json")
    history_json = property(lambda self: self.path / "history.json")
    tb_dir = property(lambda self: self.path / "tb")
    model_dir = property(lambda self: self.path / "model")
    last_dir = property(lambda self: self.path / "last")

    # -- creation / resume

    @classmethod
    def open(cls, path: str | Path, config: RunConfig | None, resume: bool) -> tuple[RunDir, RunConfig]:
        """Create a fresh run directory, or reopen one for --resume.

        Fresh: the directory must not hold a run already. Resume: the saved
        config.yaml is the run's config; a config given as well must equal it
        (a resumed run with another config would not be the same run).
        """
        run = cls(path)
        if run.path.exists() and not run.path.is_dir():
            raise ConfigError(f"{run.path}: --run-dir exists and is not a directory")
        if resume and run.config_path.is_file():
            saved = config_from_dict(_read_yaml(run.config_path), str(run.config_path))
            if config is not None and config.model_dump() != saved.model_dump():
                diff = _diff(fixed_part(saved), fixed_part(config))
                if diff:
                    raise ConfigError(f"{run.config_path}: --resume with a different config ({diff}); drop --config")
                # only the epoch budget, patience or runtime settings changed: extend / continue the run
                saved = config
                write_text_atomic(run.config_path, config.to_yaml())
            _check_run_device(saved)
            run.recover()
            info = read_json(run.run_json) if run.run_json.is_file() else {}
            info.setdefault("resumes", []).append(now_iso())
            write_json_atomic(run.run_json, info)
            return run, saved
        if config is None:
            raise ConfigError(f"{run.path}: no config.yaml to resume from; pass --config")
        _check_run_device(config)
        run.clear_untrained()
        run.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run.config_path, config.to_yaml())
        write_json_atomic(run.run_json, provenance(config))
        return run, config

    def trained_anything(self) -> bool:
        """Whether the run got as far as a checkpoint (best model, resume state or final metrics)."""
        p = self.path
        return any(
            x.exists()
            for x in (p / "model" / "model.json", p / "model.old", p / "last" / STATE_JSON, self.metrics_json)
        )

    def clear_untrained(self) -> None:
        """Make room for a fresh run: refuse a folder that holds a trained run or foreign files.

        A run that failed before its first checkpoint (a bad learning rate, a
        teacher of other data, a kill during the first epoch) leaves only
        config.yaml, run.json, tb/ and temporary files: those are removed so the
        same --run-dir can be used again, instead of trapping it.
        """
        p = self.path
        if p.exists() and not p.is_dir():
            raise ConfigError(f"{p}: --run-dir exists and is not a directory")
        if not p.exists():
            return
        entries = list(p.iterdir())
        if not entries:
            return
        if self.trained_anything():
            raise ConfigError(
                f"{p}: run directory is not empty (it holds a trained run); "
                "use --resume to continue it, or another --run-dir"
            )
        foreign = [e.name for e in entries if e.name not in RUN_ENTRIES and not _is_temporary(e.name)]
        if foreign:
            raise ConfigError(
                f"{p}: run directory exists and holds files that are not a run's ({', '.join(sorted(foreign)[:3])}); "
                "use another --run-dir"
            )
        for e in entries:  # an untrained run's leftovers
            if e.is_dir() and not e.is_symlink():
                shutil.rmtree(e)
            else:
                e.unlink()

    def recover(self) -> None:
        """Finish or roll back a best-checkpoint swap interrupted by a kill; drop temporary leftovers."""
        old, tmp = self.path / "model.old", self.path / "model.tmp"
        if not self.model_dir.exists() and old.exists():
            os.replace(old, self.model_dir)
        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)

    def update_run_info(self, **fields: Any) -> None:
        info = read_json(self.run_json) if self.run_json.is_file() else {}
        info.update(fields)
        write_json_atomic(self.run_json, info)

    # -- checkpoints

    def save_best(self, model: torch.nn.Module, meta: dict) -> None:
        """Write the best checkpoint through model.tmp/ and an atomic swap."""
        from outfitrec.models.checkpoint import save_model

        tmp, old = self.path / "model.tmp", self.path / "model.old"
        shutil.rmtree(tmp, ignore_errors=True)
        save_model(model, tmp, meta)
        if self.model_dir.exists():
            os.replace(self.model_dir, old)
        os.replace(tmp, self.model_dir)
        shutil.rmtree(old, ignore_errors=True)

    def save_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        """Write the resume state: tensors first, then state.json (the commit point) naming them.

        state.json carries the SHA-256 of the tensor file and of its own
        content, so a truncated or edited state is refused on resume.
        """
        self.last_dir.mkdir(parents=True, exist_ok=True)
        name = f"state-{int(meta['epoch']):05d}.safetensors"
        save_tensors_atomic(self.last_dir / name, tensors)
        body = {**meta, "tensors": name, "tensors_sha256": file_sha256(self.last_dir / name)}
        write_json_atomic(self.last_dir / STATE_JSON, {**body, "checksum": _json_sha256(body)})
        for p in self.last_dir.glob("state-*.safetensors"):
            if p.name != name:
                p.unlink(missing_ok=True)

    def load_state(self) -> tuple[dict[str, torch.Tensor], dict] | None:
        """The last committed resume state, or None when the run never finished an epoch.

        ConfigError (one line) for a state that is truncated, edited or not ours.
        """
        path = self.last_dir / STATE_JSON
        if not path.is_file():
            return None
        hint = f"delete {self.last_dir} and --resume to train again from epoch 0"
        try:
            meta = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: resume state is damaged (not readable JSON: {exc}); {hint}") from None
        problem = _state_problem(meta)
        if problem:
            raise ConfigError(f"{path}: resume state is damaged or edited ({problem}); {hint}")
        tensors_path = self.last_dir / meta["tensors"]
        if not tensors_path.is_file():
            raise ConfigError(f"{path}: names {meta['tensors']}, which is missing; {hint}")
        if "tensors_sha256" in meta and file_sha256(tensors_path) != meta["tensors_sha256"]:
            raise ConfigError(f"{tensors_path}: resume state is truncated or edited (SHA-256 differs); {hint}")
        try:
            tensors = load_file(str(tensors_path))
        except Exception as exc:  # safetensors raises its own error types for a damaged file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"{tensors_path}: resume state is not a readable safetensors file ({first}); {hint}"
            ) from None
        missing = [k for k in ("rng.torch", "rng.numpy_keys") if k not in tensors]
        if missing:
            raise ConfigError(f"{tensors_path}: resume state lacks tensors {missing}; {hint}")
        return tensors, meta

    def write_metrics(self, metrics: dict) -> None:
        write_json_atomic(self.metrics_json, metrics)

    def write_history(self, history: list[dict]) -> None:
        write_json_atomic(self.history_json, history)


RUN_ENTRIES = frozenset(
    {"config.yaml", "run.json", "history.json", "metrics.json", "tb", "model", "model.tmp", "model.old", "last"}
)


def _is_temporary(name: str) -> bool:
    """A leftover of an atomic write (`.NAME.XXXX.tmp`) or of a folder swap."""
    return name.startswith(".") and name.endswith(".tmp")


def _check_run_device(config: RunConfig) -> None:
    from outfitrec.data.outfits import DataError
    from outfitrec.devices import check_device

    try:
        check_device(config.runtime.device)
    except DataError as exc:
        raise ConfigError(f"runtime.device: {exc}") from None


def _json_sha256(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _state_problem(meta: Any) -> str:
    """What is wrong with a resume state.json ('' when it looks whole): checksum, keys, types."""
    if not isinstance(meta, dict):
        return "not a JSON object"
    if "checksum" in meta:
        body = {k: v for k, v in meta.items() if k != "checksum"}
        if _json_sha256(body) != meta["checksum"]:
            return "its checksum differs from its content"
    expected = {
        "epoch": int,
        "best_epoch": int,
        "bad_epochs": int,
        "stopped": bool,
        "history": list,
        "optimizer": dict,
        "rng": dict,
        "tensors": str,
    }
    for key, kind in expected.items():
        value = meta.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"key {key!r} is {value!r}, expected {kind.__name__}"
    if meta["epoch"] < 0 or meta["bad_epochs"] < 0:
        return "a negative epoch count"
    if meta.get("best") is not None and not isinstance(meta["best"], (int, float)):
        return f"key 'best' is {meta['best']!r}, expected a number or null"
    if "/" in meta["tensors"] or "\\" in meta["tensors"] or not meta["tensors"].endswith(".safetensors"):
        return f"key 'tensors' is {meta['tensors']!r}, expected a file name in last/"
    if not isinstance(meta["optimizer"].get("param_groups"), list) or not isinstance(
        meta["optimizer"].get("scalars"), dict
    ):
        return "key 'optimizer' lacks param_groups / scalars"
    rng = meta["rng"]
    if not (isinstance(rng.get("numpy"), list) and len(rng["numpy"]) == 4):
        return "key 'rng.numpy' is not a list of 4"
    if not (isinstance(rng.get("python"), list) and len(rng["python"]) == 3):
        return "key 'rng.python' is not a list of 3"
    return ""


def provenance(config: RunConfig) -> dict:
    """What run.json records about where a run came from."""
    return {
        "name": config.name,
        "seed": config.data.seed,
        "git_revision": git_revision(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "started": now_iso(),
        "finished": None,
        "resumes": [],
    }


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None


RESUMABLE_CHANGES = (("optim", "epochs"), ("optim", "patience"), ("runtime", None))


def fixed_part(config: RunConfig) -> dict:
    """The config without what a resume may change (epoch budget, patience, runtime): the run's identity.

    Every epoch's randomness derives from (seed, epoch), so a run trained for E
    epochs and resumed with a larger budget equals a run trained for the larger
    budget from the start.
    """
    raw = config.model_dump()
    for section, key in RESUMABLE_CHANGES:
        if key is None:
            raw.pop(section, None)
        else:
            raw[section].pop(key, None)
    return raw


def _diff(a: dict, b: dict, prefix: str = "") -> str:
    """The first differing key of two nested dicts, as 'key: a -> b'."""
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            d = _diff(va, vb, f"{prefix}{key}.")
            if d:
                return d
        elif va != vb:
            return f"{prefix}{key}: {va!r} -> {vb!r}"
    return ""
