"""Prepared folders, FITB, cold users, negatives determinism, the `outfitrec data` CLI."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import load_prepared
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from outfitrec.cli import app, main
from outfitrec.data import fitb as fitb_module
from outfitrec.data.cold import cold_user_split
from outfitrec.data.fitb import FitbQuestions, make_fitb
from outfitrec.data.negatives import Candidates, category_pools, random_mix, write_candidate_files
from outfitrec.data.outfits import DataError, OutfitDataset, Outfits
from outfitrec.data.plain import write_plain
from outfitrec.data.prepare import load_fitb, prepare, resolve_dataset_path

runner = CliRunner()


def test_dataset_save_load_round_trips_exactly(tmp_path, tiny_dataset):
    tiny_dataset.save(tmp_path / "d.npz")
    back = OutfitDataset.load(tmp_path / "d.npz")
    assert back.n_users == tiny_dataset.n_users and back.meta == tiny_dataset.meta
    assert back.catalogue.category_names == tiny_dataset.catalogue.category_names
    for key in ("item_category", "item_names", "images"):
        np.testing.assert_array_equal(getattr(back.catalogue, key), getattr(tiny_dataset.catalogue, key))
    np.testing.assert_array_equal(back.user_names, tiny_dataset.user_names)
    assert set(back.splits) == set(tiny_dataset.splits)
    for split, outfits in tiny_dataset.splits.items():
        assert back.splits[split].equals(outfits)
        assert back.splits[split].items.dtype == np.int64 and back.splits[split].mask.dtype == bool


def test_negatives_and_fitb_files_are_byte_identical_for_one_seed(tmp_path, tiny_dataset):
    for run in ("a", "b"):
        write_candidate_files(tiny_dataset, tmp_path / run, k=10, seed=3)
        fitb_module.write_fitb_files(tiny_dataset, tmp_path / run, seed=3)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["candidates_test.npz", "candidates_valid.npz", "fitb_test.npz", "fitb_valid.npz"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    write_candidate_files(tiny_dataset, tmp_path / "c", k=10, seed=4)
    assert (tmp_path / "c" / names[0]).read_bytes() != (tmp_path / "a" / names[0]).read_bytes()


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(1, 6), n_items=st.integers(2, 6))
def test_random_mix_keeps_categories_and_mask_and_never_equals_a_positive(seed, k, n_items):
    rng = np.random.default_rng(seed)
    item_category = np.repeat([0, 1, 2], n_items)
    rows = [[int(rng.integers(0, n_items)) + c * n_items for c in range(3 - (i % 2))] for i in range(8)]
    positives = Outfits.from_rows(rng.integers(0, 3, 8), rows, item_category)
    pools = category_pools(positives.items, item_category)
    negatives = random_mix(positives, pools, k, np.random.default_rng(seed))
    rep = np.repeat(np.arange(len(positives)), k)
    np.testing.assert_array_equal(negatives.mask, positives.mask[rep])
    np.testing.assert_array_equal(negatives.categories, positives.categories[rep])
    np.testing.assert_array_equal(
        item_category[np.where(negatives.mask, negatives.items, 0)][negatives.mask],
        negatives.categories[negatives.mask],
    )
    np.testing.assert_array_equal(negatives.users, positives.users[rep])
    # Never a positive, wherever the pools leave room: a row is checked when fewer than half of the
    # outfits its categories allow are positives (50 redraws then fail with probability < 2**-50).
    forbidden = set(positives.item_sets())
    for row, cats, m in zip(negatives.items, negatives.categories, negatives.mask):
        space = int(np.prod([len(pools[int(c)]) for c in cats[m]]))
        taken = sum(1 for f in forbidden if sorted(item_category[list(f)].tolist()) == sorted(cats[m].tolist()))
        if taken < space / 2:
            assert frozenset(row[m].tolist()) not in forbidden


def test_make_fitb(tiny_dataset):
    valid = tiny_dataset.splits["valid"]
    q = make_fitb(
        valid,
        category_pools(valid.items, tiny_dataset.catalogue.item_category),
        seed=0,
        fallback_pools=tiny_dataset.catalogue.items_by_category(),
    )
    assert len(q) == len(valid) and q.n_candidates == 4
    cats = tiny_dataset.catalogue.item_category[q.candidates]
    assert (cats == cats[:, :1]).all()
    assert all(len(set(row)) == 4 for row in q.candidates.tolist())
    partial = q.partial_outfits()
    assert (partial.sizes == valid.sizes - 1).all()
    outs = q.candidate_outfits(tiny_dataset.catalogue.item_category)
    assert outs.subset(np.arange(0, len(outs), 4)).equals(valid)


def test_prepare_from_plain_and_load(tmp_path, tiny_dataset):
    write_plain(tiny_dataset, tmp_path / "plain")
    written = prepare(tmp_path / "plain", tmp_path / "prep", "plain", k=5, seed=1)
    assert set(written) == {"dataset", "candidates_valid", "candidates_test", "fitb_valid", "fitb_test"}
    dataset, candidates = load_prepared(tmp_path / "prep")
    assert set(candidates) == {"valid", "test"} and candidates["test"].k == 5
    assert dataset.splits["train"].equals(tiny_dataset.splits["train"])
    assert resolve_dataset_path(tmp_path / "prep") == tmp_path / "prep" / "dataset.npz"
    assert isinstance(load_fitb(tmp_path / "prep" / "dataset.npz", "valid"), FitbQuestions)
    with pytest.raises(DataError, match="exists and is not empty"):
        prepare(tmp_path / "plain", tmp_path / "prep", "plain")


def test_prepare_failure_leaves_no_output(tmp_path, tiny_dataset, monkeypatch):
    write_plain(tiny_dataset, tmp_path / "plain")

    def boom(*args, **kwargs):
        raise DataError("fitb: simulated failure")

    monkeypatch.setattr("outfitrec.data.prepare.write_fitb_files", boom)
    with pytest.raises(DataError, match="simulated"):
        prepare(tmp_path / "plain", tmp_path / "prep", "plain")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]
    (tmp_path / "nowhere").mkdir()
    with pytest.raises(DataError, match="items.csv: missing file"):
        prepare(tmp_path / "nowhere", tmp_path / "prep2", "plain")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nowhere", "plain"]


def test_empty_split_is_an_error(tiny_dataset):
    empty = OutfitDataset(
        tiny_dataset.catalogue,
        tiny_dataset.n_users,
        {**tiny_dataset.splits, "valid": Outfits.empty(3)},
        tiny_dataset.meta,
    )
    with pytest.raises(DataError, match="split 'valid' is empty"):
        write_candidate_files(empty, "/nonexistent-never-written", k=2)


@pytest.mark.parametrize("n", [1, 5])
def test_cold_users(tiny_dataset, n):
    cold = cold_user_split(tiny_dataset, n, seed=0)
    train, full = cold.splits["train"], tiny_dataset.splits["train"]
    per_user = np.bincount(train.users, minlength=cold.n_users)
    assert (per_user == np.minimum(n, np.bincount(full.users, minlength=cold.n_users))).all()
    assert set(train.item_sets()) <= set(full.item_sets())
    assert cold.splits["valid"] is tiny_dataset.splits["valid"]
    assert cold_user_split(tiny_dataset, n, seed=0).splits["train"].equals(train)
    assert not cold_user_split(tiny_dataset, n, seed=1).splits["train"].equals(train)


@pytest.mark.parametrize("n", [1, 2])
def test_cold_users_among_warm_users(tiny_dataset, tiny_data_dir, tmp_path, n):
    from outfitrec.data.cold import write_cold_folder
    from outfitrec.data.negatives import Candidates

    cold = cold_user_split(tiny_dataset, n, seed=0, share=0.5)
    cold_users = np.array(cold.meta["cold_users"]["users"])
    assert len(cold_users) == round(0.5 * tiny_dataset.n_users)
    before = np.bincount(tiny_dataset.splits["train"].users, minlength=cold.n_users)
    after = np.bincount(cold.splits["train"].users, minlength=cold.n_users)
    is_cold = np.isin(np.arange(cold.n_users), cold_users)
    assert (after[is_cold] == np.minimum(n, before[is_cold])).all()
    assert (after[~is_cold] == before[~is_cold]).all()  # warm users keep every outfit

    file = write_cold_folder(tiny_data_dir, tmp_path / "cold", n, seed=0, share=0.5)
    full = Candidates.load(tiny_data_dir / "candidates_valid.npz")
    kept = Candidates.load(file.parent / "candidates_valid.npz")
    rows = np.flatnonzero(np.isin(full.positives.users, cold_users))
    assert kept.positives.equals(full.positives.subset(rows))
    assert set(kept.negatives.users) <= set(cold_users)
    assert (kept.negatives.users.reshape(-1, kept.k) == kept.positives.users[:, None]).all()
    assert not list(file.parent.glob("fitb_*"))
    with pytest.raises(DataError, match="share"):
        cold_user_split(tiny_dataset, n, share=0.0)


def test_cli_commands(tmp_path, tiny_data_dir, tiny_dataset):
    result = runner.invoke(app, ["data", "stats", str(tiny_data_dir)])
    assert result.exit_code == 0, result.output
    assert "users       12" in result.output and "outfits 72" in result.output
    result = runner.invoke(app, ["data", "convert", str(tiny_data_dir), str(tmp_path / "plain"), "--from", "npz"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "prep"
    result = runner.invoke(app, ["data", "prepare", str(tmp_path / "plain"), str(out), "--format", "plain"])
    assert result.exit_code == 0, result.output
    first = (out / "candidates_valid.npz").read_bytes()
    result = runner.invoke(app, ["data", "negatives", str(out), "--k", "10", "--seed", "0"])
    assert result.exit_code == 0, result.output
    assert (out / "candidates_valid.npz").read_bytes() == first
    result = runner.invoke(app, ["data", "negatives", str(out), "--kind", "hard", "--splits", "test"])
    assert result.exit_code == 0 and (out / "candidates_test_hard.npz").exists()
    result = runner.invoke(app, ["data", "cold", str(out), str(tmp_path / "cold1"), "--n", "1"])
    assert result.exit_code == 0, result.output
    dataset, candidates = load_prepared(tmp_path / "cold1")
    assert len(dataset.splits["train"]) == 12 and set(candidates) == {"valid", "test"}
    # the same candidates (only the header's dataset fingerprint names the cold dataset)
    source = Candidates.load(out / "candidates_valid.npz")
    assert candidates["valid"].positives.equals(source.positives)
    assert candidates["valid"].negatives.equals(source.negatives)
    assert candidates["valid"].meta["dataset_fingerprint"] == dataset.fingerprint != source.meta["dataset_fingerprint"]


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["outfitrec", "data", "stats", str(tmp_path / "missing.npz")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "missing.npz" in err and "\n" not in err


def test_a_missing_split_names_the_splits_that_exist(tiny_dataset, tmp_path):
    """`evaluate` on a dataset without a test split: the message says which split to ask for."""
    from outfitrec.data.negatives import Candidates, candidates_path, write_candidate_files

    tiny_dataset.save(tmp_path / "dataset.npz")
    write_candidate_files(tiny_dataset, tmp_path, k=4, seed=0, splits=("valid",))
    with pytest.raises(DataError, match=r"no such candidates file \(this dataset has candidates for: valid; --split"):
        Candidates.load(candidates_path(tmp_path, "test"))


def test_plain_folder_without_a_name_is_named_after_its_folder(tmp_path):
    import shutil
    from pathlib import Path

    from outfitrec.data.plain import read_plain

    folder = tmp_path / "my-shop"
    shutil.copytree(Path(__file__).resolve().parents[1] / "examples" / "plain-mini", folder)
    (folder / "meta.json").unlink()
    assert read_plain(folder).meta["name"] == "my-shop"
