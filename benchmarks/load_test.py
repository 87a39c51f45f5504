"""Bounded load test of the outfitrec HTTP service on loopback.

    python benchmarks/load_test.py --run RUN [--requests 2000 --concurrency 32]
    python benchmarks/load_test.py --url http://127.0.0.1:8000 [...]

With --run it starts `outfitrec serve RUN` on a free loopback port, waits for
/health, runs the load and stops the server; with --url it loads a service
already running (loopback addresses only). The mix of requests is
recommend (k=10) / score (8 outfits) / history / item image, in proportions
set by --mix. It sends exactly --requests requests with at most
--concurrency in flight (httpx async), then reports throughput, latency
percentiles per endpoint and overall, and errors (any non-2xx status or
transport error). Exit status 1 when there was an error.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
from _common import run_main


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"load_test: {url} is not a loopback address; this test only loads the local machine")


def start_server(run: Path, port: int, backend: str, data: Path | None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "outfitrec", "serve", str(run), "--port", str(port), "--backend", backend]
    if data is not None:
        cmd += ["--data", str(data)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_healthy(url: str, server: subprocess.Popen | None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise SystemExit(f"load_test: the server exited early:\n{server.stderr.read() if server.stderr else ''}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"load_test: {url}/health did not answer within {timeout:.0f} s")


def plan(n: int, mix: dict[str, float], info: dict, seed: int) -> list[tuple[str, str, str, dict | None]]:
    """The n requests: (kind, method, path, json body), drawn with a fixed seed."""
    rng = random.Random(seed)
    kinds = list(mix)
    weights = [mix[k] for k in kinds]
    n_users, n_items, size = info["n_users"], info["n_items"], min(3, info["max_outfit_size"])
    requests = []
    for _ in range(n):
        kind = rng.choices(kinds, weights)[0]
        user = rng.randrange(n_users)
        if kind == "recommend":
            requests.append((kind, "POST", "/api/recommend", {"user": user, "k": 10}))
        elif kind == "score":
            outfits = [rng.sample(range(n_items), size) for _ in range(8)]
            requests.append((kind, "POST", "/api/score", {"user": user, "outfits": outfits}))
        elif kind == "history":
            requests.append((kind, "GET", f"/api/users/{user}/history", None))
        else:
            requests.append((kind, "GET", f"/api/items/{rng.randrange(n_items)}/image.png?scale=3", None))
    return requests


async def run_load(url: str, requests: list, concurrency: int, timeout: float) -> tuple[list, float]:
    """Send every request with at most `concurrency` in flight; (kind, seconds, error or '') per request."""
    results: list[tuple[str, float, str]] = []
    queue: asyncio.Queue = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            try:
                kind, method, path, body = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            start = time.perf_counter()
            error = ""
            try:
                response = await client.request(method, path, json=body)
                if response.status_code >= 300:
                    error = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            results.append((kind, time.perf_counter() - start, error))

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return results, wall


def report(results: list, wall: float, concurrency: int) -> int:
    errors = [r for r in results if r[2]]
    print(
        f"\n{len(results)} requests, {concurrency} concurrent, {wall:.1f} s: {len(results) / wall:.1f} requests/s, "
        f"{len(errors)} errors\n"
    )
    print("| endpoint | requests | p50 ms | p99 ms | max ms | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    kinds = sorted({r[0] for r in results})
    for kind in [*kinds, "all"]:
        part = [r for r in results if kind in ("all", r[0])]
        lat = np.array([r[1] for r in part]) * 1000
        n_err = sum(1 for r in part if r[2])
        print(
            f"| {kind} | {len(part)} | {np.percentile(lat, 50):.1f} | {np.percentile(lat, 99):.1f} | "
            f"{lat.max():.1f} | {n_err} |"
        )
    for kind, _, error in errors[:5]:
        print(f"error ({kind}): {error}")
    return 1 if errors else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", type=Path, help="start `outfitrec serve RUN` on a free loopback port")
    source.add_argument("--url", help="a running service on loopback, e.g. http://127.0.0.1:8000")
    parser.add_argument("--data", type=Path, help="dataset for a bare checkpoint given as --run")
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx"])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--mix", default="recommend=0.25,score=0.25,history=0.25,image=0.25", help="request kinds and weights"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="per-request timeout, seconds")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    mix = {k: float(v) for k, v in (part.split("=") for part in args.mix.split(","))}
    unknown = set(mix) - {"recommend", "score", "history", "image"}
    if unknown:
        raise SystemExit(f"load_test: --mix has unknown kinds {sorted(unknown)}")
    server = None
    if args.run is not None:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_server(args.run, port, args.backend, args.data)
    else:
        url = args.url.rstrip("/")
        check_loopback(url)
    try:
        wait_healthy(url, server)
        info = httpx.get(f"{url}/api/info", timeout=10).json()
        print(
            f"service {url}: {info.get('dataset_name')} ({info['n_users']} users, {info['n_items']} items), "
            f"backend {info.get('backend')}, pid {server.pid if server else '-'}, client pid {os.getpid()}"
        )
        requests = plan(args.requests, mix, info, args.seed)
        results, wall = asyncio.run(run_load(url, requests, args.concurrency, args.timeout))
        status = report(results, wall, args.concurrency)
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
    raise SystemExit(status)


if __name__ == "__main__":
    run_main(main)
