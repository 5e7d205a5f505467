//! Triton's classification extension: an output asked for with the
//! parameter `classification: N` comes back as its top `N` classes instead
//! of its values, a BYTES tensor of `"<value>:<index>[:<label>]"` strings,
//! highest value first, with the label from the output's `label_filename`
//! (one label per line, in the model's directory) where it has one.
//!
//! As tritonserver 2.51 answers (checked side by side): for a model with a
//! batch dimension (`max_batch_size > 0`) each row is classified on its
//! own and the answer's shape is `[batch, min(N, classes)]`; otherwise the
//! whole tensor is one row and the shape is `[min(N, elements)]`. Values
//! are written as C++'s `std::to_string` writes them: six decimals for
//! floating point, the integer itself otherwise.

use crate::errors::ApiError;
use crate::proto::ModelConfig;
use crate::repository::paths::{self, Kind};
use anemone_core::{DataType, Element, Tensor};
use half::f16;
use std::collections::BTreeMap;
use std::path::Path;

/// The output parameter that asks for classes.
pub const PARAMETER: &str = "classification";

/// The largest label file read, in bytes.
pub const MAX_LABELS_BYTES: u64 = 16 << 20;

/// The labels of a model's outputs, by output name (from each output's
/// `label_filename`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Labels(BTreeMap<String, Vec<String>>);

impl Labels {
    /// Reads the label file of each output of `config` that names one,
    /// from the model directory `dir` inside the repository `root`. The
    /// file must be a regular file inside the model directory, UTF-8, and
    /// at most [`MAX_LABELS_BYTES`].
    pub fn read(root: &Path, dir: &Path, config: &ModelConfig) -> Result<Labels, String> {
        let mut by_output = BTreeMap::new();
        for output in config
            .output
            .iter()
            .filter(|o| !o.label_filename.is_empty())
        {
            let file = &output.label_filename;
            let what = format!("the label_filename \"{file}\" of output '{}'", output.name);
            if !paths::is_plain_relative(file) {
                return Err(format!(
                    "{what} is not a file name inside the model directory; name a file there, e.g. \"labels.txt\" (absolute paths and '..' are refused)"
                ));
            }
            let path = dir.join(file);
            if paths::model_path_kind(root, &path) != Some(Kind::File) {
                return Err(format!(
                    "{what} is missing or not a regular file inside the model repository; put the labels there, one per line"
                ));
            }
            let bytes =
                anemone_backends::file::read_bounded(&path, Path::new(file), MAX_LABELS_BYTES)
                    .map_err(|e| e.chain_string())?;
            let text = String::from_utf8(bytes)
                .map_err(|_| format!("{what} is not UTF-8 text; save it as UTF-8"))?;
            // A byte order mark (some Windows editors write one) is not
            // part of the first label.
            let labels = text
                .strip_prefix('\u{feff}')
                .unwrap_or(&text)
                .lines()
                .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
                .collect();
            by_output.insert(output.name.clone(), labels);
        }
        Ok(Labels(by_output))
    }

    /// The labels of `output`, if it has any.
    pub fn of(&self, output: &str) -> Option<&[String]> {
        self.0.get(output).map(Vec::as_slice)
    }
}

/// The `classification` count an output asks for, from its parameter (a
/// positive whole number; 0 asks for none, as in Triton).
pub fn requested(output: &str, value: Option<i64>) -> Result<Option<usize>, ApiError> {
    match value {
        None | Some(0) => Ok(None),
        Some(n) => usize::try_from(n).map(Some).map_err(|_| {
            ApiError::invalid(format!(
                "output '{output}': parameter '{PARAMETER}' must be a number of classes (1 or more), got {n}"
            ))
        }),
    }
}

/// Output `name` (`tensor`) as its top `count` classes. `batched`: the
/// model has a batch dimension, whose rows are classified apart.
pub fn classify(
    name: &str,
    tensor: &Tensor,
    count: usize,
    batched: bool,
    labels: Option<&[String]>,
) -> Result<Tensor, ApiError> {
    let shape = tensor.shape();
    let (rows, per_row) = match shape.split_first() {
        Some((&rows, rest)) if batched => (rows, rest.iter().product::<usize>()),
        _ => (1, tensor.len()),
    };
    let take = count.min(per_row);
    let strings = match tensor.dtype() {
        DataType::F32 => top::<f32>(tensor, rows, per_row, take, labels, |v| float(f64::from(v))),
        DataType::F64 => top::<f64>(tensor, rows, per_row, take, labels, float),
        DataType::F16 => top::<f16>(tensor, rows, per_row, take, labels, |v| float(f64::from(v))),
        DataType::I8 => top::<i8>(tensor, rows, per_row, take, labels, |v| v.to_string()),
        DataType::I16 => top::<i16>(tensor, rows, per_row, take, labels, |v| v.to_string()),
        DataType::I32 => top::<i32>(tensor, rows, per_row, take, labels, |v| v.to_string()),
        DataType::I64 => top::<i64>(tensor, rows, per_row, take, labels, |v| v.to_string()),
        DataType::U8 => top::<u8>(tensor, rows, per_row, take, labels, |v| v.to_string()),
        DataType::U16 => top::<u16>(tensor, rows, per_row, take, labels, |v| v.to_string()),
        DataType::U32 => top::<u32>(tensor, rows, per_row, take, labels, |v| v.to_string()),
        DataType::U64 => top::<u64>(tensor, rows, per_row, take, labels, |v| v.to_string()),
        other @ (DataType::Bool | DataType::Bytes) => {
            return Err(ApiError::invalid(format!(
                "output '{name}' is {}, which has no classes to rank: parameter '{PARAMETER}' needs a numeric output",
                other.kserve_name()
            )))
        }
    }
    .ok_or_else(|| ApiError {
        kind: anemone_core::ErrorKind::Internal,
        message: format!("output '{name}' could not be read for classification"),
        too_large: false,
    })?;
    let shape = if batched && !shape.is_empty() {
        vec![rows, take]
    } else {
        vec![take]
    };
    Tensor::from_strings(shape, strings).map_err(|e| ApiError {
        kind: anemone_core::ErrorKind::Internal,
        message: format!("output '{name}': classification: {e}"),
        too_large: false,
    })
}

