//! The JSON forms of the protocol messages, as KServe v2 and Triton spell
//! them over HTTP.

use crate::proto;
use serde_json::{json, Map, Value};

/// `GET /v2`.
pub fn server_metadata(m: &proto::ServerMetadataResponse) -> Value {
    json!({ "name": m.name, "version": m.version, "extensions": m.extensions })
}

/// `GET /v2/models/{m}[/versions/{v}]`.
pub fn model_metadata(m: &proto::ModelMetadataResponse) -> Value {
    let tensors = |ts: &[proto::model_metadata_response::TensorMetadata]| -> Vec<Value> {
        ts.iter()
            .map(|t| json!({ "name": t.name, "datatype": t.datatype, "shape": t.shape }))
            .collect()
    };
    json!({
        "name": m.name,
        "versions": m.versions,
        "platform": m.platform,
        "inputs": tensors(&m.inputs),
        "outputs": tensors(&m.outputs),
    })
}

/// `GET /v2/models[/{m}[/versions/{v}]]/stats`, in Triton's schema.
pub fn statistics(s: &proto::ModelStatisticsResponse) -> Value {
    let duration = |d: &Option<proto::StatisticDuration>| {
        let d = d.unwrap_or_default();
        json!({ "count": d.count, "ns": d.ns })
    };
    let stats: Vec<Value> = s
        .model_stats
        .iter()
        .map(|m| {
            let i = m.inference_stats.unwrap_or_default();
            json!({
                "name": m.name,
                "version": m.version,
                "last_inference": m.last_inference,
                "inference_count": m.inference_count,
                "execution_count": m.execution_count,
                "inference_stats": {
                    "success": duration(&i.success),
                    "fail": duration(&i.fail),
                    "queue": duration(&i.queue),
                    "compute_input": duration(&i.compute_input),
                    "compute_infer": duration(&i.compute_infer),
                    "compute_output": duration(&i.compute_output),
                    "cache_hit": duration(&i.cache_hit),
                    "cache_miss": duration(&i.cache_miss),
                },
                "batch_stats": m.batch_stats.iter().map(|b| json!({
                    "batch_size": b.batch_size,
                    "compute_input": duration(&b.compute_input),
                    "compute_infer": duration(&b.compute_infer),
                    "compute_output": duration(&b.compute_output),
                })).collect::<Vec<_>>(),
                // Present, as in tritonserver 2.51's answer (empty there too
                // for its Python backend's models, decoupled ones included).
                "memory_usage": [],
                "response_stats": {},
            })
        })
        .collect();
    json!({ "model_stats": stats })
}

/// `POST /v2/repository/index`: empty fields are left out, as Triton does.
pub fn repository_index(r: &proto::RepositoryIndexResponse) -> Value {
    r.models
        .iter()
        .map(|m| {
            let mut row = Map::new();
            for (key, value) in [
                ("name", &m.name),
                ("version", &m.version),
                ("state", &m.state),
                ("reason", &m.reason),
            ] {
                if !value.is_empty() {
                    row.insert(key.into(), Value::String(value.clone()));
                }
            }
            Value::Object(row)
        })
        .collect()
}
