"""SUM = (X + Y) + Y, by sending the ONNX model `add` two requests."""
import triton_python_backend_utils as pb_utils


def add(x, y):
    """`add`'s `sum` of two tensors, or raises its error."""
    request = pb_utils.InferenceRequest(
        model_name="add",
        inputs=[pb_utils.Tensor("x", x), pb_utils.Tensor("y", y)],
        requested_output_names=["sum"],
    )
    response = request.exec()
    if response.has_error():
        raise pb_utils.TritonModelException(response.error().message())
    return pb_utils.get_output_tensor_by_name(response, "sum").as_numpy()


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            y = pb_utils.get_input_tensor_by_name(request, "Y").as_numpy()
            total = add(add(x, y), y)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("SUM", total)]))
        return responses
