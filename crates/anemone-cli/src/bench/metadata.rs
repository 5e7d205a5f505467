//! The model metadata request `anemone bench` makes first: it gives the
//! inputs to fill and checks that the server is reachable and serves the model.

use super::client::{get, grpc_client, model_path, Target};
use super::workload::{ModelMeta, TensorMeta};
use super::Protocol;
use anemone_server::proto::ModelMetadataRequest;
use anyhow::Context;

/// Fetches the model's inputs and outputs, which also checks that the
/// server is reachable and serves the model.
pub async fn metadata(
    target: &Target,
    model: &str,
    version: Option<&str>,
) -> anyhow::Result<ModelMeta> {
    let what = match version {
        Some(v) => format!("model '{model}' version {v}"),
        None => format!("model '{model}'"),
    };
    let unavailable = |status: &str, message: &str| {
        anyhow::anyhow!(
            "cannot get the metadata of {what} from {} ({status}): {message}",
            target.url
        )
    };
    if target.protocol == Protocol::Grpc {
        let mut client = grpc_client(target).await?;
        let request = ModelMetadataRequest {
            name: model.to_string(),
            version: version.unwrap_or_default().to_string(),
        };
        let m = client
            .model_metadata(request)
            .await
            .map_err(|s| {
                // What a gRPC client gets from a port that speaks HTTP/1.
                let transport = matches!(
                    s.code(),
                    tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::Internal
                );
                let hint = match transport {
                    true => target.dropped_hint("gRPC port (8001)", "http"),
                    false => String::new(),
                };
                unavailable(
                    &format!("gRPC {:?}", s.code()),
                    &format!("{}{hint}", s.message()),
                )
            })?
            .into_inner();
        let tensors = |ts: Vec<anemone_server::proto::model_metadata_response::TensorMetadata>| {
            ts.into_iter()
                .map(|t| TensorMeta {
                    name: t.name,
                    datatype: t.datatype,
                    shape: t.shape,
                })
                .collect()
        };
        return Ok(ModelMeta {
            inputs: tensors(m.inputs),
            outputs: tensors(m.outputs),
        });
    }
    let body = get(target, model_path(&target.base, model, version))
        .await
        .map_err(|f| match f.is_connection() {
            // Connected, then not answered in HTTP/1: what an HTTP/1 client
            // gets from a port that speaks HTTP/2 only (a gRPC port).
            true if !unreachable(&f.message) => anyhow::anyhow!(
                "{} did not answer HTTP/1 ({}){}",
                target.describe(),
                f.message,
                target.dropped_hint("HTTP port (8000)", "grpc")
            ),
            true => anyhow::anyhow!(
                "cannot connect to {}; is the server running?: {}",
                target.describe(),
                f.message
            ),
            false => unavailable(&f.status, &f.message),
        })?;
    parse_http_metadata(&body).with_context(|| {
        format!(
            "the metadata of {what} from {} is not KServe v2 metadata",
            target.url
        )
    })
}

/// Whether a connection failure says nothing listens there (rather than
/// that something answered in another protocol).
fn unreachable(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "refused",
        "timed out",
        "resolve",
        "dns",
        "unreachable",
        "no route",
    ]
    .iter()
    .any(|w| m.contains(w))
}

fn parse_http_metadata(body: &[u8]) -> anyhow::Result<ModelMeta> {
    #[derive(serde::Deserialize)]
    struct Raw {
        #[serde(default)]
        inputs: Vec<RawTensor>,
        #[serde(default)]
        outputs: Vec<RawTensor>,
    }
    #[derive(serde::Deserialize)]
    struct RawTensor {
        name: String,
        datatype: String,
        shape: Vec<i64>,
    }
    let raw: Raw = serde_json::from_slice(body)?;
    let tensors = |ts: Vec<RawTensor>| {
        ts.into_iter()
            .map(|t| TensorMeta {
                name: t.name,
                datatype: t.datatype,
                shape: t.shape,
            })
            .collect()
    };
    Ok(ModelMeta {
        inputs: tensors(raw.inputs),
        outputs: tensors(raw.outputs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_metadata_is_read() {
        let m = parse_http_metadata(
            br#"{"name":"add","versions":["1"],"platform":"onnx","inputs":[{"name":"x","datatype":"FP32","shape":[-1,4]}],"outputs":[]}"#,
        )
        .unwrap();
        assert_eq!(
            m.inputs,
            vec![TensorMeta {
                name: "x".into(),
                datatype: "FP32".into(),
                shape: vec![-1, 4]
            }]
        );
        assert!(parse_http_metadata(b"{\"inputs\": 3}").is_err());
    }
}
