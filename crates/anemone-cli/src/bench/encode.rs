//! A [`Workload`] in each wire form: a KServe v2 JSON body, a body with
//! Triton's binary tensor data, and a gRPC `ModelInferRequest`; with a
//! sequence model's `sequence_id`, `sequence_start` and `sequence_end`
//! parameters when given a [`Step`].

use super::sequence::{SequenceId, Step};
use super::workload::Workload;
use anemone_core::{DataType, Tensor};
use anemone_server::proto::infer_parameter::ParameterChoice;
use anemone_server::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use anemone_server::proto::{InferParameter, ModelInferRequest};
use serde::Serialize;
use std::collections::HashMap;

#[derive(Serialize)]
struct JsonRequest<'a> {
    inputs: Vec<JsonInput<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    outputs: Vec<JsonOutput<'a>>,
    #[serde(skip_serializing_if = "Parameters::is_empty")]
    parameters: Parameters,
}

/// A request's parameters: binary answers, and a sequence's.
#[derive(Serialize, Default)]
struct Parameters {
    #[serde(skip_serializing_if = "Option::is_none")]
    binary_data_output: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence_id: Option<JsonId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence_start: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence_end: Option<bool>,
}

impl Parameters {
    fn new(binary_data_output: bool, step: Option<&Step>) -> Parameters {
        Parameters {
            binary_data_output: binary_data_output.then_some(true),
            sequence_id: step.map(|s| match &s.id {
                SequenceId::Number(n) => JsonId::Number(*n),
                SequenceId::Text(t) => JsonId::Text(t.clone()),
            }),
            sequence_start: step.map(|s| s.start),
            sequence_end: step.map(|s| s.end),
        }
    }

    fn is_empty(&self) -> bool {
        self.binary_data_output.is_none() && self.sequence_id.is_none()
    }
}

/// A correlation ID in JSON: a number or a string, as the model takes it.
#[derive(Serialize)]
#[serde(untagged)]
enum JsonId {
    Number(u64),
    Text(String),
}

#[derive(Serialize)]
struct JsonInput<'a> {
    name: &'a str,
    shape: &'a [usize],
    datatype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<JsonData>,
}

#[derive(Serialize)]
struct JsonOutput<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryData>,
}

#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

#[derive(Serialize)]
struct BinaryData {
    binary_data: bool,
}

/// A tensor's elements as a flat JSON array. Floats keep their own type so
/// that an `f32` is written in its shortest form, not as the `f64` it widens to.
#[derive(Serialize)]
#[serde(untagged)]
enum JsonData {
    Bool(Vec<bool>),
    Signed(Vec<i64>),
    Unsigned(Vec<u64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Text(Vec<String>),
}

fn json_data(t: &Tensor) -> JsonData {
    fn values<T: anemone_core::Element, U>(t: &Tensor, f: impl Fn(T) -> U) -> Vec<U> {
        t.to_vec::<T>()
            .expect("the type was matched on the tensor's dtype; this is a bug")
            .into_iter()
            .map(f)
            .collect()
    }
    match t.dtype() {
        DataType::Bool => JsonData::Bool(values(t, |v: bool| v)),
        DataType::I8 => JsonData::Signed(values(t, |v: i8| v.into())),
        DataType::I16 => JsonData::Signed(values(t, |v: i16| v.into())),
        DataType::I32 => JsonData::Signed(values(t, |v: i32| v.into())),
        DataType::I64 => JsonData::Signed(values(t, |v: i64| v)),
        DataType::U8 => JsonData::Unsigned(values(t, |v: u8| v.into())),
        DataType::U16 => JsonData::Unsigned(values(t, |v: u16| v.into())),
        DataType::U32 => JsonData::Unsigned(values(t, |v: u32| v.into())),
        DataType::U64 => JsonData::Unsigned(values(t, |v: u64| v)),
        DataType::F16 => JsonData::F32(values(t, |v: half::f16| v.to_f32())),
        DataType::F32 => JsonData::F32(values(t, |v: f32| v)),
        DataType::F64 => JsonData::F64(values(t, |v: f64| v)),
        DataType::Bytes => JsonData::Text(
            t.as_strings()
                .unwrap_or_default()
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
        ),
    }
}

/// A tensor's binary form, as Triton sends it: little-endian elements, or
/// for BYTES each element as a 4-byte little-endian length and its bytes.
pub fn raw(t: &Tensor) -> Vec<u8> {
    match t.as_strings() {
        Some(strings) => {
            let mut out = Vec::with_capacity(strings.iter().map(|s| 4 + s.len()).sum());
            for s in strings {
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s);
            }
            out
        }
        None => t.as_bytes().unwrap_or_default().to_vec(),
    }
}

