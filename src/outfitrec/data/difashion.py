"""Loader for the DiFashion release of Polyvore-U (519 users) in `../shared/data/polyvore-u-difashion`.

The release (see its README.md) stores pickled dicts through ``numpy.save``;
every file is opened through `safe_pickle.load_pickled_npy`, never with
``allow_pickle=True``. What this loader does with it:

- Catalogue: all 119,202 item ids of `map/iid_cate_dict.npy`, sorted and
  mapped to dense global ids 0..n-1 (the source id is kept in `item_names`);
  category ids are the release's own (0..49), named by `id_cate_dict.npy`.
- Users: the `uids` of `train.npy`, sorted and mapped densely (source uid in
  `user_names`).
- train split: the rows of `train.npy`; the two exact duplicate rows of the
  release are dropped with a warning naming their outfit ids.
- valid split: `valid_grd.npy`. Its user is not stored: outfit ids are given
  out in one block per user (train, then valid, then test), so a validation
  outfit belongs to the user whose train block starts last before its id.
- test split: `test_grd.npy` when present (the full release; our shared copy
  withholds it), same layout as `valid_grd.npy`. Test outfit ids follow each
  user's validation block, so the same id-block rule gives their user.
- History: `train_history.npy` (per user, up to 10 items per category that
  the user interacted with; mostly items outside the user's outfits) becomes
  `OutfitDataset.history` (user, item) rows: interactions known at training
  time, read by the collaborative baselines and history-aware models.
  `test_history.npy` / `valid_history.npy` are only checked when present
  (users and items known); in our copy `valid_history` equals `train_history`.
- FITB: `fitb_{split}_dict.npy` (outfit with the blank as item 0) and
  `fitb_{split}_retrieval_candidates.npy` ([true item, 4 distractors]) become
  `FitbQuestions` (split valid, and test when present). Its distractors are
  not of the blank's category.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from outfitrec.data.fitb import FitbQuestions
from outfitrec.data.outfits import PAD, Catalogue, DataError, OutfitDataset, Outfits
from outfitrec.data.safe_pickle import load_pickled_npy

DEFAULT_PATH = "../shared/data/polyvore-u-difashion"
FITB_BLANK = 0  # the release marks the blanked item with id 0 (real item ids start at 1)


def _as_int(value: object, where: str) -> int:
    """An integer id from the release (python or numpy int); anything else is a DataError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise DataError(f"{where}: expected an integer id, got {type(value).__name__} {value!r}")
    return int(value)


def _need(obj: object, kind: type, where: str) -> object:
    if not isinstance(obj, kind):
        raise DataError(f"{where}: expected a {kind.__name__}, got {type(obj).__name__}")
    return obj


def _file(root: Path, name: str) -> Path:
    path = root / name
    if not path.is_file():
        raise DataError(f"{path}: missing file of the DiFashion release")
    return path


class _Mapper:
    """Source item ids -> dense global ids, with errors that name where an unknown id came from."""

    def __init__(self, source_ids: np.ndarray) -> None:
        self.source_ids = source_ids  # sorted

    def __call__(self, ids: Iterable[object], where: str) -> np.ndarray:
        arr = np.asarray([_as_int(i, where) for i in ids], dtype=np.int64)
        pos = np.searchsorted(self.source_ids, arr)
        ok = (pos < len(self.source_ids)) & (self.source_ids[np.minimum(pos, len(self.source_ids) - 1)] == arr)
        if not ok.all():
            raise DataError(f"{where}: item id {int(arr[~ok][0])} is not in map/iid_cate_dict.npy")
        return pos


def _catalogue(root: Path) -> tuple[Catalogue, _Mapper]:
    cate_path = _file(root, "id_cate_dict.npy")
    names = _need(load_pickled_npy(cate_path), dict, str(cate_path))
    cat_ids = sorted(_as_int(k, f"{cate_path}: key {k!r}") for k in names)
    if cat_ids != list(range(len(cat_ids))):
        raise DataError(f"{cate_path}: category ids must be 0..{len(cat_ids) - 1}")
    category_names = [str(names[c]) for c in cat_ids]
    iid_path = _file(root, "map/iid_cate_dict.npy")
    iid_cate = _need(load_pickled_npy(iid_path), dict, str(iid_path))
    if not iid_cate:
        raise DataError(f"{iid_path}: no items")
    pairs = sorted(
        (_as_int(k, f"{iid_path}: key {k!r}"), _as_int(v, f"{iid_path}: key {k!r}")) for k, v in iid_cate.items()
    )
    source = np.asarray([p[0] for p in pairs], dtype=np.int64)
    cats = np.asarray([p[1] for p in pairs], dtype=np.int64)
    bad = np.flatnonzero((cats < 0) | (cats >= len(category_names)))
    if len(bad):
        raise DataError(f"{iid_path}: key {int(source[bad[0]])}: category {int(cats[bad[0]])} not in id_cate_dict.npy")
    return Catalogue(cats, category_names, item_names=source.astype(str)), _Mapper(source)


