"""CLI command: `outfitrec demo`, the main job on the embedded default dataset.

data (Fashion-MNIST outfits, with ground truth) -> oracle -> teacher -> plain
student -> distilled student -> evaluation -> a recommendation, each step
skipped when its output already exists (so a second `make demo` is quick), and
a results table printed and written to `runs/demo/results.md`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

DEMO_STEPS = (
    # (run name, config preset, uses the teacher)
    ("teacher", "fmnist_teacher", False),
    ("student", "fmnist_student", False),
    ("student_distilled", "fmnist_student_distilled", True),
)


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def demo(
    data: Path = typer.Option(Path("datasets/fmnist-default"), "--data", help="Where the default dataset goes."),
    runs: Path = typer.Option(Path("runs/demo"), "--runs", help="Where the demo's runs go."),
    preset: str = typer.Option("default", "--preset", help="Fashion-MNIST preset: tiny, default or large."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data and of every run."),
    fresh: bool = typer.Option(False, "--fresh", help="Redo every step, even those whose output exists."),
) -> None:
    """Run data -> teacher -> student -> distillation -> evaluation -> recommendation on Fashion-MNIST outfits."""
    from outfitrec.data.fmnist import fashion_mnist_available, generate, write_fmnist
    from outfitrec.data.outfits import write_text_atomic
    from outfitrec.evaluate.oracle import oracle_report
    from outfitrec.evaluate.protocol import format_table
    from outfitrec.models.checkpoint import load_model
    from outfitrec.train.config import ConfigError, load_config, resolve_config_path
    from outfitrec.train.loop import train

    started = time.perf_counter()
    timings: dict[str, float] = {}

    _step(f"1. data: Fashion-MNIST outfits, preset {preset!r} -> {data}")
    t0 = time.perf_counter()
    if fresh or not (data / "dataset.npz").exists():
        images = "fmnist" if fashion_mnist_available() else "procedural"
        if images == "procedural":
            print("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist): using procedural images")
        generated = generate(preset, seed, images=images, progress=True)
        summary = write_fmnist(generated, data, k=10, seed=seed, polyvore_u=True, overwrite=True)
        print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, dict)}, indent=1))
    else:
        print(f"{data}/dataset.npz exists: reused (--fresh to regenerate)")
    timings["data"] = time.perf_counter() - t0

    _step("2. oracle: the true utility on the fixed test candidates")
    t0 = time.perf_counter()
    report, _ = oracle_report(data, split="test")
    print(json.dumps(report, indent=1))
    timings["oracle"] = time.perf_counter() - t0

    results: dict[str, dict] = {
        "oracle (true utility)": dict(report.get("oracle", {})),
        "popularity": dict(report.get("popularity", {})),
    }
    params: dict[str, dict] = {}
    for number, (name, preset_name, needs_teacher) in enumerate(DEMO_STEPS, start=3):
        try:
            resolve_config_path(preset_name)
        except ConfigError:
            continue
        run_dir = runs / name
        _step(f"{number}. train {name} ({preset_name}) -> {run_dir}")
        t0 = time.perf_counter()
        overrides = [f"data.path={data}", f"data.seed={seed}"]
        if needs_teacher:
            overrides.append(f"loss.teacher={runs / 'teacher'}")
        metrics_file = run_dir / "metrics.json"
        if fresh or not metrics_file.exists():
            config = load_config(preset_name, overrides)
            metrics = train(config, run_dir, resume=(run_dir / "last").exists() and not fresh)
        else:
            print(f"{metrics_file} exists: reused (--fresh to retrain)")
            metrics = json.loads(metrics_file.read_text())
        timings[name] = time.perf_counter() - t0
        test = metrics.get("test", metrics)
        results[name] = dict(test)
        params[name] = load_model(run_dir / "model").parameter_counts()

    _step("6. recommend: top outfits of the whole catalogue for user 0 (the distilled student)")
    t0 = time.perf_counter()
    shipped = runs / "student_distilled"
    rec_lines = _recommend_example(shipped if (shipped / "model").is_dir() else runs / "student", data)
    timings["recommend"] = time.perf_counter() - t0

    table = format_table(results)
    param_lines = ["| model | backbone params | other params | total |", "| --- | ---: | ---: | ---: |"]
    for name, counts in params.items():
        param_lines.append(f"| {name} | {counts['backbone']:,} | {counts['rest']:,} | {counts['total']:,} |")
    total = time.perf_counter() - started
    timing_line = ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
    text = "\n".join(
        [
            f"# outfitrec demo: Fashion-MNIST outfits ({preset}, seed {seed})",
            "",
            "Test split, fixed candidates (10 random-mix negatives per positive):",
            "",
            table,
            "",
            param_lines[0],
            *param_lines[1:],
            "",
            *rec_lines,
            "",
            f"Wall time {total:.0f} s ({timing_line}).",
        ]
    )
    write_text_atomic(runs / "results.md", text + "\n")
    _step("Results")
    print(text)
    print(f"\n(written to {runs / 'results.md'})")


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
