"""Qualitative figures: the user-outfit space in 2-D, and users' top-scored outfits drawn as images.

The space a model scores in: for the anchor scorer (LPAE) an outfit is the
unit vector normalize(W z) and a user is the set of its normalised anchors;
the score is the sum of cosines. For the dot scorer the outfit is z and the
user one embedding. For each shown user the points (anchors, the user's
positive evaluation outfits and their sampled negatives) are projected on
their first two principal components (numpy SVD, fitted per user and model),
teacher and student side by side: a good model puts positives near anchors,
negatives away from them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from outfitrec.data.negatives import Candidates, candidates_path
from outfitrec.data.outfits import OutfitDataset, Outfits


def pca_2d(points: np.ndarray) -> np.ndarray:
    """Rows projected on their first two principal components (centred; padded with 0 if rank < 2)."""
    x = np.asarray(points, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    if len(x) == 0:
        return np.zeros((0, 2))
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    proj = x @ vt[:2].T
    if proj.shape[1] < 2:
        proj = np.pad(proj, ((0, 0), (0, 2 - proj.shape[1])))
    return proj


@torch.no_grad()
def user_space(model, user: int, outfits: Outfits) -> tuple[np.ndarray, np.ndarray]:
    """(outfit points [n, d], user points [k, d]) in the space the model scores `user` in."""
    model.eval()
    items = torch.as_tensor(outfits.items)
    mask = torch.as_tensor(outfits.mask)
    z = model.outfit_embeddings(items.clamp(min=0), mask)
    scorer = model.scorer
    if hasattr(scorer, "anchors"):
        pts = F.normalize(scorer.project(z), dim=-1)
        anchors = F.normalize(scorer.anchors[user], dim=-1)
        return pts.numpy(), anchors.numpy()
    pts = z if scorer.project is None else scorer.project(z)
    return pts.numpy(), scorer.users.weight[user : user + 1].numpy()


def user_candidates(cands: Candidates, user: int) -> tuple[Outfits, Outfits]:
    """A user's positive evaluation outfits and all their sampled negatives."""
    pos_rows = np.flatnonzero(cands.positives.users == user)
    neg_rows = (pos_rows[:, None] * cands.k + np.arange(cands.k)[None, :]).ravel()
    return cands.positives.subset(pos_rows), cands.negatives.subset(neg_rows)


def pick_users(cands: Candidates, n: int) -> list[int]:
    """The n users with the most evaluation positives (ties: smallest id): the clearest pictures."""
    users, counts = np.unique(cands.positives.users, return_counts=True)
    order = np.lexsort((users, -counts))
    return [int(u) for u in users[order[:n]]]


def space_figure(
    models: dict[str, object], dataset: OutfitDataset, data_dir: Path, split: str, out: Path, n_users: int = 3
) -> Path:
    """PCA of each shown user's anchors, positives and negatives; one column per model (teacher, student)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from outfitrec.experiments.report import _save_fig

    cands = Candidates.load(candidates_path(data_dir, split), dataset.n_users, dataset.catalogue.n_items)
    users = pick_users(cands, n_users)
    fig, axes = plt.subplots(len(users), len(models), figsize=(4 * len(models), 3.6 * len(users)), squeeze=False)
    for row, user in enumerate(users):
        pos, neg = user_candidates(cands, user)
        for col, (name, model) in enumerate(models.items()):
            both = Outfits.concat([pos, neg])
            points, anchors = user_space(model, user, both)
            proj = pca_2d(np.concatenate([anchors, points]))
            a, p, n = (
                proj[: len(anchors)],
                proj[len(anchors) : len(anchors) + len(pos)],
                proj[len(anchors) + len(pos) :],
            )
            ax = axes[row][col]
            ax.scatter(n[:, 0], n[:, 1], s=10, c="tab:red", alpha=0.5, label="negatives")
            ax.scatter(p[:, 0], p[:, 1], s=30, c="tab:green", label="positives")
            ax.scatter(a[:, 0], a[:, 1], s=40, c="black", marker="x", label="anchors / user")
            ax.set_title(f"{name}: user {user}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0 and col == 0:
                ax.legend(fontsize=7)
    fig.suptitle(f"User-outfit space ({split} candidates), PCA per user", fontsize=10)
    fig.tight_layout()
    _save_fig(fig, out)
    plt.close(fig)
    return out


def _item_tile(dataset: OutfitDataset, item: int, side: int = 28) -> np.ndarray:
    """An item as a grey tile [side, side] in [0, 1] (its image, or blank when the catalogue has none)."""
    cat = dataset.catalogue
    if cat.images is not None:
        img = np.asarray(cat.images[item], dtype=np.float64)
        if img.ndim == 3:
            img = img.mean(axis=-1)
        if img.shape != (side, side):
            ys = np.linspace(0, img.shape[0] - 1, side).astype(int)
            xs = np.linspace(0, img.shape[1] - 1, side).astype(int)
            img = img[np.ix_(ys, xs)]
        return 1.0 - img / 255.0  # dark garment on white
    return np.ones((side, side))


def top_outfits_figure(
    models: dict[str, object],
    dataset: OutfitDataset,
    data_dir: Path,
    split: str,
    out: Path,
    n_users: int = 3,
    top: int = 5,
) -> Path:
    """For a few users, each model's top-scored evaluation candidates drawn item by item (green: a positive)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from outfitrec.experiments.report import _save_fig

    cands = Candidates.load(candidates_path(data_dir, split), dataset.n_users, dataset.catalogue.n_items)
    users = pick_users(cands, n_users)
    names = dataset.catalogue.category_names
    rows = [(u, name) for u in users for name in models]
    fig, axes = plt.subplots(len(rows), top, figsize=(2.2 * top, 1.3 * len(rows)), squeeze=False)
    for r, (user, name) in enumerate(rows):
        pos, neg = user_candidates(cands, user)
        both = Outfits.concat([pos, neg])
        model = models[name]
        with torch.no_grad():
            model.eval()
            scores = model(
                torch.full((len(both),), user), torch.as_tensor(both.items).clamp(min=0), torch.as_tensor(both.mask)
            ).numpy()
        order = np.argsort(-scores, kind="stable")[:top]
        for c in range(top):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(order):
                ax.axis("off")
                continue
            i = int(order[c])
            items = both.items[i][both.mask[i]]
            tiles = [_item_tile(dataset, int(it)) for it in items]
            ax.imshow(np.concatenate(tiles, axis=1), cmap="gray", vmin=0, vmax=1)
            if dataset.catalogue.images is None:
                labels = [str(names[int(dataset.catalogue.item_category[it])])[:10] for it in items]
                for k, label in enumerate(labels):
                    ax.text(28 * k + 14, 14, label, ha="center", va="center", fontsize=5, rotation=90)
            good = i < len(pos)
            for spine in ax.spines.values():
                spine.set_edgecolor("tab:green" if good else "tab:red")
                spine.set_linewidth(2.5)
            ax.set_title(f"{scores[i]:.2f}", fontsize=7)
            if c == 0:
                ax.set_ylabel(f"u{user}\n{name}", fontsize=7)
    fig.suptitle(
        "Top-scored candidates per user (green frame: the user's true outfit, red: a sampled negative)", fontsize=9
    )
    fig.tight_layout()
    _save_fig(fig, out)
    plt.close(fig)
    return out
