"""New users without retraining: fold-in of a user who arrives with a few liked outfits.

A trained model's user side is a handful of free parameters per user (the K
anchors of `models.scorer.AnchorScorer`, or the one vector of `DotScorer`),
plus, with `ModelConfig.user_history='mean'`, a term computed from the user's
own items (`models/history.py`). Everything else (item encoder, Set
Transformer, the anchors' projection W) does not depend on the user. Fold-in
fits a new user's parameters with every other weight frozen: a few hundred
Adam steps of the model's own recommendation loss (`losses.softmax_loss`: each
liked outfit against K type-aware random-mix negatives drawn as in training,
`data.negatives.random_mix`, plus the anchors' log-det regulariser at the run's
weight). The history term of a new user is the mean over the items of the
liked outfits, like a training user's.

Since the frozen network maps an outfit to the feature phi(z) of the collapsed
scorer (`recommend/fast.py`: score = <phi(z), U[u]>), the liked outfits and a
bank of random mixes are encoded once (through the searcher's feature cache)
and the steps (plain numpy, `FoldInLoss`) only move the user's parameters:
about 50 ms of CPU for 5 liked outfits (benchmarks/bench_new_users.py,
docs/results/new-users.md). Deterministic given the seed.

`FoldIn` does the fitting for a loaded model; `Recommender.add_user`
(recommend/engine.py) adds the fitted user in memory, and `UserOverlay`
(`save` / `load`) is the one on-disk form, a folder with `users.safetensors`
(the fitted parameters and the liked outfits) + `users.json` (names, the
checkpoint's SHA-256, the fold-in parameters) that `outfitrec recommend
--users-from` and `outfitrec serve --users-from` load (`outfitrec users add`
writes it; the run directory is never written).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from outfitrec.data.io import atomic_folder, check_output_folder, write_manifest
from outfitrec.data.negatives import NoRandomMix, random_mix
from outfitrec.data.outfits import PAD, Catalogue, DataError, Outfits, item_name_lookup, read_item

USERS_FILE = "users.safetensors"
USERS_JSON = "users.json"
OVERLAY_FORMAT = "outfitrec-users-v1"
MAX_LIKED = 200  # liked outfits per new user
MAX_NAME = 200


@dataclass(frozen=True)
class FoldInParams:
    """How a new user is fitted. The loss settings default to the run's own (`from_run_config`).

    steps: Adam steps; lr: their learning rate; negatives: K random mixes per
    liked outfit in each step's softmax (the run's data.negatives); bank: random
    mixes drawn once per liked outfit, each step's K sampled from them;
    anchor_weight: the log-det regulariser's weight (the run's loss.anchor_weight);
    temperature: the softmax temperature (the run's loss.temperature); seed: the
    random mixes, the initial parameters and the steps' samples.
    """

    steps: int = 300
    lr: float = 0.02  # chosen on the cold users' validation AUC (docs/results/new-users.md)
    negatives: int = 10
    bank: int = 64
    anchor_weight: float = 0.01
    temperature: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name, lo in (("steps", 0), ("negatives", 1), ("bank", 1), ("seed", 0)):
            if int(getattr(self, name)) < lo:
                raise DataError(f"fold-in: {name} must be >= {lo}, got {getattr(self, name)}")
        if not self.lr > 0 or not self.temperature > 0 or not self.anchor_weight >= 0:
            raise DataError(f"fold-in: lr and temperature must be > 0, anchor_weight >= 0 (got {self})")

    @classmethod
    def from_run_config(cls, config: dict | None, **overrides) -> FoldInParams:
        """The run's K negatives, anchor weight and temperature (a run's config.yaml as a dict), plus overrides."""
        base: dict = {}
        if config:
            data, loss = config.get("data") or {}, config.get("loss") or {}
            if data.get("negatives"):
                base["negatives"] = int(data["negatives"])
            if loss.get("anchor_weight") is not None:
                base["anchor_weight"] = float(loss["anchor_weight"])
            if loss.get("temperature"):
                base["temperature"] = float(loss["temperature"])
        base["bank"] = max(cls.bank, 4 * base.get("negatives", cls.negatives))
        return cls(**(base | {k: v for k, v in overrides.items() if v is not None}))


@dataclass
class FoldedUser:
    """A fitted new user: name, liked outfits (int64 [n, S], PAD-padded), per-user parameters, final loss.

    params: {"anchors": float32 [K, w]} (anchor scorer) or {"embedding": float32 [d]} (dot scorer).
    """

    name: str
    outfits: np.ndarray
    params: dict[str, np.ndarray]
    loss: float = float("nan")
    fit: dict = field(default_factory=dict)

    def item_sets(self) -> set[frozenset[int]]:
        return {frozenset(int(i) for i in row if i != PAD) for row in self.outfits}

    def items(self) -> np.ndarray:
        """The distinct items of the liked outfits (the user's history for the history term), sorted."""
        return np.unique(self.outfits[self.outfits != PAD])


# ---------------------------------------------------------------------------------------------- reading


item_lookup = item_name_lookup  # the readers of item tokens live in data/outfits.py (one place)


def liked_rows(
    catalogue: Catalogue,
    outfits: Sequence[Sequence[int | str]],
    max_size: int,
    lookup: dict[str, int] | None = None,
    where: str = "outfits",
    removed: np.ndarray | None = None,
) -> np.ndarray:
    """Liked outfits (lists of item indices or names) -> int64 rows [n, max_size], PAD-padded; checked.

    Each outfit has 1..max_size items, none twice, each in the catalogue (and, with `removed` a boolean
    mask over the catalogue, not removed); 1..MAX_LIKED outfits. DataError naming the outfit otherwise.
    """
    lookup = item_lookup(catalogue) if lookup is None else lookup
    if isinstance(outfits, (str, bytes)) or not len(outfits):
        raise DataError(f"{where}: give at least one liked outfit (a list of item ids or names)")
    if len(outfits) > MAX_LIKED:
        raise DataError(f"{where}: {len(outfits)} outfits, at most {MAX_LIKED}")
    rows = np.full((len(outfits), max_size), PAD, dtype=np.int64)
    for r, outfit in enumerate(outfits):
        at = f"{where}[{r}]"
        if isinstance(outfit, (str, bytes)) or not 1 <= len(outfit) <= max_size:
            n = "a string" if isinstance(outfit, (str, bytes)) else f"{len(outfit)} items"
            raise DataError(f"{at}: {n}, expected a list of 1..{max_size} items")
        items = [read_item(t, catalogue.n_items, lookup, at) for t in outfit]
        if len(set(items)) != len(items):
            raise DataError(f"{at}: an item appears twice in {list(outfit)}")
        if removed is not None:
            gone = [i for i in items if i < len(removed) and removed[i]]
            if gone:
                raise DataError(f"{at}: item {gone[0]} was removed from the catalogue")
        rows[r, : len(items)] = items
    return rows


def read_outfits_csv(path: str | Path, catalogue: Catalogue, max_size: int) -> list[tuple[str, np.ndarray]]:
    """A CSV of liked outfits (header `user,item_ids`; item_ids: item names or indices separated by `;`).

    Returns [(user name, rows [n, max_size])] in order of each user's first line. DataError naming the
    file and line for a bad header, an empty user, an unknown item, an outfit too large or repeating an item.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    if not lines or [c.strip() for c in lines[0].split(",")] != ["user", "item_ids"]:
        got = lines[0] if lines else "an empty file"
        raise DataError(f"{path}:1: header must be 'user,item_ids', got {got!r}")
    lookup = item_lookup(catalogue)
    users: dict[str, list[list[int | str]]] = {}
    where_of: dict[str, int] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) != 2:
            raise DataError(f"{path}:{number}: {len(fields)} fields, expected 2 (user,item_ids)")
        user, items = fields[0].strip(), [t.strip() for t in fields[1].split(";") if t.strip()]
        if not user:
            raise DataError(f"{path}:{number}: empty user")
        try:
            liked_rows(catalogue, [items], max_size, lookup, where="item_ids")
        except DataError as exc:
            raise DataError(f"{path}:{number}: {exc}") from None
        users.setdefault(user, []).append(items)
        where_of.setdefault(user, number)
    if not users:
        raise DataError(f"{path}: no outfit (one line per liked outfit: user,item_ids)")
    out = []
    for user, outfits in users.items():
        try:
            out.append((user, liked_rows(catalogue, outfits, max_size, lookup, where=f"user {user!r}")))
        except DataError as exc:
            raise DataError(f"{path}:{where_of[user]}: {exc}") from None
    return out


def check_new_name(name: str | None, index: int, user_names: np.ndarray) -> str:
    """The new user's name: `name`, or the index as text; DataError for a taken, empty or numeric-other name."""
    text = str(index) if name is None else str(name).strip()
    if not text or len(text) > MAX_NAME or any(c in text for c in ",;\n\r"):
        raise DataError(f"user name {name!r}: expected 1..{MAX_NAME} characters, no comma, semicolon or newline")
    if text in set(user_names.tolist()):
        raise DataError(f"user name {text!r} is taken")
    if text.isdigit() and int(text) != index:
        raise DataError(f"user name {text!r} reads as another user's index; the new user's index is {index}")
    return text


# ---------------------------------------------------------------------------------------------- fitting


class FoldIn:
    """Fits new users of one loaded model (frozen) from their liked outfits.

    scorer: the model's `recommend.fast.CollapsedScorer`; features: padded item rows [B, S] -> phi [B, m]
    (e.g. `FeatureCache.features(rows)[0]`); item_category: int64 [n_items] of the (possibly grown)
    catalogue; pools: category -> items the random mixes draw from (the training items, as in training);
    forbidden: outfits a random mix must not equal (the training positives).
    """

    def __init__(
        self,
        scorer,
        features: Callable[[np.ndarray], np.ndarray],
        item_category: np.ndarray,
        pools: dict[int, np.ndarray],
        forbidden: set[frozenset[int]],
        fallback_pools: dict[int, np.ndarray] | None = None,
    ) -> None:
        import torch

        self.torch = torch
        self.scorer = scorer
        self.features = features
        self.item_category = np.asarray(item_category, dtype=np.int64)
        self.pools = pools
        self.fallback_pools = fallback_pools
        self.forbidden = forbidden
        self.kind = scorer.kind  # "anchors" | "dot"
        model = scorer.model
        if self.kind == "anchors":
            self.shape = tuple(model.scorer.anchors.shape[1:])  # (K, w)
        else:
            self.shape = (int(model.scorer.users.weight.shape[1]),)
        self.head = int(scorer.user_matrix.shape[1]) - int(scorer.history_dim)  # phi's user-parameter part

    def history_vector(self, items: np.ndarray, seed: int = 0) -> np.ndarray:
        """gain * h for a history of items (model.history_scorer; zero-width without it). Items beyond the
        model's own catalogue (added after training) count as unseen: a zero id vector, as in training."""
        torch, model = self.torch, self.scorer.model
        hs = getattr(model, "history_scorer", None)
        if hs is None:
            return np.zeros(0, np.float32)
        items = np.unique(np.asarray(items, dtype=np.int64))
        size = int(hs.history.shape[1])
        if len(items) > size:  # as HistoryScorer.set_history: a seeded subset
            items = np.sort(np.random.default_rng(seed).choice(items, size, replace=False))
        known = items[items < model.n_items]
        with torch.inference_mode():
            if len(known):
                vec = hs.project(model.item_encoder.id_vectors(torch.from_numpy(known)))
                h = vec.sum(0) / max(len(items), 1)
            else:
                h = torch.zeros(hs.dim)
            return (hs.gain * h).float().numpy()

    def vector(self, user: FoldedUser) -> np.ndarray:
        """The user's row of the collapsed user matrix: [sum of unit anchors | embedding, gain * h]."""
        if self.kind == "anchors":
            a = user.params["anchors"].astype(np.float64)
            head = (a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)).sum(0)
        else:
            head = user.params["embedding"].astype(np.float64)
        seed = int(user.fit.get("seed", 0))
        return np.concatenate([head, self.history_vector(user.items(), seed)]).astype(np.float32)

    def fit(self, name: str, rows: np.ndarray, params: FoldInParams = FoldInParams()) -> FoldedUser:
        """Fit one new user on their liked outfits (rows [n, S], PAD-padded, checked by `liked_rows`).

        Draws `params.bank` random mixes per liked outfit (`data.negatives.random_mix`, the training
        positives and the liked outfits forbidden), encodes them once, then runs `params.steps` Adam steps
        (torch.optim.Adam's defaults) of `FoldInLoss`, each on K mixes per outfit sampled from the bank.
        DataError when a liked outfit has no random mix at all.
        """
        rows = np.asarray(rows, dtype=np.int64)
        n = len(rows)
        mask = rows != PAD
        cats = np.where(mask, self.item_category[np.where(mask, rows, 0)], PAD)
        liked = Outfits(np.zeros(n, np.int64), np.where(mask, rows, PAD), cats, mask, np.arange(n, dtype=np.int64))
        rng = np.random.default_rng(params.seed)
        forbidden = self.forbidden | set(liked.item_sets())
        try:
            with warnings.catch_warnings():  # a one-item outfit of a small category has few distinct mixes
                warnings.simplefilter("ignore")
                bank = random_mix(liked, self.pools, params.bank, rng, forbidden, self.fallback_pools, "fold-in")
        except NoRandomMix as exc:
            raise DataError(f"liked outfit {int(exc.rows[0])}: no random mix of its items exists") from None
        bank_rows = np.where(bank.mask, bank.items, PAD)
        feats = np.asarray(self.features(np.concatenate([np.where(mask, rows, PAD), bank_rows])), np.float64)
        hist = self.history_vector(liked.items[liked.mask], params.seed).astype(np.float64)
        const = feats[:, self.head :] @ hist if len(hist) else np.zeros(len(feats))
        head = feats[:, : self.head]
        problem = FoldInLoss(
            head[:n],
            const[:n],
            head[n:].reshape(n, params.bank, -1),
            const[n:].reshape(n, params.bank),
            self.kind,
            params.temperature,
            params.anchor_weight,
        )
        x = rng.normal(size=self.shape) / self.shape[-1] ** 0.5
        k = min(params.negatives, params.bank)
        m, v = np.zeros_like(x), np.zeros_like(x)
        b1, b2, eps = 0.9, 0.999, 1e-8  # torch.optim.Adam's defaults
        loss = float("nan")
        for t in range(1, params.steps + 1):
            pick = rng.random((n, params.bank)).argsort(axis=1)[:, :k]  # K distinct random mixes of the bank
            loss, grad = problem(x, pick)
            m = b1 * m + (1 - b1) * grad
            v = b2 * v + (1 - b2) * grad * grad
            x = x - params.lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        key = "anchors" if self.kind == "anchors" else "embedding"
        return FoldedUser(name, rows, {key: x.astype(np.float32)}, float(loss), asdict(params))


