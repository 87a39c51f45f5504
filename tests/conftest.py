"""Shared fixtures: a tiny synthetic dataset (procedural images) prepared with its candidate files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from outfitrec.data.negatives import Candidates, candidates_path, write_candidate_files
from outfitrec.data.prepare import load_dataset
from outfitrec.data.synthetic import make_synthetic
from outfitrec.train.config import config_from_dict

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DIFASHION = SHARED / "data" / "polyvore-u-difashion"
TESTVECTORS = SHARED / "testvectors"

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_dataset():
    return make_synthetic(n_users=12, items_per_category=20, outfits_per_user=8, seed=0)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory, tiny_dataset) -> Path:
    """A prepared dataset folder: dataset.npz + candidates_{valid,test}.npz."""
    out = tmp_path_factory.mktemp("tiny_data")
    tiny_dataset.save(out / "dataset.npz")
    write_candidate_files(tiny_dataset, out, k=10, seed=0)
    return out


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def tiny_config(data_dir, **sections):
    """A tiny, fast RunConfig on a prepared folder; `sections` update its YAML sections."""
    raw = {
        "name": "tiny",
        "data": {"path": str(data_dir), "batch_size": 16, "negatives": 4, "seed": 0},
        "model": {"encoder": "cnn", "size": "student", "dim": 8, "heads": 2, "n_anchors": 3, "dropout": 0.0},
        "optim": {"lr": 0.003, "epochs": 2, "patience": 5},
        "runtime": {"threads": 1, "progress": False},
    }
    for key, value in sections.items():
        raw.setdefault(key, {}).update(value)
    return config_from_dict(raw, "test")


def load_prepared(path):
    """(dataset, {split: Candidates}) of a prepared folder: every reader's checks (manifest, fingerprints) at once."""
    dataset, folder = load_dataset(path)
    candidates = {
        split: Candidates.load(candidates_path(folder, split), dataset.n_users, dataset.catalogue.n_items)
        for split in ("valid", "test")
        if candidates_path(folder, split).exists()
    }
    return dataset, candidates
