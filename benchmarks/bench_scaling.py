"""Scaling benchmarks (a script, not a test): data-parallel throughput and growth with the dataset size.

1. Training throughput (examples/s) of the teacher and the student, 1 versus N processes, each run
   launched exactly as a user would: `torchrun --nproc_per_node=N -m outfitrec train -c CONFIG`.
   The epoch's training seconds come from the run's history.json (rank 0's clock; validation and the
   final evaluation excluded), on `--max-train` positives of the Fashion-MNIST default preset.
2. How epoch time, peak memory and recommendation latency grow with users / outfits / items: one
   single-process student epoch per preset (tiny, default, large when generated), capped at
   `--scale-train` positives and projected to the full epoch (the cost per step does not depend on
   the number of positives, only on the batch), peak resident memory of that training process
   (os.wait4), then the recommend engine (recommend/engine.py) loaded from the run: index build
   time and the median latency of `recommend(user, k=10)`.

Prints Markdown tables and writes docs/img/scaling_throughput.png and docs/img/scaling_presets.png.

    python benchmarks/bench_scaling.py --data-root /tmp/ob      # generates missing presets there
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from _common import run_main

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_preset(root: Path, preset: str) -> Path:
    """The prepared folder of a Fashion-MNIST preset, generated with `outfitrec data make-fmnist` if missing."""
    folder = root / preset
    if not (folder / "dataset.npz").is_file():
        subprocess.run(
            [sys.executable, "-m", "outfitrec", "data", "make-fmnist", str(folder), "--preset", preset], check=True
        )
    return folder


def write_config(path: Path, data: Path, size: str, max_train: int, batch: int, threads: int) -> Path:
    cfg = {
        "name": f"bench-{size}",
        "role": "teacher" if size == "teacher" else "student",
        "data": {"path": str(data), "batch_size": batch, "negatives": 10, "seed": 0, "max_train": max_train},
        "model": {"encoder": "cnn", "size": size},
        "optim": {"epochs": 1, "patience": 1},
        "runtime": {"threads": threads, "progress": False, "eval_batch_size": 1024},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_measured(cmd: list[str], env: dict) -> tuple[float, int]:
    """(wall seconds, peak RSS in MiB of the direct child) of one command; raises on failure."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out = proc.stdout.read() if proc.stdout else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-4000:]}")
    return wall, usage.ru_maxrss // 1024


def train_epoch(config: Path, run_dir: Path, nproc: int, env: dict) -> dict:
    """One epoch under torchrun (nproc > 1) or plain python; the epoch record plus wall time and RSS."""
    if nproc > 1:
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes=1",
            f"--nproc_per_node={nproc}",
            "--master_addr=127.0.0.1",
            f"--master_port={free_port()}",
        ]
    else:
        launcher = [sys.executable]
    wall, rss = run_measured([*launcher, "-m", "outfitrec", "train", "-c", str(config), "-o", str(run_dir)], env)
    (record,) = json.loads((run_dir / "history.json").read_text())
    return {**record, "wall": wall, "rss_mib": rss}


