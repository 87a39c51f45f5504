"""Issue 15's scorer options: FHN-style outfit sums (items, items+pairs, routed) and anchors pooled by a soft max.

Each keeps the model's contracts: padded slots and garbage in them change nothing, order changes nothing,
the stages compose to forward, and the serving path scores what the model scores (one vector per user where
the score collapses, the model itself where it does not).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_models_core import batch
from test_models_core import make_model as core_make_model

from outfitrec.data.outfits import DataError
from outfitrec.models import ModelConfig, OutfitModel
from outfitrec.models.outfit_model import RoutedSums, outfit_dim, outfit_sum_terms
from outfitrec.models.scorer import AnchorScorer
from outfitrec.recommend.fast import CollapsedScorer

SUMS = ["items", "items+pairs", "routed"]


def make_model(dataset, **overrides) -> OutfitModel:
    """test_models_core's tiny model, with the dot scorer unless told otherwise."""
    return core_make_model(dataset, **{"scorer": "dot", **overrides})


def test_sum_terms_by_hand():
    """Two real items and a padded slot holding garbage: sum / sqrt(2), one pair |a1 - a2| / sqrt(1)."""
    e = torch.tensor([[[1.0, 2.0], [3.0, -1.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, True, False]])
    project = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        project.weight.copy_(torch.eye(2))
    items, pairs = outfit_sum_terms(e, mask, project)
    assert torch.allclose(items, torch.tensor([[4.0, 1.0]]) / math.sqrt(2))
    assert torch.allclose(pairs, torch.tensor([[2.0, 3.0]]))
    # three items: three pairs, divided by sqrt(3)
    items3, pairs3 = outfit_sum_terms(e, torch.ones(1, 3, dtype=torch.bool), project)
    assert torch.allclose(items3, torch.tensor([[104.0, 101.0]]) / math.sqrt(3))
    assert torch.allclose(pairs3, torch.tensor([[2.0 + 99.0 + 97.0, 3.0 + 98.0 + 101.0]]) / math.sqrt(3))
    # one item: no pair
    _, pairs1 = outfit_sum_terms(e, torch.tensor([[True, False, False]]), project)
    assert torch.equal(pairs1, torch.zeros(1, 2))


def test_routed_sums_by_hand_with_one_group_per_item():
    """Gates saturated to one group per item: the item block of group c is the sum of its items' P e."""
    routed = RoutedSums(2)
    with torch.no_grad():
        for lin in (routed.gate, routed.item, routed.pair):
            lin.weight.zero_()
            lin.bias.zero_()
        routed.gate.weight[0, 0] = routed.gate.weight[1, 1] = 100.0  # e = (1, 0) -> group 0, (0, 1) -> group 1
        routed.item.weight[0, 0] = routed.item.weight[0, 1] = 1.0  # P e: first feature = e0 + e1
        routed.pair.weight[0, 0] = 1.0  # Q e: first feature = e0
    e = torch.tensor([[[2.0, 0.0], [0.0, 3.0]]])
    out = routed(e, torch.ones(1, 2, dtype=torch.bool))
    c, r, r2 = RoutedSums.GROUPS, RoutedSums.RANK, RoutedSums.PAIR_RANK
    assert out.shape == (1, RoutedSums.width()) == (1, c * r + c * c * r2)
    items = out[0, : c * r].reshape(c, r)
    pairs = out[0, c * r :].reshape(c, c, r2)
    assert torch.allclose(items[0, 0], torch.tensor(2.0 / math.sqrt(2)), atol=1e-4)
    assert torch.allclose(items[1, 0], torch.tensor(3.0 / math.sqrt(2)), atol=1e-4)
    # the one pair (groups 0 and 1, symmetric): |2 - 0| / 2 in blocks (0, 1) and (1, 0), nothing elsewhere
    assert torch.allclose(pairs[0, 1, 0], torch.tensor(1.0), atol=1e-4)
    assert torch.allclose(pairs[1, 0, 0], torch.tensor(1.0), atol=1e-4)
    assert float(pairs.detach().abs().sum()) == pytest.approx(2.0, abs=1e-3)


@pytest.mark.parametrize("sums", SUMS)
def test_sums_keep_the_model_contracts(tiny_dataset, sums):
    model = make_model(tiny_dataset, outfit_sums=sums)
    users, items, mask = batch(tiny_dataset)
    assert model.outfit_dim == outfit_dim(model.config) > model.config.dim
    base = model(users, items, mask)
    # stages compose; z has outfit_dim columns
    table = model.encode_all_items()
    z = model.encode_outfits(table[items.clamp(min=0)] * mask[..., None], mask)
    assert z.shape == (len(users), model.outfit_dim)
    assert torch.allclose(model.score_embeddings(users, z), base, atol=1e-5)
    # order and padded garbage change nothing
    perm = torch.tensor([2, 0, 1])
    assert torch.allclose(model(users, items[:, perm], mask[:, perm]), base, atol=1e-5)
    partial = mask.clone()
    partial[:, 1] = False
    garbage = items.clone()
    garbage[:, 1] = (items[:, 1] + 7) % tiny_dataset.catalogue.n_items
    assert torch.allclose(model(users, items, partial), model(users, garbage, partial), atol=1e-6)
    # gradients reach the new layers
    model.train()
    model(users, items, mask).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("sums", SUMS)
def test_sums_collapse_to_one_vector_per_user(tiny_dataset, sums):
    model = make_model(tiny_dataset, outfit_sums=sums)
    collapsed = CollapsedScorer(model)  # checks itself against the model
    assert collapsed.user_matrix.shape == (tiny_dataset.n_users, model.outfit_dim)
    assert model.bytes_per_user()["served"] == collapsed.bytes_per_user == 4 * model.outfit_dim
    users, items, mask = batch(tiny_dataset)
    z = collapsed.encode_outfits(collapsed.encode_items(np.arange(model.n_items))[items.clamp(min=0)], mask)
    with torch.no_grad():
        ref = model(users, items, mask).numpy()
    assert np.allclose(collapsed.score_embeddings(users.numpy(), z), ref, atol=1e-4)


@pytest.mark.parametrize("sums", SUMS)
def test_sums_alone_without_the_set_transformer(tiny_dataset, sums):
    model = make_model(tiny_dataset, outfit_sums=sums, outfit_set=False)
    assert (
        model.outfit_dim
        == outfit_dim(model.config)
        == outfit_dim(model.config.model_copy(update={"outfit_set": True})) - 32
    )
    users, items, mask = batch(tiny_dataset)
    perm = torch.tensor([2, 0, 1])
    assert torch.allclose(model(users, items[:, perm], mask[:, perm]), model(users, items, mask), atol=1e-5)
    assert CollapsedScorer(model).user_matrix.shape[1] == model.outfit_dim
    with pytest.raises(ValueError, match="outfit_set"):
        ModelConfig(outfit_set=False)


def test_sums_need_no_user_history():
    with pytest.raises(ValueError, match="outfit_sums"):
        ModelConfig(encoder="id", outfit_sums="items", user_history="mean")


def test_lse_pool_by_hand_and_limits():
    scorer = AnchorScorer(n_users=2, dim=3, n_anchors=4, pool="lse", pool_temperature=0.1)
    z = torch.randn(5, 3)
    users = torch.tensor([0, 1, 1, 0, 1])
    wz = torch.nn.functional.normalize(scorer.project(z), dim=-1)
    cos = torch.einsum("bd,bkd->bk", wz, torch.nn.functional.normalize(scorer.anchors[users], dim=-1))
    expected = 4 * 0.1 * torch.log(torch.exp(cos / 0.1).mean(-1))
    assert torch.allclose(scorer(users, z), expected, atol=1e-5)
    # tau -> 0: K * max cos; tau large: the paper's sum of cosines
    scorer.pool_temperature = 1e-4
    assert torch.allclose(scorer(users, z), 4 * cos.max(-1).values, atol=1e-3)
    scorer.pool_temperature = 100.0  # K * (mean + var / (2 tau)): within K / (2 tau) of the sum
    assert torch.allclose(scorer(users, z), cos.sum(-1), atol=4 / 200)
    # bounded like the sum: [-K, K]
    assert (scorer(users, z).abs() <= 4 + 1e-5).all()
    with pytest.raises(ValueError, match="pool"):
        AnchorScorer(n_users=2, dim=3, pool="max")


def test_lse_anchors_are_served_by_the_model_itself(tiny_dataset, tiny_data_dir, tmp_path):
    model = make_model(tiny_dataset, scorer="anchors", anchor_pool="lse")
    with pytest.raises(DataError, match="do not collapse"):
        CollapsedScorer(model)
    users, items, mask = batch(tiny_dataset)
    assert torch.isfinite(model(users, items, mask)).all()

    # served through the model (TorchScorer); a new user is refused in one line, not folded in wrongly
    import yaml

    from outfitrec.models.checkpoint import save_model
    from outfitrec.recommend.engine import Recommender

    save_model(model, tmp_path / "model", {"role": "test"})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"data": {"path": str(tiny_data_dir)}}))
    rec = Recommender.from_run(tmp_path)
    assert len(rec.recommend(0, k=3)) == 3
    with pytest.raises(DataError, match="anchor_pool 'lse'"):
        rec.add_user([list(rec.history(0)[0])])


@pytest.mark.parametrize(
    "overrides",
    [
        {"scorer": "dot", "outfit_sums": "items+pairs"},
        {"scorer": "dot", "outfit_sums": "items+pairs", "user_dim": 5},  # e_u . W z (whole-dot preset)
        {"scorer": "anchors", "outfit_sums": "routed", "outfit_set": False},
        {"scorer": "anchors", "outfit_sums": "items", "outfit_set": False},
        {"scorer": "anchors", "anchor_pool": "lse"},
    ],
)
def test_onnx_export_matches_torch(tiny_dataset, tmp_path, overrides):
    from outfitrec.recommend.onnx_export import export_onnx, parity_report

    model = make_model(tiny_dataset, **overrides)
    export_onnx(model, tmp_path)
    for graph, err in parity_report(model, tmp_path, tiny_dataset, n_outfits=64).items():
        assert err < 1e-4, (graph, err)


def test_lse_needs_the_anchors_scorer():
    with pytest.raises(ValueError, match="anchor_pool"):
        ModelConfig(scorer="dot", anchor_pool="lse")
