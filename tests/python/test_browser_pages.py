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
