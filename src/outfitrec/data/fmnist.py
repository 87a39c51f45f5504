"""Fashion-MNIST outfits: a personalized outfit dataset of real item images with a known ground truth.

Items are Fashion-MNIST images (Debian package ``dataset-fashion-mnist``, MIT
licence) put into slots by class. Every item gets visual attributes computed
from its pixels by one fixed function (:func:`item_attributes`); every user
gets latent preferences over those attributes, over the Fashion-MNIST classes,
over outfit templates and over pairwise compatibility terms between slots. The
true utility of any outfit is a fixed function of these (:class:`Truth` in
``data/oracle.py``), and each user's positive outfits are sampled from it, so
false negatives can be counted instead of guessed. ``docs/fmnist.md`` describes
the generator in full.

The generative process, exactly:

1. pick ``items_per_class`` images of every class (``2 x`` for trousers, the
   only bottom class) from the 70,000 Fashion-MNIST images; ``unseen_share``
   of the items are held out of training;
2. users' parameters = global taste + a Dirichlet mixture of a few style
   prototypes + an individual part; each user's utility is rescaled so that it
   has standard deviation 1 over random outfits;
3. a user's number of training outfits is log-normal (long tail); valid and
   test get ``valid_share`` / ``test_share`` of it (at least one each);
4. each outfit is drawn by Gumbel-max: ``candidates_per_draw`` random outfits
   (template from ``template_proposal``, each slot uniform from its pool: the
   seen items for training, all items for valid / test) are scored with
   ``U / temperature + Gumbel noise`` and the best is kept. As temperature -> 0
   this is "best of M random outfits"; it is the sampling-importance-resampling
   approximation of ``P(o | u) ~ q(o) exp(U(u, o) / temperature)``.

Without the Fashion-MNIST files, ``images="procedural"`` draws item images
procedurally (class-shaped silhouettes with random brightness and texture):
the same generator, the same attributes, fake pixels. It is for tests and is
always explicit: it is never chosen silently.
"""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from outfitrec.data.io import atomic_file, atomic_folder, check_output_folder, write_manifest
from outfitrec.data.negatives import check_seed
from outfitrec.data.outfits import PAD, Catalogue, DataError, OutfitDataset, Outfits, save_npz_atomic

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
INSTALL_HINT = "install it with `apt-get install dataset-fashion-mnist` (files in /usr/share/datasets/fashion-mnist/)"

CLASS_NAMES = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
]
SLOTS = ["top", "bottom", "shoes", "bag", "dress"]
TOP, BOTTOM, SHOES, BAG, DRESS = range(5)
# Fashion-MNIST class -> slot (category id of the catalogue)
CLASS_SLOT = np.array([TOP, BOTTOM, TOP, DRESS, TOP, SHOES, TOP, SHOES, BAG, SHOES], dtype=np.int64)
TEMPLATES = [
    ["top", "bottom", "shoes"],
    ["top", "bottom", "shoes", "bag"],
    ["dress", "shoes"],
    ["dress", "shoes", "bag"],
]
# template t as slot ids, padded with -1 (the column order of an outfit row)
TEMPLATE_SLOTS = np.array(
    [[TOP, BOTTOM, SHOES, -1], [TOP, BOTTOM, SHOES, BAG], [DRESS, SHOES, -1, -1], [DRESS, SHOES, BAG, -1]]
)
MAX_SIZE = 4
# slot pairs that co-occur in some template: each has its own compatibility weights
PAIRS = [
    (TOP, BOTTOM),
    (TOP, SHOES),
    (BOTTOM, SHOES),
    (TOP, BAG),
    (BOTTOM, BAG),
    (SHOES, BAG),
    (DRESS, SHOES),
    (DRESS, BAG),
]

ATTRIBUTES = ["brightness", "coverage", "width", "mass_y", "contrast", "texture"]
Z_CLIP = 3.0  # standardised attributes are clipped to +-Z_CLIP: no single odd image dominates a utility
INK_THRESHOLD = 0.08  # a pixel above this (of 1.0) belongs to the garment
# compatibility features of a slot pair: |difference| of these attributes, minus its catalogue mean
PAIR_FEATURES = ["brightness", "texture"]
PAIR_FEATURE_COLUMNS = [ATTRIBUTES.index(a) for a in PAIR_FEATURES]


@dataclass(frozen=True)
class FmnistConfig:
    """Every knob of the generator; the presets below fill them in."""

    n_users: int = 300
    train_outfits: int = 15_000  # target total of training outfits (log-normal per user, rescaled)
    items_per_class: int = 250  # images per Fashion-MNIST class (trousers: 2x, the only bottom class)
    unseen_share: float = 0.3  # items that appear only in valid / test outfits
    valid_share: float = 0.12  # valid outfits per user = this x its training outfits (at least 1)
    test_share: float = 0.12
    min_train: int = 4  # fewest training outfits of a user
    outfits_sigma: float = 0.8  # log-normal sigma of the number of outfits per user: the long tail
    candidates_per_draw: int = 48  # M random outfits scored per positive draw (Gumbel-max among them)
    temperature: float = 0.02  # of the Gumbel-max, in units of the user's utility std over random outfits
    n_styles: int = 8  # style prototypes users mix
    style_concentration: float = 0.3  # Dirichlet alpha of the user's style mixture (small: near one style)
    global_scale: float = 0.3  # weight of the taste shared by all users (what popularity can see)
    style_scale: float = 1.0
    individual_scale: float = 0.5
    template_proposal: tuple[float, ...] = (0.45, 0.2, 0.25, 0.1)  # q over TEMPLATES for random outfits
    scale_samples: int = 512  # random outfits per user to measure its utility std
    typical_quantile: float = 0.5  # "typical positive" = this quantile of the user's training utilities


