//! A Core ML specification as anemone [`ModelMetadata`], with the rules that
//! map Core ML feature types onto tensors.
//!
//! | Core ML feature | anemone tensor |
//! |---|---|
//! | MultiArray FLOAT32 / FLOAT16 / DOUBLE / INT32 / INT8 | `f32` / `f16` / `f64` / `i32` / `i8`, the array's shape |
//! | Image RGB or BGR, W×H | `u8` `[H, W, 3]`: pixels, interleaved, in the model's channel order |
//! | Image GRAYSCALE, W×H | `u8` `[H, W, 1]` |
//! | Image GRAYSCALE_FLOAT16, W×H | `f16` `[H, W, 1]` |
//! | Int64 / Double / String | `i64` / `f64` / `bytes`, shape `[1]` (one value) |
//! | Dictionary, Sequence | not a tensor: listed in the properties, left out |
//! | State (MLProgram, spec 9+) | not a request input: listed in the properties |
//!
//! Flexible shapes (ranges or enumerated shapes, image size ranges or
//! enumerated sizes) give [`Dim::Any`] where the allowed sizes differ and a
//! fixed size where they agree; the exact ranges or shapes are kept in the
//! properties (`coreml.input.<name>.shapes`). Core ML names no dimensions.
//!
//! Other facts go to [`ModelMetadata`] as follows: `producer` is
//! `coremltools <version>` when the file says so; `opsets` holds
//! `("coreml", <specification version>)`; `properties` hold the metadata
//! (`description`, `author`, `license`, `version`), then `coreml.*` facts
//! (model type, specification version, ML program opsets, layer count,
//! pipeline stages, flexible shapes, images, states, optional inputs, feature
//! descriptions), then the user-defined entries in key order.

use super::file::{self, CoreMlFile};
use super::shape::{shape_text, Flexibility, SizeRange};
use super::spec;
use super::spec::array_feature_type::{ArrayDataType, ShapeFlexibility};
use super::spec::feature_type::Type as FType;
use super::spec::image_feature_type::{ColorSpace, SizeFlexibility};
use anemone_core::{DataType, Dim, ModelFormat, ModelMetadata, Result, TensorSpec};

/// What a Core ML model declares, in Core ML's own terms and as anemone metadata.
#[derive(Debug, Clone)]
pub struct Description {
    /// The engine-independent metadata (tensors only).
    pub metadata: ModelMetadata,
    /// The model type, named as in Apple's `Model.proto` oneof, e.g.
    /// `neuralNetwork`, `mlProgram`, `pipeline`.
    pub model_type: &'static str,
    /// The specification version (Core ML 1 = 1, ..., iOS 18 / macOS 15 = 9).
    pub specification_version: i32,
    /// Every input feature, in the model's order (tensor or not).
    pub inputs: Vec<Feature>,
    /// Every output feature.
    pub outputs: Vec<Feature>,
    /// State features (stateful ML programs); not sent by clients.
    pub states: Vec<Feature>,
}

/// One feature (input, output or state).
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    /// Its name.
    pub name: String,
    /// Its type.
    pub kind: FeatureKind,
    /// Whether the model runs without it (inputs only).
    pub optional: bool,
    /// The model's short description of it, or empty.
    pub description: String,
}

/// The type of a feature.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureKind {
    /// An MLMultiArray (or, for a state, the array it holds).
    Array {
        /// Element type.
        dtype: DataType,
        /// The default shape (empty when not declared).
        shape: Vec<u64>,
        /// The other shapes allowed.
        flexibility: Flexibility,
    },
    /// A CVPixelBuffer.
    Image {
        /// Channel layout.
        color: ImageColor,
        /// Default width in pixels.
        width: u64,
        /// Default height in pixels.
        height: u64,
        /// Other sizes allowed, as `[height, width]` shapes.
        flexibility: Flexibility,
    },
    /// One 64-bit integer.
    Int64,
    /// One double.
    Double,
    /// One string.
    String,
    /// A dictionary (e.g. a classifier's class probabilities).
    Dictionary {
        /// `string` or `int64`.
        key: &'static str,
    },
    /// A sequence of `int64` or `string`.
    Sequence {
        /// `string` or `int64`.
        element: &'static str,
    },
}

/// An image feature's pixel format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageColor {
    /// 8-bit grayscale.
    Grayscale,
    /// 8-bit RGB.
    Rgb,
    /// 8-bit BGR.
    Bgr,
    /// 16-bit float grayscale.
    GrayscaleFloat16,
}

