"""The recommender: a trained model plus its prepared dataset, ready to answer requests.

`Recommender` loads a run directory (``config.yaml`` names the prepared
dataset, ``model/`` holds the best checkpoint) or a checkpoint plus a dataset,
computes the search index (item embeddings and one-item outfit embeddings)
once per checkpoint, caches it on disk beside the checkpoint keyed by the
checkpoint's hash, and answers recommend / complete / score / history. A
semaphore admits at most `max_concurrent` (4) searches at a time, so one engine
can be shared by the threads of a web server (scoring given outfits is cheap
and never queues behind the searches).
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from tqdm import tqdm

from outfitrec.data.io import hash_file
from outfitrec.data.outfits import PAD, DataError, OutfitDataset, save_npz_atomic
from outfitrec.models.checkpoint import load_run
from outfitrec.models.scoring import TorchScorer
from outfitrec.models.search import (
    MAX_EXACT_COMBINATIONS,
    OutfitScorer,
    Recommendation,
    Searcher,
    SearchIndex,
    SearchParams,
    SearchStats,
    templates_from_dataset,
)
from outfitrec.recommend.fast import CollapsedScorer, FastSearcher, OutfitPool, pool_key
from outfitrec.recommend.onnx_export import OnnxScorer, export_onnx, item_inputs

Backend = Literal["torch", "onnx"]
ENCODE_BATCH = 512
INDEX_VERSION = 1
MAX_K = 1000  # outfits per request (the HTTP service allows fewer: serve/app.py)
MAX_BEAM_WIDTH = 4096
MAX_SHORTLIST = 100_000
RESULT_CACHE = 4096  # answered requests kept per engine (key: user, checkpoint, request parameters)
POOL_PER_USER = 50  # outfits each seed user adds to the pool
POOL_MAX_SEEDS = 2000  # seed users of the pool (a seeded sample beyond)


class NotFound(LookupError):
    """An unknown user or item: the service answers 404 with this message."""


def checkpoint_hash(checkpoint_dir: str | Path) -> str:
    """SHA-256 of the checkpoint's files (weights + JSON): the key of every cache derived from it."""
    checkpoint_dir = Path(checkpoint_dir)
    files = sorted(p for p in checkpoint_dir.iterdir() if p.is_file() and p.suffix in (".safetensors", ".json"))
    if not files:
        raise DataError(f"{checkpoint_dir}: no checkpoint (model.safetensors + model.json) here")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        hash_file(digest, path)
    return digest.hexdigest()


def _encode_catalogue(scorer, n_items: int, desc: str) -> np.ndarray:
    """Item embeddings of the whole catalogue, in batches, with a progress bar."""
    parts = []
    for start in tqdm(range(0, n_items, ENCODE_BATCH), desc=desc, unit="batch", disable=None, leave=False):
        parts.append(scorer.encode_items(np.arange(start, min(start + ENCODE_BATCH, n_items))))
    return np.concatenate(parts).astype(np.float32)


