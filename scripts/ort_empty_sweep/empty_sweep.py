"""Which ONNX Runtime (CPU) kernels kill the process on empty (zero-sized) inputs.

For every case (ONNX's own node test models, anemone's test_operator_sweep.py CASES, and the hand-built
extra_cases.py: recurrent, Einsum, norms, pooling, conv, matmul, com.microsoft and ai.onnx.ml ops), and
for every fed input and every axis of it, the axis is made dynamic in the graph input and a tensor of
size 0 along it is fed (others as the case's feed). A second ("joint") family zeroes every axis, across
all inputs, whose size equals a given value (batch 0 on every input that has the batch axis, ...).
Each run happens in a worker subprocess (spawned; two at a time) with anemone's session options
(intra_op_num_threads=2, enable_cpu_mem_arena=False, enable_mem_pattern=True, ORT_ENABLE_ALL);
a worker that dies by a signal or exceeds 20 s is recorded, then every such case is run again alone
in a fresh process to confirm.

It made the list of crates/anemone-backends/src/ort_empty_inputs.rs (session 45, ONNX Runtime
1.31.1: 14,247 runs of 2,778 models, 5 minutes on 2 cores); run it again when ONNX Runtime is
upgraded, and bring the list up to date with what it finds.

Run:  .venv/bin/python scripts/ort_empty_sweep/empty_sweep.py [--only SUBSTR] [--sources node,sweep,extra]
Out:  $ORT_EMPTY_SWEEP_OUT (default /tmp/ort_empty_sweep): results.jsonl, summary.txt (the kills by
      operator, scripts/ort_empty_sweep/summarize.py), crashes/<id>.onnx + .pkl, each reproducible
      with  python scripts/ort_empty_sweep/repro.py $ORT_EMPTY_SWEEP_OUT/crashes/<id>
"""
import argparse
import collections
import glob
import json
import multiprocessing as mp
import os
import pickle
import signal
import sys
import time
from multiprocessing.connection import wait

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
OUT = os.environ.get("ORT_EMPTY_SWEEP_OUT", "/tmp/ort_empty_sweep")
TIMEOUT = 20.0


# ---------------------------------------------------------------- worker
def session_options(ort):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.enable_cpu_mem_arena = False
    so.enable_mem_pattern = True
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return so


def describe(o):
    import numpy as np
    if isinstance(o, np.ndarray):
        return list(o.shape)
    if isinstance(o, list):
        return f"seq[{len(o)}]"
    return type(o).__name__