def _train_rows(root: Path) -> tuple[list[int], list[int], list[list[object]], list[list[object]]]:
    """The rows of train.npy with exact duplicates dropped (warning names their outfit ids)."""
    path = _file(root, "train.npy")
    train = _need(load_pickled_npy(path), dict, str(path))
    for key in ("uids", "oids", "outfits", "category"):
        if key not in train:
            raise DataError(f"{path}: key {key!r} missing")
    lengths = {k: len(train[k]) for k in ("uids", "oids", "outfits", "category")}
    if len(set(lengths.values())) != 1:
        raise DataError(f"{path}: lists of different lengths {lengths}")
    if lengths["uids"] == 0:
        raise DataError(f"{path}: the train split is empty")
    seen: dict[int, tuple] = {}
    dropped: list[int] = []
    uids, oids, outfits, categories = [], [], [], []
    for row, (u, o, items, cats) in enumerate(zip(train["uids"], train["oids"], train["outfits"], train["category"])):
        where = f"{path}: row {row}"
        oid = _as_int(o, where)
        key = (_as_int(u, where), tuple(_as_int(i, where) for i in items), tuple(_as_int(c, where) for c in cats))
        if oid in seen:
            if seen[oid] != key:
                raise DataError(f"{where}: outfit id {oid} appears twice with different contents")
            dropped.append(oid)
            continue
        seen[oid] = key
        uids.append(key[0])
        oids.append(oid)
        outfits.append(list(items))
        categories.append(list(cats))
    if dropped:
        warnings.warn(
            f"{path}: dropped {len(dropped)} exact duplicate training rows (outfit ids {sorted(dropped)})",
            stacklevel=3,
        )
    return uids, oids, outfits, categories


def _outfits(
    users: np.ndarray,
    rows: list[list[object]],
    row_categories: list[list[object]],
    oids: list[int],
    catalogue: Catalogue,
    mapper: _Mapper,
    where: str,
) -> Outfits:
    """Map source item rows to global ids, checking each stored category against the catalogue."""
    width = max(len(r) for r in rows)
    items = np.full((len(rows), width), PAD, dtype=np.int64)
    for i, (row, cats, oid) in enumerate(zip(rows, row_categories, oids)):
        here = f"{where} (outfit {oid})"
        if len(row) == 0:
            raise DataError(f"{here}: empty outfit")
        if len(cats) != len(row):
            raise DataError(f"{here}: {len(row)} items but {len(cats)} categories")
        ids = mapper(row, here)
        expected = catalogue.item_category[ids]
        given = np.asarray([_as_int(c, here) for c in cats])
        if not np.array_equal(expected, given):
            j = int(np.flatnonzero(expected != given)[0])
            raise DataError(f"{here}: item {row[j]} has category {given[j]}, the catalogue says {expected[j]}")
        items[i, : len(ids)] = ids
    mask = items != PAD
    categories = np.where(mask, catalogue.item_category[np.where(mask, items, 0)], PAD)
    return Outfits(users, items, categories, mask, np.asarray(oids, dtype=np.int64))


def _valid_users(oids: np.ndarray, block_starts: np.ndarray, block_users: np.ndarray, where: str) -> np.ndarray:
    """User of each validation outfit: the one whose train block starts last before its id."""
    pos = np.searchsorted(block_starts, oids, side="right") - 1
    if (pos < 0).any():
        raise DataError(f"{where}: outfit id {int(oids[pos < 0][0])} comes before every user's train block")
    return block_users[pos]