impl ImageColor {
    /// Apple's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageColor::Grayscale => "GRAYSCALE",
            ImageColor::Rgb => "RGB",
            ImageColor::Bgr => "BGR",
            ImageColor::GrayscaleFloat16 => "GRAYSCALE_FLOAT16",
        }
    }

    /// Channels per pixel.
    pub fn channels(self) -> u64 {
        match self {
            ImageColor::Rgb | ImageColor::Bgr => 3,
            ImageColor::Grayscale | ImageColor::GrayscaleFloat16 => 1,
        }
    }

    /// The element type of the tensor carrying the pixels.
    pub fn dtype(self) -> DataType {
        match self {
            ImageColor::GrayscaleFloat16 => DataType::F16,
            _ => DataType::U8,
        }
    }
}

impl Feature {
    /// The tensor that carries this feature, or `None` when it is not a
    /// tensor (dictionary, sequence).
    pub fn tensor(&self) -> Option<TensorSpec> {
        let (dtype, shape) = match &self.kind {
            FeatureKind::Array {
                dtype,
                shape,
                flexibility,
            } => (*dtype, flexibility.dims(shape)),
            FeatureKind::Image {
                color,
                width,
                height,
                flexibility,
            } => {
                let mut dims = flexibility
                    .dims(&[*height, *width])
                    .unwrap_or_else(|| vec![Dim::Any, Dim::Any]);
                dims.push(Dim::Fixed(color.channels()));
                (color.dtype(), Some(dims))
            }
            FeatureKind::Int64 => (DataType::I64, Some(vec![Dim::Fixed(1)])),
            FeatureKind::Double => (DataType::F64, Some(vec![Dim::Fixed(1)])),
            FeatureKind::String => (DataType::Bytes, Some(vec![Dim::Fixed(1)])),
            FeatureKind::Dictionary { .. } | FeatureKind::Sequence { .. } => return None,
        };
        Some(TensorSpec {
            name: self.name.clone(),
            dtype,
            shape,
        })
    }

    /// The type in words, e.g. `f16 array [1, 4]` or `dictionary<string, double>`.
    pub fn type_text(&self) -> String {
        match &self.kind {
            FeatureKind::Array { dtype, shape, .. } => {
                format!("{dtype} array {}", shape_text(shape))
            }
            FeatureKind::Image {
                color,
                width,
                height,
                ..
            } => format!("image {} {width}x{height}", color.as_str()),
            FeatureKind::Int64 => "int64".into(),
            FeatureKind::Double => "double".into(),
            FeatureKind::String => "string".into(),
            FeatureKind::Dictionary { key } => format!("dictionary<{key}, double>"),
            FeatureKind::Sequence { element } => format!("sequence<{element}>"),
        }
    }
}

/// Reads and describes a `.mlmodel` or `.mlpackage`. On Apple systems built
/// with the `coreml` feature, a compiled `.mlmodelc` too (through Core ML,
/// which alone reads that format); elsewhere it is refused with a message.
pub fn describe_file(path: &std::path::Path) -> Result<Description> {
    #[cfg(all(target_vendor = "apple", feature = "coreml"))]
    if file::Container::of(path) == Some(file::Container::MlModelC) {
        return super::apple::describe_compiled_file(path);
    }
    let file = file::read(path)?;
    describe(&file)
}

/// Decodes and describes the bytes of an `.mlmodel` specification, as
/// [`describe_file`] does for a file: the fuzzing entry point of the Core ML
/// reader (an error for any input, never a panic).
#[doc(hidden)]
pub fn describe_spec_bytes(bytes: &[u8]) -> Result<Description> {
    let path = std::path::PathBuf::from("fuzz.mlmodel");
    let model = file::decode_spec(&path, bytes)?;
    describe(&CoreMlFile {
        spec_path: path.clone(),
        path,
        model,
        file_size: bytes.len() as u64,
        weight_bytes: 0,
    })
}