PRESETS: dict[str, FmnistConfig] = {
    "tiny": FmnistConfig(n_users=12, train_outfits=120, items_per_class=10, min_train=4, scale_samples=256),
    "default": FmnistConfig(),
    "large": FmnistConfig(n_users=2_000, train_outfits=200_000, items_per_class=2_000),
}


# Independent draws of a preset, to check that a table's claims hold on another generated dataset (issue 15):
# draw 1 is the preset as `make demo` writes it; draw 2 another generator seed AND another share of unseen
# items (more of the catalogue is only ever seen at valid / test time).
DRAWS: dict[int, dict] = {
    1: {"seed": 0, "unseen_share": None},  # None: the preset's own share (0.3 for every preset)
    2: {"seed": 1, "unseen_share": 0.4},
}


def draw_settings(draw: int) -> tuple[int, float | None]:
    """(generator seed, unseen_share override or None) of draw number `draw` (DRAWS); DataError if unknown."""
    if draw not in DRAWS:
        raise DataError(f"fmnist: unknown draw {draw} (expected one of {sorted(DRAWS)})")
    return DRAWS[draw]["seed"], DRAWS[draw]["unseen_share"]


def preset_config(preset: str, **overrides) -> FmnistConfig:
    """The named preset, with some fields replaced."""
    if preset not in PRESETS:
        raise DataError(f"fmnist: unknown preset {preset!r} (expected one of {sorted(PRESETS)})")
    return replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})


# ----------------------------------------------------------------------------------------------------------------
# Fashion-MNIST files (IDX format, gzip)


def read_idx(path: str | Path) -> np.ndarray:
    """One IDX file (unsigned-byte data, any rank), gzip-compressed or not, as a uint8 array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    if len(raw) < 4:
        raise DataError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    zero, dtype_code, rank = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"{path}: byte 0-3: not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    header_len = 4 + 4 * rank
    if len(raw) < header_len:
        raise DataError(f"{path}: header declares {rank} dimensions but the file ends at byte {len(raw)}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    expected = int(np.prod(shape)) if shape else 0
    if len(raw) - header_len != expected:
        raise DataError(f"{path}: shape {shape} needs {expected} data bytes, the file has {len(raw) - header_len}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(shape)


def load_fashion_mnist(directory: str | Path = FMNIST_DIR) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All 70,000 images (train then t10k): images uint8 [n,28,28], labels int64 [n], source names [n]."""
    directory = Path(directory)
    images, labels, names = [], [], []
    for part in ("train", "t10k"):
        img_path = directory / f"{part}-images-idx3-ubyte.gz"
        lab_path = directory / f"{part}-labels-idx1-ubyte.gz"
        for p in (img_path, lab_path):
            if not p.exists():
                raise DataError(f"{p}: Fashion-MNIST file missing; {INSTALL_HINT}, or pass --images procedural")
        img, lab = read_idx(img_path), read_idx(lab_path)
        if img.ndim != 3 or img.shape[1:] != (28, 28):
            raise DataError(f"{img_path}: expected images [n, 28, 28], got {img.shape}")
        if lab.shape != (img.shape[0],):
            raise DataError(f"{lab_path}: {lab.shape[0] if lab.ndim else 0} labels for {img.shape[0]} images")
        if lab.max(initial=0) > 9:
            raise DataError(f"{lab_path}: label {int(lab.max())} outside 0..9")
        images.append(img)
        labels.append(lab.astype(np.int64))
        names.append(np.char.add(f"{part}", np.char.zfill(np.arange(len(lab)).astype(str), 5)))
    return np.concatenate(images), np.concatenate(labels), np.concatenate(names)


def fashion_mnist_available(directory: str | Path = FMNIST_DIR) -> bool:
    """True when the four Fashion-MNIST files are present."""
    directory = Path(directory)
    return all(
        (directory / f"{p}-{k}-ubyte.gz").exists() for p in ("train", "t10k") for k in ("images-idx3", "labels-idx1")
    )


# ----------------------------------------------------------------------------------------------------------------
# Procedural stand-in images (tests, machines without the package)


