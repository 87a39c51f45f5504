"""Non-personal baselines: what can be reached without knowing the user.

Popularity: an outfit scores the mean number of training outfits its items
appear in. If a model barely beats it, the data carries little personal taste;
the Fashion-MNIST generator is checked against it.
"""

from __future__ import annotations

import numpy as np

from outfitrec.data.outfits import DataError, OutfitDataset, Outfits


def item_popularity(dataset: OutfitDataset) -> np.ndarray:
    """Number of training outfits each catalogue item appears in, float64 [n_items] (0 for unseen items)."""
    train = dataset.split("train")
    real = train.items[train.mask]
    return np.bincount(real, minlength=dataset.catalogue.n_items).astype(np.float64)


def popularity_scores(dataset: OutfitDataset, outfits: Outfits, popularity: np.ndarray | None = None) -> np.ndarray:
    """Score of each outfit = mean training popularity of its real items, float64 [n] (0 for an empty outfit).

    popularity: precomputed `item_popularity(dataset)`, to score many batches cheaply.
    """
    pop = item_popularity(dataset) if popularity is None else np.asarray(popularity, dtype=np.float64)
    real = outfits.items[outfits.mask]
    if len(real) and (real.min() < 0 or real.max() >= len(pop)):
        raise DataError(f"popularity: an item id is outside 0..{len(pop) - 1}")
    values = np.where(outfits.mask, pop[np.where(outfits.mask, outfits.items, 0)], 0.0)
    counts = outfits.mask.sum(axis=1)
    return values.sum(axis=1) / np.maximum(counts, 1)
