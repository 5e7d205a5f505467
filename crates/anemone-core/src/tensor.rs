//! Dense host tensors: an element type, a shape and C-order data.

use crate::dtype::DataType;
use bytes::Bytes;
use half::f16;

mod batch;

/// A dense, C-order (row-major) tensor in host memory.
///
/// Numeric data is kept as little-endian bytes, which is the layout every
/// wire format and engine anemone talks to uses; [`DataType::Bytes`] tensors
/// keep one byte string per element. A tensor of rank 0 is a scalar with one
/// element.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    dtype: DataType,
    shape: Vec<usize>,
    data: TensorData,
}

/// The storage behind a [`Tensor`].
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// Little-endian element bytes, `element_count * dtype.size()` long.
    ///
    /// Shared and cheap to clone: a request's bytes can stay in the buffer
    /// the transport decoded them into, and the pieces of a split batch
    /// are views of the one output. No alignment is promised: read the
    /// elements with [`Tensor::to_vec`] or copy them.
    Numeric(Bytes),
    /// One byte string per element, for [`DataType::Bytes`].
    Strings(Vec<Vec<u8>>),
}

/// Why a tensor could not be built from its parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    /// The data length disagrees with shape × element size.
    #[error("{dtype} tensor of shape {shape:?} needs {expected} bytes of data, got {got}")]
    ByteLength {
        /// Element type.
        dtype: DataType,
        /// Shape given.
        shape: Vec<usize>,
        /// Bytes the shape needs.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// The number of strings disagrees with the shape.
    #[error("bytes tensor of shape {shape:?} needs {expected} elements, got {got}")]
    ElementCount {
        /// Shape given.
        shape: Vec<usize>,
        /// Elements the shape needs.
        expected: usize,
        /// Elements given.
        got: usize,
    },
    /// The product of the dimensions does not fit in memory addresses.
    #[error("shape {shape:?} has more elements than can be addressed")]
    Overflow {
        /// Shape given.
        shape: Vec<usize>,
    },
    /// The storage kind disagrees with the data type.
    #[error("data type {dtype} does not match the storage given")]
    Storage {
        /// Element type.
        dtype: DataType,
    },
    /// [`Tensor::concat_batch`] was given no tensors.
    #[error("a batch needs at least one tensor to concatenate")]
    EmptyBatch,
    /// A scalar has no batch dimension to join or split along.
    #[error("tensor {index} of the batch is a scalar: it has no batch dimension (dimension 0)")]
    NoBatchDim {
        /// Position of the scalar among the parts (0 for a split).
        index: usize,
    },
    /// A part of a batch has another element type than the first.
    #[error("tensor {index} of the batch holds {got}, the first holds {expected}")]
    BatchDtype {
        /// Position of the part.
        index: usize,
        /// The first part's type.
        expected: DataType,
        /// This part's type.
        got: DataType,
    },
    /// A part of a batch has other dimensions after the first than the first part.
    #[error(
        "tensor {index} of the batch has dimensions {got:?} after the batch dimension, \
         the first has {expected:?}: only tensors that differ in dimension 0 can be batched"
    )]
    BatchShape {
        /// Position of the part.
        index: usize,
        /// The first part's dimensions after dimension 0.
        expected: Vec<usize>,
        /// This part's.
        got: Vec<usize>,
    },
    /// Split sizes that do not add up to the rows.
    #[error("split sizes {sizes:?} do not add up to the tensor's {rows} rows")]
    BatchSizes {
        /// Sizes given.
        sizes: Vec<usize>,
        /// The tensor's dimension 0.
        rows: usize,
    },
    /// A typed view was asked with the wrong element type.
    #[error("tensor holds {actual} elements, not {requested}")]
    WrongType {
        /// The tensor's type.
        actual: DataType,
        /// The type asked for.
        requested: DataType,
    },
}

/// Number of elements for a shape, or `None` on overflow.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