class Recommender:
    """A loaded model + dataset answering recommendation requests (thread-safe: at most `max_concurrent` searches)."""

    def __init__(
        self,
        dataset: OutfitDataset,
        scorer: OutfitScorer,
        index: SearchIndex,
        info: dict,
        max_concurrent: int = 4,
    ) -> None:
        self.dataset = dataset
        fast = isinstance(scorer, CollapsedScorer)
        self.searcher: Searcher = FastSearcher(scorer, index) if fast else Searcher(scorer, index)
        self.pool: OutfitPool | None = None
        self._results: OrderedDict[tuple, list[Recommendation]] = OrderedDict()
        self._results_lock = threading.Lock()
        self.result_cache_size = RESULT_CACHE  # 0: every request searches (benchmarks)
        self.scorer = scorer
        self.index = index
        self.run_config: dict | None = None  # the run's config.yaml (from_run): fold-in reads its loss settings
        self._base_users = dataset.n_users  # users of the run; those after were folded in (add_user)
        self._base_items = dataset.catalogue.n_items  # items of the run; those after were added (add_items)
        self._new_outfits: dict[int, np.ndarray] = {}  # a folded-in user's liked outfits (PAD-padded rows)
        self._folded: dict[int, object] = {}  # index -> users.FoldedUser
        self._added_images: dict[int, np.ndarray] = {}
        self._fold_in = None  # users.FoldIn, built on first use
        self._lookup: dict[str, int] | None = None  # item name -> index
        self._change_lock = threading.Lock()  # adding users / items, removing items: one at a time
        self.templates = templates_from_dataset(
            dataset.catalogue.category_names, dataset.meta, dataset.splits.get("train")
        )
        self.max_size = max(max(len(t) for t in self.templates), dataset.max_size)
        self._slots = threading.BoundedSemaphore(max_concurrent)
        # per split: the outfits (PAD-padded item rows) grouped by user, and each user's first row (numpy, read-only)
        self._history: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for split, part in dataset.splits.items():
            order = np.argsort(part.users, kind="stable")
            rows = np.where(part.mask, part.items, PAD)[order].astype(np.int32)
            starts = np.searchsorted(part.users[order], np.arange(dataset.n_users + 1)).astype(np.int64)
            self._history[split] = (rows, starts)
        self.info = info | {
            "n_users": dataset.n_users,
            "n_items": dataset.catalogue.n_items,
            "categories": list(dataset.catalogue.category_names),
            "templates": [[dataset.catalogue.category_names[c] for c in t] for t in self.templates],
            "max_outfit_size": self.max_size,
            "embedding_dim": int(index.item_emb.shape[1]),
            "scorer": "collapsed" if fast else type(scorer).__name__,
            "bytes_per_user": scorer.bytes_per_user if fast else None,
        }

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_run(
        cls,
        run: str | Path,
        data: str | Path | None = None,
        backend: Backend = "torch",
        cache: bool = True,
        onnx_dir: str | Path | None = None,
        pool: bool = False,
        progress: bool = False,
    ) -> Recommender:
        """Load a run directory (`models.checkpoint.load_run`), or a checkpoint folder with `data`.

        data: a prepared dataset (folder or dataset.npz) instead of the run's data.path.
        backend="onnx" runs the ONNX export in `onnx_dir` (default: the checkpoint's onnx/), exporting it first
        when it is missing. cache: keep the search index in the checkpoint's cache/ (keyed by the checkpoint hash).
        pool: load (or build once and cache) the pool of strong outfits that answers default requests (fast.py).
        """
        if backend not in ("torch", "onnx"):
            raise DataError(f"unknown backend {backend!r}; expected 'torch' or 'onnx'")
        started = time.perf_counter()
        loaded = load_run(run, data)
        model, dataset, checkpoint_dir = loaded.model, loaded.dataset, loaded.checkpoint_dir
        digest = checkpoint_hash(checkpoint_dir)
        if backend == "torch":
            try:  # one vector per user when the model's score collapses (fast.py), else the model as it is
                scorer: OutfitScorer = CollapsedScorer(model)
            except DataError:
                scorer = TorchScorer(model)
        else:
            onnx_dir = Path(onnx_dir) if onnx_dir is not None else checkpoint_dir / "onnx"
            if not OnnxScorer.exists(onnx_dir, digest):
                export_onnx(model, onnx_dir, digest)
            scorer = OnnxScorer(onnx_dir, lambda ids: item_inputs(model, ids))
        index = cls._load_or_build_index(scorer, dataset, checkpoint_dir / "cache", digest, backend, cache)
        if backend == "torch" and model.config.serving_dtype == "float16":  # half the bytes per cached item
            index = SearchIndex(index.item_emb.astype(np.float16), index.single_z, index.item_category)
        info = {
            "checkpoint": str(checkpoint_dir),
            "checkpoint_sha256": digest,
            "dataset": str(loaded.data_path),
            "dataset_name": dataset.meta.get("name", ""),
            "backend": backend,
            "model_config": model.config.model_dump(),
            "parameters": {k: int(v) for k, v in model.parameter_counts().items()},
            "load_seconds": round(time.perf_counter() - started, 3),
        }
        if loaded.run_dir is not None:
            info["run"] = str(loaded.run_dir)
        rec = cls(dataset, scorer, index, info)
        rec.run_config = loaded.config
        rec.warm_up()
        if pool:
            rec.load_or_build_pool(checkpoint_dir / "cache" if cache else None, progress=progress)
        return rec

    def load_or_build_pool(
        self,
        cache_dir: Path | None = None,
        users: Sequence[int] | None = None,
        per_user: int = POOL_PER_USER,
        progress: bool = False,
    ) -> OutfitPool | None:
        """The pool of strong outfits (fast.py) that answers `recommend` with default parameters, cached on disk.

        users: the seed users (default: all, or a seeded sample of POOL_MAX_SEEDS). None (no pool) when the
        scorer does not collapse (ONNX, an unknown score term).
        """
        if not isinstance(self.searcher, FastSearcher) or not self.dataset.n_users:
            return None
        if users is None:
            users = np.arange(self.dataset.n_users)
            if len(users) > POOL_MAX_SEEDS:
                users = np.sort(np.random.default_rng(0).choice(users, POOL_MAX_SEEDS, replace=False))
        seeds = np.asarray(users, dtype=np.int64)
        digest = self.info.get("checkpoint_sha256", "")
        key = pool_key(digest, self.templates, per_user, self.searcher.params, len(seeds))
        key += "|" + hashlib.sha256(seeds.tobytes()).hexdigest()[:16]
        path = None if cache_dir is None or not digest else Path(cache_dir) / f"pool_{digest[:16]}.npz"
        pool = OutfitPool.load(path, key) if path is not None and path.is_file() else None
        if pool is None:
            pool = OutfitPool.build(self.searcher, self.templates, seeds, per_user, progress=progress)
            if path is not None:
                try:
                    pool.save(path, key)
                except OSError:
                    pass  # read-only checkpoint folder: the pool lives in memory only
        self.pool = pool
        self.info["pool_outfits"] = len(pool)
        return pool

    def warm_up(self) -> None:
        """One small search, so that the first request does not pay the backend's one-off start-up costs."""
        if self.dataset.n_users:
            tiny = SearchParams(beam_width=4, shortlist=4, refine_rounds=1)
            self.searcher.search(0, self.templates[:1], k=1, params=tiny)

    @staticmethod
    def _load_or_build_index(
        scorer, dataset: OutfitDataset, cache_dir: Path, digest: str, backend: str, cache: bool
    ) -> SearchIndex:
        """The search index from the cache when its key matches, else computed (and cached when possible)."""
        path = cache_dir / f"search_index_{backend}_{digest[:16]}.npz"
        n_items = dataset.catalogue.n_items
        if cache and path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    ok = int(z["version"]) == INDEX_VERSION and str(z["sha256"]) == digest
                    if ok and z["item_emb"].shape[0] == n_items:
                        return SearchIndex(z["item_emb"], z["single_z"], dataset.catalogue.item_category)
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache is rebuilt below
        item_emb = _encode_catalogue(scorer, n_items, "item embeddings")
        index = SearchIndex.build(scorer, item_emb, dataset.catalogue.item_category)
        if cache:
            try:
                save_npz_atomic(
                    path,
                    {
                        "item_emb": index.item_emb,
                        "single_z": index.single_z,
                        "sha256": np.array(digest),
                        "version": np.array(INDEX_VERSION),
                    },
                )
            except OSError:
                pass  # read-only checkpoint folder: the index lives in memory only
        return index

    # ------------------------------------------------------------------ checks
    def check_user(self, user: int) -> int:
        if not 0 <= int(user) < self.dataset.n_users:
            raise NotFound(f"user {user} not found (users are 0..{self.dataset.n_users - 1})")
        return int(user)

    def check_items(self, items: Sequence[int]) -> list[int]:
        n = self.dataset.catalogue.n_items
        for item in items:
            if not 0 <= int(item) < n:
                raise NotFound(f"item {item} not found (items are 0..{n - 1})")
        return [int(i) for i in items]

    @staticmethod
    def check_bounds(k: int, params: SearchParams = SearchParams(), exact: bool = False) -> None:
        """k, beam width and shortlist inside their bounds (DataError naming the option otherwise).

        k is bounded by MAX_K for the beam search, by the exact search's own
        enumeration limit with exact=True.
        """
        max_k = MAX_EXACT_COMBINATIONS if exact else MAX_K
        for name, value, hi in (
            ("k", k, max_k),
            ("beam width", params.beam_width, MAX_BEAM_WIDTH),
            ("shortlist", params.shortlist, MAX_SHORTLIST),
        ):
            if not 1 <= int(value) <= hi:
                raise DataError(f"{name} must be 1..{hi}, got {value}")

    def check_templates(self, templates: Sequence[int] | None) -> list[list[int]]:
        if templates is None:
            return self.templates
        for t in templates:
            if not 0 <= int(t) < len(self.templates):
                raise DataError(f"template {t} does not exist (templates are 0..{len(self.templates) - 1})")
        return [self.templates[int(t)] for t in templates]

    def _outfits(self, user: int, split: str) -> np.ndarray:
        if user >= self._base_users:  # folded in: the liked outfits are its training outfits
            rows = self._new_outfits[user]
            return rows if split == "train" else rows[:0]
        rows, starts = self._history[split]
        return rows[starts[user] : starts[user + 1]]

    def training_outfits(self, user: int) -> set[frozenset[int]]:
        """The user's training outfits as item sets: what recommendations exclude."""
        user = self.check_user(user)
        if "train" not in self._history:
            return set()
        return {frozenset(int(i) for i in row if i != PAD) for row in self._outfits(user, "train")}

    # ------------------------------------------------------------------ answers
    def recommend(
        self,
        user: int,
        k: int = 10,
        diverse: bool = False,
        templates: Sequence[int] | None = None,
        exact: bool = False,
        params: SearchParams = SearchParams(),
        stats: SearchStats | None = None,
        use_pool: bool = True,
    ) -> list[Recommendation]:
        """The user's k best new outfits (their training outfits excluded) over the templates (indices).

        Answers are cached per (user, checkpoint, request). With the default search parameters and a loaded
        pool (`load_or_build_pool`), the pool answers (one product of its features with the user's vector);
        the live search answers otherwise, or when the pool cannot fill k outfits (`use_pool=False`: always).
        """
        self.check_bounds(k, params, exact)
        user = self.check_user(user)
        chosen = self.check_templates(templates)
        tkey = None if templates is None else tuple(int(t) for t in templates)
        key = (user, self.info.get("checkpoint_sha256"), k, diverse, tkey, exact, params, use_pool)
        with self._results_lock:
            cached = self._results.get(key) if stats is None else None  # counting work: search again
            if cached is not None:
                self._results.move_to_end(key)
                return list(cached)
        exclude = self.training_outfits(user)
        recs = None
        if use_pool and self.pool is not None and not exact and params == self.searcher.params:
            vector = self.searcher.scorer.user_vector(user)
            recs = self.pool.top(vector, k, exclude, tkey, diverse, self.index.removed)
        if recs is None:
            with self._slots:
                recs = self.searcher.search(user, chosen, k, (), exclude, diverse, exact, stats, params)
            recs = self._renumber(recs, templates)
        with self._results_lock:
            if self.result_cache_size > 0:
                self._results[key] = list(recs)
            while len(self._results) > self.result_cache_size:
                self._results.popitem(last=False)
        return recs

    def complete(
        self,
        user: int,
        items: Sequence[int],
        k: int = 5,
        template: int | None = None,
        diverse: bool = False,
        exclude_history: bool = True,
        params: SearchParams = SearchParams(),
    ) -> list[Recommendation]:
        """The k best outfits containing the given items, missing slots filled (templates the items fit)."""
        self.check_bounds(k, params)
        user = self.check_user(user)
        items = self.check_items(items)
        if not items:
            raise DataError("complete: give at least one item")
        gone = [i for i in items if self.index.removed[i]]
        if gone:
            raise DataError(f"complete: item {gone[0]} was removed from the catalogue")
        if len(set(items)) != len(items):
            raise DataError(f"complete: an item is given twice in {items}")
        tids = None if template is None else [template]
        chosen = self.check_templates(tids)
        exclude = self.training_outfits(user) if exclude_history else None
        with self._slots:
            recs = self.searcher.search(user, chosen, k, items, exclude, diverse, params=params)
        if not recs:
            names = [self.dataset.catalogue.category_names[self.dataset.catalogue.item_category[i]] for i in items]
            raise DataError(
                f"complete: items {items} (categories {names}) fit no outfit template {self.info['templates']}"
            )
        return self._renumber(recs, tids)

    def _renumber(self, recs: list[Recommendation], templates: Sequence[int] | None) -> list[Recommendation]:
        """Template positions within the chosen subset -> indices into self.templates."""
        if templates is None:
            return recs
        return [Recommendation(r.items, r.score, int(templates[r.template])) for r in recs]

    def score(self, user: int, outfits: Sequence[Sequence[int]]) -> np.ndarray:
        """Scores of the user for each outfit (lists of item ids, 1..max_outfit_size items, no repeats)."""
        user = self.check_user(user)
        rows = np.full((len(outfits), self.max_size), PAD, dtype=np.int64)
        for r, outfit in enumerate(outfits):
            items = self.check_items(outfit)
            if not 1 <= len(items) <= self.max_size:
                raise DataError(f"outfits[{r}]: {len(items)} items, expected 1..{self.max_size}")
            if len(set(items)) != len(items):
                raise DataError(f"outfits[{r}]: an item appears twice in {items}")
            rows[r, : len(items)] = items
        if len(rows) == 0:
            return np.zeros(0, np.float32)
        return self.searcher.score_rows(user, rows)  # cheap: never queued behind searches

    def history(self, user: int, split: str = "train") -> list[tuple[int, ...]]:
        """The user's outfits in a split (item ids), in dataset order."""
        user = self.check_user(user)
        if split not in self.dataset.splits:
            raise NotFound(f"split {split!r} not found (splits are {sorted(self.dataset.splits)})")
        return [tuple(int(i) for i in row if i != PAD) for row in self._outfits(user, split)]

    def item_category_name(self, item: int) -> str:
        return self.dataset.catalogue.category_names[int(self.dataset.catalogue.item_category[int(item)])]

    def item_png(self, item: int, scale: int = 1) -> bytes:
        """The item's catalogue image as PNG bytes (nearest-neighbour upscaled by `scale`)."""
        (item,) = self.check_items([item])
        added = self._added_images.get(item)
        image = np.asarray(added if added is not None else self.dataset.catalogue.load_image(item))
        if image.dtype != np.uint8:
            image = np.clip(image, 0, 255).astype(np.uint8)
        pil = Image.fromarray(image)
        if scale > 1:
            pil = pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.NEAREST)
        buffer = io.BytesIO()
        pil.save(buffer, format="PNG")
        return buffer.getvalue()

    # ------------------------------------------------------------------ new users (recommend/users.py)
    def fold_in(self):
        """The `users.FoldIn` of this model (built on first use): fits new users with the model frozen.

        DataError for a scorer whose users do not collapse to one vector (the ONNX backend).
        """
        from outfitrec.data.negatives import category_pools
        from outfitrec.recommend.users import FoldIn

        if self._fold_in is None:
            if not isinstance(self.searcher, FastSearcher):
                raise DataError(
                    "new users: folding a user in needs users that collapse to one vector (the torch backend, "
                    "and not model.anchor_pool 'lse')"
                )
            train = self.dataset.splits.get("train")
            cat = self.dataset.catalogue
            if train is None or len(train) == 0:
                raise DataError("new users: the dataset has no training outfits to draw random mixes from")
            pools = category_pools(train.items[train.mask], cat.item_category)
            self._fold_in = FoldIn(
                self.searcher.scorer,
                lambda rows: self.searcher.cache.features(rows)[0],
                cat.item_category,
                pools,
                set(train.item_sets()),
                fallback_pools=self.index.pools,
            )
        self._fold_in.item_category = self.dataset.catalogue.item_category
        return self._fold_in

    def fold_in_params(self, **overrides):
        """`users.FoldInParams` from the run's loss settings (config.yaml), with `overrides` (None: default)."""
        from outfitrec.recommend.users import FoldInParams

        return FoldInParams.from_run_config(self.run_config, **overrides)

    def liked_rows(self, outfits: Sequence[Sequence[int | str]], where: str = "outfits") -> np.ndarray:
        """Liked outfits given as lists of item ids or names -> checked, PAD-padded rows (`users.liked_rows`)."""
        from outfitrec.recommend.users import item_lookup, liked_rows

        if self._lookup is None or len(self._lookup) < self.dataset.catalogue.n_items:
            self._lookup = item_lookup(self.dataset.catalogue)
        return liked_rows(self.dataset.catalogue, outfits, self.max_size, self._lookup, where, self.index.removed)

    def add_user(self, outfits: Sequence[Sequence[int | str]], name: str | None = None, params=None) -> int:
        """Fold a new user in from their liked outfits (lists of item ids or names); returns the user's index.

        The model stays frozen (recommend/users.py); the user is added in memory (run files untouched) and
        `recommend`, `score`, `complete` and `history` answer for it at once; its liked outfits are its
        training outfits (never recommended back). name: default the index as text. params: a
        `users.FoldInParams` (default `fold_in_params()`). DataError for bad outfits or a taken name.
        """
        from outfitrec.recommend.users import check_new_name

        rows = self.liked_rows(outfits)
        with self._change_lock:
            index = self.dataset.n_users
            name = check_new_name(name, index, self.dataset.user_names)
            folded = self.fold_in().fit(name, rows, params or self.fold_in_params())
            self._attach([folded])
        return index

    def add_users(self, overlay) -> list[int]:
        """Attach the users of a `users.UserOverlay` (fitted on this checkpoint); their indices."""
        from outfitrec.recommend.users import check_new_name

        digest = self.info.get("checkpoint_sha256", "")
        if overlay.checkpoint_sha256 != digest:
            raise DataError(
                f"new users: fitted on checkpoint {overlay.checkpoint_sha256[:16]}, this model is {digest[:16]}"
            )
        with self._change_lock:
            names = list(self.dataset.user_names)
            for offset, user in enumerate(overlay.users):
                names.append(check_new_name(user.name, self.dataset.n_users + offset, np.asarray(names)))
                bad = user.outfits[(user.outfits != PAD) & (user.outfits >= self.dataset.catalogue.n_items)]
                if len(bad):
                    raise DataError(f"new users: user {user.name!r} liked item {int(bad[0])}, not in the catalogue")
            first = self.dataset.n_users
            self._attach(overlay.users)
        return list(range(first, first + len(overlay.users)))

    def load_users(self, folder: str | Path) -> list[int]:
        """`add_users` of the folder written by `outfitrec users add` (`users.UserOverlay.load`)."""
        from outfitrec.recommend.users import UserOverlay

        return self.add_users(UserOverlay.load(folder))

    def _attach(self, users) -> None:
        """Append fitted users: their vectors, names and liked outfits (under the change lock)."""
        fold = self.fold_in()
        vectors = np.stack([fold.vector(u) for u in users])
        first = self.searcher.scorer.add_users(vectors)
        for offset, user in enumerate(users):
            rows = np.full((len(user.outfits), self.max_size), PAD, dtype=np.int64)
            width = min(self.max_size, user.outfits.shape[1])
            rows[:, :width] = user.outfits[:, :width]
            self._new_outfits[first + offset] = rows
            self._folded[first + offset] = user
        self.dataset.user_names = np.append(self.dataset.user_names, [u.name for u in users]).astype(str)
        self.dataset.n_users += len(users)
        self.info["n_users"] = self.dataset.n_users
        self.info["new_users"] = self.dataset.n_users - self._base_users

    def overlay(self, users: Sequence[int] | None = None):
        """The folded-in users (all, or these indices) as a `users.UserOverlay`, ready to `save`."""
        from outfitrec.recommend.users import UserOverlay

        chosen = sorted(self._folded) if users is None else [self.check_user(u) for u in users]
        for u in chosen:
            if u not in self._folded:
                raise DataError(f"user {u} is a user of the run, not a folded-in one")
        meta = {"run": self.info.get("run", self.info.get("checkpoint", "")), "dataset": self.info.get("dataset")}
        folded = [self._folded[u] for u in chosen]
        return UserOverlay(folded, self.info.get("checkpoint_sha256", ""), self._base_users, meta)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ new and removed items (recommend/items.py)
    def add_items(
        self,
        categories: Sequence[int | str],
        names: Sequence[str] | None = None,
        images: Sequence[np.ndarray] | None = None,
        features: np.ndarray | None = None,
    ) -> list[int]:
        """Append items to the catalogue and the search index in memory (no rebuild); their new indices.

        categories: category ids or names; names: unique item names (default the index as text); images
        (encoder 'cnn') / features (encoders 'features', 'pretrained'): their content (recommend/items.py;
        an id encoder reads the category alone). The live search finds them at once; the outfit pool
        (default requests) holds the outfits of its build, so `load_or_build_pool(None)` refreshes it.
        DataError for an unknown category, a taken name or missing content.
        """
        from outfitrec.data.outfits import Catalogue
        from outfitrec.recommend.items import encode_new_items

        cat = self.dataset.catalogue
        if not len(categories):
            raise DataError("add items: no items given")
        ids = []
        for c in categories:
            if isinstance(c, str) and c in cat.category_names:
                ids.append(cat.category_names.index(c))
            elif isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= int(c) < cat.n_categories:
                ids.append(int(c))
            else:
                raise DataError(f"add items: category {c!r} not found (categories are {list(cat.category_names)})")
        with self._change_lock:
            first = cat.n_items
            new_names = [str(first + i) for i in range(len(ids))] if names is None else [str(n) for n in names]
            taken = set(cat.item_names.tolist())
            if len(new_names) != len(ids) or len(set(new_names)) != len(new_names) or taken & set(new_names):
                raise DataError("add items: give one name per item, unique and not already in the catalogue")
            model = self.searcher.scorer.model if hasattr(self.searcher.scorer, "model") else None
            if model is None:
                raise DataError("add items: needs the torch backend")
            emb = encode_new_items(model, np.asarray(ids), images, features)
            single = self.scorer.encode_outfits(emb[:, None, :], np.ones((len(emb), 1), bool))
            pix = None
            if cat.images is not None:  # keep the catalogue's arrays aligned (a blank image when none fits)
                blank = np.zeros((len(ids), *cat.images.shape[1:]), cat.images.dtype)
                if images is not None:
                    for i, im in enumerate(images):
                        if np.shape(im) == cat.images.shape[1:]:
                            blank[i] = im
                pix = np.concatenate([cat.images, blank])
            paths = None if cat.image_paths is None else np.append(cat.image_paths, [""] * len(ids))
            feats = cat.features
            if feats is not None:
                extra = np.zeros((len(ids), feats.shape[1]), feats.dtype) if features is None else features
                feats = np.concatenate([feats, np.asarray(extra, feats.dtype)])
            self.dataset.catalogue = Catalogue(
                np.concatenate([cat.item_category, ids]),
                cat.category_names,
                np.append(cat.item_names, new_names),
                pix,
                paths,
                feats,
            )
            if images is not None:
                for i, im in enumerate(images):
                    self._added_images[first + i] = np.asarray(im)
            self._set_index(self.index.extended(emb, single, ids))
            self.info["n_items"] = self.dataset.catalogue.n_items
            self.info["added_items"] = self.dataset.catalogue.n_items - self._base_items
        return list(range(first, first + len(ids)))

    def add_items_csv(self, path: str | Path) -> list[int]:
        """`add_items` from a CSV (item_id,category[,image]; recommend/items.py `read_items_csv`)."""
        from outfitrec.recommend.items import read_items_csv

        cat = self.dataset.catalogue
        grey = cat.images is not None and cat.images.ndim == 3
        names, categories, images = read_items_csv(path, list(cat.category_names), grey)
        try:
            return self.add_items(categories, names, images)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None

    def remove_items(self, items: Sequence[int | str]) -> list[int]:
        """Mark items removed: no search path recommends them again (in memory); their indices.

        items: indices or names. Already recommended answers are dropped from the answer cache.
        """
        from outfitrec.recommend.users import read_item

        with self._change_lock:
            if self._lookup is None or len(self._lookup) < self.dataset.catalogue.n_items:
                from outfitrec.recommend.users import item_lookup

                self._lookup = item_lookup(self.dataset.catalogue)
            n = self.dataset.catalogue.n_items
            ids = [read_item(i, n, self._lookup, "remove items") for i in items]
            if not ids:
                raise DataError("remove items: no items given")
            self._set_index(self.index.without(ids))
            self.info["removed_items"] = int(self.index.removed.sum())
        return ids

    @property
    def removed_items(self) -> np.ndarray:
        """Indices of the items removed after training (sorted)."""
        return np.flatnonzero(self.index.removed)

    def _set_index(self, index: SearchIndex) -> None:
        """Swap in a changed index: a new searcher over it (sharing the feature cache), answers forgotten."""
        old = self.searcher
        if isinstance(old, FastSearcher):
            old.cache.item_emb = index.item_emb
            searcher: Searcher = FastSearcher(old.scorer, index, old.params, old.cache)
        else:
            searcher = Searcher(old.scorer, index, old.params)
        self.index, self.searcher = index, searcher
        with self._results_lock:
            self._results.clear()
