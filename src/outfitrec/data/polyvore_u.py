"""The original Polyvore-U release layout (FHN, CVPR 2019): reader and writer.

A folder `tuples_{630,53,519,32}` holds (see method.md section 5 and FHN's
data/README.md):

- `image_list_top`, `image_list_bottom`, `image_list_shoe`: one image file
  name per line; the line number (from 0) is the item's index within its
  category. Global ids here: tops first, then bottoms, then shoes, each in
  line order. Images are referenced by path (`Catalogue.image_paths`, read
  lazily); the image folder is `image_dir`, else `<folder>/images`, else
  `<folder>/../images` (FHN keeps `images/` beside the `tuples_*` folders).
- `tuples_{train,val,test}_posi`: CSV with header `user,top,bottom,shoe`
  (fixed length) or `user,top,top,bottom,shoe` (variable length: `-1` in the
  second `top` column when the outfit has one top). One outfit per line;
  values are per-category indices. The outfit id is the data line number
  (from 0) within its file. `train` is required, `val`/`test` are read when
  present. Users are indices 0..n_users-1 (n_users = largest user + 1).
- `tuples_{split}_nega`, `tuples_{split}_nega_hard`: same header; K rows per
  positive, in positive order: negative row j belongs to positive row j // K
  and must carry that positive's user (FHN `save_tuples`).
- `fill_in_blank_test`: header = the tuple header repeated C times (FHN: C=4),
  one question per line: C outfits `user,top,...` side by side, the first the
  true one; the others differ from it in exactly one column, the same for all
  (the blank). Becomes `FitbQuestions` with the true item in column 0.

Rows are compacted: a missing second top is dropped, so an outfit's items
occupy its first `size` slots (mask True) and the rest is padding.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from outfitrec.data.fitb import FitbQuestions, NoFitbQuestions, make_fitb
from outfitrec.data.io import atomic_folder, check_output_folder, image_folders, write_manifest
from outfitrec.data.negatives import Candidates, category_pools, make_candidates
from outfitrec.data.outfits import MAX_USER_ID, PAD, Catalogue, DataError, OutfitDataset, Outfits

CATEGORY_NAMES = ["top", "bottom", "shoe"]
HEADER_FIXED = ["user", "top", "bottom", "shoe"]
HEADER_VARIABLE = ["user", "top", "top", "bottom", "shoe"]
SPLIT_FILE = {"train": "train", "valid": "val", "test": "test"}
NEGATIVE_KINDS = ("nega", "nega_hard")
FITB_FILE = "fill_in_blank_test"
MISSING = -1  # the release's marker for a missing second top
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# Default mapping from a dataset's category names to Polyvore-U slots (writer).
_SLOT_WORDS = {
    "shoe": ("shoe", "sandal", "sneaker", "boot", "heel", "loafer", "slipper"),
    "bottom": ("bottom", "trouser", "pant", "jean", "skirt", "short", "legging"),
    "top": ("top", "shirt", "pullover", "sweater", "coat", "jacket", "blouse", "hoodie", "sweatshirt", "vest"),
}


# ----------------------------------------------------------------------------- reading


def find_tuples_folder(folder: str | Path, variant: str | None = None) -> Path:
    """The folder holding `image_list_*`: `folder` itself, `folder/tuples_{variant}`, or its one `tuples_*`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such Polyvore-U folder")
    if variant is not None:
        folder = folder / f"tuples_{variant}"
        if not folder.is_dir():
            raise DataError(f"{folder}: no such Polyvore-U folder")
    if (folder / "image_list_top").exists():
        return folder
    candidates = sorted(p for p in folder.glob("tuples_*") if p.is_dir())
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        names = ", ".join(p.name for p in candidates)
        raise DataError(f"{folder}: several Polyvore-U versions ({names}); name one with variant=")
    raise DataError(f"{folder}/image_list_top: missing file (not a Polyvore-U tuples folder)")


def read_image_list(path: Path) -> list[str]:
    """Image file names, one per line (line number = index within the category).

    Trailing blank lines are ignored; a blank line between names is a DataError
    (it would shift the indices of the names after it).
    """
    names = _read_lines(path)
    while names and not names[-1].strip():
        names.pop()
    for line, name in enumerate(names, start=1):
        if not name.strip():
            raise DataError(f"{path}:{line}: empty image name")
    return [n.strip() for n in names]


def _read_lines(path: Path) -> list[str]:
    """The file's lines (UTF-8; a leading byte-order mark is dropped)."""
    if not path.is_file():
        raise DataError(f"{path}: missing file")
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text file ({exc})") from None


