"""Parameters, memory and latency of the teacher and the student (method.md §6's cost table).

Measured on freshly built models of the experiment's configs (cost does not
depend on the trained weights), on this machine's CPU with one torch thread,
in eval mode without gradients:

- parameters: the item backbone (what distillation shrinks) and the rest
  (Set Transformer, user anchors, heads), from `OutfitModel.parameter_counts`;
- memory: float32 bytes of all parameters, and the peak activation memory of
  encoding one batch of items (the largest single module output plus the
  input, read through forward hooks: a lower bound that ranks models fairly);
- latency: median wall time of encoding a batch of items, and of scoring a
  batch of outfits from cached item embeddings (the recommender's hot path),
  over repeats after a warm-up.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from outfitrec.data.outfits import OutfitDataset
from outfitrec.data.prepare import load_dataset
from outfitrec.train.loop import build_model


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))


@torch.no_grad()
def measure_model(model, dataset: OutfitDataset, item_batch: int = 256, outfit_batch: int = 1024, repeats: int = 5):
    """Parameters, parameter memory, activation memory and latencies of one OutfitModel (see module doc)."""
    torch.set_num_threads(1)
    model.eval()
    counts = model.parameter_counts()
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    n_items = dataset.catalogue.n_items
    gen = torch.Generator().manual_seed(0)
    item_ids = torch.randint(0, n_items, (min(item_batch, n_items),), generator=gen)

    peak = {"bytes": 0}

    def hook(_module, _inputs, output):
        if torch.is_tensor(output):
            peak["bytes"] = max(peak["bytes"], output.numel() * output.element_size())

    handles = [m.register_forward_hook(hook) for m in model.item_encoder.modules()]
    try:
        model.encode_items(item_ids)
    finally:
        for h in handles:
            h.remove()
    encode_ms = _median_ms(lambda: model.encode_items(item_ids), repeats)

    test = dataset.split("test") if "test" in dataset.splits else dataset.split("valid")
    rows = np.arange(min(outfit_batch, len(test)))
    items = torch.as_tensor(test.items[rows])
    mask = torch.as_tensor(test.mask[rows])
    users = torch.as_tensor(test.users[rows])
    table = model.encode_all_items()
    score_ms = _median_ms(lambda: model(users, items, mask, item_table=table), repeats)
    return {
        "backbone_params": counts["backbone"],
        "rest_params": counts["rest"],
        "total_params": counts["total"],
        "param_mb": param_bytes / 2**20,
        "item_activation_mb": peak["bytes"] / 2**20,
        f"encode_{len(item_ids)}_items_ms": encode_ms,
        "encode_ms_per_item": encode_ms / len(item_ids),
        f"score_{len(rows)}_outfits_ms": score_ms,
        "score_ms_per_outfit": score_ms / max(len(rows), 1),
    }


def cost_table(lab, roles: tuple[str, ...] = ("teacher", "student")) -> list[dict]:
    """One row per role: the cost of a model built from the lab's config for that role."""
    rows = []
    dataset, _ = load_dataset(lab.train_data())
    for role in roles:
        config = lab.config(role, {}, 0, role)
        model = build_model(config, dataset, torch.device("cpu"))
        row = {"model": role, "encoder": config.model.encoder, "size": config.model.size, "dim": config.model.dim}
        row.update(measure_model(model, dataset))
        rows.append(row)
    if len(rows) == 2 and rows[0]["backbone_params"]:
        rows[1]["backbone_vs_teacher"] = rows[1]["backbone_params"] / rows[0]["backbone_params"]
        rows[0]["backbone_vs_teacher"] = 1.0
    return rows


