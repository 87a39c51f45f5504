"""The DiFashion loader's test split (test_grd.npy, test_history.npy, fitb_test_*) on a tiny release-layout fixture.

The fixture mimics the full release: pickled dicts written through numpy.save,
outfit ids given out per user in one block (train, then valid, then test).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from outfitrec.data.difashion import load_difashion, load_difashion_fitb
from outfitrec.data.fitb import FitbQuestions
from outfitrec.data.negatives import Candidates
from outfitrec.data.outfits import DataError
from outfitrec.data.prepare import prepare

CATS = {0: "top", 1: "bottom", 2: "shoes"}
N_USERS, N_TRAIN, N_VALID, N_TEST = 3, 5, 2, 2


def _save(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, obj, allow_pickle=True)  # the release's layout: a pickled object after the .npy header


def _outfit(rng: np.random.Generator) -> list[int]:
    # items 1..60, category (item - 1) % 3: slot c draws an item of category c
    return [int(3 * rng.integers(0, 20) + c + 1) for c in range(3)]


def write_release(root: Path, with_test: bool = True, seed: int = 0) -> dict:
    """A tiny release; returns {split: {oid: user}} for the valid and test outfits."""
    rng = np.random.default_rng(seed)
    _save(root / "id_cate_dict.npy", dict(CATS))
    _save(root / "map" / "iid_cate_dict.npy", {i: (i - 1) % 3 for i in range(1, 61)})
    train = {"uids": [], "oids": [], "outfits": [], "category": []}
    grd: dict[str, dict] = {"valid": {}, "test": {}}
    owner: dict[str, dict[int, int]] = {"valid": {}, "test": {}}
    seen: set[tuple[int, ...]] = set()

    def fresh() -> list[int]:
        while True:
            items = _outfit(rng)
            if tuple(items) not in seen:
                seen.add(tuple(items))
                return items

    for u in range(N_USERS):
        oid = 100 * u + 7  # each user's block: train, then valid, then test
        for _ in range(N_TRAIN):
            items = fresh()
            train["uids"].append(u)
            train["oids"].append(oid)
            train["outfits"].append(items)
            train["category"].append([0, 1, 2])
            oid += 1
        for split, n in (("valid", N_VALID), ("test", N_TEST)):
            for _ in range(n):
                grd[split][oid] = {"outfits": fresh(), "category": [0, 1, 2]}
                owner[split][oid] = u
                oid += 1
    _save(root / "train.npy", train)
    splits = ("valid", "test") if with_test else ("valid",)
    for split in splits:
        _save(root / f"{split}_grd.npy", grd[split])
        questions: dict[int, dict] = {}
        cands: dict[int, dict] = {}
        for oid, entry in grd[split].items():
            u = owner[split][oid]
            blanked = list(entry["outfits"])
            true = blanked[1]
            blanked[1] = 0  # the release marks the blank with item 0
            questions.setdefault(u, {})[oid] = blanked
            cands.setdefault(u, {})[oid] = [true] + [int(3 * k + 1) for k in range(4)]  # distractors: tops
        _save(root / f"fitb_{split}_dict.npy", questions)
        _save(root / f"fitb_{split}_retrieval_candidates.npy", cands)
        _save(root / f"{split}_history.npy", {u: {0: [1, 4], 2: [3]} for u in range(N_USERS)})
    return owner


@pytest.fixture
def release(tmp_path) -> tuple[Path, dict]:
    root = tmp_path / "release"
    return root, write_release(root)


def test_test_split_users_follow_the_id_blocks(release):
    root, owner = release
    dataset = load_difashion(root)
    assert set(dataset.splits) == {"train", "valid", "test"}
    test = dataset.split("test")
    assert len(test) == N_USERS * N_TEST
    users = dataset.user_names[test.users].astype(int).tolist()
    assert users == [owner["test"][int(o)] for o in test.outfit_ids]
    valid = dataset.split("valid")
    assert dataset.user_names[valid.users].astype(int).tolist() == [owner["valid"][int(o)] for o in valid.outfit_ids]
    assert "test split from test_grd.npy" in dataset.meta["note"]
    # items map back to the release's ids, categories agree with the catalogue
    first = min(owner["test"])
    assert test.outfit_ids[0] == first
    assert np.array_equal(test.categories[0], [0, 1, 2])


def test_test_fitb_questions(release):
    root, _ = release
    dataset = load_difashion(root)
    q = load_difashion_fitb(root, dataset, "test")
    assert len(q) == N_USERS * N_TEST and q.n_candidates == 5
    assert (q.blank == 1).all()
    rows = np.arange(len(q))
    np.testing.assert_array_equal(q.items[rows, q.blank], q.candidates[:, 0])
    assert q.meta["split"] == "test"


def test_prepare_writes_test_candidates_and_fitb(release, tmp_path):
    root, _ = release
    out = tmp_path / "prepared"
    written = prepare(root, out, "difashion", k=3, seed=0)
    assert {"candidates_valid", "candidates_test", "fitb_valid", "fitb_test"} <= set(written)
    dataset = load_difashion(root)
    n_items = dataset.catalogue.n_items
    cands = Candidates.load(out / "candidates_test.npz", n_users=dataset.n_users, n_items=n_items)
    test = dataset.split("test")
    np.testing.assert_array_equal(cands.positives.outfit_ids, test.outfit_ids)
    assert len(cands.negatives) == 3 * len(test)
    # the random-mix sampler keeps the positive's categories and draws from the split's own items
    np.testing.assert_array_equal(np.sort(cands.negatives.categories, axis=1)[:, :3], np.tile([0, 1, 2], (9 * 2, 1)))
    assert np.isin(cands.negatives.items[cands.negatives.mask], test.items[test.mask]).all()
    q = FitbQuestions.load(out / "fitb_test.npz", dataset.n_users, n_items)
    assert len(q) == len(test) and (q.candidates[:, 1:] == q.candidates[0, 1:]).all()  # the release's, not ours


def test_without_test_files_there_is_no_test_split(tmp_path):
    root = tmp_path / "release"
    write_release(root, with_test=False)
    dataset = load_difashion(root)
    assert set(dataset.splits) == {"train", "valid"}
    written = prepare(root, tmp_path / "prepared", "difashion", k=3, seed=0)
    assert "candidates_test" not in written and "fitb_test" not in written
    with pytest.raises(DataError, match="no test split"):
        load_difashion_fitb(root, dataset, "test")


def test_test_outfit_id_reused_is_a_data_error(release):
    root, owner = release
    grd = {min(owner["valid"]): {"outfits": [1, 2, 3], "category": [0, 1, 2]}}
    _save(root / "test_grd.npy", grd)
    with pytest.raises(DataError, match="test_grd.npy: key .* also used"):
        load_difashion(root)


def test_test_history_with_an_unknown_item_is_a_data_error(release):
    root, _ = release
    _save(root / "test_history.npy", {0: {0: [1, 9999]}})
    with pytest.raises(DataError, match="test_history.npy.*9999"):
        load_difashion(root)
