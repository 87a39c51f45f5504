"""ONNX export of a trained OutfitModel and an onnxruntime scorer the recommender runs on.

The model is exported as separate graphs, because the recommender uses its
stages separately (item embeddings are computed once per checkpoint, outfit
embeddings of one-item outfits are cached, partial outfits are scored in
the beam search):

- ``item_encoder.onnx``: the item's content -> item embedding [n, d]. The
  input depends on the encoder: ``pixels`` uint8 [n, C, H, W] for 'cnn'
  (the catalogue images as the model reads them), ``features`` float
  [n, F] for 'features'/'pretrained', ``item_ids`` int64 [n] for 'id'.
- ``outfit_encoder.onnx``: ``item_emb`` float [B, S, d] + ``mask`` bool
  [B, S] -> ``z`` [B, d] (the Set Transformer).
- ``user_scorer.onnx``: ``users`` int64 [B] + ``z`` [B, d] -> ``scores`` [B].
- ``outfit_scorer.onnx``: ``users``, ``item_emb``, ``mask`` -> ``scores``: the
  last two composed, for callers that score whole outfits in one call.

``manifest.json`` records the checkpoint's SHA-256 (a stale export is
redone), the encoder kind and the graphs' inputs. The legacy TorchScript
exporter (``dynamo=False``) is used: on these plain-matmul graphs it matches
the dynamo exporter to float precision and is about 20x faster; the dynamo
exporter is the fallback when it fails.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from outfitrec.data.io import atomic_file
from outfitrec.data.outfits import Catalogue, DataError, OutfitDataset, write_text_atomic

OPSET = 18
GRAPHS = ("item_encoder", "outfit_encoder", "user_scorer", "outfit_scorer")
MANIFEST = "manifest.json"


class _Graph(nn.Module):
    """One exported graph: `fn(*inputs)` over the parameters of `owner` (registered, so the export sees them)."""

    def __init__(self, owner: nn.Module, fn: Callable[..., Tensor]) -> None:
        super().__init__()
        self.owner = owner
        self.fn = fn

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.fn(*inputs)


def _item_graph(encoder: nn.Module, kind: str) -> _Graph:
    """The item encoder's graph: uint8 pixels [n, C, H, W] (as CNNEncoder.forward reads them), float features
    [n, F] (FeatureEncoder's head) or item ids [n] (IdEncoder, its category table baked in) -> item embeddings."""
    if kind == "pixels":
        return _Graph(encoder, lambda pixels: encoder.head(encoder.backbone(pixels.float() / 127.5 - 1.0)))
    if kind == "features":
        return _Graph(encoder, encoder.head)
    return _Graph(encoder, encoder)


def _outfit_scorer(model: nn.Module) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    return lambda users, item_emb, mask: model.score_embeddings(users, model.encode_outfits(item_emb, mask))


def encoder_kind(model: nn.Module) -> str:
    """'pixels', 'features' or 'item_ids': what the exported item encoder takes."""
    encoder = model.item_encoder
    if hasattr(encoder, "backbone") and hasattr(encoder, "pixels"):
        return "pixels"
    if hasattr(encoder, "features") and hasattr(encoder, "head"):
        return "features"
    return "item_ids"


def item_inputs(model: nn.Module, item_ids: np.ndarray) -> np.ndarray:
    """The exported item encoder's input for these items, read from the model's bound catalogue content."""
    ids = torch.as_tensor(np.asarray(item_ids), dtype=torch.long)
    kind = encoder_kind(model)
    if kind == "pixels":
        return model.item_encoder.pixels(ids).cpu().numpy()
    if kind == "features":
        return model.item_encoder.features[ids].cpu().numpy().astype(np.float32)
    return ids.numpy()


def _export(module: nn.Module, args: tuple, path: Path, names: list[str], output: str, dynamic: dict) -> None:
    """torch.onnx.export of one graph (legacy exporter, dynamo as the fallback) to a temp file, then rename."""
    module = module.eval()  # export restores the wrapper's mode recursively: the wrapper must be in eval mode
    with atomic_file(path) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            common = {"input_names": names, "output_names": [output], "opset_version": OPSET}
            try:
                torch.onnx.export(module, args, str(tmp), dynamic_axes=dynamic, dynamo=False, **common)
            except Exception:  # noqa: BLE001 - the legacy exporter may be missing an op: try dynamo
                dims = tuple({axis: torch.export.Dim.AUTO for axis in dynamic.get(n, {})} for n in names)
                # one spec per forward parameter: _Graph.forward has one, *inputs, hence the nesting
                torch.onnx.export(module, args, str(tmp), dynamic_shapes=(dims,), dynamo=True, **common)


def export_onnx(model: nn.Module, out_dir: str | Path, checkpoint_sha256: str = "") -> list[Path]:
    """Export the model's four graphs (see the module docstring) to out_dir; returns the written paths.

    The model must have its catalogue bound (the example inputs are real items). Raises DataError for an
    id encoder with id_table='users' (its item vectors are sums over a data-sized incidence: serve it with
    the torch backend).
    """
    if getattr(model.item_encoder, "table", "items") == "users":
        raise DataError("--backend onnx: a model with id_table 'users' is not exported; serve it with --backend torch")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    kind = encoder_kind(model)
    example_ids = np.arange(min(2, model.n_items))
    example = torch.from_numpy(item_inputs(model, example_ids))
    dim = model.config.dim
    emb = torch.randn(2, 3, dim, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[True, True, False], [True, True, True]])
    users = torch.zeros(2, dtype=torch.long)
    z = torch.randn(2, model.outfit_dim, generator=torch.Generator().manual_seed(1))
    batch_seq = {0: "batch", 1: "slots"}
    paths = {name: out_dir / f"{name}.onnx" for name in GRAPHS}
    with torch.no_grad():
        item_graph = _item_graph(model.item_encoder, kind)
        _export(item_graph, (example,), paths["item_encoder"], [kind], "item_emb", {kind: {0: "n"}})
        _export(
            _Graph(model, model.encode_outfits),
            (emb, mask),
            paths["outfit_encoder"],
            ["item_emb", "mask"],
            "z",
            {"item_emb": batch_seq, "mask": batch_seq},
        )
        batch = {0: "batch"}
        scorer_axes = {"users": batch, "z": batch}
        user_scorer = _Graph(model, model.score_embeddings)
        _export(user_scorer, (users, z), paths["user_scorer"], ["users", "z"], "scores", scorer_axes)
        _export(
            _Graph(model, _outfit_scorer(model)),
            (users, emb, mask),
            paths["outfit_scorer"],
            ["users", "item_emb", "mask"],
            "scores",
            {"users": {0: "batch"}, "item_emb": batch_seq, "mask": batch_seq},
        )
    manifest = {
        "format": "outfitrec-onnx",
        "checkpoint_sha256": checkpoint_sha256,
        "item_input": kind,
        "item_input_shape": list(example.shape[1:]),
        "item_input_dtype": str(example.dtype).replace("torch.", ""),
        "dim": dim,
        "opset": OPSET,
        "graphs": {name: p.name for name, p in paths.items()},
    }
    write_text_atomic(out_dir / MANIFEST, json.dumps(manifest, indent=1))
    return list(paths.values()) + [out_dir / MANIFEST]