def _grd_split(
    root: Path,
    name: str,
    taken: np.ndarray,
    block_starts: np.ndarray,
    block_users: np.ndarray,
    catalogue: Catalogue,
    mapper: _Mapper,
) -> Outfits:
    """A `{name}_grd.npy` split (dict oid -> {'outfits', 'category'}); `taken`: outfit ids of earlier splits."""
    path = _file(root, f"{name}_grd.npy")
    grd = _need(load_pickled_npy(path), dict, str(path))
    if not grd:
        raise DataError(f"{path}: the {name} split is empty")
    split_oids = sorted(_as_int(k, f"{path}: key {k!r}") for k in grd)
    rows, cats = [], []
    for oid in split_oids:
        entry = _need(grd[oid], dict, f"{path}: key {oid}")
        if "outfits" not in entry or "category" not in entry:
            raise DataError(f"{path}: key {oid}: needs 'outfits' and 'category'")
        rows.append(list(entry["outfits"]))
        cats.append(list(entry["category"]))
    oids = np.asarray(split_oids, dtype=np.int64)
    clash = np.intersect1d(oids, taken)
    if len(clash):
        raise DataError(f"{path}: key {int(clash[0])}: outfit id also used by a train or valid outfit")
    users = _valid_users(oids, block_starts, block_users, str(path))
    return _outfits(users, rows, cats, split_oids, catalogue, mapper, str(path))


def _check_history(path: Path, user_names: np.ndarray, mapper: _Mapper) -> None:
    """A `*_history.npy` file (user -> {category: [item ids]}): every user and item must be known."""
    history = _need(load_pickled_npy(path), dict, str(path))
    known = set(user_names.astype(np.int64).tolist())
    for user, per_cat in history.items():
        where = f"{path}: key {user!r}"
        if _as_int(user, where) not in known:
            raise DataError(f"{where}: unknown user")
        for cat, items in _need(per_cat, dict, where).items():
            mapper(list(items), f"{where}/{cat!r}")


def _history_pairs(path: Path, user_source: np.ndarray, mapper: _Mapper) -> np.ndarray:
    """`train_history.npy` (user -> {category: [item ids]}) as (user, global item) rows, int64 [n, 2].

    The release's per-user item history (up to 10 items per category; mostly items outside the user's
    outfits, 6.8% of them in the user's own training outfits): interactions known at training time.
    """
    history = _need(load_pickled_npy(path), dict, str(path))
    rows: list[np.ndarray] = []
    for user, per_cat in history.items():
        where = f"{path}: key {user!r}"
        pos = int(np.searchsorted(user_source, _as_int(user, where)))
        if pos >= len(user_source) or user_source[pos] != int(user):
            raise DataError(f"{where}: unknown user")
        for cat, items in _need(per_cat, dict, where).items():
            ids = mapper(list(items), f"{where}/{cat!r}")
            rows.append(np.stack([np.full(len(ids), pos, dtype=np.int64), ids], axis=1))
    pairs = np.concatenate(rows) if rows else np.zeros((0, 2), dtype=np.int64)
    return np.unique(pairs, axis=0)


