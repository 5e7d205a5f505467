//! Triton's `model_warmup`: each sample of a configuration turned into the
//! tensors of a [`WarmupSample`], which the runtime runs after the model
//! loads and before it is ready.
//!
//! As in Triton: `dims` leave out the batch dimension, which is
//! `batch_size` (at least 1, at most `max_batch_size`; exactly 1 for a model
//! without a batch dimension); `count` 0 means one run; each input holds
//! `zero_data` (zeros; empty strings), `random_data` (pseudo-random: small
//! floats in [-1, 1), random bytes for integers, random booleans, empty
//! strings) or `input_data_file`, a file in the model's `warmup` folder whose
//! bytes hold one batch item in row-major order (little-endian numbers;
//! strings as a 4-byte little-endian length then the bytes), repeated for
//! each item of the batch. The file must lie inside the model directory (no
//! absolute path, no `..`, no link leading out) and hold at least one item
//! (extra bytes are ignored, as Triton does).

use super::paths;
use crate::model_config::core_dtype;
use crate::proto::model_warmup::input::InputDataType;
use crate::proto::model_warmup::Input;
use crate::proto::{DataType as ProtoType, ModelConfig, ModelWarmup};
use anemone_core::{DataType, Tensor};
use anemone_runtime::WarmupSample;
use std::path::Path;

/// The most bytes one warm-up input may hold (batch included): 64 MiB.
pub const MAX_WARMUP_INPUT_BYTES: usize = 64 << 20;

/// The most runs one sample may ask for (`count`).
pub const MAX_WARMUP_COUNT: u32 = 1000;

/// The samples of `config`, built; the first problem refused, naming its sample.
pub fn warmup_samples(
    root: &Path,
    dir: &Path,
    config: &ModelConfig,
) -> Result<Vec<WarmupSample>, String> {
    config
        .model_warmup
        .iter()
        .map(|w| {
            sample(root, dir, config.max_batch_size, w)
                .map_err(|e| format!("model_warmup sample '{}': {e}", w.name))
        })
        .collect()
}

fn sample(
    root: &Path,
    dir: &Path,
    max_batch_size: i32,
    w: &ModelWarmup,
) -> Result<WarmupSample, String> {
    if w.name.is_empty() {
        return Err("a sample needs a name (field 'name')".into());
    }
    let batch = w.batch_size as usize;
    if max_batch_size > 0 {
        if batch == 0 || batch > max_batch_size as usize {
            return Err(format!(
                "batch_size is {batch}; set it between 1 and the model's max_batch_size ({max_batch_size})"
            ));
        }
    } else if batch != 1 {
        return Err(format!(
            "batch_size is {batch}; a model without a batch dimension (max_batch_size 0) takes batch_size: 1"
        ));
    }
    if w.count > MAX_WARMUP_COUNT {
        return Err(format!(
            "count is {}; at most {MAX_WARMUP_COUNT} runs per sample",
            w.count
        ));
    }
    if w.inputs.is_empty() {
        return Err("it has no inputs; give every input of the model in 'inputs'".into());
    }
    let mut names: Vec<&String> = w.inputs.keys().collect();
    names.sort();
    let batched = max_batch_size > 0;
    let inputs = names
        .into_iter()
        .map(|name| {
            let tensor = input(root, dir, batched.then_some(batch), &w.inputs[name])
                .map_err(|e| format!("input '{name}': {e}"))?;
            Ok((name.clone(), tensor))
        })
        .collect::<Result<_, String>>()?;
    Ok(WarmupSample {
        name: w.name.clone(),
        inputs,
        count: w.count as usize,
    })
}

