"""New users without retraining (fold-in) and catalogue changes after training (issue 14, item 5)."""

from __future__ import annotations

import base64
import io
import sys

import numpy as np
import pytest
import torch
from conftest import load_prepared, make_tiny_run
from fastapi.testclient import TestClient
from PIL import Image

from outfitrec.cli import main
from outfitrec.data.outfits import PAD, DataError
from outfitrec.evaluate.protocol import evaluate_scores
from outfitrec.losses import softmax_loss
from outfitrec.models.scorer import gram_logdet_penalty
from outfitrec.recommend.batch import recommend_all
from outfitrec.recommend.engine import Recommender
from outfitrec.recommend.users import FoldInLoss, UserOverlay
from outfitrec.serve.app import create_app


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_dataset, tiny_data_dir):
    return make_tiny_run(tiny_dataset, tiny_data_dir, tmp_path_factory.mktemp("new_users_run"), steps=40)


def fresh(run) -> Recommender:
    return Recommender.from_run(run)


def liked_of(rec: Recommender, user: int, n: int = 5) -> list[list[int]]:
    return [list(o) for o in rec.history(user)[:n]]


def test_fold_in_user_gets_recommendations(tiny_run):
    rec = fresh(tiny_run)
    n_users = rec.dataset.n_users
    names = rec.dataset.catalogue.item_names
    liked = [[str(names[i]) for i in o] for o in liked_of(rec, 3, 3)]  # items given by name
    user = rec.add_user(liked, name="alice")
    assert user == n_users and rec.dataset.user_index("alice") == user and rec.dataset.n_users == n_users + 1
    assert rec.history(user) == [tuple(o) for o in liked_of(rec, 3, 3)]
    recs = rec.recommend(user, k=5)
    assert len(recs) == 5 and [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)
    assert not {frozenset(r.items) for r in recs} & rec.training_outfits(user)  # liked outfits never come back
    scores = rec.score(user, [list(r.items) for r in recs[:2]])
    assert scores == pytest.approx([r.score for r in recs[:2]], abs=1e-5)
    # deterministic given the seed; another seed gives another fit
    again = rec.add_user(liked, name="alice2")
    other = rec.add_user(liked, name="alice3", params=rec.fold_in_params(seed=1))
    u = rec.searcher.scorer.user_matrix
    assert np.array_equal(u[user], u[again]) and not np.allclose(u[user], u[other])
    # the run's users are untouched
    assert np.array_equal(u[:n_users], fresh(tiny_run).searcher.scorer.user_matrix)


def test_fold_in_recovers_the_trained_ranking(tiny_run, tiny_data_dir):
    """Every training user refitted from its own training outfits ranks its test candidates as well as its
    trained anchors (AUC within 0.05; the random start is at chance)."""
    rec = fresh(tiny_run)
    _, candidates = load_prepared(tiny_data_dir)
    fold, trained = rec.fold_in(), rec.searcher.scorer.user_matrix.copy()

    def auc(users_matrix):
        def score(users, items, mask):
            feats = rec.searcher.cache.features(np.where(mask, items, PAD))[0]
            return np.einsum("bm,bm->b", feats, users_matrix[users])

        return evaluate_scores(score, candidates["test"])["auc"]

    def refit(steps):
        u = trained.copy()
        for user in range(rec.dataset.n_users):
            rows = rec.liked_rows(liked_of(rec, user, 100))
            u[user] = fold.vector(fold.fit(str(user), rows, rec.fold_in_params(steps=steps)))
        return u

    base, start, folded = auc(trained), auc(refit(0)), auc(refit(300))
    assert base > 0.6 and start < 0.55
    assert folded >= base - 0.05, (base, folded)


