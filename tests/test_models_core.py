"""OutfitModel: shapes, masking invariance, partial outfits, encoders, scorers and the anchors' regulariser."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from outfitrec.data.outfits import Catalogue, DataError
from outfitrec.models import ModelConfig, OutfitModel
from outfitrec.models.encoders import CNN_PRESETS, ConvBackbone
from outfitrec.models.scorer import GRAM_EPS, AnchorScorer, gram_logdet_penalty


def make_model(dataset, **overrides) -> OutfitModel:
    torch.manual_seed(0)
    cat = dataset.catalogue
    config = ModelConfig(**{"size": "student", "dim": 32, "n_anchors": 8, **overrides})
    model = OutfitModel(config, dataset.n_users, cat.n_items, cat.n_categories)
    model.bind_catalogue(cat)
    return model.eval()


def batch(dataset, n=6):
    tr = dataset.split("train")
    return torch.from_numpy(tr.users[:n]), torch.from_numpy(tr.items[:n]), torch.from_numpy(tr.mask[:n])


@pytest.mark.parametrize("encoder", ["cnn", "id"])
@pytest.mark.parametrize("scorer", ["anchors", "dot"])
def test_shapes_and_gradients(tiny_dataset, encoder, scorer):
    model = make_model(tiny_dataset, encoder=encoder, scorer=scorer).train()
    users, items, mask = batch(tiny_dataset)
    scores = model(users, items, mask)
    assert scores.shape == (6,) and torch.isfinite(scores).all()
    (scores.sum() + model.regularizer()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # candidates grid: users [B, 1] against items [B, 1+K, S]
    model.eval()
    grid = items[:, None].expand(-1, 3, -1)
    out = model(users[:, None], grid, mask[:, None].expand(-1, 3, -1))
    assert out.shape == (6, 3)
    assert torch.allclose(out[:, 0], model(users, items, mask), atol=1e-5)


def test_stages_compose_to_forward(tiny_dataset):
    model = make_model(tiny_dataset)
    users, items, mask = batch(tiny_dataset)
    table = model.encode_all_items()
    assert table.shape == (tiny_dataset.catalogue.n_items, 32)
    emb = table[items.clamp(min=0)] * mask[..., None]
    z = model.encode_outfits(emb, mask)
    assert torch.allclose(model.score_embeddings(users, z), model(users, items, mask), atol=1e-5)
    assert torch.allclose(model(users, items, mask, item_table=table), model(users, items, mask), atol=1e-5)
    assert torch.allclose(model.outfit_embeddings(items, mask), z, atol=1e-5)


def test_padding_and_garbage_do_not_change_scores(tiny_dataset):
    model = make_model(tiny_dataset)
    users, items, mask = batch(tiny_dataset)
    base = model(users, items, mask)
    # extra padded columns, with garbage (even out-of-range) ids in them
    pad_items = torch.cat([items, torch.tensor([[-1, 10**6]]).expand(len(items), -1)], dim=1)
    pad_mask = torch.cat([mask, torch.zeros(len(items), 2, dtype=torch.bool)], dim=1)
    assert torch.allclose(model(users, pad_items, pad_mask), base, atol=1e-5)
    # same width: a masked real slot holding another item id gives exactly the same score
    partial = mask.clone()
    partial[:, 1] = False
    garbage = items.clone()
    garbage[:, 1] = (items[:, 1] + 7) % tiny_dataset.catalogue.n_items
    assert torch.equal(model(users, items, partial), model(users, garbage, partial))
    # the partial outfit equals the outfit of its remaining items, in any order
    kept = items[:, [2, 0]]
    assert torch.allclose(
        model(users, items, partial), model(users, kept, torch.ones_like(kept, dtype=torch.bool)), atol=1e-5
    )
    # and masking really matters
    assert not torch.allclose(model(users, items, partial), base, atol=1e-3)


def test_permutation_invariance(tiny_dataset):
    model = make_model(tiny_dataset, encoder="cnn", size="teacher")
    users, items, mask = batch(tiny_dataset)
    perm = torch.tensor([2, 0, 1])
    assert torch.allclose(model(users, items[:, perm], mask[:, perm]), model(users, items, mask), atol=1e-5)


def test_empty_outfit_is_finite(tiny_dataset):
    model = make_model(tiny_dataset)
    users, items, mask = batch(tiny_dataset, 2)
    mask = mask.clone()
    mask[0] = False
    assert torch.isfinite(model(users, items, mask)).all()


def test_bad_item_id_in_real_slot_is_a_data_error(tiny_dataset):
    model = make_model(tiny_dataset)
    users, items, mask = batch(tiny_dataset, 2)
    items = items.clone()
    items[0, 0] = tiny_dataset.catalogue.n_items
    with pytest.raises(DataError, match="outside"):
        model(users, items, mask)


def test_regularizer_by_hand_2x2():
    scorer = AnchorScorer(n_users=2, dim=2, n_anchors=2)
    with torch.no_grad():
        scorer.anchors.copy_(torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[2.0, 0.0], [0.0, 0.5]]]))
    e = GRAM_EPS
    # user 0: G = [[1, 1], [1, 2]]: tr 3, det(G + eI) = (1+e)(2+e) - 1
    user0 = 3.0 - math.log((1 + e) * (2 + e) - 1)
    # user 1: G = diag(4, 0.25): tr 4.25, det = (4+e)(0.25+e)
    user1 = 4.25 - math.log((4 + e) * (0.25 + e))
    assert scorer.regularizer().item() == pytest.approx((user0 + user1) / 2, rel=1e-5)
    assert scorer.regularizer(torch.tensor([1, 1])).item() == pytest.approx(user1, rel=1e-5)
    # orthonormal anchors are the minimum: tr = K, log det = 0
    assert gram_logdet_penalty(torch.eye(2)[None]).item() == pytest.approx(2 - 2 * math.log(1 + e), rel=1e-5)


def test_regularizer_safe_when_anchors_are_dependent():
    anchors = torch.zeros(3, 8, 4, requires_grad=True)  # K > d and all zero: G singular
    value = gram_logdet_penalty(anchors)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(anchors.grad).all()


def test_anchor_score_is_sum_of_cosines():
    scorer = AnchorScorer(n_users=3, dim=4, n_anchors=5)
    z = torch.randn(2, 4)
    users = torch.tensor([2, 0])
    wz = scorer.project(z)
    expected = torch.stack(
        [
            torch.nn.functional.cosine_similarity(wz[i][None], scorer.anchors[u], dim=-1).sum()
            for i, u in enumerate(users)
        ]
    )
    assert torch.allclose(scorer(users, z), expected, atol=1e-5)


def test_id_encoder_unseen_items_fall_back_to_category(tiny_dataset):
    model = make_model(tiny_dataset, encoder="id")
    cat = tiny_dataset.catalogue
    tops = np.flatnonzero(cat.item_category == 0)
    seen = np.concatenate([tops[:5], np.flatnonzero(cat.item_category != 0)])
    model.set_seen_items(seen)
    unseen_a, unseen_b = int(tops[10]), int(tops[11])
    emb = model.encode_items(torch.tensor([unseen_a, unseen_b, int(tops[0]), int(tops[1])]))
    assert torch.equal(emb[0], emb[1])  # category alone
    assert not torch.allclose(emb[2], emb[0]) and not torch.allclose(emb[2], emb[3])
    with torch.no_grad():  # an unseen item's own (untrained) embedding is ignored
        model.item_encoder.item_embedding.weight[unseen_a] += 5.0
    again = model.encode_items(torch.tensor([unseen_a, unseen_b, int(tops[0]), int(tops[1])]))
    assert torch.equal(again[0], emb[0]) and torch.equal(again[0], again[1])
    with pytest.raises(DataError):
        model.set_seen_items([cat.n_items])


def test_parameter_counts_and_cnn_sizes(tiny_dataset):
    teacher = ConvBackbone(**CNN_PRESETS["teacher"])
    student = ConvBackbone(**CNN_PRESETS["student"])
    n_t = sum(p.numel() for p in teacher.parameters())
    n_s = sum(p.numel() for p in student.parameters())
    assert n_t >= 1_000_000 and n_s * 20 <= n_t
    model = make_model(tiny_dataset, encoder="cnn", size="teacher")
    counts = model.parameter_counts()
    assert counts["backbone"] == n_t
    assert counts["total"] == sum(p.numel() for p in model.parameters()) == counts["backbone"] + counts["rest"]


def test_tiny_id_student_is_under_a_twentieth_of_the_id_teacher(tiny_dataset):
    teacher = make_model(tiny_dataset, encoder="id", size="teacher").parameter_counts()["backbone"]
    student = make_model(tiny_dataset, encoder="id", size="student").parameter_counts()["backbone"]
    tiny = make_model(tiny_dataset, encoder="id", size="tiny").parameter_counts()["backbone"]
    assert student * 16 == teacher  # 8 of 128 wide: the id table dominates, 1/16
    assert tiny * 20 < teacher and tiny * 128 == teacher * 6
    with pytest.raises(ValueError, match="tiny"):
        ModelConfig(encoder="cnn", size="tiny")


def test_cnn_takes_rgb_images_of_any_size(tiny_dataset):
    rng = np.random.default_rng(0)
    cat = tiny_dataset.catalogue
    photos = Catalogue(
        cat.item_category, cat.category_names, images=rng.integers(0, 256, (cat.n_items, 40, 30, 3), dtype=np.uint8)
    )
    model = OutfitModel(
        ModelConfig(size="student", dim=32, n_anchors=4), tiny_dataset.n_users, cat.n_items, cat.n_categories
    )
    model.bind_catalogue(photos)
    assert model.item_encoder.images.shape[1:] == (3, 56, 56)
    users, items, mask = batch(tiny_dataset, 3)
    assert torch.isfinite(model.eval()(users, items, mask)).all()


def test_features_encoder_reads_npy(tiny_dataset, tmp_path):
    cat = tiny_dataset.catalogue
    feats = np.random.default_rng(0).standard_normal((cat.n_items, 10)).astype(np.float32)
    np.save(tmp_path / "f.npy", feats)
    config = ModelConfig(encoder="features", features_path=str(tmp_path / "f.npy"), dim=16, n_anchors=4)
    model = OutfitModel(config, tiny_dataset.n_users, cat.n_items, cat.n_categories)
    assert model.config.feature_dim == 10 and model.parameter_counts()["backbone"] == 0
    model.bind_catalogue(cat)
    users, items, mask = batch(tiny_dataset, 3)
    assert model(users, items, mask).shape == (3,)
    np.save(tmp_path / "short.npy", feats[:5])
    model.config = config.model_copy(update={"features_path": str(tmp_path / "short.npy")})
    model.item_encoder.features_path = str(tmp_path / "short.npy")
    with pytest.raises(DataError, match="short.npy"):
        model.bind_catalogue(cat)


def test_config_rejects_unknown_keys_and_bad_heads():
    with pytest.raises(ValueError):
        ModelConfig(encoder="cnn", colour=True)
    with pytest.raises(ValueError):
        ModelConfig(dim=30, heads=4)


def test_cnn_reads_photo_files_of_different_sizes(tiny_dataset, tmp_path):
    from PIL import Image

    cat = tiny_dataset.catalogue
    rng = np.random.default_rng(0)
    paths = []
    for i in range(cat.n_items):
        shape = (30 + i % 3 * 7, 25 + i % 2 * 9, 3)
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
        paths.append(str(path))
    photos = Catalogue(cat.item_category, cat.category_names, image_paths=np.array(paths))
    model = OutfitModel(
        ModelConfig(size="student", dim=16, n_anchors=4), tiny_dataset.n_users, cat.n_items, cat.n_categories
    )
    model.bind_catalogue(photos)
    assert model.item_encoder.pixels(torch.tensor([0, 1, 2])).shape == (3, 3, 56, 56)
    users, items, mask = batch(tiny_dataset, 2)
    assert torch.isfinite(model.eval()(users, items, mask)).all()
    (tmp_path / "0.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="0.png"):
        model.encode_items(torch.tensor([0]))


def test_adam_scaled_layers_keep_forward_and_shrink_adam_steps():
    from outfitrec.models.encoders import ADAM_BASE_FAN_IN, ScaledLinear

    torch.manual_seed(0)
    wide = ScaledLinear(4 * ADAM_BASE_FAN_IN, 8)
    assert wide.gain == pytest.approx(0.25)
    eff = wide.effective_weight().detach()
    assert eff.std().item() == pytest.approx((2 / (4 * ADAM_BASE_FAN_IN)) ** 0.5, rel=0.1)  # Kaiming, as usual
    x = torch.randn(3, 4 * ADAM_BASE_FAN_IN)
    assert torch.allclose(wide(x), torch.nn.functional.linear(x, eff, wide.bias), atol=1e-6)
    opt = torch.optim.Adam(wide.parameters(), lr=1e-2)
    wide(x).sum().backward()
    opt.step()
    step = (wide.effective_weight().detach() - eff).abs()
    assert step.max().item() == pytest.approx(1e-2 * 0.25, rel=1e-3)  # Adam's first step is lr * sign, times gain
    assert ScaledLinear(ADAM_BASE_FAN_IN // 2, 4).gain == 1.0