def draw_procedural(cls: int, rng: np.random.Generator, size: int = 28) -> np.ndarray:
    """A 28x28 uint8 item of Fashion-MNIST class `cls`: class-shaped silhouette, random brightness and texture."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    cx = np.abs(xx - 0.5)
    if cls in (0, 2, 4, 6):  # tops: torso + sleeves (short for t-shirts, long otherwise; coats are longer)
        bottom = 0.95 if cls == 4 else 0.85
        torso = (cx < rng.uniform(0.2, 0.3)) & (yy > 0.1) & (yy < bottom)
        sleeve_end = 0.35 if cls == 0 else 0.85
        sleeves = (cx < 0.45) & (yy > 0.1) & (yy < sleeve_end) & (cx > 0.28 - 0.3 * (yy - 0.1))
        shape = torso | sleeves
        if cls == 6:  # shirt: collar notch
            shape &= ~((cx < 0.06) & (yy < 0.2))
    elif cls == 1:  # trouser: two legs
        shape = (cx < rng.uniform(0.2, 0.28)) & (yy > 0.03) & (yy < 0.97) & ~((cx < 0.03) & (yy > 0.35))
    elif cls == 3:  # dress: widening downwards
        shape = (cx < 0.12 + rng.uniform(0.2, 0.35) * yy) & (yy > 0.05) & (yy < 0.97)
    elif cls == 5:  # sandal: straps
        shape = (((yy - 0.72) * 12).astype(int) % 2 == 0) & (np.abs(yy - 0.72) < 0.17) & (cx < 0.45)
    elif cls == 7:  # sneaker: low ellipse
        shape = ((xx - 0.5) / 0.46) ** 2 + ((yy - 0.72) / rng.uniform(0.12, 0.2)) ** 2 < 1
    elif cls == 8:  # bag: box + handle
        box = (cx < rng.uniform(0.3, 0.45)) & (yy > 0.4) & (yy < 0.9)
        handle = (np.abs(np.hypot(xx - 0.5, (yy - 0.4) * 1.4) - 0.2) < 0.04) & (yy < 0.4)
        shape = box | handle
    else:  # ankle boot: shaft + foot
        shape = ((xx > 0.45) & (xx < 0.8) & (yy > 0.2) & (yy < 0.85)) | ((xx > 0.1) & (yy > 0.62) & (yy < 0.88))
    brightness = rng.uniform(0.25, 1.0)
    kind = rng.integers(0, 4)
    freq = rng.integers(2, 8)
    if kind == 0:
        texture = np.ones_like(yy)
    elif kind == 1:
        texture = 0.5 + 0.5 * np.sin(2 * np.pi * freq * yy)
    elif kind == 2:
        texture = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * freq * xx) * np.sin(2 * np.pi * freq * yy))
    else:
        texture = rng.uniform(0, 1, (size, size))
    strength = rng.uniform(0.0, 0.5)
    img = shape * brightness * (1 - strength + strength * texture) * 255 + shape * rng.normal(0, 3, (size, size))
    return np.clip(img, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------------
# Item attributes: the fixed function from pixels


def item_attributes(images: np.ndarray) -> np.ndarray:
    """Raw visual attributes of each image, float64 [n, len(ATTRIBUTES)].

    x = pixel / 255; ink = x > INK_THRESHOLD (the garment). brightness: mean x
    over ink; coverage: share of ink pixels; width: mean number of ink pixels
    of the rows that have ink, / 28 (how wide the silhouette is); mass_y: the
    vertical centre of the pixel mass, / 28 (long garments sit lower);
    contrast: std of x over ink; texture: mean |4-neighbour Laplacian| of x
    over interior ink pixels (ink with 4 ink neighbours), the
    fine pattern energy a small network sees worst. An empty image gets zeros.
    """
    x = np.asarray(images, dtype=np.float64) / 255.0
    if x.ndim != 3:
        raise DataError(f"item_attributes: images must be [n, H, W], got {x.shape}")
    n, h, w = x.shape
    ink = x > INK_THRESHOLD
    n_ink = ink.sum(axis=(1, 2))
    safe = np.maximum(n_ink, 1)
    brightness = (x * ink).sum(axis=(1, 2)) / safe
    coverage = n_ink / (h * w)
    ink_rows = ink.any(axis=2).sum(axis=1)
    width = n_ink / np.maximum(ink_rows, 1) / w
    mass = x.sum(axis=(1, 2))
    mass_y = (x.sum(axis=2) * (np.arange(h) + 0.5)).sum(axis=1) / np.maximum(mass, 1e-9) / h
    contrast = np.sqrt((((x - brightness[:, None, None]) ** 2) * ink).sum(axis=(1, 2)) / safe)
    p = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    lap = 4 * x - p[:, :-2, 1:-1] - p[:, 2:, 1:-1] - p[:, 1:-1, :-2] - p[:, 1:-1, 2:]
    q = np.pad(ink, ((0, 0), (1, 1), (1, 1)))
    interior = ink & q[:, :-2, 1:-1] & q[:, 2:, 1:-1] & q[:, 1:-1, :-2] & q[:, 1:-1, 2:]
    texture = (np.abs(lap) * interior).sum(axis=(1, 2)) / np.maximum(interior.sum(axis=(1, 2)), 1)
    attrs = np.stack([brightness, coverage, width, mass_y, contrast, texture], axis=1)
    attrs[n_ink == 0] = 0.0
    return attrs


def standardise_by_slot(raw: np.ndarray, item_slot: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z-score each attribute within each slot's items, clipped to +-Z_CLIP: (z [n, A], mean, std [n_slots, A])."""
    mean = np.zeros((len(SLOTS), raw.shape[1]))
    std = np.ones((len(SLOTS), raw.shape[1]))
    for s in range(len(SLOTS)):
        rows = raw[item_slot == s]
        if len(rows):
            mean[s] = rows.mean(axis=0)
            std[s] = np.maximum(rows.std(axis=0), 1e-6)
    return np.clip((raw - mean[item_slot]) / std[item_slot], -Z_CLIP, Z_CLIP), mean, std


