"""True-utility share and oracle recall (recommend/true_utility.py): a hand-made case, the oracle's beam search
against exact enumeration, the CLI's columns."""

from __future__ import annotations

import json

import numpy as np
import pytest

from outfitrec.data.fmnist import generate, write_fmnist
from outfitrec.data.oracle import load_truth
from outfitrec.data.outfits import OutfitDataset
from outfitrec.models.search import Recommendation
from outfitrec.recommend import true_utility as tu


def _hand_truth(n_users: int = 1):
    """4 items, 2 dresses (slot 4) and 2 shoes (slot 2), whose dress+shoes outfits have U = v_dress + v_shoes.

    v = 3, 1 (dresses 0, 1) and 2, 0 (shoes 2, 3): U(0,2) = 5, U(0,3) = 3, U(1,2) = 3, U(1,3) = 1.
    Only the first attribute counts (weight sqrt(2) cancels the 1/sqrt(|o|) of a 2-item outfit).
    """
    from outfitrec.data.fmnist import PAIR_FEATURES, PAIRS, SLOTS, TEMPLATES, TruthParams

    n_attr = 6
    attrs = np.zeros((4, n_attr))
    attrs[:, 0] = [3.0, 1.0, 2.0, 0.0]
    attr_w = np.zeros((n_users, len(SLOTS), n_attr))
    attr_w[:, :, 0] = np.sqrt(2.0)
    return TruthParams(
        item_class=np.array([3, 3, 5, 5]),
        item_slot=np.array([4, 4, 2, 2]),
        item_unseen=np.zeros(4, bool),
        attributes_raw=attrs,
        attributes=attrs,
        attr_mean=np.zeros((len(SLOTS), n_attr)),
        attr_std=np.ones((len(SLOTS), n_attr)),
        attr_w=attr_w,
        class_w=np.zeros((n_users, 10)),
        template_bias=np.zeros((n_users, len(TEMPLATES))),
        pair_w=np.zeros((n_users, len(PAIRS), len(PAIR_FEATURES))),
        pair_center=np.zeros((len(PAIRS), len(PAIR_FEATURES))),
        user_scale=np.ones(n_users),
        style_mix=np.zeros((n_users, 8)),
        typical=np.full(n_users, 3.0),
    )


class FakeRecommender:
    """Returns fixed outfits, as `Recommender.recommend` would."""

    def __init__(self, outfits):
        self.outfits = outfits
        self.calls = []

    def recommend(self, user, k, params=None, use_pool=True):
        self.calls.append((user, k, params, use_pool))
        return [Recommendation(tuple(o), 0.0, 0) for o in self.outfits[:k]]


def test_hand_truth_utilities():
    truth = _hand_truth()
    got = tu.outfit_utilities(truth, 0, [(0, 2), (0, 3), (1, 2), (1, 3)])
    assert np.allclose(got, [5.0, 3.0, 3.0, 1.0])


def test_share_and_recall_on_a_hand_made_case():
    truth = _hand_truth()
    best = [(0, 2), (0, 3)]
    reference = tu.OracleTops(
        users=np.array([0]),
        tops=[best],
        utilities=[tu.outfit_utilities(truth, 0, best)],
        means=np.array([1.0]),  # m_u: the shift
        typical=np.array([0.5]),
        params=tu.REFERENCE,
        k=2,
        seconds=0.0,
    )
    rec = FakeRecommender([(2, 0), (1, 3)])  # the best outfit (items in another order) and the worst
    out = tu.true_utility_report(rec, truth, reference, tu.SERVED)
    # shifted: (5-1 + 1-1) / (5-1 + 3-1) = 4/6; raw: (5+1) / (5+3); recall: 1 of the 2 best
    assert out["true_share"] == pytest.approx(4 / 6)
    assert out["true_share_raw"] == pytest.approx(6 / 8)
    assert out["oracle_recall@2"] == pytest.approx(0.5)
    assert out["typical_share"] == pytest.approx(0.5)
    assert out["n_users"] == 1 and out["k"] == 2
    assert rec.calls == [(0, 2, tu.SERVED, False)]  # the live search, never the pool
    # the oracle's own outfits: share 1, recall 1; fewer than k outfits count as m_u
    assert tu.true_utility_report(FakeRecommender(best), truth, reference)["true_share"] == pytest.approx(1.0)
    assert tu.true_utility_report(FakeRecommender([(0, 2)]), truth, reference)["true_share"] == pytest.approx(4 / 6)


def test_oracle_scorer_is_the_true_utility():
    truth = _hand_truth()
    scorer = tu.OracleScorer(truth)
    index = tu.oracle_index(truth, truth.item_slot)
    rows = np.array([[0, 2], [1, -1]])
    z = scorer.encode_outfits(index.item_emb[np.where(rows >= 0, rows, 0)], rows >= 0)
    got = scorer.score_embeddings(np.array([0, 0]), z)
    assert np.allclose(got, [5.0, tu.outfit_utilities(truth, 0, [(1,)])[0]])


@pytest.fixture(scope="module")
def fm(tmp_path_factory):
    out = tmp_path_factory.mktemp("true_utility") / "fm"
    write_fmnist(generate("tiny", seed=0, images="procedural"), out, polyvore_u=False)
    return out, OutfitDataset.load(out / "dataset.npz"), load_truth(out)


