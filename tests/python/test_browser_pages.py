"""Web pages in a browser against `anemone serve` (docs/SECURITY.md, "Web
pages and browsers"; `--http-allow-origin`).

A browser sends a page's POST to another site without asking when its body
is plain text, and adds the page's `Origin` header. Before
`--http-allow-origin`, anemone (and tritonserver 2.51, which has no CORS
setting) served such requests: any page open in the browser of someone
running `anemone serve` on their laptop could change the server's settings,
unload models or run inferences, though it could not read the answers.
These tests send what a browser sends (the `Origin` header, `text/plain`
bodies, CORS preflights), and check that clients that are no browser
(tritonclient, requests without `Origin`) see no change. Each refusal test
failed on the binary before the change (200, and the change applied).
"""
import json
import os
import shutil
import subprocess
import threading

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from serve_support import ROOT, start_serve, stop_serve, wait_ready

ADD = ROOT / "examples/models/add/1/model.onnx"  # x, y FP32 [-1, 4] -> sum, diff
X = np.array([[1.5, -2.0, 3.25, 4.0]], np.float32)
Y = np.array([[10.0, 20.5, -30.0, 40.0]], np.float32)
PAGE = "http://localhost:3000"
EVIL = "https://evil.example"


def add_body():
    return json.dumps({"inputs": [
        {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": X.ravel().tolist()},
        {"name": "y", "datatype": "FP32", "shape": [1, 4], "data": Y.ravel().tolist()},
    ]})


def check_add(answer):
    outputs = {o["name"]: np.array(o["data"], np.float32).reshape(o["shape"]) for o in answer["outputs"]}
    np.testing.assert_array_equal(outputs["sum"], X + Y)
    np.testing.assert_array_equal(outputs["diff"], X - Y)


def serve(tmp_path, *flags, env=None):
    repo = tmp_path / "repo"
    for name in ("add", "add2"):
        (repo / name / "1").mkdir(parents=True, exist_ok=True)
        shutil.copy(ADD, repo / name / "1" / "model.onnx")
    log = open(tmp_path / "serve.log", "w")
    proc, addresses = start_serve(repo, "--metrics-port", "0", "--model-control-mode", "explicit",
                                  "--load-model", "add", "--load-model", "add2", *flags, stderr=log, env=env)
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    wait_ready(addresses["HTTP"], seconds=90)
    return proc, f"http://{addresses['HTTP']}"


@pytest.fixture(scope="module")
def default_server(tmp_path_factory):
    """No --http-allow-origin: no page may use the API."""
    d = tmp_path_factory.mktemp("browser_default")
    proc, url = serve(d)
    try:
        yield url, d / "serve.log"
    finally:
        stop_serve(proc)


def simple_post(url, body, origin):
    """A POST as a page's `fetch(url, {method: "POST", body})` sends it:
    `text/plain`, the page's origin, no preflight."""
    return requests.post(url, data=body, headers={"Origin": origin, "Content-Type": "text/plain;charset=UTF-8"},
                         timeout=30)


def test_a_page_cannot_change_the_servers_settings(default_server):
    url, _ = default_server
    before = requests.get(f"{url}/v2/anemone/config", timeout=10).json()
    r = simple_post(f"{url}/v2/anemone/config", json.dumps({"max-concurrency": 1, "gate-fallback": False}), EVIL)
    assert r.status_code == 403, (r.status_code, r.text)
    error = r.json()["error"]
    assert f"'{EVIL}'" in error and f"--http-allow-origin {EVIL}" in error, error
    assert "not affected" in error, error
    assert "access-control-allow-origin" not in {k.lower() for k in r.headers}
    assert "Origin" in r.headers.get("Vary", "")
    assert requests.get(f"{url}/v2/anemone/config", timeout=10).json() == before


def test_a_page_cannot_unload_a_model_nor_run_one(default_server):
    url, _ = default_server
    r = simple_post(f"{url}/v2/repository/models/add2/unload", "{}", EVIL)
    assert r.status_code == 403, (r.status_code, r.text)
    assert requests.get(f"{url}/v2/models/add2/ready", timeout=10).status_code == 200
    r = simple_post(f"{url}/v2/models/add/infer", add_body(), EVIL)
    assert r.status_code == 403, (r.status_code, r.text)
    # A page's GET (metadata, a model's config) is refused as well.
    r = requests.get(f"{url}/v2/models/add/config", headers={"Origin": EVIL}, timeout=10)
    assert r.status_code == 403, (r.status_code, r.text)
    # `Origin: null` (a file:// page, a sandboxed frame) is an origin like any other.
    assert simple_post(f"{url}/v2/models/add/infer", add_body(), "null").status_code == 403


def test_clients_that_are_no_browser_are_not_affected(default_server):
    url, _ = default_server
    r = requests.post(f"{url}/v2/models/add/infer", data=add_body(), timeout=30)
    assert r.status_code == 200, r.text
    check_add(r.json())
    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    inputs = [httpclient.InferInput("x", [1, 4], "FP32"), httpclient.InferInput("y", [1, 4], "FP32")]
    inputs[0].set_data_from_numpy(X, binary_data=True)
    inputs[1].set_data_from_numpy(Y, binary_data=True)
    result = client.infer("add", inputs)
    np.testing.assert_array_equal(result.as_numpy("sum"), X + Y)
    assert requests.get(f"{url}/metrics", timeout=10).status_code == 200


def test_the_log_names_a_refused_origin_once_with_the_flag_to_allow_it(default_server):
    url, log = default_server
    origin = "https://once.example"
    for _ in range(3):
        assert simple_post(f"{url}/v2/models/add/infer", add_body(), origin).status_code == 403
    lines = [line for line in log.read_text(errors="replace").splitlines() if origin in line]
    assert len(lines) == 1, lines
    assert "WARN" in lines[0] and f"--http-allow-origin {origin}" in lines[0] and "/v2/models/add/infer" in lines[0]


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory):
    """--http-allow-origin http://localhost:3000 (a UI in development), and the
    model repository behind a key, as a UI with an admin page would use it."""
    d = tmp_path_factory.mktemp("browser_ui")
    proc, url = serve(d, "--http-allow-origin", PAGE, "--http-restricted-api", "model-repository:admin-key=k3y")
    try:
        yield url
    finally:
        stop_serve(proc)