/// One input: `batch` items (none when the model has no batch dimension).
fn input(root: &Path, dir: &Path, batch: Option<usize>, i: &Input) -> Result<Tensor, String> {
    let proto = ProtoType::try_from(i.data_type).unwrap_or(ProtoType::TypeInvalid);
    let dtype = core_dtype(proto)
        .ok_or_else(|| format!("data_type {} is not one anemone runs", proto.as_str_name()))?;
    if let Some(d) = i.dims.iter().find(|d| **d < 1) {
        return Err(format!(
            "dims hold {d}; a warm-up gives every dimension a size (1 or more), without the batch dimension"
        ));
    }
    let item_shape: Vec<usize> = i.dims.iter().map(|d| *d as usize).collect();
    let items = batch.unwrap_or(1);
    let per_item = item_shape
        .iter()
        .try_fold(1usize, |a, d| a.checked_mul(*d))
        .filter(|n| {
            n.checked_mul(items)
                .and_then(|t| t.checked_mul(dtype.size().unwrap_or(1)))
                .is_some_and(|b| b <= MAX_WARMUP_INPUT_BYTES)
        })
        .ok_or_else(|| {
            format!("it is larger than {MAX_WARMUP_INPUT_BYTES} bytes; give smaller dims")
        })?;
    let mut shape = item_shape;
    if let Some(b) = batch {
        shape.insert(0, b);
    }
    let built = match &i.input_data_type {
        None => {
            return Err(
                "it holds no data; set zero_data: true, random_data: true or input_data_file"
                    .into(),
            )
        }
        Some(InputDataType::ZeroData(_)) if dtype == DataType::Bytes => {
            Tensor::from_strings(shape, vec![Vec::new(); per_item * items])
        }
        Some(InputDataType::ZeroData(_)) => {
            Tensor::from_bytes(dtype, shape, vec![0; per_item * items * size(dtype)])
        }
        Some(InputDataType::RandomData(_)) if dtype == DataType::Bytes => {
            Tensor::from_strings(shape, vec![Vec::new(); per_item * items])
        }
        Some(InputDataType::RandomData(_)) => {
            Tensor::from_bytes(dtype, shape, random_bytes(dtype, per_item * items))
        }
        Some(InputDataType::InputDataFile(f)) => {
            let bytes = read_file(root, dir, f, per_item, dtype)?;
            if dtype == DataType::Bytes {
                let one = strings(&bytes, per_item).map_err(|e| format!("file '{f}': {e}"))?;
                Tensor::from_strings(
                    shape,
                    one.iter()
                        .cycle()
                        .take(one.len() * items)
                        .cloned()
                        .collect(),
                )
            } else {
                let one = &bytes[..per_item * size(dtype)];
                Tensor::from_bytes(dtype, shape, one.repeat(items))
            }
        }
    };
    built.map_err(|e| e.to_string())
}

fn size(dtype: DataType) -> usize {
    dtype.size().unwrap_or(1)
}

/// `count` elements of pseudo-random data (a fixed seed: warm-ups repeat).
fn random_bytes(dtype: DataType, count: usize) -> Vec<u8> {
    let mut seed: u32 = 0x2545_f491;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    let unit = |r: u32| (r as f64 / u32::MAX as f64) * 2.0 - 1.0;
    let mut out = Vec::with_capacity(count * size(dtype));
    for _ in 0..count {
        match dtype {
            DataType::F32 => out.extend((unit(next()) as f32).to_le_bytes()),
            DataType::F64 => out.extend(unit(next()).to_le_bytes()),
            DataType::F16 => out.extend(half::f16::from_f64(unit(next())).to_le_bytes()),
            DataType::Bool => out.push((next() & 1) as u8),
            _ => {
                for _ in 0..size(dtype) {
                    out.push(next() as u8);
                }
            }
        }
    }
    out
}

/// Reads `warmup/<file>` of the model directory: a plain relative path, a
/// regular file inside the repository, at least one item and at most
/// [`MAX_WARMUP_INPUT_BYTES`] read.
fn read_file(
    root: &Path,
    dir: &Path,
    file: &str,
    per_item: usize,
    dtype: DataType,
) -> Result<Vec<u8>, String> {
    let refused = || {
        format!(
            "input_data_file \"{file}\" must name a regular file in the model's 'warmup' folder \
             (a relative path without '..'; a symbolic link must not lead outside the model directory)"
        )
    };
    let bytes = paths::read_in_folder(root, dir, "warmup", file, MAX_WARMUP_INPUT_BYTES as u64)
        .map_err(|e| format!("cannot read input_data_file \"{file}\": {e}"))?
        .ok_or_else(refused)?;
    if dtype != DataType::Bytes && bytes.len() < per_item * size(dtype) {
        return Err(format!(
            "input_data_file \"{file}\" holds {} bytes; one item of this input needs {}",
            bytes.len(),
            per_item * size(dtype)
        ));
    }
    Ok(bytes)
}

