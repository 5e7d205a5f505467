"""Custom metrics of anemone's `triton_python_backend_utils` (Triton's
pb_utils.MetricFamily and Metric): run by anemone's stub in the same
module's namespace, after triton_python_backend_utils.py, whose
TritonModelException it uses. The process's metrics channel is `_metrics`
(a _MetricsChannel, below, that the stub opens: python/metrics.rs on
anemone's side).
"""


class MetricKind:
    """What a MetricFamily counts: MetricFamily.COUNTER, GAUGE or HISTOGRAM."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"<MetricKind.{self.name}: {self.name.lower()}>"


# Set by anemone's stub: the process's metrics channel (a _MetricsChannel).
_metrics = None

# The channel's JSON functions as they are now: a model may replace
# json.dumps in the module it shares with anemone.
_dumps, _loads = json.dumps, json.loads


def _metrics_channel():
    if _metrics is None:
        raise TritonModelException(
            "custom metrics are not available in this process (anemone gave it no metrics channel)"
        )
    return _metrics


def _number(value, what):
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        raise TritonModelException(f"{what} takes a number, not {type(value).__name__}") from None


class MetricFamily:
    """A family of metrics shown on the server's /metrics (Triton's custom
    metrics): MetricFamily(name, description, kind), kind one of
    MetricFamily.COUNTER, GAUGE, HISTOGRAM; then family.Metric(labels={...})
    for each set of labels (a histogram's with buckets=[...], its upper
    bounds). Families of one name are one family across the model's
    instances and the server's models; a family and its metrics leave
    /metrics when the last of their objects is deleted (or the model
    unloads)."""

    COUNTER = MetricKind("COUNTER")
    GAUGE = MetricKind("GAUGE")
    HISTOGRAM = MetricKind("HISTOGRAM")

    def __init__(self, name, description, kind):
        if not isinstance(kind, MetricKind):
            raise TypeError(
                f"MetricFamily kind must be MetricFamily.COUNTER, GAUGE or HISTOGRAM, not {kind!r}"
            )
        if not isinstance(name, str) or not isinstance(description, str):
            raise TypeError("MetricFamily name and description must be strings")
        self._id = None
        self._name, self._kind = name, kind
        answer = _metrics_channel().ask(
            {"op": "family", "name": name, "description": description, "kind": kind.name.lower()}
        )
        if not answer.get("ok"):
            raise TritonModelException(f"Error when creating MetricFamily: {answer.get('error')}")
        self._id = answer["id"]

    def Metric(self, labels=None, buckets=None):
        """The family's metric with these labels (a dict of strings), the
        same one each time they are the same; a histogram needs buckets, a
        list of increasing upper bounds."""
        if labels is None:
            labels = {}
        if not isinstance(labels, dict):
            raise TritonModelException("Failed to create metric. Labels must be a dictionary.")
        if self._kind is MetricFamily.HISTOGRAM:
            if buckets is None:
                raise TritonModelException(
                    f"Failed to create metric. Missing required buckets: histogram '{self._name}' "
                    "needs buckets=[...], its upper bounds"
                )
            if not isinstance(buckets, list):
                raise TritonModelException("Failed to create metric. Buckets must be a list.")
            buckets = [_number(b, "a bucket") for b in buckets]
        elif buckets is not None:
            raise TritonModelException(
                f"Failed to create metric. Unexpected buckets found: only a histogram has buckets, "
                f"and '{self._name}' is a {self._kind.name.lower()}"
            )
        answer = _metrics_channel().ask(
            {"op": "metric", "family": self._id, "labels": labels, "buckets": buckets}
        )
        if not answer.get("ok"):
            raise TritonModelException(f"Error when creating Metric: {answer.get('error')}")
        return Metric(self, answer["id"])

    def __del__(self):
        if self._id is not None and _metrics is not None:
            _metrics.release("families", self._id)


# Triton exports the kinds at module level too (pb_utils.COUNTER).
COUNTER, GAUGE, HISTOGRAM = MetricFamily.COUNTER, MetricFamily.GAUGE, MetricFamily.HISTOGRAM


class Metric:
    """One metric of a MetricFamily: increment(value) (a counter by a value
    of 0 or more), set(value) (a gauge), observe(value) (a histogram), and
    value() (a counter's or a gauge's). It keeps its family alive."""

    def __init__(self, family, id):
        self._family = family
        self._id = id

    def _refuse(self, operation, only):
        raise TritonModelException(
            f"Failed to {operation} metric value: a {self._family._kind.name.lower()} "
            f"('{self._family._name}') does not support {operation}; only {only} does"
        )

    def increment(self, value):
        kind = self._family._kind
        if kind is MetricFamily.HISTOGRAM:
            self._refuse("increment", "a counter or a gauge")
        text = _number(value, "increment")
        if kind is MetricFamily.COUNTER and not float(text) >= 0:
            raise TritonModelException(
                f"Failed to increment metric value: counter '{self._family._name}' only goes up; "
                f"increment it by a value of 0 or more, not {text}"
            )
        self._update("increment", text)

    def set(self, value):
        if self._family._kind is not MetricFamily.GAUGE:
            self._refuse("set", "a gauge")
        self._update("set", _number(value, "set"))

    def observe(self, value):
        if self._family._kind is not MetricFamily.HISTOGRAM:
            self._refuse("observe", "a histogram")
        self._update("observe", _number(value, "observe"))

    def _update(self, operation, text):
        """Sends the update and waits for anemone to have made it, as
        Triton's does: the model reading /metrics next sees it."""
        answer = _metrics_channel().ask({"op": operation, "metric": self._id, "value": text})
        if not answer.get("ok"):
            raise TritonModelException(f"Failed to {operation} metric value: {answer.get('error')}")

    def value(self):
        if self._family._kind is MetricFamily.HISTOGRAM:
            self._refuse("get", "a counter or a gauge")
        answer = _metrics_channel().ask({"op": "value", "metric": self._id})
        if not answer.get("ok"):
            raise TritonModelException(f"Failed to get metric value: {answer.get('error')}")
        return float(answer["value"])

    def __del__(self):
        if _metrics is not None:
            _metrics.release("metrics", self._id)


