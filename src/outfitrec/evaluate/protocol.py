"""The evaluation protocol: score a split's fixed candidate files, report per-user metrics.

A prepared dataset folder fixes, per split, K random-mix negatives for every
positive (`candidates_{split}.npz`) and optionally FITB questions
(`fitb_{split}.npz`), so every model (teacher, student, baseline) is ranked on
exactly the same outfits. Metrics: per-user AUC, FHN/LPAE NDCG and NDCG@10
averaged over users (`evaluate.metrics.mean_metrics`), FITB accuracy, and the
popularity baseline on the same candidates for reference.

Models are scored with item embeddings computed once per evaluation
(`models.scoring.CachedScorer`): every distinct item of the candidates goes through the item
encoder (the expensive CNN) exactly once, then outfits are encoded and scored
in batches from the cached embeddings.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from outfitrec.data.fitb import fitb_path
from outfitrec.data.negatives import Candidates, candidates_path
from outfitrec.data.outfits import PAD, OutfitDataset, Outfits, write_text_atomic
from outfitrec.data.prepare import load_dataset, load_fitb  # noqa: F401 - load_dataset kept importable from here
from outfitrec.evaluate.baselines import (
    COLLABORATIVE,
    Baseline,
    baseline_params,
    fit_baseline,
    item_popularity,
    popularity_scores,
)
from outfitrec.evaluate.metrics import fitb_accuracy, mean_metrics
from outfitrec.models.checkpoint import load_run
from outfitrec.models.scoring import CachedScorer

ScoreFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (users [n], items [n,S], mask [n,S]) -> [n]


def _score_outfits(score_fn: ScoreFn, outfits: Outfits) -> np.ndarray:
    scores = np.asarray(score_fn(outfits.users, outfits.items, outfits.mask), dtype=np.float64)
    if scores.shape != (len(outfits),):
        raise ValueError(f"score function returned shape {scores.shape}, expected ({len(outfits)},)")
    return scores


def evaluate_scores(score_fn: ScoreFn, candidates: Candidates) -> dict:
    """Per-user AUC, NDCG (FHN) and NDCG@10 of a score function on fixed candidates, averaged over users.

    Tied scores share their gain (tie-aware NDCG); NaN / inf scores raise
    `NonFiniteScores` (a ValueError) saying how many outfits got them.
    """
    pos = _score_outfits(score_fn, candidates.positives)
    neg = _score_outfits(score_fn, candidates.negatives)
    out = mean_metrics(candidates.positives.users, pos, candidates.negatives.users, neg)
    out["n_positives"] = int(len(pos))
    return out


def evaluate_fitb(score_fn: ScoreFn, questions, item_category: np.ndarray) -> dict:
    """FITB accuracy: each question's completed outfits scored, the true one (column 0) must win."""
    outfits = questions.candidate_outfits(item_category)
    scores = _score_outfits(score_fn, outfits).reshape(len(questions), questions.n_candidates)
    return {"fitb": fitb_accuracy(scores), "fitb_n": int(len(questions))}


def popularity_score_fn(dataset: OutfitDataset) -> ScoreFn:
    """The popularity baseline as a ScoreFn (evaluate/baselines.py)."""
    popularity = item_popularity(dataset)  # counted once, not per scored batch

    def score(users: np.ndarray, items: np.ndarray, mask: np.ndarray) -> np.ndarray:
        cats = np.where(mask, dataset.catalogue.item_category[np.where(mask, items, 0)], PAD)
        outfits = Outfits(users, np.where(mask, items, PAD), cats, mask, np.arange(len(users)))
        return np.asarray(popularity_scores(dataset, outfits, popularity), dtype=np.float64)

    return score


def evaluate_split(
    score_fn: ScoreFn,
    dataset: OutfitDataset,
    data_dir: str | Path,
    split: str,
    with_fitb: bool = True,
) -> dict:
    """Ranking metrics on `candidates_{split}.npz` (+ FITB accuracy when `fitb_{split}.npz` exists)."""
    path = candidates_path(data_dir, split)
    candidates = Candidates.load(path, dataset.n_users, dataset.catalogue.n_items)
    if isinstance(score_fn, CachedScorer):
        score_fn.add_items(np.concatenate([candidates.positives.items.ravel(), candidates.negatives.items.ravel()]))
    out = evaluate_scores(score_fn, candidates)
    questions = load_fitb(data_dir, split, dataset, required=False) if with_fitb else None
    if questions is not None and len(questions):
        out.update(evaluate_fitb(score_fn, questions, dataset.catalogue.item_category))
    return out


