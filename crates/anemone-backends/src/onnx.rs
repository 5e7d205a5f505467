//! Reading ONNX files: model metadata, and the input-shape preparation every
//! engine needs. Independent of the engine that will run the model.

use anemone_core::{DataType, Dim, Error, ModelFormat, ModelMetadata, Result, Tensor, TensorSpec};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use tract_onnx::pb::tensor_proto::DataType as OnnxType;
use tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;
use tract_onnx::pb::{type_proto, ModelProto, TensorProto, ValueInfoProto};

/// An ONNX model read from disk, with its metadata.
pub struct OnnxFile {
    /// The file.
    pub path: PathBuf,
    /// The parsed protobuf.
    pub proto: ModelProto,
    /// What the model declares.
    pub metadata: ModelMetadata,
}

/// Reads and describes an ONNX file, with clear errors for a missing, empty,
/// corrupt or non-ONNX file, for missing external data, and for a path that
/// is not a regular file or is larger than
/// [`crate::file::max_model_file_bytes`] (refused before reading).
pub fn read(path: &Path) -> Result<OnnxFile> {
    let bytes = crate::file::read_model_file(path)?;
    if bytes.is_empty() {
        return Err(invalid(path, "the file is empty".into(), None));
    }
    let proto: ModelProto = prost::Message::decode(bytes.as_slice()).map_err(|e| {
        invalid(
            path,
            "not an ONNX model: the file is not a valid ONNX protobuf (corrupt or truncated?)"
                .into(),
            Some(e.into()),
        )
    })?;
    let Some(graph) = proto.graph.as_ref() else {
        return Err(invalid(
            path,
            "not an ONNX model: it has no graph".into(),
            None,
        ));
    };
    if graph.node.is_empty() && graph.output.is_empty() {
        return Err(invalid(
            path,
            "not an ONNX model: the graph is empty".into(),
            None,
        ));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut proto = proto;
    let graph = proto.graph.as_mut().expect("checked above");
    let external = check_external_data(path, dir, &mut graph.initializer)?;
    let metadata = describe(path, &proto, bytes.len() as u64 + external)?;
    Ok(OnnxFile {
        path: path.to_path_buf(),
        proto,
        metadata,
    })
}

fn invalid(path: &Path, reason: String, source: Option<anemone_core::BoxError>) -> Error {
    Error::InvalidModel {
        path: path.to_path_buf(),
        reason,
        source,
    }
}

/// Checks that every external-data tensor lies in a regular file inside the
/// model's directory, whole (its `offset` plus its bytes within the file),
/// and pins its `length` where the model leaves it out (the key is
/// optional), so that no engine reads more than the tensor: tract read a
/// whole file for a tensor without one (a 50 GB file aborted the server).
/// Returns the bytes the tensors take.
fn check_external_data(path: &Path, dir: &Path, initializers: &mut [TensorProto]) -> Result<u64> {
    let mut total = 0u64;
    for t in initializers
        .iter_mut()
        .filter(|t| t.data_location == Some(1))
    {
        let value = |key: &str| {
            t.external_data
                .iter()
                .find(|e| e.key == key)
                .map(|e| e.value.clone())
        };
        let location = value("location").unwrap_or_default();
        let Some(file) = external_file(dir, &location) else {
            return Err(invalid(
                path,
                format!(
                    "external data file '{location}' for initializer '{}' is missing; it must be a regular file \
                     inside the model's directory {} (a relative path without '..', not leading out through a link)",
                    t.name,
                    dir.display()
                ),
                None,
            ));
        };
        let number = |key: &str| -> Result<Option<u64>> {
            value(key)
                .map(|v| {
                    v.trim().parse::<u64>().map_err(|_| {
                        invalid(
                            path,
                            format!(
                                "initializer '{}' has external data {key} '{v}', not a byte count",
                                t.name
                            ),
                            None,
                        )
                    })
                })
                .transpose()
        };
        let offset = number("offset")?.unwrap_or(0);
        let given = number("length")?;
        // The tensor's own size, where its type has a fixed element size.
        let elements = t.dims.iter().try_fold(1u64, |n, &d| {
            u64::try_from(d).ok().and_then(|d| n.checked_mul(d))
        });
        let size = dtype_from_onnx(t.data_type)
            .and_then(|d| d.size())
            .zip(elements)
            .and_then(|(each, n)| n.checked_mul(each as u64));
        let length = match (given, size) {
            (Some(g), Some(s)) if g != s => {
                return Err(invalid(
                    path,
                    format!(
                        "initializer '{}' gives external data length {g} where its shape and type take {s} bytes",
                        t.name
                    ),
                    None,
                ))
            }
            (Some(g), _) => g,
            (None, Some(s)) => {
                t.external_data.push(tract_onnx::pb::StringStringEntryProto {
                    key: "length".into(),
                    value: s.to_string(),
                });
                s
            }
            (None, None) => {
                return Err(invalid(
                    path,
                    format!(
                        "initializer '{}' keeps its data in '{location}' without a length, and its type \
                         has no fixed size; give the external data a length",
                        t.name
                    ),
                    None,
                ))
            }
        };
        let file_len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        if offset.checked_add(length).is_none_or(|end| end > file_len) {
            return Err(invalid(
                path,
                format!(
                    "initializer '{}' reads bytes {offset}..{} of external data file '{location}', which \
                     holds {file_len}; the file is truncated or not the model's",
                    t.name,
                    offset.saturating_add(length)
                ),
                None,
            ));
        }
        total = total.saturating_add(length);
    }
    Ok(total)
}

/// The external data file `location` names, when it is a regular file inside
/// `dir`: a relative path of plain components whose real path (links
/// followed) stays under `dir`'s. `None` otherwise, whatever the reason, so a
/// model cannot probe the files outside its directory.
fn external_file(dir: &Path, location: &str) -> Option<PathBuf> {
    let relative = Path::new(location);
    let plain = !location.is_empty()
        && relative
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !plain {
        return None;
    }
    let file = dir.join(relative);
    let real = file.canonicalize().ok()?;
    let base = dir.canonicalize().ok()?;
    (real.starts_with(&base) && real.is_file()).then_some(file)
}

/// Maps an ONNX element type to anemone's.
pub fn dtype_from_onnx(code: i32) -> Option<DataType> {
    Some(match OnnxType::try_from(code).ok()? {
        OnnxType::Float => DataType::F32,
        OnnxType::Uint8 => DataType::U8,
        OnnxType::Int8 => DataType::I8,
        OnnxType::Uint16 => DataType::U16,
        OnnxType::Int16 => DataType::I16,
        OnnxType::Int32 => DataType::I32,
        OnnxType::Int64 => DataType::I64,
        OnnxType::String => DataType::Bytes,
        OnnxType::Bool => DataType::Bool,
        OnnxType::Float16 => DataType::F16,
        OnnxType::Double => DataType::F64,
        OnnxType::Uint32 => DataType::U32,
        OnnxType::Uint64 => DataType::U64,
        _ => return None,
    })
}

fn onnx_type_name(code: i32) -> String {
    OnnxType::try_from(code)
        .map(|t| t.as_str_name().to_string())
        .unwrap_or_else(|_| format!("type {code}"))
}

fn spec_of(path: &Path, v: &ValueInfoProto, role: &str) -> Result<TensorSpec> {
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(invalid(
            path,
            format!(
                "{role} '{}' is not a tensor (sequence, map and optional values are not supported)",
                v.name
            ),
            None,
        ));
    };
    let dtype = dtype_from_onnx(t.elem_type).ok_or_else(|| {
        invalid(
            path,
            format!(
                "{role} '{}' has element type {}, which anemone cannot carry",
                v.name,
                onnx_type_name(t.elem_type)
            ),
            None,
        )
    })?;
    let shape = t.shape.as_ref().map(|s| {
        s.dim
            .iter()
            .map(|d| match &d.value {
                Some(DimValue::DimValue(n)) if *n >= 0 => Dim::Fixed(*n as u64),
                Some(DimValue::DimParam(p)) => Dim::symbol(p),
                _ => Dim::Any,
            })
            .collect()
    });
    Ok(TensorSpec {
        name: v.name.clone(),
        dtype,
        shape,
    })
}

