"""docs/DEPLOY.md and docs/SECURITY.md (and the parts of README.md,
docs/SERVING.md, docs/CONFIGURATION.md and docs/RELIABILITY.md they point
to), read as an operator deploying anemone would, and checked on this
machine: TLS and mutual TLS on both listeners (certificates made here with
the `cryptography` package), the restricted API groups over HTTP and gRPC,
health, readiness and liveness during start-up, load and shutdown, what a
proxy in front relies on, what the server writes and logs, the request
limits, the deployment files the docs name, and requests an attacker would
send (huge headers, slow heads and bodies, path tricks, deep JSON, many
connections).

Numbers are compared with numpy. A test marked xfail(strict=True) records a
place where the server does not do what the docs say.
"""
import base64
import datetime
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tritonclient.utils import InferenceServerException

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("ANEMONE_BIN", ROOT / "target/debug/anemone"))
DOCS = ROOT / "docs"
X = np.array([[1.5, -2, 3.25, 4]], np.float32)
Y = np.array([[10, 20.5, -30, 40]], np.float32)


# ---------------------------------------------------------------- helpers

def run_anemone(*args, env=None, timeout=30):
    """Runs the binary to completion: (status, stdout, stderr); status None on a timeout."""
    full = dict(os.environ)
    full.update(env or {})
    try:
        p = subprocess.run([str(BINARY), *args], capture_output=True, text=True, timeout=timeout, env=full,
                           stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        return None, out, err


class Served:
    """A running `anemone serve`: its process, addresses and stderr file."""

    def __init__(self, proc, addresses, log):
        self.proc, self.addresses, self.log = proc, addresses, log
        self.http = addresses["HTTP"]
        self.grpc = addresses["gRPC"]
        self.http_port = int(self.http.rsplit(":", 1)[1])
        self.grpc_port = int(self.grpc.rsplit(":", 1)[1])

    def stderr(self):
        return self.log.read_text(errors="replace")


def launch(repo, *flags, log, env=None, exit_timeout="10", preexec=None):
    """`anemone serve` on free ports with stderr into `log`; returns once both addresses are printed."""
    if not BINARY.exists():
        pytest.fail(f"{BINARY} is missing")
    full = dict(os.environ)
    full.setdefault("ANEMONE_PYTHON", sys.executable)
    full.update(env or {})
    args = [str(BINARY), "serve", "--model-repository", str(repo), "--http-port", "0", "--grpc-port", "0",
            "--metrics-port", "0", "--health-monitor", "false", *flags]
    if exit_timeout is not None:
        args += ["--exit-timeout-secs", exit_timeout]
    err = open(log, "w")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True, env=full, preexec_fn=preexec)
    err.close()
    addresses = {}
    while len(addresses) < 2:
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"anemone serve exited early with status {proc.wait()}: {Path(log).read_text()[-3000:]}")
        kind, _, rest = line.partition(" listening on ")
        if rest:
            addresses[kind] = rest.strip()
    # Keep reading stdout so that the server never blocks on (or breaks) the pipe.
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return Served(proc, addresses, Path(log))


def stop(served, expect=0):
    if served.proc.poll() is None:
        served.proc.send_signal(signal.SIGTERM)
    status = served.proc.wait(timeout=30)
    assert status == expect, f"anemone serve exited {status} on SIGTERM"


def wait_until(predicate, seconds=60, step=0.05):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if predicate():
                return True
        except Exception:
            pass
        time.sleep(step)
    return False


def add_body(x=X, y=Y):
    return {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()},
                       {"name": "y", "shape": list(y.shape), "datatype": "FP32", "data": y.ravel().tolist()}]}


def check_add_json(answer, x=X, y=Y):
    out = {o["name"]: np.array(o["data"], np.float32).reshape(o["shape"]) for o in answer["outputs"]}
    np.testing.assert_allclose(out["sum"], x + y)
    np.testing.assert_allclose(out["diff"], x - y)


def grpc_add_inputs(x=X, y=Y):
    a = grpcclient.InferInput("x", list(x.shape), "FP32")
    a.set_data_from_numpy(x)
    b = grpcclient.InferInput("y", list(y.shape), "FP32")
    b.set_data_from_numpy(y)
    return [a, b]


def raw(address, data=b"", timeout=10):
    host, port = address.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    if data:
        s.sendall(data)
    return s


def read_all(s, limit=1 << 20):
    """Everything the server sends until it closes the connection (or the socket timeout)."""
    chunks = []
    try:
        while sum(map(len, chunks)) < limit:
            c = s.recv(65536)
            if not c:
                break
            chunks.append(c)
    except (socket.timeout, ConnectionResetError):
        pass
    return b"".join(chunks)


def closed_within(s, seconds):
    """Whether the server closes `s` (EOF or reset) within `seconds`; returns the elapsed time or None."""
    t0 = time.time()
    s.settimeout(seconds)
    try:
        while True:
            c = s.recv(65536)
            if not c:
                return time.time() - t0
    except ConnectionResetError:
        return time.time() - t0
    except socket.timeout:
        return None


def status_line(data):
    return data.split(b"\r\n", 1)[0].decode(errors="replace")


def grpc_health(address, metadata=None, channel=None):
    """grpc.health.v1.Health/Check for the server (service ""): 1 SERVING, 2 NOT_SERVING."""
    ch = channel or grpc.insecure_channel(address)
    try:
        call = ch.unary_unary("/grpc.health.v1.Health/Check", request_serializer=lambda b: b,
                              response_deserializer=lambda b: b)
        answer = call(b"", metadata=metadata, timeout=5)
        assert answer[:1] == b"\x08" or answer == b"", answer
        return answer[1] if answer else 0
    finally:
        if channel is None:
            ch.close()


def doc(name):
    return (DOCS / name).read_text()


# ---------------------------------------------------------------- repositories

ADD = ROOT / "examples/models/add"

SLOW_CONFIG = '''backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]
instance_group [ { count: 3 kind: KIND_CPU } ]
'''

# Sleeps X[0] seconds, answers Y = 2 X.
SLOW_PY = '''
import time
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        time.sleep(INIT_SECONDS)

    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "X").as_numpy()
            time.sleep(float(x[0]))
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", (x * 2).astype(np.float32))]))
        return out
'''


def repository(root, slow=False, slow_init=0.0, add2=False):
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ADD, root / "add")
    if add2:
        shutil.copytree(ADD, root / "add2")
    if slow:
        (root / "slow" / "1").mkdir(parents=True)
        (root / "slow" / "config.pbtxt").write_text(SLOW_CONFIG)
        (root / "slow" / "1" / "model.py").write_text(SLOW_PY.replace("INIT_SECONDS", repr(float(slow_init))))
    return root


def slow_json(seconds, n=3):
    x = np.array([seconds] + list(range(1, n)), np.float32)
    return x, {"inputs": [{"name": "X", "shape": [n], "datatype": "FP32", "data": x.tolist()}]}


# ---------------------------------------------------------------- certificates

def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key(kind="ec"):
    return ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)


def _ca(cn):
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(ca, cn, server, kind="ec", expired=False):
    ca_key, ca_cert = ca
    key = _key(kind)
    now = datetime.datetime.now(datetime.timezone.utc)
    before, after = ((now - datetime.timedelta(days=10), now - datetime.timedelta(days=1)) if expired
                     else (now - datetime.timedelta(days=1), now + datetime.timedelta(days=2)))
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(before).not_valid_after(after)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                               else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                            critical=False)
    return key, b.sign(ca_key, hashes.SHA256())


