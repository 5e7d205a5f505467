"""The rest of anemone's `triton_python_backend_utils` (see
triton_python_backend_utils.py, which this file follows in the same module:
anemone's Python process runs it in that module's namespace, under its own
file name for tracebacks): ModelConfig for a model's
auto_complete_config, the config helpers (get_input_config_by_name,
get_output_config_by_name, using_decoupled_model_transaction_policy), and
Logger with its levels.
"""


class ModelConfig:
    """The configuration an auto_complete_config(auto_complete_model_config)
    completes, as Triton's: read it with as_dict(); add_input and add_output
    declare a tensor ({"name", "data_type", "dims"}, and "optional" for an
    input), set_max_batch_size, set_dynamic_batching and
    set_model_transaction_policy the rest. A declaration that contradicts
    the config.pbtxt raises ValueError, and the model does not load."""

    def __init__(self, model_config):
        self._config = json.loads(model_config) if isinstance(model_config, str) else dict(model_config)

    def as_dict(self):
        return self._config

    def _name(self):
        return self._config.get("name", "")

    def set_max_batch_size(self, max_batch_size):
        current = self._config.get("max_batch_size", 0)
        if current > max_batch_size:
            raise ValueError(
                f"model '{self._name()}': the configuration says max_batch_size {current}, "
                f"above the {max_batch_size} auto_complete_config sets"
            )
        self._config["max_batch_size"] = max_batch_size

    def set_dynamic_batching(self):
        for other in ("sequence_batching", "ensemble_scheduling"):
            if other in self._config:
                raise ValueError(
                    f"model '{self._name()}': the configuration has {other}, and auto_complete_config "
                    "sets dynamic_batching; a model has one scheduler"
                )
        self._config.setdefault("dynamic_batching", {})

    def _add(self, kind, tensor, allowed):
        name = tensor.get("name")
        extra = [k for k in tensor if k not in allowed]
        if extra:
            raise ValueError(
                f"model '{self._name()}': {kind} {name!r} in auto_complete_config has {', '.join(extra)}; "
                f"an {kind} has only {', '.join(allowed)}"
            )
        for key in ("name", "data_type", "dims"):
            if key not in tensor:
                raise ValueError(f"model '{self._name()}': {kind} {name!r} in auto_complete_config lacks '{key}'")
        for current in self._config.setdefault(kind, []):
            if current.get("name") != name:
                continue
            data_type = current.get("data_type", "TYPE_INVALID")
            if data_type not in ("TYPE_INVALID", tensor["data_type"]):
                raise ValueError(
                    f"model '{self._name()}': the configuration says {kind} '{name}' is {data_type}, "
                    f"and auto_complete_config says {tensor['data_type']}"
                )
            if current.get("dims") and list(current["dims"]) != list(tensor["dims"]):
                raise ValueError(
                    f"model '{self._name()}': the configuration gives {kind} '{name}' dims "
                    f"{list(current['dims'])}, and auto_complete_config {list(tensor['dims'])}"
                )
            if "optional" in current and "optional" in tensor and current["optional"] != tensor["optional"]:
                raise ValueError(
                    f"model '{self._name()}': the configuration and auto_complete_config disagree "
                    f"on whether {kind} '{name}' is optional"
                )
            current.update(tensor)
            return
        self._config[kind].append(dict(tensor))

    def add_input(self, input):
        self._add("input", input, ("name", "data_type", "dims", "optional"))

    def add_output(self, output):
        self._add("output", output, ("name", "data_type", "dims"))

    def set_model_transaction_policy(self, transaction_policy_dict):
        extra = [k for k in transaction_policy_dict if k != "decoupled"]
        if extra:
            raise ValueError(
                f"model '{self._name()}': model_transaction_policy in auto_complete_config has "
                f"{', '.join(extra)}; it has only 'decoupled'"
            )
        policy = self._config.setdefault("model_transaction_policy", {})
        if "decoupled" in transaction_policy_dict:
            wanted = transaction_policy_dict["decoupled"]
            if "decoupled" in policy and policy["decoupled"] != wanted:
                raise ValueError(
                    f"model '{self._name()}': the configuration sets decoupled to {policy['decoupled']}, "
                    f"and auto_complete_config to {wanted}"
                )
            policy["decoupled"] = wanted




def get_input_config_by_name(model_config, name):
    """The config's input `name` (a dict), or None."""
    for entry in model_config.get("input", []):
        if entry.get("name") == name:
            return entry
    return None


def get_output_config_by_name(model_config, name):
    """The config's output `name` (a dict), or None."""
    for entry in model_config.get("output", []):
        if entry.get("name") == name:
            return entry
    return None


def using_decoupled_model_transaction_policy(model_config):
    """Whether the model's config (a dict) makes it decoupled."""
    return bool(model_config.get("model_transaction_policy", {}).get("decoupled", False))


class LogLevel(__import__("enum").Enum):
    """The levels of Logger.log, as Triton's (a level, not a number)."""

    INFO = 0
    WARNING = 1
    ERROR = 2
    VERBOSE = 3


class Logger:
    """Triton's logger: lines go to anemone's log at the matching level."""

    LogLevel = LogLevel
    INFO = LogLevel.INFO
    WARNING = LogLevel.WARNING
    ERROR = LogLevel.ERROR
    VERBOSE = LogLevel.VERBOSE

    @staticmethod
    def _log(level, msg):
        if not isinstance(msg, str):
            raise TypeError(f"Logger takes a str message, not {type(msg).__name__}")
        text = msg.replace("\n", " | ")
        sys.stderr.write(f"\x1eanemone-log:{level}:{text}\n")
        sys.stderr.flush()

    @staticmethod
    def log(msg, level=LogLevel.INFO):
        """`level` is Logger.INFO (the default), WARNING, ERROR or VERBOSE."""
        if not isinstance(level, LogLevel):
            raise TypeError(f"Logger.log's level is a Logger.LogLevel, not {type(level).__name__}")
        Logger._log({1: "W", 2: "E", 3: "V"}.get(level.value, "I"), msg)

    @staticmethod
    def log_info(msg):
        Logger._log("I", msg)

    @staticmethod
    def log_warn(msg):
        Logger._log("W", msg)

    @staticmethod
    def log_error(msg):
        Logger._log("E", msg)

    @staticmethod
    def log_verbose(msg):
        Logger._log("V", msg)
