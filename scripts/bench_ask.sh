#!/usr/bin/env bash
# Times `maxwin ask` from process start to the printed library card (no LLM),
# with the release binary, the real corpus and a fresh index folder and SQLite
# database in a temporary folder.
#
# Prints the cold first run (it builds the index) and then the median and p95 of
# RUNS warm runs (index already on disk), with hyperfine when it is installed and
# a `date +%s%N` loop otherwise.
#
# Usage: scripts/bench_ask.sh            (RUNS=20 by default)
#        SKIP_BUILD=1 scripts/bench_ask.sh   to reuse the binary already built
set -euo pipefail

project=$(cd "$(dirname "$0")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$project/target}
runs=${RUNS:-20}
question=${QUESTION:-客户说我们的报价比竞争对手贵了百分之二十，我该怎么回应？}

if [[ -z ${SKIP_BUILD:-} ]]; then
    (cd "$project" && cargo build --release --bin maxwin)
fi
binary=$target_dir/release/maxwin

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export MAXWIN_CORPUS_DIR=$project/corpus
export MAXWIN_INDEX_DIR=$work/index
export MAXWIN_DATABASE_URL=sqlite://$work/maxwin.db
export RUST_LOG=warn

start=$(date +%s%N)
"$binary" ask "$question" > "$work/first.txt"
end=$(date +%s%N)
echo "cold first run (builds the index): $(( (end - start) / 1000000 )) ms"
head -n 3 "$work/first.txt"

if command -v hyperfine > /dev/null; then
    hyperfine --runs "$runs" --warmup 1 --export-json "$work/ask.json" \
        "$binary ask '$question'" > /dev/null
    python3 - "$work/ask.json" <<'PY'
import json, math, sys
times = sorted(json.load(open(sys.argv[1]))["results"][0]["times"])
p95 = times[max(0, math.ceil(0.95 * len(times)) - 1)]
median = (times[(len(times) - 1) // 2] + times[len(times) // 2]) / 2
print(f"warm runs: {len(times)}, median {median * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms (hyperfine)")
PY
else
    "$binary" ask "$question" > /dev/null
    samples=()
    for _ in $(seq "$runs"); do
        start=$(date +%s%N)
        "$binary" ask "$question" > /dev/null
        end=$(date +%s%N)
        samples+=($(( (end - start) / 1000 )))
    done
    printf '%s\n' "${samples[@]}" | sort -n | awk '
        { t[NR] = $1 }
        END {
            median = (t[int((NR + 1) / 2)] + t[int(NR / 2) + 1]) / 2
            p95 = t[int(0.95 * NR + 0.999999)]
            printf "warm runs: %d, median %.1f ms, p95 %.1f ms (date loop)\n", NR, median / 1000, p95 / 1000
        }'
fi
