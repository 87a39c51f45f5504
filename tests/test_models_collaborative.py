"""The collaborative options of the id encoder: id_init='svd', user_history='mean', and the plateau regression."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from outfitrec.losses import softmax_loss
from outfitrec.models.checkpoint import load_model, save_model
from outfitrec.models.outfit_model import ModelConfig, OutfitModel, item_factors


def _pairs(ds):
    train = ds.split("train")
    users = np.broadcast_to(train.users[:, None], train.items.shape)[train.mask]
    return users, train.items[train.mask]


def make(ds, **kw) -> OutfitModel:
    torch.manual_seed(0)
    cfg = ModelConfig(encoder="id", size="student", dim=16, heads=2, n_anchors=4, dropout=0.0, **kw)
    model = OutfitModel(cfg, ds.n_users, ds.catalogue.n_items, ds.catalogue.n_categories)
    model.bind_catalogue(ds.catalogue)
    model.fit_collaborative(*_pairs(ds), seed=0)
    return model.eval()


def test_defaults_are_todays_model(tiny_dataset):
    cfg = ModelConfig(encoder="id")
    assert (cfg.id_init, cfg.id_init_std, cfg.user_history) == ("normal", 0.1, "none")
    names = set(make(tiny_dataset).state_dict())
    assert not any(n.startswith("history_scorer") for n in names)


def test_options_need_the_id_encoder():
    with pytest.raises(ValueError):
        ModelConfig(encoder="cnn", user_history="mean")
    with pytest.raises(ValueError):
        ModelConfig(encoder="cnn", id_init="svd")


def test_svd_init_rows_are_the_user_item_factors(tiny_dataset):
    model = make(tiny_dataset, id_init="svd", id_init_std=0.5)
    users, items = _pairs(tiny_dataset)
    seen = np.unique(items)
    V, _ = item_factors(users, items, tiny_dataset.n_users, seen, 8)
    W = model.item_encoder.item_embedding.weight.detach().numpy()[seen, : V.shape[1]]
    scale = W / V  # one global factor: the geometry of the factors is kept
    assert np.allclose(scale, scale.flat[0], rtol=1e-4)
    assert np.sqrt((W**2).mean()) == pytest.approx(0.5, rel=1e-4)


def test_history_shapes_padding_and_forward_agree(tiny_dataset):
    model = make(tiny_dataset, id_init="svd", user_history="mean", history_size=64)
    valid = tiny_dataset.split("valid")
    users = torch.as_tensor(valid.users[:6])
    items = torch.as_tensor(valid.items[:6]).clamp(min=0)
    mask = torch.as_tensor(valid.mask[:6])
    scores = model(users, items, mask)
    assert scores.shape == (6,) and torch.isfinite(scores).all()
    # padded slots with garbage do not change a score
    pad_items = torch.cat([items, torch.randint(0, model.n_items, (6, 2))], dim=1)
    pad_mask = torch.cat([mask, torch.zeros(6, 2, dtype=torch.bool)], dim=1)
    assert torch.allclose(model(users, pad_items, pad_mask), scores, atol=1e-5)
    # the staged path (loop, evaluation) gives the same scores as forward
    z = model.encode_outfits(model.encode_items(items.reshape(-1)).reshape(6, items.shape[1], -1), mask)
    assert z.shape == (6, 16)
    assert torch.allclose(model.score_embeddings(users, z), scores, atol=1e-5)
    hist = model.history_scorer.history
    assert hist.shape == (tiny_dataset.n_users, 64)
    u0 = set(hist[0][hist[0] >= 0].tolist())
    users_np, items_np = _pairs(tiny_dataset)
    assert u0 == set(items_np[users_np == 0].tolist())


def test_history_checkpoint_round_trip(tiny_dataset, tmp_path):
    model = make(tiny_dataset, id_init="svd", user_history="mean", history_size=64)
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    loaded.bind_catalogue(tiny_dataset.catalogue)
    assert torch.equal(loaded.history_scorer.history, model.history_scorer.history)
    valid = tiny_dataset.split("valid")
    args = (torch.as_tensor(valid.users), torch.as_tensor(valid.items).clamp(min=0), torch.as_tensor(valid.mask))
    assert torch.allclose(loaded(*args), model(*args), atol=1e-6)


def _plateau_steps(ds, steps: int = 30, **kw) -> list[float]:
    """Softmax loss of a tiny id teacher on 1 positive + K random mixes of the same categories, per step."""
    torch.manual_seed(0)
    cfg = ModelConfig(encoder="id", size="teacher", dim=32, heads=4, n_anchors=4, dropout=0.0, **kw)
    model = OutfitModel(cfg, ds.n_users, ds.catalogue.n_items, ds.catalogue.n_categories)
    model.bind_catalogue(ds.catalogue)
    train = ds.split("train")
    model.set_seen_items(train.items[train.mask])
    model.fit_collaborative(*_pairs(ds), seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    gen = np.random.default_rng(0)
    k = 10
    cats = ds.catalogue.item_category
    pools = {c: np.unique(train.items[train.mask][cats[train.items[train.mask]] == c]) for c in np.unique(cats)}
    pos = torch.as_tensor(train.items).clamp(min=0)
    mask = torch.as_tensor(train.mask)
    neg = np.stack([np.vectorize(lambda i: gen.choice(pools[cats[i]]))(train.items.clip(0)) for _ in range(k)], 1)
    items = torch.cat([pos[:, None], torch.as_tensor(neg)], 1)  # [B, 1+K, S], same negatives every step
    m = mask[:, None].expand(-1, 1 + k, -1)
    users = torch.as_tensor(train.users)[:, None]
    out = []
    for _ in range(steps):
        loss = softmax_loss(model(users, items, m))
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(float(loss.detach()))
    return out


@pytest.mark.parametrize("kw", [{"id_init": "svd", "id_init_std": 1.0}, {"id_init": "svd", "user_history": "mean"}])
def test_a_tiny_id_teacher_leaves_the_plateau(tiny_dataset, kw):
    """The DiFashion recipe (svd init): the loss is below ln(1 + K) within a few steps (with the history
    term it starts there: the term ranks like PureSVD before any training)."""
    losses = _plateau_steps(tiny_dataset, **kw)
    assert losses[0] < math.log(11) + 0.5
    assert min(losses[-5:]) < math.log(11) - 0.5


def test_user_table_starts_at_the_item_factors_and_counts_users_not_items(tiny_dataset):
    """id_table='users': e_i = sum of its users' rows of P = U S^-1, i.e. PureSVD's V up to one scale."""
    model = make(tiny_dataset, id_init="svd", id_init_std=0.5, id_table="users")
    users, items = _pairs(tiny_dataset)
    seen = np.unique(items)
    V, _ = item_factors(users, items, tiny_dataset.n_users, seen, 8)
    E = model.item_encoder.id_vectors(torch.as_tensor(seen)).detach().numpy()[:, : V.shape[1]]
    scale = E / V
    assert np.allclose(scale, scale.flat[0], rtol=1e-3)
    assert np.sqrt((E**2).mean()) == pytest.approx(0.5, rel=1e-4)
    # by hand: item i's vector is the sum of its users' rows
    enc = model.item_encoder
    i = int(seen[0])
    owners = np.unique(users[items == i])
    assert torch.allclose(enc.id_vectors(torch.tensor([i]))[0], enc.user_basis.weight[owners].sum(0), atol=1e-6)
    # unseen items get no id vector; the backbone is the user table (+ categories)
    unseen = np.setdiff1d(np.arange(model.n_items), seen)
    if len(unseen):
        assert torch.all(enc.id_vectors(torch.as_tensor(unseen[:3])) == 0)
    width = enc.width
    assert enc.backbone_parameter_count() == (tiny_dataset.n_users + tiny_dataset.catalogue.n_categories) * width


def test_user_table_checkpoint_round_trip_and_gradients(tiny_dataset, tmp_path):
    model = make(tiny_dataset, id_init="svd", user_history="mean", id_table="users", history_size=64)
    valid = tiny_dataset.split("valid")
    users = torch.as_tensor(valid.users[:5])
    items = torch.as_tensor(valid.items[:5]).clamp(min=0)
    mask = torch.as_tensor(valid.mask[:5])
    model.train()
    model(users, items, mask).sum().backward()
    assert model.item_encoder.user_basis.weight.grad is not None
    model.eval()
    before = model(users, items, mask).detach()
    save_model(model, tmp_path / "ckpt")
    loaded = load_model(tmp_path / "ckpt")
    loaded.bind_catalogue(tiny_dataset.catalogue)
    assert torch.allclose(loaded(users, items, mask), before, atol=1e-5)


def test_user_table_needs_the_id_encoder():
    with pytest.raises(ValueError):
        ModelConfig(encoder="cnn", id_table="users")


def test_exclude_self_removes_only_the_users_own_outfit_pairs(tiny_dataset):
    """id_exclude_self: slot (u, i) drops p_u when i is in u's training outfits and not in u's extra history."""
    torch.manual_seed(0)
    ds = tiny_dataset
    cfg = ModelConfig(
        encoder="id", size="student", dim=16, heads=2, n_anchors=4, dropout=0.0, id_table="users", id_exclude_self=True
    )
    model = OutfitModel(cfg, ds.n_users, ds.catalogue.n_items, ds.catalogue.n_categories)
    model.bind_catalogue(ds.catalogue)
    users, items = _pairs(ds)
    # extra history: user 0 also "owns" the first item of its first outfit through the history
    first = int(items[users == 0][0])
    model.fit_collaborative(users, items, np.array([0]), np.array([first]), seed=0)
    enc = model.item_encoder
    own = [int(i) for i in np.unique(items[users == 0]) if i != first]
    i = own[0]
    u = torch.tensor([0])
    full = enc.id_vectors(torch.tensor([i]))
    assert torch.allclose(enc.id_vectors(torch.tensor([i]), u), full - enc.user_basis.weight[0], atol=1e-6)
    # the history pair stays, and so does any item of another user's outfits only
    assert torch.allclose(enc.id_vectors(torch.tensor([first]), u), enc.id_vectors(torch.tensor([first])))
    other = int(np.setdiff1d(items[users != 0], items[users == 0])[0])
    assert torch.allclose(enc.id_vectors(torch.tensor([other]), u), enc.id_vectors(torch.tensor([other])))
    assert model.excludes_self
    off = ModelConfig(encoder="id", size="student", dim=16, heads=2, n_anchors=4, id_table="users")
    assert not OutfitModel(off, ds.n_users, ds.catalogue.n_items, ds.catalogue.n_categories).excludes_self


def test_user_table_trains_end_to_end_and_the_run_serves(tiny_data_dir, tmp_path):
    """A run with id_table='users' trains (self-exclusion in the step), evaluates and recommends from disk."""
    from conftest import tiny_config

    from outfitrec.evaluate.protocol import evaluate_run
    from outfitrec.recommend.engine import Recommender
    from outfitrec.train.loop import train

    model = {"encoder": "id", "size": "student", "dim": 8, "heads": 2, "n_anchors": 3}
    model |= {"id_table": "users", "id_init": "svd", "user_history": "mean", "id_exclude_self": True}
    run = tmp_path / "run"
    train(tiny_config(tiny_data_dir, model=model, optim={"epochs": 1}), run)
    metrics = evaluate_run(run, "valid")
    assert 0.0 <= metrics["auc"] <= 1.0
    recs = Recommender.from_run(run).recommend(0, k=3)
    assert len(recs) == 3
    from outfitrec.data.outfits import DataError
    from outfitrec.models.checkpoint import load_run
    from outfitrec.recommend.onnx_export import export_onnx

    with pytest.raises(DataError, match="id_table 'users'"):  # refused in one line, nothing written
        export_onnx(load_run(run).model, tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()