def test_oracle_beam_search_against_exact_enumeration(fm):
    _, dataset, truth = fm
    users = tu.sample_users(dataset.n_users, 4, seed=0)
    # 8 items per category: 8^4 outfits for the largest template, enumerated exactly
    wide = tu.exact_check(dataset, truth, users, per_category=8, k=10, params=tu.REFERENCE)
    assert wide["recall"] == 1.0 and wide["share"] == pytest.approx(1.0)
    narrow = tu.exact_check(dataset, truth, users, per_category=8, k=10, params=tu.CHEAP)
    assert 0.0 <= narrow["recall"] <= 1.0 and narrow["share"] <= 1.0 + 1e-9
    assert narrow["outfits_per_user"] == wide["outfits_per_user"] > 1000


def test_oracle_through_its_own_search_reaches_the_reference(fm):
    folder, dataset, truth = fm
    users = tu.sample_users(dataset.n_users, 3, seed=0)
    assert list(users) == list(tu.sample_users(dataset.n_users, 3, seed=0))  # fixed by the seed
    reference = tu.cached_oracle_tops(folder, dataset, truth, users, 10, tu.REFERENCE)
    assert (folder / tu.CACHE_FILE).is_file()
    again = tu.cached_oracle_tops(folder, dataset, truth, users, 10, tu.REFERENCE)  # from the cache
    assert again.tops == reference.tops and np.allclose(again.means, reference.means)
    oracle = tu.oracle_recommender(dataset, truth)
    out = tu.true_utility_report(oracle, truth, reference, tu.REFERENCE)
    assert out["true_share"] == pytest.approx(1.0) and out["oracle_recall@10"] == 1.0
    for j, u in enumerate(users):  # training outfits are excluded from the oracle's top-k
        train = oracle.training_outfits(int(u))
        assert not any(frozenset(o) in train for o in reference.tops[j])


def test_evaluate_cli_prints_and_writes_the_true_utility_columns(fm, tmp_path, monkeypatch, capsys):
    import sys

    from conftest import make_tiny_run

    from outfitrec.cli import main

    folder, dataset, _ = fm
    run = make_tiny_run(dataset, folder, tmp_path / "run", steps=3)
    monkeypatch.setattr(sys, "argv", ["outfitrec", "evaluate", str(run), "--users", "3"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code in (0, None)
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| model |"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols[:5] == ["model", "auc", "ndcg", "ndcg@10", "fitb"]
    assert cols[5:8] == ["true_share", "oracle_recall@10", "n_users"]
    metrics = json.loads((run / "eval_test.json").read_text())
    assert 0.0 <= metrics["oracle_recall@10"] <= 1.0 and np.isfinite(metrics["true_share"])
    assert metrics["true_utility"]["n_users"] == 3 and len(metrics["true_utility"]["per_user"]) == 3
    # --no-true-utility: the table of old
    monkeypatch.setattr(sys, "argv", ["outfitrec", "evaluate", str(run), "--no-true-utility"])
    with pytest.raises(SystemExit):
        main()
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| model |"))
    assert "true_share" not in header


def test_experiment_tables_carry_the_true_utility_columns(tmp_path):
    from outfitrec.experiments.report import markdown_table, run_rows, summarize
    from outfitrec.experiments.runner import RunResult, Variant

    def result(name, seed, auc, share):
        metrics = {"test": {"auc": auc, "ndcg": 0.5}}
        if share is not None:
            metrics["true_utility"] = {"true_share": share, "oracle_recall@10": share / 2}
        return RunResult(
            Variant(name, baseline=None if name == "student" else "student"), seed, tmp_path, metrics, [], 1.0
        )

    results = [result("student", s, 0.8, 0.4 + s / 10) for s in (0, 1)] + [result("fnd", 0, 0.81, 0.6)]
    rows = run_rows(results)
    assert rows[0]["true_share"] == 0.4 and rows[2]["oracle_recall@10"] == 0.3
    summary = summarize(results, "test")
    assert summary[0]["true_share_mean"] == pytest.approx(0.45)
    table = markdown_table(summary, "test")
    head = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    assert head[4:6] == ["true share", "oracle R@10"]
    assert all(line.count("|") == table.splitlines()[0].count("|") for line in table.splitlines())
    assert "0.450 ± 0.071" in table
    plain = markdown_table(summarize([result("student", 0, 0.8, None)], "test"), "test")  # DiFashion: no columns
    assert "true share" not in plain


def test_lab_computes_and_caches_a_runs_true_utility(fm, tmp_path):
    from conftest import make_tiny_run

    from outfitrec.experiments.runner import Lab

    folder, dataset, _ = fm
    run = make_tiny_run(dataset, folder, tmp_path / "run", steps=3)
    lab = Lab(folder, tmp_path / "runs", "quick")
    report = lab.true_utility_of(run)
    assert report is not None and report["n_users"] == min(tu.DEFAULT_USERS, dataset.n_users)
    assert (run / "true_utility.json").is_file()
    assert lab.true_utility_of(run) == json.loads((run / "true_utility.json").read_text())["report"]
    assert lab._with_true_utility(run, {"test": {}})["true_utility"]["true_share"] == report["true_share"]