/// Fills the shape of each output the file declares none for (an exporter
/// that left it to shape inference) with what tract's analysis of the graph
/// finds: its rank, and the sizes it knows (the others dynamic). Without
/// it, such an output was described, and auto-completed, as `[-1]` whatever
/// its rank, where ONNX Runtime (and so Triton) knows `[batch, 3]`. Done
/// only for such files; an output the analysis cannot tell stays unknown.
fn infer_missing_output_shapes(proto: &ModelProto, outputs: &mut [TensorSpec]) {
    use tract_onnx::prelude::{Framework, InferenceModelExt};
    use tract_onnx::tract_hir::infer::GenericFactoid;
    if outputs.iter().all(|o| o.shape.is_some()) {
        return;
    }
    let shapes = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut proto = proto.clone();
        canonicalize_symbols(&mut proto);
        crate::tract::ops::prepare_proto(&mut proto);
        let mut model = crate::tract::ops::onnx()
            .model_for_proto_model(&proto)
            .ok()?;
        let _ = model.analyse(false);
        let outlets = model.output_outlets().ok()?.to_vec();
        let shapes = outlets.iter().map(|&outlet| {
            let shape = &model.outlet_fact(outlet).ok()?.shape;
            if shape.is_open() {
                return None;
            }
            let dims = shape.dims().map(|d| match d {
                GenericFactoid::Only(d) => match d.to_i64() {
                    Ok(n) if n >= 0 => Dim::Fixed(n as u64),
                    _ => Dim::Any,
                },
                GenericFactoid::Any => Dim::Any,
            });
            Some(dims.collect::<Vec<_>>())
        });
        Some(shapes.collect::<Vec<_>>())
    }));
    let Ok(Some(shapes)) = shapes else {
        return;
    };
    for (spec, shape) in outputs.iter_mut().zip(shapes) {
        if spec.shape.is_none() {
            spec.shape = shape;
        }
    }
}

