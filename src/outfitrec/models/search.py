"""Finding a user's best outfits in the whole catalogue without enumerating it.

The number of outfits grows as the product of the slots' category sizes
(7,000 items per slot over three slots is 3.4e11 outfits), so the scorer can
only ever see a tiny part of it. The search works in three steps, all on item
embeddings computed once per checkpoint (see `SearchIndex`):

1. **Shortlist** per slot: every item of the slot's category gets a cheap
   proxy score, the model's score of the outfit made of that item alone
   (a one-item outfit is a valid, masked input of the Set Transformer; its
   outfit embedding is user-independent and cached, so the per-user cost is
   one `score_embeddings` pass over the catalogue). When some items are given
   (completing an outfit) the proxy is the score of the given items plus the
   candidate, which measures compatibility with what is already chosen.
2. **Beam search** over the slots: partial outfits are extended one slot at
   a time by every shortlisted item and scored by the Set Transformer (masks
   make a partial outfit a valid input); the best `beam_width` survive.
3. **Refinement**: a local search around the best outfits found (of all
   templates together): each free slot of each of the best outfits is swapped
   for each of the best items of its category, repeated on the new best
   outfits until they are local optima. It repairs what the two cheap
   heuristics above miss (an item that only shines next to others, a partial
   outfit that looks worse than it ends up).
4. **Selection**: the user's training outfits are excluded and, optionally,
   items are kept from repeating across the k outfits (greedy, with a
   re-search that bans used items when the candidates run out).

`Searcher(scorer, index, SearchParams()).search(user, templates, k)` answers a
request; `SearchParams` holds the search's knobs and their defaults (the CLI's
and the service's). `exact=True` enumerates everything (small catalogues only)
and is the reference for recall in the benchmark and the tests.

The search only needs the `OutfitScorer` protocol (two numpy functions), so
the same code runs on the PyTorch model and on the ONNX export.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from outfitrec.data.outfits import PAD, DataError, Outfits

SCORE_CHUNK = 8192  # outfits scored per call: bounds memory on large beams
MAX_EXACT_COMBINATIONS = 20_000_000


@dataclass(frozen=True)
class SearchParams:
    """How widely the search looks; the defaults are what `outfitrec recommend` and the service use.

    beam_width: partial outfits kept per slot; shortlist: items per slot the
    beam extends with (the best by the one-item proxy); refine_pool: items per
    category tried in each slot swap of the refinement; refine_top: best
    outfits whose slots are swapped in each round (at least k); refine_rounds:
    an upper bound on the rounds (they stop once the best outfits are local
    optima; 0: no refinement).

    The defaults are chosen by the quality they buy, not by the model's own
    score (benchmarks/bench_serving.py, h7_results.md): on a 40-items-per-slot
    catalogue the old defaults (beam 32, shortlist 40) found 0.991 of the model's
    exact top-10, beam 16 / shortlist 20 with the same refinement 0.976 (0.952 on
    held-out users) scoring 57% of the outfits, and no refinement about half of it;
    on the whole default catalogue the oracle's mean true utility of the top-10 did
    not drop (+1.80 against +1.71, 12 users).
    Default requests are answered from the pool of strong outfits (recommend/fast.py).
    """

    beam_width: int = 16
    shortlist: int = 20
    refine_pool: int = 64
    refine_top: int = 10
    refine_rounds: int = 10


class OutfitScorer(Protocol):
    """The two halves of the outfit scorer the search needs (numpy in, numpy out)."""

    def encode_outfits(self, item_emb: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Outfit embeddings z [B, d] of item embeddings [B, S, d] with mask [B, S] (True = real item)."""
        ...

    def score_embeddings(self, users: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Scores [B] of users [B] (int64) for outfit embeddings z [B, d]."""
        ...


@dataclass
class SearchIndex:
    """What the search needs about the catalogue, computed once per checkpoint.

    item_emb: float32 [n_items, d], the item encoder's output for every item (float16 is kept as such:
    ModelConfig.serving_dtype; scorers compute in float32);
    single_z: float32 [n_items, d], the outfit embedding of each one-item
    outfit (user-independent, so the per-user shortlist costs one scoring pass);
    item_category: int64 [n_items]; pools: category id -> item ids that may be
    recommended (default: every catalogue item of that category, less the removed ones);
    removed: bool [n_items], items taken out of the catalogue after training (`without`):
    no search path returns them (the pools leave them out, the outfit pool skips them).
    """

    item_emb: np.ndarray
    single_z: np.ndarray
    item_category: np.ndarray
    pools: dict[int, np.ndarray] = field(default_factory=dict)
    removed: np.ndarray | None = None

    def __post_init__(self) -> None:
        dtype = np.float16 if np.asarray(self.item_emb).dtype == np.float16 else np.float32
        self.item_emb = np.ascontiguousarray(self.item_emb, dtype=dtype)
        self.single_z = np.ascontiguousarray(self.single_z, dtype=np.float32)
        self.item_category = np.asarray(self.item_category, dtype=np.int64)
        n = len(self.item_category)
        if self.item_emb.shape[0] != n or self.single_z.shape[0] != n:
            raise DataError(
                f"search index: {self.item_emb.shape[0]} item embeddings / {self.single_z.shape[0]} one-item outfit "
                f"embeddings for {n} catalogue items"
            )
        self.removed = np.zeros(n, bool) if self.removed is None else np.asarray(self.removed, dtype=bool)
        if len(self.removed) != n:
            raise DataError(f"search index: removal mask of {len(self.removed)} items for {n} catalogue items")
        if not self.pools:
            live = ~self.removed
            self.pools = {
                int(c): np.flatnonzero((self.item_category == c) & live) for c in np.unique(self.item_category)
            }

    def extended(self, item_emb: np.ndarray, single_z: np.ndarray, item_category: np.ndarray) -> SearchIndex:
        """A new index with items appended (their embeddings and one-item outfit embeddings); ids continue."""
        return SearchIndex(
            np.concatenate(
                [self.item_emb, np.asarray(item_emb, self.item_emb.dtype).reshape(-1, self.item_emb.shape[1])]
            ),
            np.concatenate([self.single_z, np.asarray(single_z, np.float32).reshape(-1, self.single_z.shape[1])]),
            np.concatenate([self.item_category, np.asarray(item_category, np.int64)]),
            removed=np.concatenate([self.removed, np.zeros(len(item_category), bool)]),
        )

    def without(self, items: Sequence[int]) -> SearchIndex:
        """A new index (the same arrays) where `items` are removed: never in a pool, never recommended."""
        removed = self.removed.copy()
        removed[np.asarray(list(items), dtype=np.int64)] = True
        return SearchIndex(self.item_emb, self.single_z, self.item_category, removed=removed)

    @classmethod
    def build(
        cls, scorer: OutfitScorer, item_emb: np.ndarray, item_category: np.ndarray, chunk: int = SCORE_CHUNK
    ) -> SearchIndex:
        """Index from item embeddings: encodes every one-item outfit once."""
        item_emb = np.asarray(item_emb, dtype=np.float32)
        parts = [
            scorer.encode_outfits(item_emb[i : i + chunk, None, :], np.ones((len(item_emb[i : i + chunk]), 1), bool))
            for i in range(0, len(item_emb), chunk)
        ]
        single_z = np.concatenate(parts) if parts else np.zeros((0, item_emb.shape[1]), np.float32)
        return cls(item_emb, single_z, item_category)

    def pool(self, category: int) -> np.ndarray:
        if category not in self.pools or len(self.pools[category]) == 0:
            raise DataError(f"search: category {category} has no items in the catalogue")
        return self.pools[category]


@dataclass(frozen=True)
class Recommendation:
    """One recommended outfit: item ids in the template's slot order, its score and template index."""

    items: tuple[int, ...]
    score: float
    template: int


