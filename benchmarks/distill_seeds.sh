#!/usr/bin/env bash
# Distillation on the Fashion-MNIST default preset, over seeds, against the demo's teacher.
# Run `make demo` first (it builds datasets/fmnist-default and runs/demo/teacher).
# Usage: bash benchmarks/distill_seeds.sh [SEEDS...]   (default 0 1 2); prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/distill_seeds}
TEACHER=${TEACHER:-runs/demo/teacher}
SEEDS=${*:-0 1 2}
train() {  # name seed extra-args...
  local name=$1 seed=$2; shift 2
  [ -f "$OUT/$name-s$seed/metrics.json" ] && return 0
  # one thread each: two runs share the 2 cores
  .venv/bin/outfitrec train -c fmnist_student --run-dir "$OUT/$name-s$seed" \
    --set data.seed="$seed" --set runtime.threads=1 "$@" > "$OUT/$name-s$seed.log" 2>&1
}
mkdir -p "$OUT"
for seed in $SEEDS; do
  train student "$seed" &
  train fnd+kd "$seed" --set loss.kind=fnd+kd --set loss.teacher="$TEACHER" --set loss.alpha=-0.5 &
  wait
  train kd "$seed" --set loss.kind=kd --set loss.teacher="$TEACHER" &
  train fnd "$seed" --set loss.kind=fnd --set loss.teacher="$TEACHER" --set loss.alpha=-0.5 &
  wait
  train cl "$seed" --set contrastive.enabled=true &
  train fnd+cl "$seed" --set loss.kind=fnd --set loss.teacher="$TEACHER" --set loss.alpha=-0.5 \
    --set contrastive.enabled=true &
  wait
done
.venv/bin/python - "$OUT" "$TEACHER" $SEEDS <<'PY'
import json, sys
import numpy as np
out, teacher, seeds = sys.argv[1], sys.argv[2], sys.argv[3:]
def auc(run):
    return json.load(open(f"{run}/metrics.json"))["test"]["auc"]
t = auc(teacher)
base = np.array([auc(f"{out}/student-s{s}") for s in seeds])
print(f"| model | test AUC (mean ± std, {len(seeds)} seeds) | paired Δ vs student | gap to teacher |")
print("| --- | ---: | ---: | ---: |")
print(f"| teacher (one run) | {t:.4f} | | |")
for name in ("student", "kd", "fnd", "fnd+kd", "cl", "fnd+cl"):
    a = np.array([auc(f"{out}/{name}-s{s}") for s in seeds])
    d = a - base
    delta = "" if name == "student" else f"{d.mean():+.4f} ± {d.std(ddof=1):.4f}"
    print(f"| {name} | {a.mean():.4f} ± {a.std(ddof=1):.4f} | {delta} | {a.mean() - t:+.4f} |")
PY
