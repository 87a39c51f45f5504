"""Save and load an OutfitModel: `model.safetensors` (weights) + `model.json` (what the model is).

Never pickle: the weights are a safetensors file, everything else JSON. The
JSON holds the ModelConfig, the model's sizes, free-form `meta` (dataset,
role, metrics...) and the SHA-256 of the weights file, so a truncated,
corrupted or swapped weights file is reported on load instead of silently
giving other scores. Each file is written to a temporary file and renamed;
the weights go first and the JSON (with their hash) last.

A checkpoint also knows the data it was trained on: `model.json` key `data`
holds the numbering's fingerprint (counts, SHA-256 of the user, item and
category names in id order, and the names themselves when there are at most
`MAX_STORED_NAMES`). User 5 of a model is a row of its anchor table, so the
same model on a dataset whose user 5 is somebody else, or with more users,
scores the wrong people or indexes out of the table. `check_data_numbering`
is the one check every consumer (evaluate, score, distillation, recommend,
serve, export) calls; checkpoints from before the fingerprint are checked by
their counts only.

`load_run(path)` is the one way to load a trained model for use (evaluation,
a teacher, the recommender, the CLI, the service): a run directory (its
`config.yaml` names the dataset, `model/` holds the best checkpoint) or a bare
checkpoint folder plus a dataset, checked, bound to the dataset's catalogue.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pydantic
import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from outfitrec.data.io import write_bytes_atomic
from outfitrec.data.outfits import DataError, OutfitDataset, write_text_atomic
from outfitrec.data.prepare import load_dataset, resolve_dataset_path
from outfitrec.models.outfit_model import ModelConfig, OutfitModel

WEIGHTS_FILE = "model.safetensors"
MAX_STORED_NAMES = 10_000  # user / item / category names stored in model.json up to this many
INFO_FILE = "model.json"
FORMAT = "outfitrec-model"
VERSION = 1


class CheckpointError(DataError):
    """A checkpoint that is missing, corrupted, or does not fit the model it describes."""


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    write_bytes_atomic(path, data)


def _names_sha256(names) -> str:
    digest = hashlib.sha256()
    for name in names:
        digest.update(str(name).encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


_SINGULAR = {"users": "user", "items": "item", "categories": "category"}


def data_numbering(dataset) -> dict:
    """The fingerprint of a dataset's numbering: counts and hashes of the user, item and category names.

    Names (in id order) are included when there are at most MAX_STORED_NAMES,
    so a mismatch can name the first id that differs.
    """
    parts = {
        "users": [str(x) for x in dataset.user_names],
        "items": [str(x) for x in dataset.catalogue.item_names],
        "categories": [str(x) for x in dataset.catalogue.category_names],
    }
    out: dict = {}
    for key, names in parts.items():
        one = _SINGULAR[key]
        out[f"n_{key}"] = len(names)
        out[f"{one}_names_sha256"] = _names_sha256(names)
        if len(names) <= MAX_STORED_NAMES:
            out[f"{one}_names"] = names
    return out


def check_data_numbering(model_or_info, dataset, role: str = "model", where: str = "") -> None:
    """Refuse (one CheckpointError line) a dataset whose numbering is not the one the checkpoint was trained on.

    model_or_info: a loaded model (from `load_model`) or a `read_model_info` dict.
    role: how the checkpoint is named in the message ('model', 'teacher', ...);
    where: an optional suffix, e.g. the checkpoint and dataset paths. Checks the
    counts (always) and, when the checkpoint has a fingerprint, the names.
    """
    if isinstance(model_or_info, dict):
        info = model_or_info
        counts = {key: info.get(f"n_{key}") for key in ("users", "items", "categories")}
        stored = info.get("data")
    else:
        counts = {key: getattr(model_or_info, f"n_{key}", None) for key in ("users", "items", "categories")}
        stored = getattr(model_or_info, "checkpoint_data", None)
    here = {
        "users": int(dataset.n_users),
        "items": int(dataset.catalogue.n_items),
        "categories": int(dataset.catalogue.n_categories),
    }
    suffix = f" ({where})" if where else ""
    for key, n in counts.items():
        if n is not None and int(n) != here[key]:
            raise CheckpointError(f"{role}: the {role} knows {n} {key}, the dataset has {here[key]}{suffix}")
    if not isinstance(stored, dict):
        return  # a checkpoint from before the fingerprint: the counts are all it can tell
    mine = data_numbering(dataset)
    for key in ("users", "items", "categories"):
        one = _SINGULAR[key]
        theirs_hash = stored.get(f"{one}_names_sha256")
        if theirs_hash is None or theirs_hash == mine[f"{one}_names_sha256"]:
            continue
        theirs, ours = stored.get(f"{one}_names"), mine.get(f"{one}_names")
        if isinstance(theirs, list) and ours is not None and len(theirs) == len(ours):
            i = next(j for j, (a, b) in enumerate(zip(theirs, ours)) if a != b)
            detail = f"{one} {i} is {theirs[i]} there, {ours[i]} here"
        else:
            detail = f"SHA-256 {str(theirs_hash)[:12]} there, {mine[f'{one}_names_sha256'][:12]} here"
        raise CheckpointError(
            f"{role}: {one} names differ from the dataset's ({detail}); "
            f"the {role} was trained on another numbering{suffix}"
        )


def save_model(model: OutfitModel, directory: str | Path, meta: dict | None = None, data: dict | None = None) -> Path:
    """Write `directory/model.safetensors` + `directory/model.json`; returns the directory.

    data: the numbering fingerprint of the training dataset (`data_numbering`);
    default the model's `data_numbering` attribute when set (the trainer sets it).
    """
    directory = Path(directory)
    if data is None:
        data = getattr(model, "data_numbering", None) or getattr(model, "checkpoint_data", None)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = safetensors_save(state)
    info = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.model_dump(),
        "n_users": model.n_users,
        "n_items": model.n_items,
        "n_categories": model.n_categories,
        "parameter_counts": model.parameter_counts(),
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "meta": meta or {},
    }
    if data is not None:
        info["data"] = data
    try:
        text = json.dumps(info, indent=2, sort_keys=True)
    except TypeError as exc:
        raise CheckpointError(f"{directory / INFO_FILE}: meta is not JSON-serialisable ({exc})") from exc
    _write_bytes_atomic(directory / WEIGHTS_FILE, weights)
    write_text_atomic(directory / INFO_FILE, text + "\n")
    return directory


def _resolve(directory: str | Path) -> Path:
    """Accept the checkpoint folder, or its model.json / model.safetensors."""
    path = Path(directory)
    if path.name in (INFO_FILE, WEIGHTS_FILE):
        path = path.parent
    if not (path / INFO_FILE).exists():
        raise CheckpointError(f"{path / INFO_FILE}: no such file (not a model checkpoint folder)")
    return path


def read_model_info(directory: str | Path) -> dict:
    """The checkpoint's JSON (config, sizes, meta), validated, without loading the weights."""
    path = _resolve(directory) / INFO_FILE
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an outfitrec model description (key 'format' != {FORMAT!r})")
    if info.get("version") != VERSION:
        raise CheckpointError(f"{path}: key 'version' is {info.get('version')!r}, this outfitrec reads {VERSION}")
    for key in ("n_users", "n_items", "n_categories"):
        if not isinstance(info.get(key), int) or info[key] <= 0:
            raise CheckpointError(f"{path}: key {key!r} must be a positive integer, got {info.get(key)!r}")
    try:
        info["config"] = ModelConfig.model_validate(info.get("config"))
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise CheckpointError(f"{path}: key 'config.{where}': {first['msg']}") from exc
    return info