@dataclass
class SearchStats:
    """How much work a search did (for benchmarks and the model-info endpoint)."""

    outfits_scored: int = 0
    scorer_calls: int = 0


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n largest scores, best first (stable for ties)."""
    n = min(n, len(scores))
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))]


def _assign_fixed(template: Sequence[int], fixed: Sequence[int], item_category: np.ndarray) -> list[int] | None:
    """Slot index of each fixed item in the template (by category), or None when they do not fit."""
    free = list(range(len(template)))
    slots = []
    for item in fixed:
        cat = int(item_category[item])
        match = next((s for s in free if template[s] == cat), None)
        if match is None:
            return None
        free.remove(match)
        slots.append(match)
    return slots


def _dedupe_rows(rows: np.ndarray) -> np.ndarray:
    """Drop rows that repeat an item, and rows equal as a set to an earlier row (order in an outfit is irrelevant)."""
    if len(rows) == 0:
        return rows
    srt = np.sort(rows, axis=1)
    real = srt != PAD
    repeated = ((srt[:, 1:] == srt[:, :-1]) & real[:, 1:]).any(axis=1)
    _, first = np.unique(srt, axis=0, return_index=True)
    keep = np.zeros(len(rows), dtype=bool)
    keep[first] = True
    return rows[keep & ~repeated]


def select(
    rows: np.ndarray,
    scores: np.ndarray,
    templates_of_rows: np.ndarray,
    k: int,
    exclude: set[frozenset[int]] | None = None,
    diverse: bool = False,
    fixed: Sequence[int] = (),
    used: set[int] | None = None,
) -> list[Recommendation]:
    """The k best outfits: excluded outfits (as item sets) skipped; with `diverse`, no free item used twice.

    used: items already taken by earlier picks (diverse mode never takes them again).
    """
    exclude = exclude or set()
    fixed_set = {int(f) for f in fixed}
    order = np.lexsort((np.arange(len(scores)), -scores))
    chosen: list[Recommendation] = []
    seen: set[frozenset[int]] = set()
    used = set(used or ())
    for i in order:
        items = tuple(int(x) for x in rows[i] if x != PAD)
        key = frozenset(items)
        if key in exclude or key in seen:
            continue
        free = key - fixed_set
        if diverse and free & used:
            continue
        seen.add(key)
        used |= free
        chosen.append(Recommendation(items, float(scores[i]), int(templates_of_rows[i])))
        if len(chosen) == k:
            break
    return chosen


def _merge(parts: list[tuple[np.ndarray, np.ndarray, int]], width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack candidate lists of several templates (padded to one width)."""
    rows, scores, tmpl = [], [], []
    for r, s, t in parts:
        padded = np.full((len(r), width), PAD, dtype=np.int64)
        padded[:, : r.shape[1]] = r
        rows.append(padded)
        scores.append(s)
        tmpl.append(np.full(len(r), t, dtype=np.int64))
    if not rows:
        return np.zeros((0, width), np.int64), np.zeros(0, np.float32), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(scores), np.concatenate(tmpl)


