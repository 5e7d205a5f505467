"""`--model-repository s3://...` against a real S3-compatible server (moto in
server mode), reached through a proxy that can cut downloads.

Outputs are compared with ONNX Runtime's Python API. Covered: a load with
correct outputs, a bucket mixed with a local repository, poll mode picking up
a new version and a removal, a restart that downloads nothing again, a
download cut mid-way (the server keeps serving and says why; the next poll
completes it), wrong credentials, a missing bucket, and a model name in two
repositories."""
import re

import boto3
import numpy as np
import pytest

moto_server = pytest.importorskip("moto.server", reason="pip install 'moto[server]' (scripts/requirements.txt)")
from moto import settings as moto_settings  # noqa: E402

from s3_support import Anemone, CuttingProxy, free_port, offset_model, reference  # noqa: E402

X = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def moto():
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    proxy = CuttingProxy(port)
    yield proxy
    proxy.close()
    server.stop()


@pytest.fixture
def bucket(moto, request):
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50]
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto.port}", **{
        "aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"})
    s3.create_bucket(Bucket=name)
    return name, s3


def env(moto):
    return {**CREDS, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto.port}"}


def put(s3, bucket, key, body):
    s3.put_object(Bucket=bucket, Key=key, Body=body)


def test_load_from_s3_and_a_local_repository(moto, bucket, tmp_path):
    name, s3 = bucket
    v1 = offset_model(1)
    put(s3, name, "repo/plus_one/1/model.onnx", v1)
    put(s3, name, "repo/plus_one/config.pbtxt", b'max_batch_size: 0\n')
    local = tmp_path / "local"
    (local / "plus_two" / "1").mkdir(parents=True)
    (local / "plus_two" / "1" / "model.onnx").write_bytes(offset_model(2))
    # Triton's form, with the endpoint in the URL.
    server = Anemone(["--model-repository", f"s3://127.0.0.1:{moto.port}/{name}/repo",
                      "--model-repository", str(local), "--model-cache-dir", str(tmp_path / "cache")],
                     CREDS, tmp_path / "log")
    try:
        assert server.http, server.text()
        server.wait_for("both models", lambda: server.ready("plus_one") and server.ready("plus_two"))
        np.testing.assert_allclose(server.infer("plus_one", X), reference(v1, X), rtol=1e-6)
        np.testing.assert_allclose(server.infer("plus_two", X), reference(offset_model(2), X), rtol=1e-6)
    finally:
        assert server.stop() == 0


def test_poll_follows_the_bucket_and_a_restart_downloads_nothing(moto, bucket, tmp_path):
    name, s3 = bucket
    put(s3, name, "m/offset/1/model.onnx", offset_model(1))
    put(s3, name, "m/gone_soon/1/model.onnx", offset_model(5))
    args = ["--model-repository", f"s3://{name}/m", "--model-cache-dir", str(tmp_path / "cache"),
            "--model-control-mode", "poll", "--repository-poll-secs", "1"]
    server = Anemone(args, env(moto), tmp_path / "log1")
    try:
        server.wait_for("the first load", lambda: server.ready("offset", 1) and server.ready("gone_soon"))
        v2 = offset_model(10)
        put(s3, name, "m/offset/2/model.onnx", v2)
        server.wait_for("version 2 from the bucket", lambda: server.ready("offset", 2))
        np.testing.assert_allclose(server.infer("offset", X, 2), reference(v2, X), rtol=1e-6)
        s3.delete_object(Bucket=name, Key="m/gone_soon/1/model.onnx")
        server.wait_for("the removal", lambda: not server.ready("gone_soon"))
        assert server.ready("offset", 2)
        assert "fetched" in server.text(), "the first run must log its downloads (or the check below proves nothing)"
    finally:
        assert server.stop() == 0
    cached = next((tmp_path / "cache").glob("*/repository/offset/2/model.onnx"))
    before = cached.stat().st_mtime_ns
    server = Anemone(args, env(moto), tmp_path / "log2")
    try:
        server.wait_for("the restart", lambda: server.ready("offset", 2))
        np.testing.assert_allclose(server.infer("offset", X, 2), reference(v2, X), rtol=1e-6)
        log = server.text()
        assert "fetched" not in log, f"an unchanged model was downloaded again:\n{log}"
        assert cached.stat().st_mtime_ns == before
    finally:
        assert server.stop() == 0


