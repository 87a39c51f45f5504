"""`outfitrec experiment compress`: serving cost against quality, teacher beside backbone-only and whole-model students.

The runs are the experiment's variants (`definitions.compress_variants`: the teacher, the backbone-only
student plain and FND + CL, each whole-model preset of `models.outfit_model.SERVING_PRESETS` plain and
FND + CL), trained or reused by the `Lab`. For each variant this module adds what serving pays
(`experiments/cost.py`), measured on its first seed's trained checkpoint:

- outfit scoring from cached item embeddings (outfits/s, one thread, all variants timed round-robin);
- bytes per user: the vector the recommender keeps per user (served) and the checkpoint's user
  parameters (stored);
- a serving process (fresh interpreter): resident memory; the latency of a top-10 recommendation (all
  variants loaded side by side in this process, timed round-robin);
- the test AUC as served (collapsed user vectors and item embeddings in the serving dtype), every seed.

Writes `pareto.md` (the table, the issue's targets checked on what was measured, the command),
`pareto.csv` and `pareto.png` (AUC against throughput and against bytes per user) beside the
experiment's usual `table.md` / `runs.csv` / `summary.csv`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from outfitrec.data.outfits import write_text_atomic
from outfitrec.data.prepare import load_dataset
from outfitrec.experiments.cost import measure_serving_process, recommend_latency, scoring_throughput, served_auc
from outfitrec.experiments.report import primary_split, to_csv
from outfitrec.experiments.runner import RunResult
from outfitrec.models.checkpoint import load_run

# the targets for a whole-model student against the teacher (issue 14)
AUC_MARGIN = 0.005  # test AUC >= teacher - 0.005 (3-seed mean)
THROUGHPUT_FACTOR = 10.0  # >= 10x the teacher's outfit scoring from cached item embeddings
BYTES_FACTOR = 0.1  # <= 1/10 of the teacher's bytes per user


def _mean_std(values: list[float]) -> tuple[float, float]:
    vals = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if not len(vals):
        return float("nan"), float("nan")
    return float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")


def pareto_rows(results: list[RunResult], data: str | Path, serving_users: int = 20) -> list[dict]:
    """One row per variant (first-seen order): quality over its seeds, serving cost of its first run."""
    dataset, folder = load_dataset(data)
    split = primary_split(results)
    by_variant: dict[str, list[RunResult]] = {}
    for r in results:
        by_variant.setdefault(r.variant.name, []).append(r)
    first = {name: sorted(runs, key=lambda r: r.seed)[0] for name, runs in by_variant.items()}
    models = {name: load_run(r.run_dir, dataset=dataset).model for name, r in first.items()}
    throughput = scoring_throughput(models, dataset)
    latency = recommend_latency({name: r.run_dir for name, r in first.items()}, serving_users)
    rows = []
    for name, runs in by_variant.items():
        model = models[name]
        cfg = model.config
        served = [served_auc(load_run(r.run_dir, dataset=dataset).model, dataset, folder, split) for r in runs]
        auc = [r.metrics.get(split, {}).get("auc") for r in runs]
        share = [(r.metrics.get("true_utility") or {}).get("true_share") for r in runs]
        process = measure_serving_process(first[name].run_dir)
        counts = model.parameter_counts()
        per_user = model.bytes_per_user()
        row = {
            "variant": name,
            "n": len(runs),
            "auc_mean": _mean_std(auc)[0],
            "auc_std": _mean_std(auc)[1],
            "served_auc_mean": _mean_std(served)[0],
            "true_share_mean": _mean_std(share)[0],
            "dim": cfg.dim,
            "blocks": cfg.blocks,
            "heads": cfg.heads,
            "user_dim": cfg.user_dim or cfg.dim,
            "n_anchors": cfg.n_anchors,
            "serving_dtype": cfg.serving_dtype,
            "backbone_params": counts["backbone"],
            "rest_params": counts["rest"],
            "outfits_per_s": throughput[name],
            "bytes_per_user_served": per_user["served"],
            "bytes_per_user_stored": per_user["stored"],
            **process,
            **latency[name],
            "run_dir": str(first[name].run_dir),
            "note": runs[0].variant.note,
        }
        rows.append(row)
    teacher = next((r for r in rows if r["variant"] == "teacher"), None)
    for row in rows:
        if teacher is not None:
            row["d_auc_vs_teacher"] = row["auc_mean"] - teacher["auc_mean"]
            row["throughput_x_teacher"] = row["outfits_per_s"] / teacher["outfits_per_s"]
            row["bytes_served_of_teacher"] = row["bytes_per_user_served"] / teacher["bytes_per_user_served"]
            row["bytes_stored_of_teacher"] = row["bytes_per_user_stored"] / teacher["bytes_per_user_stored"]
        row["pareto"] = not any(_dominates(other, row) for other in rows if other is not row)
    return rows


def _dominates(a: dict, b: dict) -> bool:
    """a is at least as good as b in AUC, throughput and served bytes per user, and better in one."""
    ge = (
        a["auc_mean"] >= b["auc_mean"]
        and a["outfits_per_s"] >= b["outfits_per_s"]
        and a["bytes_per_user_served"] <= b["bytes_per_user_served"]
    )
    gt = (
        a["auc_mean"] > b["auc_mean"]
        or a["outfits_per_s"] > b["outfits_per_s"]
        or a["bytes_per_user_served"] < b["bytes_per_user_served"]
    )
    return ge and gt


def _f(v, digits: int, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def pareto_markdown(rows: list[dict], split: str) -> str:
    """The Pareto table: quality, then what serving pays (see the module docstring)."""
    head = [
        "variant",
        "n",
        f"{split} AUC",
        "Δ vs teacher",
        "AUC as served",
        "true share",
        "d / SAB / user width / dtype",
        "params (non-backbone)",
        "outfit scoring (outfits/s)",
        "× teacher",
        "B/user served",
        "B/user stored",
        "RSS MiB: loaded / after requests (imports)",
        "recommend p50 / p95 ms",
        "outfits / request",
        "Pareto",
    ]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 2) + " :---: |"]
    for r in rows:
        auc = _f(r["auc_mean"], 4) + ("" if math.isnan(r["auc_std"]) else f" ± {r['auc_std']:.4f}")
        cells = [
            r["variant"],
            str(r["n"]),
            auc,
            _f(r.get("d_auc_vs_teacher"), 4, signed=True),
            _f(r["served_auc_mean"], 4),
            _f(r["true_share_mean"], 3),
            f"{r['dim']} / {r['blocks']} / {r['user_dim']} / {r['serving_dtype']}",
            f"{r['rest_params']:,}",
            f"{r['outfits_per_s']:,.0f}",
            _f(r.get("throughput_x_teacher"), 1),
            f"{r['bytes_per_user_served']:,}",
            f"{r['bytes_per_user_stored']:,}",
            f"{r['rss_loaded_mib']:.0f} / {r['rss_after_mib']:.0f} ({r['rss_baseline_mib']:.0f})",
            f"{r['recommend_p50_ms']:.1f} / {r['recommend_p95_ms']:.1f}",
            f"{r['outfits_per_request']:,.0f}",
            "yes" if r["pareto"] else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def targets_markdown(rows: list[dict], split: str = "test") -> str:
    """The issue's three targets checked for each whole-model student row against the teacher row."""
    teacher = next((r for r in rows if r["variant"] == "teacher"), None)
    whole = [r for r in rows if r["variant"] not in ("student", "fnd+cl") and not r["variant"].startswith("teacher")]
    if teacher is None or not whole:
        return "Targets: not checked (the table needs the teacher and a whole-model student).\n"
    lines = [
        f"Targets (issue 14) against the teacher ({split} AUC {teacher['auc_mean']:.4f}, "
        f"{teacher['outfits_per_s']:,.0f} outfits/s, {teacher['bytes_per_user_served']} B/user served, "
        f"{teacher['bytes_per_user_stored']} B/user stored); the AUC target is stated for a 3-seed mean:",
        "",
        f"| variant | seeds | AUC >= teacher - {AUC_MARGIN} | outfit scoring >= {THROUGHPUT_FACTOR:g}x | "
        f"B/user served <= 1/{1 / BYTES_FACTOR:g} | B/user stored <= 1/{1 / BYTES_FACTOR:g} |",
        "| --- | ---: | --- | --- | --- | --- |",
    ]
    for r in whole:
        auc_ok = r["auc_mean"] >= teacher["auc_mean"] - AUC_MARGIN
        tp_ok = r["throughput_x_teacher"] >= THROUGHPUT_FACTOR
        served_ok = r["bytes_served_of_teacher"] <= BYTES_FACTOR
        stored_ok = r["bytes_stored_of_teacher"] <= BYTES_FACTOR
        lines.append(
            f"| {r['variant']} | {r['n']} | {'met' if auc_ok else 'not met'} ({r['d_auc_vs_teacher']:+.4f}) | "
            f"{'met' if tp_ok else 'not met'} ({r['throughput_x_teacher']:.1f}x) | "
            f"{'met' if served_ok else 'not met'} ({r['bytes_served_of_teacher']:.3f}) | "
            f"{'met' if stored_ok else 'not met'} ({r['bytes_stored_of_teacher']:.3f}) |"
        )
    return "\n".join(lines) + "\n"