def _write(d, name, key, cert, password=None):
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    (d / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                      serialization.PrivateFormat.PKCS8, enc))
    (d / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """ca (signs `server`, `rsa_server`, `client`, `expired_client`, `expired_server`), ca2 (signs `other_client`)."""
    d = tmp_path_factory.mktemp("tls")
    ca, ca2 = _ca("anemone test CA"), _ca("another CA")
    _write(d, "ca", *ca)
    _write(d, "ca2", *ca2)
    _write(d, "server", *_leaf(ca, "localhost", True))
    _write(d, "rsa_server", *_leaf(ca, "localhost", True, kind="rsa"))
    _write(d, "expired_server", *_leaf(ca, "localhost", True, expired=True))
    _write(d, "client", *_leaf(ca, "my client", False))
    _write(d, "expired_client", *_leaf(ca, "old client", False, expired=True))
    _write(d, "other_client", *_leaf(ca2, "stranger", False))
    k, c = _leaf(ca, "localhost", True)
    _write(d, "encrypted", k, c, password=b"pw")
    return d


def https_get(served, path, certs, client=None, ca="ca", timeout=10):
    return requests.get(f"https://127.0.0.1:{served.http_port}{path}", verify=str(certs / f"{ca}.pem"),
                        cert=(str(certs / f"{client}.pem"), str(certs / f"{client}.key")) if client else None,
                        timeout=timeout)


def tls_grpc_client(served, certs, client=None, ca="ca"):
    kw = {}
    if client:
        kw = {"private_key": str(certs / f"{client}.key"), "certificate_chain": str(certs / f"{client}.pem")}
    return grpcclient.InferenceServerClient(f"127.0.0.1:{served.grpc_port}", ssl=True,
                                            root_certificates=str(certs / f"{ca}.pem"), **kw)


@pytest.fixture(scope="module")
def mtls(certs, tmp_path_factory):
    """Both listeners with TLS and client certificates signed by `ca` required; 1 s header timeout."""
    d = tmp_path_factory.mktemp("mtls")
    t = certs
    served = launch(repository(d / "repo"), "--http-tls-cert", str(t / "server.pem"),
                    "--http-tls-key", str(t / "server.key"), "--http-tls-client-ca", str(t / "ca.pem"),
                    "--grpc-use-ssl-mutual", "--grpc-server-cert", str(t / "server.pem"),
                    "--grpc-server-key", str(t / "server.key"), "--grpc-root-cert", str(t / "ca.pem"),
                    "--http-header-timeout-secs", "1", "--log-level", "info", log=d / "stderr.txt")
    assert wait_until(lambda: https_get(served, "/v2/health/ready", t, "client").status_code == 200, 60)
    yield served
    stop(served)


# ---------------------------------------------------------------- TLS

def test_mutual_tls_serves_a_client_the_ca_signed_over_both_protocols(mtls, certs):
    """SECURITY.md TLS: with a client CA, any certificate the CA signed is accepted; HTTPS and gRPC over TLS
    answer `add` (checked against numpy); the tritonclient forms of the "Try it" section work."""
    r = requests.post(f"https://127.0.0.1:{mtls.http_port}/v2/models/add/infer", json=add_body(),
                      verify=str(certs / "ca.pem"), cert=(str(certs / "client.pem"), str(certs / "client.key")))
    assert r.status_code == 200, r.text
    check_add_json(r.json())

    def factory():
        c = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        c.load_cert_chain(str(certs / "client.pem"), str(certs / "client.key"))
        return c
    http = httpclient.InferenceServerClient(f"localhost:{mtls.http_port}", ssl=True, ssl_context_factory=factory)
    a = httpclient.InferInput("x", [1, 4], "FP32")
    a.set_data_from_numpy(X, binary_data=True)
    b = httpclient.InferInput("y", [1, 4], "FP32")
    b.set_data_from_numpy(Y, binary_data=True)
    np.testing.assert_allclose(http.infer("add", [a, b]).as_numpy("sum"), X + Y)
    g = tls_grpc_client(mtls, certs, "client")
    result = g.infer("add", grpc_add_inputs())
    np.testing.assert_allclose(result.as_numpy("sum"), X + Y)
    np.testing.assert_allclose(result.as_numpy("diff"), X - Y)
    assert g.is_server_ready()


@pytest.mark.parametrize("client", [None, "other_client", "expired_client"])
def test_mutual_tls_refuses_no_certificate_another_cas_and_an_expired_one_in_the_handshake(mtls, certs, client):
    """SECURITY.md: "a client that presents no certificate, or one not signed by that CA, is refused during
    the TLS handshake (the client sees a TLS alert or a closed connection, never a response)", on both
    protocols. An expired certificate (signed by the CA) is refused too, as any TLS verifier does."""
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        https_get(mtls, "/v2/health/ready", certs, client)
    with pytest.raises(InferenceServerException) as e:
        tls_grpc_client(mtls, certs, client).is_server_live(client_timeout=10)
    assert "UNAVAILABLE" in str(e.value.status()) or "UNAVAILABLE" in str(e.value), e.value
    # The server serves on.
    assert https_get(mtls, "/v2/health/live", certs, "client").status_code == 200


def test_a_client_that_trusts_another_ca_refuses_the_server(mtls, certs):
    """SECURITY.md tests: "a client that does not trust the server's CA fails" (HTTPS and gRPC)."""
    with pytest.raises(requests.exceptions.SSLError):
        https_get(mtls, "/v2/health/live", certs, "client", ca="ca2")
    with pytest.raises(InferenceServerException):
        tls_grpc_client(mtls, certs, "client", ca="ca2").is_server_live(client_timeout=10)


def test_plain_http_to_the_https_port_gets_400_then_the_connection_closes(mtls):
    """SECURITY.md: "Plain HTTP to the HTTPS port gets 400 with {"error":"this port serves HTTPS: use an
    https:// URL ..."}, then the connection closes" (here with mutual TLS on as well)."""
    s = raw(mtls.http, b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
    data = read_all(s)
    s.close()
    assert status_line(data).startswith("HTTP/1.1 400"), data[:200]
    body = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert body["error"].startswith("this port serves HTTPS: use an https:// URL"), body


def test_plain_grpc_to_the_tls_port_fails_to_connect(mtls):
    """SECURITY.md: "Plain-text gRPC to a TLS port fails to connect"."""
    c = grpcclient.InferenceServerClient(mtls.grpc)
    with pytest.raises(InferenceServerException) as e:
        c.is_server_live(client_timeout=10)
    assert "UNAVAILABLE" in str(e.value) or "DEADLINE" in str(e.value), e.value


def test_alpn_is_http11_on_https_and_h2_on_grpc_and_tls12_and_13_both_work(mtls, certs):
    """SECURITY.md Protocols: "HTTPS is HTTP/1.1 (ALPN http/1.1); gRPC over TLS is HTTP/2 (ALPN h2)";
    "rustls, TLS 1.2 and 1.3"."""
    for port, want in [(mtls.http_port, "http/1.1"), (mtls.grpc_port, "h2")]:
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            c = ssl.create_default_context(cafile=str(certs / "ca.pem"))
            c.load_cert_chain(str(certs / "client.pem"), str(certs / "client.key"))
            c.minimum_version = c.maximum_version = version
            c.set_alpn_protocols(["h2", "http/1.1"])
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw_s:
                with c.wrap_socket(raw_s, server_hostname="localhost") as s:
                    assert s.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
                    assert s.selected_alpn_protocol() == want, (port, version)


def test_a_silent_https_client_is_disconnected_within_the_header_timeout(mtls):
    """SECURITY.md Timeouts: "An HTTPS client must finish its handshake within --http-header-timeout-secs
    (counted from the accept)" (1 s here); others are served meanwhile."""
    s = raw(mtls.http)
    took = closed_within(s, 8)
    s.close()
    assert took is not None and 0.5 < took < 5, took
    # A client that sends half a ClientHello and stops is cut as well.
    s = raw(mtls.http, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    took = closed_within(s, 8)
    s.close()
    assert took is not None and took < 5, took


def test_one_listener_may_be_tls_and_an_rsa_key_works_and_env_variables_turn_it_on(certs, tmp_path):
    """SECURITY.md: "Separate files per listener let the two ports use different certificates, or only one
    of them TLS"; keys are "RSA or EC"; "Every flag also reads an environment variable
    (ANEMONE_HTTP_TLS_CERT, ANEMONE_GRPC_USE_SSL, ...)". HTTP plain, gRPC over TLS with an RSA key, set
    through the environment only."""
    t = certs
    env = {"ANEMONE_GRPC_USE_SSL": "true", "ANEMONE_GRPC_SERVER_CERT": str(t / "rsa_server.pem"),
           "ANEMONE_GRPC_SERVER_KEY": str(t / "rsa_server.key")}
    served = launch(repository(tmp_path / "repo"), log=tmp_path / "err.txt", env=env)
    try:
        assert wait_until(lambda: requests.get(f"http://{served.http}/v2/health/ready").status_code == 200)
        np.testing.assert_allclose(tls_grpc_client(served, certs).infer("add", grpc_add_inputs()).as_numpy("sum"),
                                   X + Y)
        with pytest.raises(InferenceServerException):
            grpcclient.InferenceServerClient(served.grpc).is_server_live(client_timeout=10)
    finally:
        stop(served)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_an_expired_server_certificate_is_served_as_given_and_refused_by_a_verifying_client(certs, tmp_path):
    """SECURITY.md lists what start-up checks (readable, size, a certificate and a key that belong
    together); the validity dates are not among them. A verifying client refuses an expired certificate,
    as curl and tritonclient would."""
    t = certs
    served = launch(repository(tmp_path / "repo"), "--http-tls-cert", str(t / "expired_server.pem"),
                    "--http-tls-key", str(t / "expired_server.key"), log=tmp_path / "err.txt")
    try:
        with pytest.raises(requests.exceptions.SSLError) as e:
            https_get(served, "/v2/health/live", t)
        assert "expired" in str(e.value), e.value
        assert wait_until(lambda: requests.get(f"https://127.0.0.1:{served.http_port}/v2/health/ready",
                                               verify=False).status_code == 200)
    finally:
        stop(served)


def _tls_refusals(t, tmp):
    cert, key, ca = str(t / "server.pem"), str(t / "server.key"), str(t / "ca.pem")
    other_key = str(t / "client.key")
    return [
        (["--http-tls-cert", cert], ["--http-tls-key"]),
        (["--http-tls-key", key], ["--http-tls-cert"]),
        (["--grpc-server-cert", cert, "--grpc-server-key", key], ["--grpc-use-ssl"]),
        (["--grpc-use-ssl", "--grpc-server-cert", cert, "--grpc-server-key", key, "--grpc-root-cert", ca],
         ["--grpc-root-cert", "--grpc-use-ssl-mutual"]),
        (["--http-tls-client-ca", ca], ["--http-tls-client-ca"]),
        (["--http-tls-cert", cert, "--http-tls-key", other_key], [other_key, "--http-tls-key"]),
        (["--grpc-use-ssl", "--grpc-server-cert", cert, "--grpc-server-key", cert],
         [f"gRPC TLS: {cert} (--grpc-server-key) holds no private key; give the certificate's private key as PEM: "]),
        (["--http-tls-cert", key, "--http-tls-key", key], [key, "--http-tls-cert"]),
        (["--http-tls-cert", cert, "--http-tls-key", key, "--http-tls-client-ca", key], [key, "--http-tls-client-ca"]),
        (["--http-tls-cert", cert, "--http-tls-key", str(t / "encrypted.key")],
         [str(t / "encrypted.key"), "--http-tls-key"]),
        (["--http-tls-cert", str(tmp / "missing.pem"), "--http-tls-key", key],
         [str(tmp / "missing.pem"), "--http-tls-cert"]),
    ]


def test_bad_tls_files_and_flags_that_do_not_go_together_stop_start_up_naming_file_and_flag(certs, tmp_path):
    """SECURITY.md "Checked at start-up": no certificate or no key, a key of another certificate, a client
    CA with no CA, a missing file, an encrypted key, a certificate without its key, --grpc-server-cert
    without --grpc-use-ssl, --grpc-root-cert without --grpc-use-ssl-mutual, --http-tls-client-ca without
    HTTPS each stop `anemone serve` before it loads any model, with a message naming the file and the flag.
    The key's own text is never printed."""
    key_text = (certs / "server.key").read_text().splitlines()[1]
    failures = []
    for flags, words in _tls_refusals(certs, tmp_path):
        status, out, err = run_anemone("serve", "--model-repository", str(ADD.parent), "--http-port", "0",
                                       "--grpc-port", "0", "--metrics-port", "0", *flags)
        ok = status not in (0, None) and all(w in err for w in words) and "add" not in out \
            and key_text not in err + out
        if not ok:
            failures.append((flags, status, err[-400:]))
    assert not failures, failures


def test_grpc_use_ssl_takes_tritons_true_false_forms(certs):
    """SECURITY.md: "--grpc-use-ssl and --grpc-use-ssl-mutual also take Triton's =true/=false and
    true/false as the next word"."""
    cert, key = str(certs / "server.pem"), str(certs / "server.key")
    got = {}
    for form in (["--grpc-use-ssl"], ["--grpc-use-ssl=true"], ["--grpc-use-ssl", "true"],
                 ["--grpc-use-ssl=false"], ["--grpc-use-ssl", "false"]):
        flags = [*form, "--model-repository", "m"]
        if "false" not in form[-1]:
            flags += ["--grpc-server-cert", cert, "--grpc-server-key", key]
        status, out, err = run_anemone("config", "show", "--json", "--", *flags)
        assert status == 0, (form, err)
        settings = {s["key"]: s["value"] for s in json.loads(out)["settings"]}
        got[" ".join(form)] = str(settings["grpc-use-ssl"]).lower()
    assert got == {"--grpc-use-ssl": "true", "--grpc-use-ssl=true": "true", "--grpc-use-ssl true": "true",
                   "--grpc-use-ssl=false": "false", "--grpc-use-ssl false": "false"}, got


# ---------------------------------------------------------------- restricted API

ADMIN = base64.b64encode(bytes(range(7, 39))).decode()  # as `head -c 32 /dev/urandom | base64`: ends with '='
KEYS = {  # group -> (header key, value)
    "health": ("h-key", "H-s3cret"),
    "metadata": ("m-key", "M-s3cret"),
    "inference": ("i-key", "I=s3cret:x"),
    "model-config": ("c-key", "C-s3cret"),
    "model-repository": ("admin-key", ADMIN),
    "statistics": ("admin-key", ADMIN),
    "trace": ("t-key", "T-s3cret"),
    "shared-memory": ("s-key", "S-s3cret"),
    "logging": ("l-key", "L-s3cret"),
}


def _groups():
    by_key = {}
    for api, (k, v) in KEYS.items():
        by_key.setdefault((k, v), []).append(api)
    return [f"{','.join(apis)}:{k}={v}" for (k, v), apis in by_key.items()]


@pytest.fixture(scope="module")
def restricted(tmp_path_factory):
    d = tmp_path_factory.mktemp("restricted")
    flags = []
    for g in _groups():
        flags += ["--http-restricted-api", g, "--grpc-restricted-protocol", g]
    flags += ["--http-restricted-api", "config:g-key=G-s3cret"]
    served = launch(repository(d / "repo", add2=True), *flags, "--model-control-mode", "explicit",
                    "--load-model", "add", "--log-level", "info", log=d / "stderr.txt")
    served.repo = d / "repo"
    h = {"h-key": "H-s3cret"}
    assert wait_until(lambda: requests.get(f"http://{served.http}/v2/health/ready", headers=h).status_code == 200)
    yield served
    stop(served)


HTTP_ROUTES = [
    ("health", "GET", "/v2/health/live", None),
    ("health", "GET", "/v2/health/ready", None),
    ("health", "GET", "/v2/models/add/ready", None),
    ("health", "GET", "/v2/models/add/versions/1/ready", None),
    ("metadata", "GET", "/v2", None),
    ("metadata", "GET", "/v2/models/add", None),
    ("metadata", "GET", "/v2/models/add/versions/1", None),
    ("inference", "POST", "/v2/models/add/infer", add_body()),
    ("inference", "POST", "/v2/models/add/versions/1/infer", add_body()),
    ("inference", "POST", "/v2/models/add/generate", {"x": [1, 2, 3, 4], "y": [1, 2, 3, 4]}),
    ("inference", "POST", "/v2/models/add/generate_stream", {"x": [1, 2, 3, 4], "y": [1, 2, 3, 4]}),
    ("model-config", "GET", "/v2/models/add/config", None),
    ("model-config", "GET", "/v2/models/add/versions/1/config", None),
    ("model-repository", "POST", "/v2/repository/index", {}),
    ("model-repository", "POST", "/v2/repository/models/add2/load", {}),
    ("model-repository", "POST", "/v2/repository/models/nothere/unload", {}),
    ("statistics", "GET", "/v2/models/stats", None),
    ("statistics", "GET", "/v2/models/add/stats", None),
    ("statistics", "GET", "/v2/models/add/versions/1/stats", None),
    ("trace", "GET", "/v2/trace/setting", None),
    ("trace", "GET", "/v2/models/add/trace/setting", None),
    ("shared-memory", "GET", "/v2/systemsharedmemory/status", None),
    ("shared-memory", "GET", "/v2/cudasharedmemory/status", None),
    ("shared-memory", "POST", "/v2/systemsharedmemory/unregister", {}),
    ("logging", "GET", "/v2/logging", None),
    ("config", "GET", "/v2/anemone/config", None),
]


def _refusal(api, header, flag="--http-restricted-api"):
    return (f"the '{api}' API is restricted: send the header '{header}' with the value the server was given "
            f"({flag})")


@pytest.mark.parametrize("api,method,path,body", HTTP_ROUTES, ids=[f"{m} {p}" for _, m, p, _ in HTTP_ROUTES])
def test_each_http_route_is_in_its_documented_group(restricted, api, method, path, body):
    """SECURITY.md Restricted API table (HTTP column; `config` from CONFIGURATION.md): without the header,
    with another value, or with another group's header, 403 with the documented message (never the
    value); with the group's header, served."""
    key, value = KEYS.get(api, ("g-key", "G-s3cret"))
    url = f"http://{restricted.http}{path}"
    send = lambda headers: requests.request(method, url, json=body, headers=headers, timeout=30)  # noqa: E731
    other = ("h-key", "H-s3cret") if api != "health" else ("m-key", "M-s3cret")
    for headers in ({}, {key: value + "x"}, {key: value[:-1]}, {other[0]: other[1]}):
        r = send(headers)
        assert r.status_code == 403, (headers, r.status_code, r.text[:200])
        assert r.json() == {"error": _refusal(api, key)}
        assert value not in r.text
    r = send({key.upper(): value})
    assert r.status_code != 403, r.text
    assert r.status_code < 500, r.text
    if path.endswith("/infer"):
        check_add_json(r.json())


def test_metrics_is_never_restricted(restricted):
    """SECURITY.md: "/metrics is never restricted: bind it privately or filter it at the proxy"."""
    r = requests.get(f"http://{restricted.http}/metrics")
    assert r.status_code == 200 and "anemone_" in r.text


def _grpc_calls():
    def infer(c, h):
        np.testing.assert_allclose(c.infer("add", grpc_add_inputs(), headers=h).as_numpy("sum"), X + Y)
    return [
        ("health", "ServerLive", lambda c, h: c.is_server_live(headers=h)),
        ("health", "ServerReady", lambda c, h: c.is_server_ready(headers=h)),
        ("health", "ModelReady", lambda c, h: c.is_model_ready("add", headers=h)),
        ("metadata", "ServerMetadata", lambda c, h: c.get_server_metadata(headers=h)),
        ("metadata", "ModelMetadata", lambda c, h: c.get_model_metadata("add", headers=h)),
        ("inference", "ModelInfer", infer),
        ("model-config", "ModelConfig", lambda c, h: c.get_model_config("add", headers=h)),
        ("model-repository", "RepositoryIndex", lambda c, h: c.get_model_repository_index(headers=h)),
        ("model-repository", "RepositoryModelLoad", lambda c, h: c.load_model("add2", headers=h)),
        ("model-repository", "RepositoryModelUnload", lambda c, h: c.unload_model("nothere", headers=h)),
        ("statistics", "ModelStatistics", lambda c, h: c.get_inference_statistics(headers=h)),
        ("trace", "TraceSetting", lambda c, h: c.get_trace_settings(headers=h)),
        ("shared-memory", "SystemSharedMemoryStatus", lambda c, h: c.get_system_shared_memory_status(headers=h)),
        ("logging", "LogSettings", lambda c, h: c.get_log_settings(headers=h)),
    ]


GRPC_CALLS = _grpc_calls()


@pytest.mark.parametrize("api,name,call", GRPC_CALLS, ids=[n for _, n, _ in GRPC_CALLS])
def test_each_grpc_method_is_in_its_documented_group(restricted, api, name, call):
    """SECURITY.md Restricted API table (gRPC column): the metadata `triton-grpc-protocol-<key>: <value>`,
    keys case-insensitive; without it or with another value, PERMISSION_DENIED naming the header."""
    key, value = KEYS[api]
    header = f"triton-grpc-protocol-{key}"
    c = grpcclient.InferenceServerClient(restricted.grpc)
    for h in (None, {header: value + "x"}, {key: value}):
        with pytest.raises(InferenceServerException) as e:
            call(c, h)
        assert e.value.status() == "StatusCode.PERMISSION_DENIED", (h, e.value)
        assert _refusal(api, header, "--grpc-restricted-protocol") in e.value.message(), e.value.message()
        assert value not in str(e.value)
    call(c, {header: value})


def test_the_standard_grpc_health_service_is_in_the_health_group(restricted):
    """SECURITY.md: `health` covers "the standard grpc.health.v1.Health service"."""
    with pytest.raises(grpc.RpcError) as e:
        grpc_health(restricted.grpc)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    md = [("triton-grpc-protocol-h-key", "H-s3cret")]
    assert wait_until(lambda: grpc_health(restricted.grpc, metadata=md) == 1, 5)


@pytest.mark.parametrize("target", [
    "/v2/repository/index/", "//v2/repository/index", "/v2//repository/index", "/v2/repository/./index",
    "/v2/repository/%69ndex", "/V2/repository/index", "/v2/repository/index?h-key=H-s3cret",
    "/v2/repository/index;admin-key", "/v2/models/add/../../repository/index", "/v2/repository/index%00",
    "/v2/%72epository/index", "/v2/models/%61dd/../../repository/index",
])
def test_path_tricks_never_reach_a_restricted_route(restricted, target):
    """SECURITY.md: a restricted group gets 403 "before its body is read"; an attacker's spellings of a
    restricted path (trailing or double slashes, dot segments, percent-encoding, case, parameters, NUL)
    must never answer 200."""
    s = raw(restricted.http, f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                             f"Connection: close\r\n\r\n{{}}".encode())
    data = read_all(s)
    s.close()
    line = status_line(data)
    assert not line.startswith("HTTP/1.1 2"), (target, data[:300])
    assert b"add2" not in data and b"READY" not in data, data[:300]


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "PUT", "DELETE", "PATCH", "GET"])
def test_other_methods_on_restricted_paths_are_refused(restricted, method):
    """SECURITY.md restricted groups: no other HTTP method gets past the guard (HEAD of a GET route included)."""
    for path in ("/v2/health/ready", "/v2/repository/index", "/v2/models/add/config"):
        r = requests.request(method, f"http://{restricted.http}{path}", timeout=10)
        assert r.status_code in (403, 404, 405), (method, path, r.status_code)
        if method == "HEAD":
            assert r.status_code == 403, path


def test_secrets_never_appear_in_logs_config_or_help(restricted, tmp_path):
    """SECURITY.md: "--help never shows their values"; CONFIGURATION.md: values of the restricted-API flags
    are shown as <hidden> (`config show`, and a running server's GET /v2/anemone/config); the server's log
    (at the container's level, info) never holds a value, whatever clients sent."""
    # Wrong and right values from clients, then the log.
    requests.post(f"http://{restricted.http}/v2/repository/index", headers={"admin-key": "WRONG-guess-123"})
    requests.post(f"http://{restricted.http}/v2/models/add/infer", json=add_body(),
                  headers={"i-key": "I=s3cret:x"})
    log = restricted.stderr()
    for _, value in KEYS.values():
        assert value not in log
    assert "WRONG-guess-123" not in log and "G-s3cret" not in log
    # The running server's settings.
    r = requests.get(f"http://{restricted.http}/v2/anemone/config", headers={"g-key": "G-s3cret"})
    assert r.status_code == 200
    assert "s3cret" not in r.text and ADMIN not in r.text, r.text[:500]
    # --help and config show with the values in the environment.
    env = {"ANEMONE_HTTP_RESTRICTED_API": "inference:k=EnvS3cret", "ANEMONE_GRPC_RESTRICTED_PROTOCOL":
           "inference:k=EnvS3cret2"}
    status, out, err = run_anemone("serve", "--help", env=env)
    assert status == 0 and "EnvS3cret" not in out + err
    status, out, err = run_anemone("config", "show", "--", "--model-repository", "m",
                                   "--http-restricted-api", "health:k=FlagS3cret", env=env)
    assert status == 0, err
    assert "S3cret" not in out + err and "<hidden>" in out, out


@pytest.mark.parametrize("group,words", [
    ("repository:k=TopS3cret", "unknown API 'repository'"),
    # The key forgotten: the value followed the ':' and was echoed whole.
    ("model-repository:TopS3cret", "no '='"),
    ("model-repository:=TopS3cret", "must not be empty"),
    ("model-repository:bad key=TopS3cret", "not a valid header name"),
    ("model-repository,inference,health,nothing:admin-key=TopS3cret", "unknown API 'nothing'"),
])
@pytest.mark.parametrize("how", ["flag", "env", "grpc-flag"])
def test_malformed_groups_stop_start_up_without_repeating_the_value(group, words, how):
    """SECURITY.md: "an unknown API name or a malformed group stops the server at start-up with a message
    that never repeats the value" (flag or ANEMONE_HTTP_RESTRICTED_API / --grpc-restricted-protocol)."""
    args = ["serve", "--model-repository", str(ADD.parent), "--http-port", "0", "--grpc-port", "0",
            "--metrics-port", "0"]
    env = {}
    if how == "flag":
        args += ["--http-restricted-api", group]
    elif how == "grpc-flag":
        args += ["--grpc-restricted-protocol", group]
    else:
        env["ANEMONE_HTTP_RESTRICTED_API"] = group
    status, out, err = run_anemone(*args, env=env)
    assert status not in (0, None), (status, err)
    assert words in err, err
    assert "TopS3cret" not in out + err, err


def test_an_api_in_two_groups_stops_start_up():
    """SECURITY.md: "An API may be in one group only"."""
    status, _, err = run_anemone("serve", "--model-repository", str(ADD.parent), "--http-port", "0",
                                 "--grpc-port", "0", "--http-restricted-api", "health,metadata:a=1",
                                 "--http-restricted-api", "health:b=2")
    assert status not in (0, None)
    assert "API 'health' can not be specified in multiple groups" in err, err


def test_a_restricted_grpc_call_is_refused_before_its_message_is_read(restricted):
    """SECURITY.md: refused "before its body is read": a ModelInfer message over --max-request-bytes
    (64 MiB by default) without the header is PERMISSION_DENIED, not RESOURCE_EXHAUSTED."""
    c = grpcclient.InferenceServerClient(restricted.grpc)
    big = np.zeros((1, 4), np.float32)
    a = grpcclient.InferInput("x", [1, 4], "FP32")
    a.set_data_from_numpy(big)
    b = grpcclient.InferInput("y", [1, 4], "FP32")
    b.set_data_from_numpy(big)
    with pytest.raises(InferenceServerException) as e:
        c.infer("add", [a, b], parameters={"pad": "p" * (1 << 20)})
    assert e.value.status() == "StatusCode.PERMISSION_DENIED", e.value


# ---------------------------------------------------------------- load requests and names

def test_file_parameters_of_a_load_are_refused_and_nothing_is_written(restricted):
    """SECURITY.md Load requests: Triton's `file:<path>` parameters are refused with 400 / INVALID_ARGUMENT
    whatever the path, and nothing is written."""
    before = sorted(str(p) for p in restricted.repo.rglob("*"))
    h = {"admin-key": ADMIN}
    content = base64.b64encode(b"not a model").decode()
    for path in ("file:1/model.onnx", "file:../x", "file:/tmp/anemone-evil", "file:2/model.onnx"):
        r = requests.post(f"http://{restricted.http}/v2/repository/models/add2/load", headers=h,
                          json={"parameters": {path: content}})
        assert r.status_code == 400, (path, r.status_code, r.text)
        c = grpcclient.InferenceServerClient(restricted.grpc)
        with pytest.raises(InferenceServerException) as e:
            c.load_model("add2", files={path[5:]: b"not a model"},
                         headers={"triton-grpc-protocol-admin-key": ADMIN})
        assert e.value.status() == "StatusCode.INVALID_ARGUMENT", e.value
    assert sorted(str(p) for p in restricted.repo.rglob("*")) == before
    assert not Path("/tmp/anemone-evil").exists()
    # A load with only `config` is still taken.
    r = requests.post(f"http://{restricted.http}/v2/repository/models/add2/load", headers=h,
                      json={"parameters": {"config": json.dumps({"max_batch_size": 4})}})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("name", ["..", ".", "%2e%2e", "%2E%2E", "..%2fadd", "..%2Fadd", "a%5cb", "%2e",
                                  "add%00", "add%2f1", "%2e%2e%2f%2e%2e%2fetc"])
def test_model_names_that_are_not_folder_names_are_400_before_any_lookup(restricted, name):
    """SECURITY.md: "a name with /, \\, NUL, or that is . or .. (however it is encoded in the URL) is refused
    with 400 before any lookup"."""
    h = {"admin-key": ADMIN, "h-key": "H-s3cret", "m-key": "M-s3cret"}
    for method, path in (("POST", f"/v2/repository/models/{name}/load"), ("GET", f"/v2/models/{name}/ready"),
                         ("GET", f"/v2/models/{name}")):
        s = raw(restricted.http, (f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                  + "".join(f"{k}: {v}\r\n" for k, v in h.items())
                                  + "Content-Length: 0\r\n\r\n").encode())
        data = read_all(s)
        s.close()
        assert status_line(data).startswith("HTTP/1.1 400"), (path, data[:300])


@pytest.mark.parametrize("version", ["1.0", "-1", "01x", "99999999999999999999999", "one", "1e0"])
def test_a_version_must_be_a_whole_number(restricted, version):
    """SECURITY.md: "a version must be a whole number": anything else is refused (400), never a 500."""
    r = requests.get(f"http://{restricted.http}/v2/models/add/versions/{version}", headers={"m-key": "M-s3cret"})
    assert r.status_code in (400, 404), (version, r.status_code, r.text)
    if version in ("1.0", "-1", "01x", "one", "1e0"):
        assert r.status_code == 400, (version, r.status_code, r.text)


def test_load_and_unload_are_refused_in_mode_none_over_both_protocols_and_the_index_stays_readable(tmp_path):
    """SECURITY.md: "--model-control-mode none (the default) ... refuses load and unload over both protocols
    (503 / UNAVAILABLE, saying which mode allows them). The index stays readable."."""
    served = launch(repository(tmp_path / "repo"), log=tmp_path / "err.txt")
    try:
        assert wait_until(lambda: requests.get(f"http://{served.http}/v2/health/ready").status_code == 200)
        for verb in ("load", "unload"):
            r = requests.post(f"http://{served.http}/v2/repository/models/add/{verb}")
            assert r.status_code == 503 and "explicit" in r.json()["error"], r.text
        c = grpcclient.InferenceServerClient(served.grpc)
        for call in (lambda: c.load_model("add"), lambda: c.unload_model("add")):
            with pytest.raises(InferenceServerException) as e:
                call()
            assert e.value.status() == "StatusCode.UNAVAILABLE" and "explicit" in e.value.message()
        index = requests.post(f"http://{served.http}/v2/repository/index").json()
        assert [m["name"] for m in index] == ["add"] and index[0]["state"] == "READY"
        assert c.get_model_repository_index().models[0].name == "add"
        assert c.is_model_ready("add")
    finally:
        stop(served)


# ---------------------------------------------------------------- health, start-up, load

def test_during_start_up_live_is_200_ready_503_and_a_loading_models_requests_are_503(tmp_path):
    """DEPLOY.md probes: liveness and start-up on /v2/health/live, readiness on /v2/health/ready; SERVING.md:
    /v2/health/ready is 503 until loaded, a loading model is "not ready (loading...)" 503 / UNAVAILABLE
    (what nginx skips, DEPLOY.md), never 404; the gRPC health service reports SERVING once ready."""
    served = launch(repository(tmp_path / "repo", slow=True, slow_init=2.5), log=tmp_path / "err.txt")
    try:
        base = f"http://{served.http}"
        assert wait_until(lambda: requests.get(f"{base}/v2/health/live").status_code == 200, 10)
        assert wait_until(lambda: any(m.get("state") == "LOADING" for m in requests.post(
            f"{base}/v2/repository/index").json() if m["name"] == "slow"), 10)
        seen = {"ready": requests.get(f"{base}/v2/health/ready").status_code,
                "model_ready": requests.get(f"{base}/v2/models/slow/ready").status_code,
                "infer": requests.post(f"{base}/v2/models/slow/infer", json=slow_json(0)[1]).status_code,
                "grpc_ready": grpcclient.InferenceServerClient(served.grpc).is_server_ready(),
                "health": grpc_health(served.grpc)}
        with pytest.raises(InferenceServerException) as e:
            c = grpcclient.InferenceServerClient(served.grpc)
            i = grpcclient.InferInput("X", [3], "FP32")
            i.set_data_from_numpy(np.zeros(3, np.float32))
            c.infer("slow", [i])
        seen["grpc_infer"] = e.value.status()
        assert requests.get(f"{base}/v2/health/live").status_code == 200
        assert seen == {"ready": 503, "model_ready": 503, "infer": 503, "grpc_ready": False, "health": 2,
                        "grpc_infer": "StatusCode.UNAVAILABLE"}, seen
        assert wait_until(lambda: requests.get(f"{base}/v2/health/ready").status_code == 200, 60)
        assert wait_until(lambda: grpc_health(served.grpc) == 1, 5)
        x, body = slow_json(0)
        r = requests.post(f"{base}/v2/models/slow/infer", json=body)
        np.testing.assert_allclose(r.json()["outputs"][0]["data"], x * 2)
    finally:
        stop(served)


def test_a_model_waiting_for_its_start_up_load_is_503_not_404(tmp_path):
    """SERVING.md Errors: "not ready (loading, failed to load, shutting down)" is 503 / UNAVAILABLE, and 404
    is for an unknown model; DEPLOY.md: "503 is what a draining or not yet ready anemone answers", which
    nginx's proxy_next_upstream retries elsewhere. With one load thread, the second Python model waits."""
    repo = repository(tmp_path / "repo", slow=True, slow_init=1.5)
    shutil.copytree(repo / "slow", repo / "slow2")
    served = launch(repo, "--model-load-thread-count", "1", log=tmp_path / "err.txt")
    try:
        base = f"http://{served.http}"
        seen = set()
        t0 = time.time()
        while time.time() - t0 < 1.2:
            for m in ("slow", "slow2"):
                seen.add((m, requests.post(f"{base}/v2/models/{m}/infer", json=slow_json(0)[1]).status_code))
            time.sleep(0.05)
        assert {code for _, code in seen} == {503}, sorted(seen)
    finally:
        stop(served)


def test_the_grpc_health_service_agrees_with_readiness_right_after_a_load(tmp_path):
    """DEPLOY.md: readiness is one state "over HTTP (/v2/health/ready) and gRPC (the standard health
    service)"; SERVING.md: the health service "reports SERVING once the server is ready"."""
    served = launch(repository(tmp_path / "repo", slow=True, slow_init=0.7), "--model-control-mode", "explicit",
                    "--load-model", "add", log=tmp_path / "err.txt")
    try:
        base = f"http://{served.http}"
        assert wait_until(lambda: requests.get(f"{base}/v2/health/ready").status_code == 200, 30)
        assert wait_until(lambda: grpc_health(served.grpc) == 1, 5)
        c = grpcclient.InferenceServerClient(served.grpc)
        disagreements = []
        for _ in range(3):
            c.load_model("slow")
            http_ready = requests.get(f"{base}/v2/health/ready").status_code == 200
            health = grpc_health(served.grpc) == 1
            if http_ready != health:
                disagreements.append((http_ready, health))
            c.unload_model("slow")
            time.sleep(0.3)
        assert not disagreements, disagreements
    finally:
        stop(served)


def test_readiness_and_liveness_stay_200_under_load(plain):
    """DEPLOY.md: readiness 503 means draining or not yet ready; a loaded server under load stays ready
    (the readiness probe's failureThreshold is 1 in deploy/k8s)."""
    stop_at = time.time() + 1.5
    codes = []

    def hammer():
        s = requests.Session()
        n = 0
        while time.time() < stop_at:
            r = s.post(f"http://{plain.http}/v2/models/add/infer", json=add_body())
            assert r.status_code == 200
            n += 1
        return n

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(hammer) for _ in range(4)]
        while time.time() < stop_at:
            codes.append((requests.get(f"http://{plain.http}/v2/health/ready").status_code,
                          requests.get(f"http://{plain.http}/v2/health/live").status_code))
            time.sleep(0.05)
        assert sum(f.result() for f in futures) > 10
    assert set(codes) == {(200, 200)}, set(codes)