def test_an_allowed_page_gets_its_preflight_answered(ui_server):
    r = requests.options(f"{ui_server}/v2/repository/models/add2/load", headers={
        "Origin": PAGE, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "admin-key,content-type"}, timeout=10)
    assert r.status_code == 204, (r.status_code, r.text)
    assert r.headers["Access-Control-Allow-Origin"] == PAGE
    assert set(r.headers["Access-Control-Allow-Methods"].replace(" ", "").split(",")) == {"GET", "POST"}
    assert r.headers["Access-Control-Allow-Headers"] == "admin-key,content-type"
    assert int(r.headers["Access-Control-Max-Age"]) > 0
    assert "Origin" in r.headers["Vary"]


def test_an_allowed_page_reads_its_answers(ui_server):
    r = requests.post(f"{ui_server}/v2/models/add/infer", data=add_body(),
                      headers={"Origin": PAGE, "Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 200, r.text
    check_add(r.json())
    assert r.headers["Access-Control-Allow-Origin"] == PAGE
    assert "Inference-Header-Content-Length" in r.headers["Access-Control-Expose-Headers"]
    assert "Origin" in r.headers["Vary"]
    # An error is readable by the page too (the browser hands it over only with the header).
    r = requests.post(f"{ui_server}/v2/models/nope/infer", data=add_body(), headers={"Origin": PAGE}, timeout=30)
    assert r.status_code in (400, 404) and r.headers["Access-Control-Allow-Origin"] == PAGE
    # The restricted group still wants its key, from an allowed page as from anyone.
    r = requests.post(f"{ui_server}/v2/repository/models/add2/unload", headers={"Origin": PAGE}, timeout=30)
    assert r.status_code == 403 and "admin-key" in r.json()["error"], r.text
    r = requests.post(f"{ui_server}/v2/repository/models/add2/unload",
                      headers={"Origin": PAGE, "admin-key": "k3y"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["Access-Control-Allow-Origin"] == PAGE


def test_another_page_is_still_refused_naming_the_allowed_ones(ui_server):
    r = requests.options(f"{ui_server}/v2/models/add/infer", headers={
        "Origin": EVIL, "Access-Control-Request-Method": "POST"}, timeout=10)
    assert r.status_code == 403 and "access-control-allow-origin" not in {k.lower() for k in r.headers}
    r = simple_post(f"{ui_server}/v2/models/add/infer", add_body(), EVIL)
    assert r.status_code == 403
    assert f"the origins allowed are {PAGE}" in r.json()["error"], r.text
    # Browsers send the origin in lowercase without a default port; a look-alike is another origin.
    assert simple_post(f"{ui_server}/v2/models/add/infer", add_body(), PAGE + ".evil.example").status_code == 403
    assert simple_post(f"{ui_server}/v2/models/add/infer", add_body(), "http://localhost:3001").status_code == 403


def test_any_page_from_the_environment(tmp_path):
    proc, url = serve(tmp_path, env={"ANEMONE_HTTP_ALLOW_ORIGIN": "*"})
    try:
        for origin in (EVIL, "null"):
            r = simple_post(f"{url}/v2/models/add/infer", add_body(), origin)
            assert r.status_code == 200, r.text
            assert r.headers["Access-Control-Allow-Origin"] == origin
            check_add(r.json())
    finally:
        stop_serve(proc)


@pytest.mark.parametrize("value, why", [
    ("localhost:3000", "no scheme"),
    ("https://ui.example.com/app", "no path"),
    ("ftp://ui.example.com", "not http or https"),
])
def test_a_value_that_is_no_origin_stops_start_up_naming_it(tmp_path, value, why):
    binary = os.environ.get("ANEMONE_BIN", str(ROOT / "target/debug/anemone"))
    r = subprocess.run([binary, "serve", "--model-repository", str(ROOT / "examples/models"), "--http-port", "0",
                        "--grpc-port", "0", "--http-allow-origin", value], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert f"--http-allow-origin '{value}'" in r.stderr and why in r.stderr, r.stderr


def browser():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(browser() is None, reason="no Chromium here (apt-get install chromium): the real-browser check "
                                              "runs where one is installed; the tests above send what it sends")
def test_a_page_in_a_real_browser(tmp_path):
    """Headless Chromium loads a page from another origin whose script
    POSTs a settings change as plain text and runs an inference: without
    --http-allow-origin the script sees only network errors and the setting
    is unchanged (the binary before the change: also errors, but the
    setting changed to 3); with the page's origin allowed it reads numpy's
    sum and difference."""
    import functools
    import http.server
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pages = tmp_path / "pages"
    pages.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(pages))
    handler.log_message = lambda *a: None
    site = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    origin = f"http://localhost:{port}"

    def visit(url):
        script = f"""(async () => {{
  const out = {{}};
  try {{ const r = await fetch('{url}/v2/anemone/config', {{method: 'POST', body: '{{"max-concurrency": 3}}'}});
        out.config = r.status; }} catch (e) {{ out.config = String(e); }}
  try {{ const r = await fetch('{url}/v2/models/add/infer', {{method: 'POST',
            headers: {{'Content-Type': 'application/json'}}, body: {json.dumps(add_body())}}});
        out.infer = (await r.json()).outputs; }} catch (e) {{ out.infer = String(e); }}
  document.body.innerText = 'RESULT' + JSON.stringify(out) + 'END';
}})();"""
        (pages / "index.html").write_text(f"<html><body>waiting<script>{script}</script></body></html>")
        r = subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                            "--dump-dom", f"{origin}/index.html"], capture_output=True, text=True, timeout=120)
        assert "RESULT" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
        return json.loads(r.stdout.split("RESULT", 1)[1].split("END", 1)[0])

    def concurrency(url):
        settings = requests.get(f"{url}/v2/anemone/config", timeout=10).json()["settings"]
        return [s["value"] for s in settings if s["key"] == "max-concurrency"][0]

    try:
        for allowed in (False, True):
            d = tmp_path / f"allowed_{allowed}"
            d.mkdir()
            proc, url = serve(d, *(["--http-allow-origin", origin] if allowed else []))
            try:
                before = concurrency(url)
                seen = visit(url)
                if allowed:
                    assert seen["config"] == 200 and concurrency(url) == "3", seen
                    check_add({"outputs": seen["infer"]})
                else:
                    assert "Failed to fetch" in seen["config"] and "Failed to fetch" in seen["infer"], seen
                    assert concurrency(url) == before != "3"
            finally:
                stop_serve(proc)
    finally:
        site.shutdown()


# DNS rebinding (docs/SECURITY.md, "Pages that point their name at the
# server"; `--http-allow-host`). A page at http://rebound.test:PORT whose
# name is then pointed at 127.0.0.1 fetches its "own" URLs, which reach the
# server as same-origin requests: GETs without `Origin`, so the origin
# check cannot see them, and the page reads the answers. What Chromium 156
# sends for such a fetch (`test_a_rebound_page_in_a_real_browser`): no
# Origin and, over plain HTTP to a name that is not localhost, no
# Sec-Fetch-* headers either; only its Host gives it away.
REBOUND = "rebound.test"
SAME_ORIGIN = {"Accept": "*/*", "Accept-Language": "en-US,en;q=0.9",
               "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                             "HeadlessChrome/156.0.0.0 Safari/537.36"}
READABLE = ["/v2/models/add/config", "/v2/models/add", "/v2/models/stats", "/v2/anemone/config", "/v2",
            "/v2/logging", "/v2/trace/setting", "/metrics"]


def serve_all(tmp_path, *flags, host=None):
    """`serve`, listening on `host` when given; returns the process and the
    HTTP and metrics ports' URLs (each on 127.0.0.1)."""
    repo = tmp_path / "repo"
    (repo / "add" / "1").mkdir(parents=True, exist_ok=True)
    shutil.copy(ADD, repo / "add" / "1" / "model.onnx")
    log = open(tmp_path / "serve.log", "w")
    proc, addresses = start_serve(repo, "--metrics-port", "0", *(["--host", host] if host else []), *flags,
                                  stderr=log)
    kind, _, rest = proc.stdout.readline().partition(" listening on ")
    assert kind == "Metrics" and rest, (kind, rest)
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    port = lambda address: address.rsplit(":", 1)[1]
    url, metrics = (f"http://127.0.0.1:{port(a)}" for a in (addresses["HTTP"], rest.strip()))
    wait_ready(url.removeprefix("http://"), seconds=90)
    return proc, url, metrics


def from_page(url, path, host, headers=SAME_ORIGIN):
    """A GET as the page's script sends it for `path` (`fetch(path)`), the
    page's name `host`."""
    port = url.rsplit(":", 1)[1]
    referer = {"Referer": f"http://{host}:{port}/page.html"} if headers is SAME_ORIGIN else {}
    return requests.get(f"{url}{path}", headers={"Host": f"{host}:{port}", **headers, **referer}, timeout=10)


@pytest.fixture(scope="module")
def loopback_server(tmp_path_factory):
    """Listening on 127.0.0.1 (the default), no --http-allow-host."""
    d = tmp_path_factory.mktemp("rebinding_default")
    proc, url, metrics = serve_all(d)
    try:
        yield url, metrics, d / "serve.log"
    finally:
        stop_serve(proc)


@pytest.mark.parametrize("path", READABLE)
def test_a_rebound_page_cannot_read_the_server(loopback_server, path):
    """Each GET a rebound page could read is refused with 403, naming the
    host and the flag, and gives nothing away (the binary before the
    change: 200 with the answer)."""
    url, metrics, _ = loopback_server
    base = metrics if path == "/metrics" else url
    r = from_page(base, path, REBOUND)
    assert r.status_code == 403, (r.status_code, r.text[:300])
    error = r.json()["error"]
    assert f"'{REBOUND}:{base.rsplit(':', 1)[1]}'" in error and f"--http-allow-host {REBOUND}" in error, error
    assert "DNS rebinding" in error and "IP addresses, localhost and names of one label" in error, error
    assert '"add"' not in r.text and "anemone_" not in r.text, r.text
    # The same page under another name of the same kind: a trailing dot, capitals, a port-less Host.
    assert from_page(base, path, "Rebound.Test.").status_code == 403
    assert requests.get(f"{base}{path}", headers={"Host": REBOUND, **SAME_ORIGIN}, timeout=10).status_code == 403


@pytest.mark.parametrize("host", ["localhost", "app.localhost", "127.0.0.1", "127.0.0.2", "[::1]", "mybox"])
def test_the_server_answers_to_addresses_localhost_and_names_of_one_label(loopback_server, host):
    """Names a public page cannot have: IP addresses, `localhost` and the
    names under it (browsers resolve them to the machine without DNS), and
    names of one label (a machine's own name, a proxy's upstream name)."""
    url, metrics, _ = loopback_server
    r = from_page(url, "/v2/models/add/config", host)
    assert r.status_code == 200 and r.json()["name"] == "add", r.text
    r = from_page(metrics, "/metrics", host)
    assert r.status_code == 200 and "anemone_" in r.text, r.text[:300]


def test_a_proxy_on_this_machine_is_served_by_its_upstream_name(loopback_server):
    """nginx passes its upstream's name as Host by default
    (deploy/nginx/anemone.conf: `anemone_http`): served. A proxy that passes
    the public name on (`proxy_set_header Host $host`) gets 403 naming the
    flag that serves it; tritonclient (`localhost:PORT`) is served."""
    url, metrics, _ = loopback_server
    r = requests.post(f"{url}/v2/models/add/infer", data=add_body(), headers={"Host": "anemone_http"}, timeout=30)
    assert r.status_code == 200, r.text
    check_add(r.json())
    assert from_page(metrics, "/metrics", "anemone_http", {}).status_code == 200
    r = requests.post(f"{url}/v2/models/add/infer", data=add_body(), headers={"Host": "models.example.com"},
                      timeout=30)
    assert r.status_code == 403 and "--http-allow-host models.example.com" in r.json()["error"], r.text
    client = httpclient.InferenceServerClient(url.removeprefix("http://").replace("127.0.0.1", "localhost"))
    inputs = [httpclient.InferInput("x", [1, 4], "FP32"), httpclient.InferInput("y", [1, 4], "FP32")]
    inputs[0].set_data_from_numpy(X, binary_data=True)
    inputs[1].set_data_from_numpy(Y, binary_data=True)
    np.testing.assert_array_equal(client.infer("add", inputs).as_numpy("diff"), X - Y)


def test_the_log_names_a_refused_host_once_with_the_flag_to_allow_it(loopback_server):
    url, _, log = loopback_server
    for _ in range(3):
        assert from_page(url, "/v2/models/add", "once.test").status_code == 403
    lines = [line for line in log.read_text(errors="replace").splitlines() if "once.test" in line]
    assert len(lines) == 1, lines
    assert "WARN" in lines[0] and "--http-allow-host once.test" in lines[0] and "/v2/models/add" in lines[0]


def test_names_given_are_served_and_others_still_refused(tmp_path):
    proc, url, metrics = serve_all(tmp_path, "--http-allow-host", f"{REBOUND},.corp.test")
    try:
        for host in (REBOUND, "corp.test", "models.corp.test"):
            r = from_page(url, "/v2/models/add/config", host)
            assert r.status_code == 200 and r.json()["name"] == "add", (host, r.text)
            assert from_page(metrics, "/metrics", host).status_code == 200
        r = from_page(url, "/v2/models/add/config", "other.test")
        assert r.status_code == 403 and f"and to {REBOUND},.corp.test (--http-allow-host)" in r.json()["error"], r.text
    finally:
        stop_serve(proc)


def test_on_every_interface_hosts_are_checked_only_when_names_are_given(tmp_path):
    """On 0.0.0.0 the server is reached by names the operator chose (a
    Service, a balancer): not checked by default; checked once names are
    given (a browser's request for another host: 403)."""
    d = tmp_path / "default"
    d.mkdir()
    proc, url, _ = serve_all(d, host="0.0.0.0")
    try:
        assert from_page(url, "/v2/models/add/config", REBOUND).status_code == 200
    finally:
        stop_serve(proc)
    d = tmp_path / "named"
    d.mkdir()
    proc, url, metrics = serve_all(d, "--http-allow-host", "models.example.com", host="0.0.0.0")
    try:
        assert from_page(url, "/v2/models/add/config", "models.example.com").status_code == 200
        assert from_page(url, "/v2/models/add/config", REBOUND).status_code == 403
        assert from_page(metrics, "/metrics", REBOUND).status_code == 403
    finally:
        stop_serve(proc)


def test_any_host_from_the_environment(tmp_path):
    proc, url = serve(tmp_path, env={"ANEMONE_HTTP_ALLOW_HOST": "*"})
    try:
        r = from_page(url, "/v2/models/add/config", REBOUND)
        assert r.status_code == 200 and r.json()["name"] == "add", r.text
    finally:
        stop_serve(proc)


@pytest.mark.parametrize("value, why", [
    ("http://models.example.com", "no scheme"),
    ("models.example.com:8000", "no port"),
    ("models.example.com/v2", "'/'"),
])
def test_a_value_that_is_no_host_name_stops_start_up_naming_it(value, why):
    binary = os.environ.get("ANEMONE_BIN", str(ROOT / "target/debug/anemone"))
    r = subprocess.run([binary, "serve", "--model-repository", str(ROOT / "examples/models"), "--http-port", "0",
                        "--grpc-port", "0", "--http-allow-host", value], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert f"--http-allow-host '{value}'" in r.stderr and why in r.stderr, r.stderr


class Rebound:
    """What a page at http://rebound.test:PORT reaches once its name points
    at the server: its own page at `/page.html`, and anemone for every
    other request, the browser's bytes passed on unchanged (the Host and
    Sec-Fetch-* headers it sent) and anemone's answer passed back."""

    def __init__(self, anemone_port, page):
        import socket
        self.anemone_port, self.page = anemone_port, page.encode()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.one, args=(conn,), daemon=True).start()

    def one(self, conn):
        import socket
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(65536)
            if not chunk:
                conn.close()
                return
            head += chunk
        self.requests.append(head.split(b"\r\n\r\n")[0].decode(errors="replace"))
        if head.startswith(b"GET /page.html "):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(self.page) + self.page)
            conn.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.anemone_port))
        upstream.sendall(head)

        def pipe(src, dst):
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
        threading.Thread(target=pipe, args=(upstream, conn), daemon=True).start()
        pipe(conn, upstream)

    def close(self):
        self.listener.close()