# ----------------------------------------------------------------------------------------------------------------
# Ground-truth parameters and utility


@dataclass
class TruthParams:
    """Everything the true utility needs (saved as truth.npz; ``data/oracle.py`` reads it).

    U(u, o) = scale_u * ( template_bias[u, t(o)]
                          + sum_{i in o} (attr_w[u, slot_i] . z_i + class_w[u, class_i]) / sqrt(|o|)
                          + sum_{pairs (i,j) of o} pair_w[u, p_ij] . (|z_i - z_j|[PAIR_FEATURES] - pair_center[p_ij])
                            / sqrt(n_pairs(o)) )
    """

    item_class: np.ndarray  # int64 [n_items]
    item_slot: np.ndarray  # int64 [n_items]
    item_unseen: np.ndarray  # bool [n_items]: held out of training
    attributes_raw: np.ndarray  # float64 [n_items, A]
    attributes: np.ndarray  # float64 [n_items, A], standardised within slot
    attr_mean: np.ndarray  # [n_slots, A]
    attr_std: np.ndarray  # [n_slots, A]
    attr_w: np.ndarray  # [n_users, n_slots, A]
    class_w: np.ndarray  # [n_users, 10]
    template_bias: np.ndarray  # [n_users, n_templates]
    pair_w: np.ndarray  # [n_users, n_pairs, n_pair_features]
    pair_center: np.ndarray  # [n_pairs, n_pair_features]
    user_scale: np.ndarray  # [n_users]
    style_mix: np.ndarray  # [n_users, n_styles] (documentation: how users were made)
    typical: np.ndarray  # [n_users]: typical_quantile of the user's training-positive utilities
    header: dict = field(default_factory=dict)

    ARRAYS = (
        "item_class",
        "item_slot",
        "item_unseen",
        "attributes_raw",
        "attributes",
        "attr_mean",
        "attr_std",
        "attr_w",
        "class_w",
        "template_bias",
        "pair_w",
        "pair_center",
        "user_scale",
        "style_mix",
        "typical",
    )

    @property
    def n_users(self) -> int:
        return len(self.user_scale)

    def save(self, path: str | Path) -> None:
        arrays = {k: np.asarray(getattr(self, k)) for k in self.ARRAYS}
        arrays["header"] = np.frombuffer(json.dumps(self.header, sort_keys=True).encode(), dtype=np.uint8)
        save_npz_atomic(path, arrays)


PAIR_INDEX = np.full((len(SLOTS), len(SLOTS)), -1, dtype=np.int64)
for _p, (_a, _b) in enumerate(PAIRS):
    PAIR_INDEX[_a, _b] = PAIR_INDEX[_b, _a] = _p


def template_of(slots: np.ndarray) -> np.ndarray:
    """Template index of each row of slot ids [n, S] (-1 = empty); -1 where the slots match no template."""
    present = np.zeros((len(slots), len(SLOTS)), dtype=bool)
    rows, cols = np.nonzero(slots >= 0)
    present[rows, slots[rows, cols]] = True
    counts = (slots >= 0).sum(axis=1)
    out = np.full(len(slots), -1, dtype=np.int64)
    for t, names in enumerate(TEMPLATES):
        want = np.zeros(len(SLOTS), dtype=bool)
        want[[SLOTS.index(s) for s in names]] = True
        out[(present == want).all(axis=1) & (counts == len(names))] = t
    return out


def raw_utility(
    params: TruthParams, users: np.ndarray, items: np.ndarray, mask: np.ndarray, scaled: bool = True
) -> np.ndarray:
    """The true utility of outfits (see TruthParams), float64 [n]; `scaled=False` omits user_scale.

    Any set of items is accepted: partial outfits (a slot set matching no
    template) get no template bias; pairs of slots that never co-occur add no
    compatibility term; an outfit with no real item has utility 0.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    mask = np.asarray(mask, dtype=bool)
    safe = np.where(mask, items, 0)
    slot = np.where(mask, params.item_slot[safe], -1)
    z = params.attributes[safe]  # [n, S, A]
    uslot = np.where(mask, slot, 0)
    item_term = (z * params.attr_w[users[:, None], uslot]).sum(-1) + params.class_w[
        users[:, None], params.item_class[safe]
    ]
    n_items = mask.sum(axis=1)
    total = (item_term * mask).sum(axis=1) / np.sqrt(np.maximum(n_items, 1))
    zf = z[:, :, PAIR_FEATURE_COLUMNS]
    pair_sum = np.zeros(len(users))
    n_pairs = np.zeros(len(users))
    width = items.shape[1]
    for i in range(width):
        for j in range(i + 1, width):
            p = PAIR_INDEX[uslot[:, i], uslot[:, j]]
            ok = mask[:, i] & mask[:, j] & (p >= 0)
            if not ok.any():
                continue
            pp = np.where(ok, p, 0)
            f = np.abs(zf[:, i] - zf[:, j]) - params.pair_center[pp]
            pair_sum += np.where(ok, (f * params.pair_w[users, pp]).sum(-1), 0.0)
            n_pairs += ok
    total += pair_sum / np.sqrt(np.maximum(n_pairs, 1))
    t = template_of(slot)
    total += np.where(t >= 0, params.template_bias[users, np.maximum(t, 0)], 0.0)
    if scaled:
        total *= params.user_scale[users]
    return total


def _pair_centers(z: np.ndarray, item_slot: np.ndarray, rng: np.random.Generator, n: int = 20_000) -> np.ndarray:
    """E|z_i - z_j| of each slot pair's features over random item pairs of the catalogue."""
    centers = np.zeros((len(PAIRS), len(PAIR_FEATURES)))
    for p, (a, b) in enumerate(PAIRS):
        pa, pb = np.flatnonzero(item_slot == a), np.flatnonzero(item_slot == b)
        if len(pa) == 0 or len(pb) == 0:
            continue
        i, j = pa[rng.integers(0, len(pa), n)], pb[rng.integers(0, len(pb), n)]
        centers[p] = np.abs(z[i][:, PAIR_FEATURE_COLUMNS] - z[j][:, PAIR_FEATURE_COLUMNS]).mean(axis=0)
    return centers