class Searcher:
    """A user's best outfits from the whole catalogue: a scorer, its index and the search parameters.

    `search` answers one request; `query` gives the steps (shortlists, beam,
    refinement, enumeration) for one user, for tests and benchmarks.
    """

    def __init__(self, scorer: OutfitScorer, index: SearchIndex, params: SearchParams = SearchParams()) -> None:
        self.scorer = scorer
        self.index = index
        self.params = params

    def query(
        self, user: int, fixed: Sequence[int] = (), stats: SearchStats | None = None, params: SearchParams | None = None
    ) -> Query:
        """The search steps for one user (and the items every outfit must contain)."""
        return Query(self, int(user), tuple(int(f) for f in fixed), stats or SearchStats(), params or self.params)

    def score_rows(self, user: int, rows: np.ndarray, stats: SearchStats | None = None) -> np.ndarray:
        """Scores [B] of the user for outfits given as padded item-id rows [B, S] (PAD = -1 for an empty slot)."""
        return self.query(user, stats=stats).score_rows(rows)

    def search(
        self,
        user: int,
        templates: Sequence[Sequence[int]],
        k: int = 10,
        fixed: Sequence[int] = (),
        exclude: set[frozenset[int]] | None = None,
        diverse: bool = False,
        exact: bool = False,
        stats: SearchStats | None = None,
        params: SearchParams | None = None,
    ) -> list[Recommendation]:
        """The user's k best outfits over the given templates (lists of category ids), best first.

        fixed: items every outfit must contain (completing an outfit); templates the
        fixed items do not fit are skipped. exclude: outfits (item sets) never
        returned, e.g. the user's training outfits. diverse: no item (other than
        the fixed ones) appears in two returned outfits. exact: enumerate every
        outfit instead of the beam search (small catalogues only). params: this
        request's SearchParams (default the searcher's). Raises DataError for
        k < 1, no template, or (exact) an enumeration over MAX_EXACT_COMBINATIONS.
        """
        if k < 1:
            raise DataError(f"search: k must be at least 1, got {k}")
        if not templates:
            raise DataError("search: no outfit template to fill")
        q = self.query(user, fixed, stats, params)
        exclude = exclude or set()
        width = max(len(t) for t in templates)
        fixed_set = set(q.fixed)
        banned: set[int] = set()
        chosen: list[Recommendation] = []
        # a diverse search that runs out of candidates searches again without the items already used
        for _ in range(k if diverse and not exact else 1):
            if exact:
                rows, scores, tmpl = _merge([(*q.enumerate_candidates(t), i) for i, t in enumerate(templates)], width)
            else:
                categories = {int(c) for t in templates for c in t}
                keep = max(q.params.shortlist, q.params.refine_pool, max(len(t) for t in templates))
                ranked = q.rank_items(categories, banned, keep)
                parts = [(*q.beam_candidates(t, ranked), i) for i, t in enumerate(templates)]
                rows, scores, tmpl = _merge(parts, width)
                if len(rows):
                    taken = exclude | {frozenset(r.items) for r in chosen}
                    top = max(q.params.refine_top, k - len(chosen))
                    rows, scores, tmpl = q.refine(templates, ranked, rows, scores, tmpl, top, taken)
            if len(rows) == 0:
                break
            taken = exclude | {frozenset(r.items) for r in chosen}
            used = {i for r in chosen for i in r.items} - fixed_set
            chosen.extend(select(rows, scores, tmpl, k - len(chosen), taken, diverse, q.fixed, used))
            if len(chosen) >= k or not diverse:
                break
            new_banned = banned | {i for r in chosen for i in r.items} - fixed_set
            if new_banned == banned:
                break
            banned = new_banned
        chosen.sort(key=lambda r: -r.score)
        return chosen[:k]