def evaluate_model(
    model,
    dataset: OutfitDataset,
    data_dir: str | Path,
    split: str = "test",
    batch_size: int = 512,
    with_popularity: bool = True,
    with_fitb: bool = True,
    with_baselines: bool = True,
) -> dict:
    """A model's metrics on a split, plus the baselines' on the same candidates.

    Popularity under key 'popularity'; the collaborative baselines (EASE,
    item-kNN, user-kNN, PureSVD with the registry's defaults, fitted on the
    dataset's training outfits, cached per dataset in the data folder) under
    'baselines': {name: metrics} (`evaluate/baselines.py`).
    """
    out = evaluate_split(CachedScorer(model, None, batch_size), dataset, data_dir, split, with_fitb)
    pop = popularity_score_fn(dataset) if with_popularity else None
    if pop is not None:
        out["popularity"] = evaluate_split(pop, dataset, data_dir, split, with_fitb)
    if with_baselines:
        out["baselines"] = evaluate_baselines(dataset, data_dir, split, with_fitb=with_fitb)
    return out


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    data: str | Path | None = None,
    batch_size: int = 512,
    device: str = "cpu",
) -> dict:
    """Evaluate a run's best checkpoint on a split of its dataset (or of `data`).

    Returns {'auc', 'ndcg', 'ndcg@10' (per-user means in [0, 1]), 'n_users', 'n_positives',
    'fitb' (accuracy, when the folder has fitb_{split}.npz), 'popularity': {...}, 'baselines':
    {name: {...}}, 'split', 'data'}. batch_size: outfits scored at once; device: 'cpu', 'cuda'...
    Raises DataError (missing run / checkpoint / dataset, a dataset of another numbering) and
    NonFiniteScores (a ValueError) when the model scores NaN / inf.
    """
    run = load_run(run_dir, data, device=device)
    out = evaluate_model(run.model, run.dataset, run.data_dir, split, batch_size)
    out["split"] = split
    out["data"] = str(run.data_dir)
    return out


TRUE_UTILITY_COLUMNS = ("true_share", "oracle_recall@10")  # recommend/true_utility.py, Fashion-MNIST only


def format_table(rows: dict[str, dict]) -> str:
    """A Markdown table of metrics, one row per named result (AUC, NDCG, NDCG@10, FITB, users).

    When a row has the true-utility metrics (`recommend/true_utility.py`: 'true_share', 'oracle_recall@10'),
    they get a column each (before 'n_users'); rows without them show '-'.
    """
    cols = ["auc", "ndcg", "ndcg@10", "fitb"]
    cols += [c for c in TRUE_UTILITY_COLUMNS if any(c in m for m in rows.values())] + ["n_users"]
    lines = ["| model | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
    for name, m in rows.items():
        cells = []
        for c in cols:
            v = m.get(c)
            cells.append("-" if v is None else (f"{v:d}" if isinstance(v, int) else f"{v:.4f}"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def dumps(metrics: dict) -> str:
    """Metrics as stable, readable JSON."""
    return json.dumps(metrics, indent=2, sort_keys=True) + "\n"


# --------------------------------------------------------------------------- baselines, cached per dataset


def _stamp(path: Path) -> list:
    st = path.stat()
    return [path.name, st.st_size, st.st_mtime_ns]


def train_fingerprint(dataset: OutfitDataset) -> str:
    """SHA-1 of the training outfits (users, items, mask) and the catalogue size: what a baseline is fitted on."""
    train = dataset.split("train")
    h = hashlib.sha1()
    for arr in (train.users, train.items, train.mask, np.asarray([dataset.n_users, dataset.catalogue.n_items])):
        h.update(np.ascontiguousarray(arr).tobytes())
        h.update(str(arr.shape).encode())
    return h.hexdigest()


def evaluate_baseline(
    name: str,
    dataset: OutfitDataset,
    data_dir: str | Path,
    split: str,
    with_fitb: bool = True,
    cache: bool = True,
    fitted: Baseline | None = None,
    **params,
) -> dict:
    """A baseline's metrics on `candidates_{split}.npz` (+ FITB), with 'params' and 'fit_seconds'.

    cache: reuse / store the result in `{data_dir}/baselines_cache.json`, keyed by the baseline, its
    parameters, a fingerprint of the training outfits and the size + modification time of the split's
    candidate (and FITB) files, so evaluation tables and experiments fit each baseline once per dataset
    (an unwritable folder just skips the cache).
    fitted: an already fitted baseline to evaluate (skips fitting).
    """
    folder = Path(data_dir)
    full = fitted.params if fitted is not None else baseline_params(name, **params)
    files = [candidates_path(folder, split)]
    if with_fitb and fitb_path(folder, split).is_file():
        files.append(fitb_path(folder, split))
    key = None
    cache_path = folder / "baselines_cache.json"
    entries: dict = {}
    if cache and all(f.is_file() for f in files):
        stamps = [_stamp(f) for f in files]
        key = json.dumps([name, split, sorted(full.items()), train_fingerprint(dataset), stamps], default=str)
        try:
            entries = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
        except (OSError, ValueError):
            entries = {}
        if key in entries:
            return dict(entries[key])
    model = fitted if fitted is not None else fit_baseline(name, dataset, **full)
    start = time.perf_counter()
    out = evaluate_split(model, dataset, folder, split, with_fitb)
    out["params"] = dict(model.params)
    out["info"] = dict(model.info)
    out["fit_seconds"] = round(model.fit_seconds, 3)
    out["score_seconds"] = round(time.perf_counter() - start, 3)
    if key is not None:
        entries[key] = out
        try:
            write_text_atomic(cache_path, json.dumps(entries, indent=1, sort_keys=True) + "\n")
        except OSError:
            pass
    return out


def evaluate_baselines(
    dataset: OutfitDataset,
    data_dir: str | Path,
    split: str,
    names: tuple[str, ...] = COLLABORATIVE,
    with_fitb: bool = True,
    cache: bool = True,
) -> dict[str, dict]:
    """Metrics of several baselines (registry defaults) on a split: {name: metrics}."""
    return {name: evaluate_baseline(name, dataset, data_dir, split, with_fitb, cache) for name in names}
