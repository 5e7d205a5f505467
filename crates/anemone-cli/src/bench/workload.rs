//! What every request carries: the input tensors, from `.npy` files or
//! generated from the model's metadata, and the outputs asked for.
//!
//! Generated data is deterministic: floats in [0, 1), integers in [0, 10),
//! booleans alternating from `true`, and strings of one digit.

use anemone_core::{DataType, Tensor};
use anyhow::{bail, Context};
use std::collections::HashSet;
use std::path::PathBuf;

/// One tensor of a model's metadata, as the server declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorMeta {
    pub name: String,
    /// The KServe name: `FP32`, `INT64`, `BYTES`, ...
    pub datatype: String,
    /// `-1` for a dynamic dimension.
    pub shape: Vec<i64>,
}

/// A model's inputs and outputs, as the server declares them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelMeta {
    pub inputs: Vec<TensorMeta>,
    pub outputs: Vec<TensorMeta>,
}

/// One input of the request.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub name: String,
    pub tensor: Tensor,
}

/// The inputs sent with every request, in the model's order, and the
/// outputs asked for (empty for all).
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub inputs: Vec<Input>,
    pub outputs: Vec<String>,
}

/// Parses `--input NAME=FILE`.
pub fn parse_input(arg: &str) -> anyhow::Result<(String, PathBuf)> {
    match arg.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_string(), path.into()))
        }
        _ => bail!("--input '{arg}' is not NAME=FILE; use --input NAME=FILE.npy"),
    }
}

/// Parses `--shape NAME=D0,D1,...`; `NAME=` is a scalar.
pub fn parse_shape(arg: &str) -> anyhow::Result<(String, Vec<usize>)> {
    let Some((name, dims)) = arg.split_once('=').filter(|(n, _)| !n.is_empty()) else {
        bail!("--shape '{arg}' is not NAME=DIMS; use, for example, --shape input=1,3,224,224");
    };
    let dims = dims.trim();
    if dims.is_empty() {
        return Ok((name.to_string(), Vec::new()));
    }
    let shape = dims
        .split(',')
        .map(|d| d.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            anyhow::anyhow!(
                "--shape '{arg}': dimensions must be non-negative integers separated by commas"
            )
        })?;
    Ok((name.to_string(), shape))
}

/// Fails when a name appears twice.
pub fn no_duplicates<'a>(flag: &str, names: impl Iterator<Item = &'a str>) -> anyhow::Result<()> {
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name) {
            bail!("{flag} names '{name}' more than once");
        }
    }
    Ok(())
}

/// Reads each `--input` file.
pub fn read_inputs(files: &[(String, PathBuf)]) -> anyhow::Result<Vec<(String, Tensor)>> {
    files
        .iter()
        .map(|(name, path)| {
            let tensor = crate::npy_input::read(path)
                .with_context(|| format!("cannot read input '{name}' from {}", path.display()))?;
            Ok((name.clone(), tensor))
        })
        .collect()
}

