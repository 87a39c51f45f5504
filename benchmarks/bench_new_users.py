"""New users without retraining (issue 14, item 5): fold-in against retraining on the cold-user study, and latency.

    python benchmarks/bench_new_users.py --runs RUN_COLD1 RUN_COLD5 [--latency-run RUN_COLD5] [--latency-users 20]

Each run is trained on a cold-user split (`outfitrec experiment cold`: half of the users keep N = 1 or 5
training outfits, data/cold.py), so its cold users' anchors are the retrained figure. Fold-in throws those
anchors away and fits each cold user again from the same N outfits with every other weight frozen
(recommend/users.py); both are scored on the cold users' valid / test candidates (the cold folder keeps
theirs only). The fold-in setting (steps, lr) is chosen on validation AUC from `--grid`; test is reported
for that choice. "start" is the random initial vector (0 steps): the floor.

Latency: users of the latency run with 5 liked outfits (their training outfits) added one by one,
in-process: fold-in alone, then the first top-10 (the outfit pool answering, and the live search), and
end to end over HTTP (FastAPI TestClient: POST /api/users then POST /api/recommend). One torch thread.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np


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


def latency(run: str, n_users: int, n_liked: int = 5) -> dict:
    """Fold-in + first top-10 of new users with `n_liked` liked outfits, in-process and over HTTP."""
    from fastapi.testclient import TestClient

    from outfitrec.recommend.engine import Recommender
    from outfitrec.serve.app import create_app

    rec = Recommender.from_run(run, pool=True)
    rec.result_cache_size = 0
    donors = [u for u in range(rec.dataset.n_users) if len(rec.history(u)) >= n_liked][: 2 * n_users]
    liked = [[list(o) for o in rec.history(u)[:n_liked]] for u in donors]
    fold_ms, pool_ms, live_ms = [], [], []
    for i, outfits in enumerate(liked[:n_users]):
        t0 = time.perf_counter()
        user = rec.add_user(outfits, name=f"bench-{i}")
        t1 = time.perf_counter()
        recs = rec.recommend(user, k=10)
        t2 = time.perf_counter()
        rec.recommend(user, k=10, use_pool=False)
        t3 = time.perf_counter()
        assert len(recs) == 10
        fold_ms.append((t1 - t0) * 1000)
        pool_ms.append((t2 - t1) * 1000)
        live_ms.append((t3 - t2) * 1000)
    http_ms = []
    with TestClient(create_app(rec)) as client:
        for i, outfits in enumerate(liked[n_users : 2 * n_users]):
            t0 = time.perf_counter()
            r = client.post("/api/users", json={"outfits": outfits, "name": f"http-{i}"})
            r2 = client.post("/api/recommend", json={"user": r.json()["id"], "k": 10})
            http_ms.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 201 and r2.status_code == 200 and len(r2.json()["outfits"]) == 10
    return {
        "run": run,
        "users": len(fold_ms),
        "http_users": len(http_ms),
        "fold_in": fold_ms,
        "pool": pool_ms,
        "live": live_ms,
        "fold_plus_pool": [a + b for a, b in zip(fold_ms, pool_ms)],
        "fold_plus_live": [a + b for a, b in zip(fold_ms, live_ms)],
        "http": http_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="runs trained on cold-user splits")
    parser.add_argument("--grid", default="100:0.05,300:0.02,300:0.05,300:0.1", help="steps:lr settings to try")
    parser.add_argument("--latency-run", default=None, help="run for the latency table (default: the last run)")
    parser.add_argument("--latency-users", type=int, default=20)
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
        print_latency(latency(args.latency_run or args.runs[-1], args.latency_users))


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
        f"{lat['http_users']} over HTTP; load average now {os.getloadavg()[0]:.2f}):\n"
    )
    print("| step | p50 ms | p95 ms | max ms |")
    print("|---|---:|---:|---:|")
    for key, label in [
        ("fold_in", "fold-in (Recommender.add_user)"),
        ("pool", "first top-10, outfit pool"),
        ("live", "first top-10, live search"),
        ("fold_plus_pool", "fold-in + top-10 (pool)"),
        ("fold_plus_live", "fold-in + top-10 (live search)"),
        ("http", "HTTP: POST /api/users + POST /api/recommend"),
    ]:
        v = lat[key]
        print(f"| {label} | {pct(v, 50):.1f} | {pct(v, 95):.1f} | {max(v):.1f} |")


if __name__ == "__main__":
    main()