def worker(conn, errpath):
    fd = os.open(errpath, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    import onnxruntime as ort
    so = session_options(ort)
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        cid, mb, feeds = msg
        os.write(2, f"\n@@case {cid}\n".encode())
        try:
            sess = ort.InferenceSession(mb, so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001
            conn.send((cid, "load_exc", str(e)[:400], None))
            continue
        try:
            outs = sess.run(None, feeds)
            conn.send((cid, "ok", "", [describe(o) for o in outs]))
        except Exception as e:  # noqa: BLE001
            conn.send((cid, "run_exc", str(e)[:400], None))


class Slot:
    def __init__(self, k):
        self.k = k
        self.errpath = os.path.join(OUT, f"worker{k}.stderr")
        self.start()

    def start(self):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker, args=(child, self.errpath), daemon=True)
        self.proc.start()
        child.close()
        self.task = None
        self.deadline = None

    def stderr_tail(self, cid):
        try:
            with open(self.errpath, "rb") as f:
                f.seek(0, 2)
                n = f.tell()
                f.seek(max(0, n - 20000))
                t = f.read().decode("utf-8", "replace")
            i = t.rfind(f"@@case {cid}\n")
            t = t[i + len(f"@@case {cid}\n"):] if i >= 0 else t[-600:]
            lines = [ln for ln in t.splitlines() if ln.strip() and "W:onnxruntime" not in ln]
            return "\n".join(lines)[-600:]
        except OSError:
            return ""


def run_tasks(tasks, nworkers=2, on_result=None, fresh_each=False):
    """tasks: iterable of (cid, model_bytes, feeds). Returns {cid: (status, detail, shapes)}."""
    results = {}
    tasks = iter(tasks)
    slots = [Slot(k) for k in range(nworkers)]
    pending = True
    t0 = time.time()
    n = 0
    while True:
        for s in slots:
            if s.task is None and pending:
                try:
                    t = next(tasks)
                except StopIteration:
                    pending = False
                    break
                s.task = t
                s.deadline = time.time() + TIMEOUT
                try:
                    s.conn.send(t)
                except (BrokenPipeError, OSError):
                    s.proc.join(1)
                    s.start()
                    s.task = t
                    s.conn.send(t)
        busy = [s for s in slots if s.task is not None]
        if not busy and not pending:
            break
        ready = wait([s.conn for s in busy] + [s.proc.sentinel for s in busy], timeout=0.5)
        now = time.time()
        for s in busy:
            cid = s.task[0]
            res = None
            if s.conn in ready:
                try:
                    r = s.conn.recv()
                    res = r[1:]
                except (EOFError, OSError):
                    pass
            if res is None and (s.proc.sentinel in ready or not s.proc.is_alive()):
                if s.conn.poll(0):
                    try:
                        res = s.conn.recv()[1:]
                    except (EOFError, OSError):
                        res = None
                if res is None:
                    s.proc.join(2)
                    code = s.proc.exitcode
                    sig = -code if code is not None and code < 0 else None
                    name = signal.Signals(sig).name if sig else f"exit {code}"
                    res = ("signal", name + " | " + s.stderr_tail(cid), None)
                    s.start()
            if res is None and now > s.deadline:
                os.kill(s.proc.pid, signal.SIGKILL)
                s.proc.join(5)
                res = ("hang", f"no answer in {TIMEOUT:.0f} s | " + s.stderr_tail(cid), None)
                s.start()
            if res is not None:
                results[cid] = res
                if on_result:
                    on_result(cid, res)
                s.task = None
                n += 1
                if fresh_each:
                    s.conn.send(None)
                    s.proc.join(5)
                    s.start()
                if n % 500 == 0:
                    print(f"  {n} done, {time.time() - t0:.0f} s", flush=True)
    for s in slots:
        try:
            s.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        s.proc.join(3)
        if s.proc.is_alive():
            s.proc.kill()
    return results


# ---------------------------------------------------------------- cases
def ort_schemas():
    from onnxruntime.capi import _pybind_state as C
    out = {}
    for s in C.get_all_operator_schema():
        out.setdefault((s.domain, s.name), [i.name for i in s.inputs])
    return out


def roles_of(model, schemas):
    """graph input name -> 'Op.schema_input_name' of its first consumer."""
    roles = {}
    for node in model.graph.node:
        names = schemas.get((node.domain if node.domain not in ("ai.onnx",) else "", node.op_type), [])
        for k, i in enumerate(node.input):
            if i and i not in roles:
                nm = names[k] if k < len(names) else (names[-1] if names else f"in{k}")
                roles[i] = f"{node.op_type}.{nm}"
    return roles


def node_test_cases():
    import numpy as np  # noqa: F401
    import onnx
    from onnx import numpy_helper
    base = os.path.join(os.path.dirname(onnx.__file__), "backend/test/data/node")
    for d in sorted(os.listdir(base)):
        mp_ = os.path.join(base, d, "model.onnx")
        ds = os.path.join(base, d, "test_data_set_0")
        if not os.path.exists(mp_) or not os.path.isdir(ds):
            continue
        try:
            m = onnx.load(mp_)
        except Exception:  # noqa: BLE001
            continue
        inits = {i.name for i in m.graph.initializer}
        ginputs = [i for i in m.graph.input if i.name not in inits]
        feeds, ok = {}, True
        for k, gi in enumerate(ginputs):
            p = os.path.join(ds, f"input_{k}.pb")
            if not os.path.exists(p):
                ok = False
                break
            data = open(p, "rb").read()
            tt = gi.type.WhichOneof("value")
            try:
                if tt == "tensor_type":
                    t = onnx.TensorProto()
                    t.ParseFromString(data)
                    feeds[gi.name] = numpy_helper.to_array(t)
                elif tt == "sequence_type":
                    t = onnx.SequenceProto()
                    t.ParseFromString(data)
                    feeds[gi.name] = numpy_helper.to_list(t)
                elif tt == "optional_type":
                    t = onnx.OptionalProto()
                    t.ParseFromString(data)
                    v = numpy_helper.to_optional(t)
                    if v is not None:
                        feeds[gi.name] = v
                else:
                    ok = False
            except Exception:  # noqa: BLE001
                ok = False
            if not ok:
                break
        if not ok:
            continue
        name = d[5:]
        if len(m.graph.node) == 1:
            nd = m.graph.node[0]
            op = (nd.domain + "." if nd.domain not in ("", "ai.onnx") else "") + nd.op_type
        else:
            op = name
        yield dict(name=f"node/{name}", source="node", op=op, model=m, feeds=feeds, custom=[])


def sweep_cases():
    sys.path.insert(0, os.path.join(REPO, "tests", "python"))
    import test_operator_sweep as S
    for name, (m, feeds, _) in S.CASES.items():
        if len(m.graph.node) == 1:
            op = m.graph.node[0].op_type
        else:
            op = name
        yield dict(name=f"sweep/{name}", source="sweep", op=op, model=m, feeds=feeds, custom=[])
    for name, (m, _, shapes) in S.DYN.items():
        import numpy as np
        feeds = {m.graph.input[0].name: np.random.default_rng(1).standard_normal(shapes[0]).astype(np.float32)}
        yield dict(name=f"sweep/{name}", source="sweep", op=name, model=m, feeds=feeds, custom=[])


def extra_cases():
    sys.path.insert(0, HERE)
    import extra_cases as E
    for name, op, m, feeds, custom in E.EXTRA:
        yield dict(name=f"extra/{name}", source="extra", op=op, model=m, feeds=feeds, custom=custom)


def prepare(model, dyn):
    """A copy of model with the listed (input, axis) dims made symbolic; value_info and output shapes dropped."""
    import onnx
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for gi in m.graph.input:
        axes = dyn.get(gi.name)
        if not axes or gi.type.WhichOneof("value") != "tensor_type" or not gi.type.tensor_type.HasField("shape"):
            continue
        dims = gi.type.tensor_type.shape.dim
        for a in axes:
            if a < len(dims):
                dims[a].Clear()
                dims[a].dim_param = f"{gi.name}_dim{a}"
    del m.graph.value_info[:]
    for o in m.graph.output:
        if o.type.WhichOneof("value") == "tensor_type":
            o.type.tensor_type.ClearField("shape")
    return m.SerializeToString()


def variants(case):
    import numpy as np
    feeds = case["feeds"]
    pos = []  # (input, axis, size)
    for k, v in feeds.items():
        if isinstance(v, np.ndarray) and v.ndim >= 1:
            for a, s in enumerate(v.shape):
                if s != 0:
                    pos.append((k, a, s))
    seen = set()
    for k, a, s in pos:
        key = frozenset([(k, a)])
        seen.add(key)
        yield "single", [(k, a)]
    by_size = collections.defaultdict(list)
    for k, a, s in pos:
        by_size[s].append((k, a))
    for s, lst in sorted(by_size.items()):
        key = frozenset(lst)
        if len(lst) >= 2 and key not in seen:
            seen.add(key)
            yield f"joint(size {s})", lst


def zero_feeds(feeds, zs):
    import numpy as np
    out = dict(feeds)
    by = collections.defaultdict(list)
    for k, a in zs:
        by[k].append(a)
    for k, axes in by.items():
        v = feeds[k]
        shp = list(v.shape)
        for a in axes:
            shp[a] = 0
        out[k] = np.zeros(shp, dtype=v.dtype) if v.dtype != object else np.empty(shp, dtype=object)
    return out


# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    ap.add_argument("--sources", default="node,sweep,extra")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    os.makedirs(os.path.join(OUT, "crashes"), exist_ok=True)
    for f in glob.glob(os.path.join(OUT, "worker*.stderr")):
        os.remove(f)
    schemas = ort_schemas()
    gens = {"node": node_test_cases, "sweep": sweep_cases, "extra": extra_cases}
    cases = []
    for src in args.sources.split(","):
        for c in gens[src]():
            if args.only and args.only not in c["name"]:
                continue
            c["roles"] = roles_of(c["model"], schemas)
            cases.append(c)
    print(f"{len(cases)} cases", flush=True)
    t0 = time.time()

    # phase 1: each case as given (static shapes), to know which ones onnxruntime runs at all
    base = run_tasks(((i, prepare(c["model"], {}), c["feeds"]) for i, c in enumerate(cases)), args.workers)
    print(f"baseline: {collections.Counter(r[0] for r in base.values())}, {time.time() - t0:.0f} s", flush=True)

    # phase 2: the empty-input variants of every case whose baseline ran
    meta = {}
    resf = open(os.path.join(OUT, "results.jsonl"), "w")
    for i, c in enumerate(cases):
        resf.write(json.dumps(dict(id=f"b{i}", case=c["name"], op=c["op"], variant="baseline", status=base[i][0],
                                   detail=base[i][1], shapes=base[i][2])) + "\n")

    def gen():
        vid = 0
        for i, c in enumerate(cases):
            if base[i][0] != "ok" and base[i][0] not in ("signal", "hang"):
                continue
            for kind, zs in variants(c):
                vid += 1
                dyn = collections.defaultdict(list)
                for k, a in zs:
                    dyn[k].append(a)
                mb = prepare(c["model"], dyn)
                fd = zero_feeds(c["feeds"], zs)
                meta[vid] = (i, kind, zs, mb, fd)
                yield vid, mb, fd
            for cu in c["custom"]:
                label, over = cu[0], cu[1]
                vid += 1
                fd = dict(c["feeds"], **over)
                mb = prepare(c["model"], cu[2] if len(cu) > 2 else {})
                meta[vid] = (i, f"custom: {label}", [], mb, fd)
                yield vid, mb, fd

    def on_result(vid, res):
        i, kind, zs, mb, fd = meta[vid]
        c = cases[i]
        zdesc = [dict(input=k, role=c["roles"].get(k, k), axis=a, shape=list(c["feeds"][k].shape)) for k, a in zs]
        rec = dict(id=vid, case=c["name"], op=c["op"], variant=kind, zeroed=zdesc, status=res[0], detail=res[1],
                   shapes=res[2])
        resf.write(json.dumps(rec) + "\n")
        resf.flush()
        if res[0] in ("signal", "hang"):
            p = os.path.join(OUT, "crashes", str(vid))
            open(p + ".onnx", "wb").write(mb)
            pickle.dump(fd, open(p + ".pkl", "wb"))
            json.dump(rec, open(p + ".json", "w"), indent=1)
            print(f"  KILLED {c['name']} {kind} {zdesc} -> {res[0]} {res[1][:120]!r}", flush=True)
        else:
            meta[vid] = None  # free

    res = run_tasks(gen(), args.workers, on_result)
    resf.close()
    print(f"variants: {len(res)} run, {collections.Counter(r[0] for r in res.values())}, {time.time() - t0:.0f} s", flush=True)

    # phase 3: confirm each kill alone in a fresh process
    kills = sorted(glob.glob(os.path.join(OUT, "crashes", "*.json")), key=lambda p: int(os.path.basename(p)[:-5]))
    kill_ids = [int(os.path.basename(p)[:-5]) for p in kills]
    kill_ids = [v for v in kill_ids if v in res]

    def conf_tasks():
        for v in kill_ids:
            p = os.path.join(OUT, "crashes", str(v))
            yield v, open(p + ".onnx", "rb").read(), pickle.load(open(p + ".pkl", "rb"))

    conf = run_tasks(conf_tasks(), args.workers, fresh_each=True)
    for v in kill_ids:
        p = os.path.join(OUT, "crashes", f"{v}.json")
        rec = json.load(open(p))
        rec["confirm"] = list(conf[v][:2])
        json.dump(rec, open(p, "w"), indent=1)
    print(f"confirmed: {collections.Counter(conf[v][0] for v in kill_ids)}; total {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
