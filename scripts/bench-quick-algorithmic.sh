#!/usr/bin/env bash
# The quick sort and recall comparison of docs/BENCHMARKS.md: `mg-train bench` on the eight quick
# sort and recall configs with this tree's binary and configs, and with an older binary and that
# commit's configs, alternately, on the same machine (the training window: forward, loss,
# backward, clipping, optimizer step, on each config's batch, window and `[train] threads`).
#
#   BASE=/path/to/old/mg-train BASE_COMMIT=a3d9830 scripts/bench-quick-algorithmic.sh [OUT.jsonl]
#
# BASE_COMMIT's configs are read with `git show`. BIN=/path/to/mg-train times that binary instead
# of building one. ROUNDS (default 2) repeats the whole alternation, REPEATS (default 5) the
# windows of one measurement. The base's lines are marked "binary":"base". Writes JSON lines.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-target/bench/quick-algorithmic.jsonl}
REPEATS=${REPEATS:-5}
ROUNDS=${ROUNDS:-2}
: "${BASE:?BASE=/path/to/the/older/mg-train is required}"
: "${BASE_COMMIT:?BASE_COMMIT=the commit BASE was built from is required}"
. scripts/bench-setup.sh
configs=$(mktemp -d)
trap 'rm -rf "$configs"' EXIT
bench() {
  "$1" bench "$2" --repeats "$REPEATS" --no-step-path --json | grep '^{"bench":"train_window' \
    | sed "s|^{|{$3|" | tee -a "$OUT"
}
for round in $(seq "$ROUNDS"); do
  for group in recall sort; do
    for name in quick quick-dnc quick-mnist quick-mnist-dnc; do
      config=configs/$group/$name.toml
      git show "$BASE_COMMIT:$config" > "$configs/$group-$name.toml"
      bench "$BASE" "$configs/$group-$name.toml" "\"binary\":\"base\",\"round\":$round,\"config\":\"$config\","
      bench "$BIN" "$config" "\"round\":$round,\"config\":\"$config\","
    done
  done
done
