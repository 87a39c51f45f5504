"""outfitrec: personalized outfit recommendation with False Negative Distillation
and contrastive learning (Kim et al., arXiv 2110.06483), and beyond.

The public Python API (docs/python-api.md); each name is imported on first
use, so `import outfitrec` (and `outfitrec --help`) stays fast:

- `load_dataset(path) -> (OutfitDataset, folder)`: a prepared dataset folder (or its dataset.npz).
- `load_config(path_or_preset, overrides=()) -> RunConfig`: a YAML run config or a shipped preset.
- `train_run(config, run_dir, resume=False) -> dict`: train one run (teacher, student, distilled student);
  `outfitrec.train.loop.train` (named apart from the `outfitrec.train` package).
- `load_run(run_dir, data=None, device="cpu") -> Run`: a trained model bound to its dataset (`.model`, `.dataset`).
- `evaluate_run(run_dir, split="test") -> dict`: AUC / NDCG / NDCG@10 / FITB beside the baselines'.
- `fit_baseline(name, dataset, **params) -> ScoreFn`: a collaborative baseline (EASE, item-/user-kNN, PureSVD).
- `Recommender.from_run(run_dir)`: `.recommend(user, k)`, `.complete(user, items, k)`, `.score(user, outfits)`,
  with `SearchParams` for the search's width.
- `create_app(recommender) -> FastAPI`: the HTTP service (run it with uvicorn, or `outfitrec serve`).

Errors from bad input are `DataError` (a ValueError) with a one-line message naming the file and what is wrong.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "DataError": ("outfitrec.data.errors", "DataError"),
    "load_dataset": ("outfitrec.data.prepare", "load_dataset"),
    "load_config": ("outfitrec.train.config", "load_config"),
    "train_run": ("outfitrec.train.loop", "train"),
    "load_run": ("outfitrec.models.checkpoint", "load_run"),
    "evaluate_run": ("outfitrec.evaluate.protocol", "evaluate_run"),
    "fit_baseline": ("outfitrec.evaluate.baselines", "fit_baseline"),
    "Recommender": ("outfitrec.recommend.engine", "Recommender"),
    "SearchParams": ("outfitrec.models.search", "SearchParams"),
    "create_app": ("outfitrec.serve.app", "create_app"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    """The API's names, imported on first use (PEP 562)."""
    if name not in _API:
        raise AttributeError(f"module 'outfitrec' has no attribute {name!r}")
    module, attr = _API[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
