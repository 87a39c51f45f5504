"""Running many training runs for one experiment: configs, shared run directories, reuse, resume.

An experiment is a list of `Variant`s (a name plus config overrides) trained
for several seeds. Every run goes through the one training loop
(`outfitrec.train.loop.train`); what this module adds is bookkeeping:

- Run directories are named `<variant>-s<seed>-<hash>`, where the hash covers
  the resolved RunConfig (without its free-form name and runtime section).
  Two experiments that need the same run (the plain student of the main table
  is also alpha = 0 of the sweep) therefore share one directory, and a
  changed setting never silently reuses a stale run.
- A run with a `metrics.json` is read back, not retrained; one killed midway
  (`config.yaml` but no `metrics.json`) is resumed from its `last/` state. An
  interrupted experiment re-run with the same command picks up where it
  stopped.
- The teacher is trained once per dataset (seed 0) and shared by every
  student seed, unless the experiment names a teacher variant with
  `per_seed=True` (the main comparison): then each seed has its own teacher
  run and each student seed distils from the teacher of the same seed
  (`Variant.teacher` = that teacher Variant). Distillation variants differ
  from the plain student only in their loss, and the plain student of the
  same seed sees the same negatives (train/batches.py derives them from
  (seed, epoch)), so per-seed paired differences are fair.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from outfitrec.data.cold import write_cold_folder
from outfitrec.data.io import atomic_folder, write_text_atomic
from outfitrec.data.outfits import DataError
from outfitrec.data.prepare import load_dataset, resolve_dataset_path
from outfitrec.evaluate.hybrid import (
    Component,
    build_hybrid,
    crossfit_auc,
    evaluate_hybrid,
    is_hybrid,
    save_hybrid,
    tune_hybrid,
)
from outfitrec.evaluate.protocol import dumps
from outfitrec.experiments.scales import base_config, dataset_kind, per_user_cap
from outfitrec.models.checkpoint import read_run_config
from outfitrec.train.config import ConfigError, RunConfig, config_from_dict
from outfitrec.train.loop import train
from outfitrec.train.run import fixed_part

HYBRID_TEACHER = "hybrid"  # Variant.teacher: the shared teacher + baselines, weights tuned on validation
HYBRID_BASELINES = ("ease", "puresvd")


@dataclass(frozen=True)
class Variant:
    """One row of an experiment's table: a name and what it changes in the student's config.

    overrides: nested dict merged into the base student config (e.g.
    {"loss": {"kind": "fnd", "alpha": -0.5}}). uses_teacher: fill loss.teacher
    with the shared teacher run. baseline: the variant whose same-seed run the
    paired differences are taken against (None: no differences). group / x:
    where the row sits in a sweep plot (e.g. group "soft", x = alpha).
    role: "student" (a seed per run) or "teacher" (a teacher-size model; without overrides and without
    per_seed, the shared teacher: one run, seed 0). per_seed: a teacher variant trained once per seed
    (teacher seeds). data: another prepared dataset folder for this variant (cold users), with its own
    teacher. teacher: with uses_teacher, this teacher instead of the shared teacher run: a string
    (e.g. "baseline:ease": a collaborative baseline teaches; HYBRID_TEACHER) or a teacher Variant of the
    same experiment, whose run of the SAME seed teaches (teacher seeds paired with student seeds).
    spread_of: the name of a variant taught by per-seed teachers that this one repeats with every seed
    taught by the shared seed-0 teacher: its spread over seeds is the student seeds' alone (the report's
    variance split). Its runs are named after that variant, so the seed where both configs agree (seed 0)
    is one run. extends: a variant whose config differs from this one's only in the epoch budget or the
    patience (the converged teacher): a run of this variant starts as a copy of that variant's finished run of
    the same seed, resumed with the larger budget (the loop's resume; every epoch's randomness derives from
    (seed, epoch) and there is no learning-rate schedule, so it equals training from scratch).
    """

    name: str
    overrides: dict = field(default_factory=dict)
    uses_teacher: bool = False
    baseline: str | None = "student"
    group: str = ""
    x: float | str | None = None
    role: str = "student"
    data: str | None = None
    note: str = ""
    teacher: str | Variant | None = None
    mix_of: Variant | None = None
    per_seed: bool = False
    spread_of: str | None = None
    extends: Variant | None = None

    @property
    def label(self) -> str:
        """The name its run directories carry (`spread_of` when set: one run where the configs agree)."""
        return self.spread_of or self.name


@dataclass
class RunResult:
    """A finished run: its directory, variant, seed, final metrics and epoch history."""

    variant: Variant
    seed: int
    run_dir: Path
    metrics: dict
    history: list[dict]
    seconds: float


def deep_merge(base: dict, extra: dict) -> dict:
    """A copy of `base` with `extra` merged in, nested dicts merged key by key."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# Model and loss fields added after runs existed: hashed only when set to something other than their default, so
