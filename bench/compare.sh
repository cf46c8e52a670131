#!/usr/bin/env bash
# Compare cachevault with restic and borg on a synthetic cache tree.
#
#   bench/compare.sh                      # SCALE=0.5 RUNS=3 DAYS=10 WORK=/tmp/cachevault-bench
#   RUNS=1 SCALE=0.1 bench/compare.sh     # quick check
#   SCALES="0.5 2" bench/compare.sh       # both sizes, then how memory grows between them
#
# See bench/README.md for what is measured and how to read the table.

set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
export LC_ALL=C

# --------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------

SCALE=${SCALE:-0.5}
SCALES=${SCALES:-}
WORK=${WORK:-/tmp/cachevault-bench}
RUNS=${RUNS:-3}
DAYS=${DAYS:-10}
SEED=${SEED:-1}
TOOLS=${TOOLS:-cachevault restic borg}
KEEP=${KEEP:-0}
PRETOUCH=${PRETOUCH:-1}
CACHEVAULT=${CACHEVAULT:-}
GEN=${GEN:-}

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
START_EPOCH=$(date +%s)

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
warn() { printf '%s WARNING: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    printf 'compare.sh: error: %s\n' "$*" >&2
    exit 2
}

# shellcheck disable=SC2015  # die if either test fails
[[ $SCALE =~ ^[0-9]*\.?[0-9]+$ ]] && awk -v s="$SCALE" 'BEGIN { exit !(s > 0) }' ||
    die "SCALE must be a positive number (got '$SCALE')"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer (got '$RUNS')"
