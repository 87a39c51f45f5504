"""What users get, judged by the truth: the true utility of a recommender's top-10 from the whole catalogue.

On a Fashion-MNIST dataset (``truth.npz``, ``data/oracle.py``) the true
utility U(u, o) of every outfit is known, so the outfits a recommender
returns can be scored by the oracle instead of by the model itself. For a
fixed, seeded sample of users (default 20) this module

1. asks the recommender for its top-k outfits (k = 10) from the whole
   catalogue, with the search `outfitrec recommend` uses (`Recommender.recommend`:
   beam search + refinement, the user's training outfits excluded);
2. finds the **oracle's top-k**: the same search (`models/search.py`,
   `Searcher` through a `Recommender`) run on the true utility instead of a
   model (`OracleScorer`: partial outfits scored by the oracle's utility of
   partial outfits), excluding the same training outfits. The true utility is
   cheap, so the reference search is wider than the served one (`REFERENCE`:
   beam 64, shortlist 100, and a refinement whose slot swaps try every item of
   the category, 20 seeds, up to 30 rounds). Why: the beam's one-item
   shortlist misses items that only shine in company (pair terms, template
   bias), and the served searches (beam 16 / shortlist 20 or the older 32 / 40,
   swaps among 64 items) or even beam 256 / shortlist 400 leave up to 0.5 sigma of mean utility on
   the table for some users of the default preset, while the whole-category
   refinement reached the same top-10 from beams 32/40, 64/100 and 128/200 on
   every user tried. `exact_check` measures it against exact enumeration on a
   restricted catalogue;
3. reports, averaged over the users:

   - ``true_share``: the share of the best possible true utility reached,

         share_u = sum_{o in R_u} (U(u, o) - m_u) / sum_{o in O_u} (U(u, o) - m_u)

     with R_u the recommended outfits (k of them; fewer count as m_u), O_u the
     oracle's top-k and m_u the user's **mean utility of a random outfit** of
     the catalogue (the generator's template proposal, each slot uniform over
     its category's items; `random_outfit_means`, 4,096 seeded draws per
     user). U has no natural zero (template biases and class weights shift a
     user's utilities by a user-specific constant, which a ratio of raw
     utilities would count as quality): shifted by m_u, 0 means "no better
     than a random outfit" and 1 "as good as the oracle's top-k". It can
     exceed 1 only where the reference search missed better outfits, and is
     negative for recommendations worse than random. On the default preset
     (seed 0) m_u lies within +-0.3 (U has std 1 over random outfits) against
     4.8-7.0 for the oracle's top-10, so the shifted and raw shares differ by
     under 0.01 there;
   - ``oracle_recall@10``: |R_u ∩ O_u| / |O_u| (outfits as item sets);
   - ``true_share_raw``: the same ratio without the shift (mean U(R) / mean U(O)),
     comparable with issue 15's first table, and ``typical_share``: where the
     user's typical training positive sits on the shifted scale (context: a
     recommender at that level recommends outfits like the ones users chose).

Timing (default preset, 20 users, one thread, 2-core machine shared with
other jobs, load 7-8): the model's search 0.1-0.4 s per user with the served
search (beam 16 / shortlist 20; 0.3-1.1 s with 32 / 40), 0.01-0.03 s with the
cheap one; `outfitrec evaluate` took about 30 s with the true utility instead
of 18 s without (with the older 32 / 40 defaults); the reference oracle
search about 48 s for the 20 users, once per dataset: the oracle's top-k and
m_u are cached per dataset fingerprint in ``{data}/true_utility_cache.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from outfitrec.data.oracle import TRUTH_FILE, load_truth, true_utility, truth_path
from outfitrec.data.outfits import PAD, DataError, OutfitDataset, write_text_atomic
from outfitrec.models.search import SearchIndex, SearchParams

DEFAULT_USERS = 20
DEFAULT_K = 10
MEAN_SAMPLES = 4096
CACHE_FILE = "true_utility_cache.json"
CACHE_VERSION = 1


def label(params: SearchParams) -> str:
    """Search parameters in words (for tables)."""
    pool = "whole category" if params.refine_pool >= 100_000 else str(params.refine_pool)
    refine = f"refinement (swap pool {pool})" if params.refine_rounds > 0 else "no refinement"
    return f"beam {params.beam_width}, shortlist {params.shortlist}, {refine}"


SERVED = SearchParams()  # what `outfitrec recommend` uses (its live search)
CHEAP = SearchParams(beam_width=8, shortlist=10, refine_rounds=0)  # issue 14's cheaper search
# the oracle's top-k (the best possible): refinement swaps try every item of a category (refine_pool beyond any size)
REFERENCE = SearchParams(beam_width=64, shortlist=100, refine_pool=100_000, refine_top=20, refine_rounds=30)


def has_truth(data_dir: str | Path) -> bool:
    """Whether a prepared dataset folder has a ground truth (a Fashion-MNIST dataset)."""
    return (Path(data_dir) / TRUTH_FILE).is_file()


class OracleScorer:
    """An `OutfitScorer` whose score is the true utility: item embeddings are the item ids themselves.

    encode_items(ids) -> ids as float [n, 1]; encode_outfits -> the rows of ids
    (PAD where masked) [B, S]; score_embeddings -> the oracle's utility of those
    rows (partial outfits included, as the beam search scores them).
    """

    def __init__(self, truth) -> None:
        self.truth = truth

    def encode_items(self, item_ids: np.ndarray) -> np.ndarray:
        return np.asarray(item_ids, dtype=np.float32).reshape(-1, 1)

    def encode_outfits(self, item_emb: np.ndarray, mask: np.ndarray) -> np.ndarray:
        ids = np.asarray(item_emb, dtype=np.float32)[..., 0]
        return np.where(np.asarray(mask, bool), ids, PAD).astype(np.float32)

    def score_embeddings(self, users: np.ndarray, z: np.ndarray) -> np.ndarray:
        items = np.rint(np.asarray(z, dtype=np.float64)).astype(np.int64)
        mask = items != PAD
        return true_utility(self.truth, users, np.where(mask, items, 0), mask).astype(np.float32)


def oracle_index(truth, item_category: np.ndarray, pools: dict[int, np.ndarray] | None = None) -> SearchIndex:
    """The search index of the oracle (ids as 1-d embeddings); `pools` restricts the catalogue (category -> ids)."""
    n = len(item_category)
    if len(truth.item_class) != n:
        raise DataError(f"true utility: the truth has {len(truth.item_class)} items, the catalogue {n}")
    scorer = OracleScorer(truth)
    emb = scorer.encode_items(np.arange(n))
    index = SearchIndex.build(scorer, emb, item_category)
    if pools is not None:
        index.pools = {int(c): np.asarray(p, dtype=np.int64) for c, p in pools.items()}
    return index


def oracle_recommender(dataset: OutfitDataset, truth):
    """A `Recommender` whose model is the oracle: the same templates, exclusions and search as a trained model's."""
    from outfitrec.recommend.engine import Recommender

    if truth.n_users != dataset.n_users:
        raise DataError(f"true utility: the truth has {truth.n_users} users, the dataset {dataset.n_users}")
    index = oracle_index(truth, dataset.catalogue.item_category)
    return Recommender(dataset, OracleScorer(truth), index, {"model": "oracle (true utility)"})


