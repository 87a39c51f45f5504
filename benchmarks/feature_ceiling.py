"""How far are the CNN item encoders from perfect item features?

Trains the teacher's configuration with encoder="features" on the ground-truth item
attributes of a Fashion-MNIST dataset (truth.npz: the standardised pixel attributes,
one-hot class and slot) instead of pixels, and prints its test metrics. The gap between
this and the CNN teacher is what the item encoder leaves on the table.

    python benchmarks/feature_ceiling.py --data datasets/fmnist-default --run-dir runs/feature_ceiling
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from _common import run_main

from outfitrec.train.config import load_config
from outfitrec.train.loop import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("datasets/fmnist-default"))
    parser.add_argument("--run-dir", type=Path, default=Path("runs/feature_ceiling"))
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    truth = np.load(args.data / "truth.npz")
    features = np.concatenate(
        [truth["attributes"], np.eye(10)[truth["item_class"]], np.eye(5)[truth["item_slot"]]], axis=1
    ).astype(np.float32)
    args.run_dir.mkdir(parents=True, exist_ok=True)
    path = args.run_dir / "truth_features.npy"
    np.save(path, features)
    config = load_config(
        "fmnist_teacher",
        [
            f"data.path={args.data}",
            "model.encoder=features",
            f"model.features_path={path}",
            f"optim.epochs={args.epochs}",
        ],
    )
    metrics = train(config, args.run_dir / "run")
    print(json.dumps({"valid": metrics.get("valid"), "test": metrics.get("test")}, indent=1))


if __name__ == "__main__":
    run_main(main)
