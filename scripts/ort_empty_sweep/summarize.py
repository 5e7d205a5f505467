"""Group the confirmed kills of out/crashes/*.json by operator: python summarize.py > out/summary.txt"""
import collections
import glob
import json
import os

OUT = os.environ.get("ORT_EMPTY_SWEEP_OUT", "/tmp/ort_empty_sweep")
recs = [json.loads(line) for line in open(os.path.join(OUT, "results.jsonl"))]
base = [r for r in recs if r["variant"] == "baseline"]
var = [r for r in recs if r["variant"] != "baseline"]
print(f"cases: {len(base)} ({collections.Counter(r['status'] for r in base)}) ; empty-input runs: {len(var)} "
      f"({collections.Counter(r['status'] for r in var)})")
kills = [json.load(open(p)) for p in glob.glob(os.path.join(OUT, "crashes/*.json"))]
by = collections.defaultdict(list)
for k in kills:
    by[k["op"]].append(k)
for op in sorted(by):
    print(f"\n== {op}: {len(by[op])}")
    for k in sorted(by[op], key=lambda k: (k["case"], k["variant"])):
        z = ", ".join(f"{d['input']}({d['role'].split('.')[-1]})[axis {d['axis']} of {d['shape']}]" for d in k["zeroed"]) or "-"
        sig = k["detail"].split(" |")[0]
        print(f"  #{k['id']:<6} {k['case']:<55} {k['variant']:<40} {sig:<18} confirmed={k['confirm'][0]:<7} zeroed: {z}")
