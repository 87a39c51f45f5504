"""Hybrid scorers: a trained outfitrec run and collaborative baselines, standardised and summed.

On real logs (DiFashion) a learned model and EASE see the same users through
different lenses: EASE's item-item closed form is exact where items co-occur,
a model with collaborative item factors generalises through low-rank structure
(the sum of EASE and PureSVD scores beats either alone). A hybrid scores

    s(u, o) = sum_c w_c * (s_c(u, o) - mu_c) / sigma_c

where mu_c, sigma_c are the mean and standard deviation of component c's
scores of the training positives (so the weights compare like with like) and
the weights are chosen on the validation split only (`tune_hybrid`). A hybrid
is a `ScoreFn`, so it is evaluated on the fixed candidates like any model and
it can teach a student (`loss.teacher = HYBRID_DIR`). It is saved as a folder
holding `hybrid.json` (its components, weights and statistics); the
baselines are refitted on load (a closed form of the training data: seconds).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from outfitrec.data.io import write_text_atomic
from outfitrec.data.outfits import DataError, OutfitDataset
from outfitrec.evaluate.baselines import fit_baseline
from outfitrec.evaluate.protocol import ScoreFn, evaluate_split
from outfitrec.models.checkpoint import load_run
from outfitrec.models.scoring import CachedScorer

HYBRID_FILE = "hybrid.json"
RUN_PREFIX = "run:"
BASELINE_PREFIX = "baseline:"


@dataclass
class Component:
    """One scorer of a hybrid: 'run:PATH' (a trained run) or 'baseline:NAME' (registry defaults + params)."""

    source: str
    weight: float = 1.0
    params: dict = field(default_factory=dict)
    mean: float = 0.0
    std: float = 1.0


@dataclass
class HybridScorer:
    """A weighted sum of standardised component scores; a `ScoreFn` (users [n], items [n,S], mask [n,S]) -> [n]."""

    components: list[Component]
    scorers: list[ScoreFn]

    def __call__(self, users: np.ndarray, items: np.ndarray, mask: np.ndarray) -> np.ndarray:
        total = np.zeros(len(users), dtype=np.float64)
        for comp, fn in zip(self.components, self.scorers):
            if comp.weight == 0:
                continue
            raw = np.asarray(fn(users, items, mask), dtype=np.float64)
            total += comp.weight * (raw - comp.mean) / comp.std
        return total

    def component_scores(self, users: np.ndarray, items: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Standardised scores of every component, float64 [n_components, n] (for tuning the weights)."""
        return np.stack(
            [
                (np.asarray(fn(users, items, mask), dtype=np.float64) - c.mean) / c.std
                for c, fn in zip(self.components, self.scorers)
            ]
        )


def _scorer(source: str, params: dict, dataset: OutfitDataset, data_path: Path | None) -> ScoreFn:
    if source.startswith(RUN_PREFIX):
        run = load_run(source[len(RUN_PREFIX) :], data=data_path, dataset=dataset, role="hybrid component")
        return CachedScorer(run.model)
    if source.startswith(BASELINE_PREFIX):
        return fit_baseline(source[len(BASELINE_PREFIX) :], dataset, **params)
    raise DataError(f"hybrid: component {source!r} must start with {RUN_PREFIX!r} or {BASELINE_PREFIX!r}")


def build_hybrid(
    components: list[Component], dataset: OutfitDataset, data_path: Path | None = None, standardise: bool = True
) -> HybridScorer:
    """Load / fit every component; with `standardise`, measure each one's mean and std on the training positives."""
    scorers = [_scorer(c.source, c.params, dataset, data_path) for c in components]
    hybrid = HybridScorer(components, scorers)
    if standardise:
        train = dataset.split("train")
        for comp, fn in zip(components, scorers):
            raw = np.asarray(fn(train.users, train.items, train.mask), dtype=np.float64)
            comp.mean, comp.std = float(raw.mean()), float(raw.std()) or 1.0
    return hybrid


MIX_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def _mix_weights(zp, zn, users_p, users_n, grid) -> tuple[np.ndarray, float, dict[float, float]]:
    """Weights by the greedy mixing search of `tune_hybrid` on precomputed standardised scores [C, n]."""
    from outfitrec.evaluate.metrics import mean_metrics

    weights = np.zeros(len(zp))
    weights[0] = 1.0
    best, tried = mean_metrics(users_p, zp[0], users_n, zn[0])["auc"], {}
    for c in range(1, len(weights)):
        tried = {}
        for a in grid:
            w = weights.copy()
            w[:c] *= 1.0 - a
            w[c] = a
            tried[a] = mean_metrics(users_p, w @ zp, users_n, w @ zn)["auc"]
        a = max(tried, key=tried.get)
        weights[:c] *= 1.0 - a
        weights[c] = a
        best = tried[a]
    return weights, float(best), tried


