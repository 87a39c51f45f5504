"""Polyvore-U release layout: fixtures written in exactly the real layout, the writer, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from outfitrec.data.outfits import PAD, DataError
from outfitrec.data.polyvore_u import (
    load_polyvore_u,
    load_polyvore_u_candidates,
    load_polyvore_u_fitb,
    write_polyvore_u,
)
from outfitrec.data.synthetic import make_synthetic

TOPS = ["t0.jpg", "t1.jpg", "t2.jpg", "t3.jpg"]  # global ids 0..3
BOTTOMS = ["b0.jpg", "b1.jpg", "b2.jpg"]  # 4..6
SHOES = ["s0.jpg", "s1.jpg", "s2.jpg"]  # 7..9


def _write(folder, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)


def _lists() -> dict[str, str]:
    return {
        "image_list_top": "\n".join(TOPS) + "\n",
        "image_list_bottom": "\n".join(BOTTOMS) + "\n",
        "image_list_shoe": "\n".join(SHOES) + "\n",
    }


@pytest.fixture
def fixed(tmp_path):
    """tuples_630-style folder: 3-item outfits, images beside the tuples folder as in FHN."""
    root = tmp_path / "polyvore"
    (root / "images").mkdir(parents=True)
    _write(
        root / "tuples_630",
        {
            **_lists(),
            "tuples_train_posi": "user,top,bottom,shoe\n0,0,1,2\n0,3,0,0\n1,1,2,1\n1,2,2,2\n",
            "tuples_val_posi": "user,top,bottom,shoe\n0,2,0,1\n1,0,1,0\n",
            "tuples_test_posi": "user,top,bottom,shoe\n0,1,1,1\n1,3,2,0\n",
            "tuples_test_nega": "user,top,bottom,shoe\n0,0,0,0\n0,2,2,2\n1,1,1,1\n1,0,2,1\n",
            "tuples_test_nega_hard": "user,top,bottom,shoe\n0,3,2,0\n0,1,2,1\n1,1,1,1\n1,0,1,2\n",
            "fill_in_blank_test": ",".join(["user,top,bottom,shoe"] * 4) + "\n0,1,1,1,0,1,0,1,0,1,2,1,0,1,1,1\n",
        },
    )
    return root


@pytest.fixture
def variable(tmp_path):
    """tuples_519-style folder: one or two tops (-1 marks a missing second top)."""
    folder = tmp_path / "tuples_519"
    _write(
        folder,
        {
            **_lists(),
            "tuples_train_posi": "user,top,top,bottom,shoe\n0,0,2,1,2\n0,3,-1,0,0\n1,1,3,2,1\n",
            "tuples_val_posi": "user,top,top,bottom,shoe\n0,2,-1,0,1\n",
            "tuples_test_posi": "user,top,top,bottom,shoe\n1,0,1,1,0\n",
            "fill_in_blank_test": "user,top,top,bottom,shoe,user,top,top,bottom,shoe\n1,0,-1,1,0,1,0,-1,1,2\n",
        },
    )
    return folder


def test_fixed_layout_loads_to_expected_arrays(fixed):
    ds = load_polyvore_u(fixed)  # finds the one tuples_* folder
    assert ds.catalogue.category_names == ["top", "bottom", "shoe"]
    np.testing.assert_array_equal(ds.catalogue.item_category, [0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    assert ds.catalogue.item_names.tolist() == TOPS + BOTTOMS + SHOES
    assert ds.catalogue.image_paths[4] == str(fixed / "images" / "b0.jpg")
    assert ds.n_users == 2
    train = ds.splits["train"]
    np.testing.assert_array_equal(train.users, [0, 0, 1, 1])
    np.testing.assert_array_equal(train.items, [[0, 5, 9], [3, 4, 7], [1, 6, 8], [2, 6, 9]])
    np.testing.assert_array_equal(train.categories, [[0, 1, 2]] * 4)
    assert train.mask.all()
    np.testing.assert_array_equal(train.outfit_ids, [0, 1, 2, 3])
    np.testing.assert_array_equal(ds.splits["valid"].items, [[2, 4, 8], [0, 5, 7]])
    np.testing.assert_array_equal(ds.splits["test"].items, [[1, 5, 8], [3, 6, 7]])
    assert ds.meta["templates"] == [["top", "bottom", "shoe"]] and ds.meta["name"] == "polyvore-u-630"


def test_variable_layout_loads_to_expected_arrays(variable):
    ds = load_polyvore_u(variable)
    train = ds.splits["train"]
    np.testing.assert_array_equal(train.items, [[0, 2, 5, 9], [3, 4, 7, PAD], [1, 3, 6, 8]])
    np.testing.assert_array_equal(train.mask, [[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]])
    np.testing.assert_array_equal(train.categories, [[0, 0, 1, 2], [0, 1, 2, PAD], [0, 0, 1, 2]])
    np.testing.assert_array_equal(ds.splits["valid"].items, [[2, 4, 8, PAD]])
    assert ds.meta["variable_length"] and ds.catalogue.image_paths is None
    q = load_polyvore_u_fitb(variable)
    assert q.blank.tolist() == [2]  # the shoe column, after dropping the missing second top
    np.testing.assert_array_equal(q.candidates, [[7, 9]])
    np.testing.assert_array_equal(q.items, [[0, 5, 7, PAD]])


def test_negatives_pair_with_positives(fixed):
    c = load_polyvore_u_candidates(fixed, "test", "nega")
    assert c.k == 2 and len(c.positives) == 2 and len(c.negatives) == 4
    np.testing.assert_array_equal(c.negatives.users, [0, 0, 1, 1])
    np.testing.assert_array_equal(c.negatives.items[1], [2, 6, 9])
    np.testing.assert_array_equal(c.negatives.outfit_ids, [0, 0, 1, 1])
    hard = load_polyvore_u_candidates(fixed, "test", "nega_hard")
    assert hard.meta["kind"] == "hard" and hard.k == 2


def test_fitb(fixed):
    q = load_polyvore_u_fitb(fixed)
    assert len(q) == 1 and q.blank.tolist() == [1]
    np.testing.assert_array_equal(q.candidates, [[5, 4, 6, 5]])
    np.testing.assert_array_equal(q.items, [[1, 5, 8]])


def test_writer_round_trip(tmp_path):
    ds = make_synthetic(n_users=4, items_per_category=6, outfits_per_user=5, seed=1)
    info = write_polyvore_u(ds, tmp_path / "tuples_syn", k=3, seed=0)
    assert not info["variable_length"] and info["written"] == {"train": 12, "valid": 4, "test": 4}
    back = load_polyvore_u(tmp_path / "tuples_syn")
    for split in ("train", "valid", "test"):
        src, got = ds.splits[split], back.splits[split]
        for key in ("users", "items", "categories", "mask"):  # outfit ids become line numbers
            np.testing.assert_array_equal(getattr(got, key), getattr(src, key))
        np.testing.assert_array_equal(got.outfit_ids, np.arange(len(src)))
    np.testing.assert_array_equal(back.catalogue.item_category, ds.catalogue.item_category)
    image = back.catalogue.load_image(5)
    np.testing.assert_array_equal(image[..., 0], ds.catalogue.images[5])
    cands = load_polyvore_u_candidates(tmp_path / "tuples_syn", "valid")
    assert cands.k == 3
    forbidden = {s for o in ds.splits.values() for s in o.item_sets()}
    assert not forbidden & set(cands.negatives.item_sets())
    q = load_polyvore_u_fitb(tmp_path / "tuples_syn")
    assert q.n_candidates == 4 and len(q) == 4
    cats = ds.catalogue.item_category[q.candidates]
    assert (cats == cats[:, :1]).all()


def test_writer_refuses_outfits_that_do_not_fit_and_leaves_nothing(tmp_path):
    ds = make_synthetic(n_users=3, items_per_category=5, outfits_per_user=4, seed=2)
    ds.catalogue.category_names = ["top", "bottom", "hat"]  # 'hat' has no Polyvore-U slot
    with pytest.raises(DataError, match="not one or two tops"):
        write_polyvore_u(ds, tmp_path / "out", write_images=False)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ bad input: one clear DataError each


def _corrupt(folder, name, text):
    (folder / name).write_text(text)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("tuples_train_posi", "user,top,shoe,bottom\n0,0,1,2\n", r"tuples_train_posi:1: header 'user,top,shoe,bottom'"),
        ("tuples_train_posi", "user,top,bottom,shoe\n0,0,1\n", r"tuples_train_posi:2: expected 4 columns, got 3"),
        (
            "tuples_train_posi",
            "user,top,bottom,shoe\n0,0,1,2\n0,x,1,2\n",
            r"tuples_train_posi:3: column 2: 'x' is not an",
        ),
        ("tuples_train_posi", "user,top,bottom,shoe\n0,0,1,2\n0,0,-1,2\n", r"tuples_train_posi:3: negative index -1"),
        ("tuples_train_posi", "user,top,bottom,shoe\n-3,0,1,2\n", r"tuples_train_posi:2: negative user -3"),
        ("tuples_val_posi", "user,top,bottom,shoe\n0,0,3,2\n", r"tuples_val_posi:2: index 3 beyond image_list_bottom"),
        ("tuples_test_posi", "user,top,bottom,shoe\n", r"tuples_test_posi: the test split is empty"),
        (
            "tuples_val_posi",
            "user,top,top,bottom,shoe\n0,0,1,1,2\n",
            r"tuples_val_posi:1: header .* expected 'user,top",
        ),
    ],
)
def test_bad_tuples(fixed, name, text, message):
    _corrupt(fixed / "tuples_630", name, text)
    with pytest.raises(DataError, match=message):
        load_polyvore_u(fixed)


def test_missing_files(fixed):
    folder = fixed / "tuples_630"
    (folder / "tuples_train_posi").unlink()
    with pytest.raises(DataError, match=r"tuples_train_posi: missing file"):
        load_polyvore_u(folder)
    (folder / "image_list_shoe").unlink()
    with pytest.raises(DataError, match=r"image_list_shoe: missing file"):
        load_polyvore_u(folder)


def test_unknown_user_in_negatives(fixed):
    folder = fixed / "tuples_630"
    _corrupt(folder, "tuples_test_nega", "user,top,bottom,shoe\n0,0,0,0\n0,2,2,2\n1,1,1,1\n7,0,2,1\n")
    with pytest.raises(DataError, match=r"tuples_test_nega:5: unknown user 7 .* positive line 3"):
        load_polyvore_u_candidates(folder, "test")
    _corrupt(folder, "tuples_test_nega", "user,top,bottom,shoe\n0,0,0,0\n0,2,2,2\n1,1,1,1\n")
    with pytest.raises(DataError, match="3 negative rows is not a positive multiple of 2"):
        load_polyvore_u_candidates(folder, "test")


def test_bad_fitb(fixed):
    folder = fixed / "tuples_630"
    head = "user,top,bottom,shoe,user,top,bottom,shoe\n"
    _corrupt(folder, "fill_in_blank_test", head + "0,1,1,1,0,2,0,1\n")
    with pytest.raises(DataError, match=r"fill_in_blank_test:2: candidates must differ .* exactly one column"):
        load_polyvore_u_fitb(folder)
    _corrupt(folder, "fill_in_blank_test", "user,top,bottom\n0,1,1\n")
    with pytest.raises(DataError, match=r"fill_in_blank_test:1: header"):
        load_polyvore_u_fitb(folder)
