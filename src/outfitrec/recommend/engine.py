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
from outfitrec.recommend.fast import CollapsedScorer, FastSearcher, OutfitPool, pool_key
from outfitrec.recommend.onnx_export import OnnxScorer, export_onnx, item_inputs
from outfitrec.recommend.search import (
    MAX_EXACT_COMBINATIONS,
    OutfitScorer,
    Recommendation,
    Searcher,
    SearchIndex,
    SearchParams,
    SearchStats,
    templates_from_dataset,
)

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
            recs = self.pool.top(vector, k, exclude, tkey, diverse)
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
        image = np.asarray(self.dataset.catalogue.load_image(item))
        if image.dtype != np.uint8:
            image = np.clip(image, 0, 255).astype(np.uint8)
        pil = Image.fromarray(image)
        if scale > 1:
            pil = pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.NEAREST)
        buffer = io.BytesIO()
        pil.save(buffer, format="PNG")
        return buffer.getvalue()