/// A floating-point value as C++'s `std::to_string` writes it (`%f`).
fn float(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else {
        format!("{v:.6}")
    }
}

/// Each row's `take` highest values (in the element type's own order; NaN
/// last; equal values by index), written as `value:index[:label]`.
fn top<T: Element + PartialOrd>(
    tensor: &Tensor,
    rows: usize,
    per_row: usize,
    take: usize,
    labels: Option<&[String]>,
    write: impl Fn(T) -> String,
) -> Option<Vec<Vec<u8>>> {
    let values = tensor.to_vec::<T>().ok()?;
    let mut out = Vec::with_capacity(rows * take);
    let mut order: Vec<usize> = Vec::with_capacity(per_row);
    for r in 0..rows {
        let row = values.get(r * per_row..(r + 1) * per_row)?;
        order.clear();
        order.extend(0..per_row);
        #[allow(clippy::eq_op)] // `x != x` is how a NaN of any element type shows.
        order.sort_by(|&i, &j| {
            let (a, b) = (row[i], row[j]);
            b.partial_cmp(&a).unwrap_or_else(|| (a != a).cmp(&(b != b)))
        });
        for &i in &order[..take] {
            let mut text = format!("{}:{i}", write(row[i]));
            // An empty line of the label file is no label, as in Triton.
            if let Some(label) = labels.and_then(|l| l.get(i)).filter(|l| !l.is_empty()) {
                text.push(':');
                text.push_str(label);
            }
            out.push(text.into_bytes());
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(t: &Tensor) -> Vec<String> {
        (t.as_strings().unwrap().iter())
            .map(|s| String::from_utf8(s.clone()).unwrap())
            .collect()
    }

    #[test]
    fn top_classes_as_triton_writes_them() {
        // Triton's documented example: [1, 5, 10, 4], top 2.
        let t = Tensor::from_vec(vec![4], vec![1.0f32, 5.0, 10.0, 4.0]).unwrap();
        let c = classify("y", &t, 2, false, None).unwrap();
        assert_eq!(c.shape(), &[2]);
        assert_eq!(strings(&c), ["10.000000:2", "5.000000:1"]);
        // Rows apart when batched, labels where there are, count capped.
        let t = Tensor::from_vec(vec![2, 3], vec![0.25f32, -1.0, 3.5, 7.0, 7.0, -0.125]).unwrap();
        let labels = ["cat".to_string(), "dog".to_string()];
        let c = classify("y", &t, 5, true, Some(&labels)).unwrap();
        assert_eq!(c.shape(), &[2, 3]);
        assert_eq!(
            strings(&c),
            [
                "3.500000:2",
                "0.250000:0:cat",
                "-1.000000:1:dog",
                "7.000000:0:cat",
                "7.000000:1:dog",
                "-0.125000:2"
            ]
        );
        // An empty label is none.
        let blank = ["".to_string(), "dog".to_string()];
        let c = classify("y", &t, 2, true, Some(&blank)).unwrap();
        assert_eq!(
            strings(&c),
            ["3.500000:2", "0.250000:0", "7.000000:0", "7.000000:1:dog"]
        );
        // Unbatched, the whole tensor is one row.
        let c = classify("y", &t, 2, false, None).unwrap();
        assert_eq!(c.shape(), &[2]);
        assert_eq!(strings(&c), ["7.000000:3", "7.000000:4"]);
        // Integers as integers, compared as their type (no float rounding).
        let big = Tensor::from_vec(vec![3], vec![i64::MAX - 1, i64::MAX, 3]).unwrap();
        let c = classify("y", &big, 1, false, None).unwrap();
        assert_eq!(strings(&c), [format!("{}:1", i64::MAX)]);
        // NaN ranks last.
        let t = Tensor::from_vec(vec![3], vec![f64::NAN, -5.0, 2.0]).unwrap();
        let c = classify("y", &t, 3, false, None).unwrap();
        assert_eq!(strings(&c), ["2.000000:2", "-5.000000:1", "nan:0"]);
        // Nothing numeric to rank.
        let t = Tensor::from_strings(vec![1], vec![b"x".to_vec()]).unwrap();
        let e = classify("y", &t, 1, false, None).unwrap_err();
        assert!(e.message.contains("needs a numeric output"), "{e:?}");
    }

    #[test]
    fn the_count_is_a_positive_number() {
        assert_eq!(requested("y", None).unwrap(), None);
        assert_eq!(requested("y", Some(0)).unwrap(), None);
        assert_eq!(requested("y", Some(3)).unwrap(), Some(3));
        let e = requested("y", Some(-2)).unwrap_err();
        assert!(e.message.contains("must be a number of classes"), "{e:?}");
    }
}