def test_fold_in_loss_is_the_models_loss(tiny_run):
    """The numpy loss and gradient equal torch autograd of losses.softmax_loss + the anchors' regulariser,
    with the scores of the model itself (OutfitModel.score_embeddings with the anchors swapped in)."""
    rec = fresh(tiny_run)
    model = rec.searcher.scorer.model
    rng = np.random.default_rng(0)
    rows = np.asarray(rec.liked_rows(liked_of(rec, 2, 3)))
    bank_rows = rows[:, None, :].repeat(6, 1).copy()
    bank_rows[..., 0] = rng.choice(rec.index.pools[0], bank_rows.shape[:2])
    flat = np.concatenate([rows, bank_rows.reshape(-1, rows.shape[1])])
    mask = flat != PAD
    emb = torch.from_numpy(rec.index.item_emb[np.where(mask, flat, 0)])
    with torch.no_grad():
        z = model.encode_outfits(emb, torch.from_numpy(mask))
    feats = rec.searcher.scorer.features(z.numpy()).astype(np.float64)
    n, weight = len(rows), 0.01
    loss_fn = FoldInLoss(feats[:n], np.zeros(n), feats[n:].reshape(n, 6, -1), np.zeros((n, 6)), "anchors", 1.0, weight)
    x = rng.normal(size=tuple(model.scorer.anchors.shape[1:])) / 3
    pick = np.stack([rng.permutation(6)[:4] for _ in range(n)])
    loss, grad = loss_fn(x, pick)

    anchors = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        model.scorer.anchors.data[0] = torch.from_numpy(x).float()  # scores of user 0 with these anchors
        scores = model.score_embeddings(torch.zeros(len(z), dtype=torch.long), z).numpy()
    ours = np.concatenate([feats[:n] @ (x / np.linalg.norm(x, axis=1, keepdims=True)).sum(0)])
    assert ours == pytest.approx(scores[:n], abs=1e-4)
    unit = torch.nn.functional.normalize(anchors, dim=-1).sum(0)
    f = torch.from_numpy(feats)
    s_pos = f[:n] @ unit
    s_neg = torch.gather((f[n:].reshape(n, 6, -1) @ unit), 1, torch.from_numpy(pick))
    ref = softmax_loss(torch.cat([s_pos[:, None], s_neg], 1)) + weight * gram_logdet_penalty(anchors[None])
    ref.backward()
    assert loss == pytest.approx(float(ref), rel=1e-6)
    assert np.allclose(grad, anchors.grad.numpy(), atol=1e-6)


def test_post_users_end_to_end(tiny_run):
    rec = fresh(tiny_run)
    with TestClient(create_app(rec)) as client:
        total = client.get("/api/users").json()["total"]
        liked = liked_of(rec, 4, 5)
        r = client.post("/api/users", json={"outfits": liked, "name": "bob"})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["id"] == total and body["name"] == "bob" and body["n_train"] == 5 and body["seconds"] > 0
        rec_r = client.post("/api/recommend", json={"user": body["id"], "k": 4}).json()
        assert len(rec_r["outfits"]) == 4
        got = {frozenset(i["id"] for i in o["items"]) for o in rec_r["outfits"]}
        assert not got & {frozenset(o) for o in liked}
        assert len(client.get(f"/api/users/{body['id']}/history").json()["outfits"]) == 5
        page = client.get("/api/users", params={"offset": total}).json()
        assert page["total"] == total + 1 and page["users"] == [{"id": total, "name": "bob", "n_train": 5}]
        # bad inputs: one clear message each, 422
        for payload, message in [
            ({"outfits": [[0, 9999]]}, "outfits[0]: item 9999 not found"),
            ({"outfits": [[0, "no-such-item"]]}, "outfits[0]: 'no-such-item' is neither an item name"),
            ({"outfits": [[1, 1]]}, "outfits[0]: an item appears twice"),
            ({"outfits": [[0, 20, 40]], "name": "bob"}, "user name 'bob' is taken"),
            ({"outfits": [[0, 20, 40]], "name": "99"}, "reads as another user's index"),
        ]:
            r = client.post("/api/users", json=payload)
            assert r.status_code == 422 and message in r.json()["detail"], (payload, r.text)
        for payload in ({"outfits": []}, {"outfits": [[]]}, {"outfits": [[True]]}, {"outfits": [[0]], "x": 1}):
            assert client.post("/api/users", json=payload).status_code == 422
        assert client.get("/api/users").json()["total"] == total + 1  # no failed request added a user
    with TestClient(create_app(fresh(tiny_run), allow_changes=False)) as client:
        r = client.post("/api/users", json={"outfits": liked})
        assert r.status_code == 409 and "--users-from" in r.json()["detail"]