/// Describes a decoded Core ML file.
pub fn describe(file: &CoreMlFile) -> Result<Description> {
    let model = &file.model;
    let desc = model
        .description
        .as_ref()
        .expect("checked by file::read; this is a bug");
    let mut props: Vec<(String, String)> = Vec::new();
    let meta = desc.metadata.clone().unwrap_or_default();
    for (key, value) in [
        ("description", &meta.short_description),
        ("author", &meta.author),
        ("license", &meta.license),
        ("version", &meta.version_string),
    ] {
        if !value.is_empty() {
            props.push((key.into(), value.clone()));
        }
    }
    let model_type = model_type_name(model);
    props.push(("coreml.model_type".into(), model_type.into()));
    props.push((
        "coreml.specification_version".into(),
        model.specification_version.to_string(),
    ));
    type_details(model, &mut props);

    // Multi-function models describe each function; serve the default one.
    let (inputs, outputs, states) = match desc.functions.as_slice() {
        [] => (&desc.input, &desc.output, &desc.state),
        functions => {
            let names: Vec<&str> = functions.iter().map(|f| f.name.as_str()).collect();
            props.push(("coreml.functions".into(), names.join(", ")));
            props.push((
                "coreml.default_function".into(),
                desc.default_function_name.clone(),
            ));
            let f = functions
                .iter()
                .find(|f| f.name == desc.default_function_name)
                .ok_or_else(|| {
                    file::invalid(
                        &file.path,
                        format!(
                            "the model's default function '{}' is not among its functions ({})",
                            desc.default_function_name,
                            names.join(", ")
                        ),
                    )
                })?;
            (&f.input, &f.output, &f.state)
        }
    };
    let features = |list: &[spec::FeatureDescription], role: &str| -> Result<Vec<Feature>> {
        list.iter().map(|f| feature(file, f, role)).collect()
    };
    let inputs = features(inputs, "input")?;
    let outputs = features(outputs, "output")?;
    let states = features(states, "state")?;
    for (role, list) in [("input", &inputs), ("output", &outputs), ("state", &states)] {
        for f in list.iter() {
            feature_properties(role, f, &mut props);
        }
    }
    for (k, v) in &meta.user_defined {
        props.push((k.clone(), v.clone()));
    }
    let producer = meta
        .user_defined
        .get("com.github.apple.coremltools.version")
        .map(|v| format!("coremltools {v}"));
    let metadata = ModelMetadata {
        format: ModelFormat::CoreMl,
        inputs: inputs.iter().filter_map(Feature::tensor).collect(),
        outputs: outputs.iter().filter_map(Feature::tensor).collect(),
        producer,
        opsets: vec![("coreml".into(), i64::from(model.specification_version))],
        parameter_count: 0,
        file_size: file.file_size,
        weight_bytes: file.weight_bytes,
        properties: props,
    };
    Ok(Description {
        metadata,
        model_type,
        specification_version: model.specification_version,
        inputs,
        outputs,
        states,
    })
}

fn feature(file: &CoreMlFile, f: &spec::FeatureDescription, role: &str) -> Result<Feature> {
    let bad = |what: String| file::invalid(&file.path, format!("{role} '{}' {what}", f.name));
    let ty = f
        .r#type
        .as_ref()
        .ok_or_else(|| bad("has no type (truncated?)".into()))?;
    let kind = match ty.r#type.as_ref() {
        None => return Err(bad("has a type this anemone does not know".into())),
        Some(FType::MultiArrayType(a)) => array_kind(a).map_err(bad)?,
        Some(FType::StateType(s)) => match &s.r#type {
            Some(spec::state_feature_type::Type::ArrayType(a)) => array_kind(a).map_err(bad)?,
            None => return Err(bad("is a state that holds no array".into())),
        },
        Some(FType::ImageType(i)) => image_kind(i).map_err(bad)?,
        Some(FType::Int64Type(_)) => FeatureKind::Int64,
        Some(FType::DoubleType(_)) => FeatureKind::Double,
        Some(FType::StringType(_)) => FeatureKind::String,
        Some(FType::DictionaryType(d)) => FeatureKind::Dictionary {
            key: match d.key_type {
                Some(spec::dictionary_feature_type::KeyType::Int64KeyType(_)) => "int64",
                _ => "string",
            },
        },
        Some(FType::SequenceType(s)) => FeatureKind::Sequence {
            element: match s.r#type {
                Some(spec::sequence_feature_type::Type::Int64Type(_)) => "int64",
                _ => "string",
            },
        },
    };
    Ok(Feature {
        name: f.name.clone(),
        kind,
        optional: ty.is_optional,
        description: f.short_description.clone(),
    })
}