class OnnxScorer:
    """`OutfitScorer` (plus `encode_items`) running the exported graphs in onnxruntime.

    item_content: a function item ids -> the item encoder's input (see `item_inputs`); the
    content (pixels, features) stays in the bound catalogue, the computation runs in onnxruntime.
    """

    def __init__(self, onnx_dir: str | Path, item_content, threads: int = 0) -> None:
        import onnxruntime as ort

        self.dir = Path(onnx_dir)
        self.manifest = read_manifest(self.dir)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.sessions = {
            name: ort.InferenceSession(
                str(self.dir / self.manifest["graphs"][name]), options, providers=["CPUExecutionProvider"]
            )
            for name in GRAPHS
        }
        self.item_content = item_content
        self.item_input = self.manifest["item_input"]

    @staticmethod
    def exists(onnx_dir: str | Path, checkpoint_sha256: str) -> bool:
        """Whether onnx_dir holds a complete export of this checkpoint."""
        try:
            manifest = read_manifest(Path(onnx_dir))
        except DataError:
            return False
        return manifest.get("checkpoint_sha256") == checkpoint_sha256 and all(
            (Path(onnx_dir) / f).is_file() for f in manifest["graphs"].values()
        )

    def encode_items(self, item_ids: np.ndarray) -> np.ndarray:
        content = self.item_content(np.asarray(item_ids, dtype=np.int64))
        return self.sessions["item_encoder"].run(None, {self.item_input: content})[0]

    def encode_outfits(self, item_emb: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feeds = {"item_emb": np.ascontiguousarray(item_emb, np.float32), "mask": np.ascontiguousarray(mask, bool)}
        return self.sessions["outfit_encoder"].run(None, feeds)[0]

    def score_embeddings(self, users: np.ndarray, z: np.ndarray) -> np.ndarray:
        feeds = {"users": np.asarray(users, np.int64), "z": np.ascontiguousarray(z, np.float32)}
        return self.sessions["user_scorer"].run(None, feeds)[0]

    def score_outfits(self, users: np.ndarray, item_emb: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Whole-outfit scores through outfit_scorer.onnx."""
        feeds = {
            "users": np.asarray(users, np.int64),
            "item_emb": np.ascontiguousarray(item_emb, np.float32),
            "mask": np.ascontiguousarray(mask, bool),
        }
        return self.sessions["outfit_scorer"].run(None, feeds)[0]


def read_manifest(onnx_dir: Path) -> dict:
    path = onnx_dir / MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: no ONNX export here (run `outfitrec export-onnx`)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    if manifest.get("format") != "outfitrec-onnx" or set(manifest.get("graphs", {})) != set(GRAPHS):
        raise DataError(f"{path}: not an outfitrec ONNX manifest (key format/graphs)")
    return manifest


def parity_report(
    model: nn.Module, onnx_dir: str | Path, dataset: OutfitDataset | Catalogue, n_outfits: int = 256, seed: int = 0
) -> dict[str, float]:
    """Max |onnxruntime - PyTorch| of each graph on real items and random partial outfits of the catalogue."""
    catalogue = dataset.catalogue if isinstance(dataset, OutfitDataset) else dataset
    model = model.eval()
    scorer = OnnxScorer(onnx_dir, lambda ids: item_inputs(model, ids))
    rng = np.random.default_rng(seed)
    ids = rng.choice(catalogue.n_items, size=min(catalogue.n_items, 512), replace=False)
    n_users = model.n_users
    items = rng.integers(0, catalogue.n_items, size=(n_outfits, 4))
    mask = rng.random((n_outfits, 4)) < 0.8
    mask[:, 0] = True  # at least one real item
    users = rng.integers(0, n_users, size=n_outfits)
    with torch.no_grad():
        ref_items = model.encode_items(torch.from_numpy(ids)).numpy()
        emb = model.encode_items(torch.from_numpy(items.reshape(-1))).reshape(n_outfits, 4, -1)
        ref_z = model.encode_outfits(emb, torch.from_numpy(mask))
        ref_scores = model.score_embeddings(torch.from_numpy(users), ref_z).numpy()
        ref_forward = model(torch.from_numpy(users), torch.from_numpy(items), torch.from_numpy(mask)).numpy()
    emb_np = emb.numpy()
    z = scorer.encode_outfits(emb_np, mask)
    return {
        "item_encoder": float(np.abs(scorer.encode_items(ids) - ref_items).max()),
        "outfit_encoder": float(np.abs(z - ref_z.numpy()).max()),
        "user_scorer": float(np.abs(scorer.score_embeddings(users, ref_z.numpy()) - ref_scores).max()),
        "outfit_scorer": float(np.abs(scorer.score_outfits(users, emb_np, mask) - ref_forward).max()),
    }