/// `error` about output `name`, with what to do when a `ZipMap` (skl2onnx's
/// classifiers, by default) makes that output a sequence of maps.
fn zipmap_hint(graph: &tract_onnx::pb::GraphProto, name: &str, error: Error) -> Error {
    let zipmap =
        (graph.node.iter()).any(|n| n.op_type == "ZipMap" && n.output.iter().any(|o| o == name));
    match error {
        Error::InvalidModel {
            path,
            reason,
            source,
        } if zipmap => Error::InvalidModel {
            path,
            reason: format!(
                "{reason}; it is a ZipMap's: convert the classifier with skl2onnx's \
                 options={{'zipmap': False}} for a tensor of probabilities"
            ),
            source,
        },
        other => other,
    }
}

fn describe(path: &Path, proto: &ModelProto, file_size: u64) -> Result<ModelMetadata> {
    let graph = proto
        .graph
        .as_ref()
        .expect("checked by read(); this is a bug");
    let init_names: BTreeSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs = graph
        .input
        .iter()
        .filter(|i| !init_names.contains(i.name.as_str()))
        .map(|i| spec_of(path, i, "input"))
        .collect::<Result<Vec<_>>>()?;
    let mut outputs = graph
        .output
        .iter()
        .map(|o| spec_of(path, o, "output").map_err(|e| zipmap_hint(graph, &o.name, e)))
        .collect::<Result<Vec<_>>>()?;
    infer_missing_output_shapes(proto, &mut outputs);
    // Weights live in initializers, or (PaddlePaddle, some TF exports) in Constant nodes.
    let constants = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Constant")
        .flat_map(|n| n.attribute.iter().filter_map(|a| a.t.as_ref()));
    let weights: Vec<&TensorProto> = graph.initializer.iter().chain(constants).collect();
    let parameter_count = weights
        .iter()
        .map(|t| element_count(t))
        .fold(0u64, u64::saturating_add);
    let weight_bytes = weights
        .iter()
        .map(|t| initializer_bytes(t))
        .fold(0u64, u64::saturating_add);
    let producer = match (
        proto.producer_name.as_str(),
        proto.producer_version.as_str(),
    ) {
        ("", _) => None,
        (name, "") => Some(name.to_string()),
        (name, version) => Some(format!("{name} {version}")),
    };
    let mut properties: Vec<(String, String)> = proto
        .metadata_props
        .iter()
        .map(|e| (e.key.clone(), e.value.clone()))
        .collect();
    if !proto.doc_string.is_empty() {
        properties.insert(0, ("doc_string".into(), proto.doc_string.clone()));
    }
    Ok(ModelMetadata {
        format: ModelFormat::Onnx,
        inputs,
        outputs,
        producer,
        opsets: proto
            .opset_import
            .iter()
            .map(|o| {
                (
                    if o.domain.is_empty() {
                        "ai.onnx".to_string()
                    } else {
                        o.domain.clone()
                    },
                    o.version,
                )
            })
            .collect(),
        parameter_count,
        file_size,
        weight_bytes,
        properties,
    })
}

/// Elements of a weight tensor; saturates instead of overflowing on hostile dims.
fn element_count(t: &TensorProto) -> u64 {
    t.dims
        .iter()
        .map(|&d| d.max(0) as u64)
        .fold(1u64, u64::saturating_mul)
}