# the runs trained before them keep their directories (and are reused, not retrained).
LATER_MODEL_FIELDS = (
    "blocks",
    "user_dim",
    "serving_dtype",
    "id_table",
    "id_exclude_self",
    "outfit_sums",
    "anchor_pool",
    "anchor_temperature",
    "outfit_set",
)
LATER_LOSS_FIELDS = ("own_top", "own_top_search", "own_top_start")


def config_hash(config: RunConfig) -> str:
    """8 hex digits identifying what a run computes (name and runtime settings excluded)."""
    dump = config.model_dump(mode="json")
    dump.pop("name", None)
    dump.pop("runtime", None)
    for section, later in (("model", LATER_MODEL_FIELDS), ("loss", LATER_LOSS_FIELDS)):
        fields = type(getattr(config, section)).model_fields
        for key in later:
            if key in fields and dump[section].get(key) == fields[key].default:
                dump[section].pop(key, None)
    return hashlib.sha1(json.dumps(dump, sort_keys=True).encode()).hexdigest()[:8]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name)


class Lab:
    """Builds configs for one dataset and scale, trains or reuses runs under `runs_root`."""

    def __init__(
        self,
        data: str | Path,
        runs_root: str | Path,
        scale: str,
        progress: bool = False,
        no_train: bool = False,
        true_utility: bool = True,
    ) -> None:
        self.data = str(data)
        self.true_utility = true_utility  # Fashion-MNIST: each run's true-utility share / oracle recall (cached)
        self.no_train = no_train  # only collect finished runs (tables from what is done so far)
        self.missing: list[str] = []
        self.runs_root = Path(runs_root)
        self.scale = scale
        self.progress = progress
        self.kind = dataset_kind(self.data)
        self._teachers: dict[str, Path] = {}
        self.log: list[str] = []
        self._train_data: str | None = None

    def train_data(self) -> str:
        """The prepared folder runs train on: the dataset itself, or (scale with a per-user cap) a subset of it.

        The cap keeps every user but at most N training outfits each (data/cold.py); validation and test
        candidates are the original ones, so metrics stay comparable. Written once under runs_root/data/.
        """
        if self._train_data is None:
            cap = per_user_cap(self.kind, self.scale)
            if cap is None:
                self._train_data = self.data
            else:
                self._train_data = str(self.derived_folder(f"train{cap}", cap))
        return self._train_data

    def derived_folder(self, label: str, n: int, share: float = 1.0) -> Path:
        """A prepared folder keeping at most n training outfits per cold user (a `share` of the users; made once)."""
        folder = resolve_dataset_path(self.data).parent
        out = self.runs_root / "data" / f"{_safe(folder.name)}-{label}"
        if not (out / "dataset.npz").is_file():
            write_cold_folder(folder, out, n, seed=0, overwrite=True, share=share)
        return out

    # ------------------------------------------------------------------ configs

    def config(self, role: str, overrides: dict, seed: int, name: str, data: str | None = None) -> RunConfig:
        """The resolved RunConfig of one run: the scale's base for `role`, the overrides, the seed."""
        raw = base_config(self.kind, role, self.scale, data or self.train_data())
        raw = deep_merge(raw, overrides)
        raw["name"] = name
        raw["role"] = role
        raw.setdefault("data", {})["seed"] = seed
        raw.setdefault("runtime", {})["progress"] = self.progress
        return config_from_dict(raw, source=f"experiment variant {name!r}")

    def teacher_dir(self, data: str | None = None) -> Path:
        """The shared teacher run of a dataset (trained on first use, seed 0; with no_train only its path)."""
        data = data or self.train_data()
        if data not in self._teachers:
            cfg = self.config("teacher", {}, 0, "teacher", data)
            if self.no_train:
                return self.runs_root / f"teacher-s0-{config_hash(cfg)}"
            result = self.run_config(cfg, "teacher")
            self._teachers[data] = result[0]
        return self._teachers[data]

    def variant_config(self, variant: Variant, seed: int) -> RunConfig:
        """The RunConfig of a variant's run for one seed (teacher path filled in when it distils)."""
        overrides = variant.overrides
        if variant.uses_teacher:
            if isinstance(variant.teacher, Variant):  # the teacher variant's run of the same seed
                teacher = str(self.run_dir_of(variant.teacher, seed))
            else:
                teacher = variant.teacher or str(self.teacher_dir(variant.data))
            if teacher == HYBRID_TEACHER:
                teacher = str(self.hybrid_dir(variant.data))
            overrides = deep_merge(overrides, {"loss": {"teacher": teacher}})
        role = "teacher" if variant.role == "teacher" else "student"
        return self.config(role, overrides, seed, variant.name, variant.data)

    # ------------------------------------------------------------------ running

    def run_config(self, config: RunConfig, label: str) -> tuple[Path, dict, list[dict], float]:
        """Train (or reuse / resume) the run of `config`; returns (run_dir, metrics, history, seconds)."""
        run_dir = self.runs_root / f"{_safe(label)}-s{config.data.seed}-{config_hash(config)}"
        start = time.perf_counter()
        status, metrics, history, train_seconds = train_or_reuse(config, run_dir)
        line = (
            f"{status:8s} {label:28s} seed={config.data.seed} "
            f"auc={_auc(metrics):.4f} train_s={train_seconds:.0f} wall_s={time.perf_counter() - start:.0f} {run_dir}"
        )
        self.log.append(line)
        print(line, flush=True)
        return run_dir, metrics, history, train_seconds

    def hybrid_dir(self, data: str | None = None) -> Path:
        """The shared teacher run mixed with HYBRID_BASELINES (`evaluate/hybrid.py`), made once per teacher.

        The mixing weights are chosen on the validation split; the folder holds hybrid.json and
        metrics.json ({split: metrics}) like a run's.
        """
        return self.hybrid_of(self.teacher_dir(data), data)

    def hybrid_path(self, run_dir: Path) -> Path:
        """Where the hybrid of a run lives (nothing is built)."""
        return self.runs_root / f"hybrid-{run_dir.name}-{'+'.join(HYBRID_BASELINES)}"

    def hybrid_of(self, run_dir: Path, data: str | None = None) -> Path:
        """A run mixed with HYBRID_BASELINES, weights chosen on validation (made once per run)."""
        out = self.hybrid_path(run_dir)
        if not (is_hybrid(out) and (out / "metrics.json").is_file()):
            dataset, folder = load_dataset(data or self.train_data())
            comps = [Component(f"run:{run_dir}")] + [Component(f"baseline:{b}") for b in HYBRID_BASELINES]
            hybrid = build_hybrid(comps, dataset, folder / "dataset.npz")
            best, tried = tune_hybrid(hybrid, dataset, folder)
            save_hybrid(hybrid, out, folder / "dataset.npz", {"valid_auc_by_mixing_weight_of_last": tried})
            metrics = evaluate_hybrid(hybrid, dataset, folder)
            metrics["valid"]["auc_crossfit"] = crossfit_auc(hybrid, dataset, folder)
            write_text_atomic(out / "metrics.json", dumps(metrics))
            line = f"hybrid   {out.name}: valid AUC {best:.4f}, weights " + ", ".join(
                f"{c.source} {c.weight:g}" for c in hybrid.components
            )
            self.log.append(line)
            print(line, flush=True)
        return out

    def run_variant(self, variant: Variant, seed: int) -> RunResult:
        """The run of one variant and seed (the shared teacher variant ignores the seed).

        A student whose teacher is a Variant gets that teacher's run of the same seed trained (or reused)
        first. On a dataset with a ground truth, metrics['true_utility'] holds the run's true-utility share
        and oracle recall@10 (`true_utility_of`).
        """
        if is_shared(variant) and variant.role == "teacher":
            run_dir = self.teacher_dir(variant.data)
            metrics = _read_json(run_dir / "metrics.json")
            history = _read_json(run_dir / "history.json")
            seconds = float(sum(h.get("seconds", 0.0) for h in history))
            return RunResult(variant, 0, run_dir, self._with_true_utility(run_dir, metrics), history, seconds)
        if variant.role == "hybrid" and variant.mix_of is not None:
            base = self.run_variant(variant.mix_of, seed)
            out = self.hybrid_of(base.run_dir, variant.data)
            return RunResult(variant, seed, out, _read_json(out / "metrics.json"), [], 0.0)
        if variant.role == "hybrid":
            out = self.hybrid_dir(variant.data)
            return RunResult(variant, 0, out, _read_json(out / "metrics.json"), [], 0.0)
        if variant.uses_teacher and isinstance(variant.teacher, Variant):
            teacher = variant.teacher
            if not (self.run_dir_of(variant, seed) / "metrics.json").is_file():
                self.run_config(self.variant_config(teacher, seed), teacher.label)  # trained or reused
        config = self.variant_config(variant, seed)
        if variant.extends is not None:
            self._start_from(variant.extends, seed, config, self.run_dir_of(variant, seed))
        run_dir, metrics, history, seconds = self.run_config(config, variant.label)
        return RunResult(variant, seed, run_dir, self._with_true_utility(run_dir, metrics), history, seconds)

    def _start_from(self, base: Variant, seed: int, config: RunConfig, run_dir: Path) -> None:
        """Make `run_dir` a copy of `base`'s finished run of `seed` holding `config`, for the loop to resume.

        Nothing happens when run_dir already holds a run. Raises DataError when the configs differ in more than
        what a resume may change (optim.epochs, optim.patience, runtime; and the name).
        """
        if (run_dir / "config.yaml").is_file():
            return
        base_config = self.variant_config(base, seed)
        if _identity(base_config) != _identity(config):
            raise DataError(f"variant {config.name!r}: extends {base.name!r} but differs in more than epochs/patience")
        base_dir = self.run_config(base_config, base.label)[0]
        with _RunLock(run_dir):
            if (run_dir / "config.yaml").is_file():
                return
            with atomic_folder(run_dir) as tmp:
                shutil.copytree(base_dir, tmp, dirs_exist_ok=True)
                for name in ("metrics.json", "true_utility.json"):
                    (tmp / name).unlink(missing_ok=True)
                write_text_atomic(tmp / "config.yaml", config.to_yaml())
        line = f"extends  {config.name}: starts from {base_dir} (resumed with epochs {config.optim.epochs})"
        self.log.append(line)
        print(line, flush=True)

    def _with_true_utility(self, run_dir: Path, metrics: dict) -> dict:
        report = self.true_utility_of(run_dir) if self.true_utility else None
        return metrics if report is None else {**metrics, "true_utility": report}

    def true_utility_of(self, run_dir: Path) -> dict | None:
        """The run's true-utility metrics (`recommend/true_utility.py`, default sample and search), or None.

        None when neither the run's data folder nor the experiment's dataset has a truth.npz. Computed once per
        checkpoint: cached in RUN/true_utility.json, keyed by the checkpoint's hash and the settings.
        """
        from outfitrec.data.prepare import resolve_dataset_path
        from outfitrec.models.checkpoint import run_data_path
        from outfitrec.recommend import true_utility as tu
        from outfitrec.recommend.engine import checkpoint_hash

        folder = run_data_path(run_dir).parent
        if not tu.has_truth(folder):
            # a derived folder (per-user cap): the original dataset's truth
            folder = resolve_dataset_path(self.data).parent
            if not tu.has_truth(folder):
                return None
        key = json.dumps(
            {
                "checkpoint": checkpoint_hash(run_dir / "model"),
                "data": str(folder),
                "users": tu.DEFAULT_USERS,
                "k": tu.DEFAULT_K,
                "search": repr(tu.SERVED),
                "reference": repr(tu.REFERENCE),
            },
            sort_keys=True,
        )
        path = run_dir / "true_utility.json"
        if path.is_file():
            try:
                cached = json.loads(path.read_text())
                if cached.get("key") == key:
                    return cached["report"]
            except (OSError, ValueError, KeyError, AttributeError):
                pass  # recomputed below
        report = tu.evaluate_run_true_utility(run_dir, folder)
        if report is not None:
            from outfitrec.data.outfits import write_text_atomic

            write_text_atomic(path, json.dumps({"key": key, "report": report}, indent=1) + "\n")
        return report

    def run_all(self, variants: list[Variant], seeds: list[int]) -> list[RunResult]:
        """Every (variant, seed) run, seed-major so that a partial experiment already has whole seeds."""
        jobs = []
        for seed in seeds:
            for v in variants:
                if is_shared(v):
                    if seed == seeds[0]:
                        jobs.append((v, seed))
                else:
                    jobs.append((v, seed))
        done: dict[tuple[str, int], RunResult] = {}
        queue = list(jobs)
        bar = tqdm(total=len(jobs), desc="runs", disable=None if self.progress else True)
        while queue:
            # a run another process is training now is deferred: do the others first, come back later
            free = [job for job in queue if not self._busy(*job)]
            job = free[0] if free else queue[0]
            queue.remove(job)
            if self.no_train and not (self.run_dir_of(*job) / "metrics.json").is_file():
                self.missing.append(f"{job[0].name} seed {job[1]}")
            else:
                done[(job[0].name, job[1])] = self.run_variant(*job)
            bar.update(1)
        bar.close()
        return [done[(v.name, seed)] for v, seed in jobs if (v.name, seed) in done]

    def run_dir_of(self, variant: Variant, seed: int) -> Path:
        """Where the run of a variant and seed lives (its config hash names it)."""
        if variant.role == "hybrid":
            base = self.teacher_dir(variant.data) if variant.mix_of is None else self.run_dir_of(variant.mix_of, seed)
            return self.hybrid_path(base)
        if is_shared(variant):
            return self.teacher_dir(variant.data)
        config = self.variant_config(variant, seed)
        return self.runs_root / f"{_safe(variant.label)}-s{config.data.seed}-{config_hash(config)}"

    def _busy(self, variant: Variant, seed: int) -> bool:
        """Whether another live process holds the lock of this (unfinished) run."""
        if is_shared(variant):
            return False
        run_dir = self.run_dir_of(variant, seed)
        lock = run_dir.parent / f"{run_dir.name}.lock"
        return not (run_dir / "metrics.json").is_file() and lock.exists() and _alive(lock)


