//! What a loaded model declares: its inputs and outputs, format and provenance.

use crate::dtype::DataType;
use std::fmt;

/// One dimension of a declared tensor shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A fixed size.
    Fixed(u64),
    /// A dynamic size with a name. Every use of the same name within one
    /// request must have the same size.
    Named(String),
    /// A dynamic size with no name (ONNX `?`, an empty `dim_param`, or `-1`).
    Any,
}

impl Dim {
    /// Builds a dimension from an ONNX-style symbol, treating the
    /// placeholders `""`, `"?"` and `"-1"` as anonymous.
    pub fn symbol(name: &str) -> Dim {
        match name.trim() {
            "" | "?" | "-1" => Dim::Any,
            s => Dim::Named(s.to_string()),
        }
    }

    /// The fixed size, if any.
    pub fn fixed(&self) -> Option<u64> {
        match self {
            Dim::Fixed(n) => Some(*n),
            _ => None,
        }
    }

    /// Triton-style size: the fixed size, or -1 when dynamic.
    pub fn as_i64(&self) -> i64 {
        match self {
            Dim::Fixed(n) => *n as i64,
            _ => -1,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Named(s) => f.write_str(s),
            Dim::Any => f.write_str("-1"),
        }
    }
}

impl serde::Serialize for Dim {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Dim::Fixed(n) => s.serialize_u64(*n),
            Dim::Named(n) => s.serialize_str(n),
            Dim::Any => s.serialize_i64(-1),
        }
    }
}

/// A declared input or output: name, element type and shape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TensorSpec {
    /// The tensor's name in the model.
    pub name: String,
    /// Element type.
    pub dtype: DataType,
    /// Declared shape; `None` when the model does not declare even the rank.
    pub shape: Option<Vec<Dim>>,
}

impl TensorSpec {
    /// A spec with a known shape.
    pub fn new(name: impl Into<String>, dtype: DataType, shape: Vec<Dim>) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dtype,
            shape: Some(shape),
        }
    }

    /// The shape as text, e.g. `[batch, 3, -1, 224]`, or `[?]` when unknown.
    pub fn shape_string(&self) -> String {
        match &self.shape {
            None => "[?]".to_string(),
            Some(dims) => {
                let parts: Vec<String> = dims.iter().map(Dim::to_string).collect();
                format!("[{}]", parts.join(", "))
            }
        }
    }
}

/// The file format a model comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    /// An ONNX protobuf (`.onnx`).
    Onnx,
    /// A Core ML model (`.mlmodel`, `.mlpackage`, `.mlmodelc`).
    CoreMl,
    /// A Triton Python model (`model.py` with a `TritonPythonModel` class),
    /// whose inputs and outputs its configuration declares.
    Python,
}

impl ModelFormat {
    /// Guesses the format from a path's extension.
    pub fn from_path(path: &std::path::Path) -> Option<ModelFormat> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "onnx" => Some(ModelFormat::Onnx),
            "mlmodel" | "mlpackage" | "mlmodelc" => Some(ModelFormat::CoreMl),
            "py" => Some(ModelFormat::Python),
            _ => None,
        }
    }
}

impl fmt::Display for ModelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelFormat::Onnx => "onnx",
            ModelFormat::CoreMl => "coreml",
            ModelFormat::Python => "python",
        })
    }
}

/// Everything a model declares about itself, independent of the backend that runs it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelMetadata {
    /// File format.
    pub format: ModelFormat,
    /// Inputs, in the order the model declares them.
    pub inputs: Vec<TensorSpec>,
    /// Outputs, in the order the model declares them.
    pub outputs: Vec<TensorSpec>,
    /// The tool that produced the file, e.g. `pytorch 2.4`.
    pub producer: Option<String>,
    /// Operator sets imported, as `(domain, version)`; the default ONNX domain is `ai.onnx`.
    pub opsets: Vec<(String, i64)>,
    /// Number of trainable parameters (elements of all initializers).
    pub parameter_count: u64,
    /// Size on disk in bytes, external data included.
    pub file_size: u64,
    /// Bytes of weight data.
    pub weight_bytes: u64,
    /// Free-form metadata the file carries (doc string, metadata props).
    pub properties: Vec<(String, String)>,
}

impl ModelMetadata {
    /// Metadata with these inputs and outputs and nothing else known
    /// (no producer, opsets, parameters or sizes).
    pub fn new(
        format: ModelFormat,
        inputs: Vec<TensorSpec>,
        outputs: Vec<TensorSpec>,
    ) -> ModelMetadata {
        ModelMetadata {
            format,
            inputs,
            outputs,
            producer: None,
            opsets: vec![],
            parameter_count: 0,
            file_size: 0,
            weight_bytes: 0,
            properties: vec![],
        }
    }

    /// The input spec with this name.
    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|s| s.name == name)
    }

    /// The output spec with this name.
    pub fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|s| s.name == name)
    }

    /// The version of the default ONNX operator set, if imported.
    pub fn default_opset(&self) -> Option<i64> {
        self.opsets
            .iter()
            .find(|(d, _)| d.is_empty() || d == "ai.onnx")
            .map(|(_, v)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_anonymous() {
        assert_eq!(Dim::symbol("?"), Dim::Any);
        assert_eq!(Dim::symbol(""), Dim::Any);
        assert_eq!(Dim::symbol("batch"), Dim::Named("batch".into()));
    }

    #[test]
    fn shape_string_shows_names_and_minus_one() {
        let s = TensorSpec::new(
            "x",
            DataType::F32,
            vec![Dim::Named("batch".into()), Dim::Fixed(3), Dim::Any],
        );
        assert_eq!(s.shape_string(), "[batch, 3, -1]");
    }

    #[test]
    fn format_from_extension() {
        use std::path::Path;
        assert_eq!(
            ModelFormat::from_path(Path::new("a/model.onnx")),
            Some(ModelFormat::Onnx)
        );
        assert_eq!(
            ModelFormat::from_path(Path::new("m.mlpackage")),
            Some(ModelFormat::CoreMl)
        );
        assert_eq!(
            ModelFormat::from_path(Path::new("1/model.py")),
            Some(ModelFormat::Python)
        );
        assert_eq!(ModelFormat::from_path(Path::new("m.pt")), None);
    }
}
