//! Inference on the server's state: a protocol-neutral request to the
//! runtime and back, with shared-memory outputs and classification; a
//! decoupled model's responses as a stream (gRPC `ModelStreamInfer`).

use super::AppState;
use crate::errors::ApiError;
use crate::v2;
use anemone_runtime::InferRequest;
use futures_util::Stream;
use std::sync::Arc;

/// What a request asks beyond the runtime's request: the outputs to write
/// into shared memory, and those wanted as their top classes, by name.
struct Asked {
    targets: Vec<(String, crate::shared_memory::Slice)>,
    classes: Vec<(String, usize)>,
}

/// One response on a stream: a response (or the request's error), or the
/// final flag alone (`response: None`); `last` when it is the request's last.
#[derive(Debug)]
pub struct StreamedAnswer {
    /// The response; `None`: the final flag alone.
    pub response: Option<Result<v2::InferResponse, ApiError>>,
    /// Whether it is the request's last response.
    pub last: bool,
}

impl AppState {
    /// Runs an inference.
    pub async fn infer(&self, request: v2::InferRequest) -> Result<v2::InferResponse, ApiError> {
        let (r, asked) = self.prepare(request).await?;
        let version = r.version;
        let response = match self.manager.infer(r).await {
            Ok(response) => response,
            Err(e) => return Err(self.not_ready(e, version)),
        };
        self.answer(response, &asked)
    }

    /// Runs an inference on a decoupled model, whose responses (any
    /// number) come as the model sends them; on any other model its one
    /// answer is the stream's only response, flagged last.
    pub async fn infer_stream(
        self: &Arc<Self>,
        request: v2::InferRequest,
    ) -> Result<impl Stream<Item = StreamedAnswer> + Send + 'static, ApiError> {
        let (r, asked) = self.prepare(request).await?;
        let version = r.version;
        let responses = match self.manager.infer_decoupled(r).await {
            Ok(responses) => responses,
            Err(e) => return Err(self.not_ready(e, version)),
        };
        let state = Arc::clone(self);
        Ok(futures_util::stream::unfold(
            (responses, state, asked),
            |(mut responses, state, asked)| async move {
                let next = responses.next().await?;
                let response = next.response.map(|r| {
                    r.map_err(ApiError::from)
                        .and_then(|response| state.answer(response, &asked))
                });
                let answer = StreamedAnswer {
                    response,
                    last: next.last,
                };
                Some((answer, (responses, state, asked)))
            },
        ))
    }

    /// The runtime's request, and what the request asks beyond it. Inputs
    /// in shared memory that the protocol has not read yet (gRPC's) are
    /// read first.
    async fn prepare(
        &self,
        mut request: v2::InferRequest,
    ) -> Result<(InferRequest, Asked), ApiError> {
        crate::shared_memory::read_inputs(&mut request).await?;
        let mut r = InferRequest::new(request.model);
        r.version = request.version;
        r.id = request.id;
        r.inputs = request.inputs;
        // Outputs to be written into shared memory, by name.
        let targets: Vec<(String, crate::shared_memory::Slice)> = request
            .outputs
            .iter()
            .flatten()
            .filter_map(|o| Some((o.name.clone(), o.shared_memory.clone()?)))
            .collect();
        // Outputs asked for as their top classes, by name.
        let classes: Vec<(String, usize)> = request
            .outputs
            .iter()
            .flatten()
            .filter_map(|o| Some((o.name.clone(), o.classification?)))
            .collect();
        r.outputs = request
            .outputs
            .map(|o| o.into_iter().map(|o| o.name).collect());
        r.parameters = request.custom;
        r.priority = request.scheduling.priority;
        r.sequence = request.scheduling.sequence;
        r.timeout = match (request.scheduling.timeout, request.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok((r, Asked { targets, classes }))
    }

    /// A request's error; for a model that is not loaded, why when the
    /// repository knows (loading, failed to load).
    fn not_ready(&self, e: anemone_core::Error, version: Option<u64>) -> ApiError {
        let anemone_core::Error::ModelNotFound { name, .. } = &e else {
            return e.into();
        };
        let version = version.map(|v| v.to_string()).unwrap_or_default();
        self.ready_model(name, &version)
            .err()
            .unwrap_or_else(|| e.into())
    }

    /// The protocol's response: outputs asked as classes classified, those
    /// asked into shared memory written there.
    fn answer(
        &self,
        response: anemone_runtime::InferResponse,
        asked: &Asked,
    ) -> Result<v2::InferResponse, ApiError> {
        let mut outputs = response.outputs;
        if !asked.classes.is_empty() {
            self.classify(&response.model, &mut outputs, &asked.classes)?;
        }
        let in_shared_memory = write_shared_memory(&outputs, &asked.targets)?;
        Ok(v2::InferResponse {
            model: response.model,
            version: response.version.to_string(),
            // The runtime hands the request's id back.
            id: response.id,
            outputs,
            parameters: response.parameters,
            in_shared_memory,
        })
    }

    /// Replaces each output that `classes` names with its top classes (the
    /// classification extension).
    fn classify(
        &self,
        model: &str,
        outputs: &mut [(String, anemone_core::Tensor)],
        classes: &[(String, usize)],
    ) -> Result<(), ApiError> {
        let (batched, labels) = self.repository.classes(model);
        for (name, count) in classes {
            if let Some((_, tensor)) = outputs.iter_mut().find(|(n, _)| n == name) {
                *tensor = crate::classification::classify(
                    name,
                    tensor,
                    *count,
                    batched,
                    labels.of(name),
                )?;
            }
        }
        Ok(())
    }
}

/// Writes each output that `targets` names into its shared memory, and
/// says which outputs went there (one flag an output; empty when none did).
/// An output larger than its slice fails the request, naming both sizes.
fn write_shared_memory(
    outputs: &[(String, anemone_core::Tensor)],
    targets: &[(String, crate::shared_memory::Slice)],
) -> Result<Vec<bool>, ApiError> {
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let mut written = vec![false; outputs.len()];
    for (name, slice) in targets {
        let Some(i) = outputs.iter().position(|(n, _)| n == name) else {
            continue;
        };
        let tensor = &outputs[i].1;
        match tensor.as_bytes() {
            Some(bytes) => slice.write(name, bytes)?,
            None => slice.write(name, &v2::tensor_to_raw(tensor))?,
        }
        written[i] = true;
    }
    Ok(written)
}