def sample_users(n_users: int, n: int = DEFAULT_USERS, seed: int = 0) -> np.ndarray:
    """A fixed sample of n users (all when n >= n_users), sorted; the same for every model of a dataset."""
    if n < 1:
        raise DataError(f"true utility: the user sample must hold at least 1 user, got {n}")
    if n >= n_users:
        return np.arange(n_users, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n_users, n, replace=False)).astype(np.int64)


def random_outfit_means(truth, users: np.ndarray, samples: int = MEAN_SAMPLES, seed: int = 0) -> np.ndarray:
    """m_u: each user's mean true utility over random outfits of the whole catalogue (seeded).

    Random outfit: a template drawn from the generator's proposal
    (truth header config.template_proposal; uniform when absent), each slot
    uniform over its category's catalogue items.
    """
    from outfitrec.data.fmnist import SLOTS, TEMPLATES, random_outfits

    users = np.asarray(users, dtype=np.int64)
    proposal = truth.header.get("config", {}).get("template_proposal") or [1.0] * len(TEMPLATES)
    proposal = np.asarray(proposal, dtype=np.float64)
    proposal = proposal / proposal.sum()
    pools = [np.flatnonzero(truth.item_slot == s) for s in range(len(SLOTS))]
    rng = np.random.default_rng(seed)
    out = np.empty(len(users))
    for j, u in enumerate(users):
        items, mask = random_outfits(samples, pools, proposal, rng)
        out[j] = true_utility(truth, np.full(samples, u), np.where(mask, items, 0), mask).mean()
    return out