/// The anemone element type of a Core ML array data type.
pub fn array_dtype(code: i32) -> Option<DataType> {
    Some(match ArrayDataType::try_from(code).ok()? {
        ArrayDataType::Float32 => DataType::F32,
        ArrayDataType::Float16 => DataType::F16,
        ArrayDataType::Double => DataType::F64,
        ArrayDataType::Int32 => DataType::I32,
        ArrayDataType::Int8 => DataType::I8,
        ArrayDataType::InvalidArrayDataType => return None,
    })
}

fn array_kind(a: &spec::ArrayFeatureType) -> std::result::Result<FeatureKind, String> {
    let dtype = array_dtype(a.data_type).ok_or_else(|| {
        format!(
            "is an array of data type {}, which anemone cannot carry (Core ML arrays are FLOAT32, \
             FLOAT16, DOUBLE, INT32 or INT8)",
            a.data_type
        )
    })?;
    let shape = dims_u64(&a.shape)?;
    let flexibility = match &a.shape_flexibility {
        None => Flexibility::Fixed,
        Some(ShapeFlexibility::ShapeRange(r)) => Flexibility::Ranges(
            r.size_ranges
                .iter()
                .map(|s| SizeRange::from_spec(s.lower_bound, s.upper_bound))
                .collect(),
        ),
        Some(ShapeFlexibility::EnumeratedShapes(e)) => Flexibility::Enumerated(
            e.shapes
                .iter()
                .map(|s| dims_u64(&s.shape))
                .collect::<std::result::Result<_, _>>()?,
        ),
    };
    Ok(FeatureKind::Array {
        dtype,
        shape,
        flexibility,
    })
}

fn dims_u64(dims: &[i64]) -> std::result::Result<Vec<u64>, String> {
    dims.iter()
        .map(|&d| u64::try_from(d).map_err(|_| format!("has a negative dimension ({d})")))
        .collect()
}

fn image_kind(i: &spec::ImageFeatureType) -> std::result::Result<FeatureKind, String> {
    let color = match ColorSpace::try_from(i.color_space) {
        Ok(ColorSpace::Grayscale) => ImageColor::Grayscale,
        Ok(ColorSpace::Rgb) => ImageColor::Rgb,
        Ok(ColorSpace::Bgr) => ImageColor::Bgr,
        Ok(ColorSpace::GrayscaleFloat16) => ImageColor::GrayscaleFloat16,
        _ => {
            return Err(format!(
                "is an image with an unknown color space ({})",
                i.color_space
            ))
        }
    };
    let (width, height) = (
        u64::try_from(i.width).map_err(|_| "is an image with a negative width".to_string())?,
        u64::try_from(i.height).map_err(|_| "is an image with a negative height".to_string())?,
    );
    // Shapes are [height, width], the order of the tensor's first two axes.
    let flexibility = match &i.size_flexibility {
        None => Flexibility::Fixed,
        Some(SizeFlexibility::ImageSizeRange(r)) => {
            let range = |r: &Option<spec::SizeRange>, default: u64| {
                r.as_ref()
                    .map(|r| SizeRange::from_spec(r.lower_bound, r.upper_bound))
                    .unwrap_or(SizeRange {
                        lower: default,
                        upper: Some(default),
                    })
            };
            Flexibility::Ranges(vec![
                range(&r.height_range, height),
                range(&r.width_range, width),
            ])
        }
        Some(SizeFlexibility::EnumeratedSizes(e)) => {
            Flexibility::Enumerated(e.sizes.iter().map(|s| vec![s.height, s.width]).collect())
        }
    };
    Ok(FeatureKind::Image {
        color,
        width,
        height,
        flexibility,
    })
}

fn feature_properties(role: &str, f: &Feature, props: &mut Vec<(String, String)>) {
    let key = |what: &str| format!("coreml.{role}.{}.{what}", f.name);
    if !f.description.is_empty() {
        props.push((key("description"), f.description.clone()));
    }
    if f.optional {
        props.push((key("optional"), "true".into()));
    }
    match &f.kind {
        FeatureKind::Array { flexibility, .. } | FeatureKind::Image { flexibility, .. } => {
            if role == "state" || matches!(f.kind, FeatureKind::Image { .. }) {
                props.push((key("type"), f.type_text()));
            }
            let what = match flexibility {
                Flexibility::Fixed => None,
                Flexibility::Ranges(_) => Some("shape_range"),
                Flexibility::Enumerated(_) => Some("enumerated_shapes"),
            };
            if let Some(what) = what {
                props.push((key(what), flexibility.describe()));
            }
        }
        FeatureKind::Dictionary { .. } | FeatureKind::Sequence { .. } => {
            props.push((
                key("type"),
                format!("{} (not a tensor: anemone cannot carry it)", f.type_text()),
            ));
        }
        FeatureKind::Int64 | FeatureKind::Double | FeatureKind::String => {
            props.push((key("type"), f.type_text()));
        }
    }
}

