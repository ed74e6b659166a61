#!/usr/bin/env bash
# The DNC benchmark of docs/BENCHMARKS.md: mg-train bench on the Table 2 DNC configs and the
# independent PyTorch DNC of the same sizes (scripts/dnc-torch.py), one after the other on the
# same machine, plus the multigrid models of the same table rows.
#
#   PYTHON=/path/to/venv/bin/python scripts/bench-dnc-vs-torch.sh [OUT.jsonl]
#
# BIN=/path/to/mg-train times that binary instead of building one; BASE=/path/to/an/older/mg-train
# also times that binary (before/after in one run, its lines marked "binary":"base"). THREADS
# (default "1 2") lists the `--threads` values ours runs with (PyTorch always has 2 threads;
# an omitted `threads` field in our lines means 1). Needs torch for the PyTorch part only
# (pip install torch numpy). Writes JSON lines.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${1:-target/bench/dnc-vs-torch.jsonl}
REPEATS=${REPEATS:-3}
THREADS=${THREADS:-1 2}
. scripts/bench-setup.sh
bench() {
  "$1" bench "$2" --repeats "$REPEATS" --no-step-path --threads "$3" --json | grep '^{' \
    | sed "s/^{/{$4/" | tee -a "$OUT"
}
for config in configs/recall/dnc-10.toml configs/sort/dnc-20.toml configs/mapping/dnc-spiral-15.toml \
  configs/babi/dnc.toml; do
  for threads in $THREADS; do
    bench "$BIN" "$config" "$threads" ""
    if [ -n "${BASE:-}" ]; then
      bench "$BASE" "$config" "$threads" '"binary":"base",'
    fi
  done
done
# The multigrid models of the same rows.
for threads in $THREADS; do
  bench "$BIN" configs/recall/paper-10.toml "$threads" ""
  bench "$BIN" configs/sort/paper-20.toml "$threads" ""
done
# PyTorch, 2 threads: training window (with the optimizer step, as mg-train) and inference.
for preset in recall-dnc-10 sort-dnc-20; do
  "$PY" scripts/dnc-torch.py --bench --preset "$preset" --threads 2 --iters "$REPEATS" --warmup 1 \
    --phases train_window,inference_window | grep '^{' | tee -a "$OUT"
done
