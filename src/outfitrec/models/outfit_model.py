"""The whole outfit scorer of method.md §2: item encoder -> Set Transformer -> user scorer.

`OutfitModel(users, items, mask)` scores outfits for users. Items are global
catalogue ids in a padded [.., S] array with a boolean mask; each distinct
item of a call is encoded once (a training batch of 1 positive + K random-mix
negatives repeats items heavily), then the item embeddings are scattered back
into the [B, S, d] outfit grid with zeros in padded slots, which the Set
Transformer's masks ignore anyway.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pydantic
import torch
from torch import Tensor, nn

from outfitrec.data.outfits import Catalogue, DataError
from outfitrec.models.encoders import (
    ID_WIDTHS,
    PRETRAINED_FEATURE_DIM,
    CNNEncoder,
    FeatureEncoder,
    IdEncoder,
    ItemEncoder,
    read_feature_matrix,
)
from outfitrec.models.history import HistoryScorer
from outfitrec.models.scorer import AnchorScorer, DotScorer
from outfitrec.models.scoring import item_grids
from outfitrec.models.set_transformer import SetTransformer


class ModelConfig(pydantic.BaseModel, extra="forbid"):
    """What a model is: its item encoder, sizes and scorer. Saved with every checkpoint."""

    encoder: Literal["cnn", "pretrained", "features", "id"] = pydantic.Field(
        "cnn",
        description="item encoder: 'cnn' trained end to end on item images; 'pretrained' frozen EfficientNet-Lite2 "
        "features (cached by `outfitrec features`) + MLP; 'features' any .npy [n_items, F] + MLP; 'id' item-id + "
        "category embeddings (data without images)",
    )
    size: Literal["teacher", "student", "tiny"] = pydantic.Field(
        "teacher",
        description="backbone size preset: CNN width/depth, or id-embedding width (teacher 128, student 8, "
        "tiny 6: encoder 'id' only)",
    )
    dim: int = pydantic.Field(128, gt=0, description="item and outfit embedding size d (LPAE: 128)")
    heads: int = pydantic.Field(4, gt=0, description="attention heads of the Set Transformer (must divide dim)")
    scorer: Literal["anchors", "dot"] = pydantic.Field(
        "anchors", description="'anchors': sum of cosines to K anchors per user (LPAE); 'dot': user embedding . z"
    )
    n_anchors: int = pydantic.Field(64, gt=0, description="K anchors per user for scorer='anchors' (LPAE: 64)")
    anchor_pool: Literal["sum", "lse"] = pydantic.Field(
        "sum",
        description="scorer='anchors': 'sum' of the K cosines (LPAE, the paper); 'lse' (ours): "
        "K * tau * log mean_k exp(cos_k / tau), tau = anchor_temperature, a soft max that keeps a user's "
        "tastes apart (the sum scores her as their average). 'lse' is served by the model itself: its "
        "anchors do not collapse to one vector",
    )
    anchor_temperature: float = pydantic.Field(0.1, gt=0.0, description="tau of anchor_pool='lse'")
    outfit_sums: Literal["none", "items", "items+pairs", "routed"] = pydantic.Field(
        "none",
        description="ours (issue 15): terms appended to the Set Transformer's outfit embedding z, FHN-style "
        "(Lu et al. 2019: outfit score = user-item terms + item-item compatibility terms). 'items': "
        "sum_i e_i / sqrt(n); 'items+pairs': also sum_{i<j} |A e_i - A e_j| / sqrt(n_pairs) (A: learned d x d). "
        "'routed': both split by a learned soft group of each item (models/outfit_model.py RoutedSums). "
        "z stays user-independent (cached and shared across users when serving); its width outfit_dim is dim "
        "plus that of the sums (dim, 2 dim, or RoutedSums.width()). Unnormalised sums let the score grow with "
        "how far an outfit goes in a user's direction, which the LayerNorm'd z and the anchors' cosine cap; "
        "use with scorer 'dot'. "
        "'none': the paper's LPAE",
    )
    outfit_set: bool = pydantic.Field(
        True,
        description="with outfit_sums: keep the Set Transformer's z in the outfit embedding (True) or score the "
        "sums alone (False: a user-outfit form close to FHN's, fewer user parameters)",
    )
    blocks: int = pydantic.Field(
        2, ge=0, description="SAB blocks of the Set Transformer before its pooling (PMA) block (LPAE: 2; 0: PMA only)"
    )
    user_dim: int | None = pydantic.Field(
        None,
        gt=0,
        description="width of the user side: scorer='anchors': of the anchors and of the projection W z they are "
        "compared with; scorer='dot' (ours): of e_u, scored against W z (W: outfit_dim -> user_dim, no bias; "
        "none when equal). Default: the outfit embedding's width. The anchors of a user collapse to one vector of "
        "this width when serving (recommend/fast.py), so it is the served bytes per user / 4 (float32)",
    )
    serving_dtype: Literal["float32", "float16"] = pydantic.Field(
        "float32",
        description="storage of the recommender's cached item embeddings and collapsed user vectors "
        "(recommend/engine.py, recommend/fast.py); computation stays float32. Training and checkpoints: float32",
    )
    dropout: float = pydantic.Field(0.1, ge=0.0, lt=1.0, description="dropout of the item head and attention blocks")
    features_path: str | None = pydantic.Field(
        None, description="feature matrix .npy for encoder='features'/'pretrained' (else the catalogue's features)"
    )
    feature_dim: int | None = pydantic.Field(
        None,
        gt=0,
        description="width F of the feature matrix (encoder='features'); read from features_path when not given",
    )
    id_dropout: float = pydantic.Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="encoder='id': probability, in training, of treating a seen item as unseen (category only), "
        "so the fallback for items unseen in training is learned",
    )
    id_init: Literal["normal", "svd"] = pydantic.Field(
        "normal",
        description="encoder='id': initial item-id embeddings. 'normal': N(0, id_init_std^2); 'svd': the right "
        "singular vectors of the binary user x item matrix of the training outfits (plus the dataset's extra "
        "user history), top components first, rescaled to RMS id_init_std (PureSVD factors); items outside "
        "that matrix keep random rows",
    )
    id_table: Literal["items", "users"] = pydantic.Field(
        "items",
        description="encoder='id': where an item's id vector comes from. 'items': a free row per item "
        "[n_items, width]; 'users': the sum of the vectors of the users who have the item in training, from a "
        "[n_users, width] table (parameters scale with the users, not the catalogue; with id_init='svd' it starts "
        "at the same PureSVD factors)",
    )
    id_exclude_self: bool = pydantic.Field(
        False,
        description="id_table='users': in training, a user's candidates are scored with each item's sum "
        "without that user's own row where the item is in the user's training outfits (as a held-out outfit's "
        "items are). Measured on DiFashion (seed 0): valid AUC 0.674 / 0.658 after epochs 1-2 against 0.679 / "
        "0.696 without, so off by default",
    )
    id_init_std: float = pydantic.Field(
        0.1,
        gt=0.0,
        description="encoder='id': scale (RMS per coordinate) of the initial item-id embeddings; the category "
        "embeddings start at 1.0",
    )
    user_history: Literal["none", "mean"] = pydantic.Field(
        "none",
        description="encoder='id': 'mean' adds a collaborative user term computed from the user's own training "
        "items (and extra history): gain * <mean_{i in o} R e_i, mean_{j in H_u} R e_j> (models/history.py), "
        "beside the anchors; 'none': anchors only",
    )
    history_source: Literal["all", "extra"] = pydantic.Field(
        "all",
        description="user_history: the items H_u a user is computed from. 'all': the items of the user's training "
        "outfits plus the dataset's extra history (OutfitDataset.history); 'extra': the extra history only, so a "
        "training positive's own items are not in its user's representation (no self-match shortcut); 'extra' "
        "on a dataset without extra history falls back to 'all'",
    )
    history_size: int = pydantic.Field(
        1024, gt=0, description="user_history: at most this many distinct items kept per user (seeded subset)"
    )

    @pydantic.model_validator(mode="after")
    def _check_sizes(self) -> ModelConfig:
        if self.dim % self.heads:
            raise ValueError(f"dim={self.dim} must be divisible by heads={self.heads}")
        if self.size == "tiny" and self.encoder != "id":
            raise ValueError(f"size 'tiny' is an id-embedding width: it needs encoder 'id', not {self.encoder!r}")
        id_only = self.id_init != "normal" or self.user_history != "none" or self.id_table != "items"
        if self.encoder != "id" and id_only:
            raise ValueError("id_init='svd', id_table='users' and user_history need encoder 'id'")
        if self.anchor_pool != "sum" and self.scorer != "anchors":
            raise ValueError(f"anchor_pool={self.anchor_pool!r} needs scorer 'anchors' (the dot scorer has no anchors)")
        if not self.outfit_set and self.outfit_sums == "none":
            raise ValueError("outfit_set=false needs outfit_sums (the outfit embedding would be empty)")
        if self.outfit_sums != "none" and self.user_history != "none":
            raise ValueError("outfit_sums needs user_history 'none' (both extend the outfit embedding z)")
        if self.user_history != "none" and self.dim < 2:
            raise ValueError("user_history needs dim >= 2 (half of z carries the collaborative channel)")
        return self


# Whole-model students (issue 14): every part the serving path pays for is shrunk, not only the backbone.
# Applied over a student config (size 'student': the small CNN). Outfit scoring from cached item embeddings
# runs the Set Transformer at width dim with `blocks` SABs; a user is served as one vector of user_dim
# entries in serving_dtype. "whole" keeps one SAB (item-item interactions), "whole-pma" pools the items
# by attention only; "whole-dot" pools by attention too, appends the FHN-style sum of the items (outfit_sums,
# unnormalised) and scores <e_u, W z> with a 12-d e_u (the dot scorer, no cosine cap); "whole-dot-pairs" also
# appends the sum of the pairs' |A e_i - A e_j| (seed 0, CL: valid AUC 0.8446 against 0.8416, but 9x the
# teacher's outfit scoring against 12.4x: the pair terms cost more than the attention).
# Measured by `outfitrec experiment compress` (docs/results/compress.md).
SERVING_PRESETS: dict[str, dict] = {
    "whole": {"dim": 16, "heads": 1, "blocks": 1, "n_anchors": 4, "user_dim": 12, "serving_dtype": "float16"},
    "whole-pma": {"dim": 16, "heads": 2, "blocks": 0, "n_anchors": 4, "user_dim": 12, "serving_dtype": "float16"},
    "whole-dot": {
        "dim": 16,
        "heads": 2,
        "blocks": 0,
        "scorer": "dot",
        "outfit_sums": "items",
        "user_dim": 12,
        "serving_dtype": "float16",
    },
    "whole-dot-pairs": {
        "dim": 16,
        "heads": 2,
        "blocks": 0,
        "scorer": "dot",
        "outfit_sums": "items+pairs",
        "user_dim": 12,
        "serving_dtype": "float16",
    },
}


def outfit_dim(config: ModelConfig) -> int:
    """Width of the outfit embedding z the scorer reads: dim (the Set Transformer's) + that of outfit_sums."""
    sums = {"none": 0, "items": config.dim, "items+pairs": 2 * config.dim}.get(config.outfit_sums)
    sums = RoutedSums.width() if sums is None else sums
    return (config.dim if config.outfit_set else 0) + sums


def collab_dim(config: ModelConfig) -> int:
    """Width c of the collaborative channel at the end of z (user_history), else 0."""
    if config.user_history == "none":
        return 0
    return min(ID_WIDTHS[config.size], config.dim // 2)


def build_item_encoder(
    config: ModelConfig, n_items: int, n_categories: int, n_users: int | None = None
) -> tuple[ItemEncoder, ModelConfig]:
    """The encoder for `config`, and the config with `feature_dim` resolved (so a checkpoint is self-contained)."""
    if config.encoder == "cnn":
        return CNNEncoder(n_items, config.dim, config.size, config.dropout), config
    if config.encoder == "id":
        head_dim = config.dim - collab_dim(config)  # the collaborative channel bypasses the head
        enc = IdEncoder(
            n_items,
            n_categories,
            head_dim,
            config.size,
            config.dropout,
            config.id_dropout,
            config.id_init_std,
            table=config.id_table,
            n_users=n_users,
        )
        return enc, config
    if config.encoder == "pretrained":
        feature_dim = PRETRAINED_FEATURE_DIM
    elif config.feature_dim is not None:
        feature_dim = config.feature_dim
    elif config.features_path is not None:
        feature_dim = int(read_feature_matrix(config.features_path, mmap=True).shape[1])
    else:
        raise DataError("model config: encoder 'features' needs features_path or feature_dim")
    if config.feature_dim is not None and config.feature_dim != feature_dim:
        raise DataError(
            f"model config: feature_dim={config.feature_dim}, but encoder '{config.encoder}' has {feature_dim}"
        )
    enc = FeatureEncoder(
        n_items, config.dim, feature_dim, config.dropout, config.features_path, config.encoder == "pretrained"
    )
    return enc, config.model_copy(update={"feature_dim": feature_dim})


def outfit_sum_terms(item_emb: Tensor, mask: Tensor, pair_project: nn.Module | None) -> list[Tensor]:
    """FHN-style first- (and second-) order sums of an outfit's item embeddings [B, S, d] -> [B, d] each.

    sum_i e_i / sqrt(n); with pair_project A: sum_{i<j} |A e_i - A e_j| / sqrt(n_pairs). Masked slots add
    nothing; an outfit of one item has no pair (its pair term is 0).
    """
    m = mask.bool().unsqueeze(-1).to(item_emb.dtype)  # [B, S, 1]
    terms = [(item_emb * m).sum(-2) / m.sum(-2).clamp_min(1.0).sqrt()]
    if pair_project is not None:
        a = pair_project(item_emb)  # [B, S, d]
        diff = (a.unsqueeze(2) - a.unsqueeze(1)).abs()  # [B, S, S, d]
        w, norm = pair_weights(mask, item_emb.dtype)
        terms.append((diff * w[..., None]).sum(dim=(1, 2)) / norm)
    return terms


def pair_weights(mask: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """The pairs i < j of real items: weights [B, S, S] (1 or 0) and sqrt(n_pairs) [B, 1] (at least 1)."""
    m = mask.bool().to(dtype)
    upper = torch.triu(torch.ones(m.shape[-1], m.shape[-1], dtype=dtype, device=m.device), 1)
    w = m.unsqueeze(2) * m.unsqueeze(1) * upper
    return w, w.sum(dim=(1, 2)).clamp_min(1.0).sqrt()[:, None]


class RoutedSums(nn.Module):
    """Item and pair sums routed by a learned soft group of each item (a category the encoder infers).

    g_i = softmax(G e_i) over C groups; items: sum_i g_i (x) P e_i / sqrt(n) [C * r];
    pairs: sum_{i<j} sym(g_i (x) g_j) (x) |Q e_i - Q e_j| / sqrt(n_pairs) [C * C * r2], sym(M) = (M + M^T) / 2
    (so the order of the items does not matter). So a user vector holds
    a weight per (group, feature) and per (group pair, feature): per-slot preferences and per-slot-pair
    compatibility (FHN's form) without category ids at scoring time.
    """

    GROUPS, RANK, PAIR_RANK = 5, 8, 4

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, self.GROUPS)
        self.item = nn.Linear(dim, self.RANK)
        self.pair = nn.Linear(dim, self.PAIR_RANK)

    @classmethod
    def width(cls) -> int:
        return cls.GROUPS * cls.RANK + cls.GROUPS * cls.GROUPS * cls.PAIR_RANK

    def forward(self, e: Tensor, mask: Tensor) -> Tensor:
        m = mask.bool().unsqueeze(-1).to(e.dtype)  # [B, S, 1]
        g = torch.softmax(self.gate(e), dim=-1) * m  # [B, S, C]
        items = torch.einsum("bsc,bsr->bcr", g, self.item(e)).flatten(1) / m.sum(-2).clamp_min(1.0).sqrt()
        q = self.pair(e)
        diff = (q.unsqueeze(2) - q.unsqueeze(1)).abs()  # [B, S, S, r2]
        w, norm = pair_weights(mask, e.dtype)
        gg = torch.einsum("bic,bjd->bijcd", g, g)
        gg = (gg + gg.transpose(-1, -2)) * w[..., None, None] / 2  # symmetric: order-free
        pairs = torch.einsum("bijcd,bijr->bcdr", gg, diff).flatten(1) / norm
        return torch.cat([items, pairs], dim=-1)


class OutfitModel(nn.Module):
    """Scores (user, outfit) pairs; see the module docstring and docs/DESIGN.md's model contract."""

    def __init__(self, config: ModelConfig, n_users: int, n_items: int, n_categories: int) -> None:
        super().__init__()
        if min(n_users, n_items, n_categories) <= 0:
            raise DataError(f"model: n_users={n_users}, n_items={n_items}, n_categories={n_categories} must be > 0")
        self.item_encoder, self.config = build_item_encoder(config, n_items, n_categories, n_users)
        self.n_users, self.n_items, self.n_categories = n_users, n_items, n_categories
        self.outfit_encoder = SetTransformer(config.dim, config.heads, config.dropout, config.blocks)
        self.outfit_dim = outfit_dim(config)
        self.pair_project = nn.Linear(config.dim, config.dim) if config.outfit_sums == "items+pairs" else None
        self.routed = RoutedSums(config.dim) if config.outfit_sums == "routed" else None
        if config.scorer == "anchors":
            self.scorer: AnchorScorer | DotScorer = AnchorScorer(
                n_users,
                self.outfit_dim,
                config.n_anchors,
                config.user_dim or self.outfit_dim,
                config.anchor_pool,
                config.anchor_temperature,
            )
        else:
            self.scorer = DotScorer(n_users, self.outfit_dim, config.user_dim)
        self.history_scorer: HistoryScorer | None = None
        if config.user_history != "none":
            width = ID_WIDTHS[config.size]
            self.history_scorer = HistoryScorer(n_users, width, collab_dim(config), config.history_size)

    # ---------------------------------------------------------------- content

    def bind_catalogue(self, catalogue: Catalogue) -> None:
        """Give the encoder the items' content (images, features, categories); not saved in checkpoints."""
        if catalogue.n_items != self.n_items:
            raise DataError(f"catalogue has {catalogue.n_items} items, the model was built for {self.n_items}")
        if catalogue.n_categories != self.n_categories:
            raise DataError(
                f"catalogue has {catalogue.n_categories} categories, the model was built for {self.n_categories}"
            )
        self.item_encoder.bind_catalogue(catalogue)

    def set_seen_items(self, item_ids: Tensor | np.ndarray) -> None:
        """Tell the model which items occur in training (encoder 'id': the others fall back to their category).

        Saved in the checkpoint. A no-op for content encoders, which read any item the same way.
        """
        if isinstance(self.item_encoder, IdEncoder):
            self.item_encoder.set_seen_items(item_ids)

    def adopt_data_buffers(self, state: dict[str, Tensor]) -> None:
        """Resize the buffers whose length is the data's (id_table='users': the incidence) to `state`'s."""
        if getattr(self.item_encoder, "table", "items") != "users":
            return
        for name in ("item_users", "self_pairs"):
            key = f"item_encoder.{name}"
            if key in state:
                setattr(self.item_encoder, name, torch.zeros_like(state[key], device=self.item_encoder.seen.device))

    @torch.no_grad()
    def fit_collaborative(
        self,
        train_users: np.ndarray,
        train_items: np.ndarray,
        extra_users: np.ndarray | None = None,
        extra_items: np.ndarray | None = None,
        seed: int = 0,
    ) -> None:
        """Use the training (user, item) pairs for id_init='svd' / user_history.

        train_*: the items of the users' training outfits; extra_*: the dataset's extra user history
        (OutfitDataset.history), if any. Both enter the user x item matrix and the seen items; the
        history buffer holds both or the extra only (`history_source`).

        Marks their items as seen, initialises the id table from the user x item
        matrix's right singular vectors (id_init='svd'), fills the users' history
        buffer and sets the history term's gain so that it starts at unit spread.
        A no-op when neither option is on. Uses no torch RNG.
        """
        cfg = self.config
        if cfg.id_init == "normal" and cfg.user_history == "none" and cfg.id_table == "items":
            return
        enc = self.item_encoder
        assert isinstance(enc, IdEncoder)
        users = np.asarray(train_users, dtype=np.int64)
        items = np.asarray(train_items, dtype=np.int64)
        has_extra = extra_users is not None and extra_items is not None and len(extra_items) > 0
        if has_extra:
            extra_users = np.asarray(extra_users, dtype=np.int64)
            extra_items = np.asarray(extra_items, dtype=np.int64)
            users, items = np.concatenate([users, extra_users]), np.concatenate([items, extra_items])
        seen = np.unique(items)
        enc.set_seen_items(seen)
        if cfg.id_table == "users":
            enc.set_item_users(users, items)
            if cfg.id_exclude_self:  # the training outfits' pairs that the extra history does not also hold
                own = np.asarray(train_items, dtype=np.int64) * self.n_users + np.asarray(train_users, dtype=np.int64)
                if has_extra:
                    own = np.setdiff1d(own, extra_items * self.n_users + extra_users)
                enc.set_self_pairs(own % self.n_users, own // self.n_users)
            if cfg.id_init == "svd":
                enc.init_user_basis(user_basis_factors(users, items, self.n_users, seen, enc.width))
        elif cfg.id_init == "svd":
            enc.init_from_factors(*item_factors(users, items, self.n_users, seen, enc.width))
        if self.history_scorer is not None:
            hs = self.history_scorer
            if cfg.history_source == "extra" and has_extra:
                hs.set_history(extra_users, extra_items, seed)
            else:
                hs.set_history(users, items, seed)
            spread = []
            for start in range(0, self.n_users, 64):  # <R e_i, h_u> over each user's own items
                u = torch.arange(start, min(start + 64, self.n_users), device=hs.history.device)
                h = hs.user_vectors(u, enc.id_vectors)
                ids = hs.history[u]
                vec = hs.project(enc.id_vectors(ids.clamp(min=0)))
                spread.append(((vec * h.unsqueeze(1)).sum(-1))[ids >= 0])
            std = float(torch.cat(spread).std()) if spread else 0.0
            hs.gain.fill_(1.0 / std if std > 0 else 1.0)

    # ---------------------------------------------------------------- stages

    def encode_items(self, item_ids: Tensor, exclude_users: Tensor | None = None) -> Tensor:
        """item ids [n] -> item embeddings [n, d] (cache them in eval mode for recommendation).

        user_history: the last c entries are the collaborative channel R e_i (outside the head).
        exclude_users [n] (training, id_table='users' with id_exclude_self): each item without the row of the
        user it is scored for (IdEncoder.set_self_pairs); None everywhere else.
        """
        if exclude_users is None:
            emb = self.item_encoder(item_ids)
        else:
            emb = self.item_encoder(item_ids, exclude_users=exclude_users)
        if self.history_scorer is not None:
            ids = self.item_encoder.id_vectors(item_ids, exclude_users)
            emb = torch.cat([emb, self.history_scorer.project(ids)], dim=-1)
        return emb

    @property
    def excludes_self(self) -> bool:
        """Whether training scores each user's candidates without that user's own rows (id_exclude_self)."""
        return self.config.encoder == "id" and self.config.id_table == "users" and self.config.id_exclude_self

    def encode_outfits(self, item_emb: Tensor, mask: Tensor) -> Tensor:
        """Item embeddings [B, S, d] + mask [B, S] -> outfit embeddings z [B, d].

        user_history: z's last c entries are the mean of the real items' channels (padded slots ignored).
        outfit_sums: z = [Set Transformer z, sum_i e_i / sqrt(n)(, sum_{i<j} |A e_i - A e_j| / sqrt(n_pairs))],
        padded slots ignored; [B, outfit_dim].
        """
        parts = [self.outfit_encoder(item_emb, mask)] if self.config.outfit_set else []
        if self.routed is not None:
            parts.append(self.routed(item_emb, mask))
        elif self.config.outfit_sums != "none":
            parts.extend(outfit_sum_terms(item_emb, mask, self.pair_project))
        z = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        if self.history_scorer is not None:
            c = self.history_scorer.dim
            m = mask.bool().unsqueeze(-1).to(item_emb.dtype)
            zc = (item_emb[..., -c:] * m).sum(-2) / m.sum(-2).clamp_min(1.0)
            z = torch.cat([z[..., :-c], zc], dim=-1)
        return z

    def score_embeddings(self, users: Tensor, z: Tensor) -> Tensor:
        """users [B] + outfit embeddings [B, d] -> scores [B] (anchors, plus the history term when on)."""
        s = self.scorer(users, z)
        if self.history_scorer is not None:
            c = self.history_scorer.dim
            s = s + self.history_scorer(users, z[..., -c:], self.item_encoder.id_vectors)
        return s

    def _grid_embeddings(self, items: Tensor, mask: Tensor, item_table: Tensor | None = None) -> Tensor:
        """[B, S] ids -> [B, S, d]: each distinct real item encoded once (or read from item_table)."""
        mask = mask.bool()
        real = items[mask]
        if real.numel() and (int(real.min()) < 0 or int(real.max()) >= self.n_items):
            raise DataError(f"model: an item id of an unmasked slot is outside 0..{self.n_items - 1}")
        grid = item_grids(self.encode_items, [(items, mask)], item_table)[0]
        # a table stored in another dtype (ModelConfig.serving_dtype float16) is computed on in the model's
        dtype = self.outfit_encoder.pool.seed.dtype
        return grid if grid.dtype == dtype else grid.to(dtype)

    def outfit_embeddings(self, items: Tensor, mask: Tensor, item_table: Tensor | None = None) -> Tensor:
        """Outfits [..., S] (ids + mask) -> z [..., d], for scoring and for the contrastive head.

        item_table: optional cached item embeddings [n_items, d] (from `encode_all_items`; float16 storage is
        read back as the model's float32).
        """
        lead = items.shape[:-1]
        items2, mask2 = items.reshape(-1, items.shape[-1]), mask.reshape(-1, mask.shape[-1])
        z = self.encode_outfits(self._grid_embeddings(items2, mask2, item_table), mask2)
        return z.reshape(*lead, z.shape[-1])

    def forward(self, users: Tensor, items: Tensor, mask: Tensor, item_table: Tensor | None = None) -> Tensor:
        """Scores of outfits for users: items, mask [..., S]; users broadcastable to items.shape[:-1].

        E.g. users [B] with items [B, S] -> [B]; users [B, 1] with items [B, 1+K, S] -> [B, 1+K].
        """
        z = self.outfit_embeddings(items, mask, item_table)
        users = torch.broadcast_to(users, items.shape[:-1]).reshape(-1)
        return self.score_embeddings(users, z.reshape(-1, z.shape[-1])).reshape(items.shape[:-1])

    @torch.no_grad()
    def encode_all_items(self, batch_size: int = 4096, item_ids: Tensor | None = None) -> Tensor:
        """Item embeddings [n_items, d] (or of item_ids) computed in eval mode, for cached scoring."""
        was_training = self.training
        self.eval()
        try:
            device = next(self.parameters()).device
            ids = torch.arange(self.n_items, device=device) if item_ids is None else item_ids.to(device)
            parts = [self.encode_items(ids[s : s + batch_size]) for s in range(0, len(ids), batch_size)]
            return torch.cat(parts) if parts else torch.zeros(0, self.config.dim, device=device)
        finally:
            self.train(was_training)

    # ---------------------------------------------------------------- training helpers

    def regularizer(self, users: Tensor | None = None) -> Tensor:
        """The anchors' tr(G) - log det G, mean over users (or over the given users); 0 for the dot scorer.

        The loop applies the weight (method.md: 1e-2).
        """
        return self.scorer.regularizer(users)

    def bytes_per_user(self) -> dict[str, int]:
        """{'stored', 'served'}: bytes per user of the checkpoint's user parameters (float32: the K anchors, or the
        dot scorer's embedding, plus the history buffer of item ids when user_history is on), and of the one vector
        per user the recommender keeps (`recommend/fast.py` CollapsedScorer: width user_dim, default outfit_dim, +
        the history channel c, in `serving_dtype`)."""
        cfg = self.config
        served_width = cfg.user_dim or self.outfit_dim
        if isinstance(self.scorer, AnchorScorer):
            stored = self.scorer.anchors[0].numel() * self.scorer.anchors.element_size()
        else:
            stored = self.scorer.users.weight[0].numel() * self.scorer.users.weight.element_size()
        if self.history_scorer is not None:
            served_width += self.history_scorer.dim
            stored += self.history_scorer.history[0].numel() * self.history_scorer.history.element_size()
        itemsize = 2 if cfg.serving_dtype == "float16" else 4
        return {"stored": int(stored), "served": int(served_width * itemsize)}

    def parameter_counts(self) -> dict[str, int]:
        """{'backbone', 'rest', 'total'}: the item backbone (frozen pretrained one included) and everything else."""
        backbone = self.item_encoder.backbone_parameter_count()
        inside = {id(p) for p in self.item_encoder.backbone_parameters()}
        rest = sum(p.numel() for p in self.parameters() if id(p) not in inside)
        return {"backbone": backbone, "rest": rest, "total": backbone + rest}


def _svd(
    users: np.ndarray, items: np.ndarray, n_users: int, seen: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U [n_users, k'], sigma [k'], V [len(seen), k']) of the binary user x item matrix, top components first.

    k' = min(k, rank bound); deterministic (fixed ARPACK start vector).
    """
    import scipy.sparse as sp
    from scipy.sparse.linalg import svds

    column = np.searchsorted(seen, items)
    X = sp.csr_matrix((np.ones(len(items)), (users, column)), shape=(n_users, len(seen)), dtype=np.float64)
    X.sum_duplicates()
    X.data[:] = 1.0  # binary
    k = min(int(k), min(X.shape) - 1)
    if k < 1:
        return np.zeros((n_users, 0)), np.zeros(0), np.zeros((len(seen), 0))
    v0 = np.ones(min(X.shape)) / np.sqrt(min(X.shape))
    u, sigma, vt = svds(X, k=k, v0=v0)
    order = np.argsort(-sigma)
    return np.ascontiguousarray(u[:, order]), sigma[order], np.ascontiguousarray(vt[order].T)


def item_factors(
    users: np.ndarray, items: np.ndarray, n_users: int, seen: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(V [len(seen), k'], seen): right singular vectors of the binary user x item matrix, top components first.

    PureSVD's item factors (k' = min(k, rank bound)); deterministic (fixed ARPACK start vector).
    """
    return _svd(users, items, n_users, seen, k)[2], seen


def user_basis_factors(users: np.ndarray, items: np.ndarray, n_users: int, seen: np.ndarray, k: int) -> np.ndarray:
    """P = U S^-1 [n_users, k']: X^T P = V, so id_table='users' starts at PureSVD's item factors (item_factors)."""
    u, sigma, _ = _svd(users, items, n_users, seen, k)
    return u / np.maximum(sigma, 1e-12)
