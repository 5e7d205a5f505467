"""For each text: its upper case, its length in characters, and how many
requests the execute() call that answered it held (BATCH). The lengths
are also counted into a histogram on the server's /metrics
(text_stats_length, a custom metric)."""
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        # Keep the family as long as its metrics (as Triton requires).
        self.lengths_family = pb_utils.MetricFamily(
            name="text_stats_length",
            description="Length of the texts answered, in characters",
            kind=pb_utils.MetricFamily.HISTOGRAM,
        )
        self.lengths = self.lengths_family.Metric(labels={"model": args["model_name"]}, buckets=[4, 16, 64, 256])

    def execute(self, requests):
        responses = []
        for request in requests:
            texts = [t.decode("utf-8") for t in pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().ravel()]
            if any(not t for t in texts):
                error = pb_utils.TritonError("TEXT holds an empty string; send some text", pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            rows = len(texts)
            upper = np.array([t.upper() for t in texts], dtype=np.object_).reshape(rows, 1)
            length = np.array([len(t) for t in texts], dtype=np.int64).reshape(rows, 1)
            for n in length.ravel():
                self.lengths.observe(int(n))
            batch = np.full((rows, 1), len(requests), dtype=np.int32)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("UPPER", upper), pb_utils.Tensor("LENGTH", length), pb_utils.Tensor("BATCH", batch),
            ]))
        return responses
