"""Training examples: each training positive with K negatives, re-drawn every epoch.

Everything an epoch draws (the order of the positives, the random mixes, the
hard negatives, the teacher's extra pool) comes from generators seeded by
(seed, epoch, stream), never from a generator carried across epochs. A run
resumed at an epoch boundary therefore draws exactly what the uninterrupted
run drew, and two runs that differ only in their loss (plain student, KD, FND,
CL) see the same negatives: paired comparisons are fair.

Streams: 0 = order + the K negatives of the loss, 1 = the teacher pool's extra
negatives (so adding a pool never changes the K), 2 = torch (dropout and
augmentations; see `torch_seed`), 3 = the draw among the student's own top
outfits (`own_top`, train/own_top.py).

Cost on a CPU: the model encodes each distinct item of a step once (the loop
calls `torch.unique` over every item id of the step, candidates and
augmented views together), so a step costs about the number of distinct items
it touches, not B * (1 + K) * S. `data.step_pool` bounds that number further:
the random mixes of one step draw from `step_pool` items per category sampled
uniformly (per step) from the TRAIN pool instead of from the whole pool. Each
negative item is then still uniform over the pool, marginally, so negatives
keep the popularity contrast of the full random mix. (Drawing from the
batch's own positive items instead, as first tried, makes negatives out of
positive items only: the popularity signal disappears and the model learned
nothing in our Fashion-MNIST runs.)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from outfitrec.data.negatives import category_pools, hard_negatives, random_mix
from outfitrec.data.outfits import PAD, DataError, Outfits

STREAM_NEGATIVES = 0
STREAM_POOL = 1
STREAM_TORCH = 2
STREAM_OWN_TOP = 3


def epoch_rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
    """The numpy generator of one (seed, epoch, stream): independent of every other epoch."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), int(stream)]))