def top_k(rec, user: int, k: int = DEFAULT_K, params: SearchParams = SERVED) -> list[tuple[int, ...]]:
    """A recommender's top-k outfits (item tuples) for a user: `Recommender.recommend`'s live search.

    The user's training outfits are excluded, as `outfitrec recommend` does (the
    pool of strong outfits, `use_pool`, is not used: the search itself is judged).
    """
    recs = rec.recommend(int(user), k, params=params, use_pool=False)
    return [tuple(int(i) for i in r.items) for r in recs]


def outfit_utilities(truth, user: int, outfits: Sequence[Sequence[int]]) -> np.ndarray:
    """True utility of each outfit (item lists) for one user."""
    if not outfits:
        return np.zeros(0)
    width = max(len(o) for o in outfits)
    items = np.full((len(outfits), width), PAD, dtype=np.int64)
    for r, o in enumerate(outfits):
        items[r, : len(o)] = o
    mask = items != PAD
    return true_utility(truth, np.full(len(outfits), user), np.where(mask, items, 0), mask)


def share_and_recall(
    recommended: Sequence[Sequence[int]],
    rec_utility: np.ndarray,
    best: Sequence[Sequence[int]],
    best_utility: np.ndarray,
    mean_utility: float,
    k: int,
) -> dict[str, float]:
    """One user's share (shifted by `mean_utility`; missing recommendations count as it), raw share, recall."""
    rec_u = np.asarray(rec_utility, dtype=np.float64)[:k]
    best_u = np.asarray(best_utility, dtype=np.float64)[:k]
    if len(best_u) == 0:
        raise DataError("true utility: the oracle found no outfit to compare with")
    denom = float((best_u - mean_utility).sum())
    share = float((rec_u - mean_utility).sum()) / denom if denom > 0 else float("nan")
    raw = float(rec_u.sum()) / float(best_u.sum()) if best_u.sum() > 0 and len(rec_u) == len(best_u) else float("nan")
    best_sets = {frozenset(o) for o in list(best)[:k]}
    hits = sum(1 for o in list(recommended)[:k] if frozenset(o) in best_sets)
    return {"share": share, "share_raw": raw, "recall": hits / len(best_sets)}


# ---------------------------------------------------------------------------------------------- the oracle's side


@dataclass
class OracleTops:
    """The reference for one dataset and user sample: the oracle's top-k, their utilities, m_u, typical shares."""

    users: np.ndarray
    tops: list[list[tuple[int, ...]]]
    utilities: list[np.ndarray]
    means: np.ndarray
    typical: np.ndarray
    params: SearchParams
    k: int
    seconds: float

    def to_json(self) -> dict:
        return {
            "users": self.users.tolist(),
            "tops": [[list(o) for o in t] for t in self.tops],
            "utilities": [u.tolist() for u in self.utilities],
            "means": self.means.tolist(),
            "typical": [None if np.isnan(x) else float(x) for x in self.typical],
            "params": asdict(self.params),
            "k": self.k,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, d: dict) -> OracleTops:
        return cls(
            np.asarray(d["users"], dtype=np.int64),
            [[tuple(o) for o in t] for t in d["tops"]],
            [np.asarray(u, dtype=np.float64) for u in d["utilities"]],
            np.asarray(d["means"], dtype=np.float64),
            np.asarray([np.nan if x is None else x for x in d["typical"]], dtype=np.float64),
            SearchParams(**d["params"]),
            int(d["k"]),
            float(d["seconds"]),
        )


def oracle_tops(
    dataset: OutfitDataset,
    truth,
    users: np.ndarray,
    k: int = DEFAULT_K,
    params: SearchParams = REFERENCE,
    oracle=None,
) -> OracleTops:
    """The oracle's top-k per user (beam search on the true utility, training outfits excluded), with m_u."""
    started = time.perf_counter()
    oracle = oracle if oracle is not None else oracle_recommender(dataset, truth)
    tops, utils = [], []
    for u in users:
        top = top_k(oracle, int(u), k, params)
        tops.append(top)
        utils.append(outfit_utilities(truth, int(u), top))
    means = random_outfit_means(truth, users)
    typical = np.asarray(truth.typical, dtype=np.float64)[users]
    best_mean = np.array([u.mean() if len(u) else np.nan for u in utils])
    with np.errstate(invalid="ignore", divide="ignore"):
        typical_share = (typical - means) / (best_mean - means)
    return OracleTops(users, tops, utils, means, typical_share, params, k, time.perf_counter() - started)


