"""Base run configurations per dataset kind and scale (how much compute an experiment spends).

Scales:
- `smoke`: seconds per run on the tiny synthetic data of the tests; checks the
  pipeline, measures nothing.
- `quick`: sized for a shared 2-core CPU: 3 student epochs, 10 teacher epochs
  (early stopping), no per-step item-pool bound. Measured on Fashion-MNIST
  outfits, what makes a quick run learn is the number of training outfits
  PER USER (each user's anchors only learn from that user's outfits): the
  300-user default preset capped to ~20 outfits per user stayed at chance for
  hundreds of steps, while a 100-user set with ~50 outfits per user
  (`outfitrec data make-fmnist datasets/fmnist-u100 --users 100
  --train-outfits 5000`) learns within one epoch. The quick tables use that
  set; `_PER_USER_CAP` can cap outfits per user for other datasets.
- `full`: the settings of the dataset presets that `make demo` trains
  (configs/fmnist_*.yaml for image catalogues, configs/difashion_*.yaml for
  id-only ones): every training positive, teacher 12 / student 6 epochs on
  images, 6 / 6 on ids, early stopping; the teacher on two threads (it is
  trained first, alone), students on one (two run side by side).

Dataset kinds: `images` (a catalogue with item images: the CNN encoders,
teacher-size backbone vs the student one, <1/20 of its parameters) and `ids`
(no item content, e.g. DiFashion Polyvore: id + category embeddings, wide for
the teacher, narrow for the student).
"""

from __future__ import annotations

import copy
from pathlib import Path

from outfitrec.data.outfits import DataError
from outfitrec.data.prepare import load_dataset

SCALES = ("smoke", "quick", "full")

# the model shared by teacher and student; only model.size (the backbone) differs
_MODEL = {"dim": 64, "heads": 4, "n_anchors": 16, "dropout": 0.1}
_SMOKE_MODEL = {"dim": 8, "heads": 2, "n_anchors": 4, "dropout": 0.0}
# id models (no item content): item ids initialised from the user x item matrix's singular vectors and a
# collaborative user term from the user's items (models/history.py); a random id table sat on the ln(1 + K)
# plateau for the first epochs (some seeds never left it), measured on DiFashion (issue 12).
_IDS_MODEL = {"id_init": "svd", "id_init_std": 1.0, "user_history": "mean"}

# settings per (kind, scale, role): data, optim, loss sections (merged over the common base)
_SETTINGS: dict[tuple[str, str, str], dict] = {
    ("images", "smoke", "teacher"): {
        "data": {"batch_size": 16, "negatives": 4},
        "optim": {"epochs": 2, "lr": 0.003, "patience": 5},
    },
    ("images", "smoke", "student"): {
        "data": {"batch_size": 16, "negatives": 4},
        "optim": {"epochs": 2, "lr": 0.003, "patience": 5},
    },
    ("images", "quick", "teacher"): {
        "data": {"batch_size": 64, "negatives": 10},
        "optim": {"epochs": 10, "lr": 0.002, "patience": 3},
    },
    ("images", "quick", "student"): {
        "data": {"batch_size": 64, "negatives": 10},
        "optim": {"epochs": 3, "lr": 0.002, "patience": 2},
    },
    # full = the dataset presets of `make demo` (configs/fmnist_*.yaml): measured to learn on the default preset
    ("images", "full", "teacher"): {
        "data": {"batch_size": 128, "negatives": 10, "step_pool": 100},
        "optim": {"epochs": 12, "lr": 0.003, "patience": 3},
        "runtime": {"threads": 2},  # trained once, before the students: both cores
    },
    ("images", "full", "student"): {
        "data": {"batch_size": 128, "negatives": 10, "step_pool": 100},
        "optim": {"epochs": 6, "lr": 0.003, "patience": 2},
    },
    ("ids", "smoke", "teacher"): {
        "data": {"batch_size": 16, "negatives": 4},
        "optim": {"epochs": 2, "lr": 0.005, "patience": 5},
    },
    ("ids", "smoke", "student"): {
        "data": {"batch_size": 16, "negatives": 4},
        "optim": {"epochs": 2, "lr": 0.005, "patience": 5},
    },
    ("ids", "quick", "teacher"): {
        "data": {"batch_size": 128, "negatives": 10},
        "optim": {"epochs": 4, "lr": 0.004, "patience": 3},
    },
    ("ids", "quick", "student"): {
        "data": {"batch_size": 128, "negatives": 10},
        "optim": {"epochs": 3, "lr": 0.004, "patience": 2},
    },
    # full = configs/difashion_*.yaml
    ("ids", "full", "teacher"): {
        "data": {"batch_size": 128, "negatives": 10},
        "optim": {"epochs": 2, "lr": 0.003, "patience": 2},  # svd ids + history: best at epoch 2
        "runtime": {"threads": 2},
    },
    ("ids", "full", "student"): {
        "data": {"batch_size": 128, "negatives": 10},
        "optim": {"epochs": 6, "lr": 0.003, "patience": 2},
    },
}

# what the distillation variants use at each scale: FND alpha (the main table's), teacher pool size
DISTILL = {
    "smoke": {"alpha": -0.5, "pool": 8},
    "quick": {"alpha": -0.5, "pool": 30},
    "full": {"alpha": -0.5, "pool": 50},
}


# quick scale: at most this many training outfits per user (every user kept), teacher and students alike
_PER_USER_CAP: dict[tuple[str, str], int] = {}


def per_user_cap(kind: str, scale: str) -> int | None:
    """The per-user cap on training outfits of a scale (None: the whole training split)."""
    return _PER_USER_CAP.get((kind, scale))


def dataset_kind(data: str | Path) -> str:
    """'images' when the prepared dataset's catalogue has item images (or image files), else 'ids'."""
    dataset, _ = load_dataset(data)
    cat = dataset.catalogue
    return "images" if (cat.images is not None or cat.image_paths is not None) else "ids"


def base_config(kind: str, role: str, scale: str, data: str) -> dict:
    """The raw RunConfig dict of a teacher or plain student for this dataset kind and scale."""
    if scale not in SCALES:
        raise DataError(f"experiment: unknown scale {scale!r} (expected one of {', '.join(SCALES)})")
    key = (kind, scale, role)
    if key not in _SETTINGS:
        raise DataError(f"experiment: no settings for dataset kind {kind!r}, role {role!r}, scale {scale!r}")
    model = dict(_SMOKE_MODEL if scale == "smoke" else _MODEL)
    if scale == "full":  # the presets: no dropout, softmax temperature 1
        model["dropout"] = 0.0
    model["encoder"] = "cnn" if kind == "images" else "id"
    model["size"] = role
    if kind == "ids":  # configs/difashion_*.yaml: PureSVD-initialised ids + the history term (no plateau)
        model.update(_IDS_MODEL)
    raw = {
        "name": role,
        "role": role,
        "data": {"path": str(data), "seed": 0},
        "model": model,
        "optim": {},
        "loss": {"kind": "softmax", "temperature": 1.0 if scale == "full" else 0.5},
        "runtime": {"threads": 1, "progress": False},
    }
    settings = copy.deepcopy(_SETTINGS[key])
    for section, values in settings.items():
        raw[section].update(values)
    return raw
