"""Custom metrics of Python models (`pb_utils.MetricFamily`, Triton's custom
metrics) on the server's /metrics, read with Prometheus' own parser
(prometheus_client): counters, gauges and histograms that two instances
count into together, checked against numpy over the values sent; a gauge a
model's own thread sets between requests; a decoupled model counting from
its response thread; the API's refusals (with Triton's exception types);
series shared by name and labels, living as long as their family; and a
model's metrics gone when it unloads or its process dies.
"""
import concurrent.futures as cf
import json
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from custom_metrics_models import API, API_CONFIG, COUNTING, COUNTING_CONFIG, STREAMED, STREAMED_CONFIG
from prometheus_client.parser import text_string_to_metric_families
from serve_support import python_repository, start_serve, stop_serve, wait_ready

BOUNDS = [-1.0, 0.0, 0.5, 1.0, 2.0]


def le(bound):
    """A bucket's bound as /metrics writes it (1.0 as 1)."""
    return str(int(bound)) if float(bound).is_integer() else repr(bound)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = python_repository(tmp_path_factory.mktemp("custom_metrics"), models=(
        ("counting", COUNTING_CONFIG, COUNTING), ("api", API_CONFIG, API), ("streamed", STREAMED_CONFIG, STREAMED),
    ))
    proc, addresses = start_serve(repo, "--model-control-mode", "explicit", "--load-model", "*")
    try:
        wait_ready(addresses["HTTP"])
        yield addresses
    finally:
        stop_serve(proc)


def scrape(server):
    """/metrics as Prometheus reads it: {family name: (type, help, {(sample name, labels): value})}."""
    with urllib.request.urlopen(f"http://{server['HTTP']}/metrics") as r:
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        out[family.name] = (family.type, family.documentation, samples)
    return out


def check(server, cmd):
    client = httpclient.InferenceServerClient(server["HTTP"])
    t = httpclient.InferInput("CMD", [1], "BYTES")
    t.set_data_from_numpy(np.array([cmd], dtype=np.object_))
    return json.loads(client.infer("api", [t]).as_numpy("OUT")[0])


def test_two_instances_count_into_one_series_as_numpy_counts_the_values(server):
    rng = np.random.default_rng(7)
    batches = [rng.normal(0.5, 1.0, size=rng.integers(1, 6)).astype(np.float32) for _ in range(48)]
    # Every value on a bucket's bound too, once: `le` is inclusive.
    batches.append(np.array(BOUNDS, dtype=np.float32))
    client = grpcclient.InferenceServerClient(server["gRPC"])

    def send(x):
        t = grpcclient.InferInput("X", [1, x.size], "FP32")
        t.set_data_from_numpy(x[None, :])
        y = client.infer("counting", [t]).as_numpy("Y")
        np.testing.assert_array_equal(y[0], x * 2)

    with cf.ThreadPoolExecutor(8) as pool:
        list(pool.map(send, batches[:-1]))
    send(batches[-1])
    values = np.concatenate(batches).astype(np.float64)
    metrics = scrape(server)
    labels = (("model", "counting"),)

    kind, help_, samples = metrics["app_elements"]
    assert (kind, help_) == ("counter", "Elements received")
    assert samples[("app_elements_total", labels)] == values.size

    kind, _, samples = metrics["app_values"]
    assert kind == "histogram"
    for bound in BOUNDS:
        want = int(np.sum(values <= np.float32(bound)))
        assert samples[("app_values_bucket", (("le", le(bound)),) + labels)] == want, bound
    assert samples[("app_values_bucket", (("le", "+Inf"),) + labels)] == values.size
    assert samples[("app_values_count", labels)] == values.size
    assert samples[("app_values_sum", labels)] == pytest.approx(float(np.sum(values)), rel=1e-9)

    kind, _, samples = metrics["app_last_sum"]
    assert kind == "gauge"
    assert samples[("app_last_sum", labels)] == pytest.approx(float(batches[-1].sum()))
    # Both instances' threads beat, each into its own series, between requests.
    _, _, beats = metrics["app_heartbeat"]
    assert {dict(k[1])["instance"] for k in beats} == {"counting_0_0", "counting_0_1"}, beats
    time.sleep(0.3)
    _, _, later = scrape(server)["app_heartbeat"]
    assert all(later[k] > beats[k] for k in beats), (beats, later)


def test_a_decoupled_model_counts_from_its_response_thread(server):
    done, errors = [], []
    client = grpcclient.InferenceServerClient(server["gRPC"])
    client.start_stream(callback=lambda result, error: (errors if error else done).append(result))
    sizes = [3, 5, 8]
    for n in sizes:
        t = grpcclient.InferInput("N", [1], "INT32")
        t.set_data_from_numpy(np.array([n], dtype=np.int32))
        client.async_stream_infer("streamed", [t])
    deadline = time.time() + 20
    while len(done) < sum(sizes) and not errors and time.time() < deadline:
        time.sleep(0.02)
    client.stop_stream()
    assert not errors and len(done) == sum(sizes)
    _, _, samples = scrape(server)["app_responses"]
    assert samples[("app_responses_total", (("model", "streamed"),))] == sum(sizes)


