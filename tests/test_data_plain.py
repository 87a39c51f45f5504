"""The plain CSV format: reader, writer, round trip, converters, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from outfitrec.data.outfits import DataError
from outfitrec.data.plain import read_plain, write_plain
from outfitrec.data.prepare import convert


def _folder(tmp_path, **files):
    base = {
        "items.csv": "item_id,category\nshirt1,top\njeans1,bottom\nboot1,shoes\nshirt2,top\n",
        "outfits.csv": "outfit_id,user,split,item_ids\n10,alice,train,shirt1;jeans1;boot1\n"
        "11,bob,train,shirt2;jeans1\n12,alice,valid,shirt2;boot1\n",
    }
    base.update(files)
    folder = tmp_path / "plain"
    folder.mkdir()
    for name, text in base.items():
        if text is not None:
            (folder / name).write_text(text)
    return folder


def test_reads_the_documented_layout(tmp_path):
    ds = read_plain(_folder(tmp_path))
    assert ds.catalogue.category_names == ["top", "bottom", "shoes"]
    assert ds.catalogue.item_names.tolist() == ["shirt1", "jeans1", "boot1", "shirt2"]
    np.testing.assert_array_equal(ds.catalogue.item_category, [0, 1, 2, 0])
    assert ds.user_names.tolist() == ["alice", "bob"]
    train = ds.splits["train"]
    np.testing.assert_array_equal(train.items, [[0, 1, 2], [3, 1, -1]])
    np.testing.assert_array_equal(train.outfit_ids, [10, 11])
    np.testing.assert_array_equal(ds.splits["valid"].users, [0])
    assert "test" not in ds.splits


def test_round_trip_is_exact(tmp_path, tiny_dataset):
    write_plain(tiny_dataset, tmp_path / "p")
    back = read_plain(tmp_path / "p")
    assert back.catalogue.category_names == tiny_dataset.catalogue.category_names
    np.testing.assert_array_equal(back.catalogue.item_category, tiny_dataset.catalogue.item_category)
    np.testing.assert_array_equal(back.user_names, tiny_dataset.user_names)
    assert back.meta == tiny_dataset.meta
    for split, outfits in tiny_dataset.splits.items():
        assert back.splits[split].equals(outfits)
    # in-memory images become PNG files read lazily
    np.testing.assert_array_equal(back.catalogue.load_image(7)[..., 0], tiny_dataset.catalogue.images[7])


def test_convert_from_npz(tmp_path, tiny_data_dir, tiny_dataset):
    convert(tiny_data_dir, tmp_path / "conv", "npz")
    back = read_plain(tmp_path / "conv")
    assert back.splits["test"].equals(tiny_dataset.splits["test"])


def test_history_is_read_and_round_trips(tmp_path):
    history = "\ufeffuser,item_id\nbob,boot1\nalice,shirt2\nbob,boot1\n\n"  # BOM, a repeat, a trailing blank
    ds = read_plain(_folder(tmp_path, **{"history.csv": history}))
    np.testing.assert_array_equal(ds.history, [[0, 3], [1, 2]])  # (user, item), distinct, sorted
    write_plain(ds, tmp_path / "again")
    np.testing.assert_array_equal(read_plain(tmp_path / "again").history, ds.history)
    (tmp_path / "none").mkdir()
    assert read_plain(_folder(tmp_path / "none")).history is None


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"items.csv": None}, r"items.csv: missing file"),
        ({"items.csv": "id,category\nx,top\n"}, r"items.csv:1: header 'id,category'"),
        ({"items.csv": "item_id,category\nx,top,extra\n"}, r"items.csv:2: expected 2 columns, got 3"),
        ({"items.csv": "item_id,category\nx,top\nx,bottom\n"}, r"items.csv:3: duplicate item_id 'x'"),
        (
            {"outfits.csv": "outfit_id,user,split,item_ids\nseven,alice,train,shirt1\n"},
            r"outfits.csv:2: outfit_id 'seven' is not an integer",
        ),
        (
            {"outfits.csv": "outfit_id,user,split,item_ids\n-4,alice,train,shirt1\n"},
            r"outfits.csv:2: negative outfit_id -4",
        ),
        (
            {"outfits.csv": "outfit_id,user,split,item_ids\n1,alice,train,shirt1;hat9\n"},
            r"outfits.csv:2: unknown item_id 'hat9'",
        ),
        (
            {"outfits.csv": "outfit_id,user,split,item_ids\n1,alice,dev,shirt1\n"},
            r"outfits.csv:2: split 'dev'",
        ),
        ({"outfits.csv": "outfit_id,user,split,item_ids\n1,alice,valid,shirt1\n"}, r"the train split is empty"),
        ({"users.csv": "user_id\nalice\n"}, r"outfits.csv:3: unknown user 'bob' \(not in users.csv\)"),
        ({"history.csv": "user,item\nalice,shirt1\n"}, r"history.csv:1: header 'user,item'"),
        ({"history.csv": "user,item_id\ncarol,shirt1\n"}, r"history.csv:2: unknown user 'carol'"),
        ({"history.csv": "user,item_id\nalice,shirt1\nbob,hat9\n"}, r"history.csv:3: unknown item_id 'hat9'"),
    ],
)
def test_bad_input(tmp_path, files, message):
    with pytest.raises(DataError, match=message):
        read_plain(_folder(tmp_path, **files))


def test_writer_leaves_nothing_on_failure(tmp_path, tiny_dataset):
    bad = read_plain(_folder(tmp_path))
    bad.user_names = np.asarray(["al,ice", "bob"])
    with pytest.raises(DataError, match="comma"):
        write_plain(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["plain"]
