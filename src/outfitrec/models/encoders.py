"""Item encoders: item id -> embedding [d]. One class per `ModelConfig.encoder`.

Every encoder is a backbone (what reads the item's content) followed by the
projection head of method.md §2: Linear -> LayerNorm -> ReLU -> Dropout to d.
Item content (pixels, cached features, categories) comes from the catalogue
through `bind_catalogue` and is held in non-persistent buffers: it moves with
`.to(device)` but never enters a checkpoint, which holds weights only.

- "cnn": a CNN trained end to end on the item images, in two sizes (teacher,
  student; see CNN_PRESETS). Built for 28x28 grey items (Fashion-MNIST); other
  images (RGB photos of any size) are resized once, at bind time, to
  PHOTO_SIDE x PHOTO_SIDE, and the backbone's last feature map is
  adaptive-average-pooled to its fixed grid, so any size works.
- "pretrained": frozen ImageNet EfficientNet-Lite2 features (1280 per item),
  cached on disk by `outfitrec features` (models/features.py), + head.
- "features": any precomputed float matrix [n_items, F] (.npy) + head.
- "id": item-id embedding + category embedding + head, for data without
  images; an item not seen in training is represented by its category alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from outfitrec.data.outfits import Catalogue, DataError
from outfitrec.models.features import compute_features, efficientnet_parameter_count, writable_array

FMNIST_SIDE = 28  # grey items of this size are used as they are
PHOTO_SIDE = 56  # any other image is resized to this side at bind time (CPU-affordable; 2 x 28)
PRETRAINED_FEATURE_DIM = 1280  # EfficientNet-Lite2 head width

# CNN sizes. stem: (channels, kernel, stride); convs: (channels, stride) of 3x3 convs; the last
# map is pooled to grid x grid, flattened and projected to `hidden` by a fully connected layer.
# Most of the teacher's ~1.16M parameters sit in that layer, which costs few multiply-adds,
# so the teacher encodes several thousand 28x28 items/s on one CPU core; the student has
# 56.7k parameters (< 1/20 of the teacher's 1.16M). BatchNorm-free: a training batch holds each
# distinct item once, so batch statistics would depend on the batch's composition.
CNN_PRESETS: dict[str, dict] = {
    "teacher": {"stem": (48, 5, 2), "convs": ((96, 2), (128, 1)), "grid": 7, "hidden": 160},
    "student": {"stem": (16, 5, 2), "convs": ((32, 2), (48, 2)), "grid": 4, "hidden": 48},
}
# id/category embedding width per size preset. "tiny" (id encoder only) is for data where the id
# table dominates: 6/128 keeps the student's backbone under 1/20 of the teacher's (8/128 is 1/16).
ID_WIDTHS = {"teacher": 128, "student": 8, "tiny": 6}


class ProjectionHead(nn.Sequential):
    """Linear -> LayerNorm -> ReLU -> Dropout: backbone features to the item embedding of size d."""

    def __init__(self, in_dim: int, dim: int, dropout: float) -> None:
        super().__init__(nn.Linear(in_dim, dim), nn.LayerNorm(dim), nn.ReLU(), nn.Dropout(dropout))


class ItemEncoder(nn.Module):
    """Base class: `forward(item_ids [n]) -> [n, d]` once `bind_catalogue` has given the items' content."""

    def __init__(self, n_items: int) -> None:
        super().__init__()
        self.n_items = n_items
        self.bound = False

    def bind_catalogue(self, catalogue: Catalogue) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def backbone_parameter_count(self) -> int:
        """Parameters of the part that reads item content (for the teacher/student comparison)."""
        return sum(p.numel() for p in self.backbone_parameters())

    def backbone_parameters(self) -> list[nn.Parameter]:
        """The backbone's parameters that live in this module (a frozen external backbone has none)."""
        return []

    def _check_bound(self) -> None:
        if not self.bound:
            raise RuntimeError("the item encoder has no item content: call model.bind_catalogue(catalogue) first")