impl Tensor {
    /// Builds a numeric tensor from little-endian bytes, checking the length
    /// against the shape. Boolean bytes are normalised to 0 or 1 (any
    /// non-zero byte is true), so engines can rely on that.
    ///
    /// `bytes` may be a `Vec<u8>` (taken without a copy) or a shared
    /// [`Bytes`], for example a view into a decoded request.
    pub fn from_bytes(
        dtype: DataType,
        shape: Vec<usize>,
        bytes: impl Into<Bytes>,
    ) -> Result<Tensor, TensorError> {
        let mut bytes = bytes.into();
        let Some(size) = dtype.size() else {
            return Err(TensorError::Storage { dtype });
        };
        let count = element_count(&shape).ok_or_else(|| TensorError::Overflow {
            shape: shape.clone(),
        })?;
        let expected = count
            .checked_mul(size)
            .ok_or_else(|| TensorError::Overflow {
                shape: shape.clone(),
            })?;
        if bytes.len() != expected {
            return Err(TensorError::ByteLength {
                dtype,
                shape,
                expected,
                got: bytes.len(),
            });
        }
        if dtype == DataType::Bool && bytes.iter().any(|&b| b > 1) {
            bytes = bytes.iter().map(|&b| (b != 0) as u8).collect();
        }
        Ok(Tensor {
            dtype,
            shape,
            data: TensorData::Numeric(bytes),
        })
    }

    /// Builds a [`DataType::Bytes`] tensor from one byte string per element.
    pub fn from_strings(shape: Vec<usize>, strings: Vec<Vec<u8>>) -> Result<Tensor, TensorError> {
        let expected = element_count(&shape).ok_or_else(|| TensorError::Overflow {
            shape: shape.clone(),
        })?;
        if strings.len() != expected {
            return Err(TensorError::ElementCount {
                shape,
                expected,
                got: strings.len(),
            });
        }
        Ok(Tensor {
            dtype: DataType::Bytes,
            shape,
            data: TensorData::Strings(strings),
        })
    }

    /// Builds a tensor from typed values, checking the count against the shape.
    pub fn from_vec<T: Element>(shape: Vec<usize>, values: Vec<T>) -> Result<Tensor, TensorError> {
        if plain::<T>() {
            // SAFETY: `T` is a sealed numeric element type without padding
            // on a little-endian target (`plain`): its memory is its wire
            // bytes, `size_of_val(values)` of them.
            let raw = unsafe {
                std::slice::from_raw_parts(
                    values.as_ptr().cast::<u8>(),
                    std::mem::size_of_val(values.as_slice()),
                )
            };
            return Tensor::from_bytes(T::DTYPE, shape, Bytes::copy_from_slice(raw));
        }
        let mut bytes = Vec::with_capacity(values.len() * std::mem::size_of::<T>());
        for v in &values {
            v.write_le(&mut bytes);
        }
        Tensor::from_bytes(T::DTYPE, shape, bytes)
    }

    /// A 0-d tensor holding one value.
    pub fn scalar<T: Element>(value: T) -> Tensor {
        Tensor::from_vec(vec![], vec![value])
            .expect("a scalar always has one element; this is a bug")
    }

    /// The stand-in for an output an engine left out of its answer (a
    /// Python model may leave any out, as Triton's may): a 0-d tensor with
    /// no element, which no real tensor is. The runtime drops it from the
    /// response; never read its elements.
    pub fn absent(dtype: DataType) -> Tensor {
        let data = match dtype {
            DataType::Bytes => TensorData::Strings(Vec::new()),
            _ => TensorData::Numeric(Bytes::new()),
        };
        Tensor {
            dtype,
            shape: Vec::new(),
            data,
        }
    }

    /// Whether this is [`Tensor::absent`]'s stand-in.
    pub fn is_absent(&self) -> bool {
        self.shape.is_empty()
            && match &self.data {
                TensorData::Numeric(b) => b.is_empty(),
                TensorData::Strings(s) => s.is_empty(),
            }
    }

    /// The element type.
    pub fn dtype(&self) -> DataType {
        self.dtype
    }

    /// The shape; empty for a scalar.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of elements (1 for a scalar).
    pub fn len(&self) -> usize {
        element_count(&self.shape).expect("shape was checked at construction; this is a bug")
    }

    /// Whether the tensor has no elements (some dimension is 0).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The storage.
    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// Takes the storage.
    pub fn into_data(self) -> TensorData {
        self.data
    }

