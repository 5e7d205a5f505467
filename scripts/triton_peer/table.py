#!/usr/bin/env python3
"""Turns compare.sh's JSON lines into a markdown table: throughput and p99 of
both servers per model, protocol and concurrency, and what an inference adds
over the server's own floor (`GET /v2/health/live`) at concurrency 1.

Usage: table.py RESULTS.jsonl ANEMONE_BIN
"""
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
by = {(r["server"], r["model"], r["protocol"], r["concurrency"]): r for r in rows}


def fmt_us(us: float) -> str:
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


print(f"anemone binary: {sys.argv[2]}\n")
print("| model | protocol | conc. | Triton req/s | anemone req/s | ratio | Triton p99 | anemone p99 | errors (T/a) |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
keys = sorted({(m, p, c) for (_, m, p, c) in by}, key=lambda k: (k[0] != "health", k[0], k[1], k[2]))
for model, proto, c in keys:
    t = by.get(("triton", model, proto, c))
    a = by.get(("anemone", model, proto, c))
    if not t or not a:
        continue
    ratio = a["rps"] / t["rps"] if t["rps"] else float("inf")
    print(f"| {model} | {proto} | {c} | {t['rps']:,.0f} | {a['rps']:,.0f} | {ratio:.2f}× | "
          f"{fmt_us(t['p99_us'])} | {fmt_us(a['p99_us'])} | {t['errors']}/{a['errors']} |")

print("\nWhat an infer of `add` adds over `GET /v2/health/live` (HTTP JSON, concurrency 1, mean):\n")
print("| server | health mean | infer mean | added |")
print("|---|---:|---:|---:|")
for server in ("triton", "anemone"):
    h = by.get((server, "health", "http", 1))
    i = by.get((server, "add", "http", 1))
    if h and i:
        print(f"| {server} | {h['mean_us']:.1f} µs | {i['mean_us']:.1f} µs | {i['mean_us'] - h['mean_us']:.1f} µs |")
