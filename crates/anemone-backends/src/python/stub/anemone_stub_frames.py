"""The frames of anemone's Python process (anemone_python_stub.py, which
runs this file in its own namespace): reading and writing one frame, and
the model's incoming frames, read by a thread of their own (Frames, a
decoupled model's) or on demand (Direct). The protocol is described at the
top of anemone_python_stub.py.
"""
import collections
import json
import queue
import select
import struct
import threading


def read_exact(stream, n):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = stream.readinto(view[got:])
        if not k:
            return None
        got += k
    return buf


def read_frame(stream):
    head = read_exact(stream, 4)
    if head is None:
        return None, None
    (length,) = struct.unpack("<I", head)
    body = read_exact(stream, length)
    if body is None:
        return None, None
    (hlen,) = struct.unpack_from("<I", body, 0)
    header = json.loads(bytes(body[4:4 + hlen]))
    return header, memoryview(body)[4 + hlen:]


WRITING = threading.Lock()


def write_frame(stream, header, blobs=()):
    if stream.closed:
        # Closed at fork in the child (anemone_python_stub.main).
        raise OSError(
            "anemone's pipes belong to the model's own process: a process it forked cannot send "
            "requests or answers on them (do not daemonize model.py; call other models with exec())"
        )
    # A lone surrogate (a file name that is not UTF-8, as os.fsdecode gives
    # it) is no UTF-8 JSON can carry: it travels as "?".
    head = json.dumps(header, ensure_ascii=False).encode("utf-8", "replace")
    size = 4 + len(head) + sum(len(b) for b in blobs)
    with WRITING:
        stream.write(struct.pack("<II", size, len(head)))
        stream.write(head)
        for blob in blobs:
            stream.write(blob)
        stream.flush()


class Frames:
    """A decoupled model's incoming frames, read on a thread of their own:
    an answer to a call ("call" set) goes to the queue of the thread
    waiting on it (a stream's answers, all carrying "more" but the last,
    to its iterator), any other frame to the main loop (next())."""

    def __init__(self, proto_in, proto_out):
        self.proto_in, self.proto_out = proto_in, proto_out
        self.main = queue.Queue()
        self.calls, self.numbers, self.lock = {}, iter(range(1, 1 << 62)), threading.Lock()
        self.ended = False
        # Keys of the requests whose clients have gone, as anemone tells them.
        self.cancelled = set()
        threading.Thread(target=self.read, name="anemone-frames", daemon=True).start()

    def read(self):
        while True:
            header, data = read_frame(self.proto_in)
            if header is None:
                with self.lock:
                    self.ended = True
                    waiting = list(self.calls.values())
                    self.calls.clear()
                for answers in waiting:
                    answers.put((None, None))
                self.main.put((None, None))
                return
            if header.get("op") == "cancelled":
                self.cancelled.add(header.get("key"))
                continue
            call = header.get("call")
            if call is None:
                self.main.put((header, data))
                continue
            with self.lock:
                answers = self.calls.get(call) if header.get("more") else self.calls.pop(call, None)
            if answers is not None:
                answers.put((header, data))

    def next(self):
        return self.main.get()

    def _open(self, header, blobs):
        answers = queue.Queue()
        with self.lock:
            if self.ended:
                return None, None
            number = next(self.numbers)
            self.calls[number] = answers
        header["call"] = number
        write_frame(self.proto_out, header, blobs)
        return number, answers

    def ask(self, header, blobs=()):
        """Sends a frame that is answered with its "call" number; waits for the answer."""
        number, answers = self._open(header, blobs)
        return (None, None) if answers is None else answers.get()

    def ask_stream(self, header, blobs=()):
        """Sends a frame answered by a stream; its answers' pull, and its cancel."""
        number, answers = self._open(header, blobs)
        if answers is None:
            return (lambda: (None, None)), (lambda: None)

        def cancel():
            with self.lock:
                open_ = self.calls.pop(number, None) is not None
            if open_:
                write_frame(self.proto_out, {"op": "bls_cancel", "call": number})

        return answers.get, cancel

    def begin_execute(self):
        """Calls may be made from any thread at any time: nothing to open."""

    def end_execute(self):
        """A decoupled model's streams may outlive execute(): nothing to do."""