@dataclass
class Query:
    """One user's search: the searcher, the user, the fixed items, the work counters and the parameters."""

    searcher: Searcher
    user: int
    fixed: tuple[int, ...]
    stats: SearchStats
    params: SearchParams

    def score_rows(self, rows: np.ndarray) -> np.ndarray:
        """Scores [B] of the user for padded item-id rows [B, S], in chunks of SCORE_CHUNK."""
        scorer, index = self.searcher.scorer, self.searcher.index
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty(len(rows), dtype=np.float32)
        for start in range(0, len(rows), SCORE_CHUNK):
            part = rows[start : start + SCORE_CHUNK]
            mask = part != PAD
            z = scorer.encode_outfits(index.item_emb[np.where(mask, part, 0)], mask)
            out[start : start + len(part)] = scorer.score_embeddings(np.full(len(part), self.user, dtype=np.int64), z)
            self.stats.outfits_scored += len(part)
            self.stats.scorer_calls += 1
        return out

    def proxy_scores(self, pool: np.ndarray) -> np.ndarray:
        """Cheap per-item score for a slot: the item alone, or the item added to the fixed items."""
        if not self.fixed:
            self.stats.outfits_scored += len(pool)
            self.stats.scorer_calls += 1
            users = np.full(len(pool), self.user, dtype=np.int64)
            return self.searcher.scorer.score_embeddings(users, self.searcher.index.single_z[pool])
        rows = np.full((len(pool), len(self.fixed) + 1), PAD, dtype=np.int64)
        rows[:, : len(self.fixed)] = np.asarray(self.fixed, dtype=np.int64)
        rows[:, len(self.fixed)] = pool
        return self.score_rows(rows)

    def rank_items(
        self, categories: Iterable[int], banned: Iterable[int] = (), keep: int | None = None
    ) -> dict[int, np.ndarray]:
        """Per category, its `keep` (default refine_pool) best items by the proxy score, best first.

        Computed once per search and shared by every template and slot of that category.
        """
        keep = self.params.refine_pool if keep is None else keep
        banned_arr = np.fromiter({int(b) for b in banned} | set(self.fixed), dtype=np.int64)
        ranked: dict[int, np.ndarray] = {}
        for cat in sorted({int(c) for c in categories}):
            pool = self.searcher.index.pool(cat)
            if len(banned_arr):
                pool = pool[~np.isin(pool, banned_arr)]
            ranked[cat] = pool[_top(self.proxy_scores(pool), keep)]
        return ranked

    def beam_candidates(self, template: Sequence[int], ranked: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Full outfits of one template found by beam search over its free slots, with their scores.

        ranked: per category, items best first (`rank_items`); each slot's
        shortlist is the first `shortlist` of them. Partial outfits (the other
        slots masked) are scored by the model and the best `beam_width` kept.
        Returns (rows [N, len(template)] of item ids in slot order, scores [N]),
        best first: every full outfit scored at the last slot, not only the beam.
        The fixed items occupy the first matching slots. Empty arrays when the fixed
        items do not fit the template or a category has too few items.
        """
        width = len(template)
        empty = np.zeros((0, width), np.int64), np.zeros(0, np.float32)
        fixed_slots = _assign_fixed(template, self.fixed, self.searcher.index.item_category)
        if fixed_slots is None:
            return empty
        free_slots = [s for s in range(width) if s not in fixed_slots]
        beam = np.full((1, width), PAD, dtype=np.int64)  # slot-ordered rows; the beam starts from the fixed items
        for slot, item in zip(fixed_slots, self.fixed):
            beam[0, slot] = item
        if not free_slots:
            return beam, self.score_rows(beam)
        scores = np.zeros(1, np.float32)
        for step, slot in enumerate(free_slots):
            cat = int(template[slot])
            need = sum(1 for s in free_slots if template[s] == cat)  # a category filling n slots needs n items
            if len(ranked.get(cat, ())) < need:
                return empty
            cand = ranked[cat][: max(self.params.shortlist, need)]
            rows = np.repeat(beam, len(cand), axis=0)
            rows[:, slot] = np.tile(cand, len(beam))
            rows = _dedupe_rows(rows)
            if len(rows) == 0:
                return empty
            scores = self.score_rows(rows)
            last = step == len(free_slots) - 1
            order = _top(scores, len(scores) if last else self.params.beam_width)
            beam, scores = rows[order], scores[order]
        return beam, scores

    def refine(
        self,
        templates: Sequence[Sequence[int]],
        ranked: dict[int, np.ndarray],
        rows: np.ndarray,
        scores: np.ndarray,
        tmpl: np.ndarray,
        top: int | None = None,
        skip: set[frozenset[int]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Local search around the best outfits found: candidates plus every improving one-slot swap.

        The one-item proxy ignores how items go together, so an item that only
        shines next to others can miss a shortlist, and a partial outfit can
        look worse than it ends up. Each round takes the `top` (default
        refine_top) best outfits not yet expanded (outfits in `skip`, e.g. the
        user's history, are passed over as results but still expanded), swaps
        each free slot for each of the `refine_pool` best items of its category
        and scores the swaps; rounds stop when the best outfits are all expanded
        (local optima) or after `refine_rounds`.
        An outfit one swap away from a better one of the same round is not a
        seed: on flat score landscapes the best outfits are near-copies of one
        another, and seeding them all only re-scores the same neighbourhood (on
        a 4-slot template with a repeated category, the tiny test model's exact
        top-10 recall was 0.79 with near-copies as seeds and 0.97 without, for
        about 10% more scored outfits; benchmarks in the stabiliser's report).
        Returns the enlarged (rows, scores, template of each row).
        """
        top = self.params.refine_top if top is None else top
        pool = self.params.refine_pool
        fixed_set = set(self.fixed)
        seen = {tuple(sorted(r)) for r in rows.tolist()}
        expanded: set[tuple[int, ...]] = set()
        found_rows, found_scores, found_tmpl = [rows], [scores], [tmpl]
        for _ in range(self.params.refine_rounds if top > 0 and pool > 0 else 0):
            all_rows, all_scores, all_tmpl = (np.concatenate(x) for x in (found_rows, found_scores, found_tmpl))
            order = np.lexsort((np.arange(len(all_scores)), -all_scores))
            todo, counted = [], 0
            heads: list[frozenset[int]] = []
            for i in order:  # the `top` best (history outfits don't count toward `top`) not yet expanded
                key = tuple(sorted(all_rows[i].tolist()))
                items = frozenset(k for k in key if k != PAD)
                if any(len(items) == len(h) and len(items - h) <= 1 for h in heads):
                    continue  # a one-swap neighbour of a better seed: it would mostly re-score that seed's swaps
                heads.append(items)
                if skip is None or items not in skip:
                    counted += 1
                if key not in expanded:
                    expanded.add(key)
                    todo.append(i)
                if counted >= top:
                    break
            if not todo:
                break  # the best outfits are all local optima: nothing new to try
            swaps, swap_tmpl = [], []
            for i in todo:
                row, t = all_rows[i], int(all_tmpl[i])
                free = [(s, int(c)) for s, c in enumerate(templates[t]) if int(row[s]) not in fixed_set]
                for slot, cat in free:
                    cand = ranked.get(cat, np.zeros(0, np.int64))[:pool]
                    new = np.repeat(row[None], len(cand), axis=0)
                    new[:, slot] = cand
                    swaps.append(new)
                    swap_tmpl.append(np.full(len(cand), t, dtype=np.int64))
            if not swaps:
                break
            new_rows, new_tmpl = np.concatenate(swaps), np.concatenate(swap_tmpl)
            keys = [tuple(sorted(r)) for r in new_rows.tolist()]
            fresh = np.zeros(len(keys), dtype=bool)
            for j, key in enumerate(keys):  # new outfits only (also drops rows repeating an item)
                if key not in seen and len({k for k in key if k != PAD}) == sum(k != PAD for k in key):
                    seen.add(key)
                    fresh[j] = True
            if not fresh.any():
                continue
            found_rows.append(new_rows[fresh])
            found_tmpl.append(new_tmpl[fresh])
            found_scores.append(self.score_rows(new_rows[fresh]))
        return np.concatenate(found_rows), np.concatenate(found_scores), np.concatenate(found_tmpl)

    def enumerate_candidates(
        self, template: Sequence[int], max_combinations: int = MAX_EXACT_COMBINATIONS
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every outfit of the template (with the fixed items) scored: the exact reference. Best first."""
        index = self.searcher.index
        width = len(template)
        fixed_slots = _assign_fixed(template, self.fixed, index.item_category)
        if fixed_slots is None:
            return np.zeros((0, width), np.int64), np.zeros(0, np.float32)
        free_slots = [s for s in range(width) if s not in fixed_slots]
        pools = [index.pool(int(template[s])) for s in free_slots]
        total = int(np.prod([len(p) for p in pools], dtype=np.float64)) if pools else 1
        if total > max_combinations:
            raise DataError(
                f"exact search: {total} outfits for template {list(template)}, more than max_combinations="
                f"{max_combinations}; use the beam search"
            )
        rows = np.full((total, width), PAD, dtype=np.int64)
        for slot, item in zip(fixed_slots, self.fixed):
            rows[:, slot] = item
        if pools:
            grids = np.meshgrid(*pools, indexing="ij")
            for slot, grid in zip(free_slots, grids):
                rows[:, slot] = grid.reshape(-1)
        rows = _dedupe_rows(rows)
        scores = self.score_rows(rows)
        order = _top(scores, len(scores))
        return rows[order], scores[order]


def templates_from_dataset(
    category_names: Sequence[str],
    meta: dict,
    train: Outfits | None = None,
    min_share: float = 0.05,
    max_templates: int = 4,
) -> list[list[int]]:
    """Outfit templates as lists of category ids.

    From `meta['templates']` (lists of category names) when present; otherwise
    the category combinations of at least `min_share` of the training outfits
    (the most frequent `max_templates`, and always at least the most frequent one).
    """
    names = {name: i for i, name in enumerate(category_names)}
    if meta.get("templates"):
        out = []
        for t, template in enumerate(meta["templates"]):
            if not isinstance(template, list) or not template:
                raise DataError(f"dataset meta: templates[{t}] must be a non-empty list of category names")
            for name in template:
                if name not in names:
                    raise DataError(
                        f"dataset meta: templates[{t}] names category {name!r}, not one of {list(category_names)}"
                    )
            out.append([names[name] for name in template])
        return out
    if train is None or len(train) == 0:
        raise DataError("dataset: no meta['templates'] and no training outfits to derive templates from")
    combos = Counter(tuple(sorted(int(c) for c in row[m])) for row, m in zip(train.categories, train.mask))
    ranked = combos.most_common()
    keep = [list(c) for c, n in ranked if n >= min_share * len(train)][:max_templates]
    return keep or [list(ranked[0][0])]
