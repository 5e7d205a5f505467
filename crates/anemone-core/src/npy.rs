//! Reading and writing NumPy `.npy` files, anemone's interchange format for tensors.
//!
//! Every numeric dtype is supported in both byte orders, in C or Fortran
//! order (Fortran data is reordered to C order on read), at any rank including
//! 0-d scalars. Fixed-width byte strings (`|S<n>`) map to [`DataType::Bytes`].
//! Files are always written little-endian, in C order, as version 1.0 (or 2.0
//! when the header is too long for 1.0).

use crate::dtype::DataType;
use crate::tensor::{element_count, Tensor, TensorData};
use std::io::{Read, Write};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Why a `.npy` file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The file does not start with the `.npy` magic string.
    #[error("not a .npy file (bad magic bytes)")]
    BadMagic,
    /// The file ended early.
    #[error("truncated .npy file: {0}")]
    Truncated(String),
    /// The header could not be parsed.
    #[error("bad .npy header: {0}")]
    Header(String),
    /// A dtype anemone cannot hold.
    #[error("unsupported .npy dtype '{0}' (supported: bool, u1-u8, i1-i8, f2, f4, f8, and |S byte strings)")]
    Dtype(String),
    /// An I/O error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

struct Header {
    descr: String,
    fortran: bool,
    shape: Vec<usize>,
}

/// Reads a tensor from `.npy` bytes: the header, then exactly the data it
/// declares (what follows is not read).
pub fn read(r: impl Read) -> Result<Tensor, NpyError> {
    read_limited(r, u64::MAX)
}

/// The largest `.npy` header read (numpy's are a few hundred bytes).
const MAX_HEADER: usize = 1 << 20;

/// [`read`], refusing a header that declares more than `max_data` bytes of
/// data before reading them: a stream that is not a `.npy` file (a device
/// of zeros) fails at its first bytes, and one that declares more than it
/// may hold fails before anything is allocated for it.
pub fn read_limited(mut r: impl Read, max_data: u64) -> Result<Tensor, NpyError> {
    let mut buf = vec![0u8; 10];
    read_exact(&mut r, &mut buf, "magic and version")?;
    if &buf[..6] != MAGIC {
        return Err(NpyError::BadMagic);
    }
    let header_len = match buf[6] {
        1 => u16::from_le_bytes([buf[8], buf[9]]) as usize,
        2 | 3 => {
            buf.resize(12, 0);
            read_exact(&mut r, &mut buf[10..], "header length")?;
            u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize
        }
        v => return Err(NpyError::Header(format!("unknown format version {v}"))),
    };
    if header_len > MAX_HEADER {
        return Err(NpyError::Header(format!(
            "the header is {header_len} bytes long; numpy's are a few hundred"
        )));
    }
    let start = buf.len();
    buf.resize(start + header_len, 0);
    read_exact(&mut r, &mut buf[start..], "header")?;
    let header = parse_header(
        std::str::from_utf8(&buf[start..]).map_err(|e| NpyError::Header(e.to_string()))?,
    )?;
    let count =
        element_count(&header.shape).ok_or_else(|| NpyError::Header("shape overflows".into()))?;
    let (_, _, size) = parse_descr(&header.descr)?;
    let need = count
        .checked_mul(size)
        .ok_or_else(|| NpyError::Header("shape overflows".into()))? as u64;
    if need > max_data {
        return Err(NpyError::Truncated(format!(
            "the header declares {need} bytes of data; the file holds at most {max_data}"
        )));
    }
    let before = buf.len();
    r.take(need).read_to_end(&mut buf)?;
    let got = (buf.len() - before) as u64;
    if got < need {
        return Err(NpyError::Truncated(format!(
            "data needs {need} bytes, file has {got}"
        )));
    }
    from_bytes(&buf)
}

fn read_exact(r: &mut impl Read, into: &mut [u8], what: &str) -> Result<(), NpyError> {
    r.read_exact(into).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof if what == "magic and version" => NpyError::BadMagic,
        std::io::ErrorKind::UnexpectedEof => {
            NpyError::Truncated(format!("the {what} is cut short"))
        }
        _ => NpyError::Io(e),
    })
}

