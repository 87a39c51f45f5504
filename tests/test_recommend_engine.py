"""The recommender engine on a real (briefly trained) tiny OutfitModel saved as a run directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_model, make_tiny_run  # noqa: F401 (make_tiny_model: other modules import it here)
from typer.testing import CliRunner

from outfitrec.data.outfits import DataError
from outfitrec.models.checkpoint import run_data_path
from outfitrec.recommend.engine import NotFound, Recommender, checkpoint_hash


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_dataset, tiny_data_dir) -> Path:
    return make_tiny_run(tiny_dataset, tiny_data_dir, tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def engine(tiny_run) -> Recommender:
    return Recommender.from_run(tiny_run)


def test_index_is_cached_per_checkpoint(tiny_run, engine):
    digest = checkpoint_hash(tiny_run / "model")
    cache = tiny_run / "model" / "cache" / f"search_index_torch_{digest[:16]}.npz"
    assert cache.is_file()
    # the cache holds the model's own item embeddings
    model = engine.scorer.model
    with torch.no_grad():
        direct = model.encode_items(torch.arange(engine.dataset.catalogue.n_items)).numpy()
    np.testing.assert_allclose(engine.index.item_emb, direct, atol=1e-5)
    # a second load reads the cache instead of recomputing it
    stamp = cache.stat().st_mtime_ns
    again = Recommender.from_run(tiny_run)
    assert cache.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(again.index.item_emb, engine.index.item_emb)


def test_recommend_excludes_history_and_scores_match_model(engine, tiny_dataset):
    train = tiny_dataset.split("train")
    model = engine.scorer.model
    for user in range(3):
        recs = engine.recommend(user, k=10)
        assert len(recs) == 10
        assert len(engine.history(user)) == int((train.users == user).sum())
        history = {frozenset(o) for o in engine.history(user)}
        assert not history & {frozenset(r.items) for r in recs}
        assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)
        items = torch.tensor([list(r.items) for r in recs])
        with torch.no_grad():
            direct = model(torch.full((len(recs),), user), items, torch.ones_like(items, dtype=torch.bool)).numpy()
        np.testing.assert_allclose([r.score for r in recs], direct, atol=1e-4)


def test_history_outfits_never_returned(engine):
    """Even the exhaustive search over all 20^3 outfits never returns a training outfit of the user."""
    exact_all = engine.recommend(0, k=20**3, exact=True)
    kept = {frozenset(r.items) for r in exact_all}
    for outfit in engine.history(0):
        assert frozenset(outfit) not in kept
    assert len(kept) == 20**3 - len(set(map(frozenset, engine.history(0))))


def test_score_complete_and_errors(engine):
    scores = engine.score(1, [[0, 20, 40], [0, 20], [5]])
    assert scores.shape == (3,) and np.isfinite(scores).all()
    recs = engine.complete(1, [3], k=4)
    assert len(recs) == 4 and all(3 in r.items and len(r.items) == 3 for r in recs)
    with pytest.raises(NotFound, match="user 99 not found"):
        engine.recommend(99)
    with pytest.raises(NotFound, match="item 9999 not found"):
        engine.score(0, [[9999]])
    with pytest.raises(DataError, match="fit no outfit template"):
        engine.complete(0, [0, 1])  # two tops: no template has two top slots
    with pytest.raises(DataError, match="template 5 does not exist"):
        engine.recommend(0, templates=[5])
    with pytest.raises(DataError, match="appears twice"):
        engine.score(0, [[1, 1]])


def test_bad_run_directories(tmp_path, tiny_run):
    with pytest.raises(DataError, match="neither a run directory with a model/ checkpoint"):
        Recommender.from_run(tmp_path)
    (tmp_path / "config.yaml").write_text("optim: {}\n")
    with pytest.raises(DataError, match=r"config.yaml: key data.path is missing"):
        run_data_path(tmp_path)
    (tmp_path / "config.yaml").write_text("data: {path: /nonexistent/folder}\n")
    with pytest.raises(DataError, match=r"config.yaml:data.path: /nonexistent/folder does not exist"):
        run_data_path(tmp_path)


def test_cli_recommend_and_complete(tiny_run):
    from outfitrec.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["recommend", str(tiny_run), "--user", "2", "--k", "3", "--diverse"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("| ") and "rank" not in line]
    assert len(rows) == 3
    result = runner.invoke(app, ["complete", str(tiny_run), "--user", "2", "--items", "0,25", "--k", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert '"items"' in result.output


def test_users_and_items_by_name_or_index():
    from types import SimpleNamespace

    import numpy as np
    import pytest

    from outfitrec.cli.recommend import resolve_user
    from outfitrec.data.outfits import Catalogue, DataError

    catalogue = Catalogue(
        np.asarray([0, 1, 2]), ["top", "bottom", "shoes"], item_names=np.asarray(["top-a", "5", "shoe-b"])
    )
    from outfitrec.data.synthetic import make_synthetic

    dataset = make_synthetic(n_users=3, items_per_category=4, outfits_per_user=4, seed=0)
    dataset.user_names = np.asarray(["alice", "bob", "0"])
    rec = SimpleNamespace(dataset=dataset)
    assert resolve_user(rec, "bob") == 1
    with pytest.raises(DataError, match=r"'0' is both the name of user #2 and the index of user #0; write #2 or #0"):
        resolve_user(rec, "0")  # never silently one reading of the two
    assert resolve_user(rec, "#0") == 0 and resolve_user(rec, "#2") == 2
    assert resolve_user(rec, "1") == 1
    with pytest.raises(DataError, match="'carol' is neither a user name nor a user index"):
        resolve_user(rec, "carol")
    with pytest.raises(DataError, match=r"user 7 not found \(users are 0..2\)"):
        resolve_user(rec, "7")
    assert catalogue.item_indices("shoe-b, 0,5") == [2, 0, 1]
    with pytest.raises(DataError, match="'hat' is neither an item name"):
        catalogue.item_indices("top-a,hat")
    with pytest.raises(DataError, match=r"item 3 not found \(items are 0..2\)"):
        catalogue.item_indices("3")
    with pytest.raises(DataError, match="no items given"):
        catalogue.item_indices(" , ")
    # DiFashion-style names: 1-based numbers beside 0-based indices. A token that reads both ways is refused
    numbered = Catalogue(np.asarray([0, 1, 2]), ["top", "bottom", "shoes"], item_names=np.asarray(["1", "2", "3"]))
    with pytest.raises(DataError, match=r"'2' is both the name of item #1 and the index of item #2; write #1 or #2"):
        numbered.item_indices("2")
    assert numbered.item_indices("3") == [2]  # index 3 does not exist: the name alone
    assert numbered.item_indices("#0,#2") == [0, 2]
    with pytest.raises(DataError, match=r"item 3 not found"):
        numbered.item_indices("#3")
