"""CLI command: `outfitrec features` (frozen backbone features, cached on disk)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add `outfitrec features` to the main app."""

    @app.command()
    def features(
        data: Path = typer.Argument(..., help="prepared dataset folder or its dataset.npz (items need images)"),
        out: Path = typer.Argument(..., help="output folder: features.npy [n_items, 1280] + features.json"),
        batch_size: int = typer.Option(32, help="images per backbone forward pass"),
        chunk_size: int = typer.Option(1024, help="items per cached chunk (the unit of resumption)"),
        max_chunks: int | None = typer.Option(None, help="stop after computing this many new chunks (rerun resumes)"),
        threads: int | None = typer.Option(None, help="torch CPU threads (default: torch's choice)"),
    ) -> None:
        """Compute frozen EfficientNet-Lite2 ImageNet features of every item, resumably.

        Interrupted runs resume where they stopped: rerun the same command. Use the
        result with `model.encoder: pretrained` and `model.features_path: OUT/features.npy`.
        """
        import torch

        from outfitrec.models.features import extract_features

        if threads is not None:
            torch.set_num_threads(threads)
        from outfitrec.train.distributed import DistContext

        ctx = DistContext.from_env()  # under torchrun the ranks split the work; else a one-process no-op
        summary = extract_features(
            data, out, batch_size=batch_size, chunk_size=chunk_size, max_chunks=max_chunks, dist=ctx
        )
        # under torchrun rank 0 prints every rank's summary (in rank order), so the output is not interleaved
        summaries = ctx.all_gather_object(summary)
        if ctx.is_main:
            for s in summaries:
                print(json.dumps(s, indent=2))
