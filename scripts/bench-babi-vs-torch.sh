#!/usr/bin/env bash
# The bAbI benchmark of docs/BENCHMARKS.md: one training window of the 1D multigrid model
# (configs/babi/paper.toml read per story) in mg-train and in the independent PyTorch model of
# the same sizes (scripts/babi-torch.py), alternately on the same machine, on 1 and 2 threads.
#
#   PYTHON=/path/to/venv/bin/python scripts/bench-babi-vs-torch.sh [OUT.jsonl]
#
# BIN=/path/to/mg-train times that binary instead of building one; BASE=/path/to/an/older/mg-train
# also times that binary (its lines marked "binary":"base"). ROUNDS (default 2) repeats the
# whole alternation; BATCH and STEPS set the window (default 16 × 80). Needs torch for the
# PyTorch part only. Writes JSON lines.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${1:-target/bench/babi-vs-torch.jsonl}
REPEATS=${REPEATS:-5}
ROUNDS=${ROUNDS:-2}
BATCH=${BATCH:-16}
STEPS=${STEPS:-80}
. scripts/bench-setup.sh
ours() {
  "$1" bench configs/babi/paper.toml --set task.reading='"story"' --batch "$BATCH" --steps "$STEPS" \
    --threads "$2" --repeats "$REPEATS" --json | grep '^{"bench":"train_window' | sed "s/^{/{$3/"
}
for round in $(seq "$ROUNDS"); do
  for threads in 1 2; do
    ours "$BIN" "$threads" "\"round\":$round," | tee -a "$OUT"
    if [ -n "${BASE:-}" ]; then
      ours "$BASE" "$threads" "\"binary\":\"base\",\"round\":$round," | tee -a "$OUT"
    fi
    "$PY" scripts/babi-torch.py --bench --batch "$BATCH" --steps "$STEPS" --threads "$threads" \
      --iters "$REPEATS" --warmup 1 | sed "s/^{/{\"round\": $round, /" | tee -a "$OUT"
  done
done
