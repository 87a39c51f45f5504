"""outfitrec's plain CSV format: for users who bring their own catalogue and outfit logs.

A folder with (UTF-8 CSV, a leading byte-order mark allowed, comma separated, one header line, no quoting needed
because no field may contain a comma, a semicolon or a newline):

- `items.csv` (required): header `item_id,category` or `item_id,category,image`.
  item_id: any unique non-empty token (kept as the item's name); category: a
  category name; image: an image file path, relative to the folder or
  absolute, read lazily (may be empty for an item without image). The global
  item id is the row number (first data row = 0).
- `outfits.csv` (required): header `outfit_id,user,split,item_ids`.
  outfit_id: a non-negative integer, unique within its split; user: a user
  token; split: `train`, `valid` or `test`; item_ids: the outfit's item_id
  tokens separated by `;` (at least one, each listed in items.csv, at most
  once per outfit). Outfits keep their file order within each split.
- `users.csv` (optional): header `user_id`, one user per line: fixes the user
  order (user index = row number) and may list users without outfits. Without
  it, users are numbered in order of first appearance in outfits.csv.
- `categories.csv` (optional): header `category`, one name per line: fixes
  the category order (category id = row number) and may list categories
  without items. Without it, categories are numbered in order of first
  appearance in items.csv.
- `history.csv` (optional): header `user,item_id`: other items each user
  interacted with (viewed, liked, bought; not outfits), known at training
  time: the collaborative baselines and history-aware models read them
  (`OutfitDataset.history`). Users and items must be known (users.csv or
  outfits.csv; items.csv); a repeated pair counts once.
- `meta.json` (optional): a JSON object stored as the dataset's `meta`
  (e.g. `{"name": "...", "templates": [["top", "bottom", "shoes"]]}`).

Features and in-memory images are not part of the format; the writer stores
in-memory images as PNG files under `images/` and lists them in items.csv.
The writer always writes users.csv and categories.csv, so writing and reading
a dataset round-trips its arrays exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from outfitrec.data.io import atomic_folder, check_output_folder, image_folders, write_manifest
from outfitrec.data.outfits import PAD, SPLITS, Catalogue, DataError, OutfitDataset, Outfits

ITEMS_HEADERS = (["item_id", "category"], ["item_id", "category", "image"])
OUTFITS_HEADER = ["outfit_id", "user", "split", "item_ids"]
USERS_HEADER = ["user_id"]
CATEGORIES_HEADER = ["category"]
HISTORY_HEADER = ["user", "item_id"]
_FORBIDDEN_CHARS = (",", ";", "\n", "\r")
INT64_MAX = 2**63 - 1


def _rows(path: Path, headers: tuple[list[str], ...]) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(line number, fields)]) of a CSV file, checking the header and column counts."""
    if not path.is_file():
        raise DataError(f"{path}: missing file")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from None
    if not lines:
        raise DataError(f"{path}:1: empty file, expected a header")
    header = [c.strip() for c in lines[0].split(",")]
    if header not in headers:
        expected = " or ".join(repr(",".join(h)) for h in headers)
        raise DataError(f"{path}:1: header {','.join(header)!r}, expected {expected}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != len(header):
            raise DataError(f"{path}:{number}: expected {len(header)} columns, got {len(fields)}")
        rows.append((number, fields))
    return header, rows


def _token(path: Path, line: int, column: str, value: str) -> str:
    if not value:
        raise DataError(f"{path}:{line}: empty {column}")
    return value


def read_plain(folder: str | Path) -> OutfitDataset:
    """Read a plain-format folder (see the module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    categories: list[str] = []
    cat_index: dict[str, int] = {}
    cat_path = folder / "categories.csv"
    if cat_path.exists():
        for line, (name,) in _rows(cat_path, (CATEGORIES_HEADER,))[1]:
            name = _token(cat_path, line, "category", name)
            if name in cat_index:
                raise DataError(f"{cat_path}:{line}: duplicate category {name!r}")
            cat_index[name] = len(categories)
            categories.append(name)
    fixed_categories = bool(categories)

    items_path = folder / "items.csv"
    header, item_rows = _rows(items_path, ITEMS_HEADERS)
    if not item_rows:
        raise DataError(f"{items_path}: no items")
    item_index: dict[str, int] = {}
    item_names, item_category, image_paths = [], [], []
    for line, fields in item_rows:
        name = _token(items_path, line, "item_id", fields[0])
        if name in item_index:
            raise DataError(f"{items_path}:{line}: duplicate item_id {name!r}")
        category = _token(items_path, line, "category", fields[1])
        if category not in cat_index:
            if fixed_categories:
                raise DataError(f"{items_path}:{line}: category {category!r} is not in categories.csv")
            cat_index[category] = len(categories)
            categories.append(category)
        item_index[name] = len(item_names)
        item_names.append(name)
        item_category.append(cat_index[category])
        if len(fields) == 3:
            image = fields[2]
            image_paths.append(str(Path(image) if Path(image).is_absolute() else folder / image) if image else "")

    users: list[str] = []
    user_index: dict[str, int] = {}
    users_path = folder / "users.csv"
    if users_path.exists():
        for line, (name,) in _rows(users_path, (USERS_HEADER,))[1]:
            name = _token(users_path, line, "user_id", name)
            if name in user_index:
                raise DataError(f"{users_path}:{line}: duplicate user_id {name!r}")
            user_index[name] = len(users)
            users.append(name)
    fixed_users = bool(users)

    outfits_path = folder / "outfits.csv"
    per_split: dict[str, dict[str, list]] = {}
    seen_ids: dict[str, set[int]] = {}
    for line, (oid_text, user, split, item_text) in _rows(outfits_path, (OUTFITS_HEADER,))[1]:
        try:
            oid = int(oid_text)
        except ValueError:
            raise DataError(f"{outfits_path}:{line}: outfit_id {oid_text!r} is not an integer") from None
        if oid < 0:
            raise DataError(f"{outfits_path}:{line}: negative outfit_id {oid}")
        if oid > INT64_MAX:
            raise DataError(f"{outfits_path}:{line}: outfit_id {oid} is too large (int64)")
        if split not in SPLITS:
            raise DataError(f"{outfits_path}:{line}: split {split!r}, expected one of {SPLITS}")
        if oid in seen_ids.setdefault(split, set()):
            raise DataError(f"{outfits_path}:{line}: outfit_id {oid} appears twice in split {split}")
        seen_ids[split].add(oid)
        user = _token(outfits_path, line, "user", user)
        if user not in user_index:
            if fixed_users:
                raise DataError(f"{outfits_path}:{line}: unknown user {user!r} (not in users.csv)")
            user_index[user] = len(users)
            users.append(user)
        tokens = [t.strip() for t in item_text.split(";")]
        if not item_text or any(not t for t in tokens):
            raise DataError(f"{outfits_path}:{line}: empty item id in item_ids {item_text!r}")
        ids = []
        for token in tokens:
            if token not in item_index:
                raise DataError(f"{outfits_path}:{line}: unknown item_id {token!r} (not in items.csv)")
            ids.append(item_index[token])
        if len(set(ids)) != len(ids):
            raise DataError(f"{outfits_path}:{line}: an item appears twice in one outfit")
        part = per_split.setdefault(split, {"users": [], "rows": [], "ids": []})
        part["users"].append(user_index[user])
        part["rows"].append(ids)
        part["ids"].append(oid)
    if "train" not in per_split:
        raise DataError(f"{outfits_path}: the train split is empty")

    item_category_arr = np.asarray(item_category, dtype=np.int64)
    splits = {
        s: Outfits.from_rows(p["users"], p["rows"], item_category_arr, outfit_ids=p["ids"])
        for s in SPLITS
        if (p := per_split.get(s)) is not None
    }
    meta: dict = {}
    meta_path = folder / "meta.json"
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{meta_path}: not valid JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise DataError(f"{meta_path}: expected a JSON object")
    catalogue = Catalogue(
        item_category_arr,
        categories,
        item_names=np.asarray(item_names, dtype=str),
        image_paths=np.asarray(image_paths, dtype=str) if image_paths else None,
    )
    history = _read_history(folder / "history.csv", user_index, item_index)
    meta.setdefault("name", folder.resolve().name)  # what `data stats` and the manifests call it
    return OutfitDataset(catalogue, len(users), splits, meta, np.asarray(users, dtype=str), history=history)


def _read_history(path: Path, user_index: dict[str, int], item_index: dict[str, int]) -> np.ndarray | None:
    """history.csv as distinct (user, item) rows int64 [n, 2], or None when the file is absent."""
    if not path.exists():
        return None
    pairs = []
    for line, (user, item) in _rows(path, (HISTORY_HEADER,))[1]:
        user, item = _token(path, line, "user", user), _token(path, line, "item_id", item)
        if user not in user_index:
            raise DataError(f"{path}:{line}: unknown user {user!r} (no outfit and not in users.csv)")
        if item not in item_index:
            raise DataError(f"{path}:{line}: unknown item_id {item!r} (not in items.csv)")
        pairs.append((user_index[user], item_index[item]))
    return np.unique(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), axis=0)


def _check_token(kind: str, value: str) -> str:
    if not value or any(c in value for c in _FORBIDDEN_CHARS) or value != value.strip():
        raise DataError(f"plain writer: {kind} {value!r} is empty or holds a comma, semicolon or newline")
    return value


def write_plain(
    dataset: OutfitDataset,
    folder: str | Path,
    *,
    write_images: bool = True,
    overwrite: bool = False,
    inputs: tuple[str | Path, ...] = (),
):
    """Write `dataset` as a plain-format folder (atomically: temporary folder, then swap).

    In-memory images become `images/{item}.png` when write_images; image files
    are referenced by absolute path. Features are not written. Raises DataError
    when `folder` is, contains or lies inside one of `inputs` or the image
    folders, or exists and is not an outfitrec folder replaced with `overwrite`.
    """
    cat = dataset.catalogue
    folder = check_output_folder(folder, [*inputs, *image_folders(cat.image_paths)], overwrite)
    names = [_check_token("item_id", str(n)) for n in cat.item_names]
    if len(set(names)) != len(names):
        raise DataError("plain writer: item names are not unique")
    users = [_check_token("user_id", str(u)) for u in dataset.user_names]
    if len(set(users)) != len(users):
        raise DataError("plain writer: user names are not unique")
    categories = [_check_token("category", c) for c in cat.category_names]
    with atomic_folder(folder) as tmp:
        images: list[str] | None = None
        if cat.images is not None and write_images:
            from PIL import Image

            (tmp / "images").mkdir()
            images = []
            for i in range(cat.n_items):
                rel = f"images/{i}.png"
                Image.fromarray(np.asarray(cat.images[i])).save(tmp / rel, format="PNG")
                images.append(rel)
        elif cat.image_paths is not None:
            images = [str(Path(p).resolve()) if p else "" for p in cat.image_paths]
        header = "item_id,category,image" if images is not None else "item_id,category"
        lines = [header]
        for i, name in enumerate(names):
            row = [name, categories[int(cat.item_category[i])]]
            if images is not None:
                row.append(_check_token("image path", images[i]) if images[i] else "")
            lines.append(",".join(row))
        (tmp / "items.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (tmp / "categories.csv").write_text("\n".join(["category", *categories]) + "\n", encoding="utf-8")
        (tmp / "users.csv").write_text("\n".join(["user_id", *users]) + "\n", encoding="utf-8")
        lines = [",".join(OUTFITS_HEADER)]
        for split in SPLITS:
            if split not in dataset.splits:
                continue
            o = dataset.splits[split]
            for u, row, m, oid in zip(o.users, o.items, o.mask, o.outfit_ids):
                ids = ";".join(names[int(i)] for i in row[m] if i != PAD)
                lines.append(f"{int(oid)},{users[int(u)]},{split},{ids}")
        (tmp / "outfits.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        if dataset.history is not None:
            lines = [",".join(HISTORY_HEADER)]
            lines += [f"{users[int(u)]},{names[int(i)]}" for u, i in dataset.history]
            (tmp / "history.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (tmp / "meta.json").write_text(json.dumps(dataset.meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        write_manifest(tmp, "plain")
    return folder