def _parse_ints(
    path: Path, lines: list[str], n_cols: int, first_line: int = 2, describe=lambda j: "beyond int64"
) -> np.ndarray:
    """Rows of comma-separated integers -> int64 [n, n_cols]; errors name file:line and column.

    describe(j): what a value too large for int64 in column j (from 0) is, for the error.
    """
    rows = [line.split(",") for line in lines]
    if rows and all(len(r) == n_cols for r in rows):
        try:
            return np.asarray(rows, dtype=np.int64).reshape(len(rows), n_cols)
        except (ValueError, OverflowError):
            pass  # find the exact bad value below
    out = np.empty((len(rows), n_cols), dtype=np.int64)
    for i, row in enumerate(rows):
        line = first_line + i
        if len(row) != n_cols:
            raise DataError(f"{path}:{line}: expected {n_cols} columns, got {len(row)}")
        for j, value in enumerate(row):
            try:
                number = int(value.strip())
            except ValueError:
                raise DataError(f"{path}:{line}: column {j + 1}: {value.strip()!r} is not an integer") from None
            if not INT64_MIN <= number <= INT64_MAX:
                raise DataError(f"{path}:{line}: column {j + 1}: {number} is out of range ({describe(j)})")
            out[i, j] = number
    return out


def _read_tuples(
    path: Path, header: list[str] | None = None, sizes: dict[str, int] | None = None
) -> tuple[list[str], np.ndarray]:
    """A tuples CSV: (its header, int64 [n, 1 + slots]); header checked against `header` when given.

    sizes: images per category, to name the image list in the error for an index beyond int64.
    """
    lines = _read_lines(path)
    if not lines:
        raise DataError(f"{path}:1: empty file, expected a header")
    got = [c.strip() for c in lines[0].split(",")]
    if header is not None and got != header:
        raise DataError(f"{path}:1: header {','.join(got)!r}, expected {','.join(header)!r}")
    if header is None and got not in (HEADER_FIXED, HEADER_VARIABLE):
        raise DataError(
            f"{path}:1: header {','.join(got)!r}, expected {','.join(HEADER_FIXED)!r} or {','.join(HEADER_VARIABLE)!r}"
        )
    body = lines[1:]
    while body and not body[-1].strip():
        body.pop()
    return got, _parse_ints(path, body, len(got), describe=lambda j: _column_range(got[j], sizes))


def _column_range(name: str, sizes: dict[str, int] | None) -> str:
    """What a too-large value of column `name` is beyond (for the out-of-range error)."""
    if name == "user":
        return f"user ids beyond {MAX_USER_ID:,} are refused"
    if sizes is None:
        return "beyond int64"
    return f"index beyond image_list_{name}, {sizes[name]} images"


def _check_indices(path: Path, header: list[str], values: np.ndarray, sizes: dict[str, int], first_line: int = 2):
    """Users >= 0; every index in 0..len(image list)-1, except -1 in a second top column."""
    for j, name in enumerate(header):
        col = values[:, j]
        if name == "user":
            bad = np.flatnonzero(col < 0)
            if len(bad):
                raise DataError(f"{path}:{first_line + int(bad[0])}: negative user {int(col[bad[0]])}")
            bad = np.flatnonzero(col >= MAX_USER_ID)
            if len(bad):
                raise DataError(
                    f"{path}:{first_line + int(bad[0])}: user {int(col[bad[0]])} is too large (users are "
                    f"numbered 0..n-1; ids beyond {MAX_USER_ID:,} are refused)"
                )
            continue
        optional = name == "top" and j == 2 and header[1] == "top"
        low = MISSING if optional else 0
        bad = np.flatnonzero((col < low) | (col >= sizes[name]))
        if len(bad):
            v = int(col[bad[0]])
            what = (
                f"index {v} beyond image_list_{name} ({sizes[name]} images)"
                if v >= sizes[name]
                else f"negative index {v} in column {j + 1} ({name})"
            )
            raise DataError(f"{path}:{first_line + int(bad[0])}: {what}")


def _check_no_repeats(path: Path, header: list[str], values: np.ndarray, first_line: int = 2) -> None:
    """An outfit holds an item once: the two top columns of the variable layout must differ (-1 aside)."""
    tops = [j for j, name in enumerate(header) if name == "top"]
    if len(tops) < 2:
        return
    a, b = values[:, tops[0]], values[:, tops[1]]
    bad = np.flatnonzero((a == b) & (a != MISSING))
    if len(bad):
        raise DataError(f"{path}:{first_line + int(bad[0])}: top {int(a[bad[0]])} appears twice")