    /// The same elements under another shape with as many elements (no
    /// copy: the storage moves over). A shape with a different element count
    /// gives [`TensorError::ElementCount`] and the tensor is dropped.
    pub fn reshaped(self, shape: Vec<usize>) -> Result<Tensor, TensorError> {
        let expected = element_count(&shape).ok_or_else(|| TensorError::Overflow {
            shape: shape.clone(),
        })?;
        let got = self.len();
        if expected != got {
            return Err(TensorError::ElementCount {
                shape,
                expected,
                got,
            });
        }
        Ok(Tensor { shape, ..self })
    }

    /// A copy that owns exactly its own bytes. A tensor's numeric bytes may
    /// be a view of a larger buffer (a request's decoded message, a whole
    /// batch's output) that the view keeps alive; something that keeps a
    /// tensor long, like the response cache, stores this copy instead.
    pub fn compact(&self) -> Tensor {
        let data = match &self.data {
            TensorData::Numeric(b) => TensorData::Numeric(Bytes::copy_from_slice(b)),
            TensorData::Strings(s) => TensorData::Strings(s.clone()),
        };
        Tensor {
            dtype: self.dtype,
            shape: self.shape.clone(),
            data,
        }
    }

    /// The little-endian bytes of a numeric tensor, `None` for strings.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.data {
            TensorData::Numeric(b) => Some(b),
            TensorData::Strings(_) => None,
        }
    }

    /// Size of the data in bytes (for strings, the sum of their lengths).
    pub fn byte_len(&self) -> usize {
        match &self.data {
            TensorData::Numeric(b) => b.len(),
            TensorData::Strings(s) => s.iter().map(Vec::len).sum(),
        }
    }

    /// The elements as a typed vector (a copy).
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>, TensorError> {
        if self.dtype != T::DTYPE {
            return Err(TensorError::WrongType {
                actual: self.dtype,
                requested: T::DTYPE,
            });
        }
        let bytes = self
            .as_bytes()
            .ok_or(TensorError::Storage { dtype: self.dtype })?;
        let size = std::mem::size_of::<T>();
        let count = bytes.len() / size;
        if plain::<T>() {
            let mut values = Vec::<T>::with_capacity(count);
            // SAFETY: as in `from_vec`, and every bit pattern is a valid value
            // of a numeric element type (bool, the one that is not, never
            // takes this path), and `values` has room for `count` elements.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    values.as_mut_ptr().cast::<u8>(),
                    count * size,
                );
                values.set_len(count);
            }
            return Ok(values);
        }
        Ok(bytes.chunks_exact(size).map(T::read_le).collect())
    }

    /// The byte strings of a [`DataType::Bytes`] tensor.
    pub fn as_strings(&self) -> Option<&[Vec<u8>]> {
        match &self.data {
            TensorData::Strings(s) => Some(s),
            TensorData::Numeric(_) => None,
        }
    }

    /// Converts every element to `f64`, for comparisons and summaries. `None` for strings.
    pub fn to_f64_lossy(&self) -> Option<Vec<f64>> {
        let b = self.as_bytes()?;
        Some(match self.dtype {
            DataType::Bool => b.iter().map(|&x| (x != 0) as u8 as f64).collect(),
            DataType::U8 => b.iter().map(|&x| x as f64).collect(),
            DataType::I8 => b.iter().map(|&x| x as i8 as f64).collect(),
            DataType::U16 => b.chunks_exact(2).map(|c| u16::read_le(c) as f64).collect(),
            DataType::I16 => b.chunks_exact(2).map(|c| i16::read_le(c) as f64).collect(),
            DataType::U32 => b.chunks_exact(4).map(|c| u32::read_le(c) as f64).collect(),
            DataType::I32 => b.chunks_exact(4).map(|c| i32::read_le(c) as f64).collect(),
            DataType::U64 => b.chunks_exact(8).map(|c| u64::read_le(c) as f64).collect(),
            DataType::I64 => b.chunks_exact(8).map(|c| i64::read_le(c) as f64).collect(),
            DataType::F16 => b
                .chunks_exact(2)
                .map(|c| f16::read_le(c).to_f64())
                .collect(),
            DataType::F32 => b.chunks_exact(4).map(|c| f32::read_le(c) as f64).collect(),
            DataType::F64 => b.chunks_exact(8).map(f64::read_le).collect(),
            DataType::Bytes => return None,
        })
    }
}

