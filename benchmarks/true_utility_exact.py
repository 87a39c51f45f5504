"""The oracle's beam search against exact enumeration on restricted catalogues of the default preset."""

import json
import time

from outfitrec.data.oracle import load_truth
from outfitrec.data.outfits import OutfitDataset
from outfitrec.recommend import true_utility as tu

DATA = "datasets/fmnist-default"
ds = OutfitDataset.load(f"{DATA}/dataset.npz")
truth = load_truth(DATA)
users = tu.sample_users(ds.n_users, 20, 0)
res = {}
for per in (20, 30):
    for label, p in (("reference", tu.REFERENCE), ("served", tu.SERVED), ("cheap", tu.CHEAP)):
        t = time.perf_counter()
        r = tu.exact_check(ds, truth, users, per_category=per, params=p)
        r["seconds"] = time.perf_counter() - t
        print(
            per,
            label,
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k not in ("per_user", "search")},
            flush=True,
        )
        res[f"{per}-{label}"] = r
json.dump(res, open("true_utility_exact.json", "w"), indent=1)
