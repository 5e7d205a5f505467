//! Moving tensors in and out of `MLMultiArray`s: Core ML's array data types
//! (Apple's `MLMultiArrayDataType` values), and copies that honour an
//! array's strides, which Core ML may pad (e.g. the last axis of an output
//! rounded up to 16 or 64 bytes for the Neural Engine).

use anemone_core::DataType;

/// Apple's `MLMultiArrayDataType` value for an element type, when Core ML
/// arrays can hold it: Float16 = 0x10010, Float32 = 0x10020, Float64
/// (Double) = 0x10040, Int32 = 0x20020, Int8 = 0x20008 (macOS 15+).
pub fn multi_array_type(dtype: DataType) -> Option<isize> {
    Some(match dtype {
        DataType::F16 => 0x10000 | 16,
        DataType::F32 => 0x10000 | 32,
        DataType::F64 => 0x10000 | 64,
        DataType::I32 => 0x20000 | 32,
        DataType::I8 => 0x20000 | 8,
        _ => return None,
    })
}

/// The element type of an `MLMultiArrayDataType` value.
pub fn dtype_of_multi_array(value: isize) -> Option<DataType> {
    [
        DataType::F16,
        DataType::F32,
        DataType::F64,
        DataType::I32,
        DataType::I8,
    ]
    .into_iter()
    .find(|&d| multi_array_type(d) == Some(value))
}

/// C-order strides, in elements, of a shape.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for axis in (0..shape.len().saturating_sub(1)).rev() {
        strides[axis] = strides[axis + 1] * shape[axis + 1];
    }
    strides
}

/// Whether `strides` (in elements) are the C-order strides of `shape`
/// (axes of size 1 may have any stride).
pub fn is_contiguous(shape: &[usize], strides: &[usize]) -> bool {
    let want = contiguous_strides(shape);
    shape.len() == strides.len()
        && shape
            .iter()
            .zip(strides.iter().zip(&want))
            .all(|(&n, (&s, &w))| n <= 1 || s == w)
}

/// The number of elements a strided buffer must span.
pub fn span(shape: &[usize], strides: &[usize]) -> usize {
    if shape.contains(&0) {
        return 0;
    }
    1 + shape
        .iter()
        .zip(strides)
        .map(|(&n, &s)| (n - 1) * s)
        .sum::<usize>()
}

/// Copies a strided buffer of `elem` bytes per element into C order.
///
/// Panics if `src` is shorter than [`span`] (a bug in the caller).
pub fn gather(src: &[u8], elem: usize, shape: &[usize], strides: &[usize]) -> Vec<u8> {
    assert!(
        src.len() >= span(shape, strides) * elem,
        "strided buffer shorter than its shape needs; this is a bug"
    );
    let count: usize = shape.iter().product();
    let mut out = Vec::with_capacity(count * elem);
    let mut index = vec![0usize; shape.len()];
    for _ in 0..count {
        let offset: usize = index.iter().zip(strides).map(|(i, s)| i * s).sum();
        out.extend_from_slice(&src[offset * elem..(offset + 1) * elem]);
        for axis in (0..shape.len()).rev() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

/// Copies C-order data into a strided buffer (the inverse of [`gather`]).
///
/// Panics if a buffer is too short (a bug in the caller).
pub fn scatter(src: &[u8], elem: usize, shape: &[usize], strides: &[usize], dst: &mut [u8]) {
    let count: usize = shape.iter().product();
    assert!(
        src.len() >= count * elem && dst.len() >= span(shape, strides) * elem,
        "buffer shorter than its shape needs; this is a bug"
    );
    let mut index = vec![0usize; shape.len()];
    for i in 0..count {
        let offset: usize = index.iter().zip(strides).map(|(i, s)| i * s).sum();
        dst[offset * elem..(offset + 1) * elem].copy_from_slice(&src[i * elem..(i + 1) * elem]);
        for axis in (0..shape.len()).rev() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apples_multi_array_values() {
        // MLMultiArray.h: Double = 0x10000 | 64, Float32 = 0x10000 | 32,
        // Float16 = 0x10000 | 16, Int32 = 0x20000 | 32, Int8 = 0x20000 | 8.
        assert_eq!(multi_array_type(DataType::F64), Some(65600));
        assert_eq!(multi_array_type(DataType::F32), Some(65568));
        assert_eq!(multi_array_type(DataType::F16), Some(65552));
        assert_eq!(multi_array_type(DataType::I32), Some(131104));
        assert_eq!(multi_array_type(DataType::I8), Some(131080));
        assert_eq!(multi_array_type(DataType::I64), None);
        assert_eq!(dtype_of_multi_array(65552), Some(DataType::F16));
        assert_eq!(dtype_of_multi_array(7), None);
    }

    #[test]
    fn padded_rows_round_trip() {
        // A 2x3 array of 2-byte elements whose rows are padded to 4 elements.
        let shape = [2, 3];
        let strides = [4, 1];
        assert!(!is_contiguous(&shape, &strides));
        assert!(is_contiguous(&shape, &contiguous_strides(&shape)));
        assert!(is_contiguous(&[1, 3], &[99, 1]));
        assert_eq!(span(&shape, &strides), 7);
        let padded: Vec<u8> = [0u16, 1, 2, 900, 10, 11, 12]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let dense = gather(&padded, 2, &shape, &strides);
        let values: Vec<u16> = dense
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(values, [0, 1, 2, 10, 11, 12]);
        let mut back = vec![0u8; 7 * 2];
        scatter(&dense, 2, &shape, &strides, &mut back);
        let values: Vec<u16> = back
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(values, [0, 1, 2, 0, 10, 11, 12]);
    }
}