/// Reads a tensor from the bytes of a `.npy` file.
pub fn from_bytes(buf: &[u8]) -> Result<Tensor, NpyError> {
    if buf.len() < 10 || &buf[..6] != MAGIC {
        return Err(NpyError::BadMagic);
    }
    let major = buf[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([buf[8], buf[9]]) as usize, 10),
        2 | 3 => {
            let b = buf
                .get(8..12)
                .ok_or_else(|| NpyError::Truncated("header length".into()))?;
            (u32::from_le_bytes(b.try_into().unwrap()) as usize, 12)
        }
        v => return Err(NpyError::Header(format!("unknown format version {v}"))),
    };
    let header_bytes = buf
        .get(start..start + header_len)
        .ok_or_else(|| NpyError::Truncated(format!("header needs {header_len} bytes")))?;
    let header = parse_header(
        std::str::from_utf8(header_bytes).map_err(|e| NpyError::Header(e.to_string()))?,
    )?;
    let data = &buf[start + header_len..];
    let count =
        element_count(&header.shape).ok_or_else(|| NpyError::Header("shape overflows".into()))?;
    let (order, kind, size) = parse_descr(&header.descr)?;

    if kind == 'S' {
        let need = count
            .checked_mul(size)
            .ok_or_else(|| NpyError::Header("shape overflows".into()))?;
        let data = data.get(..need).ok_or_else(|| {
            NpyError::Truncated(format!("data needs {need} bytes, file has {}", data.len()))
        })?;
        let mut strings: Vec<Vec<u8>> = data
            .chunks(size.max(1))
            .take(count)
            .map(|c| {
                let end = c.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
                c[..end].to_vec()
            })
            .collect();
        strings.resize(count, Vec::new());
        if header.fortran {
            strings = fortran_to_c(&header.shape, &strings);
        }
        return Tensor::from_strings(header.shape, strings)
            .map_err(|e| NpyError::Header(e.to_string()));
    }

    let dtype = numeric_dtype(kind, size).ok_or_else(|| NpyError::Dtype(header.descr.clone()))?;
    let need = count
        .checked_mul(size)
        .ok_or_else(|| NpyError::Header("shape overflows".into()))?;
    let data = data.get(..need).ok_or_else(|| {
        NpyError::Truncated(format!("data needs {need} bytes, file has {}", data.len()))
    })?;
    let mut bytes = data.to_vec();
    if order == '>' && size > 1 {
        bytes.chunks_exact_mut(size).for_each(|c| c.reverse());
    }
    if dtype == DataType::Bool {
        bytes.iter_mut().for_each(|b| *b = (*b != 0) as u8);
    }
    if header.fortran && header.shape.len() > 1 {
        let elems: Vec<&[u8]> = bytes.chunks_exact(size).collect();
        bytes = fortran_to_c(&header.shape, &elems).concat();
    }
    Tensor::from_bytes(dtype, header.shape, bytes).map_err(|e| NpyError::Header(e.to_string()))
}

/// Writes a tensor as a `.npy` file.
pub fn write(tensor: &Tensor, mut w: impl Write) -> Result<(), NpyError> {
    w.write_all(&to_bytes(tensor))?;
    Ok(())
}

/// The bytes of a `.npy` file holding `tensor`.
pub fn to_bytes(tensor: &Tensor) -> Vec<u8> {
    let (descr, width) = match tensor.data() {
        TensorData::Numeric(_) => (descr_of(tensor.dtype()).to_string(), 0),
        TensorData::Strings(s) => {
            let width = s.iter().map(Vec::len).max().unwrap_or(0).max(1);
            (format!("|S{width}"), width)
        }
    };
    let shape = match tensor.shape() {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let (version, prefix) = if header.len() + 11 <= u16::MAX as usize {
        (1u8, 10)
    } else {
        (2u8, 12)
    };
    let total = (prefix + header.len() + 1).div_ceil(64) * 64;
    header.push_str(&" ".repeat(total - prefix - header.len() - 1));
    header.push('\n');

    let mut out = Vec::with_capacity(total + tensor.byte_len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    match tensor.data() {
        TensorData::Numeric(b) => out.extend_from_slice(b),
        TensorData::Strings(s) => {
            for item in s {
                out.extend_from_slice(item);
                out.resize(out.len() + width - item.len(), 0);
            }
        }
    }
    out
}

/// The NumPy `descr` of a numeric data type (little-endian).
pub fn descr_of(dtype: DataType) -> &'static str {
    match dtype {
        DataType::Bool => "|b1",
        DataType::U8 => "|u1",
        DataType::U16 => "<u2",
        DataType::U32 => "<u4",
        DataType::U64 => "<u8",
        DataType::I8 => "|i1",
        DataType::I16 => "<i2",
        DataType::I32 => "<i4",
        DataType::I64 => "<i8",
        DataType::F16 => "<f2",
        DataType::F32 => "<f4",
        DataType::F64 => "<f8",
        DataType::Bytes => "|S",
    }
}

fn numeric_dtype(kind: char, size: usize) -> Option<DataType> {
    Some(match (kind, size) {
        ('b', 1) => DataType::Bool,
        ('u', 1) => DataType::U8,
        ('u', 2) => DataType::U16,
        ('u', 4) => DataType::U32,
        ('u', 8) => DataType::U64,
        ('i', 1) => DataType::I8,
        ('i', 2) => DataType::I16,
        ('i', 4) => DataType::I32,
        ('i', 8) => DataType::I64,
        ('f', 2) => DataType::F16,
        ('f', 4) => DataType::F32,
        ('f', 8) => DataType::F64,
        _ => return None,
    })
}

/// Splits a descr such as `<f4` into byte order, kind and size.
fn parse_descr(descr: &str) -> Result<(char, char, usize), NpyError> {
    let mut chars = descr.chars();
    let (order, kind) = match chars.next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, chars.next()),
        other => ('|', other),
    };
    let kind = kind.ok_or_else(|| NpyError::Dtype(descr.to_string()))?;
    let size: usize = chars
        .as_str()
        .parse()
        .map_err(|_| NpyError::Dtype(descr.to_string()))?;
    // An item of 0 bytes ('S0') would let a shape claim any element count
    // (terabytes of empty strings) against no data at all; numpy never writes one.
    if !matches!(kind, 'b' | 'u' | 'i' | 'f' | 'S') || size == 0 {
        return Err(NpyError::Dtype(descr.to_string()));
    }
    Ok((order, kind, size))
}

