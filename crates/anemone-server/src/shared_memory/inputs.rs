//! Inputs that a request reads from shared memory: resolved while the
//! request is decoded (the region, the bounds, the length against the
//! shape), copied out in one later step, which runs on a blocking thread
//! when the inputs are large and which HTTP counts against its decode
//! budget.
//!
//! Every input a request reads from shared memory adds up to at most
//! `--max-request-bytes`, as the data the request itself carries does: a
//! small request naming a large region is refused before anything is
//! copied.

use super::Slice;
use crate::errors::ApiError;
use crate::http::decoding::BLOCKING_ABOVE;
use crate::v2;
use anemone_core::{DataType, ErrorKind, Tensor};

/// The inputs of one request still to copy out of shared memory.
#[derive(Debug, Clone, Default)]
pub struct SharedInputs {
    pending: Vec<Pending>,
    bytes: usize,
}

#[derive(Debug, Clone)]
struct Pending {
    /// Its place among the request's inputs.
    index: usize,
    name: String,
    dtype: DataType,
    shape: Vec<usize>,
    slice: Slice,
}

impl SharedInputs {
    /// Adds input number `index` of the request (`name`, `dtype`, `shape`),
    /// to be read from `slice`. Refuses, before any copy, a slice whose
    /// length the shape contradicts, and inputs whose slices add up to more
    /// than `limit` bytes.
    pub fn push(
        &mut self,
        index: usize,
        name: String,
        dtype: DataType,
        shape: Vec<usize>,
        slice: Slice,
        limit: usize,
    ) -> Result<(), ApiError> {
        v2::check_raw_len(&name, dtype, &shape, slice.len())?;
        let bytes = self.bytes.saturating_add(slice.len());
        if bytes > limit {
            return Err(ApiError {
                kind: ErrorKind::Overloaded,
                message: format!(
                    "the inputs in shared memory add up to {bytes} bytes (input '{name}' reaches it), over the {limit}-byte request limit (--max-request-bytes); send smaller inputs, or start the server with a larger --max-request-bytes"
                ),
                too_large: true,
            });
        }
        self.bytes = bytes;
        self.pending.push(Pending {
            index,
            name,
            dtype,
            shape,
            slice,
        });
        Ok(())
    }

    /// Whether no input is in shared memory.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The bytes to copy, all inputs together.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Copies each input out of its region and puts it at its place in
    /// `inputs` (which holds the request's other inputs, in order).
    fn read_into(self, inputs: &mut Vec<(String, Tensor)>) -> Result<(), ApiError> {
        // Ascending places: each insertion lands where the input belongs.
        for p in self.pending {
            let tensor = v2::tensor_from_raw(&p.name, p.dtype, p.shape, p.slice.read()?)?;
            inputs.insert(p.index.min(inputs.len()), (p.name, tensor));
        }
        Ok(())
    }
}

/// Copies the inputs that `request` names in shared memory into it: in
/// place when they are small, on a blocking thread when large, so that the
/// async threads keep answering while a large copy runs. Does nothing when
/// none is left to read.
pub async fn read(request: &mut v2::InferRequest) -> Result<(), ApiError> {
    let shared = std::mem::take(&mut request.shared_inputs);
    if shared.is_empty() {
        return Ok(());
    }
    if shared.bytes() <= BLOCKING_ABOVE {
        return shared.read_into(&mut request.inputs);
    }
    let mut inputs = std::mem::take(&mut request.inputs);
    request.inputs =
        tokio::task::spawn_blocking(move || shared.read_into(&mut inputs).map(|()| inputs))
            .await
            .unwrap_or_else(|e| {
                Err(ApiError {
                    kind: ErrorKind::Internal,
                    message: format!("reading inputs from shared memory failed: {e}"),
                    too_large: false,
                })
            })?;
    Ok(())
}
