"""Tables and plots of an experiment: per-run CSV, per-variant summary (mean, std, paired differences).

Paired differences: for every seed, a variant's metric minus its baseline's
(the plain student unless the variant names another) trained with the same
seed, hence the same initialisation and the same sampled negatives; the table
reports the mean and the standard deviation (ddof=1) of those differences
over seeds. A difference whose mean exceeds its std (and the seed-to-seed std
of the baseline itself) is more than seed noise; one within it is not.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from outfitrec.data.outfits import DataError, write_text_atomic
from outfitrec.experiments.runner import RunResult, is_shared

METRICS = ("auc", "ndcg", "ndcg@10", "fitb")
TRUE_METRICS = ("true_share", "oracle_recall@10")  # Fashion-MNIST runs: metrics['true_utility'] (runner.Lab)
FLAG_KEYS = ("fn_flagged_share", "fn_precision", "fn_recall", "fn_true_share")


def primary_split(results: list[RunResult]) -> str:
    """'test' when every run has test metrics, else 'valid' (DiFashion has no test split)."""
    return "test" if results and all(isinstance(r.metrics.get("test"), dict) for r in results) else "valid"


def run_rows(results: list[RunResult]) -> list[dict]:
    """One flat row per run: variant, seed, metrics of every split, flags of the last epoch, time, parameters."""
    rows = []
    for r in results:
        row: dict = {
            "variant": r.variant.name,
            "role": r.variant.role,
            "group": r.variant.group,
            "x": "" if r.variant.x is None else r.variant.x,
            "seed": r.seed,
            "baseline": r.variant.baseline or "",
            "shared": is_shared(r.variant),
        }
        for split in ("valid", "test"):
            m = r.metrics.get(split)
            for key in METRICS:
                row[f"{split}_{key}"] = m.get(key) if isinstance(m, dict) else None
        truth = r.metrics.get("true_utility") or {}
        for key in TRUE_METRICS:
            row[key] = truth.get(key)
        last = r.history[-1] if r.history else {}
        for key in FLAG_KEYS:
            row[key] = last.get(key)
        params = r.metrics.get("parameters", {})
        row["backbone_params"] = params.get("backbone")
        row["total_params"] = params.get("total")
        row["best_epoch"] = r.metrics.get("best_epoch")
        row["epochs"] = r.metrics.get("epochs")
        row["train_seconds"] = round(r.seconds, 1)
        row["run_dir"] = str(r.run_dir)
        rows.append(row)
    return rows


def _mean_std(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return float("nan"), float("nan")
    arr = np.asarray(vals, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else float("nan")


def summarize(results: list[RunResult], split: str) -> list[dict]:
    """One row per variant (in first-seen order): n, mean/std of each metric, paired differences vs baseline."""
    by_variant: dict[str, list[RunResult]] = {}
    for r in results:
        by_variant.setdefault(r.variant.name, []).append(r)
    rows = []
    for name, runs in by_variant.items():
        v = runs[0].variant
        row: dict = {"variant": name, "group": v.group, "x": "" if v.x is None else v.x, "n": len(runs), "note": v.note}
        for key in METRICS:
            vals = [r.metrics.get(split, {}).get(key) for r in runs]
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(vals)
        for key in TRUE_METRICS:
            vals = [(r.metrics.get("true_utility") or {}).get(key) for r in runs]
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(vals)
        base = by_variant.get(v.baseline) if v.baseline else None
        for key in ("auc", "ndcg"):
            diffs = []
            if base:
                base_by_seed = {b.seed: b.metrics.get(split, {}).get(key) for b in base}
                for r in runs:
                    ours = r.metrics.get(split, {}).get(key)
                    # the shared teacher (one run) is compared with every baseline seed; per-seed runs by seed
                    shared = is_shared(v)
                    pairs = base_by_seed.values() if shared else [base_by_seed.get(r.seed)]
                    diffs += [ours - b for b in pairs if b is not None and ours is not None]
            row[f"d_{key}_mean"], row[f"d_{key}_std"] = _mean_std(diffs)
            row[f"d_{key}_n"] = len(diffs)
        row["baseline"] = v.baseline or ""
        row["spread_of"] = v.spread_of or ""
        for key in ("fn_flagged_share", "fn_precision", "fn_recall"):
            vals = [r.history[-1].get(key) for r in runs if r.history]
            row[key] = _mean_std(vals)[0]
        params = runs[0].metrics.get("parameters", {})
        row["backbone_params"] = params.get("backbone")
        row["train_seconds"] = _mean_std([r.seconds for r in runs])[0]
        rows.append(row)
    return rows


def to_csv(rows: list[dict]) -> str:
    """Rows (dicts) as CSV text; the header is the union of keys in first-seen order."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in keys})
    return buf.getvalue()


