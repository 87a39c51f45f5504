"""Fast recommendation: per-user state collapsed to one vector, outfit features cached, a pool of strong outfits.

Three observations make a request mostly dot products (issue 14, item 2):

- **Collapsed users.** The LPAE score is `sum_k cos(W z, a_k) = <W z / |W z|, sum_k a_k / |a_k|>`,
  so a user's K anchors serve as one vector; the history term (`models/history.py`)
  `gain * <zc, h_u>` is one more dot product with `gain * h_u` precomputed; the dot
  scorer is `<e_u, z>`. Every supported model thus scores as `<phi(z), U[u]>` with a
  user-independent outfit feature `phi(z)` and one user matrix `U` [n_users, m]
  (`CollapsedScorer`; the collapse is checked against `model.score_embeddings`
  at load time, and a model whose score has another term is refused, so the engine
  falls back to the plain scorer).
- **Outfit features do not depend on the user.** `FeatureCache` keeps `phi(z)` of
  the outfits the searches scored, keyed by the sorted item tuple (the Set
  Transformer is permutation invariant), so only new outfits pay the transformer.
  `FastSearcher` is the `Searcher` whose queries read and fill it.
- **A pool of strong outfits.** `OutfitPool.build` runs the live search for seed
  users (the training users, or a sample of them) and keeps the union of their
  top outfits with their features; a request is then one matrix-vector product
  over the pool, the user's training outfits excluded. It is built once per
  checkpoint and cached beside it; the live search stays the fallback (outfit
  completion, a request the pool cannot fill).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from outfitrec.data.outfits import PAD, DataError, save_npz_atomic
from outfitrec.models.search import (
    Query,
    Recommendation,
    Searcher,
    SearchIndex,
    SearchParams,
    SearchStats,
    select,
)

COLLAPSE_TOLERANCE = 1e-4  # max |collapsed - model| score difference (relative to the score scale) accepted
FLOAT16_TOLERANCE = 4e-3  # the same with float16 user vectors (ModelConfig.serving_dtype): rounding, 2^-11 each
CACHE_CAPACITY = 500_000  # outfit features kept by FeatureCache (about 300 B each for m = 64)
POOL_VERSION = 1


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b through torch (its thread count, one when serving): numpy's OpenBLAS starts its own threads, and
    on a busy 2-core machine a [7000, 64] @ [64] product took 8.4 ms through them against 0.4 ms here."""
    import torch

    a = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    b = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32))
    return (torch.mv(a, b) if b.ndim == 1 else a @ b).numpy()


def _normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows divided by their norm (as torch.nn.functional.normalize: norm clamped at eps)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