# ---------------------------------------------------------------- shutdown

def _children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_sigterm_finishes_requests_and_uploads_in_flight_closes_idle_and_listeners_and_exits_0(tmp_path):
    """DEPLOY.md shutdown timeline: on SIGTERM readiness turns false, the listeners close and idle
    keep-alive connections are closed; requests in flight finish (uploads included) over HTTP and gRPC;
    the process exits 0."""
    served = launch(repository(tmp_path / "repo", slow=True), log=tmp_path / "err.txt", exit_timeout="20")
    base = f"http://{served.http}"
    assert wait_until(lambda: requests.get(f"{base}/v2/health/ready").status_code == 200, 60)
    idle = raw(served.http, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    assert idle.recv(4096).startswith(b"HTTP/1.1 200")
    x_http, body = slow_json(2.0)
    x_grpc = np.array([2.0, 5, 6], np.float32)
    x_up, up_body = slow_json(0, n=2000)
    up = json.dumps(up_body).encode()
    upload = raw(served.http, b"POST /v2/models/slow/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(up)}\r\nConnection: close\r\n\r\n".encode() + up[:len(up) // 2])

    def grpc_call():
        i = grpcclient.InferInput("X", [3], "FP32")
        i.set_data_from_numpy(x_grpc)
        return grpcclient.InferenceServerClient(served.grpc).infer("slow", [i]).as_numpy("Y")

    with ThreadPoolExecutor(2) as pool:
        h = pool.submit(lambda: requests.post(f"{base}/v2/models/slow/infer", json=body, timeout=30))
        g = pool.submit(grpc_call)
        time.sleep(0.7)
        t0 = time.time()
        served.proc.send_signal(signal.SIGTERM)
        # Listeners close at once; the idle keep-alive connection is closed.
        refused = wait_until(lambda: _refused(served.http), 2, 0.01)
        idle_closed = closed_within(idle, 2)
        # The upload in progress is let finish.
        upload.sendall(up[len(up) // 2:])
        answer = read_all(upload)
        r = h.result()
        got_grpc = g.result()
    status = served.proc.wait(timeout=20)
    took = time.time() - t0
    assert refused, "new connections must be refused once SIGTERM arrives"
    assert idle_closed is not None, "an idle keep-alive connection must be closed on SIGTERM"
    assert status_line(answer).startswith("HTTP/1.1 200"), answer[:300]
    np.testing.assert_allclose(json.loads(answer.split(b"\r\n\r\n", 1)[1])["outputs"][0]["data"], x_up * 2)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["outputs"][0]["data"], x_http * 2)
    np.testing.assert_allclose(got_grpc, x_grpc * 2)
    assert status == 0 and took < 10, (status, took)


def _refused(address):
    try:
        raw(address, timeout=1).close()
        return False
    except (ConnectionRefusedError, ConnectionResetError):
        return True


def test_exit_timeout_bounds_the_drain_and_python_processes_follow(tmp_path):
    """README/SERVING.md: "--exit-timeout-secs ... requests in flight get this long to finish, then it exits 0,
    even if an engine call is still running"; "a Python model's process, still in its execute, ends within a
    second of anemone"."""
    served = launch(repository(tmp_path / "repo", slow=True), log=tmp_path / "err.txt", exit_timeout="1")
    base = f"http://{served.http}"
    assert wait_until(lambda: requests.get(f"{base}/v2/health/ready").status_code == 200, 60)
    kids = _children(served.proc.pid)
    assert kids, "the Python model runs in child processes"
    with ThreadPoolExecutor(1) as pool:
        f = pool.submit(lambda: requests.post(f"{base}/v2/models/slow/infer", json=slow_json(8)[1], timeout=30))
        time.sleep(0.7)
        t0 = time.time()
        served.proc.send_signal(signal.SIGTERM)
        status = served.proc.wait(timeout=15)
        took = time.time() - t0
        with pytest.raises(requests.exceptions.ConnectionError):
            f.result().raise_for_status()
    assert status == 0 and 0.8 < took < 4, (status, took)
    assert wait_until(lambda: not any(_alive(k) for k in kids), 3), [k for k in kids if _alive(k)]


# ---------------------------------------------------------------- behind a proxy; attackers

@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    d = tmp_path_factory.mktemp("plain")
    served = launch(repository(d / "repo"), "--http-header-timeout-secs", "1", "--http-body-timeout-secs", "1",
                    "--max-request-bytes", "100000", "--log-level", "info", log=d / "stderr.txt")
    assert wait_until(lambda: requests.get(f"http://{served.http}/v2/health/ready").status_code == 200, 60)
    yield served
    stop(served)


def _alive_and_serving(served):
    r = requests.post(f"http://{served.http}/v2/models/add/infer", json=add_body(), timeout=10)
    assert r.status_code == 200, r.text
    check_add_json(r.json())


def test_http10_and_keep_alive_as_a_proxy_uses_them(plain):
    """DEPLOY.md nginx: upstream keep-alive (`proxy_http_version 1.1`, `Connection ""`); nginx's default is
    HTTP/1.0 with close. Both are served; requests follow each other on one keep-alive connection."""
    s = raw(plain.http, b"GET /v2/health/ready HTTP/1.0\r\n\r\n")
    data = read_all(s)
    s.close()
    assert data.startswith(b"HTTP/1.0 200") or data.startswith(b"HTTP/1.1 200"), data[:100]
    body = json.dumps(add_body()).encode()
    s = raw(plain.http)
    for _ in range(3):
        s.sendall(b"POST /v2/models/add/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        head = s.recv(65536)
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        check_add_json(json.loads(head.split(b"\r\n\r\n", 1)[1]))
    s.close()


def test_an_idle_keep_alive_connection_is_closed_after_the_header_timeout(plain):
    """README: --http-header-timeout-secs: "a keep-alive connection idle that long, is disconnected" (1 s)."""
    s = raw(plain.http, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    took = closed_within(s, 6)
    s.close()
    assert took is not None and 0.5 < took < 4, took


def test_a_slowloris_head_is_cut_at_the_header_timeout_however_it_trickles(plain):
    """README: "a client that has not sent a whole request head by then ... is disconnected": the timeout
    counts the whole head, so a byte every 0.2 s does not keep the connection (1 s)."""
    s = raw(plain.http, b"GET /v2/health/live HTTP/1.1\r\n")
    t0 = time.time()
    cut = None
    while time.time() - t0 < 6:
        try:
            s.sendall(b"X")
        except (BrokenPipeError, ConnectionResetError):
            cut = time.time() - t0
            break
        s.settimeout(0.2)
        try:
            if s.recv(4096) == b"":
                cut = time.time() - t0
                break
        except socket.timeout:
            pass
        except ConnectionResetError:
            cut = time.time() - t0
            break
    s.close()
    assert cut is not None and cut < 4, cut
    _alive_and_serving(plain)


def test_a_stalled_body_gets_408_and_the_server_serves_on(plain):
    """README: --http-body-timeout-secs: "a body that stalls that long between chunks gets 408" (1 s)."""
    s = raw(plain.http, b"POST /v2/models/add/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{\"inp")
    t0 = time.time()
    s.settimeout(6)
    data = read_all(s)
    s.close()
    assert status_line(data).startswith("HTTP/1.1 408"), data[:200]
    assert time.time() - t0 < 4
    _alive_and_serving(plain)


def test_many_idle_connections_do_not_stop_service_and_are_closed(plain):
    """RELIABILITY/README timeouts against an attacker holding connections: 300 connections that send
    nothing; a real client is still served at once, and the server closes them all after the header
    timeout."""
    socks = [raw(plain.http) for _ in range(300)]
    try:
        t0 = time.time()
        _alive_and_serving(plain)
        assert time.time() - t0 < 2
        time.sleep(2.5)
        open_ones = 0
        for s in socks:
            s.settimeout(0.5)
            try:
                if s.recv(1) != b"":
                    open_ones += 1
            except socket.timeout:
                open_ones += 1
            except ConnectionResetError:
                pass
        assert open_ones == 0, f"{open_ones} of 300 idle connections still open after the header timeout"
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("head", [
    b"X-Big: " + b"a" * (1 << 20) + b"\r\n",
    b"".join(b"X-H%d: v\r\n" % i for i in range(5000)),
], ids=["one 1 MiB header", "5000 headers"])
def test_oversized_headers_are_refused_and_the_server_serves_on(plain, head):
    """An attacker's oversized request heads: refused (4xx or closed), never a 2xx or a 5xx, and the server
    serves on."""
    s = raw(plain.http)
    try:
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    data = read_all(s)
    s.close()
    line = status_line(data)
    assert data == b"" or re.match(r"HTTP/1\.1 4\d\d", line), line
    _alive_and_serving(plain)


def _post(served, body, headers=None):
    return requests.post(f"http://{served.http}/v2/models/add/infer", data=body,
                         headers={"Content-Type": "application/json", **(headers or {})}, timeout=20)


def test_deep_json_nesting_is_400_naming_the_limit_and_never_crashes(plain):
    """RELIABILITY.md request limits: "'data' is nested deeper than 64 lists"; parameters must be a string,
    number or boolean; deeper JSON elsewhere is a 400 (serde's 128 levels), never a crash."""
    deep = "[" * 40000 + "1" + "]" * 40000
    r = _post(plain, '{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":' + deep + '}]}')
    assert r.status_code == 400 and "input 'x': 'data' is nested deeper than 64 lists" in r.json()["error"], r.text
    r = _post(plain, '{"parameters":{"p":' + deep + '},"inputs":[]}')
    assert r.status_code == 400 and "expected a parameter value (a string, number or boolean)" in r.text, r.text
    r = _post(plain, '{"junk":' + deep + ',"inputs":[]}')
    assert r.status_code == 400, r.text
    r = _post(plain, '{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[[[1,2,3,4]]]}], "junk":'
              + '{"a":' * 10000 + "1" + "}" * 10000 + "}")
    assert r.status_code == 400, r.text
    _alive_and_serving(plain)


def test_a_body_over_the_limit_is_413_with_the_documented_message(plain):
    """RELIABILITY.md: 413 `request body exceeds the N-byte limit (--max-request-bytes)`, chunked or not,
    compressed or not."""
    import gzip
    big = json.dumps({"inputs": [], "pad": "a" * 100001})
    for body, headers in ((big, {}), (iter([big[:50000].encode(), big[50000:].encode()]), {}),
                          (gzip.compress(big.encode()), {"Content-Encoding": "gzip"})):
        r = _post(plain, body, headers)
        assert r.status_code == 413, r.text
        assert r.json()["error"].startswith("request body exceeds the 100000-byte limit (--max-request-bytes)"), r.text
    _alive_and_serving(plain)


def test_grpc_metadata_over_16_kib_is_refused_and_the_server_serves_on(plain):
    """RELIABILITY.md: "the request headers may be 16 KiB (SETTINGS_MAX_HEADER_LIST_SIZE, as Triton)"."""
    c = grpcclient.InferenceServerClient(plain.grpc)
    with pytest.raises(InferenceServerException):
        c.is_server_live(headers={"x-big": "a" * (20 << 10)}, client_timeout=10)
    assert c.is_server_live(headers={"x-small": "a" * 1000})
    np.testing.assert_allclose(c.infer("add", grpc_add_inputs()).as_numpy("diff"), X - Y)


def test_the_log_never_holds_request_data_or_headers(plain):
    """SECURITY.md (secrets in headers) and the container's ANEMONE_LOG=info: a request's tensor values,
    parameters and header values never reach the log, even when the request is refused."""
    marker = 31337.125
    x = np.array([[marker, 2, 3, 4]], np.float32)
    body = add_body(x, Y)
    body["parameters"] = {"note": "PARAM-MARKER-abc"}
    requests.post(f"http://{plain.http}/v2/models/add/infer", json=body, headers={"Authorization": "Bearer TOKEN-xyz"})
    bad = add_body(x, Y)
    bad["inputs"][1]["datatype"] = "FP64"
    requests.post(f"http://{plain.http}/v2/models/add/infer", json=bad, headers={"X-Api-Key": "TOKEN-xyz"})
    c = grpcclient.InferenceServerClient(plain.grpc)
    c.infer("add", grpc_add_inputs(x, Y), headers={"authorization": "Bearer TOKEN-xyz"})
    time.sleep(0.2)
    log = plain.stderr()
    for word in ("31337.1", "PARAM-MARKER", "TOKEN-xyz"):  # "31337" alone may match a timestamp
        assert word not in log, word


# ---------------------------------------------------------------- files and users

def _tree(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


def test_a_local_repository_is_served_in_place_and_nothing_else_is_written(tmp_path):
    """DEPLOY.md: "A single local directory is served in place" (no copy into the model cache); the k8s
    Deployment runs with readOnlyRootFilesystem, so serving writes nowhere: not the repository, not HOME, not
    the cache directory, not TMPDIR."""
    repo = repository(tmp_path / "repo")
    home, cache, tmp = tmp_path / "home", tmp_path / "xdg", tmp_path / "tmp"
    for d in (home, cache, tmp):
        d.mkdir()
    before = _tree(repo)
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(cache), "TMPDIR": str(tmp)}
    saved = os.environ.pop("ANEMONE_MODEL_CACHE_DIR", None)
    try:
        served = launch(repo, log=tmp_path / "err.txt", env=env)
    finally:
        if saved is not None:
            os.environ["ANEMONE_MODEL_CACHE_DIR"] = saved
    try:
        assert wait_until(lambda: requests.get(f"http://{served.http}/v2/health/ready").status_code == 200, 60)
        _alive_and_serving(served)
    finally:
        stop(served)
    assert _tree(repo) == before
    # ONNX Runtime itself keeps a device id under $XDG_CACHE_HOME/Microsoft/DeveloperTools/.onnxruntime and a
    # `.ses` file in $TMPDIR; anemone writes nothing of its own (no model cache for a local repository).
    written = [p for d in (home, cache, tmp) for p in d.rglob("*") if "Microsoft" not in p.parts
               and p.name != ".ses"]
    assert written == [], written
    # With HOME and the cache directories impossible to write (as under readOnlyRootFilesystem), it serves.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {"HOME": str(blocker / "home"), "XDG_CACHE_HOME": str(blocker / "xdg"), "TMPDIR": str(blocker / "tmp")}
    served = launch(repo, log=tmp_path / "err2.txt", env=env)
    try:
        assert wait_until(lambda: requests.get(f"http://{served.http}/v2/health/ready").status_code == 200, 60)
        _alive_and_serving(served)
    finally:
        stop(served)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to uid 10001")
def test_serves_as_the_containers_non_root_user_10001(tmp_path):
    """DEPLOY.md: the image runs "as the non-root user 10001" with the repository in /models and the
    cache in /var/cache/anemone: the server needs no privilege to serve."""
    import tempfile
    base = Path(tempfile.mkdtemp(prefix="anemone-uid-"))
    try:
        os.chmod(base, 0o755)
        repo = repository(base / "models")
        cache = base / "cache"
        cache.mkdir()
        for p in [base, *base.rglob("*")]:
            os.chown(p, 10001, 10001)

        def drop():
            os.setgroups([])
            os.setgid(10001)
            os.setuid(10001)
        served = launch(repo, log=base / "err.txt", preexec=drop,
                        env={"HOME": str(base), "ANEMONE_MODEL_CACHE_DIR": str(cache)})
        try:
            assert wait_until(lambda: requests.get(f"http://{served.http}/v2/health/ready").status_code == 200, 60)
            _alive_and_serving(served)
            assert Path(f"/proc/{served.proc.pid}/status").read_text().count("10001") >= 2
        finally:
            stop(served)
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------- the deployment files

def test_every_file_the_docs_name_exists():
    """DEPLOY.md and SECURITY.md name these files; each must be in the repository."""
    for path in ["Dockerfile", "deny.toml", "deploy/kserve/servingruntime.yaml", "deploy/kserve/inferenceservice.yaml",
                 "deploy/k8s", "deploy/nginx/anemone.conf", "scripts/nginx_rolling.py",
                 "scripts/validate_manifests.py", "scripts/install-onnxruntime.sh", "scripts/requirements.txt",
                 "scripts/test.sh", "scripts/setup.sh", "tests/python/test_s3_repository.py",
                 "crates/anemone-server/tests/api/shutdown.rs", "crates/anemone-server/tests/api/tls.rs",
                 "examples/models", "docs/EVICTION.md", "docs/PERFORMANCE.md"]:
        assert (ROOT / path).exists(), path
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in (ROOT / "deploy/k8s").glob("*.yaml")}
    assert kinds == {"Deployment", "Service", "HorizontalPodAutoscaler"}, kinds
    assert "moto[server]" in (ROOT / "scripts/requirements.txt").read_text()


NOT_ANEMONE = {  # flags in the docs' commands that belong to other tools
    "--rm", "--cacert", "--cert", "--key", "--locked", "--strict", "--required", "--no-deps", "--compressed",
    "--from-literal", "--features", "--bin", "--release", "--init", "--pid", "--fork", "--mount-proc",
}


def test_every_flag_the_docs_name_is_one_anemone_takes():
    """DEPLOY.md and SECURITY.md: each `--flag` they name exists in `anemone serve --help` or
    `anemone bench --help` (or in scripts/nginx_rolling.py, for its --binary)."""
    text = doc("DEPLOY.md") + doc("SECURITY.md")
    flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]+)", text)) - NOT_ANEMONE
    helps = "".join(run_anemone(*a)[1] for a in (["serve", "--help"], ["bench", "--help"], ["--help"]))
    rolling = (ROOT / "scripts/nginx_rolling.py").read_text()
    missing = sorted(f for f in flags if not re.search(re.escape(f) + r"\b", helps) and f not in rolling)
    assert not missing, missing
    for env in ("ANEMONE_HTTP_TLS_CERT", "ANEMONE_GRPC_USE_SSL", "ANEMONE_HTTP_RESTRICTED_API",
                "ANEMONE_GRPC_RESTRICTED_PROTOCOL", "ANEMONE_MODEL_CACHE_DIR"):
        assert env in helps, env


def _args(path, container=0):
    docs = [d for d in yaml.safe_load_all((ROOT / path).read_text()) if d]
    spec = next(d for d in docs if d["kind"] in ("Deployment", "ClusterServingRuntime"))
    pod = spec["spec"]["template"]["spec"] if spec["kind"] == "Deployment" else spec["spec"]
    return pod, pod["containers"][container]


@pytest.mark.parametrize("path,http,grpc_port,exit_timeout,grace", [
    ("deploy/k8s/deployment.yaml", 8000, 8001, 30, None),
    ("deploy/kserve/servingruntime.yaml", 8080, 8081, 25, 30),
])
def test_the_manifests_args_probes_and_grace_period_fit_together(path, http, grpc_port, exit_timeout, grace):
    """DEPLOY.md KServe / Kubernetes / Shutdown timeline: the args are flags anemone takes (checked with
    `anemone config show -- ARGS`, which layers them as serve would), readiness on /v2/health/ready,
    liveness and start-up on /v2/health/live, Prometheus on the HTTP port, and the grace period covers the
    preStop sleep plus --exit-timeout-secs (KServe's default grace is 30 s)."""
    pod, c = _args(path)
    env = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
    status, out, err = run_anemone("config", "show", "--json", "--", *c["args"], env=env)
    assert status == 0, err
    got = {s["key"]: s["value"] for s in json.loads(out)["settings"]}
    assert str(got["http-port"]) == str(http) and str(got["grpc-port"]) == str(grpc_port), got
    assert str(got["exit-timeout-secs"]) == str(exit_timeout) and got["host"] == "0.0.0.0"
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    pre_stop = int(c["lifecycle"]["preStop"]["exec"]["command"][-1])
    grace_seconds = pod.get("terminationGracePeriodSeconds", grace)
    assert grace_seconds >= pre_stop + exit_timeout, (grace_seconds, pre_stop, exit_timeout)
    assert c["securityContext"].get("runAsNonRoot") or pod.get("securityContext", {}).get("runAsNonRoot")


def test_the_dockerfile_says_what_deploy_md_says():
    """DEPLOY.md The container image: non-root user 10001, ORT_DYLIB_PATH set, /models and
    /var/cache/anemone, ports 8000 and 8001, HEALTHCHECK on /v2/health/ready, ENTRYPOINT `anemone serve`;
    its ANEMONE_* settings are ones serve reads (checked with config show)."""
    text = (ROOT / "Dockerfile").read_text()
    for words in ("USER 10001", "ORT_DYLIB_PATH=", "/models", "/var/cache/anemone", "EXPOSE 8000 8001",
                  "/v2/health/ready", 'ENTRYPOINT ["/usr/local/bin/anemone", "serve"]',
                  'CMD ["--model-repository", "/models"]', "rust:1.92-bookworm", "--locked",
                  "debian:bookworm-slim", "onnxruntime.so.1.31.1"):
        assert words in text, words
    assert "onnxruntime==1.31.1" in (ROOT / "scripts/install-onnxruntime.sh").read_text() or \
        "1.31.1" in (ROOT / "scripts/install-onnxruntime.sh").read_text()
    env = dict(re.findall(r"(ANEMONE_\w+)=(\S+)", text))
    status, out, err = run_anemone("config", "show", "--json", "--", "--model-repository", "/models", env=env)
    assert status == 0, err
    got = {s["key"]: (s["source"], s["value"]) for s in json.loads(out)["settings"]}
    assert got["host"] == ("env", "0.0.0.0") and str(got["http-port"][1]) == "8000", got["host"]
    assert got["model-cache-dir"][0] == "env" and got["log-level"] == ("env", "info"), got["log-level"]


def test_the_nginx_configuration_says_what_deploy_md_says():
    """DEPLOY.md Replicas behind nginx: retries on error, timeout, 502 and 503 with non_idempotent, at most 3
    tries in 10 s, upstream keep-alive 64."""
    text = (ROOT / "deploy/nginx/anemone.conf").read_text()
    for words in ("proxy_next_upstream error timeout http_502 http_503 non_idempotent;",
                  "proxy_next_upstream_tries 3;", "proxy_next_upstream_timeout 10s;", "keepalive 64;",
                  "proxy_http_version 1.1;", 'proxy_set_header Connection "";', "client_max_body_size 64m;"):
        assert words in text, words


@pytest.mark.parametrize("url,words", [("gs://bucket/models", "s3://https://storage.googleapis.com:443"),
                                       ("az://container/models", "copy the repository to a local directory")])
def test_gs_and_az_repositories_are_refused_with_the_advice(url, words):
    """DEPLOY.md Other stores: "gs:// and az:// are refused with that advice"."""
    status, out, err = run_anemone("serve", "--model-repository", url, "--http-port", "0", "--grpc-port", "0",
                                   "--metrics-port", "0")
    assert status not in (0, None), (status, err)
    assert words in err, err


def test_a_store_that_cannot_be_reached_stops_start_up_without_printing_the_secret(tmp_path):
    """DEPLOY.md When the store fails: "a bucket that cannot be listed stops the server with the reason"; the
    credentials (AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) never appear in what it prints."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "SeCrEtKeY-do-not-print",
           "AWS_SESSION_TOKEN": "SeSsIoN-do-not-print", "AWS_REGION": "eu-west-1"}
    status, out, err = run_anemone("serve", "--model-repository", f"s3://127.0.0.1:{port}/bucket/prefix",
                                   "--model-cache-dir", str(tmp_path / "cache"), "--http-port", "0",
                                   "--grpc-port", "0", "--metrics-port", "0", "--log-level", "debug",
                                   env=env, timeout=60)
    assert status not in (0, None), (status, err[-2000:])
    assert "cannot list s3://" in err, err[-2000:]
    assert "do-not-print" not in out + err