def cached_oracle_tops(
    data_dir: str | Path,
    dataset: OutfitDataset,
    truth,
    users: np.ndarray,
    k: int = DEFAULT_K,
    params: SearchParams = REFERENCE,
    cache: bool = True,
) -> OracleTops:
    """`oracle_tops`, cached in {data_dir}/true_utility_cache.json per (dataset fingerprint, users, k, params)."""
    key = json.dumps(
        {
            "v": CACHE_VERSION,
            "fingerprint": dataset.fingerprint,
            "truth": truth.header.get("dataset_fingerprint"),
            "users": [int(u) for u in users],
            "k": k,
            "params": asdict(params),
        },
        sort_keys=True,
    )
    path = Path(data_dir) / CACHE_FILE
    stored: dict = {}
    if cache and path.is_file():
        try:
            stored = json.loads(path.read_text())
            if key in stored:
                return OracleTops.from_json(stored[key])
        except (OSError, ValueError, KeyError, TypeError):
            stored = {}  # a damaged cache is recomputed
    tops = oracle_tops(dataset, truth, users, k, params)
    if cache:
        stored[key] = tops.to_json()
        try:
            write_text_atomic(path, json.dumps(stored))
        except OSError:
            pass  # read-only data folder: no cache
    return tops


# ---------------------------------------------------------------------------------------------- the report


def true_utility_report(
    rec,
    truth,
    reference: OracleTops,
    params: SearchParams = SERVED,
) -> dict:
    """A recommender's true-utility share and oracle recall@k on the reference's users (see the module doc).

    Returns {'true_share', 'oracle_recall@10' (k in the name), 'true_share_raw', 'typical_share',
    'n_users', 'k', 'search', 'seconds', 'seconds_per_user', 'per_user': [...]}.
    """
    k = reference.k
    started = time.perf_counter()
    per_user = []
    for j, u in enumerate(reference.users):
        recs = top_k(rec, int(u), k, params)
        util = outfit_utilities(truth, int(u), recs)
        m = share_and_recall(recs, util, reference.tops[j], reference.utilities[j], float(reference.means[j]), k)
        per_user.append({"user": int(u), **m, "mean_utility": float(util.mean()) if len(util) else float("nan")})
    seconds = time.perf_counter() - started
    return {
        "true_share": _nanmean([p["share"] for p in per_user]),
        f"oracle_recall@{k}": _nanmean([p["recall"] for p in per_user]),
        "true_share_raw": _nanmean([p["share_raw"] for p in per_user]),
        "typical_share": _nanmean(reference.typical),
        "n_users": len(per_user),
        "k": k,
        "search": asdict(params),
        "reference_search": asdict(reference.params),
        "seconds": round(seconds, 3),
        "seconds_per_user": round(seconds / max(len(per_user), 1), 4),
        "per_user": per_user,
    }


