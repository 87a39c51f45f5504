"""CLI command: `outfitrec demo`, the main job on the embedded default dataset.

data (Fashion-MNIST outfits, with ground truth) -> oracle, popularity and EASE -> teacher -> distilled
whole-model student -> evaluation -> a recommendation, each step skipped when its output already exists (so a
second `make demo` is quick), and a results table printed and written to `runs/demo/results.md`. The plain
backbone-only student (`fmnist_student`) is not trained here, to keep the demo within 10 minutes on 2 cores
(`outfitrec train --config fmnist_student` trains it; the experiments compare every student). The runs go
through the experiments' runner (`experiments/runner.py::train_or_reuse`): a
finished run is read back, a killed one resumed, one whose preset changed since
retrained; `--fresh` redoes every step.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

DEMO_STEPS = (
    # (run name, config preset, uses the teacher). The distilled student is the whole-model one (issue 14: every
    # part serving pays for shrunk, one 12-d float16 vector per user), since it holds the teacher's quality:
    # test AUC and true share at or above the teacher's over 3 seeds (docs/results/compress.md).
    ("teacher", "fmnist_teacher", False),
    ("student_distilled", "fmnist_student_whole_distilled", True),
)


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def demo(
    data: Path = typer.Option(Path("datasets/fmnist-default"), "--data", help="Where the default dataset goes."),
    runs: Path = typer.Option(Path("runs/demo"), "--runs", help="Where the demo's runs go."),
    preset: str = typer.Option("default", "--preset", help="Fashion-MNIST preset: tiny, default or large."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data and of every run."),
    fresh: bool = typer.Option(False, "--fresh", help="Redo every step, even those whose output exists."),
    set_: list[str] = typer.Option(
        None, "--set", "-s", help="Override one field of every run: key.sub=value (value parsed as YAML). Repeatable."
    ),
) -> None:
    """Run data -> teacher -> student -> distillation -> evaluation -> recommendation on Fashion-MNIST outfits."""
    from outfitrec.data.outfits import write_text_atomic

    started = time.perf_counter()
    timings: dict[str, float] = {}

    _step(f"1. data: Fashion-MNIST outfits, preset {preset!r} -> {data}")
    t0 = time.perf_counter()
    _make_data(data, preset, seed, fresh)
    timings["data"] = time.perf_counter() - t0

    _step("2. oracle and baselines: the true utility, popularity and EASE on the fixed test candidates")
    t0 = time.perf_counter()
    results = _oracle(data)
    timings["oracle"] = time.perf_counter() - t0

    params: dict[str, dict] = {}
    for number, (name, preset_name, needs_teacher) in enumerate(DEMO_STEPS, start=3):
        run_dir = runs / name
        _step(f"{number}. train {name} ({preset_name}) -> {run_dir}")
        t0 = time.perf_counter()
        overrides = [f"data.path={data}", f"data.seed={seed}", *(set_ or [])]
        if needs_teacher:
            overrides.append(f"loss.teacher={runs / 'teacher'}")
        results[name], params[name] = _train(preset_name, overrides, run_dir, fresh)
        timings[name] = time.perf_counter() - t0

    _step(f"{number + 1}. recommend: top outfits of the whole catalogue for user 0 (the distilled student)")
    t0 = time.perf_counter()
    rec_lines = _recommend_example(runs / "student_distilled", data)
    timings["recommend"] = time.perf_counter() - t0

    text = _results_text(preset, seed, results, params, rec_lines, time.perf_counter() - started, timings)
    write_text_atomic(runs / "results.md", text + "\n")
    _step("Results")
    print(text)
    print(f"\n(written to {runs / 'results.md'})")


def _make_data(data: Path, preset: str, seed: int, fresh: bool) -> None:
    """The prepared Fashion-MNIST folder (with ground truth), generated unless it exists (or fresh)."""
    from outfitrec.data.fmnist import fashion_mnist_available, generate, write_fmnist

    if not fresh and (data / "dataset.npz").exists():
        print(f"{data}/dataset.npz exists: reused (--fresh to regenerate)")
        return
    images = "fmnist" if fashion_mnist_available() else "procedural"
    if images == "procedural":
        print("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist): using procedural images")
    generated = generate(preset, seed, images=images, progress=True)
    summary = write_fmnist(generated, data, k=10, seed=seed, polyvore_u=True, overwrite=True)
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, dict)}, indent=1))


def _oracle(data: Path) -> dict[str, dict]:
    """The results table's first rows: the true utility, popularity and EASE (collaborative) on the test candidates."""
    from outfitrec.data.outfits import OutfitDataset
    from outfitrec.evaluate.oracle import oracle_report
    from outfitrec.evaluate.protocol import evaluate_baseline

    report, _ = oracle_report(data, split="test")
    print(json.dumps(report, indent=1))
    ease = evaluate_baseline("ease", OutfitDataset.load(data / "dataset.npz"), data, "test")  # cached in data/
    print(f"EASE: test AUC {ease['auc']:.4f} (lambda {ease['params'].get('lam', '?')})")
    metrics = ("auc", "ndcg", "ndcg@10", "fitb", "n_users")
    return {
        "oracle (true utility)": dict(report.get("oracle", {})),
        "popularity": dict(report.get("popularity", {})),
        "EASE": {k: ease[k] for k in metrics if k in ease},
    }