/// A Rust type that can be a tensor element.
///
/// Implemented for `bool`, the integer types of 8 to 64 bits, [`half::f16`],
/// `f32` and `f64`.
pub trait Element: Copy + 'static + sealed::Sealed {
    /// The matching [`DataType`].
    const DTYPE: DataType;
    /// Reads one element from exactly `size_of::<Self>()` little-endian bytes.
    fn read_le(bytes: &[u8]) -> Self;
    /// Appends the little-endian bytes of one element.
    fn write_le(&self, out: &mut Vec<u8>);
}

mod sealed {
    pub trait Sealed {}
}

/// Whether `T`'s in-memory bytes are its little-endian wire bytes and every
/// byte pattern is a value: the numeric types on a little-endian target, so
/// a whole slice converts with one `memcpy`. Not `bool` (only 0 and 1 are
/// values).
fn plain<T: Element>() -> bool {
    cfg!(target_endian = "little") && T::DTYPE != DataType::Bool
}

macro_rules! element {
    ($t:ty, $dt:expr) => {
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const DTYPE: DataType = $dt;
            fn read_le(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(
                    bytes
                        .try_into()
                        .expect("chunk has the element size; this is a bug"),
                )
            }
            fn write_le(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    };
}

element!(u8, DataType::U8);
element!(u16, DataType::U16);
element!(u32, DataType::U32);
element!(u64, DataType::U64);
element!(i8, DataType::I8);
element!(i16, DataType::I16);
element!(i32, DataType::I32);
element!(i64, DataType::I64);
element!(f16, DataType::F16);
element!(f32, DataType::F32);
element!(f64, DataType::F64);

impl sealed::Sealed for bool {}
impl Element for bool {
    const DTYPE: DataType = DataType::Bool;
    fn read_le(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
    fn write_le(&self, out: &mut Vec<u8>) {
        out.push(*self as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_stand_in_for_a_left_out_output_is_absent() {
        assert!(Tensor::absent(DataType::F32).is_absent());
        assert!(Tensor::absent(DataType::Bytes).is_absent());
        let real = [
            Tensor::scalar(0u8),
            Tensor::from_bytes(DataType::F32, vec![0], Bytes::new()).unwrap(),
            Tensor::from_strings(vec![0], Vec::new()).unwrap(),
            Tensor::from_strings(vec![], vec![Vec::new()]).unwrap(),
        ];
        assert!(real.iter().all(|t| !t.is_absent()));
    }

    #[test]
    fn reshaped_keeps_the_elements_and_checks_their_count() {
        let t = Tensor::from_vec(vec![2, 3], (0..6).map(|i| i as f32).collect()).unwrap();
        let r = t.clone().reshaped(vec![3, 1, 2]).unwrap();
        assert_eq!(r.shape(), [3, 1, 2]);
        assert_eq!(r.data(), t.data());
        let e = t.clone().reshaped(vec![4]).unwrap_err();
        assert!(
            matches!(
                e,
                TensorError::ElementCount {
                    expected: 4,
                    got: 6,
                    ..
                }
            ),
            "{e}"
        );
        let s = Tensor::from_strings(vec![2], vec![b"a".to_vec(), b"b".to_vec()]).unwrap();
        assert_eq!(s.reshaped(vec![1, 2]).unwrap().shape(), [1, 2]);
    }

    #[test]
    fn typed_round_trip() {
        let t = Tensor::from_vec(vec![2, 2], vec![1.5f32, -2.0, 0.0, 3.25]).unwrap();
        assert_eq!(t.dtype(), DataType::F32);
        assert_eq!(t.byte_len(), 16);
        assert_eq!(t.to_vec::<f32>().unwrap(), vec![1.5, -2.0, 0.0, 3.25]);
        assert!(matches!(
            t.to_vec::<i32>(),
            Err(TensorError::WrongType { .. })
        ));
    }

    #[test]
    fn byte_length_is_checked() {
        let err = Tensor::from_bytes(DataType::I64, vec![3], vec![0; 16]).unwrap_err();
        assert_eq!(
            err,
            TensorError::ByteLength {
                dtype: DataType::I64,
                shape: vec![3],
                expected: 24,
                got: 16
            }
        );
        assert!(Tensor::from_bytes(DataType::Bytes, vec![1], vec![]).is_err());
    }

    #[test]
    fn overflowing_shape_is_refused() {
        let err = Tensor::from_bytes(DataType::F32, vec![usize::MAX, 2], vec![]).unwrap_err();
        assert!(matches!(err, TensorError::Overflow { .. }));
    }

    #[test]
    fn scalars_have_one_element() {
        let s = Tensor::scalar(16000i64);
        assert!(s.shape().is_empty());
        assert_eq!(s.len(), 1);
        assert_eq!(s.to_vec::<i64>().unwrap(), vec![16000]);
    }

    #[test]
    fn bools_read_any_nonzero_as_true() {
        let t = Tensor::from_bytes(DataType::Bool, vec![3], vec![0, 1, 7]).unwrap();
        assert_eq!(t.to_vec::<bool>().unwrap(), vec![false, true, true]);
        assert_eq!(
            t.as_bytes().unwrap(),
            &[0, 1, 1],
            "stored normalised for the engines"
        );
        // Also when the bytes are a shared view, which is left untouched.
        let shared = Bytes::from(vec![9u8, 0, 2, 1]);
        let t = Tensor::from_bytes(DataType::Bool, vec![3], shared.slice(1..)).unwrap();
        assert_eq!(t.as_bytes().unwrap(), &[0, 1, 1]);
        assert_eq!(&shared[..], &[9, 0, 2, 1]);
    }

    /// Every element type converts both ways: the bulk copy on this
    /// (little-endian) target agrees with reading each element on its own,
    /// from any byte offset.
    #[test]
    fn typed_conversions_agree_with_elementwise_reads() {
        fn check<T: Element + PartialEq + std::fmt::Debug>(values: Vec<T>) {
            let t = Tensor::from_vec(vec![values.len()], values.clone()).unwrap();
            let mut expected = Vec::new();
            values.iter().for_each(|v| v.write_le(&mut expected));
            assert_eq!(t.as_bytes().unwrap(), &expected[..], "{:?}", T::DTYPE);
            assert_eq!(t.to_vec::<T>().unwrap(), values, "{:?}", T::DTYPE);
            // The same bytes one byte into a buffer (misaligned for T).
            let mut shifted = vec![0u8];
            shifted.extend_from_slice(&expected);
            let view = Tensor::from_bytes(
                T::DTYPE,
                vec![values.len()],
                Bytes::from(shifted).slice(1..),
            )
            .unwrap();
            assert_eq!(
                view.to_vec::<T>().unwrap(),
                values,
                "{:?} shifted",
                T::DTYPE
            );
        }
        check(vec![0u8, 1, 255]);
        check(vec![0u16, 1, 0xabcd]);
        check(vec![0u32, 1, 0xdead_beef]);
        check(vec![0u64, 1, u64::MAX - 5]);
        check(vec![0i8, -1, 127]);
        check(vec![0i16, -2, 300]);
        check(vec![0i32, -3, i32::MIN]);
        check(vec![0i64, -4, i64::MAX]);
        check(vec![f16::from_f32(0.5), f16::from_f32(-2.0), f16::INFINITY]);
        check(vec![1.5f32, -0.0, f32::MIN_POSITIVE]);
        check(vec![2.5f64, -1e300, f64::EPSILON]);
        check(vec![true, false, true]);
    }

    #[test]
    fn a_compact_copy_owns_its_bytes() {
        let whole = Bytes::from((0u8..64).collect::<Vec<_>>());
        let view = Tensor::from_bytes(DataType::F32, vec![2], whole.slice(8..16)).unwrap();
        let compact = view.compact();
        assert_eq!(compact, view);
        let (v, c) = (view.as_bytes().unwrap(), compact.as_bytes().unwrap());
        assert_eq!(
            v.as_ptr(),
            whole[8..].as_ptr(),
            "the view shares the buffer"
        );
        assert_ne!(c.as_ptr(), v.as_ptr(), "the compact copy has its own");
    }
}
