//! The Core ML reader against coremltools, on the fixtures of
//! `scripts/gen_coreml_fixtures.py` (`fixtures/generated/coreml/`; run
//! `scripts/setup.sh`). Each `<case>.expected.json` holds what coremltools
//! reads back from the saved file; these tests fail (never skip) when the
//! fixtures are missing.

use super::describe::{describe_file, Feature, FeatureKind, ImageColor};
use super::shape::{Flexibility, SizeRange};
use anemone_core::{DataType, Dim, ErrorKind};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/generated/coreml");
    assert!(
        d.join(".stamp").is_file(),
        "missing Core ML fixtures in {}: run scripts/setup.sh",
        d.display()
    );
    d
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn cases() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e
                .file_name()
                .to_str()?
                .strip_suffix(".expected.json")?
                .to_string();
            Some((name, json(&e.path())))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 7,
        "expected the 7 Core ML fixture cases, found {}",
        out.len()
    );
    out
}

/// protobuf JSON writes 64-bit integers as strings.
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        Value::Number(n) => n.as_i64().unwrap(),
        Value::Null => 0,
        other => panic!("not an integer: {other}"),
    }
}

fn ints(v: &Value) -> Vec<u64> {
    v.as_array()
        .map(|a| a.iter().map(|x| int(x) as u64).collect())
        .unwrap_or_default()
}

fn ranges(v: &Value) -> Vec<SizeRange> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| SizeRange::from_spec(int(&r["lowerBound"]) as u64, int(&r["upperBound"])))
        .collect()
}

/// Apple's array data type names, as coremltools writes them.
fn array_dtype(name: &str) -> DataType {
    match name {
        "FLOAT32" => DataType::F32,
        "FLOAT16" => DataType::F16,
        "DOUBLE" => DataType::F64,
        "INT32" => DataType::I32,
        "INT8" => DataType::I8,
        other => panic!("unexpected data type {other}"),
    }
}

