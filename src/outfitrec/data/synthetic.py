"""A tiny synthetic outfit dataset with procedurally drawn item images.

For tests and for machines without Fashion-MNIST: every item is a 28x28 grey
image (a filled rectangle or ellipse of category-dependent shape, random
brightness and stripe texture), and each user prefers bright or dark items.
"""

from __future__ import annotations

import numpy as np

from outfitrec.data.outfits import Catalogue, OutfitDataset, Outfits

CATEGORIES = ["top", "bottom", "shoes"]


def draw_item(category: int, brightness: float, stripes: int, rng: np.random.Generator, size: int = 28) -> np.ndarray:
    """One procedural item image: uint8 [size, size]."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    if category == 0:  # top: wide rectangle in the upper part
        shape = (np.abs(xx - 0.5) < 0.35) & (yy > 0.15) & (yy < 0.75)
    elif category == 1:  # bottom: tall, narrow
        shape = (np.abs(xx - 0.5) < 0.2) & (yy > 0.05) & (yy < 0.95)
    else:  # shoes: ellipse at the bottom
        shape = ((xx - 0.5) / 0.4) ** 2 + ((yy - 0.7) / 0.2) ** 2 < 1
    texture = 0.5 + 0.5 * np.sin(2 * np.pi * stripes * yy) if stripes else np.ones_like(yy)
    img = shape * (brightness * (0.6 + 0.4 * texture)) * 255 + rng.normal(0, 4, (size, size))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_synthetic(
    n_users: int = 12,
    items_per_category: int = 20,
    outfits_per_user: int = 8,
    seed: int = 0,
) -> OutfitDataset:
    """Catalogue of 3 categories, users with a brightness taste, train/valid/test outfits (3 items each)."""
    rng = np.random.default_rng(seed)
    n_items = items_per_category * len(CATEGORIES)
    item_category = np.repeat(np.arange(len(CATEGORIES)), items_per_category)
    brightness = rng.uniform(0.2, 1.0, n_items)
    stripes = rng.integers(0, 4, n_items)
    images = np.stack([draw_item(int(c), b, int(s), rng) for c, b, s in zip(item_category, brightness, stripes)])
    taste = rng.uniform(-1, 1, n_users)  # > 0 likes bright items
    rows, users = [], []
    for u in range(n_users):
        for _ in range(outfits_per_user):
            outfit = []
            for c in range(len(CATEGORIES)):
                pool = np.flatnonzero(item_category == c)
                logits = 4 * taste[u] * brightness[pool]
                p = np.exp(logits - logits.max())
                outfit.append(int(rng.choice(pool, p=p / p.sum())))
            rows.append(outfit)
            users.append(u)
    all_outfits = Outfits.from_rows(users, rows, item_category)
    # per user: last outfit to test, second to last to valid
    order = np.arange(len(rows))
    pos_in_user = order % outfits_per_user
    splits = {
        "train": all_outfits.subset(pos_in_user < outfits_per_user - 2),
        "valid": all_outfits.subset(pos_in_user == outfits_per_user - 2),
        "test": all_outfits.subset(pos_in_user == outfits_per_user - 1),
    }
    catalogue = Catalogue(item_category, list(CATEGORIES), images=images)
    templates = [list(CATEGORIES)]
    return OutfitDataset(catalogue, n_users, splits, {"name": "synthetic", "templates": templates})