/// The JSON body of an inference request with the data inline.
pub fn json_body(w: &Workload, step: Option<&Step>) -> Vec<u8> {
    let request = JsonRequest {
        inputs: w
            .inputs
            .iter()
            .map(|i| JsonInput {
                name: &i.name,
                shape: i.tensor.shape(),
                datatype: i.tensor.dtype().kserve_name(),
                parameters: None,
                data: Some(json_data(&i.tensor)),
            })
            .collect(),
        outputs: w
            .outputs
            .iter()
            .map(|name| JsonOutput {
                name,
                parameters: None,
            })
            .collect(),
        parameters: Parameters::new(false, step),
    };
    serde_json::to_vec(&request).expect("a request of plain values always encodes; this is a bug")
}

/// A body in Triton's binary tensor data form, and the length of its JSON
/// header (the `Inference-Header-Content-Length` value). Outputs come back
/// as binary data too.
pub fn binary_body(w: &Workload, step: Option<&Step>) -> (Vec<u8>, usize) {
    let raws: Vec<Vec<u8>> = w.inputs.iter().map(|i| raw(&i.tensor)).collect();
    let request = JsonRequest {
        inputs: w
            .inputs
            .iter()
            .zip(&raws)
            .map(|(i, raw)| JsonInput {
                name: &i.name,
                shape: i.tensor.shape(),
                datatype: i.tensor.dtype().kserve_name(),
                parameters: Some(BinarySize {
                    binary_data_size: raw.len(),
                }),
                data: None,
            })
            .collect(),
        outputs: w
            .outputs
            .iter()
            .map(|name| JsonOutput {
                name,
                parameters: Some(BinaryData { binary_data: true }),
            })
            .collect(),
        parameters: Parameters::new(w.outputs.is_empty(), step),
    };
    let mut body = serde_json::to_vec(&request)
        .expect("a request of plain values always encodes; this is a bug");
    let header_len = body.len();
    for raw in raws {
        body.extend_from_slice(&raw);
    }
    (body, header_len)
}