def load_model(directory: str | Path, map_location: str | torch.device = "cpu") -> OutfitModel:
    """Rebuild the model from model.json and load model.safetensors into it, checking every tensor.

    The returned model is in eval mode, has `checkpoint_meta` (the saved meta),
    and still needs `bind_catalogue` before it can encode items.
    """
    directory = _resolve(directory)
    info = read_model_info(directory)
    weights = directory / WEIGHTS_FILE
    try:
        data = weights.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{weights}: cannot read ({exc})") from exc
    expected_hash = info.get("weights_sha256")
    if expected_hash is not None and hashlib.sha256(data).hexdigest() != expected_hash:
        raise CheckpointError(f"{weights}: corrupted or replaced (SHA-256 differs from {directory / INFO_FILE})")
    try:
        state = safetensors_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({exc})") from exc
    model = OutfitModel(info["config"], info["n_users"], info["n_items"], info["n_categories"])
    model.adopt_data_buffers(state)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{weights}: tensors do not match the model of {INFO_FILE}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape or tensor.dtype != expected[name].dtype:
            raise CheckpointError(
                f"{weights}: tensor {name!r} is {tuple(tensor.shape)} {tensor.dtype}, the model of {INFO_FILE} "
                f"expects {tuple(expected[name].shape)} {expected[name].dtype}"
            )
    model.load_state_dict(state)
    model.checkpoint_meta = info.get("meta", {})
    model.checkpoint_data = info.get("data") if isinstance(info.get("data"), dict) else None
    return model.to(map_location).eval()