def _nanmean(values) -> float:
    arr = np.asarray(list(values), dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if len(arr) else float("nan")


def evaluate_true_utility(
    rec,
    data_dir: str | Path,
    n_users: int = DEFAULT_USERS,
    seed: int = 0,
    k: int = DEFAULT_K,
    params: SearchParams = SERVED,
    reference_params: SearchParams = REFERENCE,
    cache: bool = True,
) -> dict:
    """The true-utility metrics of a loaded recommender on the dataset folder's truth (one call for CLI and tables)."""
    data_dir = Path(data_dir)
    truth = load_truth(truth_path(data_dir))
    dataset = rec.dataset
    if truth.n_users != dataset.n_users or len(truth.item_class) != dataset.catalogue.n_items:
        raise DataError(
            f"{data_dir / TRUTH_FILE}: truth for {truth.n_users} users / {len(truth.item_class)} items, the "
            f"recommender's dataset has {dataset.n_users} / {dataset.catalogue.n_items}"
        )
    users = sample_users(dataset.n_users, n_users, seed)
    started = time.perf_counter()
    reference = cached_oracle_tops(data_dir, dataset, truth, users, k, reference_params, cache)
    out = true_utility_report(rec, truth, reference, params)
    out["reference_seconds"] = round(max(0.0, time.perf_counter() - started - out["seconds"]), 3)  # about 0 when cached
    out["reference_computed_seconds"] = round(reference.seconds, 3)
    out["user_seed"] = seed
    return out


def evaluate_run_true_utility(
    run_or_model: str | Path,
    data: str | Path | None = None,
    n_users: int = DEFAULT_USERS,
    seed: int = 0,
    k: int = DEFAULT_K,
    params: SearchParams = SERVED,
    threads: int = 1,
    cache: bool = True,
) -> dict | None:
    """The true-utility metrics of a run (or a checkpoint with `data`); None when the dataset has no truth.npz.

    threads: torch CPU threads for the search (one, as `outfitrec recommend`; restored afterwards).
    """
    import torch

    from outfitrec.data.prepare import resolve_dataset_path
    from outfitrec.models.checkpoint import checkpoint_dir_of, run_data_path
    from outfitrec.recommend.engine import Recommender

    started = time.perf_counter()
    path = Path(run_or_model)
    if data is not None:
        folder = resolve_dataset_path(data).parent
    elif checkpoint_dir_of(path) != path:
        folder = run_data_path(path).parent
    else:
        raise DataError(f"{path}: a checkpoint folder needs its dataset (data=...)")
    if not has_truth(folder):
        return None
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rec = Recommender.from_run(run_or_model, data, cache=cache)
        load_s = time.perf_counter() - started
        out = evaluate_true_utility(rec, folder, n_users, seed, k, params, cache=cache)
    finally:
        torch.set_num_threads(before)
    out["load_seconds"] = round(load_s, 3)
    return out


# ---------------------------------------------------------------------------------------------- beam vs exact


def restricted_pools(item_category: np.ndarray, per_category: int, seed: int = 0) -> dict[int, np.ndarray]:
    """A seeded random subset of at most `per_category` items per category (a catalogue small enough to enumerate)."""
    rng = np.random.default_rng(seed)
    out = {}
    for c in np.unique(item_category):
        pool = np.flatnonzero(item_category == c)
        out[int(c)] = np.sort(rng.choice(pool, min(per_category, len(pool)), replace=False))
    return out


def exact_check(
    dataset: OutfitDataset,
    truth,
    users: Sequence[int],
    per_category: int = 12,
    k: int = DEFAULT_K,
    params: SearchParams = REFERENCE,
    seed: int = 0,
) -> dict:
    """The oracle's beam search against exact enumeration on a restricted catalogue (`per_category` items each).

    Per user: recall of the exact top-k (as item sets) and the share of the exact top-k's utility the beam's
    top-k reaches (shifted by the same m_u as the report). Training outfits excluded in both.
    Returns {'recall', 'share', 'min_recall', 'min_share', 'per_user', 'outfits_per_user'}.
    """
    from outfitrec.recommend.engine import Recommender

    index = oracle_index(
        truth, dataset.catalogue.item_category, restricted_pools(dataset.catalogue.item_category, per_category, seed)
    )
    rec = Recommender(dataset, OracleScorer(truth), index, {"model": "oracle, restricted catalogue"})
    users = np.asarray(users, dtype=np.int64)
    means = random_outfit_means(truth, users)
    per_user = []
    for j, u in enumerate(users):
        beam = top_k(rec, int(u), k, params)
        exact = [tuple(r.items) for r in rec.recommend(int(u), k, exact=True)]
        m = share_and_recall(
            beam, outfit_utilities(truth, int(u), beam), exact, outfit_utilities(truth, int(u), exact), means[j], k
        )
        per_user.append({"user": int(u), "share": m["share"], "recall": m["recall"]})
    sizes = [len(index.pools[c]) for c in sorted(index.pools)]
    n_outfits = sum(int(np.prod([sizes[c] for c in t])) for t in rec.templates)
    return {
        "recall": _nanmean(p["recall"] for p in per_user),
        "share": _nanmean(p["share"] for p in per_user),
        "min_recall": float(min(p["recall"] for p in per_user)),
        "min_share": float(min(p["share"] for p in per_user)),
        "per_category": per_category,
        "outfits_per_user": n_outfits,
        "search": asdict(params),
        "per_user": per_user,
    }
