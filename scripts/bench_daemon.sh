#!/usr/bin/env bash
# Runs the Telegram load test (examples/loadgen_telegram.rs) in release mode:
# 1,000 private chats against loopback mocks, first with all updates at once and
# then paced at 200 updates per second. Extra arguments go to both runs.
#
# Usage: scripts/bench_daemon.sh [--chats N] [--llm-ms MS]
set -euo pipefail

project=$(cd "$(dirname "$0")/.." && pwd)
cd "$project"
cargo build --release --example loadgen_telegram
target_dir=${CARGO_TARGET_DIR:-$project/target}
tool=$target_dir/release/examples/loadgen_telegram

echo "== all updates at once"
"$tool" --chats 1000 "$@"
echo "== 200 updates per second"
"$tool" --chats 1000 --rate 200 "$@"
