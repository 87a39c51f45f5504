"""Why are the models weak at the top of the ranking? (issue 15, item 2) Fashion-MNIST datasets with truth.npz.

Two measurements, each on the fixed user sample of the true-utility metric (recommend/true_utility.py):

  python benchmarks/top_of_ranking.py diagnose RUN [RUN ...]
      per run: the true share of its recommended top-10 (the served live search), the model's own score of
      its top-10 against its score of the oracle's top-10 (a model that scores its picks far above the
      oracle's is ranking wrongly at the top, not searching badly), and the Spearman correlation of its
      scores with the true utility over 3,000 random outfits per user (all of them, and their best 10 %).

  python benchmarks/top_of_ranking.py ensemble RUN RUN [...] [--kappa K]
      the runs' scores averaged (each divided by its std over the sampled users' training positives), minus
      kappa x their std across runs (kappa 0: plain average; > 0: a conservative, lower-bound score), searched
      and judged as one model: how much of the weakness at the top is one model's variance.

  python benchmarks/top_of_ranking.py paired BASE NEW [BASE NEW ...] [--users 100]
      the true share of each run's recommended top-10 and, for each (BASE, NEW) pair (e.g. the same seed
      without and with a lever), the per-user difference; pooled over the pairs: mean difference, its SE over
      the users (per-user differences averaged over pairs), and in how many pairs NEW is ahead.

  python benchmarks/top_of_ranking.py ceiling [--probe RUN] [--negatives K] [--mix] [--lam L]
      a learnability ceiling: each user's utility fitted as a conditional logit on the truth's own outfit
      features (per-slot item attributes, class, template, per-slot-pair |differences|: U is exactly linear
      in them), from the training positives only (K negatives each; --mix: type-aware random mixes of the
      seen items, else random outfits of the seen items), users = shared + individual (L2 `lam` on the
      individual part); its top-10 through the same search, judged by the truth. --probe RUN replaces the
      true item attributes by a linear read-out (per slot, fitted on seen items) of RUN's item embeddings:
      what a model with the truth's form would get from that run's item understanding.
"""

from __future__ import annotations

import argparse
import copy
import json

import numpy as np
import torch
from _common import run_main

from outfitrec.data.fmnist import PAIR_FEATURE_COLUMNS, PAIR_INDEX, PAIRS, SLOTS, TEMPLATES, random_outfits, template_of
from outfitrec.data.oracle import load_truth
from outfitrec.data.prepare import load_dataset
from outfitrec.recommend import true_utility as tu


def user_shares(rec, truth, ref) -> np.ndarray:
    """Per-user true shares of a recommender's top-10 (served search), from `true_utility_report`."""
    return np.array([p["share"] for p in tu.true_utility_report(rec, truth, ref)["per_user"]])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def diagnose(args, ds, truth, users, ref) -> list[dict]:
    from outfitrec.recommend.engine import Recommender

    pools = [np.flatnonzero(truth.item_slot == s) for s in range(len(SLOTS))]
    proposal = np.asarray(truth.header["config"]["template_proposal"], dtype=np.float64)
    proposal /= proposal.sum()
    rows = []
    for run in args.runs:
        rec = Recommender.from_run(run)
        report = tu.true_utility_report(rec, truth, ref)["per_user"]
        per = []
        for j, u in enumerate(users):
            mine = tu.top_k(rec, int(u), 10, tu.SERVED)
            share = report[j]["share"]
            items, mask = random_outfits(3000, pools, proposal, np.random.default_rng(j))
            outs = [tuple(int(x) for x in r[m]) for r, m in zip(items, mask)]
            model, true = rec.score(int(u), outs), tu.outfit_utilities(truth, int(u), outs)
            best = np.argsort(-true)[:300]
            per.append(
                [
                    share,
                    rec.score(int(u), mine).mean(),
                    rec.score(int(u), ref.tops[j]).mean(),
                    spearman(model, true),
                    spearman(model[best], true[best]),
                ]
            )
        p = np.asarray(per)
        row = {
            "run": run,
            "true_share": p[:, 0].mean(),
            "true_share_se": p[:, 0].std() / np.sqrt(len(p)),
            "model_score_own_top10": p[:, 1].mean(),
            "model_score_oracle_top10": p[:, 2].mean(),
            "spearman_random": p[:, 3].mean(),
            "spearman_best10pct": p[:, 4].mean(),
        }
        rows.append(row)
        print(
            f"{run}: true share {row['true_share']:.3f} (SE {row['true_share_se']:.3f}) | model score of its top-10 "
            f"{row['model_score_own_top10']:.2f} vs of the oracle's {row['model_score_oracle_top10']:.2f} | "
            f"Spearman with the truth: random outfits {row['spearman_random']:.3f}, their best 10% "
            f"{row['spearman_best10pct']:.3f}",
            flush=True,
        )
    return rows


