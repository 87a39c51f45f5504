"""New users without retraining (issue 14, item 5): fold-in against retraining on the cold-user study, and latency.

    python benchmarks/bench_new_users.py --runs RUN_COLD1 RUN_COLD5 [--latency-run RUN_COLD5] [--latency-users 20]

Each run is trained on a cold-user split (`outfitrec experiment cold`: half of the users keep N = 1 or 5
training outfits, data/cold.py), so its cold users' anchors are the retrained figure. Fold-in throws those
anchors away and fits each cold user again from the same N outfits with every other weight frozen
(recommend/users.py); both are scored on the cold users' valid / test candidates (the cold folder keeps
theirs only). The fold-in setting (steps, lr) is chosen on validation AUC from `--grid`; test is reported
for that choice. "start" is the random initial vector (0 steps): the floor.

Latency: users of the latency run (its outfit pool built from `--pool-seeds` users) with 5 liked
outfits (their training outfits) added one by one, in-process: fold-in alone, then the first top-10
(the outfit pool answering, and the live search), and end to end over HTTP (FastAPI TestClient: POST
/api/users then POST /api/recommend). One torch thread. Wall time and the process's CPU time: on a
shared machine the CPU time is what a request costs, the wall time what it waited besides.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from _common import run_main


def auc_of(rec, candidates, users_matrix) -> float:
    from outfitrec.data.outfits import PAD
    from outfitrec.evaluate.protocol import evaluate_scores

    def score(users, items, mask):
        feats = rec.searcher.cache.features(np.where(mask, items, PAD))[0]
        return np.einsum("bm,bm->b", feats, users_matrix[users].astype(np.float32))

    return float(evaluate_scores(score, candidates)["auc"])


def quality(run: str, grid: list[tuple[int, float]], seed: int, seeds: int) -> dict:
    """Trained vs folded-in cold users of one cold run, on valid (choice) and test."""
    from outfitrec.data.negatives import Candidates, candidates_path
    from outfitrec.recommend.engine import Recommender

    rec = Recommender.from_run(run)
    cold = rec.dataset.meta.get("cold_users")
    if not cold:
        raise SystemExit(f"{run}: not trained on a cold-user split (no meta['cold_users'])")
    folder = Path(rec.info["dataset"]).parent
    cands = {s: Candidates.load(candidates_path(folder, s)) for s in ("valid", "test")}
    users = np.asarray(cold["users"], dtype=np.int64)
    fold = rec.fold_in()
    trained = rec.searcher.scorer.user_matrix.astype(np.float32)
    row = {"run": run, "n": int(cold["n"]), "cold_users": len(users)}
    row["trained"] = {s: auc_of(rec, c, trained) for s, c in cands.items()}
    liked = {int(u): rec.liked_rows([list(o) for o in rec.history(int(u))]) for u in users}
    row["outfits_per_user"] = float(np.mean([len(r) for r in liked.values()]))
    results = []
    for steps, lr in [(0, 0.05), *grid]:
        params = rec.fold_in_params(steps=steps, lr=lr, seed=seed)
        matrix = trained.copy()
        start = time.perf_counter()
        for u, rows in liked.items():
            matrix[u] = fold.vector(fold.fit(str(u), rows, params))
        ms = (time.perf_counter() - start) * 1000 / len(liked)
        aucs = {s: auc_of(rec, c, matrix) for s, c in cands.items()}
        results.append({"steps": steps, "lr": lr, "ms_per_user": ms, **aucs})
        print(
            f"  {Path(run).name} N={row['n']} steps={steps} lr={lr}: valid {aucs['valid']:.4f} "
            f"test {aucs['test']:.4f} ({ms:.0f} ms/user)",
            file=sys.stderr,
        )
    row["start"] = results[0]
    row["grid"] = results[1:]
    chosen = row["chosen"] = max(results[1:], key=lambda r: r["valid"])
    tests = []  # the chosen setting with other fold-in seeds (random mixes, start, samples)
    for s in range(seeds):
        params = rec.fold_in_params(steps=chosen["steps"], lr=chosen["lr"], seed=s)
        matrix = trained.copy()
        for u, rows in liked.items():
            matrix[u] = fold.vector(fold.fit(str(u), rows, params))
        tests.append(auc_of(rec, cands["test"], matrix))
    row["seeds_test"] = tests
    return row


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def latency(run: str, n_users: int, pool_seeds: int, n_liked: int = 5) -> dict:
    """Fold-in + first top-10 of new users with `n_liked` liked outfits, in-process and over HTTP."""
    from fastapi.testclient import TestClient

    from outfitrec.recommend.engine import Recommender
    from outfitrec.serve.app import create_app

    rec = Recommender.from_run(run)
    seeds = range(min(pool_seeds, rec.dataset.n_users))  # the pool's query costs one product whatever its seeds
    rec.load_or_build_pool(None, users=seeds, progress=True)
    rec.result_cache_size = 0
    donors = [u for u in range(rec.dataset.n_users) if len(rec.history(u)) >= n_liked][: 2 * n_users]
    liked = [[list(o) for o in rec.history(u)[:n_liked]] for u in donors]
    # wall time, and the process's CPU time (what a request costs, whatever else shares the cores)
    out: dict[str, list[float]] = {k: [] for k in ("fold_in", "pool", "live", "http")}
    cpu: dict[str, list[float]] = {k: [] for k in out}

    def timed(key, fn, *args, **kwargs):
        w, c = time.perf_counter(), time.process_time()
        result = fn(*args, **kwargs)
        out[key].append((time.perf_counter() - w) * 1000)
        cpu[key].append((time.process_time() - c) * 1000)
        return result

    for i, outfits in enumerate(liked[:n_users]):
        user = timed("fold_in", rec.add_user, outfits, name=f"bench-{i}")
        recs = timed("pool", rec.recommend, user, k=10)
        timed("live", rec.recommend, user, k=10, use_pool=False)
        assert len(recs) == 10
    with TestClient(create_app(rec)) as client:

        def request(i, outfits):
            r = client.post("/api/users", json={"outfits": outfits, "name": f"http-{i}"})
            r2 = client.post("/api/recommend", json={"user": r.json()["id"], "k": 10})
            assert r.status_code == 201 and r2.status_code == 200 and len(r2.json()["outfits"]) == 10

        for i, outfits in enumerate(liked[n_users : 2 * n_users]):
            timed("http", request, i, outfits)
    return {
        "run": run,
        "pool_outfits": len(rec.pool) if rec.pool is not None else 0,
        "pool_seeds": len(seeds),
        "users": len(out["fold_in"]),
        "http_users": len(out["http"]),
        "wall": {**out, **_sums(out)},
        "cpu": {**cpu, **_sums(cpu)},
    }


def _sums(t: dict) -> dict:
    return {
        "fold_plus_pool": [a + b for a, b in zip(t["fold_in"], t["pool"])],
        "fold_plus_live": [a + b for a, b in zip(t["fold_in"], t["live"])],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="runs trained on cold-user splits")
    parser.add_argument("--grid", default="100:0.05,300:0.02,300:0.05,300:0.1", help="steps:lr settings to try")
    parser.add_argument("--latency-run", default=None, help="run for the latency table (default: the last run)")
    parser.add_argument("--latency-users", type=int, default=20)
    parser.add_argument("--pool-seeds", type=int, default=50, help="seed users of the outfit pool (latency)")
    parser.add_argument("--parts", default="quality,latency", help="quality and/or latency")
    parser.add_argument("--seed", type=int, default=0, help="fold-in seed of the grid")
    parser.add_argument("--seeds", type=int, default=3, help="fold-in seeds 0..N-1 of the chosen setting (test)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    grid = [(int(s), float(lr)) for s, lr in (g.split(":") for g in args.grid.split(","))]
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores, shared); one torch thread\n")
    parts = set(args.parts.split(","))
    if "quality" in parts:
        print_quality([quality(run, grid, args.seed, args.seeds) for run in args.runs])
    if "latency" in parts:
        print_latency(latency(args.latency_run or args.runs[-1], args.latency_users, args.pool_seeds))


def print_quality(rows: list[dict]) -> None:
    print(
        "| run | N outfits per cold user | cold users | retrained: test AUC (valid) | fold-in: test AUC (valid) "
        "| fold-in - retrained (test) | fold-in setting (chosen on valid) | fold-in test AUC over seeds "
        "(mean ± std) | start (0 steps): test AUC | fold-in ms/user |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    for r in rows:
        c, t = r["chosen"], r["trained"]
        print(
            f"| {Path(r['run']).name} | {r['n']} (mean {r['outfits_per_user']:.2f}) | {r['cold_users']} | "
            f"{t['test']:.4f} ({t['valid']:.4f}) | {c['test']:.4f} ({c['valid']:.4f}) | {c['test'] - t['test']:+.4f} "
            f"| {c['steps']} steps, lr {c['lr']} | {np.mean(r['seeds_test']):.4f} ± {np.std(r['seeds_test']):.4f} "
            f"({len(r['seeds_test'])}) | {r['start']['test']:.4f} | {c['ms_per_user']:.0f} |"
        )
    print("\nEvery fold-in setting tried (test AUC beside the valid AUC it was chosen by):\n")
    print("| run | N | steps | lr | valid AUC | test AUC |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        for g in r["grid"]:
            print(
                f"| {Path(r['run']).name} | {r['n']} | {g['steps']} | {g['lr']} | {g['valid']:.4f} | {g['test']:.4f} |"
            )
    print()


def print_latency(lat: dict) -> None:
    print(
        f"New users with 5 liked outfits on {Path(lat['run']).name} ({lat['users']} users in-process, "
        f"{lat['http_users']} over HTTP; outfit pool of {lat['pool_outfits']} outfits from {lat['pool_seeds']} seed "
        f"users; load average now {os.getloadavg()[0]:.2f}):\n"
    )
    print("| step | wall p50 ms | wall p95 ms | wall max ms | CPU p50 ms | CPU p95 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for key, label in [
        ("fold_in", "fold-in (Recommender.add_user)"),
        ("pool", "first top-10, outfit pool"),
        ("live", "first top-10, live search"),
        ("fold_plus_pool", "fold-in + top-10 (pool)"),
        ("fold_plus_live", "fold-in + top-10 (live search)"),
        ("http", "HTTP: POST /api/users + POST /api/recommend"),
    ]:
        v, c = lat["wall"][key], lat["cpu"][key]
        print(f"| {label} | {pct(v, 50):.1f} | {pct(v, 95):.1f} | {max(v):.1f} | {pct(c, 50):.1f} | {pct(c, 95):.1f} |")


if __name__ == "__main__":
    run_main(main)
