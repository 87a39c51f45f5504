"""The one outfit data model every part of outfitrec uses.

A dataset is a catalogue of items (global id -> category, optional image or
feature row), a number of users, and splits of outfits. An outfit is a user
plus a padded row of item ids with a boolean mask, so outfits of different
sizes live in one array. Everything is plain numpy, cheap to slice and saved
as one ``.npz`` (no pickle: object arrays are refused on load).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from outfitrec.data.errors import DataError
from outfitrec.data.io import atomic_file, atomic_folder, write_text_atomic  # noqa: F401 - re-exported

PAD = -1  # item id (and category id) of a padded slot
SPLITS = ("train", "valid", "test")
FORMAT_VERSION = 1
# users are numbered 0..n_users-1, so a user id allocates max(id) + 1 users: larger ids are refused
MAX_USER_ID = 10_000_000


@dataclass
class Outfits:
    """A batch of outfits.

    users: int64 [n]; items, categories: int64 [n, max_size] (PAD where masked);
    mask: bool [n, max_size], True for a real item. outfit_ids: int64 [n],
    the source's outfit ids (or 0..n-1).
    """

    users: np.ndarray
    items: np.ndarray
    categories: np.ndarray
    mask: np.ndarray
    outfit_ids: np.ndarray

    def __post_init__(self) -> None:
        self.users = np.asarray(self.users, dtype=np.int64)
        self.items = np.asarray(self.items, dtype=np.int64)
        self.categories = np.asarray(self.categories, dtype=np.int64)
        self.mask = np.asarray(self.mask, dtype=bool)
        self.outfit_ids = np.asarray(self.outfit_ids, dtype=np.int64)
        n = len(self.users)
        if self.items.ndim != 2 or self.items.shape[0] != n:
            raise DataError(f"outfits: items must be [n, max_size] with n={n}, got {self.items.shape}")
        for name in ("categories", "mask"):
            if getattr(self, name).shape != self.items.shape:
                raise DataError(f"outfits: {name} shape {getattr(self, name).shape} != items {self.items.shape}")
        if self.outfit_ids.shape != (n,):
            raise DataError(f"outfits: outfit_ids must have shape ({n},)")

    @classmethod
    def from_rows(
        cls,
        users: np.ndarray | list[int],
        item_rows: list[list[int]],
        item_category: np.ndarray,
        outfit_ids: np.ndarray | list[int] | None = None,
        max_size: int | None = None,
    ) -> Outfits:
        """Build from ragged rows of item ids (PAD / -1 entries are dropped)."""
        rows = [[int(i) for i in row if int(i) != PAD] for row in item_rows]
        width = max_size if max_size is not None else max((len(r) for r in rows), default=0)
        items = np.full((len(rows), width), PAD, dtype=np.int64)
        for i, row in enumerate(rows):
            items[i, : len(row)] = row
        mask = items != PAD
        categories = np.where(mask, np.asarray(item_category)[np.where(mask, items, 0)], PAD)
        ids = np.arange(len(rows)) if outfit_ids is None else outfit_ids
        return cls(np.asarray(users), items, categories, mask, np.asarray(ids))

    @classmethod
    def empty(cls, max_size: int = 0) -> Outfits:
        z = np.zeros((0, max_size), dtype=np.int64)
        return cls(np.zeros(0), z, z.copy(), z.astype(bool), np.zeros(0))

    def __len__(self) -> int:
        return len(self.users)

    @property
    def max_size(self) -> int:
        return self.items.shape[1]

    @property
    def sizes(self) -> np.ndarray:
        return self.mask.sum(axis=1)

    def subset(self, index: np.ndarray | slice) -> Outfits:
        return Outfits(
            self.users[index], self.items[index], self.categories[index], self.mask[index], self.outfit_ids[index]
        )

    def padded_to(self, width: int) -> Outfits:
        """The same outfits with `width` columns (width >= the longest outfit)."""
        if width == self.max_size:
            return self
        if width < int(self.sizes.max(initial=0)):
            raise DataError(f"outfits: cannot pad to {width}, an outfit has {int(self.sizes.max())} items")
        n = len(self)
        items = np.full((n, width), PAD, dtype=np.int64)
        cats = np.full((n, width), PAD, dtype=np.int64)
        mask = np.zeros((n, width), dtype=bool)
        w = min(width, self.max_size)
        items[:, :w], cats[:, :w], mask[:, :w] = self.items[:, :w], self.categories[:, :w], self.mask[:, :w]
        return Outfits(self.users, items, cats, mask, self.outfit_ids)

    def item_sets(self) -> list[frozenset[int]]:
        """Each outfit as a set of item ids (order is irrelevant to an outfit)."""
        return [frozenset(row[m].tolist()) for row, m in zip(self.items, self.mask)]

    @staticmethod
    def concat(parts: list[Outfits]) -> Outfits:
        width = max((p.max_size for p in parts), default=0)
        parts = [p.padded_to(width) for p in parts]
        return Outfits(
            np.concatenate([p.users for p in parts]),
            np.concatenate([p.items for p in parts]),
            np.concatenate([p.categories for p in parts]),
            np.concatenate([p.mask for p in parts]),
            np.concatenate([p.outfit_ids for p in parts]),
        )

    def equals(self, other: Outfits) -> bool:
        return all(
            np.array_equal(getattr(self, k), getattr(other, k))
            for k in ("users", "items", "categories", "mask", "outfit_ids")
        )


def item_name_lookup(catalogue: Catalogue) -> dict[str, int]:
    """Item name -> index, for `read_item`."""
    return {str(name): i for i, name in enumerate(catalogue.item_names.tolist())}


def read_item(token: int | str, n_items: int, lookup: dict[str, int], where: str) -> int:
    """One item given as an index (an int, or '#N' / 'N' text) or by name: the one reader of item tokens.

    A text token that is an item name AND a valid index of ANOTHER item (DiFashion's names are 1-based
    numbers, its indices 0-based) is refused as ambiguous, naming both readings and how to write each
    ('#N' always means index N); a name equal to its own index is no ambiguity. DataError naming `where`
    for a token that is no item, or an index outside 0..n_items-1.
    """
    if isinstance(token, (bool, np.bool_)):
        raise DataError(f"{where}: {token!r} is neither an item name nor an item index")
    if isinstance(token, (int, np.integer)):
        item = int(token)
    else:
        text = str(token).strip()
        forced = text.startswith("#")
        number = text[1:] if forced else text
        try:
            item = int(number)
        except ValueError:
            if not forced and text in lookup:
                return lookup[text]
            raise DataError(f"{where}: {text!r} is neither an item name nor an item index") from None
        named = None if forced else lookup.get(text)
        if named is not None:
            if named != item and 0 <= item < n_items:
                raise DataError(
                    f"{where}: {text!r} is both the name of item #{named} and the index of item #{item}; "
                    f"write #{named} or #{item}"
                )
            return named
    if not 0 <= item < n_items:
        raise DataError(f"{where}: item {item} not found (items are 0..{n_items - 1})")
    return item


@dataclass
class Catalogue:
    """The items. Global item id = row index.

    item_category: int64 [n_items]; category_names[c] names category c;
    item_names: str [n_items] (source ids or image file names);
    images: optional uint8 [n_items, H, W] (grey) or [n_items, H, W, 3];
    image_paths: optional str [n_items], image files loaded lazily (Pillow);
    features: optional float32 [n_items, F].
    """

    item_category: np.ndarray
    category_names: list[str]
    item_names: np.ndarray | None = None
    images: np.ndarray | None = None
    image_paths: np.ndarray | None = None
    features: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.item_category = np.asarray(self.item_category, dtype=np.int64)
        n = len(self.item_category)
        if self.item_names is None:
            self.item_names = np.arange(n).astype(str)
        self.item_names = np.asarray(self.item_names, dtype=str)
        for name in ("item_names", "images", "image_paths", "features"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise DataError(f"catalogue: {name} has {len(value)} rows, expected {n} items")
        if n and (self.item_category.min() < 0 or self.item_category.max() >= len(self.category_names)):
            raise DataError("catalogue: an item category is outside 0..n_categories-1")

    @property
    def n_items(self) -> int:
        return len(self.item_category)

    def item_indices(self, text: str, where: str = "--items") -> list[int]:
        """Comma-separated item tokens -> indices, each read by `read_item` (names, indices, '#N').

        Raises DataError naming the first token that is no item, is ambiguous, or is outside the catalogue.
        """
        lookup = item_name_lookup(self)
        out = [read_item(t, self.n_items, lookup, where) for t in (t.strip() for t in str(text).split(",")) if t]
        if not out:
            raise DataError(f"{where}: no items given")
        return out

    @property
    def n_categories(self) -> int:
        return len(self.category_names)

    def items_by_category(self, item_ids: np.ndarray | None = None) -> dict[int, np.ndarray]:
        """Category id -> sorted item ids (of `item_ids`, or of the whole catalogue)."""
        ids = np.arange(self.n_items) if item_ids is None else np.unique(np.asarray(item_ids, dtype=np.int64))
        cats = self.item_category[ids]
        return {int(c): ids[cats == c] for c in np.unique(cats)}

    def load_image(self, item: int) -> np.ndarray:
        """The item's image as a uint8 array (from memory, or read lazily from its file)."""
        if self.images is not None:
            return self.images[item]
        if self.image_paths is None:
            raise DataError(f"catalogue: item {item} has no image")
        from PIL import Image

        path = str(self.image_paths[item])
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))
        except OSError as exc:
            raise DataError(f"{path}: cannot read image of item {item}: {exc}") from exc