/// The model type's name, as in Apple's `Model.proto`.
pub fn model_type_name(model: &spec::Model) -> &'static str {
    use spec::model::Type as T;
    match &model.r#type {
        None => "unknown",
        Some(t) => match t {
            T::PipelineClassifier(_) => "pipelineClassifier",
            T::PipelineRegressor(_) => "pipelineRegressor",
            T::Pipeline(_) => "pipeline",
            T::GlmRegressor(_) => "glmRegressor",
            T::SupportVectorRegressor(_) => "supportVectorRegressor",
            T::TreeEnsembleRegressor(_) => "treeEnsembleRegressor",
            T::NeuralNetworkRegressor(_) => "neuralNetworkRegressor",
            T::BayesianProbitRegressor(_) => "bayesianProbitRegressor",
            T::GlmClassifier(_) => "glmClassifier",
            T::SupportVectorClassifier(_) => "supportVectorClassifier",
            T::TreeEnsembleClassifier(_) => "treeEnsembleClassifier",
            T::NeuralNetworkClassifier(_) => "neuralNetworkClassifier",
            T::KNearestNeighborsClassifier(_) => "kNearestNeighborsClassifier",
            T::NeuralNetwork(_) => "neuralNetwork",
            T::ItemSimilarityRecommender(_) => "itemSimilarityRecommender",
            T::MlProgram(_) => "mlProgram",
            T::CustomModel(_) => "customModel",
            T::LinkedModel(_) => "linkedModel",
            T::ClassConfidenceThresholding(_) => "classConfidenceThresholding",
            T::OneHotEncoder(_) => "oneHotEncoder",
            T::Imputer(_) => "imputer",
            T::FeatureVectorizer(_) => "featureVectorizer",
            T::DictVectorizer(_) => "dictVectorizer",
            T::Scaler(_) => "scaler",
            T::CategoricalMapping(_) => "categoricalMapping",
            T::Normalizer(_) => "normalizer",
            T::ArrayFeatureExtractor(_) => "arrayFeatureExtractor",
            T::NonMaximumSuppression(_) => "nonMaximumSuppression",
            T::Identity(_) => "identity",
            T::TextClassifier(_) => "textClassifier",
            T::WordTagger(_) => "wordTagger",
            T::VisionFeaturePrint(_) => "visionFeaturePrint",
            T::SoundAnalysisPreprocessing(_) => "soundAnalysisPreprocessing",
            T::Gazetteer(_) => "gazetteer",
            T::WordEmbedding(_) => "wordEmbedding",
            T::AudioFeaturePrint(_) => "audioFeaturePrint",
            T::SerializedModel(_) => "serializedModel",
        },
    }
}

/// The pipeline inside a model, if it is one.
pub fn pipeline(model: &spec::Model) -> Option<&spec::Pipeline> {
    use spec::model::Type as T;
    match model.r#type.as_ref()? {
        T::Pipeline(p) => Some(p),
        T::PipelineClassifier(p) => p.pipeline.as_ref(),
        T::PipelineRegressor(p) => p.pipeline.as_ref(),
        _ => None,
    }
}

/// Layer counts, ML program opsets and pipeline stages.
fn type_details(model: &spec::Model, props: &mut Vec<(String, String)>) {
    use spec::model::Type as T;
    match &model.r#type {
        Some(T::NeuralNetwork(n))
        | Some(T::NeuralNetworkClassifier(n))
        | Some(T::NeuralNetworkRegressor(n)) => {
            props.push(("coreml.layers".into(), n.layers.len().to_string()));
        }
        Some(T::MlProgram(p)) => {
            let opsets: Vec<String> = p
                .functions
                .iter()
                .map(|(name, f)| format!("{name}: {}", f.opset))
                .collect();
            props.push(("coreml.mlprogram.opsets".into(), opsets.join(", ")));
        }
        _ => {}
    }
    if let Some(p) = pipeline(model) {
        let stages: Vec<String> = p
            .models
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let name = p
                    .names
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("model{i}"));
                format!("{name} ({})", model_type_name(m))
            })
            .collect();
        props.push(("coreml.pipeline.models".into(), stages.join(", ")));
    }
}
