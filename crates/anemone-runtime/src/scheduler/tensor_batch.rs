//! A private stand-in for `Tensor::concat_batch` / `Tensor::split_batch`
//! (CONTRACTS.md §4), which the batching branch adds to anemone-core. Same
//! signatures, as an extension trait; delete this file (and its `use`) when
//! anemone-core has them.

use anemone_core::{Tensor, TensorData, TensorError};

/// Concatenation and splitting along dimension 0.
pub(crate) trait BatchExt: Sized {
    /// Concatenates tensors along dimension 0. All must share dtype and the
    /// dimensions after the first. BYTES tensors included.
    fn concat_batch(parts: &[&Tensor]) -> Result<Tensor, TensorError>;
    /// Splits along dimension 0 into consecutive pieces of `sizes` rows
    /// (sizes must sum to shape[0]).
    fn split_batch(&self, sizes: &[usize]) -> Result<Vec<Tensor>, TensorError>;
}

fn mismatch(shape: &[usize], expected: usize, got: usize) -> TensorError {
    TensorError::ElementCount {
        shape: shape.to_vec(),
        expected,
        got,
    }
}

impl BatchExt for Tensor {
    fn concat_batch(parts: &[&Tensor]) -> Result<Tensor, TensorError> {
        let first = parts.first().ok_or_else(|| mismatch(&[], 1, 0))?;
        let dtype = first.dtype();
        let rest = first.shape().get(1..).unwrap_or(&[]).to_vec();
        let mut rows = 0;
        for p in parts {
            if p.dtype() != dtype {
                return Err(TensorError::WrongType {
                    actual: p.dtype(),
                    requested: dtype,
                });
            }
            if p.shape().is_empty() || p.shape()[1..] != rest[..] {
                return Err(mismatch(p.shape(), rest.len() + 1, p.shape().len()));
            }
            rows += p.shape()[0];
        }
        let mut shape = vec![rows];
        shape.extend_from_slice(&rest);
        match first.data() {
            TensorData::Numeric(_) => {
                let mut bytes = Vec::with_capacity(parts.iter().map(|p| p.byte_len()).sum());
                for p in parts {
                    bytes.extend_from_slice(p.as_bytes().ok_or(TensorError::Storage { dtype })?);
                }
                Tensor::from_bytes(dtype, shape, bytes)
            }
            TensorData::Strings(_) => {
                let mut strings = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
                for p in parts {
                    strings
                        .extend_from_slice(p.as_strings().ok_or(TensorError::Storage { dtype })?);
                }
                Tensor::from_strings(shape, strings)
            }
        }
    }

    fn split_batch(&self, sizes: &[usize]) -> Result<Vec<Tensor>, TensorError> {
        let shape = self.shape();
        let rows = shape.first().copied().unwrap_or(0);
        let total: usize = sizes.iter().sum();
        if shape.is_empty() || total != rows {
            return Err(mismatch(shape, rows, total));
        }
        let per_row = shape[1..].iter().product::<usize>();
        let mut out = Vec::with_capacity(sizes.len());
        let mut at = 0;
        for &n in sizes {
            let mut piece_shape = vec![n];
            piece_shape.extend_from_slice(&shape[1..]);
            let (from, to) = (at * per_row, (at + n) * per_row);
            let piece = match self.data() {
                TensorData::Numeric(bytes) => {
                    let size = self.dtype().size().unwrap_or(1);
                    Tensor::from_bytes(
                        self.dtype(),
                        piece_shape,
                        bytes[from * size..to * size].to_vec(),
                    )?
                }
                TensorData::Strings(strings) => {
                    Tensor::from_strings(piece_shape, strings[from..to].to_vec())?
                }
            };
            out.push(piece);
            at += n;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_then_split_gives_the_parts_back() {
        let a = Tensor::from_vec(vec![1, 2], vec![1.0f32, 2.0]).unwrap();
        let b = Tensor::from_vec(vec![2, 2], vec![3.0f32, 4.0, 5.0, 6.0]).unwrap();
        let ab = Tensor::concat_batch(&[&a, &b]).unwrap();
        assert_eq!(ab.shape(), &[3, 2]);
        assert_eq!(
            ab.to_vec::<f32>().unwrap(),
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
        assert_eq!(ab.split_batch(&[1, 2]).unwrap(), vec![a.clone(), b]);
        let s = Tensor::from_strings(vec![2], vec![b"x".to_vec(), b"yz".to_vec()]).unwrap();
        let t = Tensor::from_strings(vec![1], vec![b"w".to_vec()]).unwrap();
        let st = Tensor::concat_batch(&[&s, &t]).unwrap();
        assert_eq!(st.split_batch(&[2, 1]).unwrap(), vec![s, t]);
        let c = Tensor::from_vec(vec![1, 3], vec![0.0f32; 3]).unwrap();
        assert!(Tensor::concat_batch(&[&a, &c]).is_err());
    }
}
