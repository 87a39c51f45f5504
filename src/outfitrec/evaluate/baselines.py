"""Baselines without a training loop: popularity and collaborative filtering on the user x item matrix.

Popularity: an outfit scores the mean number of training outfits its items
appear in. If a model barely beats it, the data carries little personal taste;
the Fashion-MNIST generator is checked against it.

Collaborative baselines (EASE, item-kNN, user-kNN, PureSVD) are fitted on the
user x item matrix of the training outfits, X[u, i] = 1 when item i is in at
least one of u's training outfits (`binary=True`, the default; `binary=False`
counts the outfits). Each gives a score to every (user, item) pair; an item
never seen in training scores 0 for every user. An outfit's score aggregates
the scores of its real (unmasked) items: `aggregate="mean"` (default), "sum"
or "max". Padded slots never change a score.

- EASE (Steck 2019): B = I - P / diag(P), P = (X^T X + lam I)^-1, diag(B) = 0;
  scores X B. With fewer users than items the same B is applied through the
  Woodbury identity on the users' side, exactly: X P = (X X^T + lam I)^-1 X
  and diag(P)_j = (1 - x_j^T (X X^T + lam I)^-1 x_j) / lam, so no items x items
  matrix is ever formed (DiFashion: 517 users, 69,651 items seen in training).
- item-kNN: cosine similarity between item columns of X (diagonal removed),
  each item keeping its k most similar items (k=0: all); scores X S.
- user-kNN: cosine similarity between user rows of X (diagonal removed), each
  user keeping its k most similar users; scores W X.
- PureSVD (Cremonesi 2010): the rank-k truncated SVD X ~ U s V^T
  (scipy.sparse.linalg.svds, ARPACK, fixed start vector); scores X V V^T.

Every fitted baseline is a `ScoreFn` (`evaluate/protocol.py`):
``fit_baseline("ease", dataset)(users, items, mask) -> np.ndarray [n]``, so it
can be evaluated with `evaluate_split` or serve as a teacher's score function.
`BASELINES` is the registry: name -> builder and default hyper-parameters
(tuned on the DiFashion validation split; see the comments there).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from outfitrec.data.outfits import DataError, OutfitDataset, Outfits

AGGREGATES = ("mean", "sum", "max")


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


# --------------------------------------------------------------------------- the user x item matrix


@dataclass
class Interactions:
    """The training user x item matrix restricted to the items seen in training.

    X: CSR float64 [n_users, n_seen]; seen: sorted global item ids of its columns;
    column_of: global item id -> column, -1 for items never seen in training.
    """

    X: sp.csr_matrix
    seen: np.ndarray
    column_of: np.ndarray


def interactions(dataset: OutfitDataset, binary: bool = True, history: float = 0.0) -> Interactions:
    """The user x item matrix the collaborative baselines are fitted on.

    X[u, i] = 1 if item i is in one of u's training outfits (binary) or the number of such outfits (counts).
    history > 0: the dataset's extra user-item interactions (`OutfitDataset.history`, e.g. DiFashion's
    per-user item history) enter too, with this weight (an entry already set by the outfits keeps the
    larger value). Columns: only the items that occur in X (seen items); others score 0.
    """
    train = dataset.split("train")
    rows = np.broadcast_to(train.users[:, None], train.items.shape)[train.mask]
    items = train.items[train.mask]
    values = np.ones(len(items))
    if history > 0 and dataset.history is not None and len(dataset.history):
        rows = np.concatenate([rows, dataset.history[:, 0]])
        items = np.concatenate([items, dataset.history[:, 1]])
        values = np.concatenate([values, np.full(len(dataset.history), -float(history))])  # < 0: history
    seen = np.unique(items)
    column_of = np.full(dataset.catalogue.n_items, -1, dtype=np.int64)
    column_of[seen] = np.arange(len(seen))
    from_outfits = values > 0
    X = sp.csr_matrix(
        (values[from_outfits], (rows[from_outfits], column_of[items[from_outfits]])),
        shape=(dataset.n_users, len(seen)),
        dtype=np.float64,
    )
    X.sum_duplicates()
    if binary:
        X.data[:] = 1.0
    if not from_outfits.all():
        H = sp.csr_matrix(
            (-values[~from_outfits], (rows[~from_outfits], column_of[items[~from_outfits]])),
            shape=X.shape,
            dtype=np.float64,
        )
        H.sum_duplicates()
        H.data[:] = float(history)
        X = X.maximum(H).tocsr()
    return Interactions(X, seen, column_of)


# --------------------------------------------------------------------------- fitted scorers


@dataclass
class Baseline:
    """A fitted baseline: per-(user, item) scores and their aggregation over an outfit; a `ScoreFn`.

    The user x item scores are either a dense matrix `dense` [n_users, n_seen]
    (users x seen items), or a factorisation `user_factors @ item_factors.T`, or
    a user-independent vector `item_vector` [n_seen]. Items never seen in
    training (column -1) score 0.
    """

    name: str
    params: dict
    column_of: np.ndarray
    aggregate: str = "mean"
    dense: np.ndarray | None = None
    user_factors: np.ndarray | None = None
    item_factors: np.ndarray | None = None
    item_vector: np.ndarray | None = None
    fit_seconds: float = 0.0
    info: dict = field(default_factory=dict)

    def item_scores(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Score of each (user, item) pair, float64 [m]; 0 for items never seen in training."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if len(items) and (items.min() < 0 or items.max() >= len(self.column_of)):
            raise DataError(f"{self.name}: an item id is outside 0..{len(self.column_of) - 1}")
        cols = self.column_of[items]
        known = cols >= 0
        out = np.zeros(len(items), dtype=np.float64)
        u, c = users[known], cols[known]
        if self.item_vector is not None:
            out[known] = self.item_vector[c]
        elif self.dense is not None:
            out[known] = self.dense[u, c]
        else:
            out[known] = np.einsum("ij,ij->i", self.user_factors[u], self.item_factors[c])
        return out

    def __call__(self, users: np.ndarray, items: np.ndarray, mask: np.ndarray) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        mask = np.asarray(mask, dtype=bool)
        per_slot = np.zeros(items.shape, dtype=np.float64)
        per_slot[mask] = self.item_scores(np.broadcast_to(users[:, None], items.shape)[mask], items[mask])
        return aggregate_outfits(per_slot, mask, self.aggregate)


def aggregate_outfits(per_slot: np.ndarray, mask: np.ndarray, how: str = "mean") -> np.ndarray:
    """An outfit's score from its items' scores [n, S] over the real slots: mean, sum or max (0 if empty)."""
    if how == "sum":
        return np.where(mask, per_slot, 0.0).sum(axis=1)
    if how == "mean":
        return np.where(mask, per_slot, 0.0).sum(axis=1) / np.maximum(mask.sum(axis=1), 1)
    if how == "max":
        out = np.where(mask, per_slot, -np.inf).max(axis=1, initial=-np.inf)
        return np.where(np.isfinite(out), out, 0.0)
    raise DataError(f"unknown outfit aggregate {how!r} (expected one of {AGGREGATES})")


# --------------------------------------------------------------------------- builders


def ease_scores(X: sp.spmatrix, lam: float) -> np.ndarray:
    """EASE scores X B, dense [n_users, n_items], B = I - P/diag(P), P = (X^T X + lam I)^-1 (diag(B) = 0).

    Inverts the smaller of the items x items and the users x users Gram matrix
    (the latter through the Woodbury identity); both give the same B exactly.
    """
    if lam <= 0:
        raise DataError(f"ease: lam must be > 0, got {lam}")
    X = sp.csr_matrix(X, dtype=np.float64)
    n_users, n_items = X.shape
    if n_items <= n_users:
        G = (X.T @ X).toarray()
        G[np.diag_indices(n_items)] += lam
        P = np.linalg.inv(G)
        B = -P / np.diag(P)[None, :]
        B[np.diag_indices(n_items)] = 0.0
        return np.asarray(X @ B)
    K = (X @ X.T).toarray()
    K[np.diag_indices(n_users)] += lam
    XP = np.linalg.solve(K, X.toarray())  # X P = (X X^T + lam I)^-1 X   [users, items]
    diag_p = (1.0 - np.asarray(X.multiply(XP).sum(axis=0)).ravel()) / lam  # x_j^T K^-1 x_j = sum_u X[u,j] XP[u,j]
    return X.toarray() - XP / diag_p[None, :]


def _top_k_rows(S: np.ndarray, k: int) -> np.ndarray:
    """Keep each row's k largest entries of a dense matrix, zero the rest (k <= 0 or >= width: keep all)."""
    if k <= 0 or k >= S.shape[1]:
        return S
    keep = np.argpartition(-S, k - 1, axis=1)[:, :k]
    out = np.zeros_like(S)
    rows = np.arange(S.shape[0])[:, None]
    out[rows, keep] = S[rows, keep]
    return out