@dataclass
class OutfitDataset:
    """Catalogue + users + splits. `meta` holds free-form JSON-able facts (name, source, slots)."""

    catalogue: Catalogue
    n_users: int
    splits: dict[str, Outfits]
    meta: dict = field(default_factory=dict)
    user_names: np.ndarray | None = None
    fingerprint: str | None = field(default=None, compare=False)  # content hash, set by save / load
    # user-item interactions beyond the outfits (e.g. DiFashion's per-user item history): int64 [n, 2] rows
    # (user, item), known at training time; collaborative baselines and history-aware models may read them
    history: np.ndarray | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.history is not None:
            self.history = np.asarray(self.history, dtype=np.int64).reshape(-1, 2)
            h = self.history
            if len(h) and (h[:, 0].min() < 0 or h[:, 0].max() >= self.n_users):
                raise DataError(f"dataset: history has a user outside 0..{self.n_users - 1}")
            if len(h) and (h[:, 1].min() < 0 or h[:, 1].max() >= self.catalogue.n_items):
                raise DataError(f"dataset: history has an item outside 0..{self.catalogue.n_items - 1}")
        if self.user_names is None:
            self.user_names = np.arange(self.n_users).astype(str)
        self.user_names = np.asarray(self.user_names, dtype=str)
        if self.n_users > MAX_USER_ID:
            raise DataError(
                f"dataset: {self.n_users:,} users (user ids are 0..n-1); ids beyond {MAX_USER_ID:,} are refused"
            )
        for name, split in self.splits.items():
            if name not in SPLITS:
                raise DataError(f"dataset: unknown split {name!r}; expected one of {SPLITS}")
            if len(split) and (split.users.min() < 0 or split.users.max() >= self.n_users):
                raise DataError(f"dataset: split {name} has a user outside 0..{self.n_users - 1}")
            real = split.items[split.mask]
            if len(real) and (real.min() < 0 or real.max() >= self.catalogue.n_items):
                raise DataError(f"dataset: split {name} has an item outside 0..{self.catalogue.n_items - 1}")
            _check_no_repeated_item(name, split)

    def user_index(self, user: str | int) -> int:
        """The index of a user given by name (`user_names`), by index 0..n_users-1, or as '#N' (always index N).

        A text that is a user's name AND the index of ANOTHER user is refused as ambiguous (naming both, and
        how to write each), as `read_item` does for items. Raises DataError naming the user when it is neither.
        """
        if isinstance(user, (int, np.integer)) and not isinstance(user, (bool, np.bool_)):
            index = int(user)
        else:
            text = str(user).strip()
            forced = text.startswith("#")
            try:
                index = int(text[1:] if forced else text)
            except ValueError:
                index = None
            hits = np.array([], dtype=np.int64) if forced else np.flatnonzero(self.user_names == text)
            if len(hits):
                named = int(hits[0])
                if index is not None and index != named and 0 <= index < self.n_users:
                    raise DataError(
                        f"user {text!r} is both the name of user #{named} and the index of user #{index}; "
                        f"write #{named} or #{index}"
                    )
                return named
            if index is None:
                raise DataError(f"user {text!r} is neither a user name nor a user index")
        if not 0 <= index < self.n_users:
            raise DataError(f"user {index} not found (users are 0..{self.n_users - 1})")
        return index

    @property
    def max_size(self) -> int:
        return max((s.max_size for s in self.splits.values()), default=0)

    def split(self, name: str) -> Outfits:
        if name not in self.splits:
            raise DataError(f"dataset {self.meta.get('name', '')!r} has no split {name!r} (has {sorted(self.splits)})")
        if len(self.splits[name]) == 0:
            raise DataError(f"dataset {self.meta.get('name', '')!r}: split {name!r} is empty")
        return self.splits[name]

    def save(self, path: str | Path) -> None:
        """Write one .npz atomically (temporary file, then rename)."""
        arrays: dict[str, np.ndarray] = {
            "item_category": self.catalogue.item_category,
            "item_names": self.catalogue.item_names,
            "user_names": self.user_names,
        }
        for opt in ("images", "features"):
            value = getattr(self.catalogue, opt)
            if value is not None:
                arrays[opt] = np.asarray(value)
        if self.catalogue.image_paths is not None:
            arrays["image_paths"] = _paths_for_folder(self.catalogue.image_paths, Path(path).parent)
        for name, split in self.splits.items():
            for key in ("users", "items", "categories", "mask", "outfit_ids"):
                arrays[f"{name}.{key}"] = getattr(split, key)
        if self.history is not None:
            arrays["history"] = self.history
        header = {
            "format": "outfitrec-dataset",
            "version": FORMAT_VERSION,
            "n_users": self.n_users,
            "category_names": list(self.catalogue.category_names),
            "splits": list(self.splits),
            "meta": self.meta,
            "image_paths": "relative to this file's folder, or absolute",
        }
        header["fingerprint"] = content_fingerprint(arrays, header)
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        save_npz_atomic(path, arrays)
        self.fingerprint = header["fingerprint"]

    @classmethod
    def load(cls, path: str | Path) -> OutfitDataset:
        arrays, header = read_npz_with_header(path, "dataset", "outfitrec-dataset")
        image_paths = arrays.get("image_paths")
        if image_paths is not None and "image_paths" in header:
            base = Path(path).parent
            image_paths = np.asarray([str(base / p) if p and not os.path.isabs(p) else p for p in image_paths.tolist()])
        catalogue = Catalogue(
            item_category=arrays["item_category"],
            category_names=header["category_names"],
            item_names=arrays["item_names"],
            images=arrays.get("images"),
            image_paths=image_paths,
            features=arrays.get("features"),
        )
        splits = {
            name: Outfits(*(arrays[f"{name}.{k}"] for k in ("users", "items", "categories", "mask", "outfit_ids")))
            for name in header["splits"]
        }
        try:
            dataset = cls(
                catalogue,
                int(header["n_users"]),
                splits,
                header.get("meta", {}),
                arrays["user_names"],
                history=arrays.get("history"),
            )
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None
        dataset.fingerprint = header.get("fingerprint")
        return dataset