@pytest.mark.skipif(browser() is None, reason="no Chromium here (apt-get install chromium): the real-browser check "
                                              "runs where one is installed; the tests above send what it sends")
def test_a_rebound_page_in_a_real_browser(tmp_path):
    """Headless Chromium with rebound.test pointed at 127.0.0.1
    (`--host-resolver-rules`) opens http://rebound.test:PORT/page.html,
    whose script reads `/v2/models/add/config` and `/v2/anemone/config`
    from its own origin, which reach anemone unchanged. By default it reads
    403s (the binary before the change: the model's config and the
    server's settings); with `--http-allow-host rebound.test` it reads the
    config. Chromium's requests carry no Origin (the tests above send
    what it sends)."""
    script = """(async () => {
  const out = {};
  for (const path of ['/v2/models/add/config', '/v2/anemone/config']) {
    try { const r = await fetch(path); out[path] = [r.status, (await r.text()).slice(0, 1000)]; }
    catch (e) { out[path] = String(e); }
  }
  document.body.innerText = 'RESULT' + JSON.stringify(out) + 'END';
})();"""
    page = f"<html><body>waiting<script>{script}</script></body></html>"
    for allowed in (False, True):
        d = tmp_path / f"allowed_{allowed}"
        d.mkdir()
        proc, url, _ = serve_all(d, *(["--http-allow-host", REBOUND] if allowed else []))
        relay = Rebound(int(url.rsplit(":", 1)[1]), page)
        try:
            r = subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                                f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1", "--dump-dom",
                                f"http://{REBOUND}:{relay.port}/page.html"], capture_output=True, text=True, timeout=120)
            assert "RESULT" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
            seen = json.loads(r.stdout.split("RESULT", 1)[1].split("END", 1)[0])
            fetched = [h for h in relay.requests if h.startswith("GET /v2/models/add/config ")]
            assert fetched, relay.requests
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (line.partition(":") for line in fetched[0].split("\r\n")[1:])}
            assert headers["host"] == f"{REBOUND}:{relay.port}" and "origin" not in headers, headers
            status, body = seen["/v2/models/add/config"]
            if allowed:
                assert status == 200 and '"name":"add"' in body, seen
            else:
                assert status == 403 and f"--http-allow-host {REBOUND}" in body, seen
                assert seen["/v2/anemone/config"][0] == 403, seen
        finally:
            relay.close()
            stop_serve(proc)