def load_difashion(path: str | Path = DEFAULT_PATH) -> OutfitDataset:
    """The DiFashion Polyvore-519 release as an OutfitDataset: splits train, valid, and test when present."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: no such DiFashion data folder")
    catalogue, mapper = _catalogue(root)
    uids, oids, rows, row_cats = _train_rows(root)
    user_source = np.unique(np.asarray(uids, dtype=np.int64))
    train_users = np.searchsorted(user_source, np.asarray(uids, dtype=np.int64))
    train = _outfits(train_users, rows, row_cats, oids, catalogue, mapper, str(root / "train.npy"))

    # user blocks: each user's smallest train outfit id
    oid_arr = np.asarray(oids, dtype=np.int64)
    starts = np.full(len(user_source), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(starts, train_users, oid_arr)
    order = np.argsort(starts, kind="stable")
    block_starts, block_users = starts[order], order

    blocks = (block_starts, block_users, catalogue, mapper)
    splits = {"train": train, "valid": _grd_split(root, "valid", oid_arr, *blocks)}
    if (root / "test_grd.npy").is_file():
        taken = np.concatenate([oid_arr, splits["valid"].outfit_ids])
        splits["test"] = _grd_split(root, "test", taken, *blocks)
    for name in ("valid_history.npy", "test_history.npy"):
        if (root / name).is_file():
            _check_history(root / name, user_source, mapper)
    history = None
    if (root / "train_history.npy").is_file():
        history = _history_pairs(root / "train_history.npy", user_source, mapper)

    meta = {
        "name": "polyvore-u-difashion-519",
        "source": "DiFashion release of Polyvore-U 519",
        "path": str(root),
        "note": ("test split from test_grd.npy" if "test" in splits else "no test split in this release")
        + "; validation/test users derived from outfit-id blocks",
    }
    return OutfitDataset(catalogue, len(user_source), splits, meta, user_source.astype(str), history=history)


def difashion_fitb_splits(root: str | Path, dataset: OutfitDataset) -> list[str]:
    """The splits whose FITB files the release holds and the dataset has (valid; test when present)."""
    root = Path(root)
    return [
        s
        for s in ("valid", "test")
        if s in dataset.splits
        and (root / f"fitb_{s}_dict.npy").is_file()
        and (root / f"fitb_{s}_retrieval_candidates.npy").is_file()
    ]


def load_difashion_fitb(path: str | Path, dataset: OutfitDataset, split: str = "valid") -> FitbQuestions:
    """The release's FITB questions of a split (valid or test) in our arrays (5 candidates, the true item first).

    `dataset` must be `load_difashion(path)`: its outfits of that split give the
    full outfit and the user (checked against the FITB file's user key).
    """
    root = Path(path)
    if split not in ("valid", "test"):
        raise DataError(f"DiFashion FITB: split must be valid or test, got {split!r}")
    if split not in dataset.splits:
        raise DataError(f"{root}: the dataset has no {split} split ({split}_grd.npy missing)")
    q_path = _file(root, f"fitb_{split}_dict.npy")
    c_path = _file(root, f"fitb_{split}_retrieval_candidates.npy")
    questions = _need(load_pickled_npy(q_path), dict, str(q_path))
    cand = _need(load_pickled_npy(c_path), dict, str(c_path))
    valid = dataset.split(split)
    row_of = {int(o): i for i, o in enumerate(valid.outfit_ids)}
    user_of = {name: i for i, name in enumerate(dataset.user_names.tolist())}
    source_ids = dataset.catalogue.item_names.astype(np.int64)
    order = np.argsort(source_ids)
    mapper = _Mapper(source_ids[order])
    rows, blanks, cands = [], [], []
    for u_key in sorted(questions, key=lambda k: _as_int(k, f"{q_path}: key {k!r}")):
        user = user_of.get(str(_as_int(u_key, f"{q_path}: key {u_key!r}")))
        if user is None:
            raise DataError(f"{q_path}: key {u_key}: unknown user")
        per_user = _need(questions[u_key], dict, f"{q_path}: key {u_key}")
        user_cands = _need(cand.get(u_key), dict, f"{c_path}: key {u_key}")
        for oid in sorted(per_user):
            where = f"{q_path}: key {u_key}/{oid}"
            row = row_of.get(_as_int(oid, where))
            if row is None:
                raise DataError(f"{where}: outfit is not in {split}_grd.npy")
            if valid.users[row] != user:
                raise DataError(
                    f"{where}: outfit belongs to user {dataset.user_names[valid.users[row]]} by its id block"
                )
            blanked = [_as_int(i, where) for i in per_user[oid]]
            if blanked.count(FITB_BLANK) != 1:
                raise DataError(f"{where}: expected exactly one blank (item 0), got {blanked}")
            slot = blanked.index(FITB_BLANK)
            if oid not in user_cands:
                raise DataError(f"{c_path}: key {u_key}/{oid}: no candidates")
            c_where = f"{c_path}: key {u_key}/{oid}"
            global_cands = order[mapper(user_cands[oid], c_where)]
            if len(global_cands) < 2 or global_cands[0] != valid.items[row, slot]:
                raise DataError(f"{c_where}: the first candidate must be the blanked item")
            rows.append(row)
            blanks.append(slot)
            cands.append(global_cands)
    if not rows:
        raise DataError(f"{q_path}: no questions")
    widths = {len(c) for c in cands}
    if len(widths) != 1:
        raise DataError(f"{c_path}: questions have different numbers of candidates {sorted(widths)}")
    sub = valid.subset(np.asarray(rows))
    meta = {"split": split, "dataset": dataset.meta.get("name", ""), "source": "difashion release"}
    return FitbQuestions(
        sub.users, sub.items, sub.categories, sub.mask, sub.outfit_ids, np.asarray(blanks), np.stack(cands), meta
    )