def _valid_scores(hybrid: HybridScorer, dataset: OutfitDataset, data_dir: str | Path):
    from outfitrec.data.negatives import Candidates, candidates_path

    cands = Candidates.load(candidates_path(data_dir, "valid"), dataset.n_users, dataset.catalogue.n_items)
    pos, neg = cands.positives, cands.negatives
    zp = hybrid.component_scores(pos.users, pos.items, pos.mask)
    zn = hybrid.component_scores(neg.users, neg.items, neg.mask)
    return zp, zn, pos.users, neg.users


def tune_hybrid(
    hybrid: HybridScorer,
    dataset: OutfitDataset,
    data_dir: str | Path,
    grid: tuple[float, ...] = MIX_GRID,
) -> tuple[float, dict[float, float]]:
    """Set the weights by a grid search on the validation AUC, one component at a time.

    Component c is mixed into the sum of those before it: s = (1 - a) * s_before + a * z_c, a from `grid`
    (0 = leave it out, 1 = it alone), so every component, alone or mixed, is among the candidates. Only
    the validation split is read. Returns (best AUC, the AUC of every tried `a` of the last component).
    """
    zp, zn, up, un = _valid_scores(hybrid, dataset, data_dir)
    weights, best, tried = _mix_weights(zp, zn, up, un, grid)
    for comp, w in zip(hybrid.components, weights):
        comp.weight = float(w)
    return best, tried


def crossfit_auc(
    hybrid: HybridScorer, dataset: OutfitDataset, data_dir: str | Path, grid: tuple[float, ...] = MIX_GRID, seed=0
) -> float:
    """Validation AUC without the optimism of tuning on it: the users split in two seeded halves, each
    half scored with the weights chosen on the other half; the user-weighted mean of the two halves."""
    from outfitrec.evaluate.metrics import mean_metrics

    zp, zn, up, un = _valid_scores(hybrid, dataset, data_dir)
    half = np.random.default_rng(seed).random(dataset.n_users) < 0.5
    total = n = 0.0
    for side in (True, False):
        fit_p, fit_n = half[up] != side, half[un] != side
        w, _, _ = _mix_weights(zp[:, fit_p], zn[:, fit_n], up[fit_p], un[fit_n], grid)
        test_p, test_n = ~fit_p, ~fit_n
        m = mean_metrics(up[test_p], w @ zp[:, test_p], un[test_n], w @ zn[:, test_n])
        total += m["auc"] * m["n_users"]
        n += m["n_users"]
    return float(total / max(n, 1))


def save_hybrid(hybrid: HybridScorer, folder: str | Path, data_path: Path | None, extra: dict | None = None) -> Path:
    """Write `folder/hybrid.json`: components (source, weight, params, mean, std), the dataset, extra facts."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    doc = {
        "format": "outfitrec-hybrid",
        "components": [asdict(c) for c in hybrid.components],
        "data": None if data_path is None else str(Path(data_path).resolve()),
        **(extra or {}),
    }
    write_text_atomic(folder / HYBRID_FILE, json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return folder / HYBRID_FILE


def is_hybrid(path: str | Path) -> bool:
    """Whether `path` is a hybrid folder (holds hybrid.json)."""
    return (Path(path) / HYBRID_FILE).is_file()


def load_hybrid(folder: str | Path, dataset: OutfitDataset, data_path: Path | None = None) -> HybridScorer:
    """The hybrid saved in `folder`, its components loaded / refitted on `dataset` (statistics as saved)."""
    path = Path(folder) / HYBRID_FILE
    try:
        doc = json.loads(path.read_text())
        components = [Component(**c) for c in doc["components"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a valid hybrid description ({exc})") from None
    return build_hybrid(components, dataset, data_path, standardise=False)


def evaluate_hybrid(hybrid: HybridScorer, dataset: OutfitDataset, data_dir: str | Path, splits=("valid", "test")):
    """The hybrid's metrics on each split the folder has candidates for: {split: metrics}."""
    from outfitrec.data.negatives import candidates_path

    return {
        s: evaluate_split(hybrid, dataset, data_dir, s)
        for s in splits
        if s in dataset.splits and candidates_path(data_dir, s).is_file()
    }
