//! The error of an engine call that panicked, and whose fault it is.

use super::execute::Call;
use crate::instance::ModelInstance;
use anemone_core::{Error, Tensor};

/// The error of an engine call that panicked: the backend's, except a
/// panic indexing past the end of a slice in a call given integer inputs.
/// That is an index in the request out of range, which an engine did not
/// check (tract's Gather, GatherElements and GatherND): the request's fault (400), and never counted
/// toward moving the model to another backend, as an engine's own
/// "out of range" error is not. So is any panic on a call given an empty
/// input (a dimension of 0), which the model's dims allow but its layers
/// cannot take (tract's pooling of a height of 0 divides by its chunk of
/// 0; an LSTM's last step of no steps indexes past the end): ONNX Runtime
/// refuses such inputs with an error, answered 400 too.
pub(super) fn panicked(
    instance: &ModelInstance,
    backend: &str,
    panic: &(dyn std::any::Any + Send),
    call: Call<'_>,
) -> Error {
    let message = format!("panicked: {}", panic_message(panic));
    use anemone_core::DataType as D;
    let integers = |inputs: &[Tensor]| {
        (inputs.iter()).any(|t| {
            matches!(
                t.dtype(),
                D::U8 | D::U16 | D::U32 | D::U64 | D::I8 | D::I16 | D::I32 | D::I64
            )
        })
    };
    let any = |test: &dyn Fn(&[Tensor]) -> bool| match call {
        Call::One(inputs) => test(inputs),
        Call::Stacked(requests) => requests.iter().any(|inputs| test(inputs)),
    };
    let given_integers = any(&integers);
    let given_empty = any(&|inputs: &[Tensor]| inputs.iter().any(|t| t.shape().contains(&0)));
    // Slices' and ndarray's own (tract's GatherElements, GatherND) words.
    let indexing = [
        "out of range for slice",
        "index out of bounds",
        "is out of bounds for array of shape",
        "must be less than axis length",
    ]
    .iter()
    .any(|f| message.contains(f));
    let blame = match (given_integers && indexing, given_empty) {
        (true, _) => Some("an index in the inputs is out of range"),
        (false, true) => Some("the model cannot take an empty input, a dimension of 0"),
        (false, false) => None,
    };
    if let Some(why) = blame {
        let names: Vec<&str> = (instance.metadata().inputs.iter())
            .map(|i| i.name.as_str())
            .collect();
        return Error::Input(anemone_core::InputError::Rejected {
            name: names.join(", "),
            backend: backend.into(),
            message: format!("{message} ({why})"),
        });
    }
    Error::Backend {
        backend: backend.into(),
        message,
        retryable: false,
        source: None,
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".into())
}
