"""The oracle: true utility against a hand computation, false-negative flags, the report, the popularity baseline."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from outfitrec.data.fmnist import PAIR_FEATURE_COLUMNS, PAIRS, TEMPLATES, generate, write_fmnist
from outfitrec.data.oracle import false_negative_flags, load_truth, true_utility, typical_utilities
from outfitrec.data.outfits import PAD, Catalogue, DataError, OutfitDataset, Outfits, save_npz_atomic
from outfitrec.evaluate.baselines import item_popularity, popularity_scores
from outfitrec.evaluate.oracle import oracle_report


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("oracle") / "fm"
    write_fmnist(generate("tiny", seed=0, images="procedural"), out, polyvore_u=False)
    return out


@pytest.fixture(scope="module")
def truth(folder):
    return load_truth(folder)


@pytest.fixture(scope="module")
def dataset(folder):
    return OutfitDataset.load(folder / "dataset.npz")


def _by_hand(truth, user: int, items: list[int]) -> float:
    """The documented formula, written out with plain loops (independent of the vectorised code)."""
    slots = [int(truth.item_slot[i]) for i in items]
    item_sum = sum(
        float(truth.attributes[i] @ truth.attr_w[user, s]) + float(truth.class_w[user, truth.item_class[i]])
        for i, s in zip(items, slots)
    )
    pair_sum, n_pairs = 0.0, 0
    for (i, si), (j, sj) in itertools.combinations(zip(items, slots), 2):
        pair = next((p for p, ab in enumerate(PAIRS) if set(ab) == {si, sj}), None)
        if pair is None:
            continue
        f = np.abs(truth.attributes[i, PAIR_FEATURE_COLUMNS] - truth.attributes[j, PAIR_FEATURE_COLUMNS])
        pair_sum += float((f - truth.pair_center[pair]) @ truth.pair_w[user, pair])
        n_pairs += 1
    names = sorted(truth.header["slots"][s] for s in slots)
    template = next((t for t, tpl in enumerate(TEMPLATES) if sorted(tpl) == names), None)
    bias = truth.template_bias[user, template] if template is not None else 0.0
    total = bias + item_sum / np.sqrt(len(items)) + (pair_sum / np.sqrt(n_pairs) if n_pairs else 0.0)
    return float(truth.user_scale[user] * total)


def test_true_utility_matches_the_formula(truth, dataset):
    test = dataset.splits["test"]
    rows = list(range(0, len(test), max(1, len(test) // 8)))
    got = true_utility(truth, test.users[rows], test.items[rows], test.mask[rows])
    want = [_by_hand(truth, int(test.users[r]), test.items[r][test.mask[r]].tolist()) for r in rows]
    assert np.allclose(got, want)
    # a partial outfit (no template) is scored too
    items = test.items[0][test.mask[0]][:1].tolist()
    partial = true_utility(
        truth, test.users[:1], np.array([items + [PAD] * 3]), np.array([[True, False, False, False]])
    )
    assert partial[0] == pytest.approx(_by_hand(truth, int(test.users[0]), items))


def test_padding_and_item_order_do_not_change_utility(truth, dataset):
    train = dataset.splits["train"]
    base = true_utility(truth, train.users, train.items, train.mask)
    rng = np.random.default_rng(0)
    perm = rng.permutation(train.max_size)
    wider = train.padded_to(train.max_size + 2)
    assert np.allclose(base, true_utility(truth, train.users, train.items[:, perm], train.mask[:, perm]))
    assert np.allclose(base, true_utility(truth, wider.users, wider.items, wider.mask))


def test_bad_inputs_raise_data_error(truth, folder, tmp_path):
    with pytest.raises(DataError, match="item id is outside"):
        true_utility(truth, np.array([0]), np.array([[10_000, PAD]]), np.array([[True, False]]))
    with pytest.raises(DataError, match="user is outside"):
        true_utility(truth, np.array([999]), np.array([[0, PAD]]), np.array([[True, False]]))
    with pytest.raises(DataError, match="no ground truth here"):
        load_truth(tmp_path)
    with np.load(folder / "truth.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "pair_w"}
    save_npz_atomic(tmp_path / "truth.npz", arrays)
    with pytest.raises(DataError, match=r"truth.npz: missing key\(s\) \['pair_w'\]"):
        load_truth(tmp_path / "truth.npz")


def test_false_negative_flags_use_the_typical_positive(truth, dataset):
    train = dataset.splits["train"]
    flags = false_negative_flags(truth, train.users, train.items, train.mask)
    # at the median threshold at least half of each user's own training positives count as "typical or better"
    for u in np.unique(train.users):
        assert flags[train.users == u].mean() >= 0.5
    util = true_utility(truth, train.users, train.items, train.mask)
    assert np.array_equal(flags, util >= truth.typical[train.users])
    assert np.allclose(typical_utilities(truth, dataset, 0.5), truth.typical, equal_nan=True)
    # a stricter threshold (the user's best positive) flags fewer
    strict = false_negative_flags(truth, train.users, train.items, train.mask, typical_utilities(truth, dataset, 1.0))
    assert strict.sum() < flags.sum() and strict.sum() >= len(np.unique(train.users))


def test_oracle_report(folder):
    report, arrays = oracle_report(folder, split="test")
    n_neg = report["n_positives"] * report["k"]
    assert arrays["neg.false_negative"].shape == (n_neg,) and arrays["pos.utility"].shape == (report["n_positives"],)
    assert report["oracle"]["auc"] > 0.85
    assert report["oracle"]["auc"] > report["popularity"]["auc"] + 0.1
    fn = report["false_negatives"]
    assert fn["count"] == int(arrays["neg.false_negative"].sum())
    assert 0.0 <= fn["share_of_negatives"] < 0.3 and 0.0 <= fn["train_random_mix_share"] < 0.3
    stricter, _ = oracle_report(folder, split="valid", quantile=0.9)
    assert stricter["typical_quantile"] == 0.9
    assert stricter["false_negatives"]["train_random_mix_share"] <= fn["train_random_mix_share"]


def test_popularity_scores_by_hand():
    cat = Catalogue(np.array([0, 0, 1, 1, 2]), ["top", "bottom", "shoes"])
    train = Outfits.from_rows([0, 0, 1], [[0, 2], [0, 3], [1, 2, 4]], cat.item_category)
    ds = OutfitDataset(cat, 2, {"train": train})
    assert item_popularity(ds).tolist() == [2, 1, 2, 1, 1]
    query = Outfits.from_rows([0, 1], [[0, 2, 4], [3]], cat.item_category)
    assert popularity_scores(ds, query).tolist() == pytest.approx([5 / 3, 1.0])
    with pytest.raises(DataError, match="outside"):
        popularity_scores(ds, Outfits.from_rows([0], [[7]], np.arange(8) % 3))
