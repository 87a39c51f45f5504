"""The DiFashion Polyvore-519 loader on the real release (skipped when the data is absent)."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
from conftest import DIFASHION

from outfitrec.data.difashion import load_difashion, load_difashion_fitb
from outfitrec.data.outfits import DataError
from outfitrec.data.safe_pickle import load_pickled_npy
from outfitrec.data.stats import dataset_stats

pytestmark = pytest.mark.skipif(not (DIFASHION / "train.npy").exists(), reason="DiFashion data not present")


@pytest.fixture(scope="module")
def difashion():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load_difashion(DIFASHION)
    return dataset, [str(w.message) for w in caught]


def test_counts_and_duplicates(difashion):
    dataset, caught = difashion
    assert any("14630" in m and "18898" in m and "duplicate" in m for m in caught)
    stats = dataset_stats(dataset)
    assert stats["users"] == 517 and stats["categories"] == 50 and stats["items"] == 119_202
    assert stats["splits"]["train"]["outfits"] == 26_919 == stats["splits"]["train"]["distinct_outfits"]
    assert stats["splits"]["valid"]["outfits"] == 3_356
    assert stats["splits"]["valid"]["users_with_outfits"] == 516
    assert stats["splits"]["train"]["outfits_per_user"] == {"min": 4, "median": 52.0, "max": 107}
    assert abs(stats["splits"]["valid"]["unseen_occurrence_share"] - 0.52) < 0.01
    assert set(dataset.splits) == {"train", "valid"}


def test_ids_map_back_to_the_release(difashion):
    dataset, _ = difashion
    train = load_pickled_npy(DIFASHION / "train.npy")
    row = 0
    source = dataset.catalogue.item_names[dataset.splits["train"].items[row]].astype(int)
    assert source.tolist() == train["outfits"][row]
    assert dataset.catalogue.category_names[37] == "dress"
    cats = dataset.splits["train"].categories[row].tolist()
    assert cats == train["category"][row]


def test_valid_users_agree_with_the_fitb_file(difashion):
    """fitb_valid.npy stores each validation outfit's user: the id-block rule must reproduce it."""
    dataset, _ = difashion
    fitb = load_pickled_npy(DIFASHION / "fitb_valid.npy")
    valid = dataset.splits["valid"]
    user_of = dict(zip(valid.outfit_ids.tolist(), dataset.user_names[valid.users].astype(int).tolist()))
    assert [user_of[o] for o in fitb["oids"]] == list(fitb["uids"])


def test_fitb(difashion):
    dataset, _ = difashion
    q = load_difashion_fitb(DIFASHION, dataset)
    assert len(q) == 3_356 and q.n_candidates == 5
    rows = np.arange(len(q))
    np.testing.assert_array_equal(q.items[rows, q.blank], q.candidates[:, 0])
    outs = q.candidate_outfits(dataset.catalogue.item_category)
    assert len(outs) == 5 * len(q)


@pytest.mark.filterwarnings("ignore:.*duplicate")
def test_missing_file_is_a_data_error(tmp_path):
    shutil.copytree(DIFASHION, tmp_path / "d")
    (tmp_path / "d" / "valid_grd.npy").unlink()
    with pytest.raises(DataError, match="valid_grd.npy: missing file"):
        load_difashion(tmp_path / "d")