fn initializer_bytes(t: &TensorProto) -> u64 {
    if t.data_location == Some(1) {
        return t
            .external_data
            .iter()
            .find(|e| e.key == "length")
            .and_then(|e| e.value.parse().ok())
            .unwrap_or_else(|| {
                let size = dtype_from_onnx(t.data_type)
                    .and_then(DataType::size)
                    .unwrap_or(4) as u64;
                element_count(t).saturating_mul(size)
            });
    }
    (t.raw_data.len()
        + t.float_data.len() * 4
        + t.int32_data.len() * 4
        + t.int64_data.len() * 8
        + t.double_data.len() * 8
        + t.uint64_data.len() * 8
        + t.string_data.iter().map(Vec::len).sum::<usize>()) as u64
}

/// Gives every dynamic input dimension a distinct, engine-friendly symbol.
///
/// Exporters write anonymous dimensions as `?`, empty names or -1 (PaddlePaddle
/// writes `?` for both height and width of one image), and names such as
/// `p2o.DynamicDimension.0` that engines may not parse. Named dimensions keep
/// their identity (two uses of `batch` stay the same symbol); anonymous ones
/// each get their own. Outputs and value infos are renamed to match, and their
/// anonymous dimensions are left unknown.
pub fn canonicalize_symbols(proto: &mut ModelProto) {
    let Some(graph) = proto.graph.as_mut() else {
        return;
    };
    let init_names: BTreeSet<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    let mut renamed: HashMap<String, String> = HashMap::new();
    let mut fresh = 0usize;
    let mut next = |renamed: &mut HashMap<String, String>, original: Option<&str>| {
        let symbol = format!("S{fresh}");
        fresh += 1;
        if let Some(o) = original {
            renamed.insert(o.to_string(), symbol.clone());
        }
        symbol
    };
    for input in graph
        .input
        .iter_mut()
        .filter(|i| !init_names.contains(&i.name))
    {
        for dim in dims_mut(input) {
            let name = match &dim.value {
                Some(DimValue::DimValue(n)) if *n >= 0 => continue,
                Some(DimValue::DimParam(p)) if !matches!(Dim::symbol(p), Dim::Any) => {
                    Some(p.clone())
                }
                _ => None,
            };
            let symbol = match name.as_deref().and_then(|n| renamed.get(n)) {
                Some(s) => s.clone(),
                None => next(&mut renamed, name.as_deref()),
            };
            dim.value = Some(DimValue::DimParam(symbol));
        }
    }
    for info in graph.output.iter_mut().chain(graph.value_info.iter_mut()) {
        for dim in dims_mut(info) {
            if let Some(DimValue::DimParam(p)) = &dim.value {
                dim.value = renamed.get(p).map(|s| DimValue::DimParam(s.clone()));
            }
        }
    }
}

fn dims_mut(
    v: &mut ValueInfoProto,
) -> impl Iterator<Item = &mut tract_onnx::pb::tensor_shape_proto::Dimension> {
    v.r#type
        .as_mut()
        .and_then(|t| t.value.as_mut())
        .and_then(|type_proto::Value::TensorType(t)| t.shape.as_mut())
        .into_iter()
        .flat_map(|s| s.dim.iter_mut())
}

/// Reads a serialized ONNX `TensorProto` (the `.pb` files of the ONNX test
/// suite) into a tensor.
pub fn read_tensor_proto(path: &Path) -> Result<Tensor> {
    let file = std::fs::File::open(path).map_err(|_| Error::FileNotFound {
        path: path.to_path_buf(),
    })?;
    let proto = tract_onnx::tensor::proto_from_reader(file)
        .map_err(|e| invalid(path, format!("not a TensorProto: {e:#}"), None))?;
    let dir = path.parent().and_then(Path::to_str);
    let resolver = tract_onnx::data_resolver::default();
    let tensor = tract_onnx::tensor::load_tensor(&*resolver, &proto, dir)
        .map_err(|e| invalid(path, format!("cannot decode tensor: {e:#}"), None))?;
    crate::tract::convert::from_tract(&tensor).map_err(|e| invalid(path, e.to_string(), None))
}

/// Parses an ONNX file without loading it on an engine: the cheap path for
/// `anemone inspect`.
pub fn describe_file(path: &Path) -> Result<ModelMetadata> {
    read(path).map(|f| f.metadata)
}

/// Builds tract's inference model from a prepared proto, resolving external data
/// next to `path`.
pub(crate) fn to_tract(
    path: &Path,
    proto: &ModelProto,
) -> tract_onnx::prelude::TractResult<tract_onnx::prelude::InferenceModel> {
    let onnx = crate::tract::ops::onnx();
    let dir = path.parent().and_then(Path::to_str);
    let parsed = onnx.parse(proto, dir)?;
    if !parsed.unresolved_inputs.is_empty() {
        tract_onnx::tract_core::internal::bail!(
            "could not resolve inputs: {:?}",
            parsed.unresolved_inputs
        );
    }
    Ok(parsed.model)
}
