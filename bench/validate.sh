#!/usr/bin/env bash
# Time `cachevault validate` on a generated cache tree (the target: scale 1, about 55,000
# files and 600 MB, under 3 s on 2 cores with a warm page cache).
#
#   bench/validate.sh                          # SCALE=1 RUNS=10 WORK=/tmp/cachevault-validate-bench
#   TREE=/path/to/OUTPUTS bench/validate.sh    # an existing tree instead (only read)
#
# Needs hyperfine. The tree is generated once by examples/gen_corpus.rs and reused.

set -euo pipefail
export LC_ALL=C

SCALE=${SCALE:-1}
RUNS=${RUNS:-10}
WORK=${WORK:-/tmp/cachevault-validate-bench}
TREE=${TREE:-}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

command -v hyperfine >/dev/null || { echo "validate.sh: needs hyperfine" >&2; exit 2; }
cd "$REPO_ROOT"
cargo build --release --quiet --bin cachevault --example gen_corpus
TARGET=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
BIN=$TARGET/release/cachevault

mkdir -p "$WORK"
if [[ -z $TREE ]]; then
    TREE=$WORK/corpus-s$SCALE/OUTPUTS
    if [[ ! -d $TREE ]]; then
        "$TARGET/release/examples/gen_corpus" "$WORK/corpus-s$SCALE" --scale "$SCALE"
    fi
fi
TREE=$(cd "$TREE" && pwd)

# The shipped config and schemas, pointed at the tree.
rm -rf "$WORK/config" && cp -r "$REPO_ROOT/config" "$WORK/config"
sed -i -e "s#\"root\": \"OUTPUTS\"#\"root\": \"$TREE\"#" \
    -e "s#\"repository\": \"cachevault-repo\"#\"repository\": \"$WORK/repo\"#" \
    "$WORK/config/cachevault.json"

echo "files: $(find "$TREE" -type f | wc -l), $(du -sh "$TREE" | cut -f1); cores: $(nproc)" >&2
hyperfine --warmup 1 --runs "$RUNS" \
    --export-json "$WORK/validate.json" \
    "$BIN --config $WORK/config/cachevault.json validate -q"
