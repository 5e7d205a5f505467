//! Joining tensors along the batch dimension and splitting them back, for
//! a scheduler that runs several requests as one engine call.

use super::{element_count, Tensor, TensorData, TensorError};

impl Tensor {
    /// Concatenates tensors along dimension 0. All must share dtype and the
    /// dimensions after the first. BYTES tensors included.
    ///
    /// The result has `sum(parts[i].shape()[0])` rows; pieces with 0 rows
    /// are allowed and add nothing. Numeric data is copied once, into one
    /// allocation of the final size (on a few threads when it is large:
    /// [`crate::gather`]).
    ///
    /// # Errors
    ///
    /// [`TensorError::EmptyBatch`] for no parts, [`TensorError::NoBatchDim`]
    /// for a scalar, [`TensorError::BatchDtype`] or
    /// [`TensorError::BatchShape`] when a part differs from the first,
    /// [`TensorError::Overflow`] when the rows do not fit in `usize`.
    pub fn concat_batch(parts: &[&Tensor]) -> Result<Tensor, TensorError> {
        let Some(first) = parts.first() else {
            return Err(TensorError::EmptyBatch);
        };
        let mut rows = 0usize;
        for (index, part) in parts.iter().enumerate() {
            let Some((&n, tail)) = part.shape.split_first() else {
                return Err(TensorError::NoBatchDim { index });
            };
            if part.dtype != first.dtype {
                return Err(TensorError::BatchDtype {
                    index,
                    expected: first.dtype,
                    got: part.dtype,
                });
            }
            if tail != &first.shape[1..] {
                return Err(TensorError::BatchShape {
                    index,
                    expected: first.shape[1..].to_vec(),
                    got: tail.to_vec(),
                });
            }
            rows = rows.checked_add(n).ok_or_else(|| {
                let mut shape = first.shape.clone();
                shape[0] = usize::MAX;
                TensorError::Overflow { shape }
            })?;
        }
        let mut shape = first.shape.clone();
        shape[0] = rows;
        element_count(&shape).ok_or_else(|| TensorError::Overflow {
            shape: shape.clone(),
        })?;
        let data = match &first.data {
            TensorData::Numeric(_) => {
                // A batch of images is megabytes: copied on a few threads.
                let bytes: Vec<&[u8]> = parts.iter().map(|p| p.numeric()).collect();
                TensorData::Numeric(crate::gather::gather_to_vec(&bytes).into())
            }
            TensorData::Strings(_) => {
                let total = parts.iter().map(|p| p.len()).sum();
                let mut strings = Vec::with_capacity(total);
                for part in parts {
                    strings.extend_from_slice(part.strings());
                }
                TensorData::Strings(strings)
            }
        };
        Ok(Tensor {
            dtype: first.dtype,
            shape,
            data,
        })
    }

    /// Splits along dimension 0 into consecutive pieces of `sizes` rows
    /// (sizes must sum to `shape[0]`).
    ///
    /// Piece `i` has shape `[sizes[i], shape[1..]...]`; a size of 0 gives an
    /// empty piece. Numeric pieces are views of this tensor's bytes (no
    /// copy; they keep the whole buffer alive); string pieces are copies.
    ///
    /// # Errors
    ///
    /// [`TensorError::NoBatchDim`] (with index 0) for a scalar and
    /// [`TensorError::BatchSizes`] when the sizes do not add up to the rows.
    pub fn split_batch(&self, sizes: &[usize]) -> Result<Vec<Tensor>, TensorError> {
        let Some((&rows, tail)) = self.shape.split_first() else {
            return Err(TensorError::NoBatchDim { index: 0 });
        };
        let sum = sizes.iter().try_fold(0usize, |acc, &n| acc.checked_add(n));
        if sum != Some(rows) {
            return Err(TensorError::BatchSizes {
                sizes: sizes.to_vec(),
                rows,
            });
        }
        // A row's element count: the whole tensor fits, so a row does too.
        let row = element_count(tail).expect("shape was checked at construction; this is a bug");
        let piece_shape = |n: usize| {
            let mut shape = Vec::with_capacity(self.shape.len());
            shape.push(n);
            shape.extend_from_slice(tail);
            shape
        };
        let mut start = 0;
        let pieces = sizes
            .iter()
            .map(|&n| {
                let (from, to) = (start * row, (start + n) * row);
                start += n;
                let data = match &self.data {
                    TensorData::Numeric(bytes) => {
                        let size = self.dtype.size().unwrap_or(1);
                        TensorData::Numeric(bytes.slice(from * size..to * size))
                    }
                    TensorData::Strings(strings) => TensorData::Strings(strings[from..to].to_vec()),
                };
                Tensor {
                    dtype: self.dtype,
                    shape: piece_shape(n),
                    data,
                }
            })
            .collect();
        Ok(pieces)
    }

