"""The HTTP service: recommendations, outfit completion, scores, history, item images and a web page.

`create_app(recommender)` builds the FastAPI app around a loaded
`outfitrec.recommend.engine.Recommender`; `outfitrec serve RUN` runs it with
uvicorn on loopback. Endpoints are plain `def` functions (FastAPI runs them
in its thread pool); the engine admits at most four searches at a time (a
semaphore) and its state is read-only once loaded, so concurrent requests are
safe. Unknown users and items (and an item without an
image) answer 404, requests outside their bounds 422, each with a one-line
message in `detail` (422 from the request schema: FastAPI's list of
validation errors). Request bodies are strict: a user id is a JSON integer
(`true` and `"1"` are refused), NaN / Infinity give 422, and every list and
number has a bound; the OpenAPI schema lists each route's 404 / 422.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from outfitrec import __version__
from outfitrec.data.outfits import DataError
from outfitrec.models.search import Recommendation, SearchParams
from outfitrec.recommend.engine import NotFound, Recommender

STATIC = Path(__file__).resolve().parent / "static"
MAX_K = 50
MAX_SCORE_BATCH = 256
MAX_OUTFIT_ITEMS = 16
MAX_BEAM = 256
MAX_SHORTLIST = 500
MAX_PAGE = 1000
MAX_OFFSET = 2**31 - 1
MAX_TEMPLATES = 32
MAX_NAME = 200
MAX_LIKED = 100  # liked outfits of a new user (POST /api/users)
MAX_IMAGE_BASE64 = 4_000_000
MAX_FEATURES = 100_000
IMAGE_CACHE = 4096


class _Strict(BaseModel):
    """A request body: unknown keys refused, no coercion (JSON true or "1" is not an integer)."""

    model_config = ConfigDict(extra="forbid", strict=True)


ItemId = Annotated[StrictInt, Field(description="item id (0..n_items-1)")]
OutfitItems = Annotated[
    list[ItemId], Field(min_length=1, max_length=MAX_OUTFIT_ITEMS, description="item ids of one outfit")
]


class Message(BaseModel):
    """An error with a one-line message."""

    detail: str


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationMessage(BaseModel):
    """A request outside its schema or bounds: FastAPI's list of validation errors, or one message."""

    detail: list[ValidationIssue] | str


NOT_FOUND = {404: {"model": Message, "description": "Unknown user, item, category or split (or an item without image)"}}
INVALID = {422: {"model": ValidationMessage, "description": "Request outside its schema or bounds"}}
ERRORS = NOT_FOUND | INVALID


