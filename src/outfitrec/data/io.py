"""Safe writes: one atomic writer for files, one for folders, and the checks that protect inputs.

- `atomic_file(path)`: a context manager yielding a hidden temporary path beside
  `path` (same suffix, so writers that pick a format by suffix work); on
  success the file is fsynced and renamed over `path`, on failure removed.
- `atomic_folder(out)`: a context manager yielding a hidden temporary folder
  beside `out`; on success every file in it is fsynced and the folder is
  swapped in (rename the old `out` aside, rename the new one in, delete the
  old); on failure it is removed. A kill at any point leaves `out` whole-old,
  whole-new or absent, plus hidden `.NAME.*.tmp` / `.NAME.*.old` leftovers
  that the next `atomic_folder(out)` removes (readers never look at them).
- `check_output_folder(out, inputs, overwrite)`: refuses an output that is,
  contains or lies inside an input, and an existing non-empty folder unless
  `overwrite` and outfitrec wrote it (a manifest file `outfitrec.json`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from outfitrec.data.errors import DataError


def _umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp / mkdtemp create 0600 / 0700; what outfitrec writes gets the modes a plain open() / mkdir() would give
_UMASK = _umask()
FILE_MODE = 0o666 & ~_UMASK
FOLDER_MODE = 0o777 & ~_UMASK

MANIFEST = "outfitrec.json"
MANIFEST_FORMAT = "outfitrec-folder"
# what outfitrec writes into its folders: a folder holding only these (no manifest: written by an
# older outfitrec) may be replaced with --overwrite too
_OWN_NAMES = ("dataset.npz", "truth.npz", "contact_sheet.png", "polyvore_u", MANIFEST, "features.npy")
_OWN_PREFIXES = ("candidates_", "fitb_", "features")


def _fsync_path(path: Path) -> None:
    """fsync a file or a folder by path (best effort on systems that refuse folder fsync)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """`with atomic_file(p) as tmp:` write `tmp` (any writer, by path); then fsync + rename onto `p`.

    The temporary file is hidden (`.NAME.XXXX.tmp.SUFFIX`) and removed on any error,
    so `p` is either its old content or the complete new one. Creates missing parent folders.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync_path(tmp)
        tmp.chmod(FILE_MODE)  # not mkstemp's 0600: others may read what a plain write would let them
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_path(path.parent)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write bytes through `atomic_file`."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write UTF-8 text through `atomic_file`."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _leftovers(out: Path) -> list[Path]:
    """Hidden temporary / set-aside siblings of `out` left by an interrupted `atomic_folder`."""
    if not out.parent.is_dir():
        return []
    return [
        p
        for p in out.parent.glob(f".{out.name}.*")
        if p.name.endswith((".tmp", ".old")) and p.name.count(".") >= 3 and p.is_dir()
    ]


def clean_leftovers(out: str | Path) -> int:
    """Remove the leftovers of interrupted writes of folder `out`; returns how many were removed."""
    found = _leftovers(Path(out))
    for p in found:
        shutil.rmtree(p, ignore_errors=True)
    return len(found)


def _fsync_tree(folder: Path) -> None:
    for root, _dirs, files in os.walk(folder):
        for name in files:
            _fsync_path(Path(root) / name)
        _fsync_path(Path(root))


@contextmanager
def atomic_folder(out: str | Path) -> Iterator[Path]:
    """Build a folder in a hidden temporary sibling of `out`, then swap it into place.

    `with atomic_folder(out) as tmp:` write into `tmp`. On success: the files are
    fsynced, an existing `out` is renamed aside, `tmp` renamed to `out`, the old
    one deleted. On any error `tmp` is removed and `out` is left as it was.
    Callers check `out` first with `check_output_folder` (this replaces it).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(out)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        yield tmp
        _fsync_tree(tmp)
        tmp.chmod(FOLDER_MODE)
        old = None
        if out.is_dir() and not out.is_symlink():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, old)  # an empty `old` folder is replaced by `out`
        elif out.exists() or out.is_symlink():
            out.unlink()
        os.replace(tmp, out)
        _fsync_path(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def hash_file(digest, path: str | Path):
    """`digest` (a hashlib object) updated with the bytes of the file at `path`, read in 1 MiB blocks."""
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    return hash_file(hashlib.sha256(), path).hexdigest()


def read_manifest(folder: str | Path) -> dict | None:
    """The folder's outfitrec manifest, or None when it has none (or an unreadable one)."""
    path = Path(folder) / MANIFEST
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return info if isinstance(info, dict) and info.get("format") == MANIFEST_FORMAT else None


def write_manifest(folder: str | Path, kind: str, **facts) -> dict:
    """Write `folder/outfitrec.json` (format, kind, facts): the mark that outfitrec wrote this folder whole.

    Written last into a folder under construction, so its presence means every other file is there.
    """
    info = {**facts, "format": MANIFEST_FORMAT, "version": 1, "kind": kind}
    write_text_atomic(Path(folder) / MANIFEST, json.dumps(info, indent=1, sort_keys=True) + "\n")
    return info


def written_by_outfitrec(folder: Path) -> bool:
    """True when `folder` has an outfitrec manifest, or holds only files an older outfitrec writes."""
    if read_manifest(folder) is not None:
        return True
    names = [p.name for p in folder.iterdir() if not _is_temp_leftover(p)]
    return (
        "dataset.npz" in names
        and all(n in _OWN_NAMES or n.startswith(_OWN_PREFIXES) for n in names)
        and not (folder / "dataset.npz").is_dir()
    )


def _overlap(out: Path, inputs: Iterable[str | Path]) -> tuple[Path, str] | None:
    target = out.resolve()
    for given in inputs:
        src = Path(given).resolve()
        if target == src:
            return Path(given), "is"
        if target in src.parents:
            return Path(given), "contains"
        if src in target.parents:
            return Path(given), "lies inside"
    return None


def _is_temp_leftover(path: Path) -> bool:
    """A hidden temporary file of an interrupted `atomic_file` (`.NAME.XXXX.tmp...`)."""
    return path.name.startswith(".") and ".tmp" in path.name and path.is_file()


def check_output_folder(out: str | Path, inputs: Iterable[str | Path] = (), overwrite: bool = False) -> Path:
    """Check that writing the folder `out` can destroy nothing; returns `out` as a Path.

    Raises DataError when `out` is, contains or lies inside one of `inputs`;
    when it is a file; when it is a non-empty folder and `overwrite` is False;
    or when it is a non-empty folder that outfitrec did not write (no
    `outfitrec.json` manifest), even with `overwrite`.
    """
    out = Path(out)
    hit = _overlap(out, inputs)
    if hit is not None:
        src, how = hit
        raise DataError(f"{out}: the output {how} the input {src}; choose an output folder outside the input")
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is a file, not a folder")
    if out.is_dir() and any(not _is_temp_leftover(p) for p in out.iterdir()):
        if not overwrite:
            what = "; it already holds a dataset" if (out / "dataset.npz").exists() else ""
            raise DataError(f"{out}: exists and is not empty{what} (pass --overwrite)")
        if not written_by_outfitrec(out):
            raise DataError(
                f"{out}: exists and was not written by outfitrec (no {MANIFEST}); --overwrite replaces only "
                "outfitrec's own folders: remove it yourself or choose another folder"
            )
    return out


def image_folders(image_paths) -> list[Path]:
    """The distinct folders holding a catalogue's image files (inputs an output must not touch)."""
    if image_paths is None:
        return []
    return sorted({Path(str(p)).parent for p in image_paths if str(p)})
