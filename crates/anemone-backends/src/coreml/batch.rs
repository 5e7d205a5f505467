//! How the `coreml` backend runs a request: as one prediction when the model
//! accepts the inputs' shapes as they are, or as a batch prediction
//! (`MLArrayBatchProvider`) of `n` samples when the inputs carry `n` samples
//! along axis 0 and the model takes one at a time (its axis 0 is 1). The
//! outputs of a batch are joined back along axis 0.

use super::shape::Flexibility;
use anemone_core::{Tensor, TensorError};

/// How to run one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// One prediction with the inputs as they are.
    Single,
    /// `n` predictions in one batch call, one per slice of axis 0.
    Split(usize),
}

/// One input as the model declares it.
#[derive(Debug, Clone, Copy)]
pub struct Declared<'a> {
    /// The input's name.
    pub name: &'a str,
    /// Its default shape.
    pub shape: &'a [u64],
    /// The other shapes it allows.
    pub flexibility: &'a Flexibility,
}

/// Chooses how to run inputs of these shapes, or says why the model cannot.
pub fn plan(declared: &[Declared<'_>], shapes: &[&[usize]]) -> Result<Plan, String> {
    assert_eq!(
        declared.len(),
        shapes.len(),
        "one shape per input; this is a bug"
    );
    let mut whole = Vec::new();
    for (d, s) in declared.iter().zip(shapes) {
        match d.flexibility.check(d.shape, s) {
            Ok(()) => {}
            Err(e) => whole.push(format!("input '{}' has shape {s:?}, but {e}", d.name)),
        }
    }
    if whole.is_empty() {
        return Ok(Plan::Single);
    }
    // Every input must split into the same number of samples, each accepted.
    let n = shapes.first().and_then(|s| s.first()).copied().unwrap_or(0);
    let splits = n > 1
        && declared.iter().zip(shapes).all(|(d, s)| {
            s.first() == Some(&n) && {
                let mut one = s.to_vec();
                one[0] = 1;
                d.flexibility.check(d.shape, &one).is_ok()
            }
        });
    if splits {
        Ok(Plan::Split(n))
    } else {
        Err(whole.join("; "))
    }
}

/// Slice `i` of `n` along axis 0, keeping axis 0 with size 1.
pub fn slice(t: &Tensor, n: usize, i: usize) -> Result<Tensor, TensorError> {
    let bytes = t.as_bytes().expect("numeric tensors only; this is a bug");
    let per = bytes.len() / n;
    let mut shape = t.shape().to_vec();
    shape[0] = 1;
    Tensor::from_bytes(t.dtype(), shape, bytes[i * per..(i + 1) * per].to_vec())
}

/// Joins per-sample outputs (each with axis 0 of size 1, or without a batch
/// axis) along axis 0.
pub fn join(parts: Vec<Tensor>) -> Result<Tensor, TensorError> {
    let first = parts.first().expect("at least one part; this is a bug");
    let dtype = first.dtype();
    let mut shape = first.shape().to_vec();
    if shape.first() == Some(&1) {
        shape[0] = parts.len();
    } else {
        shape.insert(0, parts.len());
    }
    let mut bytes = Vec::with_capacity(first.byte_len() * parts.len());
    for p in &parts {
        bytes.extend_from_slice(p.as_bytes().expect("numeric tensors only; this is a bug"));
    }
    Tensor::from_bytes(dtype, shape, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coreml::shape::SizeRange;

    #[test]
    fn single_when_the_model_accepts_the_shape() {
        let range =
            Flexibility::Ranges(vec![SizeRange::from_spec(1, 8), SizeRange::from_spec(4, 4)]);
        let d = [Declared {
            name: "x",
            shape: &[1, 4],
            flexibility: &range,
        }];
        assert_eq!(plan(&d, &[&[8, 4]]), Ok(Plan::Single));
    }

    #[test]
    fn split_when_the_model_takes_one_sample() {
        let fixed = Flexibility::Fixed;
        let d = [
            Declared {
                name: "x",
                shape: &[1, 4],
                flexibility: &fixed,
            },
            Declared {
                name: "y",
                shape: &[1, 2],
                flexibility: &fixed,
            },
        ];
        assert_eq!(plan(&d, &[&[3, 4], &[3, 2]]), Ok(Plan::Split(3)));
        // Different sample counts cannot split.
        let err = plan(&d, &[&[3, 4], &[2, 2]]).unwrap_err();
        assert!(err.contains("input 'x' has shape [3, 4]"), "{err}");
        // A wrong inner size is refused, not split.
        assert!(plan(&d, &[&[3, 5], &[3, 2]]).is_err());
    }

    #[test]
    fn slices_and_joins_round_trip() {
        let t = Tensor::from_vec(vec![3, 2], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let parts: Vec<Tensor> = (0..3).map(|i| slice(&t, 3, i).unwrap()).collect();
        assert_eq!(parts[1].to_vec::<f32>().unwrap(), [3.0, 4.0]);
        assert_eq!(parts[1].shape(), [1, 2]);
        assert_eq!(join(parts).unwrap(), t);
        let scalars = vec![Tensor::from_vec(vec![2], vec![1i32, 2]).unwrap(); 2];
        assert_eq!(join(scalars).unwrap().shape(), [2, 2]);
    }
}