def _csv_value(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return "" if v is None else v


def _pm(mean: float, std: float, digits: int = 4, signed: bool = False) -> str:
    if mean is None or math.isnan(mean):
        return "-"
    fmt = f"{{:+.{digits}f}}" if signed else f"{{:.{digits}f}}"
    if std is None or math.isnan(std):
        return fmt.format(mean)
    return f"{fmt.format(mean)} ± {std:.{digits}f}"


def markdown_table(summary: list[dict], split: str) -> str:
    """The summary as a Markdown table: metric mean ± std over seeds, paired differences ± their std."""
    head = [
        "variant",
        "n",
        f"{split} AUC",
        f"{split} NDCG",
        "Δ AUC (paired)",
        "Δ NDCG (paired)",
        "vs",
        "FN flagged",
        "flag precision",
        "flag recall",
        "backbone params",
        "train s",
    ]
    truth = any(not math.isnan(row.get("true_share_mean", float("nan"))) for row in summary)
    if truth:  # Fashion-MNIST: what users get, judged by the truth (recommend/true_utility.py)
        head[4:4] = ["true share", "oracle R@10"]
    lines = ["| " + " | ".join(head) + " |"]
    lines.append(
        "|" + "|".join([" --- ", " ---: "] + [" ---: "] * (6 if truth else 4) + [" --- "] + [" ---: "] * 5) + "|"
    )
    for row in summary:
        cells = [
            row["variant"],
            str(row["n"]),
            _pm(row["auc_mean"], row["auc_std"]),
            _pm(row["ndcg_mean"], row["ndcg_std"]),
            _pm(row["d_auc_mean"], row["d_auc_std"], signed=True),
            _pm(row["d_ndcg_mean"], row["d_ndcg_std"], signed=True),
            row["baseline"] or "-",
            _fmt(row.get("fn_flagged_share"), 3),
            _fmt(row.get("fn_precision"), 3),
            _fmt(row.get("fn_recall"), 3),
            "-" if row.get("backbone_params") is None else f"{row['backbone_params']:,}",
            _fmt(row.get("train_seconds"), 0),
        ]
        if truth:
            cells[4:4] = [_pm(row["true_share_mean"], row["true_share_std"], 3)]
            cells[5:5] = [_pm(row["oracle_recall@10_mean"], row["oracle_recall@10_std"], 3)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(v, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}"


def baselines_table(baselines: dict[str, dict], split: str) -> str:
    """Baselines without a training loop (popularity, EASE, kNN, PureSVD) as a Markdown table, one row each."""
    head = ["baseline", f"{split} AUC", f"{split} NDCG", "NDCG@10", "FITB", "params", "fit s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join([" --- "] + [" ---: "] * 4 + [" --- ", " ---: "]) + "|"]
    for name, m in baselines.items():
        params = ", ".join(f"{k}={v}" for k, v in sorted(m.get("params", {}).items()))
        cells = [name] + [_fmt(m.get(k), 4) for k in ("auc", "ndcg", "ndcg@10", "fitb")]
        lines.append("| " + " | ".join(cells + [params or "-", _fmt(m.get("fit_seconds"), 1)]) + " |")
    return "\n".join(lines) + "\n"


def write_results(
    out: Path,
    name: str,
    results: list[RunResult],
    title: str,
    commands: str,
    notes: str = "",
    baselines: dict[str, dict] | None = None,
) -> dict[str, Path]:
    """runs.csv, summary.csv, table.md (+ a bar or sweep plot) for one experiment into `out`.

    baselines: {name: metrics} of the baselines without a training loop on the same split and
    candidates (`evaluate.baselines.evaluate_baselines`), shown under the runs' table and in baselines.csv.
    """
    out.mkdir(parents=True, exist_ok=True)
    split = primary_split(results)
    rows = run_rows(results)
    summary = summarize(results, split)
    paths = {"runs": out / "runs.csv", "summary": out / "summary.csv", "table": out / "table.md"}
    write_text_atomic(paths["runs"], to_csv(rows))
    write_text_atomic(paths["summary"], to_csv(summary))
    seeds = sorted({r.seed for r in results if r.variant.role != "teacher"})
    md = [
        f"# {title}",
        "",
        f"Metric split: **{split}**; mean ± std over seeds {seeds}; Δ = paired difference (same seed, same "
        "negatives) against the variant in column *vs*, mean ± std over seeds.",
        "",
        markdown_table(summary, split),
    ]
    if any(not math.isnan(row.get("true_share_mean", float("nan"))) for row in summary):
        md += [
            "*true share*: true utility of the run's recommended top-10 (whole catalogue, `outfitrec recommend`'s "
            "search, training outfits excluded) as a share of the oracle's top-10, each shifted by the user's mean "
            "utility of a random outfit; *oracle R@10*: share of the oracle's top-10 among them; 20 seeded users "
            "(`recommend/true_utility.py`).",
            "",
        ]
    spread = spread_rows(summary)
    if spread:
        md += [
            "Teacher seeds: each seed's students learn from the teacher of the same seed, so the ± above holds both "
            "spreads. The variance split below sets a variant's spread against its twin's, whose every seed is "
            "taught by the seed-0 teacher (student seeds only); taking the two as independent and additive, the "
            "teacher's share of the variance = max(0, 1 - std(student seeds)² / std(both)²). With 3 seeds each "
            "std is itself uncertain by about ±50%, so read the share as large / small, not as a figure.",
            "",
            spread_markdown(spread, split),
        ]
        paths["spread"] = out / "spread.csv"
        write_text_atomic(paths["spread"], to_csv(spread))
    if baselines:
        md += [
            "Baselines without a training loop, fitted on the same training outfits and scored on the same "
            "candidates (outfit score = mean of its items' scores; `outfitrec baseline NAME --data ...`):",
            "",
            baselines_table(baselines, split),
        ]
        paths["baselines"] = out / "baselines.csv"
        write_text_atomic(paths["baselines"], to_csv([{"baseline": k, **_flat(v)} for k, v in baselines.items()]))
    if notes:
        md += [notes, ""]
    md += ["Reproduce:", "", "```", commands, "```", ""]
    write_text_atomic(paths["table"], "\n".join(md))
    plot = out / f"{name}.png"
    if plot_summary(summary, plot, title, split):
        paths["plot"] = plot
    return paths


def _flat(metrics: dict) -> dict:
    """A baseline's metrics with its params flattened to `param_<name>` columns (no nested dicts in CSV)."""
    out = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    out.update({f"param_{k}": v for k, v in metrics.get("params", {}).items()})
    return out


def plot_summary(summary: list[dict], path: Path, title: str, split: str) -> bool:
    """A sweep plot (Δ AUC against x per group) when the rows have numeric x, else a bar chart of AUC."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numeric = [r for r in summary if isinstance(r["x"], int | float) and not isinstance(r["x"], bool)]
    fig, ax = plt.subplots(figsize=(7, 4))
    if len(numeric) >= 3:
        groups: dict[str, list[dict]] = {}
        for r in numeric:
            groups.setdefault(r["group"] or "all", []).append(r)
        base_zero = [r for r in numeric if not r["baseline"]]
        for g, rs in groups.items():
            rs = sorted(rs + [b for b in base_zero if b not in rs], key=lambda r: r["x"])
            xs = [r["x"] for r in rs]
            ys = [0.0 if not r["baseline"] else r["d_auc_mean"] for r in rs]
            es = [0.0 if not r["baseline"] or math.isnan(r["d_auc_std"]) else r["d_auc_std"] for r in rs]
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=g)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_ylabel(f"Δ {split} AUC vs baseline (paired)")
        ax.set_xlabel("x")
        ax.legend()
    else:
        names = [r["variant"] for r in summary]
        means = np.array([r["auc_mean"] for r in summary], dtype=float)
        stds = np.nan_to_num(np.array([r["auc_std"] for r in summary], dtype=float))
        ax.bar(range(len(names)), means, yerr=stds, capsize=3, color="tab:blue")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        finite = means[np.isfinite(means)]
        if len(finite):
            lo, hi = float(finite.min()), float(finite.max())
            pad = max(0.01, (hi - lo) * 0.5)
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_ylabel(f"{split} AUC (mean ± std over seeds)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save_fig(fig, path)
    plt.close(fig)
    return True


def _save_fig(fig, path: Path) -> None:
    """Save a figure through a temporary file and a rename (never a half-written PNG)."""
    from outfitrec.data.io import atomic_file

    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110)


# ---------------------------------------------------------------------------------------------------------------
# Teacher seeds: how much of a distilled variant's spread over seeds is the teacher's

SPREAD_METRICS = ("auc", "true_share")


def spread_rows(summary: list[dict]) -> list[dict]:
    """The variance split of each variant that has a `spread_of` twin in the summary (summarize's rows).

    The variant (seed s taught by the teacher of seed s) varies with both seeds; its twin (every seed taught
    by the seed-0 teacher) with the student seed alone. Taking the two sources as independent and additive,
    var(both) = var(student) + var(teacher), so the teacher's share of the variance is
    max(0, 1 - var(twin) / var(variant)) (NaN when a std is missing or the variant's is 0). One row per
    (variant, metric): {variant, twin, metric, n, std_both, std_student, teacher_share}.
    """
    by_name = {row["variant"]: row for row in summary}
    out = []
    for twin in summary:
        name = twin.get("spread_of") or ""
        if not name or name not in by_name:
            continue
        row = by_name[name]
        for metric in SPREAD_METRICS:
            both, student = row.get(f"{metric}_std", math.nan), twin.get(f"{metric}_std", math.nan)
            both = math.nan if both is None else float(both)
            student = math.nan if student is None else float(student)
            share = math.nan
            if not (math.isnan(both) or math.isnan(student)) and both > 0:
                share = max(0.0, 1.0 - student**2 / both**2)
            out.append(
                {
                    "variant": name,
                    "twin": twin["variant"],
                    "metric": metric,
                    "n": min(int(row.get("n", 0)), int(twin.get("n", 0))),
                    "std_both": both,
                    "std_student": student,
                    "teacher_share": share,
                }
            )
    return out


def spread_markdown(rows: list[dict], split: str) -> str:
    """spread_rows as a Markdown table with its reading in the header."""
    head = [
        "variant",
        "metric",
        "n seeds",
        "std: teacher + student seeds",
        "std: student seeds (seed-0 teacher)",
        "teacher's share of the variance",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join([" --- "] * 2 + [" ---: "] * 4) + "|"]
    for r in rows:
        metric = f"{split} AUC" if r["metric"] == "auc" else r["metric"].replace("_", " ")
        cells = [r["variant"], metric, str(r["n"]), _fmt(r["std_both"], 4), _fmt(r["std_student"], 4)]
        cells.append("-" if math.isnan(r["teacher_share"]) else f"{r['teacher_share']:.0%}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Claims across draws: does the sign of a paired difference hold on another generated dataset?


@dataclass(frozen=True)
class Claim:
    """A claim of a table: variant `a` beats (`>`) or matches (`>=`) variant `b` on `metric`, per seed.

    metric: "auc", "ndcg", "ndcg@10", "fitb" (of the table's split) or "true_share", "oracle_recall@10".
    """

    text: str
    a: str
    b: str
    metric: str = "auc"
    op: str = ">"


def _metric_key(metric: str, split: str) -> str:
    return metric if metric in TRUE_METRICS else f"{split}_{metric}"


def _num(v) -> float:
    if v is None or v == "":
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def claim_deltas(rows: list[dict], claim: Claim, split: str) -> list[float]:
    """Per-seed differences a - b of a claim from one experiment's run rows (runs.csv: variant, seed, metrics).

    Runs of the same seed are paired; a shared run (one run for every seed: the row's `shared` column, or,
    in a runs.csv without it, a teacher's only run) is paired with every run of the other. A variant that
    just has fewer seeds finished is paired on the seeds both have. Pairs with a missing value are left out.
    """
    key = _metric_key(claim.metric, split)
    runs: dict[str, dict[int, float]] = {claim.a: {}, claim.b: {}}
    shared = {claim.a: False, claim.b: False}
    for row in rows:
        name = row.get("variant")
        if name in runs:
            runs[name][int(row["seed"])] = _num(row.get(key))
            flag = row.get("shared")
            shared[name] |= flag in (True, "True") or (flag is None and row.get("role") == "teacher")
    a, b = runs[claim.a], runs[claim.b]
    if not a or not b:
        return []
    if shared[claim.a] and len(a) == 1:
        pairs = [(next(iter(a.values())), vb) for vb in b.values()]
    elif shared[claim.b] and len(b) == 1:
        pairs = [(va, next(iter(b.values()))) for va in a.values()]
    else:
        pairs = [(a[s], b[s]) for s in sorted(a) if s in b]
    return [x - y for x, y in pairs if not (math.isnan(x) or math.isnan(y))]


def claim_verdict(deltas: list[float], op: str) -> str:
    """'holds' when the mean paired difference has the claim's sign (> 0, or >= 0), else 'does not hold'.

    ' (within noise)' is appended when |mean| is not above the differences' std (ddof=1), ' (one pair: no
    noise estimate)' when there is one difference only; 'not measured' when there is none.
    """
    if not deltas:
        return "not measured"
    mean, std = _mean_std(deltas)
    holds = mean > 0 if op == ">" else mean >= 0
    verdict = "holds" if holds else "does not hold"
    if len(deltas) == 1:
        verdict += " (one pair: no noise estimate)"
    elif not math.isnan(std) and abs(mean) <= std:
        verdict += " (within noise)"
    return verdict


def compare_claims(draws: dict[str, tuple[list[dict], str]], claims: list[Claim]) -> list[dict]:
    """Each claim on each draw: {claim, metric, op, a, b, then per draw label: delta mean/std/n, verdict; both}.

    draws: {label: (run rows, split)}. `all`: "holds on all" when every draw holds ("(within noise or one
    seed on some)" added unless every draw holds clearly), "holds on none", "mixed", or "not measured
    everywhere" when a draw lacks a variant.
    """
    out = []
    for claim in claims:
        row: dict = {"claim": claim.text, "metric": claim.metric, "op": claim.op, "a": claim.a, "b": claim.b}
        verdicts = []
        for label, (rows, split) in draws.items():
            deltas = claim_deltas(rows, claim, split)
            mean, std = _mean_std(deltas)
            row[f"{label}_delta_mean"], row[f"{label}_delta_std"], row[f"{label}_n"] = mean, std, len(deltas)
            row[f"{label}_verdict"] = verdict = claim_verdict(deltas, claim.op)
            verdicts.append(verdict)
        if any(v == "not measured" for v in verdicts):
            row["all"] = "not measured everywhere"
        elif all(v.startswith("holds") for v in verdicts):
            row["all"] = "holds on all" + (" (within noise or one seed on some)" if set(verdicts) != {"holds"} else "")
        elif not any(v.startswith("holds") for v in verdicts):
            row["all"] = "holds on none"
        else:
            row["all"] = "mixed"
        out.append(row)
    return out


def claims_markdown(rows: list[dict], labels: list[str]) -> str:
    """compare_claims's rows as a Markdown table: per draw the paired Δ (mean ± std, n) and the verdict."""
    head = ["claim", "metric"]
    for label in labels:
        head += [f"Δ {label}", label]
    head.append("all draws")
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join([" --- "] * 2 + [" ---: ", " --- "] * len(labels) + [" --- "]) + "|",
    ]
    for r in rows:
        metric = r["metric"].replace("_", " ")
        cells = [f"{r['claim']} ({r['a']} {r['op']} {r['b']})", metric]
        for label in labels:
            n = r[f"{label}_n"]
            delta = _pm(r[f"{label}_delta_mean"], r[f"{label}_delta_std"], 4, signed=True)
            cells += [f"{delta} (n={n})" if n else "-", r[f"{label}_verdict"]]
        cells.append(r["all"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def side_by_side_markdown(summaries: dict[str, list[dict]], split_of: dict[str, str]) -> str:
    """The draws' summaries side by side: per variant and draw, AUC and true share (mean ± std over seeds)."""
    labels = list(summaries)
    names: list[str] = []
    for rows in summaries.values():
        names += [r["variant"] for r in rows if r["variant"] not in names]
    head = ["variant"]
    for label in labels:
        head += [f"{label}: {split_of[label]} AUC", f"{label}: true share"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join([" --- "] + [" ---: "] * (2 * len(labels))) + "|"]
    for name in names:
        cells = [name]
        for label in labels:
            row = next((r for r in summaries[label] if r["variant"] == name), None)
            if row is None:
                cells += ["-", "-"]
                continue
            n = row.get("n", "")
            auc = _pm(_num(row.get("auc_mean")), _num(row.get("auc_std")))
            share = _pm(_num(row.get("true_share_mean")), _num(row.get("true_share_std")), 3)
            cells += [f"{auc} (n={n})", share]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def read_results(folder: str | Path) -> tuple[list[dict], list[dict], str]:
    """(run rows, summary rows, split) of an experiment's results folder (runs.csv, summary.csv).

    The split is 'test' when every run row has a test AUC, else 'valid' (as `primary_split`). Raises
    DataError naming the file when a folder lacks them.
    """
    folder = Path(folder)
    out = []
    for name in ("runs.csv", "summary.csv"):
        path = folder / name
        try:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
        except OSError as exc:
            raise DataError(f"{path}: cannot read an experiment's results ({exc.strerror or exc})") from None
        if not rows or "variant" not in rows[0]:
            raise DataError(f"{path}: no rows with a 'variant' column (not an experiment's {name})")
        out.append(rows)
    runs, summary = out
    split = "test" if all(not math.isnan(_num(r.get("test_auc"))) for r in runs) else "valid"
    return runs, summary, split


def write_claims(out: Path, folders: dict[str, Path], claims: list[Claim], command: str, title: str) -> dict:
    """claims.md and claims.csv in `out`: the draws' tables side by side and each claim held or not per draw.

    folders: {label: results folder of one draw (runs.csv, summary.csv)}, in column order.
    """
    read = {label: read_results(folder) for label, folder in folders.items()}
    rows = compare_claims({label: (runs, split) for label, (runs, _, split) in read.items()}, claims)
    labels = list(folders)
    paths = {"claims": Path(out) / "claims.md", "claims_csv": Path(out) / "claims.csv"}
    write_text_atomic(paths["claims_csv"], to_csv(rows))
    md = [
        f"# {title}",
        "",
        "Draws: " + "; ".join(f"**{label}** = `{folders[label]}`" for label in labels) + ".",
        "",
        side_by_side_markdown({k: v[1] for k, v in read.items()}, {k: v[2] for k, v in read.items()}),
        "A claim is the sign of a paired difference (same seed; a shared one-run teacher is paired with every seed): "
        "Δ = a - b, mean ± std over the pairs. *holds*: the mean has the claim's sign (> 0; >= 0 for '>='); "
        "*(within noise)*: |mean| is not above the std of the pairs; *(one pair)*: one seed, no noise estimate. "
        "*all draws*: holds on all / none / mixed.",
        "",
        claims_markdown(rows, labels),
        "Reproduce:",
        "",
        "```",
        command,
        "```",
        "",
    ]
    write_text_atomic(paths["claims"], "\n".join(md))
    return paths