def pareto_plot(rows: list[dict], path: Path, split: str) -> Path:
    """AUC (mean ± std over seeds) against outfit-scoring throughput and against served bytes per user."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from outfitrec.experiments.report import _save_fig

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    teacher = next((r for r in rows if r["variant"] == "teacher"), None)
    for ax, key, label in (
        (axes[0], "outfits_per_s", "outfit scoring from cached item embeddings (outfits/s, 1 thread)"),
        (axes[1], "bytes_per_user_served", "bytes per user served (collapsed vector, serving dtype)"),
    ):
        for r in rows:
            err = 0.0 if math.isnan(r["auc_std"]) else r["auc_std"]
            marker = "s" if r["variant"] == "teacher" else ("o" if r["pareto"] else "x")
            ax.errorbar(r[key], r["auc_mean"], yerr=err, marker=marker, capsize=3, linestyle="none")
            ax.annotate(r["variant"], (r[key], r["auc_mean"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        if teacher is not None:
            ax.axhline(teacher["auc_mean"] - AUC_MARGIN, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xlabel(label, fontsize=9)
        ax.set_ylabel(f"{split} AUC")
    if teacher is not None:
        axes[0].axvline(teacher["outfits_per_s"] * THROUGHPUT_FACTOR, color="grey", lw=0.8, ls=":")
        axes[1].axvline(teacher["bytes_per_user_served"] * BYTES_FACTOR, color="grey", lw=0.8, ls=":")
    fig.suptitle("Serving cost against quality (dashed: teacher AUC - 0.005; dotted: the 10x targets)", fontsize=10)
    fig.tight_layout()
    _save_fig(fig, path)
    plt.close(fig)
    return path


def write_pareto(results: list[RunResult], data: str | Path, out: Path, command: str, notes: str = "") -> dict:
    """pareto.md, pareto.csv and pareto.png for the experiment's finished runs; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    split = primary_split(results)
    rows = pareto_rows(results, data)
    paths = {"pareto_csv": out / "pareto.csv", "pareto": out / "pareto.md", "pareto_plot": out / "pareto.png"}
    write_text_atomic(paths["pareto_csv"], to_csv(rows))
    seeds = sorted({r.seed for r in results if r.variant.role != "teacher"})
    md = [
        "# Serving cost against quality: teacher, backbone-only and whole-model students",
        "",
        f"Quality: {split} AUC mean ± std over seeds {seeds} (one teacher per seed; a distilled student of seed s "
        "learns from the teacher of seed s); *AUC as served*: "
        "the same candidates scored through the collapsed user vectors and the item embeddings stored in the "
        "serving dtype; *true share*: true utility of the recommended top-10 as a share of the oracle's "
        "(Fashion-MNIST, 20 users, `recommend/true_utility.py`).",
        "",
        "Cost, on each variant's first seed: *outfit scoring*: (user, outfit) pairs scored per second from "
        "cached item embeddings, batches of 4096 test outfits, one torch thread, all variants timed "
        "round-robin, the fastest of 15 calls (other processes only slow a call down); *B/user served*: the "
        "one vector per user the recommender keeps (the anchors collapse to sum_k a_k/|a_k|), in the serving "
        "dtype; *B/user stored*: the checkpoint's user "
        "parameters (float32 anchors); *RSS*: resident memory of a fresh serving process (one thread) after "
        "loading the run and after answering the requests, in brackets the same process before loading "
        "(interpreter, torch, outfitrec imported); *recommend*: top-10 of the whole catalogue for 20 seeded "
        "users with the default search, each request with an empty outfit-feature cache (every outfit it "
        "scores goes through the Set Transformer) and no pool, the variants loaded side by side and timed "
        "round-robin (one thread). *Pareto*: no other row is at least as good in "
        "AUC, outfit scoring and B/user served and better in one.",
        "",
        pareto_markdown(rows, split),
        targets_markdown(rows, split),
    ]
    if notes:
        md += [notes, ""]
    md += ["Reproduce:", "", "```", command, "```", ""]
    write_text_atomic(paths["pareto"], "\n".join(md))
    pareto_plot(rows, paths["pareto_plot"], split)
    return paths