def paired(args, ds, truth, users, ref) -> dict:
    from outfitrec.recommend.engine import Recommender

    if len(args.runs) < 2 or len(args.runs) % 2:
        raise SystemExit("paired: give BASE NEW run pairs")
    shares = {}
    for run in dict.fromkeys(args.runs):
        shares[run] = user_shares(Recommender.from_run(run), truth, ref)
        print(f"{run}: true share {shares[run].mean():.3f} (SE {shares[run].std() / np.sqrt(len(users)):.3f})")
    pairs = list(zip(args.runs[::2], args.runs[1::2]))
    diffs = np.stack([shares[new] - shares[base] for base, new in pairs])  # [pairs, users]
    per_user = diffs.mean(0)
    row = {
        "pairs": pairs,
        "users": len(users),
        "base_mean": float(np.mean([shares[b].mean() for b, _ in pairs])),
        "new_mean": float(np.mean([shares[n].mean() for _, n in pairs])),
        "diff_mean": float(per_user.mean()),
        "diff_se_users": float(per_user.std() / np.sqrt(len(per_user))),
        "pair_diffs": [round(float(d.mean()), 4) for d in diffs],
        "new_ahead": int((diffs.mean(1) > 0).sum()),
    }
    print(json.dumps(row), flush=True)
    return row