/// `count` strings, each a 4-byte little-endian length and its bytes.
fn strings(mut bytes: &[u8], count: usize) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let short = || format!("it ends before string {i} of {count}");
        let len: [u8; 4] = bytes
            .get(..4)
            .ok_or_else(short)?
            .try_into()
            .expect("4 bytes");
        let len = u32::from_le_bytes(len) as usize;
        let value = bytes.get(4..4 + len).ok_or_else(short)?;
        out.push(value.to_vec());
        bytes = &bytes[4 + len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_dir::TempDir;

    /// A folder holding `m/warmup`, removed when dropped.
    fn base(tag: &str) -> TempDir {
        let base = TempDir::new(&format!("warmup-{tag}"));
        std::fs::create_dir_all(base.join("m/warmup")).unwrap();
        base
    }

    fn input(dtype: ProtoType, dims: &[i64], data: InputDataType) -> Input {
        Input {
            data_type: dtype as i32,
            dims: dims.to_vec(),
            input_data_type: Some(data),
        }
    }

    fn one(
        max_batch_size: i32,
        batch_size: u32,
        name: &str,
        i: Input,
    ) -> Result<WarmupSample, String> {
        let root = base(name);
        let w = ModelWarmup {
            name: "s".into(),
            batch_size,
            inputs: [(name.to_string(), i)].into_iter().collect(),
            count: 0,
        };
        sample(&root, &root.join("m"), max_batch_size, &w)
    }

    #[test]
    fn a_file_holds_one_item_repeated_for_the_batch() {
        let root = base("file");
        let dir = root.join("m");
        let bytes: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        std::fs::write(dir.join("warmup/x.bin"), [bytes, vec![9; 3]].concat()).unwrap();
        let w = ModelWarmup {
            name: "s".into(),
            batch_size: 3,
            inputs: [(
                "x".to_string(),
                input(
                    ProtoType::TypeFp32,
                    &[2],
                    InputDataType::InputDataFile("x.bin".into()),
                ),
            )]
            .into_iter()
            .collect(),
            count: 0,
        };
        let s = sample(&root, &dir, 4, &w).unwrap();
        assert_eq!(s.inputs[0].1.shape(), &[3, 2]);
        assert_eq!(
            s.inputs[0].1.to_vec::<f32>().unwrap(),
            vec![1.5, -2.0, 1.5, -2.0, 1.5, -2.0]
        );
        // Strings: a 4-byte length, then the bytes.
        let mut strings = Vec::new();
        for v in [&b"ab"[..], b""] {
            strings.extend((v.len() as u32).to_le_bytes());
            strings.extend(v);
        }
        std::fs::write(dir.join("warmup/s.bin"), strings).unwrap();
        let t = input(
            ProtoType::TypeString,
            &[2],
            InputDataType::InputDataFile("s.bin".into()),
        );
        let w = ModelWarmup {
            inputs: [("s".to_string(), t)].into_iter().collect(),
            batch_size: 1,
            ..w
        };
        let s = sample(&root, &dir, 0, &w).unwrap();
        assert_eq!(s.inputs[0].1.shape(), &[2]);
        assert_eq!(
            s.inputs[0].1.as_strings().unwrap(),
            &[b"ab".to_vec(), Vec::new()]
        );
    }

    #[test]
    fn zero_and_random_data_fill_the_shape() {
        let z = one(
            0,
            1,
            "zero",
            input(ProtoType::TypeInt64, &[2, 3], InputDataType::ZeroData(true)),
        )
        .unwrap();
        assert_eq!(z.inputs[0].1.shape(), &[2, 3]);
        assert_eq!(z.inputs[0].1.to_vec::<i64>().unwrap(), vec![0; 6]);
        let r = one(
            8,
            2,
            "random",
            input(ProtoType::TypeFp32, &[5], InputDataType::RandomData(true)),
        )
        .unwrap();
        let v = r.inputs[0].1.to_vec::<f32>().unwrap();
        assert_eq!(r.inputs[0].1.shape(), &[2, 5]);
        assert!(
            v.iter().all(|x| (-1.0..1.0).contains(x)) && v.iter().any(|x| *x != 0.0),
            "{v:?}"
        );
    }

    #[test]
    fn bad_samples_are_refused_with_what_to_do() {
        let zero = || input(ProtoType::TypeFp32, &[2], InputDataType::ZeroData(true));
        for (max, batch, needle) in [
            (0, 2, "takes batch_size: 1"),
            (4, 0, "between 1 and the model's max_batch_size (4)"),
            (4, 5, "between 1 and the model's max_batch_size (4)"),
        ] {
            let e = one(max, batch, "batch", zero()).unwrap_err();
            assert!(e.contains(needle), "{max} {batch}: {e}");
        }
        let e = one(
            0,
            1,
            "dims",
            input(ProtoType::TypeFp32, &[-1], InputDataType::ZeroData(true)),
        )
        .unwrap_err();
        assert!(e.contains("dims hold -1"), "{e}");
        let e = one(
            0,
            1,
            "huge",
            input(
                ProtoType::TypeFp32,
                &[1 << 20, 1 << 20],
                InputDataType::ZeroData(true),
            ),
        )
        .unwrap_err();
        assert!(e.contains("larger than"), "{e}");
        let e = one(
            0,
            1,
            "bf16",
            input(ProtoType::TypeBf16, &[2], InputDataType::ZeroData(true)),
        )
        .unwrap_err();
        assert!(e.contains("TYPE_BF16"), "{e}");
    }
}