# --------------------------------------------------------------------------------------------- CNN


ADAM_BASE_FAN_IN = 64  # layers wider than this get their Adam steps scaled down (see AdamScaled)


class AdamScaled:
    """Mixin for conv / linear layers: weight used = stored weight * gain, gain = min(1, 64 / fan_in).

    Adam moves every weight by about lr per step whatever the layer's width, so
    a layer's outputs move ~fan_in times lr, and the correlated part of that move
    (the same for every item) swamped the wide layers: measured on Fashion-MNIST,
    the teacher's item features became near-identical (mean pairwise cosine 0.69
    -> 0.98) within 3 steps at lr 2e-3 and training stayed at chance. Storing
    the weight divided by `gain` (initial values unchanged) scales the layer's
    effective Adam step by `gain`, as muP prescribes for hidden layers, so every
    layer moves at the pace of a 64-input one (64: the teacher then left the
    chance plateau after ~110 steps instead of >200, the student after ~70, measured).
    Forward values are unchanged.
    """

    gain: float

    def _init_scaled(self) -> None:
        fan_in = self.weight[0].numel()
        self.gain = min(1.0, ADAM_BASE_FAN_IN / fan_in)
        nn.init.kaiming_normal_(self.weight, nonlinearity="relu")
        nn.init.zeros_(self.bias)
        with torch.no_grad():
            self.weight.div_(self.gain)

    def effective_weight(self) -> Tensor:
        return self.weight * self.gain


class ScaledConv2d(AdamScaled, nn.Conv2d):
    """nn.Conv2d with AdamScaled weights."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_scaled()

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.effective_weight(), self.bias, self.stride, self.padding)


class ScaledLinear(AdamScaled, nn.Linear):
    """nn.Linear with AdamScaled weights."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_scaled()

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.effective_weight(), self.bias)


class GreyOrRGBConv(ScaledConv2d):
    """A conv over 3 input channels that also takes 1-channel (grey) input.

    A grey image is an RGB image with equal channels, and convolving that equals
    convolving the grey image with the channel-summed kernel: the same function
    at a third of the cost, and one set of weights for grey and colour data.
    """

    def forward(self, x: Tensor) -> Tensor:
        weight = self.effective_weight()
        weight = weight.sum(dim=1, keepdim=True) if x.shape[1] == 1 else weight
        return F.conv2d(x, weight, self.bias, self.stride, self.padding)


