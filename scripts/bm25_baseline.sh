#!/usr/bin/env bash
# Runs scripts/bm25_baseline.py in a local virtualenv (.venv in the
# repository root), installing rank_bm25 and jieba on first use.
# Usage: scripts/bm25_baseline.sh EVAL.jsonl [--corpus corpus] [--k 5] [--rounds 5]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet rank_bm25 jieba
fi
cd "$root"
exec "$venv/bin/python" scripts/bm25_baseline.py "$@"