def is_shared(variant: Variant) -> bool:
    """A variant with one run for every seed: the shared teacher, or the hybrid made from it (not per_seed)."""
    return (variant.role == "hybrid" and variant.mix_of is None) or (
        variant.role == "teacher" and not variant.overrides and not variant.per_seed
    )


def train_or_reuse(config: RunConfig, run_dir: str | Path, fresh: bool = False) -> tuple[str, dict, list[dict], float]:
    """The run of `config` in `run_dir`: read back, resumed or trained; (status, metrics, history, train seconds).

    status: 'reused' (metrics.json there), 'waited' (another process finished it while this one waited for its
    lock), 'resumed' (config.yaml but no metrics.json: a killed run, continued from its last/ state) or 'trained'.
    A run directory holding the run of another config (a named directory whose preset changed since) is
    retrained from scratch, as is any run with fresh=True: a changed setting never silently reuses a stale run.
    """
    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.json"
    status = "reused"
    if fresh or _holds_other_run(run_dir, config) or not metrics_path.is_file():
        with _RunLock(run_dir):  # another process may be training this very run
            if fresh or _holds_other_run(run_dir, config):
                if (run_dir / "config.yaml").is_file():  # a run's folder (anything else: train() refuses it)
                    shutil.rmtree(run_dir)
                status = "trained"
                train(config, run_dir)
            elif metrics_path.is_file():
                status = "waited"
            else:
                resume = (run_dir / "config.yaml").is_file()
                status = "resumed" if resume else "trained"
                train(None if resume else config, run_dir, resume=resume)
    metrics = _read_json(metrics_path)
    history = _read_json(run_dir / "history.json") if (run_dir / "history.json").is_file() else []
    return status, metrics, history, float(sum(h.get("seconds", 0.0) for h in history))


