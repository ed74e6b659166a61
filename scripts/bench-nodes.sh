#!/usr/bin/env bash
# The "Nodes against thread shards" benchmark of docs/BENCHMARKS.md: the quick 9×9 mapping
# model trained for STEPS time steps (batch 16, windows of 20) three ways on the same 2-core
# machine, alternately, REPEATS times: one process with two thread shards (`[train] threads =
# 2`), two processes with one thread each (`--nodes 2` on 127.0.0.1), and one process with one
# thread. Then PyTorch's gloo all-reduce of the same gradient size between two processes.
#
#   scripts/bench-nodes.sh [OUT]            (BIN=path/to/mg-train to skip the release build)
#
# Each JSON line: the arm, milliseconds per update (the loop's elapsed time over its updates),
# and for the nodes each rank's sums and the time it waited in them.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-target/bench/nodes.jsonl}
STEPS=${STEPS:-4000}
REPEATS=${REPEATS:-3}
PORT=${PORT:-7460}
PY=${PYTHON:-python3}
if [ -z "${BIN:-}" ]; then
  cargo build --release -p mg-train
  BIN=target/release/mg-train
fi
CONFIG=configs/mapping/quick-9x9.toml
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$(dirname "$OUT")"
: > "$OUT"
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) cpu \"$cpu\" $(nproc) cores" | tee -a "$OUT"
common=(--steps "$STEPS" --set train.log_every=1000000 --set train.checkpoint_every=1000000)
report() { # arm run [rank logs...]
  local arm=$1 run=$2
  shift 2
  "$PY" - "$arm" "$run/metrics.jsonl" "$@" <<'PY' | tee -a "$OUT"
import json, re, sys
arm, metrics, logs = sys.argv[1], sys.argv[2], sys.argv[3:]
last = [json.loads(l) for l in open(metrics)][-1]
line = {"arm": arm, "time_steps": last["time_step"], "updates": last["updates"],
        "ms_per_update": 1e3 * last["elapsed_s"] / last["updates"]}
for rank, log in enumerate(logs):
    m = re.search(r"(\d+) sums over the nodes, ([0-9.]+) s waiting", open(log).read())
    line[f"rank{rank}_sums"] = int(m.group(1))
    line[f"rank{rank}_ms_waiting_per_update"] = 1e3 * float(m.group(2)) / last["updates"]
print(json.dumps(line))
PY
}
for round in $(seq "$REPEATS"); do
  run=$TMP/threads2-$round
  "$BIN" train "$CONFIG" --run-dir "$run" "${common[@]}" --set train.threads=2 2> "$run.log"
  report threads2 "$run"
  run=$TMP/nodes2-$round
  port=$((PORT + 4 * round))
  nodes=(--nodes 2 --coordinator "127.0.0.1:$port" --set train.threads=1)
  "$BIN" train "$CONFIG" --run-dir "$run" "${common[@]}" "${nodes[@]}" --node-rank 1 \
    2> "$run-r1.log" &
  "$BIN" train "$CONFIG" --run-dir "$run" "${common[@]}" "${nodes[@]}" --node-rank 0 \
    2> "$run-r0.log"
  wait
  report nodes2 "$run" "$run-r0.log" "$run-r1.log"
  run=$TMP/threads1-$round
  "$BIN" train "$CONFIG" --run-dir "$run" "${common[@]}" --set train.threads=1 2> "$run.log"
  report threads1 "$run"
done
# The gradient buffer's size: the model's parameters and the loss.
floats=$("$BIN" info "$CONFIG" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["params"] + 1)')
"$PY" scripts/allreduce-torch.py --floats "$floats" --procs 2 | tee -a "$OUT"
