#!/usr/bin/env bash
# Encrypted cachevault beside restic (always encrypted) and beside unencrypted cachevault, on
# the same generated tree, local repositories: initial snapshot, full restore, check that
# reads every byte.
#
#   bench/encrypted.sh                     # SCALE=0.5 RUNS=3 WORK=/tmp/cachevault-bench-enc
#   RUNS=1 SCALE=0.05 bench/encrypted.sh   # quick check
#
# Key derivation is the real one (Argon2id, 64 MiB): every encrypted command pays it once, as
# restic's do. Times are wall clock; the table gives medians and ratios.

set -euo pipefail
export LC_ALL=C

SCALE=${SCALE:-0.5}
RUNS=${RUNS:-3}
SEED=${SEED:-1}
WORK=${WORK:-/tmp/cachevault-bench-enc}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() { printf 'encrypted.sh: error: %s\n' "$*" >&2; exit 2; }
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
command -v restic >/dev/null || die "restic is not installed"
[[ $WORK = /* && $WORK != / ]] || die "WORK must be an absolute path other than /"
unset CACHEVAULT_INSECURE_TEST_KDF

log "building cachevault and the corpus generator"
(cd "$REPO_ROOT" && cargo build --release --quiet --bin cachevault --example gen_corpus)
CV=$REPO_ROOT/target/release/cachevault
GEN=$REPO_ROOT/target/release/examples/gen_corpus

rm -rf "$WORK"
mkdir -p "$WORK"
CORPUS=$WORK/corpus
log "generating the tree (scale $SCALE)"
"$GEN" "$CORPUS" --scale "$SCALE" --seed "$SEED" >"$WORK/gen.log" 2>&1
SRC=$CORPUS/OUTPUTS
export CACHEVAULT_PASSWORD=bench RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$WORK/restic-cache

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
    for tool in cachevault-plain cachevault-encrypted restic; do
        log "run $run: $tool"
        repo=$WORK/repo-$tool
        rm -rf "$repo" "$WORK/restore" "$RESTIC_CACHE_DIR"
        find "$SRC" -type f -print0 | xargs -0 cat >/dev/null
        case $tool in
        cachevault-plain | cachevault-encrypted)
            flag=--no-encrypt
            [[ $tool = cachevault-encrypted ]] && flag=--encrypt
            "$CV" --repo "$repo" init "$flag" >/dev/null
            timed "$tool" snapshot "$CV" --repo "$repo" --quiet snapshot "$SRC"
            timed "$tool" restore "$CV" --repo "$repo" --quiet restore latest --target "$WORK/restore"
            timed "$tool" check "$CV" --repo "$repo" --quiet check --read-data
            ;;
        restic)
            restic -r "$repo" init >/dev/null
            timed "$tool" snapshot restic -r "$repo" --quiet backup "$SRC"
            timed "$tool" restore restic -r "$repo" --quiet restore latest --target "$WORK/restore"
            timed "$tool" check restic -r "$repo" --quiet check --read-data
            ;;
        esac
    done
done

python3 - "$RAW" "$SCALE" "$RUNS" "$(find "$SRC" -type f | wc -l)" "$(du -sb "$SRC" | cut -f1)" <<'PY'
import statistics, sys
raw, scale, runs, files, size = sys.argv[1:]
t = {}
for line in open(raw):
    tool, metric, v = line.split("\t")
    t.setdefault((tool, metric), []).append(float(v))
m = lambda tool, metric: statistics.median(t[(tool, metric)])
print(f"encryption bench: scale {scale}, {files} files, {int(size) / 2**20:.1f} MiB, medians of {runs} run(s)")
print(f"{'measurement':<22}{'plain (s)':>11}{'encrypted (s)':>15}{'restic (s)':>12}{'vs restic':>11}{'cost of encryption':>20}")
for metric, name in [("snapshot", "initial snapshot"), ("restore", "full restore"), ("check", "check --read-data")]:
    p, e, r = m("cachevault-plain", metric), m("cachevault-encrypted", metric), m("restic", metric)
    print(f"{name:<22}{p:>11.2f}{e:>15.2f}{r:>12.2f}{r / e:>10.1f}x{(e / p - 1) * 100:>19.0f}%")
PY
