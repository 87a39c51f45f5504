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