fn array_from_json(a: &Value) -> FeatureKind {
    let flexibility = if let Some(r) = a.get("shapeRange") {
        Flexibility::Ranges(ranges(&r["sizeRanges"]))
    } else if let Some(e) = a.get("enumeratedShapes") {
        Flexibility::Enumerated(
            e["shapes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| ints(&s["shape"]))
                .collect(),
        )
    } else {
        Flexibility::Fixed
    };
    FeatureKind::Array {
        dtype: array_dtype(a["dataType"].as_str().unwrap()),
        shape: ints(&a["shape"]),
        flexibility,
    }
}

/// What coremltools' description says a feature is, in the reader's terms.
fn feature_from_json(f: &Value) -> Feature {
    let ty = &f["type"];
    let kind = if let Some(a) = ty.get("multiArrayType") {
        array_from_json(a)
    } else if let Some(s) = ty.get("stateType") {
        array_from_json(&s["arrayType"])
    } else if let Some(i) = ty.get("imageType") {
        let (width, height) = (int(&i["width"]) as u64, int(&i["height"]) as u64);
        let flexibility = if let Some(r) = i.get("imageSizeRange") {
            let range = |k: &str| {
                SizeRange::from_spec(int(&r[k]["lowerBound"]) as u64, int(&r[k]["upperBound"]))
            };
            Flexibility::Ranges(vec![range("heightRange"), range("widthRange")])
        } else if let Some(e) = i.get("enumeratedSizes") {
            Flexibility::Enumerated(
                e["sizes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| vec![int(&s["height"]) as u64, int(&s["width"]) as u64])
                    .collect(),
            )
        } else {
            Flexibility::Fixed
        };
        let color = match i["colorSpace"].as_str().unwrap() {
            "RGB" => ImageColor::Rgb,
            "BGR" => ImageColor::Bgr,
            "GRAYSCALE" => ImageColor::Grayscale,
            "GRAYSCALE_FLOAT16" => ImageColor::GrayscaleFloat16,
            other => panic!("unexpected colour space {other}"),
        };
        FeatureKind::Image {
            color,
            width,
            height,
            flexibility,
        }
    } else if ty.get("int64Type").is_some() {
        FeatureKind::Int64
    } else if ty.get("doubleType").is_some() {
        FeatureKind::Double
    } else if ty.get("stringType").is_some() {
        FeatureKind::String
    } else if let Some(d) = ty.get("dictionaryType") {
        FeatureKind::Dictionary {
            key: if d.get("int64KeyType").is_some() {
                "int64"
            } else {
                "string"
            },
        }
    } else if let Some(s) = ty.get("sequenceType") {
        FeatureKind::Sequence {
            element: if s.get("int64Type").is_some() {
                "int64"
            } else {
                "string"
            },
        }
    } else {
        panic!("unexpected feature type {ty}")
    };
    Feature {
        name: f["name"].as_str().unwrap().to_string(),
        kind,
        optional: ty["isOptional"].as_bool().unwrap_or(false),
        description: f["shortDescription"].as_str().unwrap_or("").to_string(),
    }
}

fn features(v: &Value) -> Vec<Feature> {
    v.as_array()
        .map(|a| a.iter().map(feature_from_json).collect())
        .unwrap_or_default()
}

#[test]
fn fixtures_match_what_coremltools_reads() {
    for (name, want) in cases() {
        let path = dir().join(want["file"].as_str().unwrap());
        let got = describe_file(&path).unwrap_or_else(|e| panic!("{name}: {}", e.chain_string()));
        let desc = &want["description"];
        assert_eq!(
            got.model_type,
            want["modelType"].as_str().unwrap(),
            "{name}: model type"
        );
        assert_eq!(
            i64::from(got.specification_version),
            int(&want["specificationVersion"]),
            "{name}: spec version"
        );
        assert_eq!(got.inputs, features(&desc["input"]), "{name}: inputs");
        assert_eq!(got.outputs, features(&desc["output"]), "{name}: outputs");
        assert_eq!(got.states, features(&desc["state"]), "{name}: states");
        let meta = &got.metadata;
        assert_eq!(
            meta.file_size,
            int(&want["fileSize"]) as u64,
            "{name}: file size"
        );
        assert_eq!(
            meta.weight_bytes,
            int(&want["weightBytes"]) as u64,
            "{name}: weight bytes"
        );
        assert_eq!(
            meta.opsets,
            vec![("coreml".to_string(), int(&want["specificationVersion"]))]
        );

        // Tensors are the features that are tensors, in order.
        let tensor_names = |v: &Value| -> Vec<String> {
            features(v)
                .into_iter()
                .filter(|f| {
                    !matches!(
                        f.kind,
                        FeatureKind::Dictionary { .. } | FeatureKind::Sequence { .. }
                    )
                })
                .map(|f| f.name)
                .collect()
        };
        let names =
            |s: &[anemone_core::TensorSpec]| s.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(&meta.inputs),
            tensor_names(&desc["input"]),
            "{name}: input tensors"
        );
        assert_eq!(
            names(&meta.outputs),
            tensor_names(&desc["output"]),
            "{name}: output tensors"
        );

        let props: BTreeMap<&str, &str> = meta
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let md = &desc["metadata"];
        for (key, field) in [
            ("description", "shortDescription"),
            ("author", "author"),
            ("license", "license"),
            ("version", "versionString"),
        ] {
            assert_eq!(props.get(key).copied(), md[field].as_str(), "{name}: {key}");
        }
        let user = md["userDefined"].as_object().cloned().unwrap_or_default();
        for (k, v) in &user {
            assert_eq!(
                props.get(k.as_str()).copied(),
                v.as_str(),
                "{name}: user-defined {k}"
            );
        }
        assert_eq!(
            meta.producer,
            user.get("com.github.apple.coremltools.version")
                .map(|v| format!("coremltools {}", v.as_str().unwrap())),
            "{name}: producer"
        );
        assert_eq!(
            props["coreml.model_type"],
            want["modelType"].as_str().unwrap()
        );
        if let Some(layers) = want.get("layers") {
            assert_eq!(props["coreml.layers"], layers.to_string(), "{name}: layers");
        }
        if let Some(opsets) = want["mlprogramOpsets"].as_object() {
            for (f, opset) in opsets {
                let text = format!("{f}: {}", opset.as_str().unwrap());
                assert!(
                    props["coreml.mlprogram.opsets"].contains(&text),
                    "{name}: opset {text}"
                );
            }
        }
        if let Some(stages) = want["pipelineModels"].as_array() {
            let listed = props["coreml.pipeline.models"];
            for s in stages {
                assert!(
                    listed.contains(s.as_str().unwrap()),
                    "{name}: pipeline {listed}"
                );
            }
            assert_eq!(
                listed.matches(" (").count(),
                stages.len(),
                "{name}: stages {listed}"
            );
        }
        for s in &got.states {
            assert!(props.contains_key(format!("coreml.state.{}.type", s.name).as_str()));
        }
    }
}

/// The documented tensor mapping (see `describe.rs`), on the fixtures.
#[test]
fn tensors_follow_the_documented_mapping() {
    let d = dir();
    let images = describe_file(&d.join("program_images.mlpackage")).unwrap();
    let bgr = images.metadata.input("bgr").unwrap();
    assert_eq!(
        (bgr.dtype, bgr.shape_string()),
        (DataType::U8, "[24, 32, 3]".into())
    );
    let gray = images.metadata.input("gray").unwrap();
    assert_eq!(
        (gray.dtype, gray.shape_string()),
        (DataType::F16, "[24, 32, 1]".into())
    );

    let classifier = describe_file(&d.join("nn_image_classifier.mlmodel")).unwrap();
    let image = classifier.metadata.input("image").unwrap();
    assert_eq!(image.shape, Some(vec![Dim::Any, Dim::Any, Dim::Fixed(3)]));
    let label = classifier.metadata.output("label").unwrap();
    assert_eq!(
        (label.dtype, label.shape_string()),
        (DataType::Bytes, "[1]".into())
    );
    assert!(classifier.metadata.output("scores").is_none());
    let props = &classifier.metadata.properties;
    let prop = |k: &str| {
        props
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert!(prop("coreml.output.scores.type")
        .unwrap()
        .contains("not a tensor"));
    assert_eq!(
        prop("coreml.input.image.shape_range"),
        Some("[16..128, 16..]")
    );

    let flexible = describe_file(&d.join("nn_flexible.mlmodel")).unwrap();
    let x = flexible.metadata.input("x").unwrap();
    assert_eq!(x.shape_string(), "[-1, 3, -1, -1]");
    let z = flexible.metadata.input("z").unwrap();
    assert_eq!(z.shape_string(), "[-1, 16]");
    let props = &flexible.metadata.properties;
    let prop = |k: &str| {
        props
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(
        prop("coreml.input.z.enumerated_shapes"),
        Some("[1, 16] | [2, 16] | [4, 16]")
    );
    // An output whose rank the model does not declare.
    assert_eq!(flexible.metadata.output("y").unwrap().shape, None);

    let state = describe_file(&d.join("program_stateful.mlpackage")).unwrap();
    assert_eq!(
        state.metadata.inputs.len(),
        1,
        "a state is not a request input"
    );
    let fp16 = describe_file(&d.join("program_fp16_int32.mlpackage")).unwrap();
    let dtypes: Vec<DataType> = fp16.metadata.inputs.iter().map(|t| t.dtype).collect();
    assert_eq!(dtypes, [DataType::F16, DataType::I32]);
    assert!(
        fp16.metadata.weight_bytes > 0,
        "an ML program keeps its weights in weights/"
    );
}

#[test]
fn the_generic_describe_picks_the_coreml_reader() {
    let meta = crate::describe_file(&dir().join("pipeline.mlmodel")).unwrap();
    assert_eq!(meta.format, anemone_core::ModelFormat::CoreMl);
    assert_eq!(meta.inputs[0].shape_string(), "[6]");
}

#[test]
fn bad_files_get_clear_errors() {
    let bad = dir().join("bad");
    for (file, wanted) in [
        ("empty.mlmodel", "empty"),
        ("truncated.mlmodel", "truncated"),
        ("version_only.mlmodel", "declares no model type"),
        ("not_coreml.mlmodel", "not a Core ML model"),
        ("directory.mlmodel", "must be a file"),
        ("no_manifest.mlpackage", "Manifest.json"),
        ("no_data.mlpackage", "no Data directory"),
        ("bad_root.mlpackage", "no path for it"),
        ("corrupt_spec.mlpackage", "corrupt or truncated"),
        ("file.mlpackage", "must be a directory"),
        ("compiled.mlmodelc", "only Core ML on macOS reads"),
    ] {
        let err = describe_file(&bad.join(file)).expect_err(file);
        let text = err.chain_string();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{file}: {text}");
        assert!(text.contains(wanted), "{file}: '{wanted}' not in: {text}");
    }
    let missing = describe_file(&bad.join("missing.mlmodel")).unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
}

/// `proto/coreml/Model.proto` against coremltools' compiled descriptors: every
/// field has Apple's number and type, every enum Apple's values, and the
/// messages this reader relies on miss none of Apple's fields.
#[test]
fn proto_subset_matches_coremltools() {
    use prost::Message;
    let fds = prost_types::FileDescriptorSet::decode(
        &include_bytes!(concat!(env!("OUT_DIR"), "/coreml_descriptor.bin"))[..],
    )
    .unwrap();
    let apple = json(&dir().join("spec_fields.json"));
    let apple_name = |ours: &str| match ours {
        "CoreML.Specification.MilProgram" => "CoreML.Specification.MILSpec.Program".to_string(),
        "CoreML.Specification.MilFunction" => "CoreML.Specification.MILSpec.Function".to_string(),
        other => other.to_string(),
    };
    let complete = [
        "Model",
        "ModelDescription",
        "FunctionDescription",
        "FeatureDescription",
        "Metadata",
        "FeatureType",
        "ArrayFeatureType",
        "ArrayFeatureType.Shape",
        "ArrayFeatureType.EnumeratedShapes",
        "ArrayFeatureType.ShapeRange",
        "ImageFeatureType",
        "ImageFeatureType.ImageSize",
        "ImageFeatureType.EnumeratedImageSizes",
        "ImageFeatureType.ImageSizeRange",
        "SizeRange",
        "DictionaryFeatureType",
        "SequenceFeatureType",
        "StateFeatureType",
        "Pipeline",
        "PipelineClassifier",
        "PipelineRegressor",
    ];
    let mut checked = 0;
    fn walk<'a>(
        prefix: &str,
        m: &'a prost_types::DescriptorProto,
        out: &mut Vec<(String, &'a prost_types::DescriptorProto)>,
    ) {
        let name = format!("{prefix}.{}", m.name());
        for n in &m.nested_type {
            walk(&name, n, out);
        }
        out.push((name, m));
    }
    let mut ours = Vec::new();
    for f in &fds.file {
        for m in &f.message_type {
            walk(f.package(), m, &mut ours);
        }
    }
    for (name, m) in &ours {
        if name.ends_with(".Opaque") || m.options.as_ref().is_some_and(|o| o.map_entry()) {
            continue;
        }
        let full = apple_name(name);
        let theirs = apple["messages"][&full]
            .as_object()
            .unwrap_or_else(|| panic!("coremltools has no message {full}"));
        for field in &m.field {
            let t = theirs
                .get(field.name())
                .unwrap_or_else(|| panic!("{full} has no field {} in coremltools", field.name()));
            assert_eq!(
                i64::from(field.number()),
                int(&t["number"]),
                "{full}.{} number",
                field.name()
            );
            assert_eq!(
                field.r#type() as i64,
                int(&t["type"]),
                "{full}.{} type",
                field.name()
            );
            let repeated = field.label() == prost_types::field_descriptor_proto::Label::Repeated;
            assert_eq!(
                repeated,
                t["repeated"].as_bool().unwrap(),
                "{full}.{} repeated",
                field.name()
            );
            checked += 1;
        }
        let short = full.trim_start_matches("CoreML.Specification.");
        if complete.contains(&short) {
            for apple_field in theirs.keys() {
                assert!(
                    m.field.iter().any(|f| f.name() == apple_field),
                    "{full}: coremltools has field {apple_field}, the subset misses it"
                );
            }
        }
        for e in &m.enum_type {
            let their_enum = &apple["enums"][format!("{full}.{}", e.name())];
            for v in &e.value {
                assert_eq!(
                    Some(i64::from(v.number())),
                    their_enum[v.name()].as_i64(),
                    "{full}.{}",
                    v.name()
                );
            }
            assert_eq!(
                e.value.len(),
                their_enum.as_object().unwrap().len(),
                "{full}.{} values",
                e.name()
            );
        }
    }
    assert!(checked > 100, "only {checked} fields checked");
}