def _finite(value: Any) -> Any:
    """A JSON-safe copy: NaN / Infinity (echoed back from a request body) become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class RecommendRequest(_Strict):
    """Top-k new outfits for a user (their training outfits are never returned)."""

    user: StrictInt = Field(description="user id (0..n_users-1)")
    k: StrictInt = Field(10, ge=1, le=MAX_K, description="number of outfits")
    diverse: bool = Field(False, description="no item appears in two of the returned outfits")
    templates: list[StrictInt] | None = Field(
        None,
        min_length=1,
        max_length=MAX_TEMPLATES,
        description="template indices to fill (default: all, see /api/info)",
    )
    beam_width: StrictInt = Field(
        SearchParams.beam_width, ge=1, le=MAX_BEAM, description="partial outfits kept per slot"
    )
    shortlist: StrictInt = Field(
        SearchParams.shortlist, ge=1, le=MAX_SHORTLIST, description="items per slot considered"
    )


class CompleteRequest(_Strict):
    """Complete an outfit: the best items for the missing slots of a template the given items fit."""

    user: StrictInt = Field(description="user id (0..n_users-1)")
    items: list[ItemId] = Field(min_length=1, max_length=MAX_OUTFIT_ITEMS, description="item ids already chosen")
    k: StrictInt = Field(5, ge=1, le=MAX_K, description="number of completed outfits")
    template: StrictInt | None = Field(
        None, ge=0, le=MAX_OFFSET, description="template index (default: every template the items fit)"
    )
    diverse: bool = Field(False, description="the added items differ between the returned outfits")


class ScoreRequest(_Strict):
    """Scores of a user for given outfits."""

    user: StrictInt = Field(description="user id (0..n_users-1)")
    outfits: list[OutfitItems] = Field(
        min_length=1, max_length=MAX_SCORE_BATCH, description=f"up to {MAX_SCORE_BATCH} outfits (lists of item ids)"
    )


class NewUserRequest(_Strict):
    """A new user from a few liked outfits: folded in with the model frozen (recommend/users.py), no retraining."""

    outfits: list[
        Annotated[
            list[StrictInt | Annotated[str, Field(min_length=1, max_length=MAX_NAME)]],
            Field(min_length=1, max_length=MAX_OUTFIT_ITEMS),
        ]
    ] = Field(
        min_length=1,
        max_length=MAX_LIKED,
        description=f"up to {MAX_LIKED} liked outfits, each a list of item ids or item names",
    )
    name: str | None = Field(None, min_length=1, max_length=MAX_NAME, description="user name (default: the index)")
    seed: StrictInt = Field(0, ge=0, le=MAX_OFFSET, description="seed of the fold-in (random mixes, start)")


class NewUser(BaseModel):
    id: int
    name: str
    n_train: int = Field(description="liked outfits (the user's training outfits: never recommended back)")
    loss: float = Field(description="the fold-in's final training loss")
    seconds: float = Field(description="server-side time of the fold-in")


class NewItemRequest(_Strict):
    """A catalogue item added after training (encoded from its content; recommend/items.py)."""

    category: str = Field(min_length=1, max_length=MAX_NAME, description="category name (see /api/info)")
    name: str | None = Field(None, min_length=1, max_length=MAX_NAME, description="item name (default: its id)")
    image_png_base64: str | None = Field(
        None, max_length=MAX_IMAGE_BASE64, description="the item's image, PNG/JPEG bytes in base64 (encoder 'cnn')"
    )
    features: list[float] | None = Field(
        None, max_length=MAX_FEATURES, description="the item's feature vector (encoders 'features' / 'pretrained')"
    )


class Item(BaseModel):
    id: int
    category: str
    name: str
    image: str = Field(description="URL of the item's PNG image")


class Outfit(BaseModel):
    items: list[Item]
    score: float | None = None
    template: int | None = None
    template_name: str | None = None


class OutfitList(BaseModel):
    user: int
    outfits: list[Outfit]
    seconds: float = Field(0.0, description="server-side time of the search")


class Scores(BaseModel):
    user: int
    scores: list[float]


class User(BaseModel):
    id: int
    name: str
    n_train: int


class UserPage(BaseModel):
    total: int
    users: list[User]


class ItemPage(BaseModel):
    total: int
    items: list[Item]


class Refused(RuntimeError):
    """A change the server is not allowed to make (409)."""


def _decode_image(text: str, catalogue) -> np.ndarray:
    """A base64 image -> uint8 array in the catalogue's mode (grey [H, W] when its images are grey)."""
    import base64
    import binascii
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(base64.b64decode(text, validate=True))) as im:
            grey = catalogue.images is not None and catalogue.images.ndim == 3
            return np.asarray(im.convert("L" if grey else "RGB"))
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError) as exc:
        raise DataError(f"image_png_base64: not a readable base64 image ({exc})") from None