def _top_k_sparse_rows(S: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep each row's k largest stored entries of a CSR matrix (ties broken by column order)."""
    S = sp.csr_matrix(S)
    if k <= 0:
        return S
    row = np.repeat(np.arange(S.shape[0]), np.diff(S.indptr))
    order = np.lexsort((S.indices, -S.data, row))
    rank = np.arange(len(order)) - S.indptr[row[order]]
    keep = order[rank < k]
    return sp.csr_matrix((S.data[keep], (row[keep], S.indices[keep])), shape=S.shape)


def _row_normalised(X: sp.spmatrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    return sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ X)


def itemknn_scores(X: sp.spmatrix, k: int = 0) -> np.ndarray:
    """Item-kNN scores X S, dense [n_users, n_items]: S cosine item-item, diagonal 0, top-k per item (0: all)."""
    Xc = _row_normalised(sp.csr_matrix(X, dtype=np.float64).T)  # items x users, unit rows
    X = sp.csr_matrix(X, dtype=np.float64)
    if k <= 0:  # all neighbours: X (Xn^T Xn - diag) = (X Xn^T) Xn - X diag(S), never forming items x items
        diag_s = np.asarray(Xc.multiply(Xc).sum(axis=1)).ravel()
        return np.asarray((X @ Xc) @ Xc.T.toarray()) - X.multiply(diag_s[None, :]).toarray()
    S = sp.csr_matrix(Xc @ Xc.T)
    S.setdiag(0.0)
    S.eliminate_zeros()
    S = _top_k_sparse_rows(S, k)  # row i: item i's neighbours; score(u, j) = sum_i X[u, i] S[j, i]
    return np.asarray((X @ S.T).toarray())


def userknn_scores(X: sp.spmatrix, k: int = 50) -> np.ndarray:
    """User-kNN scores W X, dense [n_users, n_items]: W cosine user-user, diagonal 0, top-k per user (0: all)."""
    X = sp.csr_matrix(X, dtype=np.float64)
    Xn = _row_normalised(X)
    W = (Xn @ Xn.T).toarray()
    np.fill_diagonal(W, 0.0)
    W = _top_k_rows(W, k)
    return np.asarray(X.T @ W.T).T


def puresvd_factors(X: sp.spmatrix, k: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """PureSVD: (user factors X V [n_users, k], item factors V [n_items, k]) of the rank-k truncated SVD."""
    X = sp.csr_matrix(X, dtype=np.float64)
    k = int(k)
    if k < 1:
        raise DataError(f"puresvd: k must be at least 1, got {k}")
    k = min(k, min(X.shape) - 1)  # a tiny dataset: the largest rank ARPACK can give
    if k < 1:
        raise DataError(f"puresvd: the user x item matrix {X.shape} is too small for a truncated SVD")
    v0 = np.ones(min(X.shape)) / np.sqrt(min(X.shape))  # fixed start vector: deterministic
    _, _, vt = svds(X, k=k, v0=v0)
    V = np.ascontiguousarray(vt.T)
    return np.asarray(X @ V), V


def _fit_popularity(data: Interactions, **_) -> dict:
    return {"item_vector": np.asarray(data.X.sum(axis=0)).ravel()}


def _fit_ease(data: Interactions, lam: float = 100.0, **_) -> dict:
    return {"dense": ease_scores(data.X, float(lam)).astype(np.float32)}


def _fit_itemknn(data: Interactions, k: int = 0, **_) -> dict:
    return {"dense": itemknn_scores(data.X, int(k)).astype(np.float32)}


def _fit_userknn(data: Interactions, k: int = 50, **_) -> dict:
    return {"dense": userknn_scores(data.X, int(k)).astype(np.float32)}


def _fit_puresvd(data: Interactions, k: int = 32, **_) -> dict:
    users, items = puresvd_factors(data.X, int(k))
    return {"user_factors": users, "item_factors": items, "info": {"rank": items.shape[1]}}


@dataclass(frozen=True)
class BaselineSpec:
    """A registry entry: builder(Interactions, **params) -> Baseline fields, and default hyper-parameters."""

    builder: Callable[..., dict]
    defaults: dict
    doc: str


# Defaults tuned on the DiFashion validation split only (small grids, `outfitrec baseline NAME --set ...`).
# With the release's user history in X (history=1.0, the default): EASE lam 30: 0.7027, 50: 0.7025,
# 100: 0.7012, 300: 0.6976, 1000: 0.6870; PureSVD k 16: 0.6938, 32: 0.6990, 48: 0.6943, 64: 0.6915,
# 128: 0.6796; item-kNN (k=0) 0.6958; user-kNN k 50: 0.6439, 75: 0.6428, 150: 0.6329. Without history
# (history=0, the training outfits alone) the figures below;
# each comment gives the measured validation AUC (per-user, the project's candidates) of the chosen setting
# and of the grid around it. binary vs counts: binary as good or better everywhere (EASE 0.6677 vs 0.6655,
# PureSVD 0.6486 vs 0.6233, item-kNN 0.6590 vs 0.6596, user-kNN 0.6130 vs 0.6133). Aggregate: every DiFashion
# outfit has 4 items, so mean and sum rank alike; max is worse (EASE 0.6477, item-kNN 0.6547, popularity 0.5218).
HISTORY = 1.0  # weight of the dataset's extra interactions (OutfitDataset.history) in X; 0 = outfits only
BASELINES: dict[str, BaselineSpec] = {
    # 0.5320 (counts: outfits an item appears in, the historic definition; binary 0.5324)
    "popularity": BaselineSpec(
        _fit_popularity, {"binary": False, "aggregate": "mean", "history": 0.0}, "training outfit count"
    ),
    # 0.6677; lam 10: 0.6654, 30: 0.6665, 50: 0.6668, 200: 0.6668, 300: 0.6666, 1000: 0.6640, 3000: 0.6631
    "ease": BaselineSpec(
        _fit_ease, {"lam": 100.0, "binary": True, "aggregate": "mean", "history": HISTORY}, "EASE closed form"
    ),
    # 0.6590 with all neighbours; k 10: 0.5773, 50: 0.5833, 200: 0.6123 (items co-occur rarely: pruning hurts)
    "itemknn": BaselineSpec(
        _fit_itemknn, {"k": 0, "binary": True, "aggregate": "mean", "history": HISTORY}, "item-kNN, cosine"
    ),
    # 0.6169; k 10: 0.5804, 20: 0.5989, 50: 0.6130, 100: 0.6167, 150: 0.6148, 200: 0.6135, all: 0.6124
    "userknn": BaselineSpec(
        _fit_userknn, {"k": 75, "binary": True, "aggregate": "mean", "history": HISTORY}, "user-kNN, cosine"
    ),
    # k=32 with history (0.6990, above); without history 0.6532 at k 64; k 8: 0.6296, 16: 0.6404, 32: 0.6486,
    # 48: 0.6474, 96: 0.6432, 128: 0.6409, 256: 0.6323
    "puresvd": BaselineSpec(
        _fit_puresvd, {"k": 32, "binary": True, "aggregate": "mean", "history": HISTORY}, "PureSVD, rank k"
    ),
}
COLLABORATIVE = ("ease", "itemknn", "userknn", "puresvd")


def baseline_params(name: str, **params) -> dict:
    """The registry defaults of `name` updated with `params` (unknown names are a DataError)."""
    if name not in BASELINES:
        raise DataError(f"unknown baseline {name!r} (expected one of {sorted(BASELINES)})")
    spec = BASELINES[name]
    unknown = sorted(set(params) - set(spec.defaults))
    if unknown:
        raise DataError(f"baseline {name}: unknown parameter(s) {unknown} (has {sorted(spec.defaults)})")
    out = dict(spec.defaults)
    for key, value in params.items():
        default = spec.defaults[key]
        out[key] = _coerce(value, default, f"baseline {name}: {key}")
    if out["aggregate"] not in AGGREGATES:
        raise DataError(f"baseline {name}: aggregate must be one of {AGGREGATES}, got {out['aggregate']!r}")
    return out


def _coerce(value, default, where: str):
    """A parameter value (possibly a string from the command line) in the type of its default."""
    if not isinstance(value, str):
        return value
    try:
        if isinstance(default, bool):
            if value.lower() in ("1", "true", "yes"):
                return True
            if value.lower() in ("0", "false", "no"):
                return False
            raise ValueError(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        raise DataError(f"{where}: cannot read {value!r} as {type(default).__name__}") from None
    return value


def fit_baseline(name: str, dataset: OutfitDataset, **params) -> Baseline:
    """Fit the baseline `name` (registry defaults updated with `params`) on the dataset's training outfits.

    The result is a `ScoreFn`: ``fit_baseline("ease", ds)(users [n], items [n,S], mask [n,S]) -> [n]``.
    """
    full = baseline_params(name, **params)
    start = time.perf_counter()
    data = interactions(dataset, binary=bool(full["binary"]), history=float(full["history"]))
    model_params = {k: v for k, v in full.items() if k not in ("binary", "aggregate", "history")}
    fitted = BASELINES[name].builder(data, **model_params)
    seconds = time.perf_counter() - start
    info = {"n_seen_items": len(data.seen), "nnz": int(data.X.nnz), **fitted.pop("info", {})}
    return Baseline(name, full, data.column_of, full["aggregate"], fit_seconds=seconds, info=info, **fitted)
