"""New catalogue items after training: their embeddings from content, without rebuilding the index.

The search index (`models/search.py` SearchIndex) holds one embedding per
catalogue item and the one-item outfit embedding of each; a new item needs
only its own two rows. `encode_new_items` computes the item embedding from
what the model reads:

- encoder 'cnn': the item's image through the trained CNN and head (any size:
  `models.encoders.images_to_tensor` brings it to the model's input);
- encoder 'features' / 'pretrained': a feature vector of the model's width F
  given with the item (e.g. from `outfitrec features` on its image);
- encoder 'id': an item unseen in training is its category alone (the path
  the model learns with id dropout); its collaborative channel
  (user_history) is zero, as for any item unseen in training.

`Recommender.add_items` (recommend/engine.py) appends them to the catalogue
and the index in memory; `Recommender.remove_items` marks items removed, and
every search path (beam, exact, completion, the outfit pool, batch) skips them.
"""

from __future__ import annotations

import numpy as np

from outfitrec.data.outfits import DataError


def encode_new_items(
    model,
    categories: np.ndarray,
    images: np.ndarray | list | None = None,
    features: np.ndarray | None = None,
) -> np.ndarray:
    """Item embeddings float32 [n, d] of new items (not in the model's catalogue) from their content.

    categories: int64 [n] category ids; images: uint8 [n, H, W] / [n, H, W, 3], or a list of such arrays
    (encoder 'cnn'); features: float [n, F] (encoders 'features' / 'pretrained'). DataError when the
    encoder's content is missing or has the wrong shape.
    """
    import torch

    from outfitrec.models.encoders import CNNEncoder, FeatureEncoder, IdEncoder, images_to_tensor

    categories = np.asarray(categories, dtype=np.int64)
    n = len(categories)
    enc = model.item_encoder
    if n and (categories.min() < 0 or categories.max() >= model.n_categories):
        raise DataError(f"new items: a category id is outside 0..{model.n_categories - 1}")
    with torch.inference_mode():
        if isinstance(enc, CNNEncoder):
            if images is None or len(images) != n:
                raise DataError(f"new items: encoder 'cnn' reads images; give one image per item ({n})")
            parts = [images_to_tensor(np.asarray(im)[None], "new item image") for im in images]
            emb = torch.cat([enc.encode_pixels(p) for p in parts]) if parts else torch.zeros(0, model.config.dim)
        elif isinstance(enc, FeatureEncoder):
            feats = None if features is None else np.asarray(features, dtype=np.float32)
            if feats is None or feats.shape != (n, enc.feature_dim):
                got = "none" if feats is None else str(feats.shape)
                raise DataError(
                    f"new items: encoder '{model.config.encoder}' reads features [{n}, {enc.feature_dim}], got {got}"
                )
            emb = enc.head(torch.from_numpy(feats)) if n else torch.zeros(0, model.config.dim)
        elif isinstance(enc, IdEncoder):
            emb = enc.head(enc.category_embedding(torch.from_numpy(categories)))
        else:
            raise DataError(f"new items: encoder {type(enc).__name__} cannot encode items outside its catalogue")
        hs = getattr(model, "history_scorer", None)
        if hs is not None:  # the collaborative channel of an item unseen in training: R 0 = 0
            emb = torch.cat([emb, emb.new_zeros(len(emb), hs.dim)], dim=-1)
    return emb.float().numpy()


def read_items_csv(path, category_names: list[str], grey: bool) -> tuple[list[str], list[int], list | None]:
    """New items from a CSV in the plain format's items.csv layout (data/plain.py): header `item_id,category`
    or `item_id,category,image` (image: a file path, relative to the CSV's folder or absolute).

    Returns (names, category ids, images or None); images are read with Pillow, grey when `grey`.
    DataError naming the file and line for an unknown category, an empty name, an unreadable image.
    """
    from pathlib import Path

    from PIL import Image, UnidentifiedImageError

    from outfitrec.data.plain import ITEMS_HEADERS, _rows

    path = Path(path)
    header, rows = _rows(path, ITEMS_HEADERS)
    if not rows:
        raise DataError(f"{path}: no items")
    names, cats, images = [], [], []
    for line, fields in rows:
        name, category = fields[0], fields[1]
        if not name:
            raise DataError(f"{path}:{line}: empty item_id")
        if category not in category_names:
            raise DataError(f"{path}:{line}: category {category!r} is not one of {list(category_names)}")
        names.append(name)
        cats.append(category_names.index(category))
        if len(header) == 3:
            if not fields[2]:
                raise DataError(f"{path}:{line}: empty image")
            file = Path(fields[2]) if Path(fields[2]).is_absolute() else path.parent / fields[2]
            try:
                with Image.open(file) as im:
                    images.append(np.asarray(im.convert("L" if grey else "RGB")))
            except (OSError, UnidentifiedImageError) as exc:
                raise DataError(f"{path}:{line}: cannot read image {file} ({exc})") from None
    return names, cats, (images if len(header) == 3 else None)
