#!/usr/bin/env bash
# Runs the WeCom callback load test (examples/loadgen_wecom.rs) in release mode:
# 200 signed, encrypted callbacks per second for 10 seconds against the daemon on
# 127.0.0.1, then the criterion bench of decrypt + parse alone.
#
# Usage: scripts/bench_wecom.sh [extra loadgen_wecom arguments]
set -euo pipefail

project=$(cd "$(dirname "$0")/.." && pwd)
cd "$project"
cargo build --release --example loadgen_wecom
target_dir=${CARGO_TARGET_DIR:-$project/target}

"$target_dir/release/examples/loadgen_wecom" --rate 200 --secs 10 "$@"
cargo bench --bench coach -- wecom