def cost_markdown(rows: list[dict]) -> str:
    """The cost rows as a Markdown table."""
    keys = [k for k in rows[0] if k != "model"]
    for r in rows[1:]:
        keys += [k for k in r if k not in keys and k != "model"]
    lines = ["| model | " + " | ".join(keys) + " |", "| --- |" + " ---: |" * len(keys)]
    for r in rows:
        cells = []
        for k in keys:
            v = r.get(k)
            if isinstance(v, float):
                cells.append(f"{v:.4g}")
            elif isinstance(v, int):
                cells.append(f"{v:,}")
            else:
                cells.append("-" if v is None else str(v))
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ serving cost
# What a trained model costs where serving pays (issue 14, `outfitrec experiment compress`): outfit scoring
# from cached item embeddings, the bytes kept per user, the memory of a serving process and its latency.

SERVING_USERS = 20  # users timed per model (seeded sample), as in benchmarks/bench_serving.py
SCORING_BATCH = 4096  # outfits per scoring call (the test split's outfits, repeated to fill the batch)


def _table_in_serving_dtype(model) -> torch.Tensor:
    """The model's item embeddings [n_items, d] as the recommender stores them (ModelConfig.serving_dtype)."""
    table = model.encode_all_items()
    return table.half() if model.config.serving_dtype == "float16" else table


@torch.no_grad()
def scoring_throughput(models: dict, dataset: OutfitDataset, rounds: int = 15, batch: int = SCORING_BATCH) -> dict:
    """{name: outfits/s} of scoring (user, outfit) pairs from cached item embeddings, one torch thread.

    Item embeddings are computed once per model and kept in its serving dtype (read back as float32); a call
    runs the Set Transformer and the user scorer on `batch` test outfits (`model(users, items, mask,
    item_table)`). The models are timed round-robin (`rounds` rounds, one call each per round, after a
    warm-up) and each gets its fastest call: other processes on a shared machine only ever slow a call down,
    so the fastest is the least disturbed estimate, and round-robin gives every model the same chances.
    """
    torch.set_num_threads(1)
    split = dataset.split("test") if "test" in dataset.splits else dataset.split("valid")
    rows = np.arange(batch) % len(split)
    items, mask = torch.as_tensor(split.items[rows]), torch.as_tensor(split.mask[rows])
    users = torch.as_tensor(split.users[rows])
    tables = {}
    for name, model in models.items():
        model.eval()
        tables[name] = _table_in_serving_dtype(model)
        model(users, items, mask, item_table=tables[name])  # warm-up
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            start = time.perf_counter()
            model(users, items, mask, item_table=tables[name])
            times[name].append(time.perf_counter() - start)
    return {name: batch / float(np.min(t)) for name, t in times.items()}