# --------------------------------------------------------------------------- runs

RUN_CONFIG = "config.yaml"
RUN_MODEL = "model"


@dataclass
class Run:
    """A trained model ready for use: bound to its dataset's catalogue, in eval mode, on its device.

    config: the run's resolved config.yaml as a plain dict (None for a bare
    checkpoint folder); data_path: the dataset .npz the model is bound to
    (None when the caller passed the dataset without its location);
    data_dir: its prepared folder (candidate and FITB files).
    """

    model: OutfitModel
    dataset: OutfitDataset
    config: dict | None
    checkpoint_dir: Path
    data_path: Path | None
    run_dir: Path | None = None

    @property
    def data_dir(self) -> Path | None:
        return None if self.data_path is None else self.data_path.parent


def checkpoint_dir_of(path: str | Path) -> Path:
    """A run directory's best checkpoint (model/), or `path` itself when it is a checkpoint folder."""
    p = Path(path)
    if (p / RUN_MODEL / INFO_FILE).is_file():
        return p / RUN_MODEL
    if (p / INFO_FILE).is_file():
        return p
    raise CheckpointError(f"{p}: neither a run directory with a model/ checkpoint nor a model directory")


def read_run_config(run_dir: str | Path) -> dict:
    """A run directory's resolved config.yaml as a dict (DataError when missing or not YAML)."""
    config_path = Path(run_dir) / RUN_CONFIG
    if not config_path.is_file():
        raise DataError(f"{config_path}: missing (not a run directory?); pass --data")
    try:
        config = yaml.safe_load(config_path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DataError(f"{config_path}: not valid YAML ({exc})") from exc
    if not isinstance(config, dict):
        raise DataError(f"{config_path}: not a mapping of config sections")
    return config


def run_data_path(run_dir: str | Path, config: dict | None = None) -> Path:
    """The dataset .npz a training run used: data.path of its config.yaml.

    data.path is taken as written (absolute, or relative to the working
    directory), else relative to the run directory.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / RUN_CONFIG
    config = read_run_config(run_dir) if config is None else config
    data = config.get("data")
    data_path = data.get("path") if isinstance(data, dict) else None
    if not data_path:
        raise DataError(f"{config_path}: key data.path is missing")
    for base in (Path("."), run_dir):
        candidate = base / data_path
        if candidate.exists():
            return resolve_dataset_path(candidate, f"{config_path}:data.path")
    raise DataError(f"{config_path}:data.path: {data_path} does not exist")


def load_run(
    path: str | Path,
    data: str | Path | None = None,
    dataset: OutfitDataset | None = None,
    device: str | torch.device = "cpu",
    role: str = "model",
) -> Run:
    """Load a trained run: its best checkpoint bound to its dataset, checked, in eval mode on `device`.

    path: a run directory (`config.yaml` + `model/`) or a checkpoint folder
    (`model.json` + `model.safetensors`). data: the prepared dataset (folder
    or dataset.npz) to use instead of the run's `data.path`; required for a
    bare checkpoint folder. dataset: the already loaded dataset of `data` (or
    of the run), to skip reading it again. role: how the checkpoint is named
    in errors ('model', 'teacher').

    Raises CheckpointError (a DataError) for a missing / damaged checkpoint or
    a dataset whose user / item numbering is not the checkpoint's, DataError
    for a missing config.yaml or dataset.
    """
    path = Path(path)
    checkpoint = checkpoint_dir_of(path)
    run_dir = path if checkpoint != path else None
    config = read_run_config(run_dir) if run_dir is not None and (run_dir / RUN_CONFIG).is_file() else None
    if data is not None:
        data_path: Path | None = resolve_dataset_path(data)
    elif dataset is not None:
        data_path = None  # the caller's dataset: the run's own data.path is not consulted
    elif config is not None:
        data_path = run_data_path(run_dir, config)
    else:
        raise DataError(f"{path}: no config.yaml here; give the dataset with --data")
    if dataset is None:
        dataset, _ = load_dataset(data_path)
    model = load_model(checkpoint)
    where = f"checkpoint {checkpoint}" + (f", dataset {data_path}" if data_path is not None else "")
    check_data_numbering(model, dataset, role, where)
    model.bind_catalogue(dataset.catalogue)  # on the CPU, then moved whole (catalogue buffers too)
    model.to(device).eval()
    return Run(model, dataset, config, checkpoint, data_path, run_dir)
