#!/usr/bin/env bash
# The "Parameters read through a window view" benchmark of docs/BENCHMARKS.md: training
# windows of two mg-train binaries (BASE before the change, NEW after it) alternately, on the
# bAbI multigrid model (en, read per story: windows of 20 and 80 words), the quick 9×9
# and the reference mapping models, then the PyTorch reference model of the same run, all on one core.
#
#   BASE=path/to/old/mg-train NEW=path/to/new/mg-train CORE=0 scripts/bench-window-view.sh [OUT]
#
# Needs MG_DATA_DIR (bAbI) and, for the PyTorch line, torch (pip install torch numpy).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${1:-target/bench/window-view.jsonl}
TORCH=${TORCH_BENCH:-../shared/bench/torch_mgmem.py}
CORE=${CORE:-0}
REPEATS=${REPEATS:-3}
mkdir -p "$(dirname "$OUT")"
: > "$OUT"
# The bAbI row's config: the paper's model on en (1k), one sequence per story.
BABI=$(dirname "$OUT")/babi-en-story.toml
sed -e 's/^variant = "en-10k"/variant = "en"\nreading = "story"/' configs/babi/paper.toml > "$BABI"
run() { # label binary args...
  local label=$1 bin=$2
  shift 2
  echo "# $label: $*" | tee -a "$OUT"
  taskset -c "$CORE" "$bin" bench "$@" --threads 1 --json | tee -a "$OUT"
}
echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) core $CORE" | tee -a "$OUT"
for round in 1 2; do
  for which in BASE NEW; do
    bin=${!which}
    run "$which round $round" "$bin" "$BABI" --batch 16 --steps 20 --repeats "$REPEATS"
    run "$which round $round" "$bin" "$BABI" --batch 16 --steps 80 --repeats "$REPEATS"
    run "$which round $round" "$bin" configs/mapping/quick-9x9.toml --batch 16 --steps 20 \
      --repeats 5
    run "$which round $round" "$bin" --repeats 1
  done
done
# PyTorch, the reference model's training window (writer step by step), one thread.
echo "# PyTorch reference model, 1 thread" | tee -a "$OUT"
taskset -c "$CORE" "$PY" "$TORCH" --bench --device cpu --threads 1 --variant 77k \
  --phases train --impls cell --batch 32 --window 20 --iters 1 --warmup 1 \
  | grep '^{' | tee -a "$OUT"
