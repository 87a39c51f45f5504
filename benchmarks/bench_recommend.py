"""Benchmark the outfit search: beam search against exact enumeration, and how both scale.

    python benchmarks/bench_recommend.py --run runs/fmnist-student [--users 10] [--sizes 10,20,40]

1. Enumerable catalogues: the run's catalogue restricted to N items per
   category (a fixed random subset), templates of at most three slots. For
   each N and user: the exact top-10 (every outfit scored) and the beam
   search's top-10 (default settings), recall of the exact top-10, latency of
   both, and the number of outfits each scored.
2. The full catalogue with every template (4-slot ones included): beam
   latency per user (plain and diverse).
3. Larger catalogues: the catalogue tiled x2, x4, x8 (x8 is the size of the
   Fashion-MNIST `large` preset, 22,000 items) under a model of the run's
   architecture with fresh weights (latency depends on the sizes, not the
   weights): index build time and beam latency per user.

Prints Markdown tables and writes docs/img/recommend_scaling.png. Torch runs
on one thread by default (--threads) so figures do not depend on the machine's
other load as much.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _common import run_main

from outfitrec.data.outfits import Catalogue
from outfitrec.models.scoring import TorchScorer
from outfitrec.models.search import Searcher, SearchIndex, SearchStats
from outfitrec.recommend.engine import Recommender, _encode_catalogue

ROOT = Path(__file__).resolve().parents[1]


def restricted_index(rec: Recommender, per_category: int, seed: int) -> SearchIndex:
    """The run's index with each category's pool cut to a fixed random subset of `per_category` items."""
    rng = np.random.default_rng(seed)
    pools = {}
    for cat, pool in rec.index.pools.items():
        pick = rng.choice(pool, size=min(per_category, len(pool)), replace=False)
        pools[cat] = np.sort(pick)
    return SearchIndex(rec.index.item_emb, rec.index.single_z, rec.index.item_category, pools)


def timed(fn, *args, **kwargs):
    """(fn(*args, **kwargs), seconds it took)."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def bench_enumerable(rec: Recommender, sizes: list[int], users: list[int], seed: int) -> list[dict]:
    """Recall of the exact top-10 and latency of exact vs beam search on N items per category."""
    templates = [t for t in rec.templates if len(t) <= 3]
    rows = []
    for size in sizes:
        index = restricted_index(rec, size, seed)
        recalls, t_exact, t_beam, n_exact, n_beam, gaps = [], [], [], [], [], []
        for user in users:
            exclude = rec.training_outfits(user)
            se, sb = SearchStats(), SearchStats()
            searcher = Searcher(rec.scorer, index)
            exact, te = timed(searcher.search, user, templates, 10, exclude=exclude, exact=True, stats=se)
            beam, tb = timed(searcher.search, user, templates, 10, exclude=exclude, stats=sb)
            recalls.append(len({r.items for r in exact} & {r.items for r in beam}) / len(exact))
            gaps.append(exact[0].score - beam[0].score)
            t_exact.append(te)
            t_beam.append(tb)
            n_exact.append(se.outfits_scored)
            n_beam.append(sb.outfits_scored)
        n_outfits = sum(int(np.prod([len(index.pools[c]) for c in t])) for t in templates)
        rows.append(
            {
                "per_category": size,
                "outfits": n_outfits,
                "recall@10": float(np.mean(recalls)),
                "recall_min": float(np.min(recalls)),
                "top1_gap": float(np.mean(gaps)),
                "exact_ms": 1000 * float(np.median(t_exact)),
                "beam_ms": 1000 * float(np.median(t_beam)),
                "exact_scored": int(np.mean(n_exact)),
                "beam_scored": int(np.mean(n_beam)),
            }
        )
        r = rows[-1]
        print(
            f"  N={size}: recall {r['recall@10']:.3f} (min {r['recall_min']:.1f}), exact {r['exact_ms']:.0f} ms, "
            f"beam {r['beam_ms']:.0f} ms",
            flush=True,
        )
    return rows


def bench_full(rec: Recommender, users: list[int]) -> dict:
    """Beam latency per user on the whole catalogue with every template (plain and diverse)."""
    plain, diverse, scored = [], [], []
    rec.recommend(users[0], k=10)  # warm-up
    for user in users:
        stats = SearchStats()
        _, t = timed(rec.recommend, user, k=10, stats=stats)
        plain.append(t)
        scored.append(stats.outfits_scored)
        _, t = timed(rec.recommend, user, k=10, diverse=True)
        diverse.append(t)
    return {
        "items": rec.dataset.catalogue.n_items,
        "templates": len(rec.templates),
        "p50_ms": 1000 * float(np.median(plain)),
        "p95_ms": 1000 * float(np.percentile(plain, 95)),
        "diverse_p50_ms": 1000 * float(np.median(diverse)),
        "scored": int(np.mean(scored)),
    }