def test_a_download_cut_midway_keeps_serving_then_completes(moto, bucket, tmp_path):
    name, s3 = bucket
    v1 = offset_model(1)
    put(s3, name, "r/big/1/model.onnx", v1)
    server = Anemone(["--model-repository", f"s3://{name}/r", "--model-cache-dir", str(tmp_path / "cache"),
                      "--model-control-mode", "poll", "--repository-poll-secs", "1"], env(moto), tmp_path / "log")
    try:
        server.wait_for("version 1", lambda: server.ready("big", 1))
        # 16 MiB, cut after 256 KiB on every connection: no number of retries gets it all.
        v2 = offset_model(7, padding_floats=4 << 20)
        moto.cut_after = 256 << 10
        put_cuts = moto.cuts
        put(s3, name, "r/big/2/model.onnx", v2)
        server.wait_for("a failed download", lambda: "cannot download" in server.text(), timeout=120)
        assert moto.cuts > put_cuts
        assert not server.ready("big", 2)
        np.testing.assert_allclose(server.infer("big", X, 1), reference(v1, X), rtol=1e-6)
        assert "keeps what it had" in server.text()
        moto.cut_after = None
        server.wait_for("version 2 once the network is back", lambda: server.ready("big", 2), timeout=120)
        np.testing.assert_allclose(server.infer("big", X, 2), reference(v2, X), rtol=1e-6)
    finally:
        moto.cut_after = None
        assert server.stop() == 0


def test_wrong_credentials_are_named(moto, bucket, tmp_path):
    name, s3 = bucket
    put(s3, name, "r/m/1/model.onnx", offset_model(1))
    moto_auth = moto_settings_auth(True)
    try:
        server = Anemone(["--model-repository", f"s3://{name}/r", "--model-cache-dir", str(tmp_path / "c")],
                         {**env(moto), "AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG0"}, tmp_path / "log")
        assert server.http is None and server.status != 0
        log = server.text()
        assert "credentials were refused" in log and "AWS_ACCESS_KEY_ID" in log, log
    finally:
        moto_settings_auth(moto_auth)


def test_a_missing_bucket_is_named(moto, tmp_path):
    server = Anemone(["--model-repository", "s3://no-such-bucket/r", "--model-cache-dir", str(tmp_path / "c")],
                     env(moto), tmp_path / "log")
    assert server.http is None and server.status != 0
    assert "bucket does not exist" in server.text(), server.text()


def test_a_model_in_two_repositories_is_refused(moto, bucket, tmp_path):
    name, s3 = bucket
    put(s3, name, "r/twice/1/model.onnx", offset_model(1))
    local = tmp_path / "local"
    (local / "twice" / "1").mkdir(parents=True)
    (local / "twice" / "1" / "model.onnx").write_bytes(offset_model(2))
    server = Anemone(["--model-repository", f"s3://{name}/r", "--model-repository", str(local),
                      "--model-cache-dir", str(tmp_path / "c")], env(moto), tmp_path / "log")
    assert server.http is None and server.status != 0
    log = server.text()
    assert "in two repositories" in log and f"s3://{name}/r" in log and str(local) in log, log


def moto_settings_auth(on):
    """Turns moto's request authentication on (True) or off; returns the old setting."""
    old = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
    if isinstance(on, bool):
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0 if on else float("inf")
    else:
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = on
    return old


def test_the_load_api_fetches_from_the_bucket(moto, bucket, tmp_path):
    """Explicit mode: nothing is downloaded at start-up but the index lists
    the bucket's models; a load request fetches the model first; with the
    store refusing the credentials, a load gets 503 with the reason and the
    loaded model keeps serving."""
    from s3_support import http_json
    name, s3 = bucket
    v1 = offset_model(3)
    put(s3, name, "r/lazy/1/model.onnx", v1)
    put(s3, name, "r/other/1/model.onnx", offset_model(4))
    server = Anemone(["--model-repository", f"s3://{name}/r", "--model-cache-dir", str(tmp_path / "c"),
                      "--model-control-mode", "explicit"], env(moto), tmp_path / "log")
    try:
        assert server.http, server.text()
        server.wait_for("start-up", lambda: http_json(server.http + "/v2/health/ready")[0] == 200)
        status, index = http_json(server.http + "/v2/repository/index", {})
        assert status == 200 and {m["name"] for m in index} == {"lazy", "other"}, index
        assert not list((tmp_path / "c").glob("*/repository/lazy/1/model.onnx")), "downloaded before a load"
        status, body = http_json(server.http + "/v2/repository/models/lazy/load", {})
        assert status == 200, body
        np.testing.assert_allclose(server.infer("lazy", X), reference(v1, X), rtol=1e-6)
        old = moto_settings_auth(True)
        try:
            status, body = http_json(server.http + "/v2/repository/models/other/load", {})
        finally:
            moto_settings_auth(old)
        assert status == 503 and "credentials were refused" in body["error"], (status, body)
        np.testing.assert_allclose(server.infer("lazy", X), reference(v1, X), rtol=1e-6)
    finally:
        assert server.stop() == 0
