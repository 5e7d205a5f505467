"""Reproduce one recorded kill: python scripts/ort_empty_sweep/repro.py $ORT_EMPTY_SWEEP_OUT/crashes/<id>  (runs in this process: it may die)."""
import json
import pickle
import sys

import onnxruntime as ort

p = sys.argv[1]
print(json.dumps(json.load(open(p + ".json")), indent=1)[:1500], flush=True)
so = ort.SessionOptions()
so.intra_op_num_threads = 2
so.enable_cpu_mem_arena = False
so.enable_mem_pattern = True
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
feeds = pickle.load(open(p + ".pkl", "rb"))
print({k: getattr(v, "shape", type(v)) for k, v in feeds.items()}, flush=True)
s = ort.InferenceSession(open(p + ".onnx", "rb").read(), so, providers=["CPUExecutionProvider"])
print([getattr(o, "shape", o) for o in s.run(None, feeds)])
