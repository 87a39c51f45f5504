"""Shared fixtures: a tiny synthetic dataset (procedural images) prepared with its candidate files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from outfitrec.data.negatives import Candidates, candidates_path, category_pools, random_mix, write_candidate_files
from outfitrec.data.outfits import OutfitDataset
from outfitrec.data.prepare import load_dataset
from outfitrec.data.synthetic import make_synthetic
from outfitrec.losses import softmax_loss
from outfitrec.models.checkpoint import save_model
from outfitrec.models.outfit_model import ModelConfig, OutfitModel
from outfitrec.train.config import config_from_dict

# the team's shared folder (real data; tests that need it skip without it): $SHARED, else beside the clone
SHARED = Path(os.environ.get("SHARED") or Path(__file__).resolve().parents[1].parent / "shared")
DIFASHION = SHARED / "data" / "polyvore-u-difashion"
TESTVECTORS = Path(__file__).resolve().parent / "data"  # reference metric values, copied into the repo

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


TINY_CONFIG = ModelConfig(encoder="cnn", size="student", dim=32, heads=4, n_anchors=8, dropout=0.0)


def make_tiny_model(dataset: OutfitDataset, steps: int = 40, seed: int = 0) -> OutfitModel:
    """A real student-size OutfitModel trained for a few steps (softmax over 1 positive + 5 random mixes)."""
    torch.manual_seed(seed)
    cat = dataset.catalogue
    model = OutfitModel(TINY_CONFIG, dataset.n_users, cat.n_items, cat.n_categories)
    model.bind_catalogue(cat)
    train = dataset.split("train")
    pools = category_pools(train.items, cat.item_category)
    rng = np.random.default_rng(seed)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    k = 5
    for _ in range(steps):
        batch = train.subset(rng.choice(len(train), size=16, replace=False))
        neg = random_mix(batch, pools, k, rng)
        items = np.concatenate([batch.items[:, None], neg.items.reshape(len(batch), k, -1)], axis=1)
        mask = np.concatenate([batch.mask[:, None], neg.mask.reshape(len(batch), k, -1)], axis=1)
        scores = model(torch.from_numpy(batch.users)[:, None], torch.from_numpy(items), torch.from_numpy(mask))
        loss = softmax_loss(scores) + 1e-2 * model.regularizer()
        optim.zero_grad()
        loss.backward()
        optim.step()
    return model.eval()


def make_tiny_run(dataset: OutfitDataset, data_dir: Path, run_dir: Path, steps: int = 15) -> Path:
    """A run directory as train/ writes it, as far as the recommender reads it: model/ + config.yaml."""
    model = make_tiny_model(dataset, steps)
    save_model(model, run_dir / "model", {"role": "test"})
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"data": {"path": str(data_dir)}}))
    return run_dir
