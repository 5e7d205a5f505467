# Triton's model loading API (pb_utils.load_model, unload_model,
# is_model_ready), run in triton_python_backend_utils' namespace by
# anemone's stub. Each call goes to anemone, which loads from its model
# repository (with --model-control-mode explicit, as in Triton).

# Set by anemone's stub while initialize() and execute() run: sends one
# model loading request and returns (header, data) of its answer.
_control = None


def _control_channel(what):
    if _control is None:
        raise TritonModelException(
            f"{what} can be called only while initialize() or execute() runs (as in Triton, not from "
            "auto_complete_config or finalize)"
        )
    return _control


def load_model(model_name, config="", files=None):
    """Loads (or reloads) model `model_name` from the server's repository,
    with `config` (the model configuration as JSON) in place of its
    config.pbtxt when given. Raises TritonModelException when it fails.
    The server must run with --model-control-mode explicit."""
    if not isinstance(model_name, str) or not model_name:
        raise TritonModelException("load_model needs model_name, the name of a model in the repository")
    if not isinstance(config, str):
        raise TritonModelException("load_model's config is the model configuration as a JSON string")
    if files:
        raise TritonModelException(
            "load_model(files=...) is refused: anemone does not write model files sent with a load; "
            "put the files in the model repository (config alone may be given)"
        )
    _control_channel("load_model")("load", model_name, control_config=config or None)


def unload_model(model_name, unload_dependents=False):
    """Unloads model `model_name`; with unload_dependents, an ensemble's
    composing models too. Raises TritonModelException when it fails."""
    if not isinstance(model_name, str) or not model_name:
        raise TritonModelException("unload_model needs model_name, the name of a loaded model")
    _control_channel("unload_model")("unload", model_name, unload_dependents=bool(unload_dependents))


def is_model_ready(model_name, model_version=""):
    """Whether model `model_name` (version `model_version`, a string; empty:
    its latest) is loaded and ready."""
    try:
        version = int(model_version) if str(model_version) != "" else 0
    except ValueError:
        raise TritonModelException(
            f"is_model_ready's model_version is a version number as a string, not {model_version!r}"
        ) from None
    return bool(_control_channel("is_model_ready")("ready", str(model_name), model_version=version))
