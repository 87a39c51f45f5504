"""Teacher vs student: parameters, peak memory, item-encoding and outfit-scoring throughput.

The analogue of the paper's table of backbone parameters, required memory and
inference time. Each model is measured in its own subprocess so that its peak
resident memory (ru_maxrss) is its own; the interpreter + torch baseline of
that process (measured before the model is built) is reported beside it.

    .venv/bin/python benchmarks/bench_models.py                  # cnn teacher + student, 1 thread
    .venv/bin/python benchmarks/bench_models.py --models cnn:teacher,cnn:student,id:teacher,id:student
    .venv/bin/python benchmarks/bench_models.py --models pretrained:teacher --items 256

- item encoding: new items/s through encoder + head (eval mode, no grad,
  batches of --batch); for 'pretrained' the frozen EfficientNet-Lite2 pass on
  the 260x260 input is included, since a new item has no cached features.
- outfit scoring: outfits/s of (user, 4-item outfit) pairs scored from
  cached item embeddings (encode_all_items once, then Set Transformer + scorer).

Prints a Markdown table. Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from _common import run_main

SLOTS = 4


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _timed(fn, min_seconds: float = 1.0) -> tuple[int, float]:
    """Run fn() (returns a count) repeatedly for at least min_seconds after one warm-up call."""
    fn()
    done, start = 0, time.perf_counter()
    while True:
        done += fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done, elapsed


def measure_one(spec: str, n_users: int, n_items: int, batch: int, threads: int, seconds: float) -> dict:
    """Build one model from 'encoder:size' on synthetic content, measure it, return a result row."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    baseline = _rss_mib()
    from outfitrec.data.outfits import Catalogue
    from outfitrec.models import ModelConfig, OutfitModel

    encoder, size = spec.split(":")
    rng = np.random.default_rng(0)
    n_categories = SLOTS
    item_category = np.arange(n_items) % n_categories
    images = rng.integers(0, 256, (n_items, 28, 28), dtype=np.uint8)
    features = None
    if encoder == "pretrained":
        features = rng.standard_normal((n_items, 1280)).astype(np.float32)  # stands for the cached features
    catalogue = Catalogue(item_category, [f"c{c}" for c in range(n_categories)], images=images, features=features)
    model = OutfitModel(ModelConfig(encoder=encoder, size=size), n_users, n_items, n_categories)
    model.bind_catalogue(catalogue)
    model.eval()
    counts = model.parameter_counts()

    with torch.no_grad():
        if encoder == "pretrained":
            from outfitrec.models.features import backbone_features, load_efficientnet_lite2

            effnet = load_efficientnet_lite2()
            small = min(batch, 32)

            def encode() -> int:
                ids = rng.integers(0, n_items, small)
                feats = torch.from_numpy(backbone_features(effnet, images[ids]))
                model.item_encoder.head(feats)
                return small
        else:

            def encode() -> int:
                model.encode_items(torch.from_numpy(rng.integers(0, n_items, batch)))
                return batch

        n_enc, t_enc = _timed(encode, seconds)
        table = model.encode_all_items(batch_size=batch)
        users = torch.from_numpy(rng.integers(0, n_users, batch))
        # one item per category (item i has category i % n_categories), as in a real outfit
        per_slot = [rng.integers(0, n_items // n_categories, batch) * n_categories + c for c in range(SLOTS)]
        items = torch.from_numpy(np.stack(per_slot, 1))
        mask = torch.ones(batch, SLOTS, dtype=torch.bool)

        def score() -> int:
            model(users, items, mask, item_table=table)
            return batch

        n_sc, t_sc = _timed(score, seconds)
    return {
        "model": spec,
        "backbone": counts["backbone"],
        "rest": counts["rest"],
        "peak_rss_mib": round(_rss_mib(), 1),
        "baseline_rss_mib": round(baseline, 1),
        "items_per_s": n_enc / t_enc,
        "outfits_per_s": n_sc / t_sc,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="cnn:teacher,cnn:student", help="comma-separated encoder:size")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--items", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timing window per measurement")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one model, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.users, args.items, args.batch, args.threads, args.seconds)))
        return
    rows = []
    for spec in args.models.split(","):
        cmd = [sys.executable, __file__, "--one", spec] + [
            f"--{k}={getattr(args, k)}" for k in ("users", "items", "batch", "threads", "seconds")
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(
        f"{args.users} users, {args.items} items (28x28 grey), {SLOTS}-item outfits, batch {args.batch}, "
        f"{args.threads} torch thread(s)\n"
    )
    print(
        "| model | backbone params | other params | peak RSS (MiB) | of which interpreter+torch | "
        "item encoding (new items/s) | outfit scoring, cached items (outfits/s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['model']} | {r['backbone']:,} | {r['rest']:,} | {r['peak_rss_mib']:.0f} | "
            f"{r['baseline_rss_mib']:.0f} | {r['items_per_s']:,.0f} | {r['outfits_per_s']:,.0f} |"
        )


if __name__ == "__main__":
    run_main(main)