class _Layout:
    """Image lists and the per-category -> global id mapping of one tuples folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.names = {c: read_image_list(folder / f"image_list_{c}") for c in CATEGORY_NAMES}
        self.sizes = {c: len(v) for c, v in self.names.items()}
        counts = [self.sizes[c] for c in CATEGORY_NAMES]
        self.offsets = dict(zip(CATEGORY_NAMES, np.concatenate([[0], np.cumsum(counts)[:-1]]).tolist()))
        self.item_category = np.repeat(np.arange(len(CATEGORY_NAMES)), counts)

    def read(
        self, path: Path, header: list[str] | None = None, outfits: bool = True
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(header, users [n], global item rows [n, slots] with PAD for a missing second top).

        outfits: the rows are outfits (positives), so an item may not appear twice in one row.
        """
        got, values = _read_tuples(path, header, self.sizes)
        _check_indices(path, got, values, self.sizes)
        if outfits:
            _check_no_repeats(path, got, values)
        return got, values[:, 0], self.to_global(got[1:], values[:, 1:])

    def to_global(self, slots: list[str], idx: np.ndarray) -> np.ndarray:
        offsets = np.asarray([self.offsets[s] for s in slots], dtype=np.int64)
        return np.where(idx == MISSING, PAD, idx + offsets)


def _compact(users: np.ndarray, rows: np.ndarray, item_category: np.ndarray, outfit_ids=None) -> Outfits:
    return Outfits.from_rows(users, rows.tolist(), item_category, outfit_ids=outfit_ids, max_size=rows.shape[1])


def _image_dir(folder: Path, image_dir: str | Path | None) -> Path | None:
    if image_dir is not None:
        path = Path(image_dir)
        if not path.is_dir():
            raise DataError(f"{path}: no such image folder")
        return path
    for path in (folder / "images", folder.parent / "images"):
        if path.is_dir():
            return path
    return None


def load_polyvore_u(
    folder: str | Path, variant: str | None = None, image_dir: str | Path | None = None
) -> OutfitDataset:
    """A Polyvore-U tuples folder as an OutfitDataset (train, plus valid / test when present)."""
    folder = find_tuples_folder(folder, variant)
    layout = _Layout(folder)
    header = None
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, stem in SPLIT_FILE.items():
        path = folder / f"tuples_{stem}_posi"
        if split != "train" and not path.exists():
            continue
        header, users, rows = layout.read(path, header)
        if len(users) == 0:
            raise DataError(f"{path}: the {split} split is empty (header only)")
        parts[split] = (users, rows)
    n_users = int(max(users.max() for users, _ in parts.values())) + 1
    splits = {s: _compact(u, r, layout.item_category) for s, (u, r) in parts.items()}
    images = _image_dir(folder, image_dir)
    all_names = [n for c in CATEGORY_NAMES for n in layout.names[c]]
    image_paths = np.asarray([str(images / n) for n in all_names]) if images is not None else None
    catalogue = Catalogue(layout.item_category, list(CATEGORY_NAMES), item_names=np.asarray(all_names, dtype=str))
    catalogue.image_paths = image_paths
    variable = header == HEADER_VARIABLE
    templates = [["top", "top", "bottom", "shoe"], ["top", "bottom", "shoe"]] if variable else [list(CATEGORY_NAMES)]
    meta = {
        "name": f"polyvore-u-{folder.name.removeprefix('tuples_')}",
        "source": "Polyvore-U release layout",
        "path": str(folder),
        "variable_length": variable,
        "templates": templates,
    }
    return OutfitDataset(catalogue, n_users, splits, meta)