def _train(preset_name: str, overrides: list[str], run_dir: Path, fresh: bool) -> tuple[dict, dict]:
    """One run of the demo through the experiments' runner (reused when done, resumed when killed, else trained).

    Returns its test metrics and its parameter counts.
    """
    from outfitrec.experiments.runner import train_or_reuse
    from outfitrec.models.checkpoint import load_model
    from outfitrec.train.config import load_config

    status, metrics, _, _ = train_or_reuse(load_config(preset_name, overrides), run_dir, fresh=fresh)
    print(f"{status}: {run_dir}" + (" (--fresh to retrain)" if status == "reused" else ""), flush=True)
    return dict(metrics.get("test", metrics)), load_model(run_dir / "model").parameter_counts()


def _results_text(
    preset: str,
    seed: int,
    results: dict[str, dict],
    params: dict[str, dict],
    rec_lines: list[str],
    total: float,
    timings: dict[str, float],
) -> str:
    """runs/demo/results.md: the metrics table, the parameter counts, the recommendation, the times."""
    from outfitrec.evaluate.protocol import format_table

    param_lines = ["| model | backbone params | other params | total |", "| --- | ---: | ---: | ---: |"]
    for name, counts in params.items():
        param_lines.append(f"| {name} | {counts['backbone']:,} | {counts['rest']:,} | {counts['total']:,} |")
    timing_line = ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
    return "\n".join(
        [
            f"# outfitrec demo: Fashion-MNIST outfits ({preset}, seed {seed})",
            "",
            "Test split, fixed candidates (10 random-mix negatives per positive):",
            "",
            format_table(results),
            "",
            *param_lines,
            "",
            *rec_lines,
            "",
            f"Wall time {total:.0f} s ({timing_line}).",
        ]
    )


def _recommend_example(run_dir: Path, data: Path) -> list[str]:
    """Top-3 outfits for user 0 from the recommender, with the time it took (or why it could not run)."""
    try:
        from outfitrec.cli.recommend import load_recommender
    except ImportError as exc:  # the recommender is an optional part of the demo
        return [f"(recommendation skipped: {exc})"]
    recommender = load_recommender(run_dir, data)
    t0 = time.perf_counter()
    recs = recommender.recommend(0, k=3)
    seconds = time.perf_counter() - t0
    lines = [f"Top-3 outfits for user 0 out of the whole catalogue ({seconds * 1000:.0f} ms):", ""]
    for rank, rec in enumerate(recs, start=1):
        lines.append(f"{rank}. score {rec.score:.3f}: items {', '.join(map(str, rec.items))}")
    return lines


def register(app: typer.Typer) -> None:
    """Add `outfitrec demo` to the main app."""
    app.command("demo")(demo)
