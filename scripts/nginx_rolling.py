#!/usr/bin/env python3
"""Replicas behind nginx, under load, through a rolling restart (SIGTERM) and
a crash (SIGKILL). Prints failed requests and latency around each event, and
the shutdown timeline of the SIGTERM'd replica (when readiness turned false,
when its listener closed, when it exited).

    scripts/nginx_rolling.py [--replicas 3] [--clients 8] [--binary PATH]

The binary: --binary, else $ANEMONE_BIN, else target/debug/anemone. nginx is
installed from Debian (apt-get) when missing. Exits 1 if a request failed
around the SIGTERM (a graceful restart must lose none).
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BODY = json.dumps({"inputs": [
    {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
    {"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [10, 20, 30, 40]},
]}).encode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_nginx():
    if shutil.which("nginx") or Path("/usr/sbin/nginx").exists():
        return shutil.which("nginx") or "/usr/sbin/nginx"
    print("installing nginx from Debian ...", flush=True)
    subprocess.run(["apt-get", "install", "-y", "nginx-light"], check=False, stdout=subprocess.DEVNULL)
    if not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        subprocess.run(["apt-get", "update"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "nginx"], check=True, stdout=subprocess.DEVNULL)
    return shutil.which("nginx") or "/usr/sbin/nginx"


class Replica:
    def __init__(self, binary, repo, http, grpc, log):
        self.binary, self.repo, self.http, self.grpc, self.log = binary, repo, http, grpc, log
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--model-repository", str(self.repo), "--http-port", str(self.http),
             "--grpc-port", str(self.grpc), "--exit-timeout-secs", "10", "--threads", "1", "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "a"))

    def ready(self):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.http, timeout=1)
            c.request("GET", "/v2/health/ready")
            return c.getresponse().status == 200
        except OSError:
            return False

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while not self.ready():
            if time.time() > deadline:
                sys.exit(f"replica on {self.http} not ready after {timeout} s (log: {self.log})")
            time.sleep(0.05)


def client_loop(port, stop, results, lock):
    conn = None
    while not stop.is_set():
        t0 = time.time()
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", "/v2/models/add/infer", BODY, {"Content-Type": "application/json"})
            r = conn.getresponse()
            body = r.read()
            ok = r.status == 200 and {o["name"]: o["data"] for o in json.loads(body)["outputs"]}["sum"] == [11, 22, 33, 44]
            outcome = "ok" if ok else f"HTTP {r.status}"
        except (OSError, http.client.HTTPException, ValueError) as e:
            outcome = type(e).__name__
            conn = None
        with lock:
            results.append((t0, time.time() - t0, outcome))


def watch_shutdown(replica, timeline, stop):
    """Polls the replica's readiness and listener every 2 ms, noting the first
    503 and the first refused connection."""
    while not stop.is_set() and ("listener closed" not in timeline):
        try:
            c = http.client.HTTPConnection("127.0.0.1", replica.http, timeout=1)
            c.request("GET", "/v2/health/ready")
            status = c.getresponse().status
            if status != 200 and "readiness false" not in timeline:
                timeline["readiness false"] = time.time()
        except ConnectionRefusedError:
            timeline["listener closed"] = time.time()
        except OSError:
            pass
        time.sleep(0.002)


def window(results, start, end):
    rows = [r for r in results if start <= r[0] < end]
    lat = sorted(r[1] for r in rows if r[2] == "ok")
    failed = [r[2] for r in rows if r[2] != "ok"]
    pct = lambda p: 1000 * lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")  # noqa: E731
    return len(rows), failed, pct(0.5), pct(0.99), 1000 * lat[-1] if lat else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--binary", default=os.environ.get("ANEMONE_BIN", str(ROOT / "target/debug/anemone")))
    args = ap.parse_args()
    assert args.replicas >= 3, "one replica is SIGTERM'd, another SIGKILL'd: use 3 or more"
    nginx = ensure_nginx()
    tmp = Path(tempfile.mkdtemp(prefix="anemone-nginx-"))
    repo = tmp / "models"
    shutil.copytree(ROOT / "examples/models", repo)
    replicas = [Replica(args.binary, repo, free_port(), free_port(), tmp / f"replica{i}.log")
                for i in range(args.replicas)]
    try:
        run(args, nginx, tmp, replicas)
    finally:
        for r in replicas:
            if r.proc is not None and r.proc.poll() is None:
                r.proc.kill()
                r.proc.wait()


def run(args, nginx, tmp, replicas):
    for r in replicas:
        r.start()
    for r in replicas:
        r.wait_ready()
    listen_http, listen_grpc = free_port(), free_port()
    conf = (ROOT / "deploy/nginx/anemone.conf").read_text()
    conf = conf.replace("@PREFIX@", str(tmp)).replace("@LISTEN_HTTP@", f"127.0.0.1:{listen_http}")
    conf = conf.replace("@LISTEN_GRPC@", f"127.0.0.1:{listen_grpc}")
    conf = conf.replace("@HTTP_SERVERS@", "\n        ".join(
        f"server 127.0.0.1:{r.http} max_fails=1 fail_timeout=2s;" for r in replicas))
    conf = conf.replace("@GRPC_SERVERS@", "\n        ".join(
        f"server 127.0.0.1:{r.grpc} max_fails=1 fail_timeout=2s;" for r in replicas))
    (tmp / "nginx.conf").write_text(conf)
    ngx = subprocess.Popen([nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"],
                           stderr=open(tmp / "nginx.stderr", "w"))
    time.sleep(0.5)
    if ngx.poll() is not None:
        sys.exit(f"nginx exited: {(tmp / 'nginx.stderr').read_text()}")

    results, lock, stop = [], threading.Lock(), threading.Event()
    clients = [threading.Thread(target=client_loop, args=(listen_http, stop, results, lock), daemon=True)
               for _ in range(args.clients)]
    t_begin = time.time()
    for c in clients:
        c.start()
    time.sleep(5)

    # 1. Rolling restart: SIGTERM, watch the shutdown, start it again.
    victim = replicas[0]
    timeline, watch_stop = {}, threading.Event()
    watcher = threading.Thread(target=watch_shutdown, args=(victim, timeline, watch_stop), daemon=True)
    watcher.start()
    time.sleep(0.2)
    t_term = time.time()
    victim.proc.send_signal(signal.SIGTERM)
    status = victim.proc.wait(timeout=30)
    timeline["exited"] = time.time()
    watch_stop.set()
    victim.start()
    victim.wait_ready()
    t_term_back = time.time()
    time.sleep(5)

    # 2. Crash: SIGKILL another, start it again after 3 s.
    crashed = replicas[1]
    t_kill = time.time()
    crashed.proc.send_signal(signal.SIGKILL)
    crashed.proc.wait()
    time.sleep(3)
    crashed.start()
    crashed.wait_ready()
    t_kill_back = time.time()
    time.sleep(5)
    stop.set()
    for c in clients:
        c.join(timeout=35)
    t_end = time.time()

    print(f"binary {args.binary}; {args.replicas} replicas (1 thread each) behind nginx "
          f"{subprocess.run([nginx, '-v'], capture_output=True, text=True).stderr.strip()}; {args.clients} clients")
    print(f"SIGTERM'd replica exited with status {status}; timeline from the signal (ms):")
    for k, v in sorted(timeline.items(), key=lambda kv: kv[1]):
        print(f"  {k:16} +{1000 * (v - t_term):7.1f}")
    if "readiness false" not in timeline:
        print("  (readiness false: not seen apart from the listener closing, which came < 2 ms after it)")
    print(f"  {'ready again':16} +{1000 * (t_term_back - t_term):7.1f}")
    print(f"{'window':34} {'requests':>8} {'failed':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    rows = [
        ("steady state (first 5 s)", t_begin, t_term),
        ("SIGTERM -1 s .. ready again +1 s", t_term - 1, t_term_back + 1),
        ("SIGKILL -1 s .. back +1 s", t_kill - 1, t_kill_back + 1),
        ("whole run", t_begin, t_end),
    ]
    failed_term = []
    for name, a, b in rows:
        n, failed, p50, p99, mx = window(results, a, b)
        print(f"{name:34} {n:8} {len(failed):6} {p50:7.1f} {p99:7.1f} {mx:7.1f}"
              + (f"  ({', '.join(sorted(set(failed)))})" if failed else ""))
        if name.startswith("SIGTERM"):
            failed_term = failed
    ngx.send_signal(signal.SIGQUIT)
    ngx.wait(timeout=10)
    for r in replicas:
        if r.proc.poll() is None:
            r.proc.send_signal(signal.SIGTERM)
            r.proc.wait(timeout=30)
    print(f"logs in {tmp}")
    if failed_term:
        sys.exit("FAILED: requests were lost around the SIGTERM")


if __name__ == "__main__":
    main()
