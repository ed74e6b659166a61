# Sourced by the benchmark scripts: with OUT set, makes OUT's folder and empties it, builds the
# release binary into BIN unless BIN is set, and writes the header line (date, commit, cores,
# CPU) to OUT.
mkdir -p "$(dirname "$OUT")"
: > "$OUT"
if [ -z "${BIN:-}" ]; then
  cargo build --release -p mg-train --locked
  BIN=target/release/mg-train
fi
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) $(nproc) cores, $cpu" | tee -a "$OUT"