def _user_parameters(cfg: FmnistConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Users = global taste + Dirichlet mix of style prototypes + individual part, one flat vector each."""
    shapes = {
        "attr_w": (len(SLOTS), len(ATTRIBUTES)),
        "class_w": (len(CLASS_NAMES),),
        "template_bias": (len(TEMPLATES),),
        "pair_w": (len(PAIRS), len(PAIR_FEATURES)),
    }
    # relative strength of each block (template bias kept modest: AUC compares across templates too)
    block_scale = {"attr_w": 1.0, "class_w": 0.8, "template_bias": 0.3, "pair_w": 1.2}
    sizes = {k: int(np.prod(s)) for k, s in shapes.items()}
    dim = sum(sizes.values())
    scale = np.concatenate([np.full(sizes[k], block_scale[k]) for k in shapes])
    global_taste = rng.normal(0, 1, dim) * scale * cfg.global_scale
    styles = rng.normal(0, 1, (cfg.n_styles, dim)) * scale * cfg.style_scale
    mix = rng.dirichlet(np.full(cfg.n_styles, cfg.style_concentration), size=cfg.n_users)
    individual = rng.normal(0, 1, (cfg.n_users, dim)) * scale * cfg.individual_scale
    theta = global_taste + mix @ styles + individual
    out, at = {}, 0
    for k, s in shapes.items():
        out[k] = theta[:, at : at + sizes[k]].reshape(cfg.n_users, *s)
        at += sizes[k]
    out["style_mix"] = mix
    return out


# ----------------------------------------------------------------------------------------------------------------
# Sampling outfits


def _slot_pools(item_slot: np.ndarray, allowed: np.ndarray) -> list[np.ndarray]:
    pools = [np.flatnonzero((item_slot == s) & allowed) for s in range(len(SLOTS))]
    for s, pool in enumerate(pools):
        if len(pool) == 0:
            raise DataError(f"fmnist: slot {SLOTS[s]!r} has no items to draw from; raise items_per_class")
    return pools


def random_outfits(
    n: int, pools: list[np.ndarray], proposal: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """n random outfits from q: template ~ proposal, each slot uniform in its pool. (items [n,4], mask [n,4])."""
    t = rng.choice(len(TEMPLATES), size=n, p=proposal)
    slots = TEMPLATE_SLOTS[t]
    items = np.full(slots.shape, PAD, dtype=np.int64)
    for s, pool in enumerate(pools):
        where = slots == s
        items[where] = pool[rng.integers(0, len(pool), size=int(where.sum()))]
    return items, slots >= 0


def sample_positives(
    params: TruthParams,
    users: np.ndarray,
    pools: list[np.ndarray],
    cfg: FmnistConfig,
    rng: np.random.Generator,
    chunk: int = 4096,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """One positive outfit per entry of `users`: Gumbel-max of U/temperature among M random outfits."""
    m = cfg.candidates_per_draw
    proposal = np.asarray(cfg.template_proposal, dtype=np.float64)
    items_out = np.full((len(users), MAX_SIZE), PAD, dtype=np.int64)
    mask_out = np.zeros((len(users), MAX_SIZE), dtype=bool)
    starts = range(0, len(users), chunk)
    for start in tqdm(starts, desc="sampling outfits", disable=None if progress else True, leave=False):
        u = users[start : start + chunk]
        items, mask = random_outfits(len(u) * m, pools, proposal, rng)
        util = raw_utility(params, np.repeat(u, m), items, mask).reshape(len(u), m)
        noisy = util / max(cfg.temperature, 1e-12) + rng.gumbel(size=util.shape)
        best = np.argmax(noisy, axis=1) + np.arange(len(u)) * m
        items_out[start : start + len(u)] = items[best]
        mask_out[start : start + len(u)] = mask[best]
    return items_out, mask_out


def _outfit_keys(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """One row per outfit identifying (user, item set): [n, 1 + MAX_SIZE], items sorted."""
    return np.concatenate([users[:, None], np.sort(items, axis=1)], axis=1)


def _duplicates(keys: np.ndarray) -> np.ndarray:
    """True for each row equal to an earlier row."""
    _, first = np.unique(keys, axis=0, return_index=True)
    dup = np.ones(len(keys), dtype=bool)
    dup[first] = False
    return dup


def outfits_per_user(cfg: FmnistConfig, rng: np.random.Generator) -> np.ndarray:
    """Long-tailed training-outfit counts per user (log-normal), rescaled to total about cfg.train_outfits."""
    x = rng.lognormal(0.0, cfg.outfits_sigma, cfg.n_users)
    spare = max(cfg.train_outfits - cfg.min_train * cfg.n_users, 0)
    return cfg.min_train + np.floor(x / x.sum() * spare + rng.uniform(0, 1, cfg.n_users)).astype(np.int64)


# ----------------------------------------------------------------------------------------------------------------
# The whole generator


@dataclass
class FmnistData:
    """A generated dataset and its ground truth."""

    dataset: OutfitDataset
    truth: TruthParams
    config: FmnistConfig
    timings: dict[str, float]


def _select_images(
    cfg: FmnistConfig, images: str, fmnist_dir: str | Path, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images uint8 [n,28,28], class [n], item names [n]) of the catalogue, grouped by class."""
    counts = [cfg.items_per_class * (2 if c == 1 else 1) for c in range(len(CLASS_NAMES))]
    if images == "fmnist":
        all_images, labels, names = load_fashion_mnist(fmnist_dir)
        picks = []
        for c, k in enumerate(counts):
            pool = np.flatnonzero(labels == c)
            if k > len(pool):
                raise DataError(f"fmnist: {k} items of class {CLASS_NAMES[c]} asked, Fashion-MNIST has {len(pool)}")
            picks.append(np.sort(rng.choice(pool, size=k, replace=False)))
        idx = np.concatenate(picks)
        cls = labels[idx]
        source = names[idx]
        imgs = all_images[idx]
    elif images == "procedural":
        cls = np.repeat(np.arange(len(CLASS_NAMES)), counts)
        imgs = np.stack([draw_procedural(int(c), rng) for c in cls]) if len(cls) else np.zeros((0, 28, 28), np.uint8)
        source = np.char.add("proc", np.char.zfill(np.arange(len(cls)).astype(str), 5))
    else:
        raise DataError(f"fmnist: unknown images source {images!r} (expected 'fmnist' or 'procedural')")
    slug = np.asarray(CLASS_NAMES)[cls]
    item_names = np.char.add(np.char.add(slug, "_"), source)
    return np.ascontiguousarray(imgs, dtype=np.uint8), cls.astype(np.int64), item_names


def per_user_quantile(users: np.ndarray, values: np.ndarray, n_users: int, quantile: float) -> np.ndarray:
    """The `quantile` of each user's values ([n_users]; NaN for a user without values)."""
    out = np.full(n_users, np.nan)
    order = np.argsort(users, kind="stable")
    bounds = np.searchsorted(users[order], np.arange(n_users + 1))
    for u in range(n_users):
        vals = values[order[bounds[u] : bounds[u + 1]]]
        if len(vals):
            out[u] = np.quantile(vals, quantile)
    return out


def generate(
    preset: str = "default",
    seed: int = 0,
    images: str = "fmnist",
    fmnist_dir: str | Path = FMNIST_DIR,
    config: FmnistConfig | None = None,
    progress: bool = False,
) -> FmnistData:
    """Generate the dataset and its truth in memory (deterministic for one seed and config).

    images: 'fmnist' (the real images; DataError with the install command when
    missing) or 'procedural' (drawn stand-ins, explicit opt-in). Raises DataError for a negative seed.
    """
    check_seed(seed)
    cfg = config if config is not None else preset_config(preset)
    if not 0.0 <= cfg.unseen_share < 1.0:
        raise DataError(f"fmnist: unseen_share must be in [0, 1), got {cfg.unseen_share}")
    if cfg.n_users < 1 or cfg.items_per_class < 2 or cfg.candidates_per_draw < 1:
        raise DataError("fmnist: n_users >= 1, items_per_class >= 2 and candidates_per_draw >= 1 are required")
    proposal = np.asarray(cfg.template_proposal, dtype=np.float64)
    if proposal.shape != (len(TEMPLATES),) or (proposal < 0).any() or not np.isclose(proposal.sum(), 1.0):
        raise DataError(f"fmnist: template_proposal must be {len(TEMPLATES)} probabilities summing to 1")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    rng_images, rng_items, rng_users, rng_counts, rng_sample, rng_scale = streams

    imgs, item_class, item_names = _select_images(cfg, images, fmnist_dir, rng_images)
    item_slot = CLASS_SLOT[item_class]
    n_items = len(item_class)
    unseen = np.zeros(n_items, dtype=bool)
    for s in range(len(SLOTS)):  # hold out the same share of every slot, at least one item kept seen
        ids = np.flatnonzero(item_slot == s)
        k = min(int(round(cfg.unseen_share * len(ids))), len(ids) - 1)
        unseen[rng_items.choice(ids, size=k, replace=False)] = True
    raw = item_attributes(imgs)
    z, mean, std = standardise_by_slot(raw, item_slot)
    timings["images_and_attributes_s"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    users_p = _user_parameters(cfg, rng_users)
    params = TruthParams(
        item_class=item_class,
        item_slot=item_slot,
        item_unseen=unseen,
        attributes_raw=raw,
        attributes=z,
        attr_mean=mean,
        attr_std=std,
        attr_w=users_p["attr_w"],
        class_w=users_p["class_w"],
        template_bias=users_p["template_bias"],
        pair_w=users_p["pair_w"],
        pair_center=_pair_centers(z, item_slot, rng_scale),
        user_scale=np.ones(cfg.n_users),
        style_mix=users_p["style_mix"],
        typical=np.zeros(cfg.n_users),
    )
    all_pools = _slot_pools(item_slot, np.ones(n_items, dtype=bool))
    seen_pools = _slot_pools(item_slot, ~unseen)
    # each user's utility std over random outfits -> 1
    r = cfg.scale_samples
    su = np.repeat(np.arange(cfg.n_users), r)
    s_items, s_mask = random_outfits(len(su), all_pools, proposal, rng_scale)
    sd = raw_utility(params, su, s_items, s_mask, scaled=False).reshape(cfg.n_users, r).std(axis=1)
    params.user_scale = 1.0 / np.maximum(sd, 1e-9)
    timings["users_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    n_train = outfits_per_user(cfg, rng_counts)
    n_valid = np.maximum(1, np.round(cfg.valid_share * n_train)).astype(np.int64)
    n_test = np.maximum(1, np.round(cfg.test_share * n_train)).astype(np.int64)
    split_users = {
        "train": np.repeat(np.arange(cfg.n_users), n_train),
        "valid": np.repeat(np.arange(cfg.n_users), n_valid),
        "test": np.repeat(np.arange(cfg.n_users), n_test),
    }
    drawn = {}
    for name, users in split_users.items():
        pools = seen_pools if name == "train" else all_pools
        drawn[name] = sample_positives(params, users, pools, cfg, rng_sample, progress=progress)
    # a user never gets the same outfit twice (across splits): redraw repeats, a few rounds
    order = ["train", "valid", "test"]
    for _ in range(20):
        users_all = np.concatenate([split_users[s] for s in order])
        items_all = np.concatenate([drawn[s][0] for s in order])
        dup = _duplicates(_outfit_keys(users_all, items_all))
        if not dup.any():
            break
        at = 0
        for s in order:
            n = len(split_users[s])
            d = np.flatnonzero(dup[at : at + n])
            at += n
            if len(d):
                pools = seen_pools if s == "train" else all_pools
                it, mk = sample_positives(params, split_users[s][d], pools, cfg, rng_sample)
                drawn[s][0][d], drawn[s][1][d] = it, mk
    splits = {}
    next_id = 0
    for s in order:
        items, mask = drawn[s]
        users = split_users[s]
        cats = np.where(mask, item_slot[np.where(mask, items, 0)], PAD)
        ids = np.arange(next_id, next_id + len(users))
        next_id += len(users)
        splits[s] = Outfits(users, items, cats, mask, ids)
    # drop any repeat the redraw rounds could not resolve (tiny pools only)
    users_all = np.concatenate([splits[s].users for s in order])
    items_all = np.concatenate([splits[s].items for s in order])
    dup = _duplicates(_outfit_keys(users_all, items_all))
    at = 0
    for s in order:
        n = len(splits[s])
        splits[s] = splits[s].subset(~dup[at : at + n])
        at += n
    timings["sampling_s"] = time.perf_counter() - t2

    train = splits["train"]
    train_util = raw_utility(params, train.users, train.items, train.mask)
    params.typical = per_user_quantile(train.users, train_util, cfg.n_users, cfg.typical_quantile)
    params.header = {
        "format": "outfitrec-truth",
        "version": 1,
        "slots": SLOTS,
        "class_names": CLASS_NAMES,
        "templates": TEMPLATES,
        "pairs": [[SLOTS[a], SLOTS[b]] for a, b in PAIRS],
        "attributes": ATTRIBUTES,
        "pair_features": PAIR_FEATURES,
        "ink_threshold": INK_THRESHOLD,
        "typical_quantile": cfg.typical_quantile,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "preset": preset if config is None else "custom",
        "seed": seed,
        "images_source": images,
    }
    meta = {
        "name": f"fmnist-{preset if config is None else 'custom'}",
        "source": "Fashion-MNIST" if images == "fmnist" else "procedural stand-in images",
        "images_source": images,
        "templates": TEMPLATES,
        "class_names": CLASS_NAMES,
        "slot_of_class": {CLASS_NAMES[c]: SLOTS[int(CLASS_SLOT[c])] for c in range(len(CLASS_NAMES))},
        "seed": seed,
        "preset": preset if config is None else "custom",
        "unseen_share": cfg.unseen_share,
        "n_unseen_items": int(unseen.sum()),
        "truth": "truth.npz",
    }
    catalogue = Catalogue(item_slot, list(SLOTS), item_names=item_names, images=imgs)
    dataset = OutfitDataset(catalogue, cfg.n_users, splits, meta)
    timings["total_generate_s"] = time.perf_counter() - t0
    return FmnistData(dataset, params, cfg, timings)


# ----------------------------------------------------------------------------------------------------------------
# Writing the prepared folder


def contact_sheet(
    data: FmnistData,
    path: str | Path,
    n_users: int = 4,
    outfits_per_user: int = 5,
    scale: int = 2,
    seed: int = 0,
) -> Path:
    """A PNG of sample training outfits: a block per user, one row an outfit, items side by side.

    Each row is labelled with the user, the outfit's template and its true
    utility (users are chosen among those with the most outfits, then at random).
    """
    from PIL import Image, ImageDraw

    ds, truth = data.dataset, data.truth
    train = ds.split("train")
    rng = np.random.default_rng(seed)
    counts = np.bincount(train.users, minlength=ds.n_users)
    eligible = np.flatnonzero(counts >= min(outfits_per_user, counts.max()))
    users = np.sort(rng.choice(eligible, size=min(n_users, len(eligible)), replace=False))
    cell = 28 * scale
    pad, label_w, title_h = 4, 150, 14
    rows = []
    for u in users:
        idx = np.flatnonzero(train.users == u)
        pick = np.sort(rng.choice(idx, size=min(outfits_per_user, len(idx)), replace=False))
        rows.extend((int(u), int(i)) for i in pick)
    util = raw_utility(
        truth, train.users[[i for _, i in rows]], train.items[[i for _, i in rows]], train.mask[[i for _, i in rows]]
    )
    n_blocks = len(users)
    width = label_w + MAX_SIZE * (cell + pad) + pad
    caption = 12  # class name under each item
    height = len(rows) * (cell + caption + pad) + n_blocks * title_h + pad
    sheet = Image.new("RGB", (width, height), (250, 250, 247))
    draw = ImageDraw.Draw(sheet)
    y, last_user = pad, None
    slots_of = np.where(train.mask, truth.item_slot[np.where(train.mask, train.items, 0)], -1)
    for (u, i), value in zip(rows, util):
        if u != last_user:
            draw.text(
                (pad, y),
                f"user {u}  ({counts[u]} training outfits, typical U = {truth.typical[u]:.2f})",
                fill=(20, 20, 120),
            )
            y += title_h
            last_user = u
        t = int(template_of(slots_of[i : i + 1])[0])
        draw.text((pad, y + cell // 2 - 12), "+".join(TEMPLATES[t]) if t >= 0 else "?", fill=(40, 40, 40))
        draw.text((pad, y + cell // 2 + 2), f"U = {value:.2f}", fill=(40, 40, 40))
        x = label_w
        for item, real in zip(train.items[i], train.mask[i]):
            if real:
                img = Image.fromarray(ds.catalogue.images[item]).resize((cell, cell), Image.NEAREST)
                sheet.paste(img.convert("RGB"), (x, y))
                draw.text((x, y + cell), CLASS_NAMES[truth.item_class[item]], fill=(90, 90, 90))
            x += cell + pad
        y += cell + caption + pad
    path = Path(path)
    with atomic_file(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path


def write_fmnist(
    data: FmnistData,
    out: str | Path,
    k: int = 10,
    seed: int = 0,
    polyvore_u: bool = True,
    overwrite: bool = False,
    inputs: tuple[str | Path, ...] = (),
) -> dict:
    """Write the prepared folder: dataset.npz, candidates_{valid,test}.npz, fitb_{valid,test}.npz, truth.npz,
    contact_sheet.png, polyvore_u/, outfitrec.json (manifest, written last).

    The folder is built beside `out` and swapped in whole (io.atomic_folder): a
    kill leaves the old folder, the new one, or none. Raises DataError when `out`
    is, contains or lies inside one of `inputs`, or exists and is not an
    outfitrec folder replaced with `overwrite`, or for a negative seed.

    The Polyvore-U layout has only top / bottom / shoe columns, so it holds the
    top+bottom+shoes outfits (the others are counted as skipped); dataset.npz
    holds them all. Returns a summary.
    """
    from outfitrec.data.fitb import write_fitb_files
    from outfitrec.data.negatives import write_candidate_files

    out = check_output_folder(out, inputs, overwrite)
    check_seed(seed)
    timings = dict(data.timings)
    summary: dict = {"folder": str(out)}
    with atomic_folder(out) as tmp:
        t0 = time.perf_counter()
        data.dataset.save(tmp / "dataset.npz")
        data.truth.header["dataset_fingerprint"] = data.dataset.fingerprint
        data.truth.save(tmp / "truth.npz")
        write_candidate_files(data.dataset, tmp, k=k, seed=seed)
        write_fitb_files(data.dataset, tmp, seed=seed, optional=True)
        timings["write_npz_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        contact_sheet(data, tmp / "contact_sheet.png", seed=seed)
        timings["contact_sheet_s"] = time.perf_counter() - t1
        if polyvore_u:
            from outfitrec.data.polyvore_u import write_polyvore_u

            t2 = time.perf_counter()
            summary["polyvore_u"] = write_polyvore_u(
                data.dataset, tmp / "polyvore_u", k=k, seed=seed, on_mismatch="skip", overwrite=True
            )
            summary["polyvore_u"]["folder"] = str(out / "polyvore_u")
            timings["polyvore_u_s"] = time.perf_counter() - t2
        from outfitrec.data.prepare import folder_facts

        write_manifest(tmp, "fmnist", **folder_facts(data.dataset, tmp / "dataset.npz", seed=seed, k=k))
    ds = data.dataset
    summary.update(
        {
            "images_source": ds.meta["images_source"],
            "n_users": ds.n_users,
            "n_items": ds.catalogue.n_items,
            "n_unseen_items": int(data.truth.item_unseen.sum()),
            "outfits": {s: len(o) for s, o in ds.splits.items()},
            "timings_s": {key: round(v, 3) for key, v in timings.items()},
        }
    )
    return summary
