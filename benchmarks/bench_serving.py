"""Serving benchmark (issue 14, items 2, 4, 6): latency and quality of the search settings, scale, load test.

    python benchmarks/bench_serving.py --run runs/h7-student [--parts quality,exact,scale,load,batch]

Every part runs the compared settings side by side in one process (one torch
thread), on the same users, so ratios hold on a shared machine; the machine's
load average is printed with each table.

- quality: top-10 p50 / p95 latency per setting on the run's whole catalogue
  (20 users; the old default search on the model as it was served before
  - plain scorer, no cache -, the same on the collapsed scorer + feature cache,
  cheaper settings, the pool), outfits scored, overlap with the old default's
  top-10, and the mean true utility of the top-10 (Fashion-MNIST oracle, when
  the dataset has truth.npz).
- exact: recall of the model's exact top-10 on an enumerable catalogue
  (`--per-slot` items per category, templates with at most `--max-slots`
  slots): every outfit's features computed once, each user's exact top-10 a
  product with the user vector; the search settings and the pool (built from
  80% of the users, judged on the other 20%: held-out users) against it.
- scale: live-search and pool request latency as the catalogue grows to 1e5
  items (item embeddings tiled with noise) and the pool to 1e6 outfits.
- load: `outfitrec serve` with 1 and 2 workers loaded by Debian's `hey`
  (`apt-get install -y hey`; the part is skipped with that hint when missing)
  on 127.0.0.1: POST /api/recommend, 32 concurrent, bounded count (-n) and
  per-request timeout; 8 hey processes with distinct users, latencies pooled
  from hey's CSV output.
- batch: `outfitrec recommend RUN --all-users --out FILE` timed, and again (resume: nothing to do).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch
from _common import load_avg, run_main

from outfitrec.models.search import Searcher, SearchIndex, SearchParams, SearchStats
from outfitrec.recommend.engine import Recommender, TorchScorer
from outfitrec.recommend.fast import FastSearcher, OutfitPool

OLD = SearchParams(beam_width=32, shortlist=40, refine_pool=64, refine_top=10, refine_rounds=10)
SETTINGS = {
    "old default (beam 32, shortlist 40, refinement)": OLD,
    "beam 8, shortlist 10, no refinement": SearchParams(beam_width=8, shortlist=10, refine_rounds=0),
    "beam 16, shortlist 20, no refinement": SearchParams(beam_width=16, shortlist=20, refine_rounds=0),
    "beam 8, shortlist 10, refinement 2 rounds x 16": SearchParams(
        beam_width=8, shortlist=10, refine_pool=16, refine_rounds=2
    ),
    "beam 16, shortlist 20, refinement 2 rounds x 32": SearchParams(
        beam_width=16, shortlist=20, refine_pool=32, refine_rounds=2
    ),
    "beam 8, shortlist 10, refinement 10 rounds x 32": SearchParams(
        beam_width=8, shortlist=10, refine_pool=32, refine_rounds=10
    ),
    "beam 16, shortlist 20, refinement 10 rounds x 32": SearchParams(
        beam_width=16, shortlist=20, refine_pool=32, refine_rounds=10
    ),
    "beam 16, shortlist 20, refinement 10 rounds x 64": SearchParams(
        beam_width=16, shortlist=20, refine_pool=64, refine_rounds=10
    ),
}


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def sets(recs) -> list[frozenset[int]]:
    return [frozenset(r.items) for r in recs]


def true_utilities(rec, user, recs) -> float:
    truth = getattr(rec, "_bench_truth", None)
    if truth is None or not recs:
        return float("nan")
    from outfitrec.data.oracle import true_utility

    width = max(len(r.items) for r in recs)
    items = np.zeros((len(recs), width), np.int64)
    mask = np.zeros((len(recs), width), bool)
    for j, r in enumerate(recs):
        items[j, : len(r.items)] = r.items
        mask[j, : len(r.items)] = True
    return float(true_utility(truth, np.full(len(recs), user), items, mask).mean())


def attach_truth(rec) -> None:
    from outfitrec.data.oracle import TRUTH_FILE, load_truth

    folder = Path(rec.info["dataset"])
    folder = folder if folder.is_dir() else folder.parent
    if (folder / TRUTH_FILE).is_file():
        rec._bench_truth = load_truth(folder)


def part_quality(rec: Recommender, users: list[int], default: SearchParams) -> None:
    print(f"\n## Latency / quality on the whole catalogue ({rec.dataset.catalogue.n_items} items, {len(users)} users)")
    print(f"load average before: {load_avg()}")
    attach_truth(rec)
    model = rec.scorer.model
    plain = Searcher(TorchScorer(model), rec.index)
    fast: FastSearcher = rec.searcher  # type: ignore[assignment]
    rows = []
    reference: dict[int, list] = {}

    def run(name, fn, reps=1):
        times, scored, overlap, utility = [], [], [], []
        for rep in range(reps):
            for u in users:
                stats = SearchStats()
                t = time.perf_counter()
                recs = fn(u, stats)
                times.append(time.perf_counter() - t)
                if rep == reps - 1:
                    scored.append(stats.outfits_scored)
                    if u not in reference:
                        reference[u] = recs
                    overlap.append(len(set(sets(recs)) & set(sets(reference[u]))) / 10)
                    utility.append(true_utilities(rec, u, recs))
        rows.append((name, pct(times, 50), pct(times, 95), np.mean(scored), np.mean(overlap), np.mean(utility)))
        print(f"  {name}: p50 {rows[-1][1]:.1f} ms", flush=True)

    def live(searcher, params):
        return lambda u, st: searcher.search(u, rec.templates, 10, (), rec.training_outfits(u), stats=st, params=params)

    run("old default, plain scorer, no cache (as served before)", live(plain, OLD))
    quick = [SETTINGS["beam 8, shortlist 10, no refinement"], default]
    for name, params in [(n, p) for n, p in SETTINGS.items() if p in quick] + [("new default", default)]:
        fast.cache.clear()  # cold cache per setting
        run(f"{name} (cold cache)", live(fast, params))
        run(f"{name} (warm cache)", live(fast, params))
    t = time.perf_counter()
    pool = rec.load_or_build_pool(Path(rec.info["checkpoint"]) / "cache", progress=True)  # reused by load, batch
    build = time.perf_counter() - t
    rec._results.clear()
    run(
        f"pool ({len(pool)} outfits, built in {build:.0f} s), default params",
        lambda u, st: rec.recommend(u, 10, stats=st),
        reps=3,
    )
    print(f"load average after: {load_avg()}; one torch thread; default SearchParams: {default}\n")
    print("| setting | p50 ms | p95 ms | outfits scored | overlap with old top-10 | mean true utility of top-10 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, p50, p95, scored, overlap, util in rows:
        print(f"| {name} | {p50:.1f} | {p95:.1f} | {scored:,.0f} | {overlap:.2f} | {util:+.3f} |")


def part_exact(rec: Recommender, per_slot: int, max_slots: int, default: SearchParams, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    cat = rec.index.item_category
    pools = {int(c): np.sort(rng.choice(np.flatnonzero(cat == c), per_slot, replace=False)) for c in np.unique(cat)}
    index = SearchIndex(rec.index.item_emb, rec.index.single_z, cat, pools)
    templates = [t for t in rec.templates if len(t) <= max_slots]
    fast = FastSearcher(rec.searcher.scorer, index)
    print(f"\n## Recall of the model's exact top-10: {per_slot} items per category, templates {templates}")
    t = time.perf_counter()
    all_rows, all_tmpl = [], []
    width = max(len(x) for x in templates)
    for ti, template in enumerate(templates):
        rows, _ = fast.query(0).enumerate_candidates(template)  # scores every outfit once (features cached)
        padded = np.full((len(rows), width), -1, np.int64)
        padded[:, : rows.shape[1]] = rows
        all_rows.append(padded)
        all_tmpl.append(np.full(len(rows), ti))
    rows = np.concatenate(all_rows)
    tmpl = np.concatenate(all_tmpl)
    feats, _ = fast.cache.features(rows)
    print(f"{len(rows):,} outfits enumerated and encoded in {time.perf_counter() - t:.0f} s (load {load_avg()})")
    from outfitrec.models.search import select

    users = np.arange(rec.dataset.n_users)
    held = users[rng.permutation(len(users))[: len(users) // 5]]
    seeds = np.setdiff1d(users, held)
    scorer = fast.scorer
    exact = {}
    for u in users:
        s = feats @ scorer.user_vector(u)
        top = np.argsort(-s)[:200]
        exact[u] = select(rows[top], s[top], tmpl[top], 10, rec.training_outfits(int(u)))
    out = []
    for name, params in SETTINGS.items():
        t = time.perf_counter()
        rec_ = [
            len(
                set(sets(fast.search(int(u), templates, 10, (), rec.training_outfits(int(u)), params=params)))
                & set(sets(exact[u]))
            )
            / 10
            for u in users
        ]
        out.append((name, np.mean(rec_), np.mean(np.asarray(rec_)[held]), (time.perf_counter() - t) / len(users)))
    t = time.perf_counter()
    pool = OutfitPool.build(fast, templates, seeds, 50, params=default)
    build = time.perf_counter() - t
    pr = [
        len(
            set(sets(pool.top(scorer.user_vector(int(u)), 10, rec.training_outfits(int(u))) or []))
            & set(sets(exact[u]))
        )
        / 10
        for u in users
    ]
    out.append(
        (
            f"pool from {len(seeds)} seed users ({len(pool)} outfits, {build:.0f} s)",
            np.mean(pr),
            np.mean(np.asarray(pr)[held]),
            float("nan"),
        )
    )
    print(f"{len(held)} held-out users (not pool seeds); load average {load_avg()}\n")
    print("| setting | recall@10 of exact, all users | held-out users | s per user (warm features) |")
    print("|---|---:|---:|---:|")
    for name, r_all, r_held, sec in out:
        print(f"| {name} | {r_all:.3f} | {r_held:.3f} | {sec:.3f} |")


def part_scale(rec: Recommender, users: list[int], params: SearchParams) -> None:
    print(f"\n## Latency as the catalogue grows (live search at the defaults, warm process; load {load_avg()})\n")
    print("| catalogue items | live search p50 ms | p95 ms | pool outfits | pool request p50 ms | p95 ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    scorer = rec.searcher.scorer
    rng = np.random.default_rng(0)
    base = rec.index
    m = scorer.user_matrix.shape[1]
    for n_items, n_pool in ((base.item_emb.shape[0], 15_000), (10_000, 100_000), (100_000, 1_000_000)):
        reps = -(-n_items // len(base.item_category))
        idx = np.tile(np.arange(len(base.item_category)), reps)[:n_items]
        noise = rng.normal(0, 0.01, (n_items, base.item_emb.shape[1])).astype(np.float32)
        index = SearchIndex(base.item_emb[idx] + noise, base.single_z[idx] + noise, base.item_category[idx])
        fast = FastSearcher(scorer, index)
        for u in users[:3]:
            fast.search(u, rec.templates, 10, params=params)  # warm: the process, not the user's answers
        times = []
        for u in users:
            t = time.perf_counter()
            fast.search(u, rec.templates, 10, (), rec.training_outfits(u), params=params)
            times.append(time.perf_counter() - t)
        feats = rng.normal(size=(n_pool, m)).astype(np.float32)
        pool = OutfitPool(rng.integers(0, n_items, (n_pool, 4)), rng.integers(0, len(rec.templates), n_pool), feats)
        ptimes = []
        for u in users:
            t = time.perf_counter()
            pool.top(scorer.user_vector(u), 10, rec.training_outfits(u))
            ptimes.append(time.perf_counter() - t)
        print(
            f"| {n_items:,} | {pct(times, 50):.1f} | {pct(times, 95):.1f} | {n_pool:,} | {pct(ptimes, 50):.2f} | "
            f"{pct(ptimes, 95):.2f} |"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def part_load(run: Path, requests: int, concurrency: int, procs: int, configs: list[str]) -> None:
    hey = shutil.which("hey")
    if hey is None:
        print("\n## Load test skipped: `hey` is not installed (Debian: apt-get install -y hey; scripts/setup.sh)")
        return
    print(
        f"\n## Load test: POST /api/recommend (k=10), {requests} requests, {concurrency} concurrent "
        f"({procs} hey processes, distinct users), 127.0.0.1\n"
    )
    print("| server | req/s | p50 ms | p95 ms | p99 ms | errors | load avg |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for config in configs:
        workers, pool, cache = config.split(":")
        port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "outfitrec",
            "serve",
            str(run),
            "--port",
            str(port),
            "--workers",
            workers,
            "--pool" if pool == "pool" else "--no-pool",
            "--result-cache",
            "4096" if cache == "cache" else "0",
        ]
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                try:
                    if urllib.request.urlopen(url + "/health", timeout=2).status == 200:
                        break
                except OSError:
                    time.sleep(0.5)
                if server.poll() is not None:
                    raise SystemExit(f"server exited: {server.stderr.read()[-2000:]}")
            # a warm process: every worker has answered each measured user a few times before the clock starts
            for u in [10 + 7 * j for j in range(procs)] * 2 * int(workers):
                body = json.dumps({"user": u, "k": 10}).encode()
                req = urllib.request.Request(url + "/api/recommend", body, {"Content-Type": "application/json"})
                urllib.request.urlopen(req, timeout=60).read()
            per = (requests if pool == "pool" else min(requests, 480)) // procs
            c = max(1, concurrency // procs)
            started = time.perf_counter()
            jobs = [
                subprocess.Popen(
                    [
                        hey,
                        "-n",
                        str(per),
                        "-c",
                        str(c),
                        "-t",
                        "30",
                        "-m",
                        "POST",
                        "-T",
                        "application/json",
                        "-d",
                        json.dumps({"user": 10 + 7 * j, "k": 10}),
                        "-o",
                        "csv",
                        url + "/api/recommend",
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
                for j in range(procs)
            ]
            outs = [j.communicate(timeout=900)[0] for j in jobs]
            wall = time.perf_counter() - started
            lat, errors = [], 0
            for text in outs:
                for row in csv.DictReader(io.StringIO(text)):
                    lat.append(float(row["response-time"]))
                    errors += row["status-code"] != "200"
            errors += procs * per - len(lat)
            name = f"{workers} worker(s), {'pool' if pool == 'pool' else 'live search'}, " + (
                "result cache" if cache == "cache" else "no result cache"
            )
            print(
                f"| {name} | {len(lat) / wall:.0f} | {pct(lat, 50):.0f} | {pct(lat, 95):.0f} | {pct(lat, 99):.0f} "
                f"| {errors} | {load_avg()} |",
                flush=True,
            )
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()


def part_batch(run: Path) -> None:
    print(f"\n## Batch: all users (load {load_avg()})\n")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "recs.csv"
        for label in ("first run", "rerun (resume: nothing left)"):
            t = time.perf_counter()
            res = subprocess.run(
                [sys.executable, "-m", "outfitrec", "recommend", str(run), "--all-users", "--out", str(out)],
                capture_output=True,
                text=True,
            )
            print(f"- {label}: {time.perf_counter() - t:.1f} s wall with process start; {res.stdout.strip()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--parts", default="quality,exact,scale,load,batch")
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--per-slot", type=int, default=40)
    ap.add_argument("--max-slots", type=int, default=3)
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--hey-procs", type=int, default=8)
    ap.add_argument("--load-configs", default="1:nopool:nocache,1:pool:nocache,2:pool:nocache,2:pool:cache")
    args = ap.parse_args()
    torch.set_num_threads(1)
    parts = set(args.parts.split(","))
    print(f"# bench_serving: {args.run}; {os.cpu_count()} cores, load average {load_avg()}")
    if parts & {"quality", "exact", "scale"}:
        rec = Recommender.from_run(args.run)
        users = [int(u) for u in np.random.default_rng(0).choice(rec.dataset.n_users, args.users, replace=False)]
        if "quality" in parts:
            part_quality(rec, users, SearchParams())
        if "exact" in parts:
            part_exact(rec, args.per_slot, args.max_slots, SearchParams())
        if "scale" in parts:
            part_scale(rec, users, SearchParams())
    if "load" in parts:
        Recommender.from_run(args.run, pool=True, progress=True)  # index + pool cached before the servers start
        part_load(args.run, args.requests, args.concurrency, args.hey_procs, args.load_configs.split(","))
    if "batch" in parts:
        part_batch(args.run)


if __name__ == "__main__":
    run_main(main)
