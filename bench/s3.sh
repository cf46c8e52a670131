#!/usr/bin/env bash
# cachevault beside restic against the same S3 server (moto), on the same generated tree:
# initial snapshot, incremental snapshot after one day of churn, full restore.
#
#   bench/s3.sh                        # SCALE=0.2 RUNS=3 WORK=/tmp/cachevault-bench-s3
#   RUNS=1 SCALE=0.05 bench/s3.sh      # quick check
#
# Needs moto_server (pip install 'moto[server]'), restic and curl. Each run uses fresh
# buckets; times are wall clock; the table gives medians and cachevault's speed-up.

set -euo pipefail
export LC_ALL=C

SCALE=${SCALE:-0.2}
RUNS=${RUNS:-3}
SEED=${SEED:-1}
WORK=${WORK:-/tmp/cachevault-bench-s3}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() { printf 's3.sh: error: %s\n' "$*" >&2; exit 2; }
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
for tool in moto_server restic curl; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
[[ $WORK = /* && $WORK != / ]] || die "WORK must be an absolute path other than /"

log "building cachevault and the corpus generator"
(cd "$REPO_ROOT" && cargo build --release --quiet --bin cachevault --example gen_corpus)
CV=$REPO_ROOT/target/release/cachevault
GEN=$REPO_ROOT/target/release/examples/gen_corpus

rm -rf "$WORK"
mkdir -p "$WORK"
CORPUS=$WORK/corpus
log "generating the tree (scale $SCALE)"
"$GEN" "$CORPUS" --scale "$SCALE" --seed "$SEED" >"$WORK/gen.log" 2>&1

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
moto_server -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
MOTO=$!
trap 'kill $MOTO 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/" >/dev/null && break
    sleep 0.1
done
ENDPOINT=http://127.0.0.1:$PORT
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
export RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$WORK/restic-cache

now() { date +%s.%N; }
RAW=$WORK/raw.tsv
: >"$RAW"
timed() { # tool metric command...
    local tool=$1 metric=$2 t0 t1
    shift 2
    # Write back what the previous step left dirty, so that no step pays for another's I/O.
    sync
    t0=$(now)
    "$@" >>"$WORK/$tool.log" 2>&1 || die "$tool $metric failed (see $WORK/$tool.log)"
    t1=$(now)
    printf '%s\t%s\t%s\n' "$tool" "$metric" "$(echo "$t1 - $t0" | bc -l)" >>"$RAW"
}

for run in $(seq "$RUNS"); do
    for tool in cachevault restic; do
        log "run $run: $tool"
        bucket="$tool-$run"
        curl -sf -X PUT "$ENDPOINT/$bucket" >/dev/null
        live=$WORK/live/OUTPUTS
        rm -rf "$WORK/live" "$WORK/restore"
        mkdir -p "$WORK/live"
        cp -a "$CORPUS/OUTPUTS" "$live"
        find "$live" -type f -print0 | xargs -0 cat >/dev/null
        rm -rf "$RESTIC_CACHE_DIR"
        if [[ $tool = cachevault ]]; then
            repo="s3:$ENDPOINT/$bucket/repo"
            "$CV" --repo "$repo" init --no-encrypt >/dev/null
            timed "$tool" initial "$CV" --repo "$repo" --quiet snapshot "$live"
            "$GEN" "$WORK/live" --mutate --day 2 --seed "$SEED" >>"$WORK/gen.log" 2>&1
            timed "$tool" incremental "$CV" --repo "$repo" --quiet snapshot "$live"
            timed "$tool" restore "$CV" --repo "$repo" --quiet restore latest --snapshot-path "$live" --target "$WORK/restore"
        else
            repo="s3:$ENDPOINT/$bucket/repo"
            restic -r "$repo" init >/dev/null
            timed "$tool" initial restic -r "$repo" --quiet backup "$live"
            "$GEN" "$WORK/live" --mutate --day 2 --seed "$SEED" >>"$WORK/gen.log" 2>&1
            timed "$tool" incremental restic -r "$repo" --quiet backup "$live"
            timed "$tool" restore restic -r "$repo" --quiet restore latest --target "$WORK/restore"
        fi
    done
done

python3 - "$RAW" "$SCALE" "$RUNS" "$(find "$CORPUS/OUTPUTS" -type f | wc -l)" "$(du -sb "$CORPUS/OUTPUTS" | cut -f1)" <<'EOF'
import statistics, sys
raw, scale, runs, files, size = sys.argv[1:]
t = {}
for line in open(raw):
    tool, metric, v = line.split("\t")
    t.setdefault((tool, metric), []).append(float(v))
print(f"S3 (moto) bench: scale {scale}, {files} files, {int(size) / 2**20:.1f} MiB, medians of {runs} run(s)")
print(f"{'measurement':<28}{'cachevault (s)':>16}{'restic (s)':>12}{'speed-up':>10}")
for metric, name in [("initial", "initial snapshot"), ("incremental", "incremental snapshot"), ("restore", "full restore")]:
    c = statistics.median(t[("cachevault", metric)])
    r = statistics.median(t[("restic", metric)])
    print(f"{name:<28}{c:>16.2f}{r:>12.2f}{r / c:>9.1f}x")
EOF