def _check_no_repeated_item(name: str, split: Outfits) -> None:
    """An outfit holds each item at most once (DataError naming the split, outfit id and item)."""
    if len(split) == 0 or split.max_size < 2:
        return
    filled = np.where(split.mask, split.items, -2 - np.arange(split.max_size)[None, :])
    ordered = np.sort(filled, axis=1)
    repeat = ordered[:, 1:] == ordered[:, :-1]
    rows = np.flatnonzero(repeat.any(axis=1))
    if len(rows):
        row = int(rows[0])
        item = int(ordered[row, 1:][repeat[row]][0])
        raise DataError(f"dataset: split {name} outfit {int(split.outfit_ids[row])} holds item {item} twice")


def _paths_for_folder(paths: np.ndarray, folder: Path) -> np.ndarray:
    """Image paths as stored in a dataset file in `folder`: relative to it when inside it, else absolute.

    Relative input paths are taken relative to the working directory, so the
    stored paths do not depend on where the dataset is later read from.
    """
    base = folder.absolute()
    out = []
    for p in np.asarray(paths).tolist():
        if not p:
            out.append("")
            continue
        full = Path(os.path.abspath(p))
        out.append(str(full.relative_to(base)) if full.is_relative_to(base) else str(full))
    return np.asarray(out, dtype=str)