def load_polyvore_u_candidates(
    folder: str | Path, split: str = "test", kind: str = "nega", variant: str | None = None
) -> Candidates:
    """A split's positives with the release's negatives file (`nega` random mix or `nega_hard`).

    K = rows(nega) / rows(posi); negative row j pairs with positive row j // K
    and must name the same user.
    """
    if kind not in NEGATIVE_KINDS:
        raise DataError(f"polyvore-u: unknown negatives kind {kind!r} (expected one of {NEGATIVE_KINDS})")
    if split not in SPLIT_FILE:
        raise DataError(f"polyvore-u: unknown split {split!r} (expected one of {tuple(SPLIT_FILE)})")
    folder = find_tuples_folder(folder, variant)
    layout = _Layout(folder)
    posi_path = folder / f"tuples_{SPLIT_FILE[split]}_posi"
    nega_path = folder / f"tuples_{SPLIT_FILE[split]}_{kind}"
    header, users, rows = layout.read(posi_path)
    if len(users) == 0:
        raise DataError(f"{posi_path}: the {split} split is empty (header only)")
    _, n_users, n_rows = layout.read(nega_path, header, outfits=False)
    if len(n_users) == 0 or len(n_users) % len(users):
        raise DataError(
            f"{nega_path}: {len(n_users)} negative rows is not a positive multiple of {len(users)} positives"
        )
    k = len(n_users) // len(users)
    owner = np.repeat(users, k)
    bad = np.flatnonzero(n_users != owner)
    if len(bad):
        j = int(bad[0])
        raise DataError(
            f"{nega_path}:{j + 2}: unknown user {int(n_users[j])} for this row: it pairs with positive "
            f"line {j // k + 2} of {posi_path.name}, user {int(owner[j])}"
        )
    positives = _compact(users, rows, layout.item_category)
    negatives = _compact(n_users, n_rows, layout.item_category, outfit_ids=np.repeat(positives.outfit_ids, k))
    width = max(positives.max_size, negatives.max_size)
    meta = {"kind": "random" if kind == "nega" else "hard", "split": split, "source": str(nega_path)}
    return Candidates(positives.padded_to(width), negatives.padded_to(width), k, meta)


def load_polyvore_u_fitb(folder: str | Path, variant: str | None = None) -> FitbQuestions:
    """`fill_in_blank_test` as FitbQuestions (the true item first; outfit id = question line from 0)."""
    folder = find_tuples_folder(folder, variant)
    layout = _Layout(folder)
    path = folder / FITB_FILE
    lines = _read_lines(path)
    if not lines:
        raise DataError(f"{path}:1: empty file, expected a header")
    head = [c.strip() for c in lines[0].split(",")]
    base = HEADER_VARIABLE if head[: len(HEADER_VARIABLE)] == HEADER_VARIABLE else HEADER_FIXED
    width = len(base)
    n_cand = len(head) // width
    if n_cand < 2 or head != base * n_cand:
        raise DataError(f"{path}:1: header must be {','.join(base)!r} repeated once per candidate (at least twice)")
    body = [line for line in lines[1:] if line.strip()]
    values = _parse_ints(path, body, len(head), describe=lambda j: _column_range(head[j], layout.sizes))
    if len(values) == 0:
        raise DataError(f"{path}: no questions")
    for c in range(n_cand):
        _check_indices(path, base, values[:, c * width : (c + 1) * width], layout.sizes)
    _check_no_repeats(path, base, values[:, :width])
    outfits = values.reshape(len(values), n_cand, width)
    users = outfits[:, 0, 0]
    blanks, cands = [], []
    for i in range(len(values)):
        line = i + 2
        if (outfits[i, :, 0] != users[i]).any():
            raise DataError(f"{path}:{line}: the candidate outfits name different users")
        differ = np.flatnonzero((outfits[i, 1:, 1:] != outfits[i, 0, 1:]).any(axis=0))
        if len(differ) != 1:
            raise DataError(f"{path}:{line}: candidates must differ from the first outfit in exactly one column")
        col = int(differ[0])
        if outfits[i, 0, 1 + col] == MISSING or (outfits[i, :, 1 + col] == MISSING).any():
            raise DataError(f"{path}:{line}: the blanked column holds a missing item (-1)")
        # position of the blank once the row is compacted (missing second top dropped)
        blanks.append(int((outfits[i, 0, 1 : 1 + col] != MISSING).sum()))
        cands.append(layout.to_global([base[1 + col]] * n_cand, outfits[i, :, 1 + col]))
    true_rows = layout.to_global(base[1:], outfits[:, 0, 1:])
    true = _compact(users, true_rows, layout.item_category)
    meta = {"split": "test", "source": str(path)}
    return FitbQuestions(
        true.users, true.items, true.categories, true.mask, true.outfit_ids, np.asarray(blanks), np.stack(cands), meta
    )


# ----------------------------------------------------------------------------- writing


def default_slot_of(category_names: list[str]) -> dict[str, str]:
    """Guess each category's Polyvore-U slot from its name (categories matching none are left out)."""
    out = {}
    for name in category_names:
        low = name.lower()
        for slot in ("shoe", "bottom", "top"):  # shoe first: "ankle boot", bottom before "top"
            if any(word in low for word in _SLOT_WORDS[slot]):
                out[name] = slot
                break
    return out


