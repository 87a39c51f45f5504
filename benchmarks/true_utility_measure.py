"""Issue 15 item 1 / issue 14 item 3 measurements: true share + oracle recall@10, served vs cheap search."""

import json
import sys
import time

import numpy as np
import torch

from outfitrec.data.oracle import load_truth
from outfitrec.data.outfits import OutfitDataset
from outfitrec.recommend import true_utility as tu
from outfitrec.recommend.engine import Recommender

torch.set_num_threads(1)
DATA = "datasets/fmnist-default"
ds = OutfitDataset.load(f"{DATA}/dataset.npz")
truth = load_truth(DATA)
users = tu.sample_users(ds.n_users, 20, 0)
t = time.perf_counter()
ref = tu.cached_oracle_tops(DATA, ds, truth, users, 10, tu.REFERENCE)
print(f"reference: {time.perf_counter() - t:.1f} s (computed {ref.seconds:.1f} s)", flush=True)
means = ref.means
out = {
    "users": users.tolist(),
    "reference_seconds": ref.seconds,
    "typical_share": float(np.nanmean(ref.typical)),
    "m_u": [float(x) for x in means],
    "best_mean_u": [float(u.mean()) for u in ref.utilities],
    "rows": {},
}
names = sys.argv[1:]
for name in names:
    t = time.perf_counter()
    if name == "oracle":
        rec = tu.oracle_recommender(ds, truth)
    else:
        rec = Recommender.from_run(name)
    load = time.perf_counter() - t
    row = {"load_s": load}
    from outfitrec.models.search import SearchParams

    for label, params in (
        ("old32", SearchParams(beam_width=32, shortlist=40)),
        ("served", tu.SERVED),
        ("cheap", tu.CHEAP),
    ):
        r = tu.true_utility_report(rec, truth, ref, params)
        row[label] = {k: r[k] for k in ("true_share", "oracle_recall@10", "true_share_raw", "seconds_per_user")}
        row[label]["per_user_share"] = [p["share"] for p in r["per_user"]]
        print(name, label, {k: round(v, 4) for k, v in row[label].items() if k != "per_user_share"}, flush=True)
    d = np.array(row["cheap"]["per_user_share"]) - np.array(row["served"]["per_user_share"])
    row["cheap_minus_served"] = {"mean": float(d.mean()), "std": float(d.std(ddof=1))}
    print(name, f"cheap - served share: {d.mean():+.4f} +- {d.std(ddof=1):.4f}", flush=True)
    d2 = np.array(row["cheap"]["per_user_share"]) - np.array(row["old32"]["per_user_share"])
    row["cheap_minus_old32"] = {"mean": float(d2.mean()), "std": float(d2.std(ddof=1))}
    print(name, f"cheap - old32 share: {d2.mean():+.4f} +- {d2.std(ddof=1):.4f}", flush=True)
    out["rows"][name] = row
json.dump(out, open(f"true_utility_{'_'.join(n.replace('/', '-') for n in names)}.json", "w"), indent=1)
