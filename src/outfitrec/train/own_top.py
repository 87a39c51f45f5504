"""The student's own current top outfits: the candidates that matter at serving time (`loss.own_top`).

A recommender serves the outfits its model scores highest over the whole
catalogue (~1e11 outfits on the Fashion-MNIST default preset), and that is where
a model trained on a user's ~50 liked outfits and random mixes is most wrong: it
scores its own top-10 1.4-2x above the oracle's top-10 (a winner's curse;
docs/results/top-of-ranking.md). Random mixes never visit that region, so no
sampled-candidate loss corrects it.

At the start of each epoch the search (models/search.py) finds, for every user,
the `per_user` outfits the current student scores highest over the training
items (the user's training outfits excluded). The sampler then adds `own_top`
of them to each positive's candidates, after the K negatives of L_rec: only the
distillation term sees them, so the teacher's scores, not a "negative" label,
tell the student how good they are. Used as plain negatives in L_rec instead,
they collapsed the true share (0.21-0.27 against 0.41-0.47): most of them are
outfits the user likes (by the flag statistics of those runs, the teacher flags
nearly all of them as false negatives and the truth agrees for about two thirds).

Cost: one search per user per epoch (about 20-25 s for 300 users on one CPU
thread with `MINING_PARAMS`, against 15 s for a student epoch). Every rank of a
distributed run mines the same outfits (the search is deterministic and the
replicas are equal).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch

from outfitrec.data.outfits import PAD, Outfits
from outfitrec.models.scoring import TorchScorer, model_device
from outfitrec.models.search import Searcher, SearchIndex, SearchParams

# a lighter search than the served one (beam 16, shortlist 20, 10 refinement rounds): mining runs every epoch
MINING_PARAMS = SearchParams(beam_width=8, shortlist=10, refine_pool=32, refine_top=10, refine_rounds=2)


def training_exclusions(train: Outfits, n_users: int) -> list[set[frozenset[int]]]:
    """Each user's training outfits as item sets (never mined: they are the positives)."""
    out: list[set[frozenset[int]]] = [set() for _ in range(n_users)]
    for u, items in zip(train.users, train.item_sets()):
        out[int(u)].add(items)
    return out


@torch.no_grad()
def own_top_outfits(
    model,
    item_category: np.ndarray,
    pools: dict[int, np.ndarray],
    templates: Sequence[Sequence[int]],
    exclude: Sequence[set[frozenset[int]]],
    per_user: int,
    width: int,
    params: SearchParams = MINING_PARAMS,
) -> np.ndarray:
    """Every user's `per_user` best outfits under the model, int64 [n_users, per_user, width] (PAD = empty slot).

    pools: category id -> the item ids the search may use (training: the items of the train split);
    templates: lists of category ids; exclude[u]: item sets never returned for user u. A user for whom the
    search finds fewer outfits gets them repeated; a user with none gets PAD rows (the sampler puts the
    positive there instead: `EpochSampler`). Templates longer than `width` are not searched. The model is
    left in eval mode; the caller switches it back. A model on a GPU is searched through a CPU copy (the
    search's scorer works on numpy arrays).
    """
    if model_device(model).type != "cpu":
        model = copy.deepcopy(model).to("cpu")
    scorer = TorchScorer(model)  # eval mode, no autograd
    n_items = len(item_category)
    index = SearchIndex.build(scorer, scorer.encode_items(np.arange(n_items)), item_category)
    index.pools = {int(c): np.asarray(p, dtype=np.int64) for c, p in pools.items()}
    searcher = Searcher(scorer, index, params)
    templates = [t for t in templates if len(t) <= width]  # outfits as wide as the training batches
    out = np.full((len(exclude), per_user, width), PAD, dtype=np.int64)
    for u in range(len(exclude) if templates else 0):
        recs = searcher.search(u, templates, k=per_user, exclude=exclude[u])
        for j in range(per_user if recs else 0):
            items = recs[j % len(recs)].items
            out[u, j, : len(items)] = items
    return out


__all__ = ["MINING_PARAMS", "own_top_outfits", "training_exclusions"]