_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _image_file_names(catalogue: Catalogue, ids: np.ndarray) -> list[str]:
    """PNG file names per item: the item's name when safe and unique, else `item{id}`."""
    names = [str(n) for n in catalogue.item_names[ids]]
    if len(set(names)) == len(names) and all(_SAFE_NAME.match(n) for n in names):
        return [n if n.endswith(".png") else f"{n}.png" for n in names]
    return [f"item{int(i)}.png" for i in ids]


def write_polyvore_u(
    dataset: OutfitDataset,
    folder: str | Path,
    *,
    k: int = 10,
    seed: int = 0,
    slot_of: dict[str, str] | None = None,
    write_images: bool = True,
    fitb: bool = True,
    on_mismatch: str = "error",
    overwrite: bool = False,
    inputs: tuple[str | Path, ...] = (),
) -> dict:
    """Write `dataset` in the Polyvore-U layout into `folder` (the tuples folder itself).

    slot_of maps category names to 'top' / 'bottom' / 'shoe' (default: guessed
    from the names). Every outfit must have one top (or two: the variable-length
    layout is used when any outfit has two), one bottom and one shoe; others
    raise DataError, or are left out when on_mismatch='skip'. Negatives: K
    random-mix rows (`_nega`) and K hard rows (`_nega_hard`, when there are two
    users or more) per positive, seeded; `fill_in_blank_test` from the test
    split (4 candidates). Images go to `folder/images/` as PNG, named by item.
    Written into a temporary folder and swapped in: never a half-written folder. Raises
    DataError when `folder` is, contains or lies inside one of `inputs` or the image folders,
    or exists and is not an outfitrec folder replaced with `overwrite`.
    Returns {'folder', 'variable_length', 'written': {split: n}, 'skipped': {split: n}}.
    """
    if on_mismatch not in ("error", "skip"):
        raise DataError(f"polyvore-u writer: on_mismatch must be 'error' or 'skip', not {on_mismatch!r}")
    cat = dataset.catalogue
    folder = check_output_folder(folder, [*inputs, *image_folders(cat.image_paths)], overwrite)
    slot_of = default_slot_of(cat.category_names) if slot_of is None else slot_of
    bad = {s for s in slot_of.values() if s not in CATEGORY_NAMES}
    if bad:
        raise DataError(f"polyvore-u writer: unknown slots {sorted(bad)} (expected {CATEGORY_NAMES})")
    slot_id = np.full(cat.n_categories, -1, dtype=np.int64)
    for name, slot in slot_of.items():
        if name not in cat.category_names:
            raise DataError(f"polyvore-u writer: slot_of names unknown category {name!r}")
        slot_id[cat.category_names.index(name)] = CATEGORY_NAMES.index(slot)
    item_slot = slot_id[cat.item_category]
    per_slot = {s: np.flatnonzero(item_slot == i) for i, s in enumerate(CATEGORY_NAMES)}
    index_in_slot = np.full(cat.n_items, -1, dtype=np.int64)
    for ids in per_slot.values():
        index_in_slot[ids] = np.arange(len(ids))

    # each outfit as (top, top2, bottom, shoe) per-slot indices, or None when it does not fit
    kept: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    skipped: dict[str, int] = {}
    variable = False
    for split, outfits in dataset.splits.items():
        rows, ok = _slot_rows(outfits, item_slot, index_in_slot)
        if not ok.all():
            first = int(np.flatnonzero(~ok)[0])
            if on_mismatch == "error":
                raise DataError(
                    f"polyvore-u writer: split {split} outfit {int(outfits.outfit_ids[first])} is not "
                    "one or two tops + one bottom + one shoe (pass on_mismatch='skip' to leave such outfits out)"
                )
        kept[split] = (np.flatnonzero(ok), rows[ok])
        skipped[split] = int((~ok).sum())
        variable = variable or bool((rows[ok][:, 1] != MISSING).any())
    if len(kept.get("train", ((), ()))[0]) == 0:
        raise DataError("polyvore-u writer: no training outfit fits the top/bottom/shoe layout")
    header = HEADER_VARIABLE if variable else HEADER_FIXED

    def table(users: np.ndarray, rows: np.ndarray, repeat: int = 1) -> str:
        cols = rows if variable else rows[:, [0, 2, 3]]
        data = np.concatenate([users[:, None], cols], axis=1).reshape(len(users) // repeat, -1)
        body = "\n".join(",".join(map(str, r)) for r in data.tolist())
        return ",".join(header * repeat) + "\n" + (body + "\n" if body else "")

    with atomic_folder(folder) as tmp:
        names = {}
        for s in CATEGORY_NAMES:
            names[s] = _image_file_names(cat, per_slot[s])
            (tmp / f"image_list_{s}").write_text("".join(f"{n}\n" for n in names[s]))
        forbidden: set[frozenset[int]] = set()
        for outfits in dataset.splits.values():
            forbidden.update(outfits.item_sets())
        written = {}
        for offset, split in enumerate(("train", "valid", "test")):
            if split not in kept or len(kept[split][0]) == 0:
                continue
            index, rows = kept[split]
            positives = dataset.splits[split].subset(index)
            stem = SPLIT_FILE[split]
            (tmp / f"tuples_{stem}_posi").write_text(table(positives.users, rows))
            pools = category_pools(positives.items, cat.item_category)
            cands = make_candidates(
                positives, pools, k=k, seed=seed + offset, forbidden=forbidden, fallback_pools=cat.items_by_category()
            )
            neg_rows, _ = _slot_rows(cands.negatives, item_slot, index_in_slot)
            (tmp / f"tuples_{stem}_nega").write_text(table(cands.negatives.users, neg_rows))
            if len(np.unique(positives.users)) > 1:
                hard = make_candidates(positives, pools, k=k, seed=seed + offset, kind="hard")
                hard_rows, _ = _slot_rows(hard.negatives, item_slot, index_in_slot)
                (tmp / f"tuples_{stem}_nega_hard").write_text(table(hard.negatives.users, hard_rows))
            written[split] = len(index)
            if split == "test" and fitb:
                try:
                    questions = make_fitb(positives, pools, seed=seed + 100, fallback_pools=cat.items_by_category())
                except NoFitbQuestions as exc:
                    warnings.warn(f"{exc}; no {FITB_FILE} written", stacklevel=2)
                    continue
                cand_outfits = questions.candidate_outfits(cat.item_category)
                q_rows, _ = _slot_rows(cand_outfits, item_slot, index_in_slot)
                (tmp / FITB_FILE).write_text(table(cand_outfits.users, q_rows, repeat=questions.n_candidates))
        if write_images:
            _write_images(cat, per_slot, names, tmp / "images")
        write_manifest(tmp, "polyvore-u", written=written, skipped=skipped, seed=seed, k=k)
    return {"folder": str(folder), "variable_length": variable, "written": written, "skipped": skipped}


def _slot_rows(outfits: Outfits, item_slot: np.ndarray, index_in_slot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per outfit: per-slot indices (top, top2 or -1, bottom, shoe) and whether it fits the layout."""
    n = len(outfits)
    rows = np.full((n, 4), MISSING, dtype=np.int64)
    ok = np.ones(n, dtype=bool)
    items = np.where(outfits.mask, outfits.items, 0)
    slots = np.where(outfits.mask, item_slot[items], -2)
    counts = np.stack([(slots == s).sum(axis=1) for s in range(3)], axis=1)
    ok &= (counts[:, 0] >= 1) & (counts[:, 0] <= 2) & (counts[:, 1] == 1) & (counts[:, 2] == 1)
    ok &= ~((slots == -1).any(axis=1))  # an item of a category with no slot
    for i in np.flatnonzero(ok):
        tops = [int(index_in_slot[it]) for it, s in zip(items[i], slots[i]) if s == 0]
        rows[i, 0] = tops[0]
        if len(tops) == 2:
            rows[i, 1] = tops[1]
        rows[i, 2] = int(index_in_slot[items[i][slots[i] == 1][0]])
        rows[i, 3] = int(index_in_slot[items[i][slots[i] == 2][0]])
    return rows, ok


def _write_images(cat: Catalogue, per_slot: dict[str, np.ndarray], names: dict[str, list[str]], out: Path) -> None:
    """Every slotted item's image as PNG (from memory) or a copy of its file."""
    from PIL import Image
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    pairs = [(int(i), n) for s in CATEGORY_NAMES for i, n in zip(per_slot[s], names[s])]
    if cat.images is None and cat.image_paths is None:
        raise DataError("polyvore-u writer: the catalogue has no images (pass write_images=False)")
    for item, name in tqdm(pairs, desc="images", disable=None, leave=False):
        if cat.images is not None:
            Image.fromarray(np.asarray(cat.images[item])).save(out / name, format="PNG")
        else:
            Image.fromarray(cat.load_image(item)).save(out / name, format="PNG")