def throughput(args, env: dict) -> list[dict]:
    data = ensure_preset(args.data_root, "default")
    rows = []
    for size in ("teacher", "student"):
        cfg = write_config(args.work / f"tp-{size}.yaml", data, size, args.max_train, args.batch, 1)
        for nproc in args.procs:
            # best of --tp-repeats epochs: on a shared machine the fastest run is the least disturbed one
            recs = [train_epoch(cfg, args.work / f"tp-{size}-{nproc}-{r}", nproc, env) for r in range(args.tp_repeats)]
            rec = min(recs, key=lambda x: x["seconds"])
            n = min(args.max_train, rec["steps"] * args.batch)
            rows.append(
                {
                    "model": size,
                    "processes": nproc,
                    "examples": n,
                    "epoch_s": rec["seconds"],
                    "examples_per_s": n / rec["seconds"],
                    "wall_s": rec["wall"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def recommend_latency(run_dir: Path, n_users: int, repeats: int) -> tuple[float, float]:
    """(seconds to load the engine and build its index, median seconds of recommend(user, k=10))."""
    from outfitrec.recommend.engine import Recommender

    start = time.perf_counter()
    rec = Recommender.from_run(run_dir, cache=False)
    build = time.perf_counter() - start
    users = np.random.default_rng(0).choice(n_users, size=min(repeats, n_users), replace=False)
    times = []
    for u in users:
        t = time.perf_counter()
        rec.recommend(int(u), k=10)
        times.append(time.perf_counter() - t)
    return build, float(np.median(times))


def presets(args, env: dict) -> list[dict]:
    from outfitrec.data.outfits import OutfitDataset

    rows = []
    for preset in args.presets:
        data = ensure_preset(args.data_root, preset)
        ds = OutfitDataset.load(data / "dataset.npz")
        n_train = len(ds.split("train"))
        cap = min(n_train, args.scale_train)
        cfg = write_config(args.work / f"sc-{preset}.yaml", data, "student", cap, args.batch, 1)
        run = args.work / f"sc-{preset}"
        rec = train_epoch(cfg, run, 1, env)
        per_example = rec["seconds"] / cap
        build, latency = recommend_latency(run, ds.n_users, args.repeats)
        rows.append(
            {
                "preset": preset,
                "users": ds.n_users,
                "train_outfits": n_train,
                "items": ds.catalogue.n_items,
                "measured_examples": cap,
                "epoch_s_projected": per_example * n_train,
                "train_rss_mib": rec["rss_mib"],
                "index_build_s": build,
                "recommend_ms": latency * 1000,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def plot(tp: list[dict], sc: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    if tp:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        models = sorted({r["model"] for r in tp}, reverse=True)
        procs = sorted({r["processes"] for r in tp})
        width = 0.8 / len(procs)
        for j, p in enumerate(procs):
            vals = [next(r["examples_per_s"] for r in tp if r["model"] == m and r["processes"] == p) for m in models]
            ax.bar(np.arange(len(models)) + j * width, vals, width, label=f"{p} process(es)")
        ax.set_xticks(np.arange(len(models)) + width * (len(procs) - 1) / 2, models)
        ax.set_ylabel("training examples / s")
        ax.set_title("DDP throughput (gloo, 2-core CPU)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "scaling_throughput.png", dpi=120)
        plt.close(fig)
    if sc:
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
        x = [r["train_outfits"] for r in sc]
        for ax, key, label in zip(
            axes,
            ("epoch_s_projected", "train_rss_mib", "recommend_ms"),
            ("student epoch (s, projected)", "training peak RSS (MiB)", "recommend(k=10) median (ms)"),
        ):
            ax.plot(x, [r[key] for r in sc], "o-")
            for r in sc:
                ax.annotate(f"{r['preset']}\n{r['items']} items", (r["train_outfits"], r[key]), fontsize=7)
            ax.set_xscale("log")
            ax.set_xlabel("training outfits")
            ax.set_title(label, fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "scaling_presets.png", dpi=120)
        plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, default=ROOT / "datasets" / "bench")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_scaling")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--max-train", type=int, default=512, help="positives per throughput epoch")
    ap.add_argument("--tp-repeats", type=int, default=2, help="throughput runs per setting (best kept)")
    ap.add_argument("--batch", type=int, default=64, help="global batch size (split across processes)")
    ap.add_argument("--presets", nargs="+", default=["tiny", "default", "large"])
    ap.add_argument("--scale-train", type=int, default=256, help="positives measured per preset")
    ap.add_argument("--repeats", type=int, default=5, help="users timed for recommendation latency")
    ap.add_argument("--skip", choices=["throughput", "presets"], action="append", default=[])
    args = ap.parse_args()
    args.work = args.work / time.strftime("%Y%m%d-%H%M%S")
    args.work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    tp = throughput(args, env) if "throughput" not in args.skip else []
    sc = presets(args, env) if "presets" not in args.skip else []
    if tp:
        print("\n## Training throughput, 1 vs N processes\n")
        print(markdown(tp, ["model", "processes", "examples", "epoch_s", "examples_per_s", "wall_s"]))
    if sc:
        print("\n## Growth with users, outfits and items (student, one process)\n")
        cols = ["preset", "users", "train_outfits", "items", "measured_examples", "epoch_s_projected"]
        print(markdown(sc, cols + ["train_rss_mib", "index_build_s", "recommend_ms"]))
    plot(tp, sc, args.out)
    (args.work / "results.json").write_text(json.dumps({"throughput": tp, "presets": sc}, indent=2))
    print(f"\nplots: {args.out}/scaling_*.png; raw results: {args.work}/results.json")


if __name__ == "__main__":
    run_main(main)