@dataclass
class FoldInLoss:
    """The model's training loss of one user as a function of its parameters alone (the rest frozen), with its
    gradient: `losses.softmax_loss` over [liked outfit, K random mixes] + anchor_weight * the anchors' log-det
    regulariser (`models.scorer.gram_logdet_penalty`). Plain numpy (float64): a step costs tens of
    microseconds where torch's autograd costs a millisecond (tests/test_new_users.py checks both agree).

    pos [n, m] / pos_c [n]: the liked outfits' features phi and the constant history term; bank [n, B, m] /
    bank_c [n, B]: the same of each outfit's random mixes. x: anchors [K, m] (kind 'anchors') or the
    embedding [m] ('dot'); pick [n, K]: the random mixes of this step.
    """

    pos: np.ndarray
    pos_c: np.ndarray
    bank: np.ndarray
    bank_c: np.ndarray
    kind: str
    temperature: float = 1.0
    anchor_weight: float = 0.0

    def __call__(self, x: np.ndarray, pick: np.ndarray) -> tuple[float, np.ndarray]:
        """(loss, d loss / d x)."""
        from outfitrec.models.scorer import GRAM_EPS

        n = len(self.pos)
        if self.kind == "anchors":
            norms = np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
            unit = x / norms
            u = unit.sum(0)
        else:
            u = x
        at = np.arange(n)[:, None]
        neg_f = self.bank[at, pick]  # [n, K, m]
        s = np.concatenate([(self.pos @ u + self.pos_c)[:, None], neg_f @ u + self.bank_c[at, pick]], 1)
        s = s / self.temperature
        top = s.max(axis=1, keepdims=True)
        e = np.exp(s - top)
        total = e.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(total[:, 0]) + top[:, 0] - s[:, 0]))
        g = e / total
        g[:, 0] -= 1.0
        g /= n * self.temperature  # d loss / d raw scores [n, 1 + K]
        du = self.pos.T @ g[:, 0] + np.einsum("nkm,nk->m", neg_f, g[:, 1:])
        if self.kind != "anchors":
            return loss, du
        grad = (du[None, :] - unit * (unit @ du)[:, None]) / norms  # through a_k / |a_k|
        if self.anchor_weight > 0:
            gram = x @ x.T + GRAM_EPS * np.eye(len(x))
            _, logdet = np.linalg.slogdet(gram)
            loss += self.anchor_weight * float((x * x).sum() - logdet)
            grad = grad + self.anchor_weight * (2.0 * x - 2.0 * np.linalg.solve(gram, x))
        return loss, grad


