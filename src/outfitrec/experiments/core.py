"""`run_experiment(NAME, ...)`: train (or reuse) an experiment's runs and write its results folder.

Results folder (`--out`): `runs.csv` (one row per run), `summary.csv` (one row
per variant: mean, std, paired differences), `table.md` (the Markdown table
with the command that reproduces it), `NAME.png` (bar chart or sweep plot),
`log.txt` (which runs were trained, reused or resumed). The qualitative and
cost experiments write their figures / tables instead. Run directories live
under `--runs` (default: beside the results), shared by every experiment on
the same dataset and scale, so later experiments reuse earlier runs.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from outfitrec.data.outfits import DataError, write_text_atomic
from outfitrec.data.prepare import load_dataset
from outfitrec.evaluate.baselines import BASELINES
from outfitrec.evaluate.protocol import evaluate_baselines
from outfitrec.experiments import definitions
from outfitrec.experiments.cost import cost_markdown, cost_table
from outfitrec.experiments.qualitative import space_figure, top_outfits_figure
from outfitrec.experiments.report import primary_split, run_rows, to_csv, write_claims, write_results
from outfitrec.experiments.runner import Lab, Variant
from outfitrec.experiments.scales import DISTILL, SCALES, per_user_cap
from outfitrec.models.checkpoint import load_run

EXPERIMENTS = (
    "main",
    "alpha",
    "threshold",
    "cold",
    "hard",
    "augment",
    "backbone",
    "batch",
    "teachers",
    "compress",
    "cost",
    "qualitative",
)

TITLES = {
    "main": "Main comparison: teacher, plain student, KD baselines, FND, CL and combinations",
    "alpha": "FND alpha sweep (soft and hard offsets, both signs)",
    "threshold": "FND threshold aggregate r_u (mean, min, quantiles)",
    "cold": "Cold users: 1 and 5 training outfits each, half of the users, among warm users",
    "hard": "Half random, half hard negatives",
    "augment": "Contrastive learning: augmentation ablation",
    "backbone": "Backbone size and embedding size",
    "batch": "Batch size",
    "teachers": "Which teacher to distil from: the trained teacher run, EASE, or their hybrid (+ PureSVD)",
    "compress": "Whole-model students: teacher, backbone-only and whole-model students, plain and FND + CL",
}


def default_dirs(data: str | Path, scale: str) -> tuple[Path, Path]:
    """(results root, runs root) for a dataset and scale: runs/experiments/<data name>-<scale>/."""
    name = Path(data).name if Path(data).is_dir() else Path(data).parent.name
    root = Path("runs") / "experiments" / f"{name}-{scale}"
    return root, root / "runs"


def run_experiment(
    name: str,
    data: str | Path,
    seeds: int = 3,
    out: str | Path | None = None,
    scale: str = "quick",
    runs: str | Path | None = None,
    progress: bool = True,
    command: str | None = None,
    only: list[str] | None = None,
    no_train: bool = False,
    compare: str | Path | None = None,
) -> dict[str, Path]:
    """Run experiment `name` on a prepared dataset; returns the paths of the files it wrote.

    only: train just these variants (names), e.g. to split one experiment over
    two processes; the results folder then covers those variants only, and a
    later call without `only` reuses every finished run. no_train: train
    nothing, write the tables from the runs finished so far (the rest listed).
    compare (main only): the results folder of the same experiment on another
    dataset (another draw); claims.md then puts both tables side by side and
    says, claim by claim (definitions.MAIN_CLAIMS), whether it holds on each.
    """
    if name not in EXPERIMENTS:
        raise DataError(f"experiment: unknown name {name!r} (expected one of {', '.join(EXPERIMENTS)})")

    if scale not in SCALES:
        raise DataError(f"experiment: unknown scale {scale!r} (expected one of {', '.join(SCALES)})")
    if seeds < 1:
        raise DataError(f"experiment: --seeds must be at least 1, got {seeds}")
    if compare is not None and name != "main":
        raise DataError(f"experiment {name}: --compare checks the main comparison's claims; use it with main")
    if compare is not None and not (Path(compare) / "runs.csv").is_file():
        raise DataError(f"{compare}: no runs.csv (--compare takes the results folder of another main comparison)")
    root, runs_default = default_dirs(data, scale)
    out = Path(out) if out is not None else root / name
    lab = Lab(data, runs if runs is not None else runs_default, scale, progress=False, no_train=no_train)
    command = command or " ".join(
        shlex.quote(a)
        for a in ["outfitrec", "experiment", name, "--data", str(data), "--seeds", str(seeds), "--scale", scale]
    )
    seed_list = list(range(seeds))
    if name == "cost":
        paths = _cost(lab, out, command)
    elif name == "qualitative":
        paths = _qualitative(lab, out, command)
    else:
        variants = _variants(name, lab, scale)
        if only:
            unknown = sorted(set(only) - {v.name for v in variants})
            if unknown:
                raise DataError(f"experiment {name}: no variants {unknown} (has {[v.name for v in variants]})")
            variants = [v for v in variants if v.name in only]
        results = lab.run_all(variants, seed_list)
        notes = _notes(name, lab, scale)
        if lab.missing:
            notes += "\n- Not finished when this table was written (left out): " + ", ".join(lab.missing) + "."
        baselines = _baselines(lab, primary_split(results)) if name not in ("cold", "compress") and results else None
        paths = write_results(out, name, results, TITLES[name], command, notes, baselines)
        if compare is not None:
            labels = [Path(compare).name, out.name]
            if labels[0] == labels[1]:
                labels = [f"{labels[0]} (1)", f"{labels[1]} (2)"]
            paths |= write_claims(
                out,
                {labels[0]: Path(compare), labels[1]: out},
                definitions.MAIN_CLAIMS,
                command,
                "Main comparison on two generated datasets: which claims hold on both",
            )
        if name == "compress" and results:  # serving cost beside quality: pareto.md / .csv / .png
            from outfitrec.experiments.compress import write_pareto

            pareto = write_pareto(results, lab.train_data(), out, command, notes)
            paths = {**paths, **pareto, "runs_table": paths["table"], "table": pareto["pareto"]}
    write_text_atomic(out / "log.txt", "\n".join(lab.log) + "\n")
    paths["log"] = out / "log.txt"
    return paths


def _baselines(lab: Lab, split: str) -> dict[str, dict]:
    """Popularity and the collaborative baselines on the runs' training data and the split's candidates.

    Fitted once per dataset: the metrics are cached in the data folder (`evaluate.protocol.evaluate_baseline`).
    """
    dataset, folder = load_dataset(lab.train_data())
    return evaluate_baselines(dataset, folder, split, names=tuple(BASELINES))


def _variants(name: str, lab: Lab, scale: str) -> list[Variant]:
    if name == "cold":
        # half the users cold, inside a warm population; metrics on the cold half only (data/cold.py)
        share = definitions.COLD_SHARE
        cold_dirs = {n: str(lab.derived_folder(f"cold{n}-share{share:g}", n, share)) for n in (1, 5)}
        return definitions.cold_variants(scale, cold_dirs)
    if name == "backbone":
        return definitions.backbone_variants(scale, lab.kind)
    if name == "teachers":
        return definitions.teachers_variants(scale, lab.kind)
    if name == "compress":
        return definitions.compress_variants(scale)
    return definitions.TRAINING_EXPERIMENTS[name](scale)


def _notes(name: str, lab: Lab, scale: str) -> str:

    cap = per_user_cap(lab.kind, scale)
    per_seed = name in ("main", "compress")  # main_variants, compress_variants: one teacher per seed
    teachers = (
        "One teacher run per seed: the students of seed s learn from the teacher (or teacher+cl, teacher-es) of "
        "seed s, so every ± holds the spread of both seeds; a teacher row's Δ is paired by seed."
        if per_seed
        else "The teacher is one run (seed 0) shared by every student seed; its row's Δ compares it with each "
        "student seed."
    )
    parts = [
        f"Dataset {lab.data} (item encoder: {'CNN on images' if lab.kind == 'images' else 'id + category'}), "
        f"scale {scale!r}"
        + (
            f": every run trains on at most {cap} training outfits per user (all users kept; "
            "valid/test candidates unchanged)."
            if cap
            else "."
        ),
        teachers,
        f"FND: soft offsets, alpha = {DISTILL[scale]['alpha']}, threshold r_u = mean of the teacher's scores of "
        "the user's training positives, unless the variant says otherwise. FN flagged / precision / recall: "
        "the last epoch's share of sampled negatives the teacher flags, and those flags against the oracle's "
        "true false negatives (Fashion-MNIST only).",
    ]
    if name == "cold":
        parts.append(
            f"Cold users: a seeded {definitions.COLD_SHARE:.0%} of the users keep only N training outfits (N = 1, 5), "
            "the others keep all theirs; teacher and students train on that split, and the metrics are over the "
            "cold users' valid/test candidates only (their n_users column)."
        )
    return "\n".join(f"- {p}" for p in parts)


def _cost(lab: Lab, out: Path, command: str) -> dict[str, Path]:

    out.mkdir(parents=True, exist_ok=True)
    rows = cost_table(lab)
    paths = {"csv": out / "cost.csv", "table": out / "table.md"}
    write_text_atomic(paths["csv"], to_csv(rows))
    md = [
        "# Parameters, memory and latency: teacher vs student",
        "",
        "Freshly built models of the experiment's configs, eval mode, one CPU thread, median of 5 repeats. "
        "param_mb: float32 parameters; item_activation_mb: the largest activation of encoding one batch of items.",
        "",
        cost_markdown(rows),
        "Reproduce:",
        "",
        "```",
        command,
        "```",
        "",
    ]
    write_text_atomic(paths["table"], "\n".join(md))
    return paths


def _qualitative(lab: Lab, out: Path, command: str) -> dict[str, Path]:
    """Teacher, plain student and the best distilled one, FND + CL (seed 0 runs, trained if missing): figures."""
    variants = [v for v in definitions.main_variants(lab.scale) if v.name in ("teacher", "student", "fnd+cl")]
    results = lab.run_all(variants, [0])
    dataset, folder = load_dataset(lab.train_data())
    models = {r.variant.name: load_run(r.run_dir, dataset=dataset).model for r in results}
    split = primary_split(results)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "space": space_figure(models, dataset, folder, split, out / "user_space.png"),
        "top": top_outfits_figure(models, dataset, folder, split, out / "top_outfits.png"),
    }
    paths["runs"] = out / "runs.csv"
    write_text_atomic(paths["runs"], to_csv(run_rows(results)))
    write_text_atomic(out / "README.md", f"Qualitative figures ({split} split). Reproduce:\n\n```\n{command}\n```\n")
    return paths


def main_argv() -> str:
    """The command line of this process (for the 'Reproduce' lines)."""
    return " ".join(shlex.quote(a) for a in ["outfitrec", *sys.argv[1:]])
