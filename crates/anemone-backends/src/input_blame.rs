//! Telling an engine error that the request's inputs caused from a fault of
//! the backend, so that bad input is answered 400 / INVALID_ARGUMENT and
//! never counts toward moving a model to another backend.
//!
//! The inputs have passed validation against the model's declared shapes
//! by then; what is left is what only the network knows: a size its layers
//! cannot take (a PP-OCR detector's height that is not a multiple of 32
//! makes its feature pyramid's Add or Concat mismatch), or a value out of
//! range. The engines say so only in words, so the words are matched here,
//! against the texts tract 0.23 and ONNX Runtime 1.31 really give (the
//! tests below hold real messages). Anything that speaks of memory or a
//! device stays a backend fault.
//!
//! An empty input (a dimension of 0) passes validation wherever the model
//! declares that dimension dynamic, yet many networks cannot take one
//! (Silero VAD pads its audio by reflection, which needs samples: ONNX
//! Runtime says "Cannot use 'reflect' mode to pad dimension with a value of
//! 0"). An engine that fails on a request holding one fails on what the
//! request sent, whatever its words, unless they speak of a fault.

use anemone_core::{BoxError, Error, InputError, Tensor, TensorSpec};

/// Fragments (lower case) of engine messages that blame the inputs' shape
/// or values.
const INPUT_FRAGMENTS: [&str; 15] = [
    // tract, planning for concrete shapes.
    "impossible to unify",
    "failed analyse",
    // tract, a Cast of a string that is not a number.
    "can not parse as",
    // ONNX Runtime's element-wise and shape kernels.
    "attempting to broadcast",
    "can't broadcast",
    "cannot broadcast",
    "invalid rank for input",
    "got invalid dimensions for input",
    "unexpected input data type",
    "shape mismatch",
    "cannot be reshaped",
    "non concat axis dimensions must match",
    "invalid input shape",
    "out of bounds",
    "out of range",
];

/// Fragments that make an error the backend's whatever else it says.
const FAULT_FRAGMENTS: [&str; 6] = ["memory", "alloc", "cuda", "cudnn", "device", "panicked"];

/// The C++ number parsers whose exception text (its name alone) ONNX
/// Runtime's Cast kernel reports for a string that is not a number of its
/// type ("Status Message: stoll").
const PARSERS: [&str; 8] = [
    "stoi", "stol", "stoll", "stoul", "stoull", "stof", "stod", "stold",
];

/// Whether an engine's message says the request's inputs are to blame.
pub fn blames_input(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    (INPUT_FRAGMENTS.iter().any(|f| m.contains(f)) || a_number_parser_failed(&m))
        && !speaks_of_fault(message)
}

/// Whether ONNX Runtime's Cast failed to read a string as a number: its
/// status message is the name of the C++ parser that threw.
fn a_number_parser_failed(lower: &str) -> bool {
    lower.contains("cast node")
        && lower.split("status message: ").skip(1).any(|after| {
            let word = after.split(|c: char| !c.is_ascii_alphanumeric()).next();
            word.is_some_and(|w| PARSERS.contains(&w))
        })
}

/// Whether an engine's message speaks of memory, a device or a panic: a
/// fault of the backend, whatever the inputs.
fn speaks_of_fault(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    FAULT_FRAGMENTS.iter().any(|f| m.contains(f))
}

/// Whether one of `inputs` is empty (a dimension of 0).
pub fn any_empty(inputs: &[Tensor]) -> bool {
    inputs.iter().any(|t| t.shape().contains(&0))
}

/// What an engine knows of a failed call besides its words.
#[derive(Debug, Clone, Copy, Default)]
pub struct Known {
    /// The engine itself says the inputs are invalid (ONNX Runtime's
    /// `INVALID_ARGUMENT`: it checks inputs against the graph).
    pub invalid_input: bool,
    /// One of the call's inputs is empty (see [`any_empty`]).
    pub empty_input: bool,
}

