#!/usr/bin/env bash
# The CPU benchmark of docs/BENCHMARKS.md: mg-train bench and the PyTorch model of the same
# architecture (../shared/bench/torch_mgmem.py), one after the other on the same machine.
#
#   PYTHON=/path/to/venv/bin/python [BIN=path/to/mg-train] scripts/bench-cpu-vs-torch.sh [OUT.jsonl]
#
# Needs torch for the PyTorch part only (pip install torch numpy). Writes JSON lines:
# mg-train's records (with and without the project's CPU kernels for the quick model) and
# PyTorch's, each line as its program printed it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${1:-target/bench/cpu-vs-torch.jsonl}
TORCH=${TORCH_BENCH:-../shared/bench/torch_mgmem.py}
REPEATS=${REPEATS:-1}
. scripts/bench-setup.sh
# Quick model: kernels on, then burn's own ops, so that the ratio is from one run.
"$BIN" bench configs/mapping/quick.toml --repeats 3 --json | tee -a "$OUT"
"$BIN" bench configs/mapping/quick.toml --repeats 3 --json --no-kernels | tee -a "$OUT"
# Quick model as the issue measured it (B = 16, T = 20), on one and on two threads (shards).
"$BIN" bench configs/mapping/quick.toml --batch 16 --steps 20 --repeats 5 --json | tee -a "$OUT"
"$BIN" bench configs/mapping/quick.toml --batch 16 --steps 20 --repeats 5 --json --threads 2 \
  | tee -a "$OUT"
# Reference model (B = 32, T = 20), then its inference steps again with 20 repetitions (as
# PyTorch's below; the one-step training window of that call is timed too). Each once with
# the kernels splitting their own work over the cores and once with the batch cut into two
# shards, one per core (--threads 2; the batch-1 inference step is never split).
"$BIN" bench --repeats "$REPEATS" --json | tee -a "$OUT"
"$BIN" bench --repeats "$REPEATS" --json --threads 2 | tee -a "$OUT"
"$BIN" bench --steps 1 --repeats 20 --no-step-path --json | tee -a "$OUT"
"$BIN" bench --steps 1 --repeats 20 --no-step-path --json --threads 2 | tee -a "$OUT"
# PyTorch, 2 threads: training window (writer step by step, "cell") and inference steps.
"$PY" "$TORCH" --bench --device cpu --threads 2 --variant 77k --phases train,infer \
  --impls cell --batch 32 --window 20 --iters "$REPEATS" --warmup 1 --iters-infer 20 \
  | grep '^{' | tee -a "$OUT"