/// Parses the Python dict literal of a `.npy` header.
fn parse_header(text: &str) -> Result<Header, NpyError> {
    let bad = |what: &str| NpyError::Header(format!("{what} in {:?}", text.trim()));
    let value_after = |key: &str| -> Result<&str, NpyError> {
        let at = text
            .find(&format!("'{key}'"))
            .ok_or_else(|| bad(&format!("no '{key}'")))?;
        let rest = &text[at + key.len() + 2..];
        let colon = rest.find(':').ok_or_else(|| bad("no ':'"))?;
        Ok(rest[colon + 1..].trim_start())
    };
    let descr_text = value_after("descr")?;
    let quote = descr_text
        .chars()
        .next()
        .ok_or_else(|| bad("empty descr"))?;
    if quote != '\'' && quote != '"' {
        return Err(NpyError::Dtype(format!(
            "structured dtype {}",
            descr_text.split('}').next().unwrap_or("")
        )));
    }
    let end = descr_text[1..]
        .find(quote)
        .ok_or_else(|| bad("unterminated descr"))?;
    let descr = descr_text[1..1 + end].to_string();

    let fortran = value_after("fortran_order")?.starts_with("True");
    let shape_text = value_after("shape")?;
    let close = shape_text.find(')').ok_or_else(|| bad("no ')' in shape"))?;
    let inner = shape_text
        .strip_prefix('(')
        .ok_or_else(|| bad("shape is not a tuple"))?;
    let shape = inner[..close - 1]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| bad("bad shape entry"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Header {
        descr,
        fortran,
        shape,
    })
}