def _all_items(recs) -> set[int]:
    return {i for r in recs for i in r.items}


def test_removed_items_are_never_recommended(tiny_run, tmp_path):
    rec = fresh(tiny_run)
    rec.load_or_build_pool(None, users=range(rec.dataset.n_users), per_user=10)
    before = rec.recommend(5, k=5)
    pooled = rec.recommend(5, k=5)  # default requests: the outfit pool
    gone = sorted(_all_items(before[:2]))
    rec.remove_items(gone)
    assert list(rec.removed_items) == gone
    searches = {
        "pool": rec.recommend(5, k=5),
        "live": rec.recommend(5, k=5, use_pool=False),
        "diverse": rec.recommend(5, k=5, diverse=True, use_pool=False),
        "exact": rec.recommend(5, k=5, exact=True),
        "complete": rec.complete(5, [i for i in rec.index.pools[0] if i not in gone][:1], k=5),
    }
    for name, recs in searches.items():
        assert len(recs) == 5 and not _all_items(recs) & set(gone), name
    assert pooled  # the pool answered before the removal
    summary = recommend_all(rec, tmp_path / "recs.csv", k=3, progress=False)
    assert summary["merged"]
    lines = (tmp_path / "recs.csv").read_text().splitlines()[1:]
    batch_items = {int(i) for line in lines for i in line.split(",")[4].split()}
    assert batch_items and not batch_items & set(gone)
    rec.remove_items([int(rec.index.pools[1][0])])  # another catalogue: the parts are not resumed
    with pytest.raises(DataError, match="parts written with other settings"):
        recommend_all(rec, tmp_path / "recs.csv", k=3, progress=False)
    with pytest.raises(DataError, match="was removed"):
        rec.complete(5, [gone[0]])
    with pytest.raises(DataError, match="was removed"):
        rec.add_user([[gone[0]]])


def test_added_items_are_encoded_and_recommended(tiny_run, tiny_dataset):
    """A new item with the image of a catalogue item gets that item's embedding and can be recommended."""
    rec = fresh(tiny_run)
    best = rec.recommend(6, k=1, exact=True)[0]
    copy_of = best.items[0]
    image = tiny_dataset.catalogue.images[copy_of]
    (new,) = rec.add_items([rec.item_category_name(copy_of)], ["copy"], images=[image])
    assert new == tiny_dataset.catalogue.n_items and rec.dataset.catalogue.item_names[new] == "copy"
    assert np.allclose(rec.index.item_emb[new], rec.index.item_emb[copy_of], atol=1e-5)
    top = rec.recommend(6, k=2, exact=True)
    assert {frozenset(r.items) for r in top} == {frozenset(best.items), frozenset((new, *best.items[1:]))}
    assert any(new in r.items for r in rec.recommend(6, k=10, use_pool=False))
    with pytest.raises(DataError, match="category 'hat' not found"):
        rec.add_items(["hat"], images=[image])
    with pytest.raises(DataError, match="reads images"):
        rec.add_items(["top"])


def test_items_over_http(tiny_run, tiny_dataset):
    rec = fresh(tiny_run)
    png = io.BytesIO()
    Image.fromarray(tiny_dataset.catalogue.images[3]).save(png, format="PNG")
    with TestClient(create_app(rec)) as client:
        r = client.post(
            "/api/items", json={"category": "top", "image_png_base64": base64.b64encode(png.getvalue()).decode()}
        )
        assert r.status_code == 201, r.text
        new = r.json()["id"]
        assert np.allclose(rec.index.item_emb[new], rec.index.item_emb[3], atol=1e-5)
        assert client.get(f"/api/items/{new}/image.png").status_code == 200
        assert client.delete("/api/items/3").json()["removed"] == 3
        recs = client.post("/api/recommend", json={"user": 1, "k": 10}).json()["outfits"]
        assert recs and all(i["id"] != 3 for o in recs for i in o["items"])
        bad = client.post("/api/items", json={"category": "top", "image_png_base64": "bm90IGFuIGltYWdl"})
        assert bad.status_code == 422 and "not a readable base64 image" in bad.json()["detail"]


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["outfitrec", *map(str, args)])
    with pytest.raises(SystemExit) as info:
        main()
    out, err = capsys.readouterr()
    return (0 if info.value.code is None else info.value.code), out, err