def _identity(config: RunConfig) -> dict:
    """What a resume may not change (`train/run.py` fixed_part), without the free-form name."""
    raw = fixed_part(config)
    raw.pop("name", None)
    return raw


def _holds_other_run(run_dir: Path, config: RunConfig) -> bool:
    """Whether `run_dir` holds a run (its config.yaml) of a config other than `config` (runtime settings aside)."""
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return False
    try:
        return config_hash(config_from_dict(read_run_config(run_dir), str(saved))) != config_hash(config)
    except (ConfigError, DataError):  # unreadable, or written by another version: not this run
        return True


class _RunLock:
    """An exclusive lock on a run directory (`<run>.lock` beside it, holding the owner's pid).

    Two experiments started side by side share runs (the teacher, the plain
    student); the second waits for the first to finish a shared run instead
    of training it twice. A lock whose process is gone is taken over.
    """

    def __init__(self, run_dir: Path, poll_s: float = 5.0) -> None:
        self.path = run_dir.parent / f"{run_dir.name}.lock"
        self.poll_s = poll_s

    def __enter__(self) -> _RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if not _alive(self.path):
                    self.path.unlink(missing_ok=True)
                    continue
                time.sleep(self.poll_s)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return self

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)


def _alive(lock: Path) -> bool:
    """Whether the process named in a lock file still runs (unreadable or empty: assume it does, briefly)."""
    try:
        pid = int(lock.read_text().strip())
    except (OSError, ValueError):
        return time.time() - lock.stat().st_mtime < 30 if lock.exists() else False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read run output ({exc})") from None


def _auc(metrics: dict) -> float:
    for split in ("test", "valid"):
        m = metrics.get(split)
        if isinstance(m, dict) and "auc" in m:
            return float(m["auc"])
    return float("nan")