[[ $DAYS =~ ^[1-9][0-9]*$ ]] || die "DAYS must be a positive integer (got '$DAYS')"
[[ $SEED =~ ^[0-9]+$ ]] || die "SEED must be a non-negative integer (got '$SEED')"
[[ $WORK = /* ]] || die "WORK must be an absolute path (got '$WORK')"
WORK=${WORK%/}
[[ -n $WORK && $WORK != / ]] || die "refusing to use '/' as WORK"
for t in $TOOLS; do
    case $t in cachevault | restic | borg) ;; *) die "unknown tool '$t' in TOOLS (cachevault, restic, borg)" ;; esac
done

CORPUS=$WORK/corpus-s$SCALE-seed$SEED # pristine tree, generated once, never modified
LIVE=$WORK/live                       # the tree the tools back up: $LIVE/OUTPUTS
RESTORE=$WORK/restore
REPOS=$WORK/repos
CACHES=$WORK/caches
LOGS=$WORK/logs
RAW=$WORK/raw.tsv   # one measurement a line: tool, run, metric, value
META=$WORK/meta.tsv # key, value
RESULTS=$WORK/results.json

# --------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------

# Installs what is missing (Debian/Ubuntu package names) when running as root.
ensure_tools() {
    local -a missing=()
    [[ " $TOOLS " != *" restic "* ]] || command -v restic >/dev/null || missing+=(restic)
    [[ " $TOOLS " != *" borg "* ]] || command -v borg >/dev/null || missing+=(borgbackup)
    command -v zstd >/dev/null || missing+=(zstd)
    command -v b3sum >/dev/null || missing+=(b3sum)
    [[ -x /usr/bin/time ]] || missing+=(time)
    command -v python3 >/dev/null || missing+=(python3)
    ((${#missing[@]} == 0)) && return 0
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        log "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$LOGS/apt.log" 2>&1 ||
            die "apt-get update failed, see $LOGS/apt.log"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >>"$LOGS/apt.log" 2>&1 ||
            die "apt-get install ${missing[*]} failed, see $LOGS/apt.log"
    else
        die "missing tools: ${missing[*]} (install them, or run as root to let this script use apt-get)"
    fi
}

# Builds cachevault and the corpus generator unless CACHEVAULT / GEN point at binaries.
# Honours CARGO_TARGET_DIR, so a benchmark build does not contend for the
# developer's target directory lock.
build() {
    local -a what=()
    [[ -n $CACHEVAULT ]] || what+=(--bin cachevault)
    if [[ -z $GEN ]]; then
        [[ -f $REPO_ROOT/examples/gen_corpus.rs ]] ||
            die "examples/gen_corpus.rs not found; set GEN=/path/to/gen_corpus"
        what+=(--example gen_corpus)
    fi
    if ((${#what[@]})); then
        command -v cargo >/dev/null || die "cargo not found (or set CACHEVAULT and GEN to prebuilt binaries)"
        log "building ${what[*]} (release)"
        cargo build --release --quiet --manifest-path "$REPO_ROOT/Cargo.toml" "${what[@]}" \
            >"$LOGS/build.log" 2>&1 || {
            tail -n 30 "$LOGS/build.log" >&2
            die "cargo build failed, see $LOGS/build.log"
        }
        local target
        target=$(cargo metadata --format-version 1 --no-deps --manifest-path "$REPO_ROOT/Cargo.toml" |
            python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
        [[ -n $CACHEVAULT ]] || CACHEVAULT=$target/release/cachevault
        [[ -n $GEN ]] || GEN=$target/release/examples/gen_corpus
    fi
    [[ -x $CACHEVAULT ]] || die "cachevault binary not found or not executable: $CACHEVAULT"
    [[ -x $GEN ]] || die "generator binary not found or not executable: $GEN"
}

# --------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------

# The pristine tree is reused across invocations as long as the generator
# binary is unchanged (its output is a pure function of binary, scale and seed).
prepare_corpus() {
    local stamp want
    want=$(sha256sum "$GEN" | cut -d' ' -f1)
    stamp=$CORPUS/.generated-by
    if [[ -d $CORPUS/OUTPUTS && -f $stamp && $(cat "$stamp") == "$want" ]]; then
        log "reusing corpus $CORPUS"
    else
        [[ -d $CORPUS ]] && log "generator changed or corpus incomplete: regenerating $CORPUS"
        rm -rf "$CORPUS"
        mkdir -p "$CORPUS"
        log "generating corpus (scale $SCALE, seed $SEED)"
        "$GEN" "$CORPUS" --scale "$SCALE" --seed "$SEED" >"$LOGS/gen.log" 2>&1 ||
            { cat "$LOGS/gen.log" >&2; die "corpus generation failed"; }
        local n bytes zbytes
        n=$(find "$CORPUS/OUTPUTS" -type f | wc -l)
        bytes=$(find "$CORPUS/OUTPUTS" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d\n", s }')
        zbytes=$(tar -C "$CORPUS" -cf - OUTPUTS | zstd -3 -T0 -q -c | wc -c)
        printf 'files\t%s\nbytes\t%s\ntar_zstd3_bytes\t%s\n' "$n" "$bytes" "$zbytes" >"$CORPUS/.stats"
        echo "$want" >"$stamp"
    fi
    while IFS=$'\t' read -r k v; do meta "tree_$k" "$v"; done <"$CORPUS/.stats"
}

# Reads every file once so that all tools run against a warm page cache, then
# flushes dirty pages so that background writeback does not bleed into timings.
warm() {
    find "$LIVE/OUTPUTS" -type f -print0 | xargs -0 -r cat >/dev/null
    sync
}

# Memory that costs every tool the same. In a virtual machine whose host backs
# guest memory only when it is first written, and takes back what the guest
# frees (free page reporting), a page written for the first time costs the
# guest's kernel several microseconds: 3.5 s of system time a GiB on the
# machine of the findings. Whichever tool writes much (a restore into a new
# folder on tmpfs, a repository) would pay it at its own pace of freeing and
# writing. So, as root where the kernel has the knob, reporting is held for the
# run (given back at exit), and most of the free memory is touched once before
# any timing. PRETOUCH=0 leaves both alone.
REPORTING_KNOB=/sys/module/page_reporting/parameters/page_reporting_order
REPORTING_WAS=
pretouch() {
    [[ $PRETOUCH == 1 ]] || { meta pretouch "off"; return; }
    if [[ -w $REPORTING_KNOB ]]; then
        REPORTING_WAS=$(cat "$REPORTING_KNOB")
        # An order above the largest free block: no block is reported.
        if echo 11 >"$REPORTING_KNOB" 2>/dev/null; then
            meta reporting "free page reporting held (order $REPORTING_WAS to 11)"
        else
            REPORTING_WAS=
        fi
    fi
    local said
    said=$(python3 - <<'PY'
import time
avail = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemAvailable:")) * 1024
left = int(avail * 0.7)
t = time.monotonic()
held = []  # all held at once: a block freed and taken again is not new memory
while left > 0:
    b = bytearray(min(1 << 30, left))
    b[::4096] = b"\1" * len(range(0, len(b), 4096))
    left -= len(b)
    held.append(b)
total = sum(map(len, held))
print(f"{total / 2**30:.1f} GiB in {time.monotonic() - t:.1f} s")
PY
) || die "could not touch memory (PRETOUCH=0 to leave it)"
    log "memory touched once: $said"
    meta pretouch "$said${REPORTING_WAS:+, free page reporting held}"
}

reset_tree() {
    rm -rf "$LIVE"
    mkdir -p "$LIVE"
    cp -a "$CORPUS/OUTPUTS" "$LIVE/OUTPUTS"
    warm
}

mutate() { # DAY
    "$GEN" "$LIVE" --mutate --day "$1" --seed "$SEED" >>"$LOGS/mutate.log" 2>&1 ||
        { tail -n 20 "$LOGS/mutate.log" >&2; die "mutation day $1 failed"; }
    warm
}

# --------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------

meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }
record() { printf '%s\t%s\t%s\t%s\n' "$TOOL" "$RUN" "$1" "$2" >>"$RAW"; }
repo_bytes() { du -sb "$REPO" | cut -f1; }

# measure STEP [-C DIR] CMD...: runs CMD once, records wall seconds, CPU
# seconds (user + system) and peak RSS.
measure() {
    local step=$1 dir=.
    shift
    if [[ $1 == -C ]]; then
        dir=$2
        shift 2
    fi
    local out=$LOGS/$TOOL.run$RUN.$step.log rss=$LOGS/.rss t0 t1
    sync
    t0=$(date +%s%N)
    if ! (cd "$dir" && /usr/bin/time -f '%M %U %S' -o "$rss" "$@") >"$out" 2>&1; then
        tail -n 20 "$out" >&2
        die "$TOOL $step failed (run $RUN): $* -- full output in $out"
    fi
    t1=$(date +%s%N)
    record "$step.seconds" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')"
    local kb user sys
    read -r kb user sys < <(tail -n 1 "$rss")
    record "$step.rss_kb" "$kb"
    record "$step.cpu_seconds" "$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')"
    LAST_LOG=$out
}

# Per-tool commands. Each tool gets a fresh repository and cache directory.
# Snapshots always name the same absolute path ($LIVE/OUTPUTS), so cachevault
# and restic find their parent snapshot by path; borg keys its files cache by path.
snap_n=0
tool_init() {
    case $TOOL in
    cachevault) "$CACHEVAULT" --repo "$REPO" -q init ;;
    restic) restic -r "$REPO" -q init --repository-version 2 ;;
    borg) borg init -e none "$REPO" ;;
    esac >"$LOGS/$TOOL.run$RUN.init.log" 2>&1 || die "$TOOL init failed, see $LOGS/$TOOL.run$RUN.init.log"
}

tool_snapshot() { # STEP
    snap_n=$((snap_n + 1))
    case $TOOL in
    cachevault) measure "$1" "$CACHEVAULT" --repo "$REPO" --json snapshot "$LIVE/OUTPUTS" ;;
    restic) measure "$1" restic -r "$REPO" backup --compression auto "$LIVE/OUTPUTS" ;;
    borg) measure "$1" -C "$LIVE" borg create -C zstd,3 "$REPO::s$snap_n" OUTPUTS ;;
    esac
    if [[ $TOOL == cachevault ]]; then
        # Keep cachevault's own account of the snapshot next to the timings.
        python3 - "$LAST_LOG" "$RUN" "$1" >>"$RAW" <<'EOF' || warn "could not parse cachevault --json output of $1"
import json, sys
path, run, step = sys.argv[1:4]
doc = json.load(open(path))
for k in ("files_new", "files_changed", "files_unchanged", "bytes_read", "bytes_added"):
    if k in doc:
        print(f"cachevault\t{run}\t{step}.{k}\t{doc[k]}")
EOF
    fi
}

# Sets RESTORED to the folder that holds the restored copy of $LIVE/OUTPUTS.
tool_restore() {
    rm -rf "$RESTORE"
    mkdir -p "$RESTORE"
    case $TOOL in
    cachevault)
        measure restore "$CACHEVAULT" --repo "$REPO" -q restore latest --target "$RESTORE/t"
        RESTORED=$RESTORE/t
        ;;
    restic)
        measure restore restic -r "$REPO" -q restore latest --target "$RESTORE"
        RESTORED=$RESTORE$LIVE/OUTPUTS
        ;;
    borg)
        measure restore -C "$RESTORE" borg extract "$REPO::s$snap_n"
        RESTORED=$RESTORE/OUTPUTS
        ;;
    esac
}

tool_check() {
    case $TOOL in
    cachevault) measure check "$CACHEVAULT" --repo "$REPO" -q check --read-data ;;
    restic) measure check restic -r "$REPO" check --read-data ;;
    borg) measure check borg check --verify-data "$REPO" ;;
    esac
}

tool_supports_prune() {
    case $TOOL in
    cachevault) "$CACHEVAULT" forget --help >/dev/null 2>&1 ;;
    restic) true ;;
    borg) borg compact --help >/dev/null 2>&1 ;;
    esac
}

tool_prune() {
    # shellcheck disable=SC2016  # $1 is expanded by the inner shell
    case $TOOL in
    cachevault) measure prune "$CACHEVAULT" --repo "$REPO" -q forget --keep-last 1 --prune ;;
    restic) measure prune restic -r "$REPO" forget --keep-last 1 --prune ;;
    borg) measure prune sh -c 'borg prune --keep-last 1 "$1" && borg compact "$1"' sh "$REPO" ;;
    esac
}

# A cheap structural check after prune, so a prune that damages the
# repository does not go unnoticed.
tool_check_quick() {
    local out=$LOGS/$TOOL.run$RUN.check-after-prune.log
    case $TOOL in
    cachevault) "$CACHEVAULT" --repo "$REPO" -q check ;;
    restic) restic -r "$REPO" check ;;
    borg) borg check "$REPO" ;;
    esac >"$out" 2>&1 || {
        warn "$TOOL: check after prune FAILED (run $RUN), see $out"
        record check_after_prune_ok 0
        return 0
    }
    record check_after_prune_ok 1
}

bench_tool() {
    REPO=$REPOS/$TOOL
    snap_n=0
    rm -rf "$REPO" "$CACHES"
    mkdir -p "$REPOS" "$CACHES"
    export RESTIC_CACHE_DIR=$CACHES/restic BORG_BASE_DIR=$CACHES/borg

    log "run $RUN/$RUNS $TOOL"
    reset_tree
    tool_init

    tool_snapshot initial
    record repo_initial_bytes "$(repo_bytes)"
    tool_snapshot nochange

    local before
    mutate 1
    before=$(repo_bytes)
    tool_snapshot incremental
    record increment_bytes $(($(repo_bytes) - before))

    tool_restore
    if diff -rq "$LIVE/OUTPUTS" "$RESTORED" >"$LOGS/$TOOL.run$RUN.restore-diff.log" 2>&1; then
        record restore_ok 1
    else
        warn "$TOOL: restored tree differs from the source (run $RUN), see $LOGS/$TOOL.run$RUN.restore-diff.log"
        record restore_ok 0
    fi
    rm -rf "$RESTORE"

    tool_check

    # Retention: days 2..DAYS of churn, one snapshot after each, then keep only the last.
    local d
    for ((d = 2; d <= DAYS; d++)); do
        mutate "$d"
        tool_snapshot "day$d"
    done
    local days_bytes
    days_bytes=$(repo_bytes)
    record repo_days_bytes "$days_bytes"
    # What a day of churn costs over all DAYS days (whole entry lists written again
    # included), from just before day 1's churn.
    record increment_avg_bytes $(((days_bytes - before) / DAYS))
    if tool_supports_prune; then
        record prune_supported 1
        tool_prune
        record repo_pruned_bytes "$(repo_bytes)"
        tool_check_quick
    else
        record prune_supported 0
        log "$TOOL: no forget/prune support, skipping the prune row"
    fi

    [[ $KEEP == 1 ]] || rm -rf "$REPO" "$CACHES"
}

# The physical floor on the same tree: what writing a tar through zstd -3 on every core
# costs (the initial snapshot's work without any bookkeeping), hashing every file with
# b3sum, and extracting a plain tar into an empty folder (a restore without verification).
bench_floor() {
    TOOL=floor
    log "run $RUN/$RUNS physical floor"
    reset_tree
    measure initial -C "$LIVE" bash -c "tar -cf - OUTPUTS | zstd -3 -T$(nproc) -q -c >/dev/null"
    measure hash -C "$LIVE" bash -c 'find OUTPUTS -type f -print0 | xargs -0 b3sum >/dev/null'
    tar -C "$LIVE" -cf "$WORK/floor.tar" OUTPUTS
    rm -rf "$RESTORE"
    mkdir -p "$RESTORE"
    measure restore tar -xf "$WORK/floor.tar" -C "$RESTORE"
    rm -rf "$RESTORE" "$WORK/floor.tar"
}

# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

report() {
    python3 - "$RAW" "$META" "$RESULTS" "$TOOLS" <<'EOF'
import json, statistics, sys
from collections import defaultdict

raw_path, meta_path, out_path, tools = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split()

meta = {}
for line in open(meta_path):
    k, v = line.rstrip("\n").split("\t", 1)
    meta[k] = v

runs = defaultdict(lambda: defaultdict(dict))  # tool -> run -> metric -> value
for line in open(raw_path):
    tool, run, metric, value = line.rstrip("\n").split("\t")
    runs[tool][int(run)][metric] = float(value)

def values(tool, metric):
    return [m[metric] for m in runs[tool].values() if metric in m]

summary = {}
for tool in [*tools, "floor"]:
    metrics = sorted({k for m in runs[tool].values() for k in m})
    s = {}
    for k in metrics:
        v = values(tool, k)
        s[k] = max(v) if k.endswith(".rss_kb") else statistics.median(v)
    summary[tool] = s

days = int(meta["days"])
MiB = 1024 * 1024
rows = [
    # label, metric, kind
    ("initial snapshot (s)", "initial.seconds", "time"),
    ("no-change snapshot (s)", "nochange.seconds", "time"),
    ("incremental snapshot, 1 day of churn (s)", "incremental.seconds", "time"),
    ("full restore (s)", "restore.seconds", "time"),
    ("check, reading all data (s)", "check.seconds", "time"),
    (f"forget --keep-last 1 --prune after {days} days (s)", "prune.seconds", "time"),
    ("repository size after initial snapshot (MiB)", "repo_initial_bytes", "size"),
    ("increment, 1 day of churn (MiB)", "increment_bytes", "size"),
    (f"repository size after {days} days (MiB)", "repo_days_bytes", "size"),
    (f"increment a day, average over {days} days (MiB)", "increment_avg_bytes", "size"),
    ("repository size after prune (MiB)", "repo_pruned_bytes", "size"),
    ("CPU time (user + sys), initial snapshot (s)", "initial.cpu_seconds", "cpu"),
    ("peak RSS, initial snapshot (MiB)", "initial.rss_kb", "rss"),
    ("peak RSS, full restore (MiB)", "restore.rss_kb", "rss"),
    ("peak RSS, check (MiB)", "check.rss_kb", "rss"),
]

def cell(tool, metric, kind):
    v = summary.get(tool, {}).get(metric)
    if v is None:
        if metric in ("prune.seconds", "repo_pruned_bytes") and summary.get(tool, {}).get("prune_supported") == 0:
            return "unsupported"
        return "n/a"
    if kind in ("time", "cpu"):
        return f"{v:.2f}"
    if kind == "size":
        return f"{v / MiB:.1f}"
    return f"{v / 1024:.0f}"

def ratio(metric, kind):
    cv = summary.get("cachevault", {}).get(metric)
    rs = summary.get("restic", {}).get(metric)
    if cv is None or rs is None:
        return "n/a"
    if kind == "time":
        if cv <= 0 or rs <= 0:
            return "n/a"
        return f"{rs / cv:.1f}x faster" if rs >= cv else f"{cv / rs:.1f}x slower"
    if rs <= 0:
        return "n/a"
    r = cv / rs
    less, more = ("less", "more") if kind == "cpu" else ("smaller", "larger")
    return f"{r:.2f}x ({less if r < 1 else more if r > 1 else 'same'})"

flags = []
for tool in tools:
    for metric, what in (("restore_ok", "restored tree differed from the source"),
                         ("check_after_prune_ok", "check after prune failed")):
        v = values(tool, metric)
        if v and min(v) < 1:
            flags.append(f"{tool}: {what} in {sum(1 for x in v if x < 1)} of {len(v)} runs")

lines = []
p = lines.append
p(f"## cachevault vs restic vs borg: scale {meta['scale']}, {meta['runs']} run(s)")
p("")
p(f"- date: {meta['date']}")
p(f"- machine: {meta['cpu']}, {meta['nproc']} CPUs, {meta['mem']} RAM, kernel {meta['kernel']}, "
  f"{meta['fstype']} at {meta['work']}")
p(f"- tree: {int(meta['tree_files']):,} files, {int(meta['tree_bytes']) / MiB:.1f} MiB "
  f"(tar | zstd -3: {int(meta['tree_tar_zstd3_bytes']) / MiB:.1f} MiB), seed {meta['seed']}")
p(f"- load average (1 min): {meta['load_start']} at start, {meta['load_end']} at end")
p(f"- memory touched once before timing: {meta.get('pretouch', 'not recorded')}")
p(f"- versions: {meta['v_cachevault']}; {meta['v_restic']}; {meta['v_borg']}")
p("- settings: cachevault defaults; restic repository v2, compression auto; borg -e none, -C zstd,3")
p(f"- times are medians of {meta['runs']} run(s), wall clock, warm page cache; "
  "sizes are medians of `du -sb` of the repository; RSS is the maximum over runs")
p("")
header = ["measurement", *tools, "cachevault vs restic"]
p("| " + " | ".join(header) + " |")
p("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
for label, metric, kind in rows:
    p("| " + " | ".join([label, *(cell(t, metric, kind) for t in tools), ratio(metric, kind)]) + " |")
p("")
p("Ratio column: for times, how many times faster (or slower) cachevault is than restic; "
  "for sizes, CPU time and memory, cachevault's figure as a multiple of restic's (below 1 is better).")
cv = summary.get("cachevault", {})
if "incremental.files_new" in cv:
    p("")
    p("cachevault's own account (medians): "
      f"initial read {cv.get('initial.bytes_read', 0) / MiB:.1f} MiB; "
      f"no-change {cv.get('nochange.files_unchanged', 0):.0f} unchanged, "
      f"{cv.get('nochange.bytes_read', 0) / MiB:.1f} MiB read; "
      f"incremental {cv.get('incremental.files_new', 0):.0f} new, "
      f"{cv.get('incremental.files_changed', 0):.0f} changed, "
      f"{cv.get('incremental.bytes_read', 0) / MiB:.1f} MiB read, "
      f"{cv.get('incremental.bytes_added', 0) / MiB:.1f} MiB added.")
fl = summary.get("floor", {})
if fl and cv:
    p("")
    p("Physical floor (medians, same tree): how close cachevault gets to the bare work.")
    p("")
    p("| cachevault step | cachevault (s) | floor | floor (s) | cachevault / floor |")
    p("|---|---:|---|---:|---:|")
    for label, metric, floor_label, floor_metric in [
        ("initial snapshot", "initial.seconds", f"`tar \\| zstd -3 -T{meta['nproc']}`", "initial.seconds"),
        ("initial snapshot", "initial.seconds", "`b3sum` of every file", "hash.seconds"),
        ("full restore", "restore.seconds", "`tar -x` of the tree into an empty folder", "restore.seconds"),
    ]:
        c, f = cv.get(metric), fl.get(floor_metric)
        if c and f:
            p(f"| {label} | {c:.2f} | {floor_label} | {f:.2f} | {c / f:.2f}x |")
if flags:
    p("")
    for f in flags:
        p(f"**PROBLEM:** {f}")
table = "\n".join(lines)
print(table)

json.dump({
    "meta": meta,
    "median": summary,
    "runs": {t: {str(r): runs[t][r] for r in sorted(runs[t])} for t in [*tools, "floor"]},
    "problems": flags,
    "table_markdown": table,
}, open(out_path, "w"), indent=2, sort_keys=True)
EOF
}

# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

cleanup() {
    [[ -z $REPORTING_WAS ]] || echo "$REPORTING_WAS" >"$REPORTING_KNOB" || warn "could not set $REPORTING_KNOB back to $REPORTING_WAS"
    [[ $KEEP == 1 ]] || rm -rf "$REPOS" "$RESTORE" "$CACHES" "$LIVE"
}

main() {
    mkdir -p "$WORK" "$LOGS"
    exec 9>"$WORK/.lock"
    flock -n 9 || die "another compare.sh is running on $WORK"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    rm -f "$LOGS"/*.log "$RAW" "$META" "$RESULTS" "$WORK/results.md"

    ensure_tools
    export RESTIC_PASSWORD=bench
    export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
    build

    : >"$RAW"
    meta date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    meta scale "$SCALE"
    meta seed "$SEED"
    meta runs "$RUNS"
    meta days "$DAYS"
    meta work "$WORK"
    meta nproc "$(nproc)"
    meta cpu "$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    meta mem "$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
    meta kernel "$(uname -r)"
    meta fstype "$( (findmnt -n -o FSTYPE -T "$WORK" 2>/dev/null || stat -f -c %T "$WORK") | head -n 1)"
    meta v_cachevault "$("$CACHEVAULT" --version)"
    meta v_restic "$(restic version 2>/dev/null | head -n 1 | cut -d' ' -f1-2 || echo 'restic not installed')"
    meta v_borg "$(borg --version 2>/dev/null || echo 'borg not installed')"

    prepare_corpus
    pretouch

    # Everything here is wall-clock time: other work on the machine skews it.
    local load
    load=$(cut -d' ' -f1 /proc/loadavg)
    meta load_start "$load"
    awk -v l="$load" -v n="$(nproc)" 'BEGIN { exit !(l > n / 4) }' &&
        warn "load average is $load on $(nproc) CPUs: timings will be noisy"

    # Tools alternate within each run so that slow drift of the machine
    # (thermal, neighbours) spreads over all of them.
    for ((RUN = 1; RUN <= RUNS; RUN++)); do
        for TOOL in $TOOLS; do
            bench_tool
        done
        bench_floor
    done

    meta load_end "$(cut -d' ' -f1 /proc/loadavg)"
    report | tee "$WORK/results.md"
    log "raw numbers: $RESULTS; logs: $LOGS; total $(($(date +%s) - START_EPOCH)) s"
}

# SCALES="a b": the whole benchmark at each scale (WORK/s<scale>), then how each tool's peak
# memory grows from the first scale to the last.
multi_scale() {
    local sc first="" last="" grows=()
    for sc in $SCALES; do
        SCALES="" SCALE=$sc WORK=$WORK/s$sc "${BASH_SOURCE[0]}" || die "scale $sc failed"
        [[ -n $first ]] || first=$sc
        last=$sc
    done
    python3 - "$WORK/s$first/results.json" "$WORK/s$last/results.json" "$first" "$last" <<'EOF' | tee "$WORK/growth.md"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
lo, hi = sys.argv[3:5]
fa, fb = int(a["meta"]["tree_files"]), int(b["meta"]["tree_files"])
print(f"## Memory growth: scale {lo} ({fa:,} files) to scale {hi} ({fb:,} files, {fb / fa:.1f}x)")
print()
print(f"| tool | peak RSS at {lo} (MiB) | peak RSS at {hi} (MiB) | growth | vs restic at {hi} |")
print("|---|---:|---:|---:|---:|")
def peak(r, t):
    m = r["median"].get(t, {})
    v = [m[k] for k in m if k.endswith(".rss_kb")]
    return max(v) / 1024 if v else None
rs = peak(b, "restic")
for t in b["median"]:
    if t == "floor":
        continue
    pa, pb = peak(a, t), peak(b, t)
    if pa and pb:
        vs = f"{pb / rs:.2f}x" if rs else "n/a"
        print(f"| {t} | {pa:.0f} | {pb:.0f} | {pb / pa:.2f}x | {vs} |")
EOF
}

if [[ -n $SCALES ]]; then
    mkdir -p "$WORK"
    multi_scale
else
    main "$@"
fi
