"""The app factory behind `outfitrec serve RUN --workers N`: one FastAPI app per uvicorn worker process.

uvicorn starts N worker processes that each import this module and call
`app_factory()` (uvicorn `factory=True`), so the request handling of each
worker runs on its own core. The serve command first loads the run once in the
parent, which builds the search index and the outfit pool and caches them beside
the checkpoint (`checkpoint/cache/`); every worker then loads those read-only
files instead of computing them again. What to load is passed to the workers
through environment variables (`serve_environment`), because uvicorn gives a
factory no arguments.
"""

from __future__ import annotations

import json
import os

ENV = "OUTFITREC_SERVE"


def serve_environment(
    run: str,
    data: str | None,
    backend: str,
    pool: bool,
    threads: int = 1,
    result_cache: int | None = None,
    users_from: str | None = None,
    remove_items: str | None = None,
    add_items: str | None = None,
) -> dict[str, str]:
    """The environment variable that tells `app_factory` what to load (new users and removed items too)."""
    spec = {"run": str(run), "data": None if data is None else str(data), "backend": backend, "pool": pool}
    spec |= {"threads": threads, "result_cache": result_cache, "users_from": users_from, "remove_items": remove_items}
    spec["add_items"] = add_items
    return {ENV: json.dumps(spec)}


def load_from_environment():
    """The `Recommender` that the environment names (see `serve_environment`)."""
    import torch

    from outfitrec.recommend.engine import Recommender

    raw = os.environ.get(ENV)
    if not raw:
        raise RuntimeError(f"outfitrec serve: {ENV} is not set; start workers with `outfitrec serve RUN --workers N`")
    spec = json.loads(raw)
    torch.set_num_threads(int(spec.get("threads", 1)))
    rec = Recommender.from_run(spec["run"], spec.get("data"), spec.get("backend", "torch"), pool=spec.get("pool", True))
    if spec.get("result_cache") is not None:
        rec.result_cache_size = int(spec["result_cache"])
    if spec.get("add_items"):
        rec.add_items_csv(spec["add_items"])
    if spec.get("users_from"):
        rec.load_users(spec["users_from"])
    if spec.get("remove_items"):
        rec.remove_items(rec.dataset.catalogue.item_indices(spec["remove_items"]))
    return rec


def app_factory():
    """uvicorn's factory: the app of one worker process."""
    from outfitrec.serve.app import create_app

    return create_app(load_from_environment(), allow_changes=False)  # workers would disagree
