"""The HTTP API on a real tiny model: happy paths, 404/422 errors, OpenAPI, concurrent requests."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from conftest import make_tiny_run
from fastapi.testclient import TestClient

from outfitrec.recommend.engine import Recommender
from outfitrec.serve.app import MAX_K, MAX_SCORE_BATCH, create_app


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_dataset, tiny_data_dir):
    run = make_tiny_run(tiny_dataset, tiny_data_dir, tmp_path_factory.mktemp("serve_run"), steps=5)
    return create_app(Recommender.from_run(run))


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


def test_health_info_users_items(client, tiny_dataset):
    assert client.get("/health").json()["status"] == "ok"
    info = client.get("/api/info").json()
    assert info["n_users"] == 12 and info["templates"] == [["top", "bottom", "shoes"]]
    assert info["backend"] == "torch" and len(info["checkpoint_sha256"]) == 64
    users = client.get("/api/users").json()
    assert users["total"] == 12 and users["users"][0] == {"id": 0, "name": "0", "n_train": 6}
    items = client.get("/api/items", params={"category": "shoes", "limit": 5}).json()
    assert items["total"] == 20 and [i["id"] for i in items["items"]] == [40, 41, 42, 43, 44]
    assert client.get("/api/items/41").json()["category"] == "shoes"


def test_item_image_is_a_png(client):
    r = client.get("/api/items/3/image.png", params={"scale": 2})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content[:8] == b"\x89PNG\r\n\x1a\n"
    from io import BytesIO

    from PIL import Image

    assert Image.open(BytesIO(r.content)).size == (56, 56)


def test_history_recommend_complete_score(client):
    history = client.get("/api/users/3/history").json()
    assert len(history["outfits"]) == 6
    assert all(len(o["items"]) == 3 and o["items"][0]["image"].endswith(".png") for o in history["outfits"])
    rec = client.post("/api/recommend", json={"user": 3, "k": 4, "diverse": True}).json()
    assert len(rec["outfits"]) == 4 and rec["seconds"] > 0
    ids = [i["id"] for o in rec["outfits"] for i in o["items"]]
    assert len(ids) == len(set(ids))
    seen = {frozenset(i["id"] for i in o["items"]) for o in history["outfits"]}
    assert not seen & {frozenset(i["id"] for i in o["items"]) for o in rec["outfits"]}
    scores = [o["score"] for o in rec["outfits"]]
    assert scores == sorted(scores, reverse=True) and rec["outfits"][0]["template_name"] == "top + bottom + shoes"
    # the score endpoint agrees with the recommender's scores
    first = [i["id"] for i in rec["outfits"][0]["items"]]
    scored = client.post("/api/score", json={"user": 3, "outfits": [first, first[:2]]}).json()
    assert scored["scores"][0] == pytest.approx(scores[0], abs=1e-5)
    done = client.post("/api/complete", json={"user": 3, "items": [5], "k": 3}).json()
    assert len(done["outfits"]) == 3 and all(5 in [i["id"] for i in o["items"]] for o in done["outfits"])


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        ("get", "/api/users/99/history", None, "user 99 not found"),
        ("post", "/api/recommend", {"user": 99}, "user 99 not found"),
        ("post", "/api/recommend", {"user": -1}, "user -1 not found"),
        ("post", "/api/score", {"user": 0, "outfits": [[0, 9999]]}, "item 9999 not found"),
        ("post", "/api/complete", {"user": 0, "items": [60]}, "item 60 not found"),
        ("get", "/api/items/60/image.png", None, "item 60 not found"),
        ("get", "/api/items", {"category": "hat"}, "category 'hat' not found"),
    ],
)
def test_unknown_user_or_item_is_404(client, method, path, body, message):
    if method == "get":
        r = client.get(path, params=body)
    else:
        r = client.post(path, json=body)
    assert r.status_code == 404
    assert message in r.json()["detail"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/recommend", {"user": 0, "k": MAX_K + 1}, "k"),
        ("/api/recommend", {"user": 0, "k": 0}, "k"),
        ("/api/recommend", {"user": 0, "colour": "red"}, "colour"),
        ("/api/score", {"user": 0, "outfits": [[0, 20]] * (MAX_SCORE_BATCH + 1)}, "outfits"),
        ("/api/score", {"user": 0, "outfits": []}, "outfits"),
        ("/api/complete", {"user": 0, "items": []}, "items"),
        ("/api/recommend", {"k": 3}, "user"),
    ],
)
def test_out_of_bounds_is_422(client, path, body, field):
    r = client.post(path, json=body)
    assert r.status_code == 422
    assert any(field in map(str, e["loc"]) for e in r.json()["detail"])


def test_semantic_errors_are_422_with_a_message(client):
    r = client.post("/api/complete", json={"user": 0, "items": [0, 1]})
    assert r.status_code == 422 and "fit no outfit template" in r.json()["detail"]
    r = client.post("/api/score", json={"user": 0, "outfits": [[0, 0]]})
    assert r.status_code == 422 and "appears twice" in r.json()["detail"]
    r = client.post("/api/recommend", json={"user": 0, "templates": [3]})
    assert r.status_code == 422 and "template 3 does not exist" in r.json()["detail"]
    assert client.get("/api/items/3/image.png", params={"scale": 99}).status_code == 422


def test_openapi_and_page(client):
    schema = client.get("/openapi.json").json()
    for path in ("/api/recommend", "/api/complete", "/api/score", "/api/users/{user}/history", "/health"):
        assert path in schema["paths"]
    assert "RecommendRequest" in schema["components"]["schemas"]
    page = client.get("/")
    assert page.status_code == 200 and "<title>outfitrec" in page.text
    assert client.get("/static/app.js").status_code == 200


def test_concurrent_requests_agree_with_serial(app, client):
    """32 concurrent requests (FastAPI runs them on its thread pool) give the serial answers."""
    bodies = [{"user": u % 12, "k": 3} for u in range(32)]
    serial = [client.post("/api/recommend", json=b).json()["outfits"] for b in bodies]

    async def burst():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as ac:
            return await asyncio.gather(*(ac.post("/api/recommend", json=b) for b in bodies))

    responses = asyncio.run(burst())
    assert all(r.status_code == 200 for r in responses)
    assert [r.json()["outfits"] for r in responses] == serial


# --------------------------------------------------------------------------- strict requests (issue 13, kind 7)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/recommend", {"user": True}, "user"),
        ("/api/recommend", {"user": "1"}, "user"),
        ("/api/recommend", {"user": 1.0}, "user"),
        ("/api/recommend", {"user": 1, "k": "3"}, "k"),
        ("/api/recommend", {"user": 1, "templates": [False]}, "templates"),
        ("/api/recommend", {"user": 1, "diverse": 1}, "diverse"),
        ("/api/complete", {"user": 1, "items": ["5"]}, "items"),
        ("/api/complete", {"user": False, "items": [5]}, "user"),
        ("/api/score", {"user": 1, "outfits": [[True, 20]]}, "outfits"),
        ("/api/score", {"user": 1, "outfits": [list(range(17))]}, "outfits"),
        ("/api/recommend", {"user": 1, "templates": [0] * 33}, "templates"),
    ],
)
def test_ids_are_strict_integers(client, path, body, field):
    """JSON true, "1" or 1.0 is not a user (or item) id: 422 naming the field, never user 1."""
    r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    assert any(field in map(str, e["loc"]) for e in r.json()["detail"])


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/api/recommend", '{"user": NaN}'),
        ("/api/recommend", '{"user": 0, "k": Infinity}'),
        ("/api/recommend", '{"user": -Infinity}'),
        ("/api/score", '{"user": 0, "outfits": [[0, NaN]]}'),
        ("/api/complete", '{"user": 0, "items": [Infinity]}'),
    ],
)
def test_nan_and_infinity_in_a_body_are_422_not_500(client, path, raw):
    r = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]  # valid JSON (the echoed input is a string)
    assert detail and all("msg" in e for e in detail)


def test_an_item_without_an_image_is_404(app, client, monkeypatch):
    import numpy as np

    catalogue = app.state.recommender.dataset.catalogue
    monkeypatch.setattr(catalogue, "images", None)  # and no image files either
    r = client.get("/api/items/7/image.png", params={"scale": 3})
    assert r.status_code == 404 and r.json()["detail"].startswith("item 7 has no image")
    monkeypatch.setattr(catalogue, "image_paths", np.asarray(["/nonexistent/7.png"] * catalogue.n_items))
    r = client.get("/api/items/8/image.png", params={"scale": 3})
    assert r.status_code == 404 and "item 8 has no image" in r.json()["detail"]


def test_openapi_lists_the_404_and_422_of_each_route(client):
    paths = client.get("/openapi.json").json()["paths"]
    expected = {
        ("/api/recommend", "post"): {"404", "422"},
        ("/api/complete", "post"): {"404", "422"},
        ("/api/score", "post"): {"404", "422"},
        ("/api/users/{user}/history", "get"): {"404", "422"},
        ("/api/items", "get"): {"404", "422"},
        ("/api/items/{item_id}", "get"): {"404", "422"},
        ("/api/items/{item_id}/image.png", "get"): {"404", "422"},
        ("/api/users", "get"): {"422"},
    }
    for (path, method), codes in expected.items():
        responses = paths[path][method]["responses"]
        assert codes <= set(responses), (path, sorted(responses))
        if "404" in codes:
            schema = responses["404"]["content"]["application/json"]["schema"]
            assert schema["$ref"].endswith("/Message")


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/users", {"offset": 2**31}),
        ("/api/items", {"offset": 2**31}),
        ("/api/items", {"category": "x" * 201}),
        ("/api/items", {"limit": 1001}),
    ],
)
def test_query_sizes_are_bounded(client, path, params):
    assert client.get(path, params=params).status_code == 422
