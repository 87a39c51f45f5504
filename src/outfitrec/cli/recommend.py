"""CLI commands: recommend, complete, export-onnx, serve."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from outfitrec.data.outfits import DataError
from outfitrec.models.search import SearchParams

RUN_HELP = "a training run directory (model/ + config.yaml), or a checkpoint folder when --data is given"
DATA_HELP = "prepared dataset (folder or dataset.npz) for a bare checkpoint; default: the run's config.yaml data.path"
BACKEND_HELP = "inference backend: torch, or onnx (exported on first use into the checkpoint's onnx/ folder)"


USERS_FROM_HELP = "folder of new users written by `outfitrec users add` (fitted on this run's checkpoint)"
REMOVE_HELP = "comma-separated item names or indices removed from the catalogue: never recommended"
ADD_ITEMS_HELP = "CSV of new catalogue items (item_id,category[,image]), encoded from their content and searched"


def load_recommender(
    run: Path,
    data: Path | None = None,
    backend: str = "torch",
    threads: int = 1,
    pool: bool = False,
    users_from: Path | None = None,
    remove_items: str | None = None,
    add_items: Path | None = None,
):
    """A `Recommender` from a run directory, or from a checkpoint + dataset (`outfitrec.load_recommender`).

    users_from: attach the new users of an overlay folder (`outfitrec users add`); remove_items: items
    (names or indices, comma-separated) no search returns; add_items: a CSV of new items (recommend/items.py).

    `threads`: torch CPU threads. One by default: the search runs many small
    matrix products, where threads cost more than they gain (measured on the
    demo's student while other jobs shared the 2 cores: 436 ms per user with
    one thread, 979 ms with torch's default of two).
    """
    import torch

    from outfitrec.recommend.engine import Recommender

    torch.set_num_threads(threads)
    if backend not in ("torch", "onnx"):
        raise DataError(f"--backend: {backend!r} is not one of torch, onnx")
    rec = Recommender.from_run(run, data, backend, pool=pool, progress=pool)  # type: ignore[arg-type]
    if add_items is not None:
        rec.add_items_csv(add_items)
    if users_from is not None:
        rec.load_users(users_from)
    if remove_items is not None:
        rec.remove_items(rec.dataset.catalogue.item_indices(remove_items))
    return rec


def resolve_user(rec, user: str) -> int:
    """A user given by name (users.csv / the dataset's user_names) or by index 0..n-1; DataError otherwise."""
    return rec.dataset.user_index(user)


def _item_label(rec, i: int) -> str:
    name = str(rec.dataset.catalogue.item_names[i])
    return f"{name} ({rec.item_category_name(i)})" if name == str(i) else f"{name} (#{i}, {rec.item_category_name(i)})"


def _print_outfits(rec, recs, seconds: float, as_json: bool, user: int) -> None:
    if as_json:
        out = [
            {
                "items": list(r.items),
                "names": [str(rec.dataset.catalogue.item_names[i]) for i in r.items],
                "score": r.score,
                "template": r.template,
                "categories": [rec.item_category_name(i) for i in r.items],
            }
            for r in recs
        ]
        name = str(rec.dataset.user_names[user])
        print(json.dumps({"user": user, "user_name": name, "seconds": seconds, "outfits": out}, indent=1))
        return
    name = str(rec.dataset.user_names[user])
    print(
        f"user {user}"
        + ("" if name == str(user) else f" ({name})")
        + f": {len(recs)} outfits in {seconds * 1000:.1f} ms"
    )
    print("| rank | score | template | items |")
    print("|---:|---:|---|---|")
    for rank, r in enumerate(recs, 1):
        template = " + ".join(rec.info["templates"][r.template])
        items = ", ".join(_item_label(rec, i) for i in r.items)
        print(f"| {rank} | {r.score:.4f} | {template} | {items} |")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""

    @app.command()
    def recommend(
        run: Path = typer.Argument(..., help=RUN_HELP),
        user: str | None = typer.Option(None, "--user", "-u", help="user name or index (or --all-users)"),
        k: int = typer.Option(10, "--k", "-k", min=1, help="number of outfits"),
        diverse: bool = typer.Option(False, "--diverse", help="no item repeats across the k outfits"),
        all_users: bool = typer.Option(False, "--all-users", help="every user, written to --out (batch; resumable)"),
        out: Path | None = typer.Option(None, "--out", "-o", help="--all-users: output CSV (parts in OUT.parts/)"),
        shard: str | None = typer.Option(
            None,
            "--shard",
            help="--all-users: i/n, this process's users (u mod n == i); default torchrun's RANK/WORLD_SIZE",
        ),
        template: list[int] = typer.Option(None, "--template", "-t", help="template index (repeatable; default all)"),
        exact: bool = typer.Option(False, "--exact", help="enumerate every outfit (small catalogues only)"),
        beam_width: int = typer.Option(
            SearchParams.beam_width, "--beam-width", min=1, help="partial outfits kept per slot"
        ),
        shortlist: int = typer.Option(SearchParams.shortlist, "--shortlist", min=1, help="items per slot considered"),
        data: Path | None = typer.Option(None, "--data", help=DATA_HELP),
        backend: str = typer.Option("torch", "--backend", help=BACKEND_HELP),
        as_json: bool = typer.Option(False, "--json", help="print JSON"),
        users_from: Path | None = typer.Option(None, "--users-from", help=USERS_FROM_HELP),
        remove_items: str | None = typer.Option(None, "--remove-items", help=REMOVE_HELP),
        add_items: Path | None = typer.Option(None, "--add-items", help=ADD_ITEMS_HELP),
    ) -> None:
        """The user's top-k new outfits from the whole catalogue (beam search over slots; training outfits excluded).

        With --all-users --out FILE: every user's top-k in one CSV (recommend/batch.py): progress bar,
        resumable (a rerun skips users already written), shardable (--shard i/n, or under torchrun).
        """
        if all_users == (user is not None):
            raise DataError("recommend: give either --user or --all-users")
        if all_users and out is None:
            raise DataError("recommend --all-users: give --out FILE.csv")
        params = SearchParams(beam_width=beam_width, shortlist=shortlist)
        if all_users:
            from outfitrec.recommend.batch import parse_shard, recommend_all

            i, n = parse_shard(shard)
            rec = load_recommender(
                run, data, backend, pool=True, users_from=users_from, remove_items=remove_items, add_items=add_items
            )
            summary = recommend_all(rec, out, k, (i, n), params, diverse=diverse)
            rate = summary["users_per_second"]
            print(
                f"shard {i}/{n}: {summary['written']} users written, {summary['skipped']} already there, "
                f"{summary['seconds']:.1f} s" + (f" ({rate} users/s)" if rate else "")
            )
            print(f"wrote {out}" if summary["merged"] else f"parts in {out}.parts/ (merged when every shard is done)")
            return
        rec = load_recommender(
            run, data, backend, users_from=users_from, remove_items=remove_items, add_items=add_items
        )
        index = resolve_user(rec, user)
        start = time.perf_counter()
        recs = rec.recommend(index, k, diverse, template or None, exact, params)
        _print_outfits(rec, recs, time.perf_counter() - start, as_json, index)

    @app.command()
    def complete(
        run: Path = typer.Argument(..., help=RUN_HELP),
        user: str = typer.Option(..., "--user", "-u", help="user name or index"),
        items: str = typer.Option(
            ..., "--items", "-i", help="comma-separated item names or indices already in the outfit"
        ),
        k: int = typer.Option(5, "--k", "-k", min=1, help="number of completed outfits"),
        template: int | None = typer.Option(None, "--template", "-t", help="template index (default: any that fits)"),
        diverse: bool = typer.Option(False, "--diverse", help="the added items differ between the outfits"),
        data: Path | None = typer.Option(None, "--data", help=DATA_HELP),
        backend: str = typer.Option("torch", "--backend", help=BACKEND_HELP),
        as_json: bool = typer.Option(False, "--json", help="print JSON"),
    ) -> None:
        """Complete an outfit: the best items for the missing slots, for this user."""
        rec = load_recommender(run, data, backend)
        index, given = resolve_user(rec, user), rec.dataset.catalogue.item_indices(items)
        start = time.perf_counter()
        recs = rec.complete(index, given, k, template, diverse)
        _print_outfits(rec, recs, time.perf_counter() - start, as_json, index)

    @app.command("export-onnx")
    def export_onnx_command(
        run: Path = typer.Argument(..., help=RUN_HELP),
        out: Path | None = typer.Option(None, "--out", "-o", help="output folder (default: the checkpoint's onnx/)"),
        data: Path | None = typer.Option(None, "--data", help=DATA_HELP),
        check: bool = typer.Option(True, "--check/--no-check", help="compare onnxruntime with PyTorch"),
    ) -> None:
        """Export the model (item encoder, outfit encoder, user scorer) to ONNX and check parity with onnxruntime."""
        from outfitrec.models.checkpoint import load_run
        from outfitrec.recommend.engine import checkpoint_hash
        from outfitrec.recommend.onnx_export import export_onnx, parity_report

        loaded = load_run(run, data)
        model, dataset, checkpoint = loaded.model, loaded.dataset, loaded.checkpoint_dir
        target = out if out is not None else checkpoint / "onnx"
        paths = export_onnx(model, target, checkpoint_hash(checkpoint))
        for path in paths:
            print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
        if check:
            report = parity_report(model, target, dataset)
            for name, err in report.items():
                print(f"max |onnxruntime - torch| {name}: {err:.2e}")

    @app.command()
    def serve(
        run: Path = typer.Argument(..., help=RUN_HELP),
        host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (loopback by default)"),
        port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port"),
        data: Path | None = typer.Option(None, "--data", help=DATA_HELP),
        backend: str = typer.Option("torch", "--backend", help=BACKEND_HELP),
        workers: int = typer.Option(1, "--workers", "-w", min=1, max=64, help="worker processes (one per core)"),
        pool: bool = typer.Option(
            True, "--pool/--no-pool", help="answer default requests from the cached pool of strong outfits"
        ),
        result_cache: int = typer.Option(4096, "--result-cache", min=0, help="answers kept per worker (0: none)"),
        users_from: Path | None = typer.Option(None, "--users-from", help=USERS_FROM_HELP),
        remove_items: str | None = typer.Option(None, "--remove-items", help=REMOVE_HELP),
        add_items: Path | None = typer.Option(None, "--add-items", help=ADD_ITEMS_HELP),
    ) -> None:
        """Serve recommendations over HTTP (FastAPI + uvicorn) with a web page at /.

        --workers N: N uvicorn worker processes (app factory `outfitrec.serve.factory:app_factory`), each
        loading the index and pool that this process computes once and caches beside the checkpoint.
        """
        import os

        import uvicorn

        from outfitrec.serve.app import create_app
        from outfitrec.serve.factory import serve_environment

        rec = load_recommender(
            run, data, backend, pool=pool, users_from=users_from, remove_items=remove_items, add_items=add_items
        )
        rec.result_cache_size = result_cache
        print(f"outfitrec: serving {run} on http://{host}:{port}/ with {workers} worker(s) (OpenAPI at /docs)")
        if workers == 1:
            uvicorn.run(create_app(rec), host=host, port=port, log_level="warning")
            return
        del rec  # the workers load the cached index and pool
        data_arg = None if data is None else str(data)
        extra = {"users_from": None if users_from is None else str(users_from), "remove_items": remove_items}
        extra["add_items"] = None if add_items is None else str(add_items)
        os.environ.update(serve_environment(str(run), data_arg, backend, pool, result_cache=result_cache, **extra))
        uvicorn.run(
            "outfitrec.serve.factory:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
        )
