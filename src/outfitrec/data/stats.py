"""Dataset statistics, as printed by `outfitrec data stats`.

Counts users, items, categories and outfits per split (rows and distinct
item sets), outfits per user (min / median / max), outfit sizes, and how much
of the valid / test data is unseen in train, both as a share of the distinct
items of the split and as a share of item occurrences in its outfits. The
unseen share tells how far a model must generalise through an item's content
or category rather than its id. A valid / test outfit that is one of the same
user's training outfits is counted (a leak) and flagged with a warning line.
"""

from __future__ import annotations

import numpy as np

from outfitrec.data.outfits import OutfitDataset


def training_leaks(dataset: OutfitDataset) -> dict[str, tuple[int, int]]:
    """Per valid / test split: (how many positives are one of the same user's training outfits, how many outfits).

    Outfits are compared as item sets. Such a positive leaks the answer: the
    model has seen it as this user's training outfit.
    """
    train = dataset.splits.get("train")
    if train is None:
        return {}
    seen = set(zip(train.users.tolist(), train.item_sets()))
    return {
        name: (sum((u, s) in seen for u, s in zip(split.users.tolist(), split.item_sets())), len(split))
        for name, split in dataset.splits.items()
        if name != "train"
    }


def dataset_stats(dataset: OutfitDataset) -> dict:
    """All statistics as a JSON-able dict."""
    cat = dataset.catalogue
    out: dict = {
        "name": dataset.meta.get("name", ""),
        "users": int(dataset.n_users),
        "items": int(cat.n_items),
        "categories": int(cat.n_categories),
        "categories_used": int(len(np.unique(cat.item_category))),
        "splits": {},
    }
    leaks = training_leaks(dataset)
    train_items = (
        np.unique(dataset.splits["train"].items[dataset.splits["train"].mask]) if "train" in dataset.splits else None
    )
    for name, split in dataset.splits.items():
        sizes = split.sizes
        per_user = np.bincount(split.users, minlength=dataset.n_users) if len(split) else np.zeros(0, dtype=np.int64)
        with_outfits = per_user[per_user > 0]
        real = split.items[split.mask]
        distinct_items = np.unique(real)
        info = {
            "outfits": int(len(split)),
            "distinct_outfits": int(len({s for s in split.item_sets()})),
            "users_with_outfits": int(len(with_outfits)),
            "outfits_per_user": {
                "min": int(with_outfits.min()) if len(with_outfits) else 0,
                "median": float(np.median(with_outfits)) if len(with_outfits) else 0.0,
                "max": int(with_outfits.max()) if len(with_outfits) else 0,
            },
            "outfit_sizes": {int(s): int(c) for s, c in zip(*np.unique(sizes, return_counts=True))},
            "distinct_items": int(len(distinct_items)),
        }
        if name in leaks:
            info["training_outfits_of_same_user"] = leaks[name][0]
        if train_items is not None and name != "train" and len(real):
            unseen_distinct = ~np.isin(distinct_items, train_items)
            unseen_occ = ~np.isin(real, train_items)
            info["unseen_item_share"] = float(unseen_distinct.mean())
            info["unseen_occurrence_share"] = float(unseen_occ.mean())
        out["splits"][name] = info
    return out


def format_stats(stats: dict) -> str:
    """Human-readable lines for the CLI."""
    lines = [
        f"dataset     {stats['name']}",
        f"users       {stats['users']:,}",
        f"items       {stats['items']:,}",
        f"categories  {stats['categories']:,} ({stats['categories_used']} with items)",
    ]
    for name, s in stats["splits"].items():
        opu = s["outfits_per_user"]
        sizes = ", ".join(f"{k}: {v:,}" for k, v in s["outfit_sizes"].items())
        lines.append(
            f"{name:<6} outfits {s['outfits']:,} (distinct {s['distinct_outfits']:,}), "
            f"users {s['users_with_outfits']:,}, outfits per user min/median/max "
            f"{opu['min']}/{opu['median']:g}/{opu['max']}, items {s['distinct_items']:,}"
        )
        lines.append(f"       outfit sizes {{{sizes}}}")
        if leaked := s.get("training_outfits_of_same_user"):
            verb = "is a training outfit" if leaked == 1 else "are training outfits"
            lines.append(f"       warning: {leaked:,} of {s['outfits']:,} {name} outfits {verb} of the same user")
        if "unseen_item_share" in s:
            lines.append(
                f"       unseen in train: {s['unseen_item_share']:.3f} of distinct items, "
                f"{s['unseen_occurrence_share']:.3f} of item occurrences"
            )
    return "\n".join(lines)
