"""The one run configuration: a validated YAML file (pydantic, unknown keys rejected).

Teacher, plain student and distilled student differ only in configuration:
`model.size` picks the backbone, `loss.kind` the objective and `loss.teacher`
the frozen teacher run whose scores the distillation terms read. Every field
carries a description, so `RunConfig.model_json_schema()` documents the file.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from outfitrec.data.outfits import DataError
from outfitrec.models.outfit_model import ModelConfig

PRESETS_DIR = Path(__file__).resolve().parents[1] / "configs"


class ConfigError(DataError):
    """A bad configuration: the message names the file (or --set) and the field.

    A subclass of DataError so the CLI reports it as one line with exit code 2.
    """


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    path: str = Field(
        description="Prepared dataset folder (dataset.npz + candidates_{valid,test}.npz, optional fitb_*.npz and "
        "truth.npz) or a dataset.npz inside one. Relative paths are read from the current directory."
    )
    batch_size: int = Field(64, ge=1, description="Training positives per step (each with its K negatives).")
    negatives: int = Field(
        10, ge=1, description="K: negatives per training positive, re-drawn every epoch (the softmax sees 1 + K)."
    )
    hard_share: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Share of the K negatives that are hard negatives (positive outfits of other users); "
        "the rest are type-aware random mixes.",
    )
    step_pool: int | None = Field(
        None,
        ge=1,
        description="Bound on the item pool of one step's random mixes: per category, this many items drawn "
        "uniformly (per step) from the TRAIN pool. Fewer distinct items per step make end-to-end CNN training "
        "cheaper on a CPU; each negative item stays uniform over the pool. null: draw from the whole TRAIN pool.",
    )
    seed: int = Field(
        0,
        ge=0,
        description="The run's seed: model initialisation, and each epoch's negatives, order, dropout and "
        "augmentations are derived from (seed, epoch), so a resumed run replays exactly.",
    )
    max_train: int | None = Field(
        None,
        ge=1,
        description="Use a seeded random subset of N training positives (quick experiments); null: all of them.",
    )


class OptimConfig(_Section):
    optimizer: Literal["adamw", "sgd"] = Field("adamw", description="AdamW (default) or SGD with momentum 0.9.")
    lr: float = Field(1e-3, gt=0, description="Learning rate.")
    weight_decay: float = Field(1e-4, ge=0, description="Weight decay (decoupled for AdamW).")
    epochs: int = Field(20, ge=1, description="Maximum number of epochs.")
    patience: int = Field(
        3, ge=1, description="Early stopping: stop after this many epochs without a better validation AUC."
    )
    min_delta: float = Field(0.0, ge=0, description="A validation AUC counts as better when it beats the best by more.")
    grad_clip: float | None = Field(5.0, gt=0, description="Clip the gradient norm to this value; null: no clipping.")


class LossConfig(_Section):
    kind: Literal["softmax", "fnd", "kd", "mse", "rd", "fnd+kd"] = Field(
        "softmax",
        description="Training objective. softmax: L_rec over 1 + K. fnd: False Negative Distillation (replaces "
        "L_rec). kd / mse / rd: L_rec plus weighted KL / score regression / ranking distillation against the "
        "teacher. fnd+kd: L_FND plus weighted KL. Every kind except softmax needs loss.teacher.",
    )
    temperature: float = Field(1.0, gt=0, description="Temperature T of the softmax over the candidates (L_rec, FND).")
    teacher: str | None = Field(
        None,
        description="Frozen teacher: a run directory (its model/ is loaded), a model checkpoint directory, or "
        "'baseline:NAME' (a collaborative baseline such as 'baseline:ease', fitted on the training data; "
        "distillation only needs its scores of the sampled candidates). Optional for softmax (then only used "
        "to log false-negative flags).",
    )
    teacher_pool: int | None = Field(
        None,
        ge=1,
        description="If set (> negatives), the teacher and student also score extra sampled negatives so the "
        "distillation term (KD / MSE / RD / FND) sees 1 + teacher_pool candidates; L_rec keeps 1 + K. "
        "null: the distillation term uses the same 1 + K candidates.",
    )
    own_top: int = Field(
        0,
        ge=0,
        description="Distillation where the student is used (issue 15): per positive, this many of the "
        "student's own current top outfits for the user (searched each epoch over the training items, the "
        "user's training outfits excluded; train/own_top.py) join the candidates the distillation term sees "
        "(the teacher scores them; L_rec keeps 1 + K). With loss.kind softmax (no distillation term) they are "
        "negatives of L_rec instead: an ablation, measured to hurt (most of them are outfits the user likes; "
        "docs/results/top-of-ranking.md). 0: off (the paper).",
    )
    own_top_search: int = Field(
        20,
        ge=1,
        le=1000,
        description="own_top: the top outfits searched per user each epoch (own_top are drawn from them, so at "
        "least own_top).",
    )
    own_top_start: int = Field(
        1, ge=0, description="own_top: the first epoch (0-based) that mines them (the search needs a trained student)."
    )
    alpha: float = Field(
        -0.5,
        description="FND strength: offset Delta_j = alpha * (t - r_u) (soft) or alpha * sign (hard); signed. "
        "Default -0.5, chosen by the measured alpha sweep (docs/results/README.md): alpha < 0 (forgive the "
        "negatives the teacher likes) helped, alpha > 0 (the paper's reading) hurt; 0 is plain softmax.",
    )
    variant: Literal["soft", "hard"] = Field("soft", description="FND offset variant (method.md section 3).")
    threshold: str = Field(
        "mean",
        pattern=r"^(mean|min|median|q(0(\.\d+)?|1(\.0+)?))$",
        description="Aggregate of the teacher's scores of a user's training positives giving the threshold r_u: "
        "mean, min, median or a quantile q<p> (e.g. q0.25).",
    )
    kd_weight: float = Field(1.0, ge=0, description="Weight of the KL distillation term (kd, fnd+kd).")
    kd_temperature: float = Field(1.0, gt=0, description="Temperature of the KL distillation term.")
    mse_weight: float = Field(1.0, ge=0, description="Weight of the score regression term (mse).")
    rd_weight: float = Field(1.0, ge=0, description="Weight of the ranking distillation term (rd).")
    rd_top_n: int = Field(1, ge=1, description="Ranking distillation: the teacher's top-N sampled negatives used.")
    anchor_weight: float = Field(
        1e-2, ge=0, description="Weight of the anchors' diversity regulariser tr(G) - log det G (LPAE: 1e-2)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> LossConfig:
        if self.own_top > self.own_top_search:
            raise ValueError(
                f"loss.own_top={self.own_top} is more than loss.own_top_search={self.own_top_search}, the outfits "
                "searched per user it is drawn from"
            )
        if self.kind != "softmax" and not self.teacher:
            raise ValueError(f"loss.kind={self.kind!r} needs loss.teacher (a teacher run directory or 'baseline:NAME')")
        return self


class ContrastiveConfig(_Section):
    enabled: bool = Field(False, description="Add lambda * NT-Xent on a projection of the outfit embedding z.")
    weight: float = Field(0.1, ge=0, description="lambda: weight of the contrastive term.")
    temperature: float = Field(0.2, gt=0, description="NT-Xent temperature (cosine similarity over T).")
    augmentations: Literal["none", "erase", "replace", "both"] = Field(
        "both",
        description="Views of each outfit: both = one erased view and one replaced view (the paper); "
        "erase / replace = two independent draws of that one; none = two copies (only dropout differs).",
    )
    scope: Literal["within", "batch"] = Field(
        "within",
        description="within: contrast inside each example's 1 + K outfits (2K negatives per view, the paper); "
        "batch: across all outfits of the step.",
    )
    projection_dim: int = Field(64, ge=1, description="Output size of the projection head (training only, not saved).")


class RuntimeConfig(_Section):
    threads: int | None = Field(
        1, ge=1, description="torch CPU threads (results are reproducible for one thread count); null: torch's default."
    )
    device: str = Field("cpu", description="torch device: cpu, cuda, cuda:0, ...")
    eval_batch_size: int = Field(512, ge=1, description="Outfits per batch when scoring evaluation candidates.")
    log_every: int = Field(10, ge=1, description="Steps between TensorBoard scalar writes of the training loss.")
    progress: bool = Field(True, description="Show tqdm progress bars (hidden anyway when not on a terminal).")

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        from outfitrec.devices import check_device

        return check_device(value, available=False)  # the machine's devices: checked when a run starts


class RunConfig(_Section):
    name: str = Field("run", description="Free-form run name (for tables and the default run directory).")
    role: Literal["teacher", "student"] = Field(
        "teacher", description="Documentation only: what the run is for; behaviour follows model.size and loss."
    )
    data: DataConfig = Field(description="Dataset and negative sampling.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The OutfitModel (models/outfit_model.py).")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="Optimiser and early stopping.")
    loss: LossConfig = Field(default_factory=LossConfig, description="Objective and distillation.")
    contrastive: ContrastiveConfig = Field(
        default_factory=ContrastiveConfig, description="Outfit contrastive learning (method.md section 4)."
    )
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig, description="Threads, device, logging.")

    def to_yaml(self) -> str:
        """The resolved configuration as YAML (every field, defaults included)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _format_errors(source: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            parts.append(f"{source}: unknown key {loc!r}")
        elif err["type"] == "missing":
            parts.append(f"{source}: missing required key {loc!r}")
        else:
            got = err.get("input")
            got_txt = "" if isinstance(got, dict) else f" (got {got!r})"
            parts.append(f"{source}: field {loc!r}: {err['msg']}{got_txt}")
    return "; ".join(parts)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`key.sub=value` -> (['key', 'sub'], value parsed as YAML: 3 -> int, true -> bool, null -> None)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key.sub=value")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".")]
    if not all(path):
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: value is not valid YAML ({exc})") from None
    return path, value


def apply_overrides(raw: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """A copy of the raw config dict with each `key.sub=value` override applied."""
    out = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: {'.'.join(path[: i + 1])} is not a section")
            node = child
        node[path[-1]] = value
    return out


def config_from_dict(raw: Any, source: str = "<config>", overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Validate a raw dict (plus overrides) into a RunConfig; errors name `source` and the field."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    raw = apply_overrides(raw, overrides)
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        label = source if not overrides else f"{source} (with --set {' '.join(overrides)})"
        raise ConfigError(_format_errors(label, exc)) from None


def resolve_config_path(path: str | Path) -> Path:
    """A config file path, or the name of a shipped preset (e.g. 'fmnist_teacher')."""
    p = Path(path)
    if p.is_file():
        return p
    for candidate in (PRESETS_DIR / p.name, PRESETS_DIR / f"{p.name}.yaml"):
        if p.parent == Path(".") and candidate.is_file():
            return candidate
    raise ConfigError(f"{path}: no such config file (presets: {', '.join(list_presets())})")


def list_presets() -> list[str]:
    """Names of the configuration presets shipped in outfitrec/configs/."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read and validate a YAML run configuration; raises ConfigError naming the file and the field."""
    p = resolve_config_path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc})") from None
    return config_from_dict(raw if raw is not None else {}, str(p), overrides)