class EnsembleScorer:
    """`OutfitScorer` over several recommenders' scorers: embeddings side by side, scores standardised, mean."""

    def __init__(self, scorers: list, scales: list[float], kappa: float = 0.0) -> None:
        self.scorers, self.scales, self.kappa = scorers, scales, kappa
        self.item_dims: list[int] = []
        self.z_dims: list[int] = []

    def encode_items(self, item_ids: np.ndarray) -> np.ndarray:
        parts = [np.asarray(s.encode_items(item_ids), np.float32) for s in self.scorers]
        self.item_dims = [p.shape[1] for p in parts]
        return np.concatenate(parts, 1)

    def encode_outfits(self, item_emb: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out, at = [], 0
        for s, d in zip(self.scorers, self.item_dims):
            out.append(np.asarray(s.encode_outfits(item_emb[..., at : at + d], mask), np.float32))
            at += d
        self.z_dims = [o.shape[1] for o in out]
        return np.concatenate(out, 1)

    def score_embeddings(self, users: np.ndarray, z: np.ndarray) -> np.ndarray:
        cols, at = [], 0
        for s, d, k in zip(self.scorers, self.z_dims, self.scales):
            cols.append(np.asarray(s.score_embeddings(users, z[:, at : at + d]), np.float64) / k)
            at += d
        c = np.stack(cols, 1)
        return (c.mean(1) - self.kappa * c.std(1)).astype(np.float32)


def ensemble(args, ds, truth, users, ref) -> dict:
    from outfitrec.models.search import SearchIndex
    from outfitrec.recommend.engine import Recommender

    recs = [Recommender.from_run(r, cache=False) for r in args.runs]
    train = ds.split("train")
    scales = []
    for r in recs:
        scores = []
        for u in users:
            rows = np.flatnonzero(train.users == u)[:20]
            scores.append(r.score(int(u), [tuple(int(x) for x in train.items[i][train.mask[i]]) for i in rows]))
        scales.append(float(np.concatenate(scores).std()))
    scorer = EnsembleScorer([r.scorer for r in recs], scales, args.kappa)
    emb = scorer.encode_items(np.arange(ds.catalogue.n_items))
    scorer.encode_outfits(emb[:1, None], np.ones((1, 1), dtype=bool))  # sets the z widths
    rec = Recommender(ds, scorer, SearchIndex.build(scorer, emb, ds.catalogue.item_category), {"model": "ensemble"})
    shares = user_shares(rec, truth, ref)
    row = {
        "runs": args.runs,
        "kappa": args.kappa,
        "true_share": float(np.mean(shares)),
        "true_share_se": float(np.std(shares) / np.sqrt(len(shares))),
    }
    print(json.dumps(row), flush=True)
    return row


def outfit_features(truth, items: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """phi(o) [n, 60]: U(u, o) = user_scale_u * theta_u . phi(o) exactly (data/fmnist.py TruthParams)."""
    n_s, n_a, n_p, n_f = len(SLOTS), truth.attributes.shape[1], len(PAIRS), len(PAIR_FEATURE_COLUMNS)
    items = np.where(mask, items, 0)
    n = len(items)
    slot = np.where(mask, truth.item_slot[items], -1)
    z = truth.attributes[items]
    n_items = np.maximum(mask.sum(1), 1)
    fa, fc = np.zeros((n, n_s, n_a)), np.zeros((n, len(truth.class_w[0])))
    ft, fp, n_pairs = np.zeros((n, len(TEMPLATES))), np.zeros((n, n_p, n_f)), np.zeros(n)
    for c in range(items.shape[1]):
        r = np.flatnonzero(mask[:, c])
        fa[r, slot[r, c]] += z[r, c] / np.sqrt(n_items[r])[:, None]
        fc[r, truth.item_class[items[r, c]]] += 1 / np.sqrt(n_items[r])
    for i in range(items.shape[1]):
        for j in range(i + 1, items.shape[1]):
            p = PAIR_INDEX[np.maximum(slot[:, i], 0), np.maximum(slot[:, j], 0)]
            ok = mask[:, i] & mask[:, j] & (p >= 0)
            r = np.flatnonzero(ok)
            diff = np.abs(z[r, i][:, PAIR_FEATURE_COLUMNS] - z[r, j][:, PAIR_FEATURE_COLUMNS])
            fp[r, p[r]] += diff - truth.pair_center[p[r]]
            n_pairs += ok
    fp /= np.sqrt(np.maximum(n_pairs, 1))[:, None, None]
    t = template_of(slot)
    r = np.flatnonzero(t >= 0)
    ft[r, t[r]] = 1
    return np.concatenate([fa.reshape(n, -1), fc, ft, fp.reshape(n, -1)], 1)


def with_theta(truth, theta: np.ndarray):
    """A copy of the truth whose users are theta [n_users, 60] (unit scale): an oracle of the fitted users."""
    out = copy.copy(truth)
    n_s, n_a = truth.attr_w.shape[1:]
    at = n_s * n_a
    out.attr_w = theta[:, :at].reshape(-1, n_s, n_a)
    n_c = truth.class_w.shape[1]
    out.class_w = theta[:, at : at + n_c]
    out.template_bias = theta[:, at + n_c : at + n_c + len(TEMPLATES)]
    out.pair_w = theta[:, at + n_c + len(TEMPLATES) :].reshape(truth.pair_w.shape)
    out.user_scale = np.ones(len(theta))
    return out


def probe_attributes(truth, run: str) -> np.ndarray:
    """Item attributes read linearly (ridge 1, per slot, fitted on the seen items) from a run's item embeddings."""
    from outfitrec.models.checkpoint import load_run

    emb = load_run(run).model.encode_all_items().numpy()
    out = truth.attributes.copy()
    for s in range(len(SLOTS)):
        idx = np.flatnonzero(truth.item_slot == s)
        seen = idx[~truth.item_unseen[idx]]
        x = np.c_[emb[seen], np.ones(len(seen))]
        w = np.linalg.solve(x.T @ x + np.eye(x.shape[1]), x.T @ truth.attributes[seen])
        out[idx] = np.c_[emb[idx], np.ones(len(idx))] @ w
    return out


def ceiling(args, ds, truth, users, ref) -> dict:
    torch.manual_seed(0)
    features_truth = truth
    if args.probe:
        features_truth = copy.copy(truth)
        features_truth.attributes = probe_attributes(truth, args.probe)
    train = ds.split("train")
    items, mask = train.items, train.mask
    seen_pools = [np.flatnonzero((truth.item_slot == s) & ~truth.item_unseen) for s in range(len(SLOTS))]
    rng = np.random.default_rng(0)
    k = args.negatives
    if args.mix:
        neg_items, neg_mask = np.repeat(items, k, axis=0), np.repeat(mask, k, axis=0)
        slot = np.where(neg_mask, truth.item_slot[np.where(neg_mask, neg_items, 0)], -1)
        for s, pool in enumerate(seen_pools):
            where = slot == s
            neg_items[where] = pool[rng.integers(0, len(pool), int(where.sum()))]
    else:
        proposal = np.asarray(truth.header["config"]["template_proposal"], dtype=np.float64)
        neg_items, neg_mask = random_outfits(len(items) * k, seen_pools, proposal / proposal.sum(), rng)
    x_pos = torch.tensor(outfit_features(features_truth, items, mask), dtype=torch.float32)
    x_neg = torch.tensor(outfit_features(features_truth, neg_items, neg_mask), dtype=torch.float32)
    x_neg = x_neg.reshape(len(items), k, -1)
    users_t = torch.as_tensor(train.users)
    shared = torch.zeros(x_pos.shape[1], requires_grad=True)
    own = torch.zeros(ds.n_users, x_pos.shape[1], requires_grad=True)
    opt = torch.optim.Adam([shared, own], lr=0.05)
    for _ in range(400):
        theta = shared + own[users_t]
        s = torch.cat([(x_pos * theta).sum(1, keepdim=True), (x_neg * theta[:, None]).sum(-1)], 1)
        loss = -torch.log_softmax(s, 1)[:, 0].mean() + args.lam * (own**2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    theta = (shared + own).detach().numpy().astype(np.float64)
    fitted = with_theta(features_truth, theta)
    rec = tu.oracle_recommender(ds, fitted)
    shares = user_shares(rec, truth, ref)
    row = {
        "features": f"probe of {args.probe}" if args.probe else "true",
        "negatives": k,
        "mix": args.mix,
        "lam": args.lam,
        "true_share": float(np.mean(shares)),
        "true_share_se": float(np.std(shares) / np.sqrt(len(shares))),
        "min_user_share": float(np.min(shares)),
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["diagnose", "ensemble", "ceiling", "paired"])
    parser.add_argument("runs", nargs="*")
    parser.add_argument("--data", default="datasets/fmnist-default")
    parser.add_argument("--users", type=int, default=tu.DEFAULT_USERS)
    parser.add_argument("--probe", default=None)
    parser.add_argument("--negatives", type=int, default=10)
    parser.add_argument("--mix", action="store_true")
    parser.add_argument("--lam", type=float, default=1e-2)
    parser.add_argument("--kappa", type=float, default=0.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ds = load_dataset(args.data)[0]
    truth = load_truth(args.data)
    users = tu.sample_users(ds.n_users, args.users, 0)
    ref = tu.cached_oracle_tops(args.data, ds, truth, users)
    if args.what == "diagnose":
        diagnose(args, ds, truth, users, ref)
    elif args.what == "paired":
        paired(args, ds, truth, users, ref)
    elif args.what == "ensemble":
        ensemble(args, ds, truth, users, ref)
    else:
        ceiling(args, ds, truth, users, ref)


if __name__ == "__main__":
    run_main(main)