/// The error for an engine call that failed with `message`: the inputs'
/// fault ([`InputError::Rejected`], HTTP 400) when the engine says so, the
/// message blames them, or an input is empty and the message does not
/// speak of a fault; else a backend failure.
pub fn engine_error(
    backend: &str,
    inputs: &[TensorSpec],
    known: Known,
    message: String,
    source: Option<BoxError>,
) -> Error {
    let message = message.trim().to_string();
    let input_caused = known.invalid_input
        || blames_input(&message)
        || (known.empty_input && !speaks_of_fault(&message));
    if input_caused {
        let names: Vec<&str> = inputs.iter().map(|s| s.name.as_str()).collect();
        return Error::Input(InputError::Rejected {
            name: names.join(", "),
            backend: backend.to_string(),
            message,
        });
    }
    Error::Backend {
        backend: backend.into(),
        message,
        retryable: false,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anemone_core::ErrorKind;

    /// Real messages: PP-OCR det (fixtures/generated/ocr_det) at 1x3x100x100.
    const TRACT_DET: &str = "cannot plan for these input shapes: Failed analyse for node #662 \"p2o.Concat.0\" InferenceConcat: \
        Infering facts: Applying rule inputs[0].shape[2] == inputs[1].shape[2]: Impossible to unify Val(32) with Mul([Val(4)])";
    const ORT_DET: &str = "inference failed: Non-zero status code returned while running Add node. Name:'p2o.Add.248' \
        Status Message: /onnxruntime_src/onnxruntime/core/providers/cpu/math/element_wise_ops.h:563 \
        void onnxruntime::BroadcastIterator::Init(ptrdiff_t, ptrdiff_t) axis == 1 || axis == largest was false. \
        Attempting to broadcast an axis by a dimension other than 1. 7 by 8\n";

    #[test]
    fn shape_errors_of_both_engines_blame_the_input() {
        assert!(blames_input(TRACT_DET));
        assert!(blames_input(ORT_DET));
        let e = engine_error("onnxruntime", &[], Known::default(), ORT_DET.into(), None);
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().ends_with("multiples of 32)"), "{e}");
        assert!(e.to_string().contains("7 by 8. Check"), "{e}");
    }

    #[test]
    fn resource_and_unknown_errors_stay_backend_faults() {
        for m in [
            "Failed to allocate memory for requested buffer of size 123",
            "CUDA failure 2: out of memory",
            "inference failed: something unexpected",
        ] {
            assert!(!blames_input(m), "{m}");
            assert_eq!(
                engine_error("x", &[], Known::default(), m.into(), None).kind(),
                ErrorKind::Backend
            );
        }
        let invalid = Known {
            invalid_input: true,
            ..Known::default()
        };
        assert_eq!(
            engine_error("x", &[], invalid, "anything".into(), None).kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn a_string_that_is_not_a_number_blames_the_input() {
        // Triton's `simple_string` (a Cast of its BYTES inputs to INT32) with
        // perf_analyzer's random strings: ONNX Runtime 1.31, then tract 0.23.
        let ort = "inference failed: Non-zero status code returned while running Cast node. \
            Name:'' Status Message: stoll";
        let tract = "inference failed: Evaluating #1 \"_INPUT0\" Cast: Can not parse as I32";
        assert!(blames_input(ort));
        assert!(blames_input(tract));
        assert!(!blames_input(
            "Non-zero status code returned while running Cast node. Status Message: storage failed"
        ));
        assert!(!blames_input("running Add node. Status Message: stoll"));
    }

    #[test]
    fn an_empty_input_is_told_apart_from_a_fault() {
        let empty = Tensor::from_vec(vec![1, 0], Vec::<f32>::new()).unwrap();
        let full = Tensor::from_vec(vec![1, 2], vec![1.0f32, 2.0]).unwrap();
        assert!(any_empty(&[full.clone(), empty]));
        assert!(!any_empty(&[full]));
        // ONNX Runtime 1.31 on Silero VAD with audio of shape [1, 0].
        let silero = "Non-zero status code returned while running Pad node. Status Message: \
            Cannot use 'reflect' mode to pad dimension with a value of 0. Input shape:{1,0}";
        assert!(
            !blames_input(silero),
            "the words alone do not blame the input"
        );
        let empty_input = Known {
            empty_input: true,
            ..Known::default()
        };
        let e = engine_error("onnxruntime", &[], empty_input, silero.into(), None);
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        let e = engine_error("onnxruntime", &[], Known::default(), silero.into(), None);
        assert_eq!(e.kind(), ErrorKind::Backend, "{e}");
        let oom = "CUDA failure 2: out of memory";
        let e = engine_error("tract-cuda", &[], empty_input, oom.into(), None);
        assert_eq!(
            e.kind(),
            ErrorKind::Backend,
            "a fault stays the backend's: {e}"
        );
    }
}
