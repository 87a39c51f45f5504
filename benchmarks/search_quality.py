"""Quality gate of the fast search settings (issue 14, item 3): what each speed-up costs in what users get.

    python benchmarks/search_quality.py RUN [RUN ...] [--users 100] [--data DIR]

For each run (Fashion-MNIST datasets with truth.npz), on the true-utility metric's fixed, seeded user sample
(`recommend/true_utility.py`; 100 users by default, where `outfitrec evaluate` uses 20), every search setting
below recommends each user's top-10 from the whole catalogue (training outfits excluded), side by side in one
process on one torch thread:

- the served search (`SearchParams()`, what `outfitrec recommend` and the service run live);
- cheaper live searches (smaller beam / shortlist, fewer or no refinement rounds);
- the pool of strong outfits (`recommend/fast.py` OutfitPool: the served search's top-50 outfits of seed users,
  one product with the user's vector per request), built from the users OUTSIDE the sample (held-out: the
  judged users' own searches never fed it) and, for comparison, from all users.

Reported per setting: request latency p50 / p95 (each setting starts with an empty outfit-feature cache, so the
first users pay the Set Transformer and later ones share its work, as in a fresh server), outfits scored,
the true-utility share of the best possible top-10, and its paired difference from the served search on the
same users (mean, SE over users). Issue 14's rule: a speed-up may not lower the share by more than 0.01.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _common import load_avg, run_main

from outfitrec.data.oracle import load_truth, truth_path
from outfitrec.models.checkpoint import checkpoint_dir_of, run_data_path
from outfitrec.models.search import SearchParams, SearchStats
from outfitrec.recommend.engine import Recommender
from outfitrec.recommend.true_utility import cached_oracle_tops, outfit_utilities, sample_users, share_and_recall

GATE = 0.01  # issue 14: a faster setting may lower the true share by at most this much
SETTINGS = {
    "served search (default SearchParams)": SearchParams(),
    "beam 8, shortlist 10, refinement 2 rounds x 16": SearchParams(
        beam_width=8, shortlist=10, refine_pool=16, refine_rounds=2
    ),
    "beam 16, shortlist 20, no refinement": SearchParams(beam_width=16, shortlist=20, refine_rounds=0),
    "beam 8, shortlist 10, no refinement": SearchParams(beam_width=8, shortlist=10, refine_rounds=0),
}


def judge(rec: Recommender, truth, ref, fn) -> dict:
    """Share per user of fn(user, stats) -> recommendations, with the request times and outfits scored."""
    shares, times, scored = [], [], []
    for j, u in enumerate(ref.users):
        stats = SearchStats()
        t = time.perf_counter()
        recs = fn(int(u), stats)
        times.append(time.perf_counter() - t)
        scored.append(stats.outfits_scored)
        top = [tuple(int(i) for i in r.items) for r in recs]
        util = outfit_utilities(truth, int(u), top)
        m = share_and_recall(top, util, ref.tops[j], ref.utilities[j], float(ref.means[j]), ref.k)
        shares.append(m["share"])
    return {"shares": np.asarray(shares), "times": np.asarray(times) * 1000, "scored": float(np.mean(scored))}


def bench_run(run: Path, n_users: int, data: str | None) -> list[tuple]:
    rec = Recommender.from_run(run, data)
    folder = Path(data) if data else run_data_path(run).parent
    truth = load_truth(truth_path(folder))
    users = sample_users(rec.dataset.n_users, n_users, 0)
    ref = cached_oracle_tops(folder, rec.dataset, truth, users)
    cache = rec.searcher.cache  # every request below passes `stats`, which bypasses the answer cache
    results = {}
    for name, params in SETTINGS.items():
        cache.clear()
        results[name] = judge(rec, truth, ref, lambda u, st, p=params: rec.recommend(u, 10, params=p, stats=st))
        print(f"  {run.name}: {name}: share {results[name]['shares'].mean():.3f}", flush=True)
    others = np.setdiff1d(np.arange(rec.dataset.n_users), users)
    for label, seeds in (("held-out seed users", others), ("all users as seeds", np.arange(rec.dataset.n_users))):
        cache.clear()
        t = time.perf_counter()
        pool = rec.load_or_build_pool(None, users=seeds)  # not cached on disk; answers default requests from now
        build = time.perf_counter() - t
        name = f"pool from {label} ({len(seeds)} users, {len(pool)} outfits, built in {build:.0f} s)"
        results[name] = judge(rec, truth, ref, lambda u, st: rec.recommend(u, 10, stats=st))
        print(f"  {run.name}: {name}: share {results[name]['shares'].mean():.3f}", flush=True)
    base = results["served search (default SearchParams)"]["shares"]
    rows = []
    for name, r in results.items():
        d = r["shares"] - base
        ok = "(reference)" if name.startswith("served") else ("holds" if d.mean() >= -GATE else "FAILS")
        rows.append(
            (
                name,
                float(np.percentile(r["times"], 50)),
                float(np.percentile(r["times"], 95)),
                r["scored"],
                float(r["shares"].mean()),
                float(r["shares"].std() / np.sqrt(len(d))),
                float(d.mean()),
                float(d.std() / np.sqrt(len(d))),
                ok,
            )
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--data", default=None, help="the dataset folder (default: each run's own)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for run in args.runs:  # a missing run is refused before any output
        checkpoint_dir_of(run)
    print(f"# search_quality: {len(args.runs)} run(s), {args.users} users; load average {load_avg()}")
    tables = {run: bench_run(run, args.users, args.data) for run in args.runs}
    print(f"\nload average after: {load_avg()}; one torch thread; rule: share may drop by at most {GATE}\n")
    for run, rows in tables.items():
        print(f"### {run}\n")
        print("| setting | p50 ms | p95 ms | outfits scored | true share (SE) | Δ vs served (SE) | gate |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
        for name, p50, p95, scored, share, se, d, dse, ok in rows:
            cells = [name, f"{p50:.1f}", f"{p95:.1f}", f"{scored:,.0f}", f"{share:.3f} ({se:.3f})"]
            print("| " + " | ".join([*cells, f"{d:+.3f} ({dse:.3f})", ok]) + " |")
        print()


if __name__ == "__main__":
    run_main(main)