/// The gRPC request, with the input data in `raw_input_contents`.
pub fn grpc_request(
    model: &str,
    version: Option<&str>,
    w: &Workload,
    step: Option<&Step>,
) -> ModelInferRequest {
    let parameter = |choice| InferParameter {
        parameter_choice: Some(choice),
    };
    let parameters: HashMap<String, InferParameter> = step
        .map(|s| {
            let id = match &s.id {
                SequenceId::Number(n) => ParameterChoice::Int64Param(*n as i64),
                SequenceId::Text(t) => ParameterChoice::StringParam(t.clone()),
            };
            HashMap::from([
                ("sequence_id".to_string(), parameter(id)),
                (
                    "sequence_start".to_string(),
                    parameter(ParameterChoice::BoolParam(s.start)),
                ),
                (
                    "sequence_end".to_string(),
                    parameter(ParameterChoice::BoolParam(s.end)),
                ),
            ])
        })
        .unwrap_or_default();
    ModelInferRequest {
        parameters,
        model_name: model.to_string(),
        model_version: version.unwrap_or_default().to_string(),
        inputs: w
            .inputs
            .iter()
            .map(|i| InferInputTensor {
                name: i.name.clone(),
                datatype: i.tensor.dtype().kserve_name().to_string(),
                shape: i.tensor.shape().iter().map(|&d| d as i64).collect(),
                ..Default::default()
            })
            .collect(),
        outputs: w
            .outputs
            .iter()
            .map(|name| InferRequestedOutputTensor {
                name: name.clone(),
                ..Default::default()
            })
            .collect(),
        // `Bytes`: each send clones the request by reference count, not 600 KB
        // of image.
        raw_input_contents: w.inputs.iter().map(|i| raw(&i.tensor).into()).collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::workload::Input;
    use super::*;
    use serde_json::{json, Value};

    fn workload(outputs: &[&str]) -> Workload {
        Workload {
            inputs: vec![
                Input {
                    name: "x".into(),
                    tensor: Tensor::from_vec(vec![1, 2], vec![0.1f32, 0.5]).unwrap(),
                },
                Input {
                    name: "n".into(),
                    tensor: Tensor::from_vec(vec![2], vec![3i64, -1]).unwrap(),
                },
                Input {
                    name: "s".into(),
                    tensor: Tensor::from_strings(vec![2], vec![b"hi".to_vec(), vec![]]).unwrap(),
                },
            ],
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn json_bodies_carry_typed_flat_data() {
        let body: Value = serde_json::from_slice(&json_body(&workload(&[]), None)).unwrap();
        assert_eq!(
            body,
            json!({"inputs": [
                {"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [0.1, 0.5]},
                {"name": "n", "shape": [2], "datatype": "INT64", "data": [3, -1]},
                {"name": "s", "shape": [2], "datatype": "BYTES", "data": ["hi", ""]},
            ]})
        );
        let body: Value = serde_json::from_slice(&json_body(&workload(&["z"]), None)).unwrap();
        assert_eq!(body["outputs"], json!([{"name": "z"}]));
        // f32 values are written in their shortest form.
        assert!(String::from_utf8(json_body(&workload(&[]), None))
            .unwrap()
            .contains("[0.1,0.5]"));
    }

    #[test]
    fn binary_bodies_put_the_data_after_the_header() {
        let (body, header_len) = binary_body(&workload(&[]), None);
        let header: Value = serde_json::from_slice(&body[..header_len]).unwrap();
        assert_eq!(
            header["inputs"][0]["parameters"],
            json!({"binary_data_size": 8})
        );
        assert_eq!(
            header["inputs"][1]["parameters"],
            json!({"binary_data_size": 16})
        );
        assert_eq!(
            header["inputs"][2]["parameters"],
            json!({"binary_data_size": 10})
        );
        assert!(header["inputs"][0].get("data").is_none());
        assert_eq!(header["parameters"], json!({"binary_data_output": true}));
        let data = &body[header_len..];
        assert_eq!(data.len(), 8 + 16 + 10);
        assert_eq!(&data[..4], &0.1f32.to_le_bytes());
        assert_eq!(&data[8..16], &3i64.to_le_bytes());
        assert_eq!(&data[24..], &[2, 0, 0, 0, b'h', b'i', 0, 0, 0, 0]);

        let (body, header_len) = binary_body(&workload(&["z"]), None);
        let header: Value = serde_json::from_slice(&body[..header_len]).unwrap();
        assert_eq!(
            header["outputs"],
            json!([{"name": "z", "parameters": {"binary_data": true}}])
        );
        assert!(header.get("parameters").is_none());
    }

    #[test]
    fn grpc_requests_use_raw_contents() {
        let r = grpc_request("m", Some("2"), &workload(&["z"]), None);
        assert_eq!(
            (r.model_name.as_str(), r.model_version.as_str()),
            ("m", "2")
        );
        assert_eq!(r.inputs.len(), 3);
        assert_eq!(r.inputs[0].shape, vec![1, 2]);
        assert_eq!(r.inputs[2].datatype, "BYTES");
        assert_eq!(r.raw_input_contents.len(), 3);
        assert_eq!(
            r.raw_input_contents[1],
            [3i64.to_le_bytes(), (-1i64).to_le_bytes()].concat()
        );
        assert_eq!(r.outputs[0].name, "z");
        assert_eq!(
            grpc_request("m", None, &workload(&[]), None).model_version,
            ""
        );
    }

    #[test]
    fn sequence_steps_travel_as_parameters() {
        use super::super::sequence::steps;
        let start = &steps(&SequenceId::Text("7".into()))[0];
        let body: Value = serde_json::from_slice(&json_body(&workload(&[]), Some(start))).unwrap();
        assert_eq!(
            body["parameters"],
            json!({"sequence_id": "7", "sequence_start": true, "sequence_end": false})
        );
        let end = &steps(&SequenceId::Number(7))[2];
        let (body, header_len) = binary_body(&workload(&[]), Some(end));
        let header: Value = serde_json::from_slice(&body[..header_len]).unwrap();
        assert_eq!(
            header["parameters"],
            json!({"binary_data_output": true, "sequence_id": 7, "sequence_start": false, "sequence_end": true})
        );
        let r = grpc_request("m", None, &workload(&[]), Some(end));
        let choice = |k: &str| r.parameters[k].parameter_choice.clone().unwrap();
        assert_eq!(choice("sequence_id"), ParameterChoice::Int64Param(7));
        assert_eq!(choice("sequence_start"), ParameterChoice::BoolParam(false));
        assert_eq!(choice("sequence_end"), ParameterChoice::BoolParam(true));
        assert!(grpc_request("m", None, &workload(&[]), None)
            .parameters
            .is_empty());
    }
}