def create_app(recommender: Recommender, allow_changes: bool = True) -> FastAPI:
    """The FastAPI app answering from one loaded recommender (`Recommender.from_run`).

    Routes under /api (recommend, complete, score, users, items, images), the web page at /,
    OpenAPI at /docs; serve it with `uvicorn.run(app, host="127.0.0.1", port=8000)`.
    allow_changes: POST /api/users, POST /api/items and DELETE /api/items/{id} change this process's
    recommender; several worker processes would disagree, so `outfitrec serve --workers N` (N > 1) turns
    them off (409) and loads new users from `--users-from` in every worker instead.
    """
    app = FastAPI(
        title="outfitrec",
        version=__version__,
        description="Personalized outfit recommendation: recommend, complete and score outfits for a user.",
    )
    rec = recommender
    app.state.recommender = rec
    png_cache: OrderedDict[tuple[int, int], bytes] = OrderedDict()
    png_lock = threading.Lock()

    @app.exception_handler(NotFound)
    def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc).strip("'\"")})

    @app.exception_handler(DataError)
    def _bad_request(_: Request, exc: DataError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(RequestValidationError)
    def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # the errors echo the offending input: NaN / Infinity there must not turn a 422 into a 500
        return JSONResponse(status_code=422, content={"detail": _finite(jsonable_encoder(exc.errors()))})

    def item(i: int) -> Item:
        return Item(
            id=int(i),
            category=rec.item_category_name(i),
            name=str(rec.dataset.catalogue.item_names[int(i)]),
            image=f"/api/items/{int(i)}/image.png",
        )

    def outfit(r: Recommendation) -> Outfit:
        names = rec.info["templates"]
        name = " + ".join(names[r.template])
        return Outfit(items=[item(i) for i in r.items], score=r.score, template=r.template, template_name=name)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health", summary="Liveness: the model is loaded")
    def health() -> dict:
        return {"status": "ok", "users": rec.dataset.n_users, "items": rec.dataset.catalogue.n_items}

    @app.get("/api/info", summary="The model, its checkpoint and dataset, the templates")
    def info() -> dict:
        return rec.info | {"limits": {"k": MAX_K, "score_batch": MAX_SCORE_BATCH, "outfit_items": MAX_OUTFIT_ITEMS}}

    @app.get(
        "/api/users", response_model=UserPage, summary="Users, with their number of training outfits", responses=INVALID
    )
    def users(offset: int = Query(0, ge=0, le=MAX_OFFSET), limit: int = Query(100, ge=1, le=MAX_PAGE)) -> UserPage:
        ids = range(offset, min(offset + limit, rec.dataset.n_users))
        names = rec.dataset.user_names
        return UserPage(
            total=rec.dataset.n_users,
            users=[User(id=u, name=str(names[u]), n_train=len(rec.history(u, "train"))) for u in ids],
        )

    @app.get(
        "/api/users/{user}/history", response_model=OutfitList, summary="A user's outfits in a split", responses=ERRORS
    )
    def history(user: int, split: str = Query("train", pattern="^(train|valid|test)$")) -> OutfitList:
        outfits = [Outfit(items=[item(i) for i in o]) for o in rec.history(user, split)]
        return OutfitList(user=user, outfits=outfits)

    def check_changes(what: str) -> None:
        if not allow_changes:
            raise Refused(
                f"{what} is off: this server runs several worker processes, which would disagree; add users with "
                "`outfitrec users add` and serve them with --users-from, or serve with --workers 1"
            )

    @app.exception_handler(Refused)
    def _refused(_: Request, exc: Refused) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(exc)})

    @app.post(
        "/api/users",
        response_model=NewUser,
        status_code=201,
        summary="Add a user from a few liked outfits (fold-in: no retraining)",
        responses=INVALID | {409: {"model": Message, "description": "Changes are off (several workers)"}},
    )
    def new_user(req: NewUserRequest) -> NewUser:
        check_changes("adding users")
        start = time.perf_counter()
        user = rec.add_user(req.outfits, req.name, rec.fold_in_params(seed=req.seed))
        seconds = time.perf_counter() - start
        name = str(rec.dataset.user_names[user])
        loss = rec.overlay([user]).users[0].loss
        return NewUser(id=user, name=name, n_train=len(req.outfits), loss=loss, seconds=seconds)

    @app.post(
        "/api/items",
        response_model=Item,
        status_code=201,
        summary="Add a catalogue item (encoded from its image or features; no index rebuild)",
        responses=INVALID | {409: {"model": Message, "description": "Changes are off (several workers)"}},
    )
    def new_item(req: NewItemRequest) -> Item:
        check_changes("adding items")
        images = None
        if req.image_png_base64 is not None:
            images = [_decode_image(req.image_png_base64, rec.dataset.catalogue)]
        features = None if req.features is None else [req.features]
        (added,) = rec.add_items([req.category], None if req.name is None else [req.name], images, features)
        return item(added)

    @app.delete(
        "/api/items/{item_id}",
        summary="Remove an item: never recommended again",
        responses=ERRORS | {409: {"model": Message, "description": "Changes are off (several workers)"}},
    )
    def remove_item(item_id: int) -> dict:
        check_changes("removing items")
        rec.check_items([item_id])
        rec.remove_items([item_id])
        return {"removed": item_id, "removed_total": int(len(rec.removed_items))}

    @app.post("/api/recommend", response_model=OutfitList, summary="The user's top-k new outfits", responses=ERRORS)
    def recommend(req: RecommendRequest) -> OutfitList:
        start = time.perf_counter()
        params = SearchParams(beam_width=req.beam_width, shortlist=req.shortlist)
        recs = rec.recommend(req.user, req.k, req.diverse, req.templates, params=params)
        return OutfitList(user=req.user, outfits=[outfit(r) for r in recs], seconds=time.perf_counter() - start)

    @app.post(
        "/api/complete", response_model=OutfitList, summary="Fill the missing slots of an outfit", responses=ERRORS
    )
    def complete(req: CompleteRequest) -> OutfitList:
        start = time.perf_counter()
        recs = rec.complete(req.user, req.items, req.k, req.template, req.diverse)
        return OutfitList(user=req.user, outfits=[outfit(r) for r in recs], seconds=time.perf_counter() - start)

    @app.post("/api/score", response_model=Scores, summary="Scores of a user for given outfits", responses=ERRORS)
    def score(req: ScoreRequest) -> Scores:
        for r, o in enumerate(req.outfits):
            if not 1 <= len(o) <= MAX_OUTFIT_ITEMS:
                raise DataError(f"outfits[{r}]: {len(o)} items, expected 1..{MAX_OUTFIT_ITEMS}")
        return Scores(user=req.user, scores=[float(s) for s in rec.score(req.user, req.outfits)])

    @app.get(
        "/api/items", response_model=ItemPage, summary="Catalogue items, optionally of one category", responses=ERRORS
    )
    def items(
        category: str | None = Query(None, max_length=MAX_NAME, description="category name"),
        offset: int = Query(0, ge=0, le=MAX_OFFSET),
        limit: int = Query(100, ge=1, le=MAX_PAGE),
    ) -> ItemPage:
        catalogue = rec.dataset.catalogue
        if category is None:
            ids = range(catalogue.n_items)
        else:
            if category not in catalogue.category_names:
                raise NotFound(f"category {category!r} not found (categories are {list(catalogue.category_names)})")
            ids = rec.index.pool(catalogue.category_names.index(category)).tolist()
        page = list(ids[offset : offset + limit])
        return ItemPage(total=len(ids), items=[item(i) for i in page])

    @app.get("/api/items/{item_id}", response_model=Item, summary="One catalogue item", responses=ERRORS)
    def one_item(item_id: int) -> Item:
        rec.check_items([item_id])
        return item(item_id)

    @app.get(
        "/api/items/{item_id}/image.png",
        summary="The item's image (PNG)",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}} | ERRORS,
    )
    def image(item_id: int = PathParam(), scale: int = Query(1, ge=1, le=8)) -> Response:
        key = (item_id, scale)
        with png_lock:
            data = png_cache.get(key)
        if data is None:
            try:
                data = rec.item_png(item_id, scale)
            except DataError as exc:  # the item exists but has no (readable) image
                raise NotFound(f"item {item_id} has no image ({exc})") from None
            with png_lock:
                png_cache[key] = data
                if len(png_cache) > IMAGE_CACHE:
                    png_cache.popitem(last=False)
        return Response(content=data, media_type="image/png", headers={"Cache-Control": "public, max-age=3600"})

    return app