class ClosedChannel(RuntimeError):
    """A call through Direct while no initialize() or execute() runs."""


class Direct:
    """A model's incoming frames when it is not decoupled, read on demand:
    the main loop's next frame (next()), or, while initialize() or
    execute() runs (begin_execute to end_execute), the answers to the
    model's calls (ask, ask_stream), from any of its threads one at a time
    (the lock), frames of other open calls being kept for them meanwhile
    and those of calls given up dropped. Outside those, a call would race
    the main loop for anemone's frames: it is refused (ClosedChannel)."""

    def __init__(self, proto_in, proto_out):
        self.proto_in, self.proto_out = proto_in, proto_out
        self.numbers = iter(range(1, 1 << 62))
        # Open calls by number: the answers that came and were not read yet.
        self.calls = {}
        self.lock = threading.RLock()
        self.open = False
        # Keys of the running requests whose clients have gone, as anemone
        # tells them while execute() runs ({"op": "cancelled", "key": K}).
        self.cancelled = set()

    def begin_execute(self):
        with self.lock:
            self.open = True
            self.cancelled.clear()

    def is_cancelled(self, key):
        """Whether anemone told that request `key`'s client has gone: the
        frames already come are read first, without waiting (a thread
        waiting on a call's answer reads them meanwhile)."""
        if key in self.cancelled:
            return True
        if self.lock.acquire(blocking=False):
            try:
                while self.open and select.select([self.proto_in], [], [], 0)[0]:
                    header, _ = self._read()
                    if header is not True:
                        # The process's input ended (anemone went), or a frame out of turn.
                        break
            finally:
                self.lock.release()
        return key in self.cancelled

    def _check_open(self):
        if not self.open:
            raise ClosedChannel(
                "a call to anemone after initialize() or execute() returned: in a model that is not "
                "decoupled, call it while they run (a decoupled model may call it at any time)"
            )

    def _read(self):
        """The next frame, routed to its call when it is an answer (then
        (True, None)); a frame that is not an answer, or (None, None)."""
        header, data = read_frame(self.proto_in)
        if header is not None and header.get("op") == "cancelled":
            self.cancelled.add(header.get("key"))
            return True, None
        if header is None or header.get("call") is None:
            return header, data
        answers = self.calls.get(header["call"])
        if answers is not None:
            answers.append((header, data))
        return True, None

    def next(self):
        while True:
            header, data = self._read()
            if header is not True:
                return header, data

    def _pull(self, number):
        with self.lock:
            return self._pull_locked(number)

    def _pull_locked(self, number):
        answers = self.calls.get(number)
        if answers is None:
            return None, None
        while not answers:
            self._check_open()
            header, data = self._read()
            if header is True:
                continue
            self.calls.pop(number, None)
            if header is not None:
                raise RuntimeError(f"anemone sent {header.get('op')!r} while a call's answer was awaited")
            return None, None
        header, data = answers.popleft()
        if not header.get("more"):
            self.calls.pop(number, None)
        return header, data

    def _open(self, header, blobs):
        self._check_open()
        number = next(self.numbers)
        self.calls[number] = collections.deque()
        header["call"] = number
        write_frame(self.proto_out, header, blobs)
        return number

    def ask(self, header, blobs=()):
        with self.lock:
            return self._pull_locked(self._open(header, blobs))

    def ask_stream(self, header, blobs=()):
        with self.lock:
            number = self._open(header, blobs)

        def cancel():
            with self.lock:
                answers = self.calls.pop(number, None)
                if answers is not None and not any(not h.get("more") for h, _ in answers):
                    write_frame(self.proto_out, {"op": "bls_cancel", "call": number})

        return (lambda: self._pull(number)), cancel

    def end_execute(self):
        """Streams the model did not read to their end stop with execute():
        anemone is told before the answer, and their frames are dropped."""
        with self.lock:
            self.open = False
            self._cancel_unread()

    def _cancel_unread(self):
        for number in list(self.calls):
            answers = self.calls.pop(number)
            if not any(not h.get("more") for h, _ in answers):
                write_frame(self.proto_out, {"op": "bls_cancel", "call": number})