@torch.no_grad()
def served_auc(model, dataset: OutfitDataset, folder, split: str = "test") -> float:
    """AUC on the split's candidates scored as the recommender serves the model.

    That is the collapsed user vectors (`recommend.fast.CollapsedScorer`) and the item embeddings, both in
    the model's serving dtype (float16 rounding included), the transformer and products in float32.
    """
    from outfitrec.data.negatives import Candidates
    from outfitrec.evaluate.protocol import candidates_path, evaluate_scores
    from outfitrec.recommend.fast import CollapsedScorer

    scorer = CollapsedScorer(model)
    table = _table_in_serving_dtype(model).numpy()

    def score(users: np.ndarray, items: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = np.empty(len(users), np.float64)
        for s in range(0, len(users), SCORING_BATCH):
            m = np.asarray(mask[s : s + SCORING_BATCH], bool)
            emb = table[np.where(m, items[s : s + SCORING_BATCH], 0)].astype(np.float32)
            z = scorer.encode_outfits(emb, m)
            out[s : s + SCORING_BATCH] = scorer.score_embeddings(users[s : s + SCORING_BATCH], z)
        return out

    candidates = Candidates.load(candidates_path(folder, split), dataset.n_users, dataset.catalogue.n_items)
    return float(evaluate_scores(score, candidates)["auc"])


def _rss_mib(peak: bool = False) -> float:
    """This process's resident memory in MiB: now (/proc/self/status VmRSS), or its peak (ru_maxrss)."""
    import resource

    if not peak:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024  # kB
        except OSError:
            pass  # not Linux: the peak below
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _cold_request(rec, user: int) -> tuple[float, int]:
    """(seconds, outfits scored) of one top-10 request with an empty outfit-feature cache and no result cache."""
    from outfitrec.models.search import SearchStats
    from outfitrec.recommend.fast import FastSearcher, FeatureCache

    if isinstance(rec.searcher, FastSearcher):
        rec.searcher.cache = FeatureCache(rec.searcher.scorer, rec.index.item_emb)
    stats = SearchStats()
    start = time.perf_counter()
    rec.recommend(int(user), k=10, stats=stats, use_pool=False)
    return time.perf_counter() - start, stats.outfits_scored


def recommend_latency(run_dirs: dict, n_users: int = SERVING_USERS, seed: int = 0) -> dict:
    """{name: {p50 / p95 ms, outfits per request}} of top-10 requests, the runs loaded side by side, one thread.

    Each run is loaded as `outfitrec serve` loads it (`Recommender.from_run`: collapsed users, the search index
    in the serving dtype, no pool). For each of `n_users` seeded users, every run answers in turn (round-robin,
    so a busy machine slows them alike) with the default search, an empty outfit-feature cache (every outfit
    the request scores goes through the Set Transformer: the model's share of a request) and no result cache.
    """
    from outfitrec.recommend.engine import Recommender

    torch.set_num_threads(1)
    recs = {name: Recommender.from_run(run, cache=False) for name, run in run_dirs.items()}
    for rec in recs.values():
        rec.result_cache_size = 0
    n_total = min(rec.dataset.n_users for rec in recs.values())
    users = np.random.default_rng(seed).choice(n_total, min(n_users, n_total), replace=False)
    times: dict[str, list[float]] = {name: [] for name in recs}
    scored: dict[str, list[int]] = {name: [] for name in recs}
    for user in users:
        for name, rec in recs.items():
            seconds, n = _cold_request(rec, int(user))
            times[name].append(seconds * 1000.0)
            scored[name].append(n)
    return {
        name: {
            "recommend_p50_ms": float(np.percentile(times[name], 50)),
            "recommend_p95_ms": float(np.percentile(times[name], 95)),
            "outfits_per_request": float(np.mean(scored[name])),
        }
        for name in recs
    }


def serving_process(run_dir: str, n_requests: int = 3, seed: int = 0) -> dict:
    """Memory of serving one run: load it as `outfitrec serve` does and answer a few requests (call it in a fresh
    process, `measure_serving_process`: its memory is its own).

    One torch thread; `Recommender.from_run` (collapsed users, search index in the serving dtype, no pool),
    then `n_requests` cold top-10 requests (as `recommend_latency`). Returns the resident memory (MiB) with
    torch and the recommender imported (before loading), after loading, after the requests, the process's
    peak, and the load seconds.
    """
    torch.set_num_threads(1)
    from outfitrec.recommend.engine import Recommender

    baseline = _rss_mib()
    start = time.perf_counter()
    rec = Recommender.from_run(run_dir, cache=False)
    load_s = time.perf_counter() - start
    loaded = _rss_mib()
    rec.result_cache_size = 0
    users = np.random.default_rng(seed).choice(rec.dataset.n_users, min(n_requests, rec.dataset.n_users), False)
    for user in users:
        _cold_request(rec, int(user))
    return {
        "rss_baseline_mib": baseline,
        "rss_loaded_mib": loaded,
        "rss_after_mib": _rss_mib(),
        "rss_peak_mib": _rss_mib(peak=True),
        "load_s": load_s,
        "scorer": rec.info.get("scorer"),
    }


def measure_serving_process(run_dir, timeout_s: float = 900.0) -> dict:
    """`serving_process` in a fresh Python process (same interpreter, one thread); its JSON result."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json, sys; from outfitrec.experiments.cost import serving_process; "
        "print(json.dumps(serving_process(sys.argv[1])))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(run_dir)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
    )
    if done.returncode != 0:
        raise RuntimeError(f"serving measurement of {run_dir} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
