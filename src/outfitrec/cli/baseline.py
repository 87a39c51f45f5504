"""CLI command: `outfitrec baseline NAME --data PATH` (popularity and collaborative baselines, no training loop).

NAME is one of the registry's baselines (`evaluate/baselines.py`: popularity,
ease, itemknn, userknn, puresvd) or `all`. `--set param=value` overrides a
hyper-parameter (`--set ease.lam=30` with `all`, or a bare `lam=30` for one
baseline). Prints the metrics table of `outfitrec evaluate` and writes JSON.
"""

from __future__ import annotations

from pathlib import Path

import typer

from outfitrec.data.outfits import DataError


def parse_sets(sets: list[str], names: list[str]) -> dict[str, dict[str, str]]:
    """`param=value` / `name.param=value` overrides -> {name: {param: value}} (bare params need one name)."""
    out: dict[str, dict[str, str]] = {n: {} for n in names}
    for text in sets:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise DataError(f"--set {text!r}: expected param=value")
        key = key.strip()
        if "." in key:
            name, _, param = key.partition(".")
            if name not in out:
                raise DataError(f"--set {text!r}: baseline {name!r} is not among {names}")
            out[name][param] = value.strip()
        elif len(names) == 1:
            out[names[0]][key] = value.strip()
        else:
            raise DataError(f"--set {text!r}: with several baselines, name one (e.g. ease.{key}=...)")
    return out


def baseline_cmd(
    name: str = typer.Argument(..., help="popularity, ease, itemknn, userknn, puresvd, or all."),
    data: Path = typer.Option(..., "--data", help="Prepared dataset folder (or its dataset.npz)."),
    split: str = typer.Option("valid", "--split", help="Split whose candidate files are scored (valid or test)."),
    set_: list[str] = typer.Option(
        None, "--set", "-s", help="Hyper-parameter: param=value (or NAME.param=value). Repeatable."
    ),
    out: Path = typer.Option(
        None, "--out", help="Metrics JSON to write (default runs/baselines/<data folder>/<NAME>_<split>.json)."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Refit even when DATA/baselines_cache.json has it."),
) -> None:
    """Fit a baseline on the training outfits and score a split's fixed candidates; prints a table, writes JSON."""
    from outfitrec.data.outfits import write_text_atomic
    from outfitrec.data.prepare import load_dataset
    from outfitrec.evaluate.baselines import BASELINES, baseline_params
    from outfitrec.evaluate.protocol import dumps, evaluate_baseline, format_table

    names = list(BASELINES) if name == "all" else [name]
    overrides = parse_sets(list(set_ or []), names)
    params = {n: baseline_params(n, **overrides[n]) for n in names}  # checks names and values before loading
    dataset, folder = load_dataset(data)
    results = {}
    for n in names:
        results[n] = evaluate_baseline(n, dataset, folder, split, cache=not no_cache, **params[n])
    typer.echo(format_table({f"{n} ({split})": m for n, m in results.items()}))
    for n, m in results.items():
        p = ", ".join(f"{k}={v}" for k, v in sorted(m.get("params", {}).items()))
        typer.echo(f"{n}: {p}; fit {m.get('fit_seconds', float('nan')):.1f} s")
    target = out if out is not None else Path("runs") / "baselines" / folder.name / f"{name}_{split}.json"
    payload = results[name] if name != "all" else {"baselines": results}
    write_text_atomic(target, dumps({"split": split, "data": str(folder), **payload}))
    typer.echo(f"metrics written to {target}")


def hybrid_cmd(
    run: Path = typer.Argument(..., help="A trained run directory (its model/ checkpoint)."),
    out: Path = typer.Option(..., "--out", help="Folder to write hybrid.json and metrics.json into."),
    baseline: list[str] = typer.Option(
        ["ease"], "--baseline", "-b", help="Collaborative baseline(s) to add (repeatable). Default: ease."
    ),
    data: Path = typer.Option(None, "--data", help="Prepared dataset (default: the run's data.path)."),
    grid: str = typer.Option(
        "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1",
        "--grid",
        help="Mixing weights a tried for each added component: (1 - a) * the others + a * it.",
    ),
) -> None:
    """A hybrid: the run's scores plus baselines', standardised, each weight chosen on the validation split."""
    from outfitrec.data.outfits import write_text_atomic
    from outfitrec.data.prepare import load_dataset
    from outfitrec.evaluate.hybrid import (
        Component,
        build_hybrid,
        crossfit_auc,
        evaluate_hybrid,
        save_hybrid,
        tune_hybrid,
    )
    from outfitrec.evaluate.protocol import dumps, format_table
    from outfitrec.models.checkpoint import run_data_path

    try:
        weights = tuple(float(w) for w in grid.split(","))
    except ValueError:
        raise DataError(f"--grid {grid!r}: expected comma-separated numbers") from None
    dataset, folder = load_dataset(data if data is not None else run_data_path(run))
    components = [Component(f"run:{run}")] + [Component(f"baseline:{b}") for b in baseline]
    hybrid = build_hybrid(components, dataset, folder / "dataset.npz")
    best, tried = tune_hybrid(hybrid, dataset, folder, weights)
    metrics = evaluate_hybrid(hybrid, dataset, folder)
    metrics["valid"]["auc_crossfit"] = crossfit_auc(hybrid, dataset, folder, weights)
    tried_text = ", ".join(f"{w:g}: {a:.4f}" for w, a in tried.items())
    save_hybrid(hybrid, out, folder / "dataset.npz", {"valid_auc_by_weight_of_last": tried})
    write_text_atomic(Path(out) / "metrics.json", dumps(metrics))
    typer.echo(format_table({f"hybrid ({s})": m for s, m in metrics.items()}))
    typer.echo("weights: " + ", ".join(f"{c.source} {c.weight:g}" for c in hybrid.components))
    typer.echo(f"valid AUC by mixing weight of {components[-1].source}: {tried_text}")
    typer.echo(
        f"valid AUC with weights chosen on the other half of the users (no tuning optimism): "
        f"{metrics['valid']['auc_crossfit']:.4f}"
    )
    typer.echo(f"hybrid written to {out}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("baseline")(baseline_cmd)
    app.command("hybrid")(hybrid_cmd)