class ConvBackbone(nn.Module):
    """BatchNorm-free CNN: stem conv, 3x3 convs (ReLU), pool to a fixed grid, flatten, Linear, ReLU."""

    def __init__(self, stem: tuple[int, int, int], convs: tuple, grid: int, hidden: int) -> None:
        super().__init__()
        channels, kernel, stride = stem
        self.stem = GreyOrRGBConv(3, channels, kernel, stride, kernel // 2)
        layers: list[nn.Module] = []
        for out, s in convs:
            layers += [ScaledConv2d(channels, out, 3, s, 1), nn.ReLU()]
            channels = out
        self.convs = nn.Sequential(*layers)
        self.grid = grid
        self.fc = ScaledLinear(channels * grid * grid, hidden)
        # per item LayerNorm before the last ReLU keeps the features' scale fixed (no batch statistics)
        self.norm = nn.LayerNorm(hidden)
        self.out_dim = hidden

    def forward(self, x: Tensor) -> Tensor:
        """x: float [n, 1 or 3, H, W] scaled to [-1, 1] -> [n, hidden]."""
        x = self.convs(torch.relu(self.stem(x)))
        if x.shape[-2:] != (self.grid, self.grid):  # not at the 28x28 design size
            x = F.adaptive_avg_pool2d(x, self.grid)
        return torch.relu(self.norm(self.fc(x.flatten(1))))


def images_to_tensor(images: np.ndarray, source: str = "catalogue") -> Tensor:
    """uint8 [n, H, W] or [n, H, W, 3] -> uint8 [n, C, side, side]: 28x28 grey kept, others resized to PHOTO_SIDE."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise DataError(f"{source}: images must be uint8, got {images.dtype}")
    if images.ndim == 3:
        t = torch.from_numpy(writable_array(images))[:, None]
    elif images.ndim == 4 and images.shape[-1] == 3:
        t = torch.from_numpy(writable_array(images)).permute(0, 3, 1, 2)
    else:
        raise DataError(f"{source}: images must be [n, H, W] or [n, H, W, 3], got shape {images.shape}")
    if t.shape[1] == 1 and t.shape[-2:] == (FMNIST_SIDE, FMNIST_SIDE):
        return t.contiguous()
    return resize_uint8(t, PHOTO_SIDE)


def resize_uint8(images: Tensor, side: int, chunk: int = 512) -> Tensor:
    """Resize uint8 [n, C, H, W] to [n, C, side, side] (bilinear, antialiased), in chunks to bound memory."""
    out = []
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].float()
        if x.shape[-2:] != (side, side):
            x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
        out.append(x.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out) if out else images.new_zeros((0, images.shape[1], side, side))


class CNNEncoder(ItemEncoder):
    """Pixels -> ConvBackbone (trained end to end) -> projection head."""

    def __init__(self, n_items: int, dim: int, size: str, dropout: float) -> None:
        super().__init__(n_items)
        self.backbone = ConvBackbone(**CNN_PRESETS[size])
        self.head = ProjectionHead(self.backbone.out_dim, dim, dropout)
        self.register_buffer("images", torch.zeros(0, 1, FMNIST_SIDE, FMNIST_SIDE, dtype=torch.uint8), persistent=False)
        self._lazy: Catalogue | None = None  # catalogue whose images are read from files on demand

    def bind_catalogue(self, catalogue: Catalogue) -> None:
        device = self.images.device
        if catalogue.images is not None:
            self.images = images_to_tensor(catalogue.images).to(device)
            self._lazy = None
        elif catalogue.image_paths is not None:
            # Photos are read from their files batch by batch: holding every photo in memory
            # does not scale; the "pretrained" encoder with cached features is the fast path.
            self._lazy = catalogue
        else:
            raise DataError(
                "catalogue: encoder 'cnn' needs item images (images or image_paths), the catalogue has none"
            )
        self.bound = True

    def pixels(self, item_ids: Tensor) -> Tensor:
        """uint8 [n, C, side, side] of the given items."""
        self._check_bound()
        if self._lazy is None:
            return self.images[item_ids]
        # photos differ in size: bring each to PHOTO_SIDE before stacking
        photos = [images_to_tensor(self._lazy.load_image(int(i))[None], "catalogue image file") for i in item_ids]
        if not photos:
            return torch.zeros(0, 3, PHOTO_SIDE, PHOTO_SIDE, dtype=torch.uint8, device=item_ids.device)
        return torch.cat(photos).to(item_ids.device)

    def encode_pixels(self, pixels: Tensor) -> Tensor:
        """uint8 pixels [n, 1 or 3, H, W] (as `pixels` gives them) -> item embeddings [n, d]; scaled to [-1, 1]."""
        return self.head(self.backbone(pixels.float() / 127.5 - 1.0))

    def forward(self, item_ids: Tensor) -> Tensor:
        return self.encode_pixels(self.pixels(item_ids))

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())


# ------------------------------------------------------------------------------ features (+ frozen)


def read_feature_matrix(path: str | Path, n_items: int | None = None, mmap: bool = False) -> np.ndarray:
    """A float matrix [n_items, F] from a .npy file, checked (no pickle)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such features file")
    try:
        feats = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy feature matrix ({exc})") from exc
    if feats.ndim != 2 or not np.issubdtype(feats.dtype, np.floating):
        raise DataError(f"{path}: features must be a float matrix [n_items, F], got {feats.dtype} {feats.shape}")
    if n_items is not None and feats.shape[0] != n_items:
        raise DataError(f"{path}: {feats.shape[0]} feature rows, but the catalogue has {n_items} items")
    return feats


class FeatureEncoder(ItemEncoder):
    """Precomputed features [n_items, F] (frozen) -> projection head.

    The matrix comes from `features_path` when set, else from the catalogue's
    own `features`; for "pretrained" without either, the frozen EfficientNet-
    Lite2 is run over the catalogue's images at bind time (slow on a CPU:
    precompute with `outfitrec features` instead).
    """

    def __init__(
        self, n_items: int, dim: int, feature_dim: int, dropout: float, features_path: str | None, pretrained: bool
    ) -> None:
        super().__init__(n_items)
        self.feature_dim = feature_dim
        self.features_path = features_path
        self.pretrained = pretrained
        self.head = ProjectionHead(feature_dim, dim, dropout)
        self.register_buffer("features", torch.zeros(0, feature_dim), persistent=False)

    def bind_catalogue(self, catalogue: Catalogue) -> None:
        if self.features_path is not None:
            feats = read_feature_matrix(self.features_path, catalogue.n_items)
            source = self.features_path
        elif catalogue.features is not None:
            feats, source = np.asarray(catalogue.features), "catalogue features"
        elif self.pretrained:
            feats, source = compute_features(catalogue), "EfficientNet-Lite2 on the catalogue images"
        else:
            raise DataError("model config: encoder 'features' needs features_path or a catalogue with features")
        if feats.shape != (catalogue.n_items, self.feature_dim):
            raise DataError(
                f"{source}: features have shape {feats.shape}, the model expects ({catalogue.n_items}, "
                f"{self.feature_dim})"
            )
        self.features = torch.from_numpy(np.asarray(feats, dtype=np.float32)).to(self.features.device)
        self.bound = True

    def forward(self, item_ids: Tensor) -> Tensor:
        self._check_bound()
        return self.head(self.features[item_ids])

    def backbone_parameter_count(self) -> int:
        """The frozen EfficientNet-Lite2 (outside the model, its features cached) for 'pretrained'; else 0."""
        if not self.pretrained:
            return 0
        return efficientnet_parameter_count()


# ---------------------------------------------------------------------------------------------- id


class IdEncoder(ItemEncoder):
    """Item-id embedding + category embedding -> projection head.

    `seen` (a persistent buffer, saved with the model) marks the items that
    occur in training; any other item is its category embedding alone, which
    every item of the category trains. In training mode each seen item's id
    embedding is also dropped with probability `id_dropout`, so the head
    learns to read the category-only embedding that unseen items get.

    `table` chooses where an item's id vector e_i [width] comes from:
    - "items": its own row of an [n_items, width] table (one free vector per item);
    - "users": the sum of the vectors of the users who have the item in training,
      e_i = sum_{v in U_i} p_v, from a [n_users, width] table P (the dual of an
      item table, as in EASE's or PureSVD's user-side form: with P = U S^-1 of the
      user x item matrix X = U S V^T, X^T P = V, the PureSVD item factors). The
      incidence U_i (buffers `item_ptr`, `item_users`: CSR of X^T) is data, saved
      with the weights like the history buffer; the parameters scale with the
      users, not the catalogue, and an item's vector generalises over its users.
      `set_item_users` fills it (OutfitModel.fit_collaborative does).
    """

    def __init__(
        self,
        n_items: int,
        n_categories: int,
        dim: int,
        size: str,
        dropout: float,
        id_dropout: float,
        id_std: float = 0.1,
        category_std: float = 1.0,
        table: str = "items",
        n_users: int | None = None,
    ) -> None:
        super().__init__(n_items)
        width = ID_WIDTHS[size]
        self.width = width
        self.id_std = id_std
        self.table = table
        if table == "users":  # e_i = sum of the vectors of item i's training users (see the class docstring)
            if n_users is None or n_users <= 0:
                raise ValueError("IdEncoder: id_table 'users' needs n_users")
            self.user_basis = nn.Embedding(n_users, width)
            nn.init.normal_(self.user_basis.weight, std=id_std)
            self.register_buffer("item_ptr", torch.zeros(n_items + 1, dtype=torch.long))
            self.register_buffer("item_users", torch.zeros(0, dtype=torch.long))
            # sorted keys item * n_users + user of the pairs that `exclude_users` removes (set_self_pairs)
            self.register_buffer("self_pairs", torch.zeros(0, dtype=torch.long))
        else:
            self.item_embedding = nn.Embedding(n_items, width)
            nn.init.normal_(self.item_embedding.weight, std=id_std)  # 0.1: items start near their category
        self.category_embedding = nn.Embedding(n_categories, width)
        nn.init.normal_(self.category_embedding.weight, std=category_std)
        self.head = ProjectionHead(width, dim, dropout)
        self.id_dropout = id_dropout
        self.register_buffer("seen", torch.ones(n_items, dtype=torch.bool))
        self.register_buffer("item_category", torch.zeros(0, dtype=torch.long), persistent=False)

    def bind_catalogue(self, catalogue: Catalogue) -> None:
        self.item_category = torch.from_numpy(catalogue.item_category.astype(np.int64)).to(self.seen.device)
        self.bound = True

    def set_seen_items(self, item_ids: Tensor | np.ndarray) -> None:
        """Only these items (the training items) use their own id embedding; the others fall back."""
        ids = torch.as_tensor(np.asarray(item_ids), dtype=torch.long, device=self.seen.device)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.n_items):
            raise DataError(f"set_seen_items: an item id is outside 0..{self.n_items - 1}")
        self.seen.zero_()
        self.seen[ids] = True

    @torch.no_grad()
    def set_item_users(self, users: np.ndarray, items: np.ndarray) -> None:
        """table 'users': the incidence U_i from training (user, item) pairs (duplicates counted once)."""
        users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
        n_users = self.user_basis.num_embeddings
        pairs = np.unique(items * n_users + users)
        it, us = pairs // n_users, pairs % n_users
        ptr = np.zeros(self.n_items + 1, dtype=np.int64)
        np.cumsum(np.bincount(it, minlength=self.n_items), out=ptr[1:])
        self.item_ptr = torch.from_numpy(ptr).to(self.seen.device)
        self.item_users = torch.from_numpy(us).to(self.seen.device)

    @torch.no_grad()
    def set_self_pairs(self, users: np.ndarray, items: np.ndarray) -> None:
        """table 'users': the (user, item) pairs whose user leaves the item's sum when scoring for that user.

        The pairs of the users' own training outfits (not their extra history, which a user brings at
        serving time too): a training positive's items then carry the other users' vectors only, as a
        held-out outfit's items do, so the model cannot score a positive by finding its own user in it
        (what EASE's zero diagonal does for an item-item model).
        """
        n_users = self.user_basis.num_embeddings
        keys = np.unique(np.asarray(items, dtype=np.int64) * n_users + np.asarray(users, dtype=np.int64))
        self.self_pairs = torch.from_numpy(keys).to(self.seen.device)

    @torch.no_grad()
    def init_user_basis(self, factors: Tensor | np.ndarray) -> None:
        """table 'users': P = `factors` [n_users, <= width], rescaled so that the seen items' e_i have RMS id_std."""
        f = torch.as_tensor(np.asarray(factors), dtype=self.user_basis.weight.dtype)
        weight = self.user_basis.weight
        if f.ndim != 2 or f.shape[0] != weight.shape[0] or f.shape[1] > self.width:
            raise ValueError(f"init_user_basis: factors {tuple(f.shape)} do not fit {weight.shape[0]} x {self.width}")
        weight[:, : f.shape[1]] = f.to(weight.device)
        weight[:, f.shape[1] :] = 0.0
        seen = torch.nonzero(self.seen).squeeze(-1)
        e = self.id_vectors(seen)[:, : f.shape[1]]
        rms = e.pow(2).mean().sqrt().clamp_min(1e-12)
        weight[:, : f.shape[1]] *= self.id_std / rms

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        for name in ("item_users", "self_pairs"):  # table 'users': their lengths are the data's
            key = prefix + name
            if self.table == "users" and key in state_dict:
                setattr(self, name, torch.zeros_like(state_dict[key], device=self.seen.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def init_from_factors(self, factors: Tensor | np.ndarray, item_ids: Tensor | np.ndarray) -> None:
        """Set the id embeddings of `item_ids` to `factors` [n, <= width], rescaled to RMS `id_std` per coordinate.

        The other items' rows and any columns beyond the factors' rank keep their random values
        (a global rescale keeps the factors' geometry: inner products stay proportional).
        """
        f = torch.as_tensor(np.asarray(factors), dtype=self.item_embedding.weight.dtype)
        ids = torch.as_tensor(np.asarray(item_ids), dtype=torch.long)
        if f.ndim != 2 or f.shape[0] != len(ids) or f.shape[1] > self.width:
            raise ValueError(f"init_from_factors: factors {tuple(f.shape)} do not fit {len(ids)} items x {self.width}")
        rms = f.pow(2).mean().sqrt().clamp_min(1e-12)
        weight = self.item_embedding.weight
        weight[ids.to(weight.device), : f.shape[1]] = (f * (self.id_std / rms)).to(weight.device)

    def _raw_vectors(self, item_ids: Tensor, exclude_users: Tensor | None = None) -> Tensor:
        """e_i [..., width] of `item_ids` [...]: the item's row, or (table 'users') the sum of its users' rows.

        exclude_users (table 'users', same shape as item_ids): slot j's item without the row of user
        exclude_users[j] where (that user, item) is one of `self_pairs`.
        """
        if self.table != "users":
            return self.item_embedding(item_ids)
        out = self._user_sums(item_ids)
        if exclude_users is not None and self.self_pairs.numel():
            keys = item_ids * self.user_basis.num_embeddings + exclude_users
            pos = torch.searchsorted(self.self_pairs, keys).clamp(max=self.self_pairs.numel() - 1)
            hit = (self.self_pairs[pos] == keys).unsqueeze(-1).to(out.dtype)
            out = out - hit * self.user_basis(exclude_users)
        return out

    def _user_sums(self, item_ids: Tensor) -> Tensor:
        """table 'users': sum_{v in U_i} p_v [..., width] for `item_ids` [...] (EmbeddingBag over the CSR)."""
        flat = item_ids.reshape(-1)
        starts, ends = self.item_ptr[flat], self.item_ptr[flat + 1]
        counts = ends - starts
        offsets = torch.cumsum(counts, 0) - counts
        within = torch.arange(int(counts.sum()), device=flat.device) - torch.repeat_interleave(offsets, counts)
        users = self.item_users[torch.repeat_interleave(starts, counts) + within]
        out = F.embedding_bag(users, self.user_basis.weight, offsets, mode="sum")
        return out.reshape(*item_ids.shape, self.width)

    def id_vectors(self, item_ids: Tensor, exclude_users: Tensor | None = None) -> Tensor:
        """The raw id embeddings [n, width] of `item_ids`, zero for unseen items (the collaborative part)."""
        vec = self._raw_vectors(item_ids, exclude_users)
        return vec * self.seen[item_ids].unsqueeze(-1).to(vec.dtype)

    def forward(self, item_ids: Tensor, exclude_users: Tensor | None = None) -> Tensor:
        self._check_bound()
        keep = self.seen[item_ids]
        if self.training and self.id_dropout > 0:
            keep = keep & (torch.rand(keep.shape, device=keep.device) >= self.id_dropout)
        emb = self.category_embedding(self.item_category[item_ids])
        emb = emb + self._raw_vectors(item_ids, exclude_users) * keep.unsqueeze(-1).to(emb.dtype)
        return self.head(emb)

    def backbone_parameters(self) -> list[nn.Parameter]:
        table = self.user_basis if self.table == "users" else self.item_embedding
        return [table.weight, self.category_embedding.weight]