# ---------------------------------------------------------------------------------------------- on disk


@dataclass
class UserOverlay:
    """New users fitted against one checkpoint, as saved by `save` and read by `load` (the one loader).

    users: the fitted users; checkpoint_sha256: the checkpoint they were fitted on (a recommender of
    another checkpoint refuses them); base_users: the number of users of the run they extend.
    """

    users: list[FoldedUser]
    checkpoint_sha256: str
    base_users: int
    meta: dict = field(default_factory=dict)

    def save(self, out: str | Path, inputs: Sequence[str | Path] = (), overwrite: bool = False) -> Path:
        """Write the folder `out` atomically (`data.io.atomic_folder`); never over one of `inputs`."""
        from safetensors.numpy import save_file

        out = check_output_folder(out, inputs, overwrite)
        if not self.users:
            raise DataError("users: nothing to save")
        key = next(iter(self.users[0].params))
        width = max(u.outfits.shape[1] for u in self.users)
        outfits = np.concatenate(
            [np.pad(u.outfits, ((0, 0), (0, width - u.outfits.shape[1])), constant_values=PAD) for u in self.users]
        )
        owner = np.concatenate([np.full(len(u.outfits), i, np.int64) for i, u in enumerate(self.users)])
        tensors = {
            key: np.stack([u.params[key] for u in self.users]).astype(np.float32),
            "outfits": outfits.astype(np.int64),
            "outfit_user": owner,
        }
        info = {
            "format": OVERLAY_FORMAT,
            "checkpoint_sha256": self.checkpoint_sha256,
            "base_users": self.base_users,
            "names": [u.name for u in self.users],
            "losses": [u.loss for u in self.users],
            "fit": [u.fit for u in self.users],
            "meta": self.meta,
        }
        with atomic_folder(out) as tmp:
            save_file(tensors, str(tmp / USERS_FILE))
            (tmp / USERS_JSON).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
            write_manifest(tmp, "users", users=len(self.users), checkpoint_sha256=self.checkpoint_sha256)
        return out

    @classmethod
    def load(cls, folder: str | Path) -> UserOverlay:
        """Read a folder written by `save`; DataError naming the file and what is wrong."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        folder = Path(folder)
        js, st = folder / USERS_JSON, folder / USERS_FILE
        for path in (js, st):
            if not path.is_file():
                raise DataError(f"{path}: missing (a folder written by `outfitrec users add`)")
        try:
            info = json.loads(js.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{js}: not readable JSON ({exc})") from None
        if not isinstance(info, dict) or info.get("format") != OVERLAY_FORMAT:
            raise DataError(f"{js}: format is not {OVERLAY_FORMAT!r}")
        try:
            tensors = load_file(str(st))
        except (SafetensorError, OSError) as exc:
            raise DataError(f"{st}: not a readable safetensors file ({exc})") from None
        names = info.get("names")
        fits = info.get("fit") or [{}] * len(names or [])
        losses = info.get("losses") or [float("nan")] * len(names or [])
        key = "anchors" if "anchors" in tensors else "embedding"
        needed = {key, "outfits", "outfit_user"}
        if not isinstance(names, list) or not names or not needed <= set(tensors):
            raise DataError(f"{folder}: expected names in {USERS_JSON} and tensors {sorted(needed)} in {USERS_FILE}")
        params, outfits, owner = tensors[key], tensors["outfits"].astype(np.int64), tensors["outfit_user"]
        if len(params) != len(names) or len(owner) != len(outfits) or not len(fits) == len(losses) == len(names):
            raise DataError(f"{folder}: {len(names)} names, {len(params)} parameter rows: they must agree")
        if len(owner) and (owner.min() < 0 or owner.max() >= len(names)):
            raise DataError(f"{st}: outfit_user outside 0..{len(names) - 1}")
        users = []
        for i, name in enumerate(names):
            rows = outfits[owner == i]
            if not len(rows):
                raise DataError(f"{st}: user {name!r} has no liked outfit")
            users.append(FoldedUser(str(name), rows, {key: params[i]}, float(losses[i]), dict(fits[i])))
        return cls(users, str(info.get("checkpoint_sha256", "")), int(info.get("base_users", 0)), info.get("meta", {}))