impl Workload {
    /// Takes the given tensors and generates every other input of `meta`.
    pub fn build(
        meta: &ModelMeta,
        mut given: Vec<(String, Tensor)>,
        shapes: &[(String, Vec<usize>)],
        dim_default: usize,
        outputs: &[String],
    ) -> anyhow::Result<Workload> {
        let known = |name: &str, tensors: &[TensorMeta]| tensors.iter().any(|t| t.name == name);
        let names = |tensors: &[TensorMeta]| {
            tensors
                .iter()
                .map(|t| format!("'{}'", t.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for name in given
            .iter()
            .map(|(n, _)| n)
            .chain(shapes.iter().map(|(n, _)| n))
        {
            if !known(name, &meta.inputs) {
                bail!(
                    "the model has no input '{name}'; its inputs are {}",
                    names(&meta.inputs)
                );
            }
        }
        for name in outputs {
            if !known(name, &meta.outputs) {
                bail!(
                    "the model has no output '{name}'; its outputs are {}",
                    names(&meta.outputs)
                );
            }
        }
        let mut inputs = Vec::with_capacity(meta.inputs.len());
        for (index, spec) in meta.inputs.iter().enumerate() {
            let declared = DataType::from_kserve_name(&spec.datatype);
            let tensor = match given.iter().position(|(n, _)| *n == spec.name) {
                Some(i) => {
                    let (_, tensor) = given.swap_remove(i);
                    if declared.is_some_and(|d| d != tensor.dtype()) {
                        bail!(
                            "input '{}': the file holds {} data, but the model takes {}",
                            spec.name,
                            tensor.dtype().kserve_name(),
                            spec.datatype
                        );
                    }
                    tensor
                }
                None => {
                    let Some(dtype) = declared else {
                        bail!(
                            "input '{}' has datatype '{}', which cannot be generated; give it with --input {}=FILE.npy",
                            spec.name,
                            spec.datatype,
                            spec.name
                        );
                    };
                    let shape = match shapes.iter().find(|(n, _)| *n == spec.name) {
                        Some((_, s)) => checked_shape(spec, s)?,
                        None => concrete_shape(spec, dim_default)?,
                    };
                    generate(dtype, shape, index as u64)?
                }
            };
            inputs.push(Input {
                name: spec.name.clone(),
                tensor,
            });
        }
        Ok(Workload {
            inputs,
            outputs: outputs.to_vec(),
        })
    }

    /// `name DATATYPE [dims]` for each input, for the report.
    pub fn summary(&self) -> Vec<(String, &'static str, Vec<usize>)> {
        self.inputs
            .iter()
            .map(|i| {
                (
                    i.name.clone(),
                    i.tensor.dtype().kserve_name(),
                    i.tensor.shape().to_vec(),
                )
            })
            .collect()
    }
}

/// The declared shape with every dynamic dimension set to `dim_default`.
fn concrete_shape(spec: &TensorMeta, dim_default: usize) -> anyhow::Result<Vec<usize>> {
    spec.shape
        .iter()
        .map(|&d| match d {
            -1 => Ok(dim_default),
            d if d >= 0 => Ok(d as usize),
            d => bail!(
                "input '{}' has dimension {d} in its declared shape {:?}; give --shape {}=DIMS",
                spec.name,
                spec.shape,
                spec.name
            ),
        })
        .collect()
}

/// A `--shape` that agrees with the declared one: the same rank and every fixed dimension.
fn checked_shape(spec: &TensorMeta, shape: &[usize]) -> anyhow::Result<Vec<usize>> {
    let agrees = shape.len() == spec.shape.len()
        && spec
            .shape
            .iter()
            .zip(shape)
            .all(|(&d, &s)| d < 0 || d as usize == s);
    if !agrees {
        let dims = shape
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",");
        bail!(
            "--shape {}={dims} does not fit the model's declared shape {:?} (-1 is dynamic)",
            spec.name,
            spec.shape
        );
    }
    Ok(shape.to_vec())
}

/// A deterministic xorshift64* stream.
struct Stream(u64);

impl Stream {
    fn new(seed: u64) -> Stream {
        // Any non-zero state works; mixing the seed keeps streams of nearby seeds apart.
        Stream(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// In [0, 1), with 24 bits, so exact in every float type.
    fn unit(&mut self) -> f64 {
        (self.next() >> 40) as f64 / (1u64 << 24) as f64
    }

    fn digit(&mut self) -> u8 {
        (self.next() % 10) as u8
    }
}

/// A tensor of `shape` filled with values that depend only on `dtype`, `shape` and `seed`.
pub fn generate(dtype: DataType, shape: Vec<usize>, seed: u64) -> anyhow::Result<Tensor> {
    let count = anemone_core::tensor::element_count(&shape)
        .with_context(|| format!("shape {shape:?} is too large"))?;
    let mut s = Stream::new(seed);
    let tensor = if dtype == DataType::Bytes {
        Tensor::from_strings(shape, (0..count).map(|_| vec![b'0' + s.digit()]).collect())
    } else {
        let size = dtype
            .size()
            .expect("numeric types have a size; this is a bug");
        let mut bytes = Vec::with_capacity(count.checked_mul(size).context("input too large")?);
        for i in 0..count {
            match dtype {
                DataType::Bool => bytes.push((i % 2 == 0) as u8),
                DataType::F16 => {
                    bytes.extend_from_slice(&half::f16::from_f64(s.unit()).to_le_bytes())
                }
                DataType::F32 => bytes.extend_from_slice(&(s.unit() as f32).to_le_bytes()),
                DataType::F64 => bytes.extend_from_slice(&s.unit().to_le_bytes()),
                // Every integer type stores 0..10 as its first byte, little-endian, then zeros.
                _ => {
                    bytes.push(s.digit());
                    bytes.extend(std::iter::repeat_n(0, size - 1));
                }
            }
        }
        Tensor::from_bytes(dtype, shape, bytes)
    };
    Ok(tensor?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, datatype: &str, shape: &[i64]) -> TensorMeta {
        TensorMeta {
            name: name.into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
        }
    }

    fn add_model() -> ModelMeta {
        ModelMeta {
            inputs: vec![spec("x", "FP32", &[-1, 4]), spec("y", "FP32", &[-1, 4])],
            outputs: vec![spec("z", "FP32", &[-1, 4])],
        }
    }

    #[test]
    fn shapes_parse() {
        assert_eq!(
            parse_shape("x=1,3,224,224").unwrap(),
            ("x".into(), vec![1, 3, 224, 224])
        );
        assert_eq!(parse_shape("x= 2 , 5").unwrap(), ("x".into(), vec![2, 5]));
        assert_eq!(parse_shape("x=").unwrap(), ("x".into(), vec![]));
        assert!(parse_shape("a=b=1")
            .unwrap_err()
            .to_string()
            .contains("non-negative"));
        assert!(parse_shape("x=1,-1").is_err());
        assert!(parse_shape("x=1,,2").is_err());
        assert!(parse_shape("=1").is_err());
        assert!(parse_shape("1,2").is_err());
    }

    #[test]
    fn dynamic_dimensions_take_the_default() {
        let w = Workload::build(&add_model(), vec![], &[], 3, &[]).unwrap();
        assert_eq!(w.inputs.len(), 2);
        assert_eq!(w.inputs[0].name, "x");
        assert_eq!(w.inputs[0].tensor.shape(), &[3, 4]);
        assert_eq!(w.inputs[1].tensor.dtype(), DataType::F32);
        // Each input has its own stream, and the same stream on every build.
        assert_ne!(w.inputs[0].tensor, w.inputs[1].tensor);
        assert_eq!(
            w,
            Workload::build(&add_model(), vec![], &[], 3, &[]).unwrap()
        );
    }

    #[test]
    fn shape_overrides_must_fit_the_declared_shape() {
        let w = Workload::build(&add_model(), vec![], &[("y".into(), vec![8, 4])], 1, &[]).unwrap();
        assert_eq!(w.inputs[0].tensor.shape(), &[1, 4]);
        assert_eq!(w.inputs[1].tensor.shape(), &[8, 4]);
        let err =
            Workload::build(&add_model(), vec![], &[("y".into(), vec![8, 5])], 1, &[]).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
        assert!(Workload::build(&add_model(), vec![], &[("y".into(), vec![4])], 1, &[]).is_err());
    }

    #[test]
    fn unknown_names_and_wrong_types_are_refused() {
        let err =
            Workload::build(&add_model(), vec![], &[("w".into(), vec![1])], 1, &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("no input 'w'; its inputs are 'x', 'y'"),
            "{err}"
        );
        let err = Workload::build(&add_model(), vec![], &[], 1, &["q".into()]).unwrap_err();
        assert!(err.to_string().contains("no output 'q'"), "{err}");
        let ints = Tensor::from_vec(vec![1, 4], vec![1i64, 2, 3, 4]).unwrap();
        let err = Workload::build(&add_model(), vec![("x".into(), ints)], &[], 1, &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("INT64 data, but the model takes FP32"),
            "{err}"
        );
        let odd = ModelMeta {
            inputs: vec![spec("s", "FP8", &[1])],
            outputs: vec![],
        };
        assert!(Workload::build(&odd, vec![], &[], 1, &[])
            .unwrap_err()
            .to_string()
            .contains("--input s=FILE.npy"));
    }

    #[test]
    fn given_tensors_are_used_as_they_are() {
        let x = Tensor::from_vec(vec![2, 4], vec![1.0f32; 8]).unwrap();
        let w = Workload::build(
            &add_model(),
            vec![("x".into(), x.clone())],
            &[],
            1,
            &["z".into()],
        )
        .unwrap();
        assert_eq!(w.inputs[0].tensor, x);
        assert_eq!(w.inputs[1].tensor.shape(), &[1, 4]);
        assert_eq!(w.outputs, vec!["z".to_string()]);
    }

    #[test]
    fn generated_values_stay_in_their_ranges() {
        let f = generate(DataType::F32, vec![1000], 0)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert!(f.iter().all(|v| (0.0..1.0).contains(v)));
        assert!(f.iter().any(|&v| v != f[0]), "not constant");
        let h = generate(DataType::F16, vec![100], 0)
            .unwrap()
            .to_vec::<half::f16>()
            .unwrap();
        assert!(h.iter().all(|v| (0.0..1.0).contains(&v.to_f32())));
        for dtype in [
            DataType::I8,
            DataType::U16,
            DataType::I32,
            DataType::I64,
            DataType::U64,
        ] {
            let v = generate(dtype, vec![500], 1)
                .unwrap()
                .to_f64_lossy()
                .unwrap();
            assert!(
                v.iter()
                    .all(|x| (0.0..10.0).contains(x) && x.fract() == 0.0),
                "{dtype}"
            );
            assert!(v.contains(&0.0) && v.contains(&9.0), "{dtype} covers 0..10");
        }
        let b = generate(DataType::Bool, vec![2, 2], 0)
            .unwrap()
            .to_vec::<bool>()
            .unwrap();
        assert_eq!(b, vec![true, false, true, false]);
        let s = generate(DataType::Bytes, vec![3], 0).unwrap();
        assert!(s
            .as_strings()
            .unwrap()
            .iter()
            .all(|s| s.len() == 1 && s[0].is_ascii_digit()));
        assert_eq!(generate(DataType::F32, vec![], 0).unwrap().len(), 1);
        assert!(generate(DataType::F32, vec![0, 3], 0).unwrap().is_empty());
    }
}
