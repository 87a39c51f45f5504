"""CLI commands: `outfitrec train`, `outfitrec evaluate`, `outfitrec score`.

Teacher, plain student and distilled student are the same command with
another config (a YAML file or a shipped preset name such as
`fmnist_teacher`); `--set key.sub=value` overrides single fields.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer


def _default_run_dir(config_path: str, name: str) -> Path:
    stem = Path(config_path).stem or name
    return Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def train_cmd(
    config: str = typer.Option(
        None, "--config", "-c", help="Run config YAML, or a preset name (fmnist_teacher, fmnist_student, ...)."
    ),
    run_dir: Path = typer.Option(None, "--run-dir", "-o", help="Run directory (default runs/CONFIG-TIMESTAMP)."),
    set_: list[str] = typer.Option(
        None, "--set", "-s", help="Override one field: key.sub=value (value parsed as YAML). Repeatable."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run from RUN_DIR/last/."),
) -> None:
    """Train a teacher or a (distilled) student; writes the run directory and prints the final metrics."""
    from outfitrec.evaluate.protocol import format_table
    from outfitrec.train.config import ConfigError, load_config
    from outfitrec.train.loop import train

    overrides = list(set_ or [])
    if config is None and not resume:
        raise ConfigError("train: --config is required (or --resume with --run-dir)")
    if run_dir is None:
        if resume:
            raise ConfigError("train: --resume needs --run-dir")
        run_dir = _default_run_dir(config, "run")
    cfg = None
    if config is not None:
        cfg = load_config(config, overrides)
    elif overrides:
        raise ConfigError("train: --set needs --config")
    metrics = train(cfg, run_dir, resume=resume)
    from outfitrec.train.distributed import DistContext

    if not DistContext.from_env().is_main:  # under torchrun every rank has the metrics; rank 0 prints them
        return
    rows = {f"model ({split})": metrics[split] for split in ("valid", "test") if split in metrics}
    for split, m in metrics.get("popularity", {}).items():
        rows[f"popularity ({split})"] = m
    for split in ("valid", "test"):
        for name, m in metrics.get(split, {}).get("baselines", {}).items():
            rows[f"{name} ({split})"] = m
    typer.echo(format_table(rows))
    typer.echo(f"run directory: {run_dir}")


def evaluate_cmd(
    run: Path = typer.Argument(..., help="Run directory (or a model checkpoint directory with --data)."),
    split: str = typer.Option("test", "--split", help="Split whose candidate files are scored (valid or test)."),
    data: Path = typer.Option(None, "--data", help="Prepared dataset folder (default: the run's data.path)."),
    out: Path = typer.Option(None, "--out", help="Metrics JSON to write (default RUN/eval_SPLIT.json)."),
    device: str = typer.Option("cpu", "--device", help="torch device."),
    true_utility: bool = typer.Option(
        True,
        "--true-utility/--no-true-utility",
        help="On a dataset with truth.npz (Fashion-MNIST): the true-utility share and oracle recall@10 of the "
        "recommended top-10 for a fixed sample of users (about 10 s on the default preset, plus about 50 s "
        "once per dataset for the oracle's top-10, cached in the data folder).",
    ),
    users: int = typer.Option(20, "--users", min=1, help="Users in the true-utility sample (seeded)."),
) -> None:
    """Evaluate a run's best checkpoint on the fixed candidates of a split; prints a table, writes JSON.

    On a Fashion-MNIST dataset (truth.npz beside it) the table also has the true-utility share of the
    recommended top-10 and the recall of the oracle's top-10 (`recommend/true_utility.py`; JSON key
    'true_utility' with the per-user values and timings).
    """
    from outfitrec.data.outfits import write_text_atomic
    from outfitrec.devices import check_device
    from outfitrec.evaluate.protocol import dumps, evaluate_run, format_table

    metrics = evaluate_run(run, split, data, device=check_device(device))
    if true_utility:
        from outfitrec.recommend.true_utility import evaluate_run_true_utility

        report = evaluate_run_true_utility(run, data, n_users=users)
        if report is not None:
            metrics["true_utility"] = report
            metrics["true_share"] = report["true_share"]
            metrics["oracle_recall@10"] = report["oracle_recall@10"]
            typer.echo(
                f"true utility: {report['n_users']} users, search {report['seconds']:.1f} s, "
                f"oracle reference {report['reference_seconds']:.1f} s (cached in the data folder)"
            )
    rows = {f"model ({split})": metrics}
    if "popularity" in metrics:
        rows[f"popularity ({split})"] = metrics["popularity"]
    for name, m in metrics.get("baselines", {}).items():
        rows[f"{name} ({split})"] = m
    typer.echo(format_table(rows))
    target = out if out is not None else (run / f"eval_{split}.json" if run.is_dir() else Path(f"eval_{split}.json"))
    write_text_atomic(target, dumps(metrics))
    typer.echo(f"metrics written to {target}")


def score_cmd(
    run: Path = typer.Argument(..., help="Run directory (or a model checkpoint directory with --data)."),
    user: str = typer.Option(..., "--user", "-u", help="User index or user name."),
    items: str = typer.Option(..., "--items", "-i", help="Comma-separated item ids (or item names) of one outfit."),
    data: Path = typer.Option(None, "--data", help="Prepared dataset folder (default: the run's data.path)."),
) -> None:
    """Print the model's score of one outfit for one user (1..max outfit size items, none twice)."""
    from outfitrec.cli.recommend import load_recommender

    recommender = load_recommender(run, data)  # the engine's checks: user, items, outfit size, repeats
    catalogue = recommender.dataset.catalogue
    (score,) = recommender.score(recommender.dataset.user_index(user), [catalogue.item_indices(items)])
    typer.echo(f"{float(score):.6f}")


def register(app: typer.Typer) -> None:
    """Add `train`, `evaluate` and `score` to the main app."""
    app.command("train")(train_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("score")(score_cmd)