def content_fingerprint(arrays: dict[str, np.ndarray], header: dict | None = None) -> str:
    """A short content hash of named arrays (names, dtypes, shapes, bytes) and a JSON header."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    if header is not None:
        h.update(json.dumps({k: v for k, v in header.items() if k != "fingerprint"}, sort_keys=True).encode())
    return h.hexdigest()[:16]


def dataset_fingerprint(path: str | Path) -> str | None:
    """The fingerprint recorded in a dataset .npz's header (only the header is read); None for an old file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(z["header"].tobytes().decode()) if "header" in z.files else {}
    except (ValueError, OSError, EOFError, KeyError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read the dataset header ({exc})") from exc
    return header.get("fingerprint")


def recorded_fingerprint(header: dict) -> str | None:
    """The dataset fingerprint a derived file's header records (in its meta, or at its top level)."""
    meta = header.get("meta") if isinstance(header.get("meta"), dict) else {}
    return meta.get("dataset_fingerprint", header.get("dataset_fingerprint"))


def restamp_npz(src: str | Path, dst: str | Path, fingerprint: str | None) -> None:
    """Copy a derived .npz of outfitrec to `dst`, recording `fingerprint` as the dataset it belongs to.

    For files whose content stays valid for a derived dataset (e.g. a cold-user
    copy keeps the evaluation candidates). Raises DataError if `src` is not an
    outfitrec file with a JSON header.
    """
    try:
        with np.load(src, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        header = json.loads(arrays["header"].tobytes().decode())
    except (ValueError, OSError, EOFError, KeyError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{src}: cannot read the outfitrec file ({exc})") from exc
    if isinstance(header.get("meta"), dict):
        header["meta"]["dataset_fingerprint"] = fingerprint
    else:
        header["dataset_fingerprint"] = fingerprint
    arrays["header"] = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
    save_npz_atomic(dst, arrays)


def check_fingerprint(path: str | Path, recorded: str | None, dataset_file: str | Path) -> None:
    """Refuse a derived file (`path`) whose recorded dataset fingerprint is not `dataset_file`'s.

    Files or datasets written before fingerprints existed (None) are accepted.
    """
    if recorded is None or not Path(dataset_file).is_file():
        return
    actual = dataset_fingerprint(dataset_file)
    if actual is not None and actual != recorded:
        raise DataError(
            f"{path}: made from another dataset (fingerprint {recorded}, {dataset_file} is {actual}); "
            "prepare the folder again"
        )


def save_npz_atomic(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez through `io.atomic_file` (temporary file, fsync, rename): never a half-written file."""
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def read_npz_with_header(path: str | Path, what: str, fmt: str, missing_hint: str = "") -> tuple[dict, dict]:
    """The arrays and the JSON header of an .npz that outfitrec wrote (never unpickled).

    Raises DataError naming the file when it is missing (with `missing_hint`),
    unreadable, has no header, or a header of another format than `fmt`.
    The header is removed from the returned arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such {what} file{missing_hint}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as exc:  # ValueError: object arrays would need pickle
        raise DataError(f"{path}: cannot read the {what} ({exc})") from exc
    if "header" not in arrays:
        raise DataError(f"{path}: not an outfitrec {what} file (no header)")
    try:
        header = json.loads(arrays.pop("header").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: key 'header': not JSON ({exc})") from exc
    if header.get("format") != fmt:
        raise DataError(f"{path}: key 'header': format {header.get('format')!r}, expected {fmt!r}")
    return arrays, header
