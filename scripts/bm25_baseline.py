#!/usr/bin/env python3
"""Okapi BM25 baseline (rank_bm25 over jieba search-mode tokens, one document
per id) on a retrieval eval file. Prints one JSON object with recall@k, MRR@10
and query latency, for comparison with `maxwin eval retrieval`."""

import argparse
import json
import pathlib
import statistics
import time

import jieba
from rank_bm25 import BM25Okapi


def read_corpus(corpus_dir):
    """Return (ids, bodies) of every *.md file, front matter removed."""
    ids, bodies = [], []
    for path in sorted(pathlib.Path(corpus_dir).rglob("*.md")):
        text = path.read_text(encoding="utf-8")
        if not text.startswith("---"):
            continue
        _, front, body = text.split("---", 2)
        doc_id = None
        for line in front.splitlines():
            if line.startswith("id:"):
                doc_id = json.loads(line[3:].strip()) if line[3:].strip().startswith('"') else line[3:].strip()
        if doc_id:
            ids.append(doc_id)
            bodies.append(body.strip())
    return ids, bodies


def tokens(text):
    return [t.strip().lower() for t in jieba.cut_for_search(text) if t.strip()]


def percentile(values, fraction):
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-len(ordered) * fraction // 1))))
    return ordered[rank - 1]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("file", help="JSONL eval file")
    parser.add_argument("--corpus", default="corpus", help="corpus folder")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5, help="times each query runs, for latency")
    args = parser.parse_args()

    jieba.setLogLevel(60)
    ids, bodies = read_corpus(args.corpus)
    started = time.perf_counter()
    bm25 = BM25Okapi([tokens(body) for body in bodies])
    build_ms = (time.perf_counter() - started) * 1000

    by_text = {}
    klass = {}
    for doc_id, body in zip(ids, bodies):
        klass[doc_id] = by_text.setdefault(body, len(by_text))

    cases = [json.loads(line) for line in open(args.file, encoding="utf-8") if line.strip()]
    timings, hits, reciprocal, on_topic = [], 0, 0.0, 0
    for case in cases:
        for _ in range(max(1, args.rounds)):
            started = time.perf_counter()
            scores = bm25.get_scores(tokens(case["text"]))
            top = sorted(range(len(ids)), key=lambda i: -scores[i])[:10]
            timings.append((time.perf_counter() - started) * 1000)
        if not case.get("relevant"):
            continue
        on_topic += 1
        wanted = {klass.get(doc_id) for doc_id in case["relevant"]} - {None}
        rank = next((r for r, i in enumerate(top) if klass[ids[i]] in wanted), None)
        if rank is not None and rank < args.k:
            hits += 1
        if rank is not None:
            reciprocal += 1 / (rank + 1)

    print(json.dumps({
        "file": args.file,
        "documents": len(ids),
        "build_ms": round(build_ms, 1),
        f"recall@{args.k}": round(hits / on_topic, 4) if on_topic else None,
        "mrr@10": round(reciprocal / on_topic, 4) if on_topic else None,
        "latency": {
            "p50_ms": round(statistics.median(timings), 3),
            "p99_ms": round(percentile(timings, 0.99), 3),
            "runs": len(timings),
        },
    }, indent=2))


if __name__ == "__main__":
    main()
