#!/usr/bin/env bash
# Time to F ≥ 0.9 on the 9×9 mapping world, PyTorch against mg-train, one after the other on
# the same machine (docs/BENCHMARKS.md):
#   1. ../shared/bench/feasibility/train.py --n 9 --threads 2 (its small model; it evaluates
#      every 2 minutes and stops at F ≥ 0.9);
#   2. mg-train train configs/mapping/quick-9x9.toml (the README's main job), timed, then
#      mg-train eval on its 1000 test maps.
#
#   PYTHON=/path/to/venv/bin/python scripts/feasibility-9x9.sh [OUT_DIR]
#
# Needs torch for the PyTorch part only (pip install torch numpy). Writes OUT_DIR/torch.jsonl
# (PyTorch's log), OUT_DIR/mg-train-time.txt, and the run in OUT_DIR/run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${1:-target/bench/feasibility-9x9}
TRAIN_PY=${TORCH_FEASIBILITY:-../shared/bench/feasibility/train.py}
mkdir -p "$OUT"
rm -f "$OUT/torch.jsonl"
cargo build --release -p mg-train --locked
BIN=target/release/mg-train
echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) $(nproc) cores" | tee "$OUT/mg-train-time.txt"
"$PY" "$TRAIN_PY" --n 9 --threads 2 --minutes 20 --out "$OUT/torch.jsonl"
/usr/bin/time -f "%e s wall, %U s user, %S s system, %M KiB peak" -a -o "$OUT/mg-train-time.txt" \
  "$BIN" train configs/mapping/quick-9x9.toml --run-dir "$OUT/run" --force
"$BIN" eval "$OUT/run" --json > "$OUT/run/eval-report.json"
"$BIN" eval "$OUT/run"
cat "$OUT/mg-train-time.txt"