class _MetricsChannel:
    """The process's metrics channel to anemone (a socket, fd
    ANEMONE_PYTHON_METRICS_FD; python/metrics.rs): one JSON object per line,
    from any thread. Declarations, value() and updates are answered;
    releases are not. Objects deleted (by __del__, which may run anywhere)
    are queued and released with the next message, or before a call's
    responses go back (flush(settled=True)), so a client that reads /metrics after
    its answer no longer sees a family its call let go."""

    def __init__(self, fd):
        import collections
        import socket
        import threading

        self.sock = socket.socket(fileno=fd)
        self.reader = self.sock.makefile("rb")
        self.lock = threading.Lock()
        # Appended to and popped from without a lock: deque's own operations are atomic.
        self.released = {"families": collections.deque(), "metrics": collections.deque()}

    def release(self, what, id):
        self.released[what].append(id)

    # python/metrics.rs reads lines of at most this many bytes, and closes
    # the channel on a longer one.
    MAX_LINE = 1 << 20

    def _send(self, line):
        while True:
            # In messages of at most 10,000 ids each, well within MAX_LINE.
            released = {}
            for what, ids in self.released.items():
                while ids and len(released.get(what, ())) < 10000:
                    released.setdefault(what, []).append(ids.popleft())
            if not released:
                break
            self.sock.sendall((_dumps({"op": "release", **released}) + "\n").encode())
        if line is not None:
            self.sock.sendall(line)

    def _line(self, message):
        line = (_dumps(message, ensure_ascii=False) + "\n").encode("utf-8", "replace")
        if len(line) > self.MAX_LINE:
            raise ValueError(
                f"it takes {len(line)} bytes, over the {self.MAX_LINE} one metrics message may take "
                "(its name, description, labels and buckets together); shorten them"
            )
        return line

    def tell(self, message):
        line = None if message is None else self._line(message)
        with self.lock:
            self._send(line)

    def ask(self, message):
        try:
            line = self._line(message)
        except ValueError as e:
            return {"ok": False, "error": str(e)}
        with self.lock:
            self._send(line)
            line = self.reader.readline()
        if not line:
            return {"ok": False, "error": "anemone closed the metrics channel"}
        return _loads(line)

    def flush(self, settled=False):
        """Sends what was released; with `settled`, waits for anemone to
        have released it."""
        if any(self.released.values()):
            try:
                self.ask({"op": "sync"}) if settled else self.tell(None)
            except OSError:
                pass