/// Reorders elements stored in Fortran (column-major) order into C order.
fn fortran_to_c<T: Clone>(shape: &[usize], elems: &[T]) -> Vec<T> {
    let rank = shape.len();
    let mut f_strides = vec![1usize; rank];
    for i in 1..rank {
        f_strides[i] = f_strides[i - 1] * shape[i - 1];
    }
    let mut index = vec![0usize; rank];
    let mut out = Vec::with_capacity(elems.len());
    for _ in 0..elems.len() {
        let offset: usize = index.iter().zip(&f_strides).map(|(i, s)| i * s).sum();
        out.push(elems[offset].clone());
        for axis in (0..rank).rev() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    /// Found by the `npy` fuzz target (fuzz/corpus/npy/crash-fa3db088...):
    /// `S0` with a shape of 3e11 elements tried to allocate 7.8 TB.
    #[test]
    fn zero_byte_strings_with_a_huge_shape_are_refused_not_allocated() {
        let header = "{'descr': '|S0', 'fortran_order': False, 'shape': (400007701, 91, 9), }";
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&[1, 0]);
        file.extend_from_slice(&(header.len() as u16).to_le_bytes());
        file.extend_from_slice(header.as_bytes());
        assert!(matches!(from_bytes(&file), Err(NpyError::Dtype(d)) if d == "|S0"));
    }

    fn round_trip(t: &Tensor) -> Tensor {
        from_bytes(&to_bytes(t)).unwrap()
    }

    #[test]
    fn every_numeric_dtype_round_trips() {
        let cases = vec![
            Tensor::from_vec(vec![3], vec![true, false, true]).unwrap(),
            Tensor::from_vec(vec![2], vec![1u8, 255]).unwrap(),
            Tensor::from_vec(vec![2], vec![1u16, 65535]).unwrap(),
            Tensor::from_vec(vec![2], vec![1u32, u32::MAX]).unwrap(),
            Tensor::from_vec(vec![2], vec![1u64, u64::MAX]).unwrap(),
            Tensor::from_vec(vec![2], vec![-1i8, 127]).unwrap(),
            Tensor::from_vec(vec![2], vec![-1i16, 300]).unwrap(),
            Tensor::from_vec(vec![1, 2], vec![-1i32, 70000]).unwrap(),
            Tensor::from_vec(vec![2, 1, 1], vec![-1i64, i64::MAX]).unwrap(),
            Tensor::from_vec(vec![2], vec![f16::from_f32(0.5), f16::from_f32(-2.0)]).unwrap(),
            Tensor::from_vec(vec![2, 2], vec![0.5f32, 1.0, -3.0, 7.25]).unwrap(),
            Tensor::from_vec(vec![1], vec![std::f64::consts::PI]).unwrap(),
            Tensor::scalar(42i64),
            Tensor::from_vec::<f32>(vec![0, 3], vec![]).unwrap(),
        ];
        for t in cases {
            assert_eq!(round_trip(&t), t, "{:?}", t.dtype());
        }
    }

    #[test]
    fn byte_strings_round_trip() {
        let t =
            Tensor::from_strings(vec![3], vec![b"a".to_vec(), b"hello".to_vec(), vec![]]).unwrap();
        assert_eq!(round_trip(&t), t);
    }

    #[test]
    fn header_is_64_byte_aligned_and_numpy_shaped() {
        let bytes = to_bytes(&Tensor::from_vec(vec![5], vec![1.0f32; 5]).unwrap());
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.contains("'shape': (5,)"), "{header}");
        assert!(header.ends_with('\n'));
    }

    #[test]
    fn big_endian_and_fortran_are_converted() {
        // A 2x3 big-endian int16 array in Fortran order holding [[1,2,3],[4,5,6]].
        let mut file = Vec::from(MAGIC);
        let mut header = "{'descr': '>i2', 'fortran_order': True, 'shape': (2, 3), }".to_string();
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        file.extend_from_slice(&[1, 0]);
        file.extend_from_slice(&(header.len() as u16).to_le_bytes());
        file.extend_from_slice(header.as_bytes());
        for v in [1i16, 4, 2, 5, 3, 6] {
            file.extend_from_slice(&v.to_be_bytes());
        }
        let t = from_bytes(&file).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(t.to_vec::<i16>().unwrap(), vec![1, 2, 3, 4, 5, 6]);
    }

    /// A stream is read as far as its header declares, no further: a device
    /// of zeros fails at its first bytes, one that never ends after a valid
    /// header stops at the data, and a header declaring more than the file
    /// may hold fails before reading it.
    #[test]
    fn a_stream_is_read_only_as_far_as_its_header_declares() {
        assert!(matches!(read(std::io::repeat(0)), Err(NpyError::BadMagic)));
        let t = Tensor::from_vec(vec![2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let bytes = to_bytes(&t);
        let endless = std::io::Cursor::new(bytes.clone()).chain(std::io::repeat(7));
        assert_eq!(read(endless).unwrap(), t);
        let e = read_limited(std::io::Cursor::new(bytes.clone()), 15).unwrap_err();
        assert!(e.to_string().contains("declares 16 bytes"), "{e}");
        let cut = &bytes[..bytes.len() - 1];
        assert!(matches!(read(cut), Err(NpyError::Truncated(_))));
    }

    #[test]
    fn bad_files_get_clear_errors() {
        assert!(matches!(
            from_bytes(b"hello world"),
            Err(NpyError::BadMagic)
        ));
        let mut truncated = to_bytes(&Tensor::from_vec(vec![4], vec![1.0f64; 4]).unwrap());
        truncated.truncate(truncated.len() - 3);
        assert!(matches!(
            from_bytes(&truncated),
            Err(NpyError::Truncated(_))
        ));
        let mut obj = to_bytes(&Tensor::from_vec(vec![1], vec![1u8]).unwrap());
        let pos = obj.windows(3).position(|w| w == b"|u1").unwrap();
        obj[pos..pos + 3].copy_from_slice(b"|O8");
        assert!(matches!(from_bytes(&obj), Err(NpyError::Dtype(_))));
    }
}
