#!/usr/bin/env bash
# Regenerates docs/report.png: the report of the bundled fixtures (fixtures/tree) after three
# simulated weeks of `run-due --now` with the shipped config, written by the release binary
# and photographed by headless Chromium (Debian's `chromium`).
#
#   bash docs/report-screenshot.sh [OUTPUT.png]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/report.png}
cargo build --release -q
bin=$PWD/target/release/cachevault
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r config/. "$work/"
cp -r fixtures/tree/OUTPUTS "$work/OUTPUTS"
cfg=$work/cachevault.json
days=21
first=$(date -u -d "today - $((days + 1)) days" +%Y-%m-%d)
# The fixtures were last written a fortnight before the first day.
find "$work/OUTPUTS" -type f -exec touch -d "$first - 14 days" {} +
# amazon_cache limited to 1.4 times its size, so that the daily products reach the line.
python3 - "$cfg" "$work/OUTPUTS/FBA_ANALYSIS/amazon_cache" <<'EOF'
import json, os, sys
cfg, amazon = sys.argv[1], sys.argv[2]
size = sum(os.path.getsize(os.path.join(amazon, f)) for f in os.listdir(amazon))
c = json.load(open(cfg))
c["cache"]["cache_types"]["amazon_cache"]["max_size_mb"] = size * 1.4 / 1048576
json.dump(c, open(cfg, "w"), indent=2)
EOF
"$bin" --config "$cfg" -q init
for d in $(seq 1 $days); do
  day=$(date -u -d "$first + $d days" +%Y-%m-%d)
  # One new Amazon product a day.
  python3 - "$work/OUTPUTS/FBA_ANALYSIS/amazon_cache" "$d" <<'EOF'
import json, os, sys
amazon, d = sys.argv[1], int(sys.argv[2])
sample = sorted(f for f in os.listdir(amazon) if f.startswith("amazon_B0"))[0]
doc = json.load(open(os.path.join(amazon, sample)))
doc["asin"] = "B0DAY%05d" % d
doc["title"] = "Day %d product %s" % (d, "x" * 600)
json.dump(doc, open(os.path.join(amazon, "amazon_B0DAY%05d.json" % d), "w"), indent=2)
EOF
  touch -d "$day 01:30 UTC" "$work/OUTPUTS/FBA_ANALYSIS/amazon_cache/amazon_B0DAY$(printf %05d "$d").json"
  load=0
  # One day the scheduled clear finds the machine busy, and is put off.
  [ "$d" = 9 ] && load=999
  # One day a broken product file fails the validation job.
  [ "$d" = 6 ] && echo '{ "asin": ' >"$work/OUTPUTS/FBA_ANALYSIS/amazon_cache/amazon_BROKEN.json"
  [ "$d" = 7 ] && rm "$work/OUTPUTS/FBA_ANALYSIS/amazon_cache/amazon_BROKEN.json"
  "$bin" --config "$cfg" -q run-due --now "${day}T02:30:00Z" --load-average "$load" || true
  [ "$d" = $((days - 2)) ] && "$bin" --config "$cfg" -q snapshot --tag repaired --time "${day}T04:00:00Z"
done
last=$(date -u -d "$first + $days days" +%Y-%m-%d)
"$bin" --config "$cfg" -q snapshot --time "${last}T06:00:00Z"
"$bin" --config "$cfg" report --html "$work/report.html" --days 30 --now "${last}T12:00:00Z"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --hide-scrollbars --user-data-dir="$work/profile" --window-size=1000,4600 \
  --screenshot="$work/report.png" "file://$work/report.html" 2>/dev/null
# Fewer colours, same picture: keeps the file small when pngquant is there.
if command -v pngquant >/dev/null; then
  pngquant --force --quality 70-95 --output "$out" "$work/report.png"
else
  cp "$work/report.png" "$out"
fi
ls -l "$out"