def bench_tiled(rec: Recommender, factors: list[int], users: list[int]) -> list[dict]:
    """Latency on the catalogue tiled `factor` times, under fresh weights of the run's architecture."""
    from outfitrec.models.outfit_model import OutfitModel

    model = rec.scorer.model
    cat = rec.dataset.catalogue
    rows = []
    for factor in factors:
        torch.manual_seed(factor)
        big = Catalogue(
            np.tile(cat.item_category, factor),
            list(cat.category_names),
            images=None if cat.images is None else np.concatenate([cat.images] * factor),
            features=None if cat.features is None else np.concatenate([cat.features] * factor),
        )
        fresh = OutfitModel(model.config, model.n_users, big.n_items, model.n_categories).eval()
        fresh.bind_catalogue(big)
        scorer = TorchScorer(fresh)
        start = time.perf_counter()
        emb = _encode_catalogue(scorer, big.n_items, f"item embeddings x{factor}")
        index = SearchIndex.build(scorer, emb, big.item_category)
        build = time.perf_counter() - start
        searcher = Searcher(scorer, index)
        searcher.search(users[0], rec.templates, 10)  # warm-up
        times = [timed(searcher.search, u, rec.templates, 10)[1] for u in users]
        rows.append(
            {
                "items": big.n_items,
                "factor": factor,
                "index_s": build,
                "p50_ms": 1000 * float(np.median(times)),
                "p95_ms": 1000 * float(np.percentile(times, 95)),
            }
        )
        print(f"  x{factor}: {big.n_items} items, beam p50 {rows[-1]['p50_ms']:.0f} ms", flush=True)
    return rows


def plot(enumerable: list[dict], full: dict, tiled: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    n = [r["outfits"] for r in enumerable]
    ax1.loglog(n, [r["exact_ms"] for r in enumerable], "o-", label="exact (every outfit)")
    ax1.loglog(n, [r["beam_ms"] for r in enumerable], "s-", label="beam search")
    for r in enumerable:
        ax1.annotate(
            f"recall {r['recall@10']:.2f}",
            (r["outfits"], r["beam_ms"]),
            textcoords="offset points",
            xytext=(4, -12),
            fontsize=8,
        )
    ax1.set_xlabel("outfits in the catalogue (templates of <= 3 slots)")
    ax1.set_ylabel("ms per user (median)")
    ax1.set_title("Exact vs beam search, N items per category")
    ax1.legend()
    ax1.grid(True, which="both", alpha=0.3)
    items = [r["items"] for r in tiled]
    ax2.plot(items, [r["p50_ms"] for r in tiled], "s-", label="beam p50")
    ax2.plot(items, [r["p95_ms"] for r in tiled], "^--", label="beam p95")
    ax2.plot([full["items"]], [full["p50_ms"]], "r*", markersize=12, label="trained run, full catalogue")
    ax2.set_xlabel("catalogue items (all templates)")
    ax2.set_ylabel("ms per user")
    ax2.set_title("Beam search latency vs catalogue size")
    ax2.set_ylim(bottom=0)
    ax2.legend()
    ax2.grid(True, alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, type=Path, help="trained run directory (model/ + config.yaml)")
    parser.add_argument("--users", type=int, default=10, help="users measured (the first N)")
    parser.add_argument("--sizes", default="10,20,40", help="items per category of the enumerable catalogues")
    parser.add_argument("--tile", default="1,2,4,8", help="catalogue tiling factors for the scaling run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "recommend_scaling.png")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rec, load_s = timed(Recommender.from_run, args.run)
    users = list(range(min(args.users, rec.dataset.n_users)))
    print(
        f"run {args.run}: {rec.dataset.catalogue.n_items} items, {rec.dataset.n_users} users, "
        f"templates {rec.info['templates']}, loaded in {load_s:.2f} s, torch threads {args.threads}",
        flush=True,
    )
    print("enumerable catalogues:", flush=True)
    enumerable = bench_enumerable(rec, [int(s) for s in args.sizes.split(",")], users, args.seed)
    full = bench_full(rec, users)
    print("tiled catalogues:", flush=True)
    tiled = bench_tiled(rec, [int(f) for f in args.tile.split(",")], users)
    plot(enumerable, full, tiled, args.plot)

    print("\n### Beam search vs exact search (top-10, templates of <= 3 slots)\n")
    print(
        "| items/category | outfits | recall@10 (mean) | recall@10 (min) | top-1 score gap | exact ms/user "
        "| beam ms/user | outfits scored: exact | beam |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in enumerable:
        print(
            f"| {r['per_category']} | {r['outfits']:,} | {r['recall@10']:.3f} | {r['recall_min']:.1f} | "
            f"{r['top1_gap']:.4f} | {r['exact_ms']:.0f} | {r['beam_ms']:.0f} | {r['exact_scored']:,} | "
            f"{r['beam_scored']:,} |"
        )
    print(f"\n### Full catalogue of the run ({full['items']:,} items, {full['templates']} templates)\n")
    print("| beam p50 ms | beam p95 ms | diverse p50 ms | outfits scored |")
    print("|---:|---:|---:|---:|")
    print(f"| {full['p50_ms']:.0f} | {full['p95_ms']:.0f} | {full['diverse_p50_ms']:.0f} | {full['scored']:,} |")
    print("\n### Beam search on larger catalogues (the run's catalogue tiled; fresh weights)\n")
    print("| items | index build s | beam p50 ms | beam p95 ms |")
    print("|---:|---:|---:|---:|")
    for r in tiled:
        print(f"| {r['items']:,} | {r['index_s']:.1f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} |")
    print(f"\n(plot: {args.plot})")


if __name__ == "__main__":
    run_main(main)
