"""Streams a decoupled model's responses over gRPC, as a Triton user does:
each value of IN comes back as a response of its own from the example
model `repeat` (examples/python_models), then the final flag.

    .venv/bin/python examples/clients/repeat_stream.py [--url localhost:8001] [VALUE ...]
"""
import argparse
import queue
from functools import partial

import numpy as np
import tritonclient.grpc as grpcclient


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="localhost:8001", help="the server's gRPC address")
    parser.add_argument("--delay-ms", type=int, default=100, help="milliseconds between responses")
    parser.add_argument("values", nargs="*", type=int, default=[4, 8, 15, 16, 23, 42])
    args = parser.parse_args()

    responses = queue.Queue()
    client = grpcclient.InferenceServerClient(args.url)
    client.start_stream(callback=partial(lambda q, result, error: q.put((result, error)), responses))
    values = np.array(args.values, np.int32)
    x = grpcclient.InferInput("IN", [len(values)], "INT32")
    x.set_data_from_numpy(values)
    client.async_stream_infer("repeat", [x], request_id="1", parameters={"delay_ms": args.delay_ms},
                              enable_empty_final_response=True)
    while True:
        result, error = responses.get(timeout=60)
        if error is not None:
            raise SystemExit(f"error: {error}")
        response = result.get_response()
        if response.parameters["triton_final_response"].bool_param:
            print("final")
            break
        print(f"IDX {result.as_numpy('IDX')[0]}: OUT {result.as_numpy('OUT')[0]}")
    client.stop_stream()


if __name__ == "__main__":
    main()