def torch_seed(seed: int, epoch: int) -> int:
    """A 63-bit torch seed derived from (seed, epoch) for dropout and augmentations."""
    state = np.random.SeedSequence([int(seed), int(epoch), STREAM_TORCH]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


@dataclass
class Batch:
    """One step's examples. Column 0 of each row is the positive, then the K negatives of the loss,
    then (with a teacher pool) the extra negatives only the distillation term sees, then (with own_top) the
    student's own top outfits for the user, also seen by the distillation term only.

    users: int64 [B]; items, categories: int64 [B, C, S] (PAD where masked); mask: bool [B, C, S];
    n_rec: the columns of the recommendation loss (1 + K; + own_top with own_top_negatives);
    index: the positives' rows in the train split.
    """

    users: np.ndarray
    items: np.ndarray
    categories: np.ndarray
    mask: np.ndarray
    n_rec: int
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    @property
    def n_candidates(self) -> int:
        return self.items.shape[1]

    def negatives(self) -> Outfits:
        """Every negative of the batch (columns 1..C-1) as flat Outfits, for flag statistics."""
        b, c, s = self.items.shape
        users = np.repeat(self.users, c - 1)
        return Outfits(
            users,
            self.items[:, 1:].reshape(-1, s),
            self.categories[:, 1:].reshape(-1, s),
            self.mask[:, 1:].reshape(-1, s),
            np.zeros(len(users), dtype=np.int64),
        )


class EpochSampler:
    """Draws each epoch's training examples from the TRAIN split.

    k: negatives per positive for the loss; hard_share: share of them that are
    hard negatives (positive outfits of other users); pool_size: if larger
    than k, the total number of negatives per positive the teacher scores
    (extra random mixes); step_pool: bound on the per-step item pool (see
    the module docstring); own_top: per positive, that many of the user's
    own-top outfits given to `epoch` (the student's current best, mined by
    train/own_top.py) as the last columns; own_top_negatives: they count
    among the columns of L_rec (n_rec; no teacher pool then), as negatives.
    """

    def __init__(
        self,
        train: Outfits,
        item_category: np.ndarray,
        k: int = 10,
        batch_size: int = 64,
        seed: int = 0,
        hard_share: float = 0.0,
        pool_size: int | None = None,
        step_pool: int | None = None,
        own_top: int = 0,
        own_top_negatives: bool = False,
    ) -> None:
        if len(train) == 0:
            raise DataError("training: the train split has no positive outfits")
        self.train = train
        self.item_category = np.asarray(item_category, dtype=np.int64)
        self.k = int(k)
        self.k_hard = int(round(hard_share * self.k))
        self.k_random = self.k - self.k_hard
        self.extra = max(0, int(pool_size) - self.k) if pool_size else 0
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.step_pool = step_pool
        self.own_top = int(own_top)
        self.own_top_negatives = bool(own_top_negatives)
        if self.own_top_negatives and self.extra:
            raise ValueError("EpochSampler: own-top negatives of L_rec and a teacher pool cannot be combined")
        self.pools = category_pools(train.items, self.item_category)
        self.forbidden = set(train.item_sets())  # a random mix equal to a known positive is redrawn

    @property
    def n_batches(self) -> int:
        return -(-len(self.train) // self.batch_size)

    @property
    def n_candidates(self) -> int:
        return 1 + self.k + self.extra + self.own_top  # own_top: in the epochs that mine them

    def _step_pools(self, rng: np.random.Generator) -> dict[int, np.ndarray]:
        if self.step_pool is None:
            return self.pools
        pools = {}
        for cat, pool in self.pools.items():
            take = min(self.step_pool, len(pool))
            pools[cat] = np.sort(pool[rng.choice(len(pool), size=take, replace=False)])
        return pools

    def epoch(self, epoch: int, own_top: np.ndarray | None = None) -> Iterator[Batch]:
        """The batches of one epoch, a pure function of (seed, epoch, own_top).

        own_top: int64 [n_users, M, S'] (PAD = empty slot), each user's M own-top outfits, or None (no
        own-top columns this epoch, e.g. before the student is trained enough to search with). A user whose
        rows are all PAD gets copies of the positive instead (the same outfit twice: no signal for a
        distillation term over a softmax).
        """
        rng = epoch_rng(self.seed, epoch, STREAM_NEGATIVES)
        rng_pool = epoch_rng(self.seed, epoch, STREAM_POOL)
        rng_own = epoch_rng(self.seed, epoch, STREAM_OWN_TOP)
        order = rng.permutation(len(self.train))
        hard = hard_negatives(self.train, self.k_hard, rng) if self.k_hard else None
        s = self.train.max_size
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            pos = self.train.subset(index)
            b = len(index)
            pools = self._step_pools(rng)
            parts = [_grid(pos, b, 1, s)]
            if self.k_random:
                parts.append(_grid(random_mix(pos, pools, self.k_random, rng, self.forbidden), b, self.k_random, s))
            if hard is not None:
                rows = (index[:, None] * self.k_hard + np.arange(self.k_hard)[None, :]).reshape(-1)
                parts.append(_grid(hard.subset(rows), b, self.k_hard, s))
            if self.extra:
                parts.append(_grid(random_mix(pos, pools, self.extra, rng_pool, self.forbidden), b, self.extra, s))
            n_rec = 1 + self.k
            if self.own_top and own_top is not None:
                parts.append(self._own_top_grid(pos, own_top, rng_own, s))
                n_rec += self.own_top if self.own_top_negatives else 0
            items, cats, mask = (np.concatenate([p[i] for p in parts], axis=1) for i in range(3))
            yield Batch(pos.users, items, cats, mask, n_rec, index)

    def _own_top_grid(
        self, pos: Outfits, own_top: np.ndarray, rng: np.random.Generator, width: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """own_top of each positive's user's mined outfits (uniform draws), as [b, own_top, width] grids."""
        b, n, m = len(pos), self.own_top, own_top.shape[1]
        rows = own_top[pos.users[:, None], rng.integers(0, m, (b, n))]  # [b, n, S']
        if rows.shape[2] > width:
            raise ValueError(f"own-top outfits have {rows.shape[2]} slots, the training outfits {width}")
        items = np.full((b, n, width), PAD, dtype=np.int64)
        items[:, :, : rows.shape[2]] = rows
        empty = (items == PAD).all(axis=2)  # a user the search found nothing for: the positive again
        pos_items = pos.padded_to(width).items
        items[empty] = np.repeat(pos_items[:, None], n, axis=1)[empty]
        mask = items != PAD
        cats = np.where(mask, self.item_category[np.where(mask, items, 0)], PAD)
        return items, cats, mask


def _grid(outfits: Outfits, b: int, c: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat outfits (rows [i*c:(i+1)*c] for example i) -> (items, categories, mask) of shape [b, c, width]."""
    o = outfits.padded_to(width)
    shape = (b, c, width)
    return o.items.reshape(shape), o.categories.reshape(shape), o.mask.reshape(shape)


__all__ = ["Batch", "EpochSampler", "epoch_rng", "torch_seed", "PAD"]