    fn numeric(&self) -> &[u8] {
        match &self.data {
            TensorData::Numeric(b) => b,
            TensorData::Strings(_) => unreachable!("dtype matched a numeric tensor; this is a bug"),
        }
    }

    fn strings(&self) -> &[Vec<u8>] {
        match &self.data {
            TensorData::Strings(s) => s,
            TensorData::Numeric(_) => unreachable!("dtype matched a bytes tensor; this is a bug"),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{DataType, Tensor, TensorError};

    /// A small deterministic generator (xorshift64*), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// A tensor of `dtype` with `rows` rows and trailing dims `tail`, filled
    /// with values that differ per element (and per call, through `rng`).
    fn random(rng: &mut Rng, dtype: DataType, rows: usize, tail: &[usize]) -> Tensor {
        let mut shape = vec![rows];
        shape.extend_from_slice(tail);
        let count: usize = shape.iter().product();
        match dtype.size() {
            None => {
                let strings = (0..count)
                    .map(|_| {
                        let len = rng.below(5);
                        (0..len).map(|_| rng.next() as u8).collect()
                    })
                    .collect();
                Tensor::from_strings(shape, strings).unwrap()
            }
            Some(size) => {
                let bytes: Vec<u8> = (0..count * size).map(|_| rng.next() as u8).collect();
                Tensor::from_bytes(dtype, shape, bytes).unwrap()
            }
        }
    }

    #[test]
    fn concat_then_split_gives_the_parts_back_for_every_dtype() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for dtype in DataType::ALL {
            for _case in 0..50 {
                let rank_tail = rng.below(3);
                let tail: Vec<usize> = (0..rank_tail).map(|_| rng.below(4)).collect();
                let parts: Vec<Tensor> = (0..1 + rng.below(6))
                    .map(|_| {
                        let rows = rng_rows(&mut rng);
                        random(&mut rng, dtype, rows, &tail)
                    })
                    .collect();
                let refs: Vec<&Tensor> = parts.iter().collect();
                let joined = Tensor::concat_batch(&refs).unwrap();
                let sizes: Vec<usize> = parts.iter().map(|p| p.shape()[0]).collect();
                assert_eq!(joined.shape()[0], sizes.iter().sum::<usize>());
                assert_eq!(&joined.shape()[1..], &tail[..]);
                assert_eq!(joined.dtype(), dtype);
                let back = joined.split_batch(&sizes).unwrap();
                assert_eq!(back, parts, "{dtype} tail {tail:?} sizes {sizes:?}");
            }
        }
    }

    fn rng_rows(rng: &mut Rng) -> usize {
        // Zero-row pieces are common enough to be exercised in every run.
        [0, 1, 1, 2, 3, 5][rng.below(6)]
    }

    /// A numeric batch's pieces are views of its bytes, each at its rows.
    #[test]
    fn split_pieces_share_the_batch_bytes() {
        let t = Tensor::from_vec(vec![3, 2], (0..6).map(|i| i as f32).collect()).unwrap();
        let pieces = t.split_batch(&[1, 2]).unwrap();
        let base = t.as_bytes().unwrap().as_ptr();
        assert_eq!(pieces[0].as_bytes().unwrap().as_ptr(), base);
        assert_eq!(pieces[1].as_bytes().unwrap().as_ptr(), base.wrapping_add(8));
        assert_eq!(pieces[1].to_vec::<f32>().unwrap(), [2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn split_then_concat_gives_the_tensor_back() {
        let mut rng = Rng(42);
        for dtype in DataType::ALL {
            for _case in 0..30 {
                let rows = rng.below(9);
                let t = random(&mut rng, dtype, rows, &[2, 3]);
                let mut sizes = Vec::new();
                let mut left = rows;
                while left > 0 || rng.below(3) == 0 {
                    let n = rng.below(left + 1);
                    sizes.push(n);
                    left -= n;
                }
                let pieces = t.split_batch(&sizes).unwrap();
                assert_eq!(pieces.len(), sizes.len());
                for (p, n) in pieces.iter().zip(&sizes) {
                    assert_eq!(p.shape(), &[*n, 2, 3]);
                }
                if sizes.is_empty() {
                    continue; // zero rows split into no pieces: nothing to join
                }
                let refs: Vec<&Tensor> = pieces.iter().collect();
                assert_eq!(Tensor::concat_batch(&refs).unwrap(), t);
            }
        }
    }

    #[test]
    fn rows_land_in_order() {
        let a = Tensor::from_vec(vec![1, 2], vec![1.0f32, 2.0]).unwrap();
        let b = Tensor::from_vec(vec![2, 2], vec![3.0f32, 4.0, 5.0, 6.0]).unwrap();
        let empty = Tensor::from_vec(vec![0, 2], Vec::<f32>::new()).unwrap();
        let joined = Tensor::concat_batch(&[&a, &empty, &b]).unwrap();
        assert_eq!(joined.shape(), &[3, 2]);
        assert_eq!(
            joined.to_vec::<f32>().unwrap(),
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
        let pieces = joined.split_batch(&[2, 0, 1]).unwrap();
        assert_eq!(pieces[0].to_vec::<f32>().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(pieces[1].shape(), &[0, 2]);
        assert_eq!(pieces[2].to_vec::<f32>().unwrap(), vec![5.0, 6.0]);
    }

    #[test]
    fn bytes_rows_land_in_order() {
        let s = |v: &[&str]| v.iter().map(|x| x.as_bytes().to_vec()).collect();
        let a = Tensor::from_strings(vec![1], s(&["a"])).unwrap();
        let b = Tensor::from_strings(vec![2], s(&["", "ccc"])).unwrap();
        let joined = Tensor::concat_batch(&[&b, &a]).unwrap();
        assert_eq!(joined.as_strings().unwrap(), &s(&["", "ccc", "a"])[..]);
        let pieces = joined.split_batch(&[1, 2]).unwrap();
        assert_eq!(pieces[0].as_strings().unwrap(), &s(&[""])[..]);
        assert_eq!(pieces[1].as_strings().unwrap(), &s(&["ccc", "a"])[..]);
    }

    #[test]
    fn mismatches_are_refused_with_the_offending_part() {
        let f = Tensor::from_vec(vec![1, 2], vec![1.0f32, 2.0]).unwrap();
        let i = Tensor::from_vec(vec![1, 2], vec![1i32, 2]).unwrap();
        let wide = Tensor::from_vec(vec![1, 3], vec![1.0f32, 2.0, 3.0]).unwrap();
        let deep = Tensor::from_vec(vec![1, 2, 1], vec![1.0f32, 2.0]).unwrap();
        let scalar = Tensor::scalar(1.0f32);
        assert_eq!(
            Tensor::concat_batch(&[&f, &f, &i]).unwrap_err(),
            TensorError::BatchDtype {
                index: 2,
                expected: DataType::F32,
                got: DataType::I32
            }
        );
        assert_eq!(
            Tensor::concat_batch(&[&f, &wide]).unwrap_err(),
            TensorError::BatchShape {
                index: 1,
                expected: vec![2],
                got: vec![3]
            }
        );
        assert!(matches!(
            Tensor::concat_batch(&[&f, &deep]).unwrap_err(),
            TensorError::BatchShape { index: 1, .. }
        ));
        assert_eq!(
            Tensor::concat_batch(&[&f, &scalar]).unwrap_err(),
            TensorError::NoBatchDim { index: 1 }
        );
        assert_eq!(
            Tensor::concat_batch(&[]).unwrap_err(),
            TensorError::EmptyBatch
        );
        let msg = Tensor::concat_batch(&[&f, &wide]).unwrap_err().to_string();
        assert!(msg.contains("[2]") && msg.contains("[3]"), "{msg}");
    }

    #[test]
    fn split_sizes_must_cover_the_rows() {
        let t = Tensor::from_vec(vec![3, 1], vec![1u8, 2, 3]).unwrap();
        for sizes in [&[1, 1][..], &[2, 2], &[], &[usize::MAX, 4]] {
            assert_eq!(
                t.split_batch(sizes).unwrap_err(),
                TensorError::BatchSizes {
                    sizes: sizes.to_vec(),
                    rows: 3
                },
                "{sizes:?}"
            );
        }
        assert_eq!(
            Tensor::scalar(1u8).split_batch(&[1]).unwrap_err(),
            TensorError::NoBatchDim { index: 0 }
        );
        let msg = t.split_batch(&[1, 1]).unwrap_err().to_string();
        assert!(msg.contains("3 rows"), "{msg}");
    }

    #[test]
    fn zero_width_rows_split_by_count() {
        // Rows with no elements: every piece is empty but keeps its row count.
        let t = Tensor::from_vec(vec![4, 0], Vec::<f64>::new()).unwrap();
        let pieces = t.split_batch(&[1, 3]).unwrap();
        assert_eq!(pieces[0].shape(), &[1, 0]);
        assert_eq!(pieces[1].shape(), &[3, 0]);
        let refs: Vec<&Tensor> = pieces.iter().collect();
        assert_eq!(Tensor::concat_batch(&refs).unwrap(), t);
    }
}