def test_counters_gauges_and_histograms_refuse_what_their_kind_cannot_do(server):
    r = check(server, "kinds")
    assert r["counter_start"] == {"ok": 0.0}
    assert r["counter_increment"] == {"ok": 2023.0}
    for step in ("counter_decrement", "counter_nan"):
        assert r[step]["error"].startswith("TritonModelException:") and "only goes up" in r[step]["error"], r[step]
    for step, only in (("counter_set", "only a gauge"), ("counter_observe", "only a histogram"),
                       ("gauge_observe", "only a histogram"), ("hist_value", "only a counter or a gauge"),
                       ("hist_increment", "only a counter or a gauge"), ("hist_set", "only a gauge")):
        assert r[step]["error"].startswith("TritonModelException:") and only in r[step]["error"], (step, r[step])
    assert r["gauge"] == {"ok": 2023.0 - 23.5}
    assert r["gauge_set"] == {"ok": 999.9}
    assert "takes a number" in r["gauge_text"]["error"]
    assert r["hist_observe"] == {"ok": None}
    metrics = scrape(server)
    assert metrics["api_counter"][2][("api_counter_total", (("k", "v"),))] == 2023.0
    assert metrics["api_gauge"][2][("api_gauge", ())] == 999.9
    _, _, h = metrics["api_hist"]
    assert [h[("api_hist_bucket", (("le", le),))] for le in ("0.1", "1", "2.5", "+Inf")] == [1, 1, 2, 3]
    assert (h[("api_hist_sum", ())], h[("api_hist_count", ())]) == (pytest.approx(7.55), 3)


def test_bad_declarations_are_refused_with_the_rule_they_break(server):
    r = check(server, "declarations")
    expected = {
        "hist_no_buckets": "Missing required buckets",
        "hist_buckets_none": "Missing required buckets",
        "hist_unsorted": "strictly increasing",
        "hist_repeated": "strictly increasing",
        "hist_tuple": "Buckets must be a list",
        "hist_le_label": "'le' names its buckets",
        "gauge_buckets": "Unexpected buckets found",
        "labels_list": "Labels must be a dictionary",
        "label_int": "not a string",
        "label_name": "invalid label name",
        "label_reserved": "invalid label name",
        "name bad-name": "invalid metric name",
        "name 1abc": "invalid metric name",
        "name ": "invalid metric name",
        "name nv_inference_count": "the server's own metrics",
        "name anemone_x": "the server's own metrics",
        "kind_conflict": "already exists as a counter, not a gauge",
    }
    for step, words in expected.items():
        assert r[step]["error"].startswith("TritonModelException:") and words in r[step]["error"], (step, r[step])
    assert r["kind_text"]["error"].startswith("TypeError:"), r["kind_text"]
    assert r["hist_empty"] == {"ok": None} and r["name ok:colon"] == {"ok": None}
    _, _, empty = scrape(server)["api_hist_args"]
    assert empty == {("api_hist_args_bucket", (("e", "1"), ("le", "+Inf"))): 0,
                     ("api_hist_args_count", (("e", "1"),)): 0, ("api_hist_args_sum", (("e", "1"),)): 0}


def test_a_series_lives_as_long_as_its_family_as_in_triton(server):
    # Triton keeps a series when its Metric object goes, until its family goes.
    assert [check(server, "local")["before"] for _ in range(3)] == [0.0, 5.0, 10.0]
    assert scrape(server)["api_local"][2] == {("api_local_total", (("s", "ok"),)): 15.0}


def test_same_name_and_labels_share_a_series_until_the_last_family_object_goes(server):
    r = check(server, "sharing")
    assert r == {"shared": 7.5, "other": 0.0}
    kind, help_, samples = scrape(server)["api_shared"]
    # The first description stays; the family outlives the first object.
    assert (kind, help_) == ("counter", "first description")
    assert samples == {("api_shared_total", (("k", "same"),)): 7.5, ("api_shared_total", (("k", "other"),)): 0.0}
    check(server, "release")
    assert "api_shared" not in scrape(server)


def test_a_family_let_go_in_a_call_is_gone_from_metrics_when_its_answer_comes(server):
    # The release reaches anemone before the call's answer does: a scrape
    # right after never sees the family (a stub that released after
    # answering left it listed in 8 of 300 rounds).
    listed = 0
    for _ in range(150):
        check(server, "sharing")
        check(server, "release")
        listed += "api_shared" in scrape(server)
    assert listed == 0


def test_a_models_metrics_go_when_it_unloads_or_its_process_dies(server):
    client = httpclient.InferenceServerClient(server["HTTP"])
    check(server, "kinds")
    assert "api_counter" in scrape(server)
    with pytest.raises(Exception):
        check(server, "die")
    deadline = time.time() + 10
    while "api_counter" in scrape(server):
        assert time.time() < deadline, "the dead process's metrics are still shown"
        time.sleep(0.05)
    # A new process counts afresh.
    assert check(server, "kinds")["counter_start"] == {"ok": 0.0}
    assert "app_elements" in scrape(server)
    client.unload_model("counting")
    deadline = time.time() + 10
    while {"app_elements", "app_values", "app_last_sum", "app_heartbeat"} & set(scrape(server)):
        assert time.time() < deadline, "the unloaded model's metrics are still shown"
        time.sleep(0.05)
    assert "api_counter" in scrape(server)
    client.load_model("counting")
    x = np.array([[1.0, 2.0]], dtype=np.float32)
    t = httpclient.InferInput("X", [1, 2], "FP32")
    t.set_data_from_numpy(x)
    client.infer("counting", [t])
    _, _, samples = scrape(server)["app_elements"]
    assert samples == {("app_elements_total", (("model", "counting"),)): 2}
