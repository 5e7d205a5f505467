//! How a request's tensors become a plan's inputs: through the target's own
//! upload where it takes them (tract-cuda's page-locked staging, which also
//! stacks a dynamic batch's requests in place), else copied into tract
//! tensors.

use super::{convert, TractModel};
use anemone_core::Tensor;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::Runnable;

impl TractModel {
    /// Input `ix` for `runnable`: through the target's own upload where it
    /// takes it, else copied into a tract tensor.
    pub(super) fn value(
        &self,
        runnable: &dyn Runnable,
        ix: usize,
        t: &Tensor,
    ) -> TractResult<TValue> {
        if let (Some(up), Some(bytes)) = (self.upload, plain_bytes(t)) {
            if let Some(value) = up(runnable, ix, t.dtype(), t.shape(), &[bytes])? {
                return Ok(value);
            }
        }
        convert::to_tract(t).map(IntoTValue::into_tvalue)
    }

    /// Input `ix` for `runnable` from `requests`' tensors stacked along
    /// dimension 0, placed by the target's upload when it takes them, else
    /// `None`.
    pub(super) fn stacked_value(
        &self,
        runnable: &dyn Runnable,
        ix: usize,
        requests: &[&[Tensor]],
    ) -> TractResult<Option<TValue>> {
        let Some(up) = self.upload else {
            return Ok(None);
        };
        let Some(parts) = requests
            .iter()
            .map(|r| plain_bytes(&r[ix]))
            .collect::<Option<Vec<&[u8]>>>()
        else {
            return Ok(None);
        };
        let first = &requests[0][ix];
        let mut shape = first.shape().to_vec();
        let Some(rows) = shape.first_mut() else {
            return Ok(None);
        };
        *rows = requests.iter().map(|r| r[ix].shape()[0]).sum();
        up(runnable, ix, first.dtype(), &shape, &parts)
    }
}

/// A numeric tensor's bytes (strings go through tract's own conversion).
pub(super) fn plain_bytes(t: &Tensor) -> Option<&[u8]> {
    t.as_strings().is_none().then(|| t.as_bytes()).flatten()
}
