"""Batch recommendations for every user: `outfitrec recommend RUN --all-users --out FILE`.

The users (all, or shard i of n: users u with u % n == i) are answered in
chunks; each chunk is written atomically (`data.io.write_text_atomic`) as one
CSV part in the folder `FILE.parts/`, so a killed run loses at most the chunk
in flight and a rerun skips every user already in a part (resumable). Shards
write distinct parts into the same folder (processes of one machine or of
`torchrun`, whose RANK / WORLD_SIZE give the shard when --shard is not set); the
process that finds every user written merges the parts into FILE (atomic too).

FILE is CSV: `user,rank,score,template,items` (items space-separated item ids,
template an index into the run's templates, see `outfitrec serve`'s /api/info);
a user with no recommendation has one row with rank 0 and no items (it marks
the user as done). `FILE.parts/batch.json` records what the parts were made
with (checkpoint, k, search parameters): a rerun with other settings is refused.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from outfitrec.data.io import write_text_atomic
from outfitrec.data.outfits import DataError
from outfitrec.models.search import SearchParams

HEADER = "user,rank,score,template,items"
CHUNK = 64


def parse_shard(text: str | None) -> tuple[int, int]:
    """'i/n' -> (i, n); None -> torchrun's (RANK, WORLD_SIZE) when set, else (0, 1)."""
    if text is None:
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        rank = int(os.environ.get("RANK", "0") or 0)
        return (rank, world) if world > 1 else (0, 1)
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError as exc:
        raise DataError(f"--shard: {text!r} is not i/n (e.g. 0/2)") from exc
    if not (n >= 1 and 0 <= i < n):
        raise DataError(f"--shard: {text!r} needs 0 <= i < n")
    return i, n


def parts_dir(out: Path) -> Path:
    return out.parent / f"{out.name}.parts"


def _users_in(path: Path) -> set[int]:
    users = set()
    with open(path, encoding="utf-8") as fh:
        next(fh, None)
        for line in fh:
            if line.strip():
                users.add(int(line.split(",", 1)[0]))
    return users


def done_users(out: Path) -> set[int]:
    """Users already written: in the merged FILE or in any part."""
    users: set[int] = set()
    if out.is_file():
        users |= _users_in(out)
    folder = parts_dir(out)
    if folder.is_dir():
        for part in sorted(folder.glob("part-*.csv")):
            users |= _users_in(part)
    return users


def _rows(user: int, recs) -> list[str]:
    if not recs:
        return [f"{user},0,,,"]
    return [
        f"{user},{rank},{r.score:.6f},{r.template},{' '.join(str(i) for i in r.items)}"
        for rank, r in enumerate(recs, 1)
    ]


def _check_settings(folder: Path, settings: dict) -> None:
    path = folder / "batch.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != settings:
            raise DataError(
                f"{folder}: parts written with other settings ({old}); remove the folder or choose another --out"
            )
    else:
        write_text_atomic(path, json.dumps(settings, indent=1, sort_keys=True))


def merge(out: Path, n_users: int) -> bool:
    """Merge the parts into `out` (sorted by user and rank) when every user is written; True when merged."""
    folder = parts_dir(out)
    parts = sorted(folder.glob("part-*.csv")) if folder.is_dir() else []
    lines: list[str] = []
    users: set[int] = set()
    for part in parts:
        with open(part, encoding="utf-8") as fh:
            next(fh, None)
            for line in fh:
                if line.strip():
                    lines.append(line.rstrip("\n"))
                    users.add(int(line.split(",", 1)[0]))
    if len(users) < n_users:
        return False
    lines.sort(key=lambda s: tuple(int(x) for x in s.split(",", 2)[:2]))
    write_text_atomic(out, "\n".join([HEADER, *lines]) + "\n")
    return True


def recommend_all(
    rec,
    out: str | Path,
    k: int = 10,
    shard: tuple[int, int] = (0, 1),
    params: SearchParams | None = None,
    chunk: int = CHUNK,
    users: Sequence[int] | None = None,
    progress: bool = True,
    diverse: bool = False,
) -> dict:
    """Top-k outfits of every user of the shard written to `out` (see the module docstring); returns a summary.

    rec: a loaded `Recommender`; users: restrict to these users (default all).
    """
    from tqdm import tqdm

    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise DataError(f"--out {out}: only .csv is supported (pyarrow is not a dependency)")
    params = params or SearchParams()
    rec.check_bounds(k, params)
    i, n = shard
    n_users = rec.dataset.n_users
    every = np.arange(n_users) if users is None else np.asarray(sorted({rec.check_user(u) for u in users}))
    mine = [int(u) for u in every if u % n == i]
    folder = parts_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"checkpoint_sha256": rec.info.get("checkpoint_sha256", ""), "k": k, "diverse": diverse}
    settings["params"] = asdict(params)
    removed = rec.removed_items
    if len(removed) or rec.info.get("added_items"):
        # items removed or added after training (recommend/items.py): parts of another catalogue are refused
        settings["catalogue"] = {"items": int(rec.dataset.catalogue.n_items), "removed": [int(i) for i in removed]}
    _check_settings(folder, settings)
    done = done_users(out)
    todo = [u for u in mine if u not in done]
    started = time.perf_counter()
    bar = tqdm(
        total=len(mine), initial=len(mine) - len(todo), desc="users", unit="user", disable=None if progress else True
    )
    for start in range(0, len(todo), chunk):
        block = todo[start : start + chunk]
        lines = [HEADER]
        for user in block:
            lines += _rows(user, rec.recommend(user, k, diverse, params=params))
            bar.update(1)
        write_text_atomic(folder / f"part-{i:04d}of{n:04d}-{block[0]:09d}.csv", "\n".join(lines) + "\n")
    bar.close()
    seconds = time.perf_counter() - started
    merged = merge(out, len(every))  # by whichever shard finds every user written
    return {
        "users": len(mine),
        "skipped": len(mine) - len(todo),
        "written": len(todo),
        "seconds": round(seconds, 3),
        "users_per_second": round(len(todo) / seconds, 1) if seconds > 0 and todo else None,
        "merged": merged,
        "out": str(out),
    }