def test_cli_users_add_then_recommend_and_bad_inputs(tiny_run, tmp_path, monkeypatch, capsys):
    rec = fresh(tiny_run)
    names = rec.dataset.catalogue.item_names
    lines = ["user,item_ids"] + [f"carol,{';'.join(str(names[i]) for i in o)}" for o in liked_of(rec, 2, 3)]
    lines += [f"dave,{';'.join(str(i) for i in o)}" for o in liked_of(rec, 8, 2)]
    csv = tmp_path / "liked.csv"
    csv.write_text("\n".join(lines) + "\n")
    out = tmp_path / "new_users"
    code, stdout, err = run_cli(monkeypatch, capsys, "users", "add", tiny_run, "--outfits", csv, "--out", out)
    assert code == 0, err
    assert "wrote" in stdout and (out / "users.safetensors").is_file()
    overlay = UserOverlay.load(out)
    assert [u.name for u in overlay.users] == ["carol", "dave"] and [len(u.outfits) for u in overlay.users] == [3, 2]
    code, stdout, err = run_cli(
        monkeypatch, capsys, "recommend", tiny_run, "--users-from", out, "--user", "carol", "--k", "3"
    )
    assert code == 0 and "(carol): 3 outfits" in stdout, err
    # the same user in memory and from the overlay: the same vector
    again = fresh(tiny_run)
    (carol, _) = again.load_users(out)
    direct = fresh(tiny_run)
    direct.add_user(liked_of(rec, 2, 3), name="carol")
    assert np.allclose(again.searcher.scorer.user_matrix[carol], direct.searcher.scorer.user_matrix[carol])

    # an outfit shorter than the catalogue's widest (2 items) is a valid liked outfit on the CLI as over HTTP
    short = tmp_path / "short.csv"
    two = liked_of(rec, 5, 1)[0][:2]
    assert len(two) == 2 < rec.max_size
    short.write_text(f"user,item_ids\nfrank,{';'.join(f'#{i}' for i in two)}\n")
    code, stdout, err = run_cli(
        monkeypatch, capsys, "users", "add", tiny_run, "--outfits", short, "--out", tmp_path / "o1"
    )
    assert code == 0, err
    (frank,) = UserOverlay.load(tmp_path / "o1").users
    assert sorted(int(i) for i in frank.outfits[0] if i >= 0) == sorted(two)

    def one_line_error(*args) -> str:
        code, _, err = run_cli(monkeypatch, capsys, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
        return err

    bad = tmp_path / "bad.csv"
    bad.write_text("user,item_ids\nerin,0;1;2\nerin,0;no-such\n")
    assert f"{bad}:3: item_ids[0]: 'no-such' is neither" in one_line_error(
        "users", "add", tiny_run, "--outfits", bad, "--out", tmp_path / "o2"
    )
    bad.write_text("who,items\n")
    assert "header must be 'user,item_ids'" in one_line_error(
        "users", "add", tiny_run, "--outfits", bad, "--out", tmp_path / "o3"
    )
    assert "the output lies inside the input" in one_line_error(
        "users", "add", tiny_run, "--outfits", csv, "--out", tiny_run / "users"
    )
    assert "exists and is not empty" in one_line_error("users", "add", tiny_run, "--outfits", csv, "--out", out)
    assert "not readable JSON" in one_line_error(
        "recommend", tiny_run, "--users-from", _broken(out, tmp_path), "--user", "carol"
    )


def _broken(out, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "users.json").write_text("{")
    (broken / "users.safetensors").write_bytes((out / "users.safetensors").read_bytes())
    return broken


def test_overlay_of_another_checkpoint_is_refused(tiny_run, tiny_dataset, tiny_data_dir, tmp_path):
    rec = fresh(tiny_run)
    rec.add_user(liked_of(rec, 1, 2), name="frank")
    rec.overlay().save(tmp_path / "o")
    other = make_tiny_run(tiny_dataset, tiny_data_dir, tmp_path / "other_run", steps=5)
    with pytest.raises(DataError, match="fitted on checkpoint"):
        Recommender.from_run(other).load_users(tmp_path / "o")


def test_cli_add_and_remove_items(tiny_run, tiny_dataset, tmp_path, monkeypatch, capsys):
    import json

    best = fresh(tiny_run).recommend(1, k=1, exact=True)[0].items[0]  # in user 1's best outfit
    Image.fromarray(tiny_dataset.catalogue.images[best]).save(tmp_path / "copy.png")
    items = tmp_path / "items.csv"
    category = tiny_dataset.catalogue.category_names[tiny_dataset.catalogue.item_category[best]]
    items.write_text(f"item_id,category,image\ncopy,{category},copy.png\n")
    args = ["recommend", tiny_run, "--user", "1", "--k", "5", "--json", "--add-items", items]
    code, out, err = run_cli(monkeypatch, capsys, *args, "--remove-items", str(best), "--exact")
    assert code == 0, err
    outfits = json.loads(out)["outfits"]
    assert best not in {i for o in outfits for i in o["items"]}
    assert "copy" in outfits[0]["names"]  # the copy, same image, takes the removed item's place
    items.write_text("item_id,category,image\nnew-hat,hat,copy.png\n")
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2 and err.startswith("error: ") and f"{items}:2: category 'hat' is not one of" in err, err


@pytest.mark.parametrize(
    "kind",
    [
        {"encoder": "id", "size": "student", "user_history": "mean"},  # anchors + the history term
        {"encoder": "cnn", "size": "student", "scorer": "dot"},  # one embedding per user
        {"encoder": "cnn", "size": "student", "scorer": "dot", "outfit_sums": "items+pairs"},  # wider z
        {"encoder": "cnn", "size": "student", "scorer": "dot", "outfit_sums": "items+pairs", "user_dim": 5},  # W z
    ],
    ids=["id-history", "cnn-dot", "cnn-dot-sums", "cnn-dot-projected"],
)
def test_fold_in_with_the_history_term_and_the_dot_scorer(kind, tiny_dataset, tiny_data_dir, tmp_path):
    """The history term of a new user is the model's own, from the liked outfits' items; the dot scorer's
    vector is fitted like the anchors; an id encoder's new item is its category alone."""
    import yaml

    from outfitrec.models.checkpoint import save_model
    from outfitrec.models.outfit_model import ModelConfig, OutfitModel

    torch.manual_seed(0)
    cfg = ModelConfig(dim=16, heads=2, n_anchors=4, dropout=0.0, **kind)
    cat, train = tiny_dataset.catalogue, tiny_dataset.split("train")
    model = OutfitModel(cfg, tiny_dataset.n_users, cat.n_items, cat.n_categories)
    model.bind_catalogue(cat)
    users = np.broadcast_to(train.users[:, None], train.items.shape)[train.mask]
    model.fit_collaborative(users, train.items[train.mask], seed=0)
    save_model(model, tmp_path / "model", {"role": "test"})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"data": {"path": str(tiny_data_dir)}}))
    rec = Recommender.from_run(tmp_path)
    user = rec.add_user(liked_of(rec, 3, 100), name="grace")  # all of user 3's training outfits
    matrix = rec.searcher.scorer.user_matrix
    c = rec.searcher.scorer.history_dim
    if kind.get("user_history"):
        assert c > 0 and np.allclose(matrix[user, -c:], matrix[3, -c:], atol=1e-5)  # same items, same h_u
    else:
        assert c == 0 and rec.fold_in().kind == "dot"
    assert len(rec.recommend(user, k=3)) == 3
    if kind["encoder"] == "id":
        (new,) = rec.add_items(["shoes"], ["new-shoe"])
        with torch.no_grad():
            unseen = model.item_encoder.head(model.item_encoder.category_embedding(torch.tensor([2])))
        assert np.allclose(rec.index.item_emb[new, : unseen.shape[1]], unseen.numpy()[0], atol=1e-5)
        assert np.allclose(rec.index.item_emb[new, unseen.shape[1] :], 0.0)
