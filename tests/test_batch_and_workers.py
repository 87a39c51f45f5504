"""Batch recommendations for every user (recommend/batch.py) and the serve workers' app factory."""

from __future__ import annotations

import csv

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from outfitrec.cli import app
from outfitrec.data.outfits import DataError
from outfitrec.recommend.batch import done_users, parse_shard, parts_dir, recommend_all
from outfitrec.recommend.engine import Recommender


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_dataset, tiny_data_dir):
    from test_recommend_engine import make_tiny_run

    return make_tiny_run(tiny_dataset, tiny_data_dir, tmp_path_factory.mktemp("batch_run"))


@pytest.fixture(scope="module")
def engine(tiny_run):
    return Recommender.from_run(tiny_run)


def _read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_batch_output_matches_recommend(engine, tmp_path):
    out = tmp_path / "recs.csv"
    summary = recommend_all(engine, out, k=3, chunk=5, progress=False)
    assert summary["merged"] and summary["written"] == engine.dataset.n_users
    rows = _read(out)
    assert [int(r["user"]) for r in rows] == sorted(int(r["user"]) for r in rows)
    for user in (0, 7):
        mine = [r for r in rows if int(r["user"]) == user]
        recs = engine.recommend(user, 3)
        assert [tuple(int(i) for i in r["items"].split()) for r in mine] == [r.items for r in recs]
        assert [int(r["rank"]) for r in mine] == [1, 2, 3]
        assert [float(r["score"]) for r in mine] == pytest.approx([r.score for r in recs], abs=1e-5)


def test_batch_resume_and_shards(engine, tmp_path):
    out = tmp_path / "recs.csv"
    # a run killed after its first chunk: one part on disk, no merged file
    first = recommend_all(engine, out, k=2, chunk=4, users=range(4), progress=False)
    assert first["written"] == 4 and (tmp_path / "recs.csv").exists()  # merged: the 4 users asked for
    out.unlink()
    assert done_users(out) == {0, 1, 2, 3}
    # shards 0/2 and 1/2 write the rest; the finishing shard merges
    a = recommend_all(engine, out, k=2, chunk=4, shard=(0, 2), progress=False)
    assert a["skipped"] == 2 and not a["merged"] and not out.exists()
    b = recommend_all(engine, out, k=2, chunk=4, shard=(1, 2), progress=False)
    assert b["skipped"] == 2 and b["merged"]
    rows = _read(out)
    assert {int(r["user"]) for r in rows} == set(range(engine.dataset.n_users))
    assert len(rows) == 2 * engine.dataset.n_users
    again = recommend_all(engine, out, k=2, progress=False)
    assert again["written"] == 0 and again["skipped"] == engine.dataset.n_users
    with pytest.raises(DataError, match="other settings"):
        recommend_all(engine, out, k=5, progress=False)
    assert sorted(p.name for p in parts_dir(out).glob("part-*"))  # parts written atomically, no temporaries
    assert not list(parts_dir(out).glob(".*"))


def test_parse_shard(monkeypatch):
    assert parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "x", "1/0"):
        with pytest.raises(DataError):
            parse_shard(bad)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert parse_shard(None) == (2, 4)


def test_cli_all_users(tiny_run, tmp_path):
    out = tmp_path / "all.csv"
    result = CliRunner().invoke(app, ["recommend", str(tiny_run), "--all-users", "--out", str(out), "-k", "2"])
    assert result.exit_code == 0, result.output
    assert "users/s" in result.output and out.exists()
    result = CliRunner().invoke(app, ["recommend", str(tiny_run), "--all-users", "--out", str(out), "-k", "2"])
    assert result.exit_code == 0 and "0 users written" in result.output
    result = CliRunner().invoke(app, ["recommend", str(tiny_run), "--all-users", "--user", "1", "--out", str(out)])
    assert isinstance(result.exception, DataError)  # the CLI's error boundary prints it, exit 2


def test_worker_factory_serves(tiny_run, monkeypatch):
    """What each `--workers` process runs: the factory loads the run named by the environment (with the pool)."""
    from outfitrec.serve import factory

    with pytest.raises(RuntimeError):
        monkeypatch.delenv(factory.ENV, raising=False)
        factory.app_factory()
    monkeypatch.setenv(factory.ENV, factory.serve_environment(str(tiny_run), None, "torch", True)[factory.ENV])
    client = TestClient(factory.app_factory())
    got = client.post("/api/recommend", json={"user": 2, "k": 4})
    assert got.status_code == 200, got.text
    assert len(got.json()["outfits"]) == 4
    assert client.app.state.recommender.pool is not None


def test_cli_serve_workers_starts_uvicorn_with_the_factory(tiny_run, monkeypatch):
    import uvicorn

    from outfitrec.serve import factory

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda target, **kw: seen.update(target=target, **kw))
    monkeypatch.delenv(factory.ENV, raising=False)
    args = ["serve", str(tiny_run), "--workers", "2", "--port", "8765", "--result-cache", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen["target"] == "outfitrec.serve.factory:app_factory" and seen["factory"] and seen["workers"] == 2
    assert seen["host"] == "127.0.0.1"
    import os

    assert str(tiny_run) in os.environ[factory.ENV]
    assert factory.load_from_environment().result_cache_size == 0  # what each worker loads