class CollapsedScorer:
    """`OutfitScorer` of an `OutfitModel` whose scorer collapses to `<phi(z), U[u]>` (see the module docstring).

    user_matrix: [n_users, m] (m = user_dim, default the outfit embedding's width, + c with the
    history term), stored in the model's `serving_dtype` (float32, or float16:
    half the bytes per user; products are computed in float32). `features(z)`
    is phi; `score_embeddings` gives the model's scores (checked at
    construction: DataError when the model's score has a term this class does
    not know, so callers can fall back to the model).
    """

    def __init__(self, model, check: bool = True) -> None:
        import torch

        from outfitrec.models.scorer import AnchorScorer, DotScorer

        self.torch = torch
        self.model = model.eval()
        with torch.inference_mode():
            scorer = model.scorer
            if isinstance(scorer, AnchorScorer) and scorer.pool != "sum":
                raise DataError(f"collapse: anchors pooled by {scorer.pool!r} do not collapse to one vector")
            if isinstance(scorer, AnchorScorer):
                self.kind = "anchors"
                self.w = scorer.project.weight.detach().float().numpy().T.copy()  # [d, d]: phi_a = norm(z W + b)
                self.b = scorer.project.bias.detach().float().numpy().copy()
                users = torch.nn.functional.normalize(scorer.anchors.detach().float(), dim=-1).sum(dim=1)
            elif isinstance(scorer, DotScorer):
                self.kind = "dot"
                self.b = None  # phi_d = z W (W: the scorer's projection to user_dim, when it has one)
                self.w = None if scorer.project is None else scorer.project.weight.detach().float().numpy().T.copy()
                users = scorer.users.weight.detach().float()
            else:
                raise DataError(f"collapse: unknown user scorer {type(scorer).__name__}")
            parts = [users.numpy()]
            self.history_dim = 0
            hs = getattr(model, "history_scorer", None)
            if hs is not None:
                self.history_dim = int(hs.dim)
                rows = []
                for start in range(0, model.n_users, 256):
                    u = torch.arange(start, min(start + 256, model.n_users))
                    rows.append((hs.gain * hs.user_vectors(u, model.item_encoder.id_vectors)).float().numpy())
                parts.append(np.concatenate(rows) if rows else np.zeros((0, self.history_dim), np.float32))
        self.user_matrix = np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)
        if check:
            self.check()  # the collapse itself, in float32
        if getattr(model.config, "serving_dtype", "float32") == "float16":
            self.user_matrix = self.user_matrix.astype(np.float16)

    # ------------------------------------------------------------- the model's halves (torch)
    def encode_items(self, item_ids: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            out = self.model.encode_items(self.torch.as_tensor(np.asarray(item_ids), dtype=self.torch.long))
        return out.float().numpy()

    def encode_outfits(self, item_emb: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            z = self.model.encode_outfits(
                self.torch.from_numpy(np.ascontiguousarray(item_emb, np.float32)),
                self.torch.from_numpy(np.ascontiguousarray(mask, bool)),
            )
        return z.float().numpy()

    # ------------------------------------------------------------- the collapsed user side (numpy)
    def features(self, z: np.ndarray) -> np.ndarray:
        """phi(z) [B, m]: what a user vector is dotted with."""
        z = np.asarray(z, dtype=np.float32)
        if self.kind == "anchors":
            head = _normalize(_dot(z, self.w) + self.b)
        else:
            head = z if self.w is None else _dot(z, self.w)
        if self.history_dim:
            head = np.concatenate([head, z[:, -self.history_dim :]], axis=1)
        return np.ascontiguousarray(head, dtype=np.float32)

    def score_embeddings(self, users: np.ndarray, z: np.ndarray) -> np.ndarray:
        f = self.features(z)
        return np.einsum("bm,bm->b", f, self.user_matrix[np.asarray(users, dtype=np.int64)].astype(np.float32))

    def user_vector(self, user: int) -> np.ndarray:
        return self.user_matrix[int(user)]

    def add_users(self, vectors: np.ndarray) -> int:
        """Append user rows [n, m] (new users folded in: recommend/users.py); returns the first new index.

        The matrix is replaced, not grown in place, so a request reading the old one is unaffected.
        """
        vectors = np.asarray(vectors, dtype=self.user_matrix.dtype).reshape(-1, self.user_matrix.shape[1])
        first = len(self.user_matrix)
        self.user_matrix = np.ascontiguousarray(np.concatenate([self.user_matrix, vectors]))
        return first

    @property
    def bytes_per_user(self) -> int:
        return int(self.user_matrix.shape[1] * self.user_matrix.dtype.itemsize)

    def check(self, n: int = 64, seed: int = 0) -> float:
        """Max |collapsed - model| over random users and outfit embeddings; DataError when over tolerance."""
        torch = self.torch
        n_users = self.user_matrix.shape[0]
        if n_users == 0:
            return 0.0
        rng = np.random.default_rng(seed)
        d = self.model.outfit_dim
        z = rng.normal(size=(n, d)).astype(np.float32)
        users = rng.integers(0, n_users, n)
        with torch.inference_mode():
            ref = self.model.score_embeddings(torch.from_numpy(users), torch.from_numpy(z)).float().numpy()
        err = float(np.abs(self.score_embeddings(users, z) - ref).max())
        tolerance = COLLAPSE_TOLERANCE if self.user_matrix.dtype == np.float32 else FLOAT16_TOLERANCE
        if err > tolerance * max(1.0, float(np.abs(ref).max())):
            raise DataError(f"collapse: collapsed scores differ from the model's by {err:.2e}")
        return err


class FeatureCache:
    """phi(z) of outfits keyed by their sorted item ids: a fixed-size table with FIFO eviction, thread-safe.

    `features(rows)` returns phi for padded item-id rows [B, S] (PAD = -1),
    computing only the outfits not in the table (one transformer batch).
    """

    def __init__(self, scorer: CollapsedScorer, item_emb: np.ndarray, capacity: int = CACHE_CAPACITY) -> None:
        self.scorer = scorer
        self.item_emb = item_emb
        self.capacity = int(capacity)
        self.table = np.zeros((self.capacity, scorer.user_matrix.shape[1]), np.float32)
        self.slot: dict[bytes, int] = {}
        self.keys: list[bytes | None] = [None] * self.capacity
        self.next = 0
        self.hits = 0
        self.misses = 0
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.slot)

    def clear(self) -> None:
        """Forget every cached outfit (a cold cache, as in a fresh process; benchmarks time searches from it)."""
        with self.lock:
            self.slot.clear()
            self.keys = [None] * self.capacity
            self.next = self.hits = self.misses = 0

    def compute(self, rows: np.ndarray) -> np.ndarray:
        """phi of the rows through the model (no cache)."""
        mask = rows != PAD
        z = self.scorer.encode_outfits(self.item_emb[np.where(mask, rows, 0)], mask)
        return self.scorer.features(z)

    def features(self, rows: np.ndarray) -> tuple[np.ndarray, int]:
        """(phi [B, m] of the rows, how many were computed)."""
        rows = np.asarray(rows, dtype=np.int64)
        srt = np.sort(rows, axis=1)
        raw = srt.tobytes()
        step = srt.shape[1] * 8
        keys = [raw[i : i + step] for i in range(0, len(raw), step)]
        with self.lock:
            idx = [self.slot.get(k, -1) for k in keys]
        idx_arr = np.fromiter(idx, dtype=np.int64, count=len(idx))
        out = np.empty((len(rows), self.table.shape[1]), np.float32)
        hit = idx_arr >= 0
        with self.lock:
            out[hit] = self.table[idx_arr[hit]]
        miss = np.flatnonzero(~hit)
        if len(miss):
            new = self.compute(rows[miss])
            out[miss] = new
            with self.lock:
                for j, f in zip(miss.tolist(), new):
                    key = keys[j]
                    if key in self.slot:
                        continue
                    s = self.next
                    old = self.keys[s]
                    if old is not None:
                        self.slot.pop(old, None)
                    self.keys[s] = key
                    self.slot[key] = s
                    self.table[s] = f
                    self.next = (s + 1) % self.capacity
        self.hits += int(hit.sum())
        self.misses += len(miss)
        return out, len(miss)


@dataclass
class CachedQuery(Query):
    """A `Query` scoring through the collapsed user vector and the shared feature cache."""

    def score_rows(self, rows: np.ndarray) -> np.ndarray:
        searcher: FastSearcher = self.searcher  # type: ignore[assignment]
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return np.zeros(0, np.float32)
        f, _ = searcher.cache.features(rows)
        self.stats.outfits_scored += len(rows)
        self.stats.scorer_calls += 1
        return _dot(f, searcher.scorer.user_vector(self.user))

    def proxy_scores(self, pool: np.ndarray) -> np.ndarray:
        if self.fixed:
            return super().proxy_scores(pool)
        searcher: FastSearcher = self.searcher  # type: ignore[assignment]
        self.stats.outfits_scored += len(pool)
        self.stats.scorer_calls += 1
        return _dot(searcher.single_features[pool], searcher.scorer.user_vector(self.user))


class FastSearcher(Searcher):
    """The `Searcher` over a `CollapsedScorer`: a request's rows are dot products, new outfits fill a shared cache."""

    def __init__(
        self,
        scorer: CollapsedScorer,
        index: SearchIndex,
        params: SearchParams = SearchParams(),
        cache: FeatureCache | None = None,
    ) -> None:
        super().__init__(scorer, index, params)
        self.cache = cache if cache is not None else FeatureCache(scorer, index.item_emb)
        self.single_features = scorer.features(index.single_z)

    def query(
        self, user: int, fixed: Sequence[int] = (), stats: SearchStats | None = None, params: SearchParams | None = None
    ) -> Query:
        return CachedQuery(self, int(user), tuple(int(f) for f in fixed), stats or SearchStats(), params or self.params)


@dataclass
class OutfitPool:
    """Strong outfits of the catalogue with their features: rows [P, S] (PAD-padded), template [P], features [P, m]."""

    rows: np.ndarray
    template: np.ndarray
    features: np.ndarray
    seeds: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def build(
        cls,
        searcher: FastSearcher,
        templates: Sequence[Sequence[int]],
        users: Sequence[int],
        per_user: int = 50,
        params: SearchParams | None = None,
        progress: bool = False,
    ) -> OutfitPool:
        """The union of the live search's top `per_user` outfits (nothing excluded) of each seed user."""
        from tqdm import tqdm

        width = max(len(t) for t in templates)
        seen: dict[bytes, int] = {}
        rows, tmpl = [], []
        for user in tqdm(list(users), desc="outfit pool", unit="user", disable=None if progress else True):
            for r in searcher.search(int(user), templates, per_user, params=params):
                row = np.full(width, PAD, np.int64)
                row[: len(r.items)] = r.items
                key = np.sort(row).tobytes()
                if key not in seen:
                    seen[key] = len(rows)
                    rows.append(row)
                    tmpl.append(r.template)
        rows_arr = np.array(rows, dtype=np.int64).reshape(-1, width)
        feats = searcher.cache.features(rows_arr)[0] if len(rows_arr) else np.zeros((0, 1), np.float32)
        return cls(rows_arr, np.array(tmpl, dtype=np.int64), feats, len(users))

    def save(self, path: Path, key: str) -> None:
        save_npz_atomic(
            path,
            {
                "rows": self.rows,
                "template": self.template,
                "features": self.features,
                "seeds": np.array(self.seeds),
                "key": np.array(key),
                "version": np.array(POOL_VERSION),
            },
        )

    @classmethod
    def load(cls, path: Path, key: str) -> OutfitPool | None:
        """The pool saved under `key`, or None (missing, damaged, other key)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["version"]) != POOL_VERSION or str(z["key"]) != key:
                    return None
                return cls(z["rows"], z["template"], z["features"], int(z["seeds"]))
        except (OSError, ValueError, KeyError):
            return None

    def top(
        self,
        user_vector: np.ndarray,
        k: int,
        exclude: set[frozenset[int]] | None = None,
        templates: Sequence[int] | None = None,
        diverse: bool = False,
        removed: np.ndarray | None = None,
    ) -> list[Recommendation] | None:
        """The k best pool outfits for the user vector (template ids index the full template list), or None.

        templates: allowed template indices (default all); removed: bool [n_items], items no outfit may hold
        (`SearchIndex.removed`). None when the pool cannot fill k outfits under the exclusions (the caller
        falls back to the live search).
        """
        scores = _dot(self.features, user_vector)
        cand = np.arange(len(scores))
        if removed is not None and removed.any():
            rows = self.rows
            cand = cand[~(removed[np.where(rows != PAD, rows, 0)] & (rows != PAD)).any(axis=1)]
        if templates is not None:
            cand = cand[np.isin(self.template, np.asarray(list(templates), dtype=np.int64))]
        n = min(len(cand), 4 * k + len(exclude or ()) + 8)
        while True:
            sub = scores[cand]
            part = np.argpartition(-sub, n - 1)[:n] if n < len(sub) else np.arange(len(sub))
            pick = cand[part]
            chosen = select(self.rows[pick], scores[pick], self.template[pick], k, exclude, diverse)
            if len(chosen) >= k:
                return chosen
            if n >= len(cand):
                return None
            n = min(len(cand), 4 * n)


def pool_key(digest: str, templates: Sequence[Sequence[int]], per_user: int, params: SearchParams, n_seeds: int) -> str:
    """The pool's cache key: checkpoint hash + everything the pool's content depends on."""
    return f"{digest}|{[list(map(int, t)) for t in templates]}|{per_user}|{params}|{n_seeds}"
