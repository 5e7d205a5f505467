//! Whether the CPU engines answer a model alike. The default order's
//! comparison runs each candidate on the same warm-up; when `tract-cpu`
//! and `onnxruntime` both run it and their answers differ, tract's is the
//! suspect (its kernels are the ones known to answer some operators wrongly:
//! docs/BACKENDS.md) and ONNX Runtime serves, whatever the timings said.
//! A warning names the output and the values.

use anemone_core::{DataType, Tensor};

/// The engine whose answer is taken as right when the two differ.
pub const REFERENCE: &str = "onnxruntime";
/// The engine that loses the comparison when they differ.
pub const SUSPECT: &str = "tract-cpu";
/// How the suspect's reason starts: it is not timed again on real traffic
/// (re-timing) either.
pub const DIFFERS: &str = "its answer to the warm-up differs from onnxruntime's";

/// Each timed engine's answer to the first warm-up set, by engine, with
/// its output names: what both comparisons (in process and in the child)
/// collect, and ask [`Answers::suspect_differs`] of.
#[derive(Default)]
pub struct Answers(Vec<(String, Vec<Tensor>, Vec<String>)>);

impl Answers {
    /// Keeps `engine`'s `answer`, its outputs named `names`.
    pub fn push(&mut self, engine: &str, answer: Vec<Tensor>, names: Vec<String>) {
        self.0.push((engine.to_string(), answer, names));
    }

    /// Why [`SUSPECT`] must not serve `model` (its answer differs from
    /// [`REFERENCE`]'s; warned), or `None` when they agree or one did not
    /// answer.
    pub fn suspect_differs(&self, model: &str) -> Option<String> {
        let answer = |b: &str| self.0.iter().find(|(l, ..)| l == b);
        let (reference, suspect) = (answer(REFERENCE)?, answer(SUSPECT)?);
        let why = disagreement(&reference.1, &suspect.1, &suspect.2)?;
        let why = format!("{DIFFERS}: {why}");
        tracing::warn!(model = %model, backend = SUSPECT, "{why}; {REFERENCE} serves");
        Some(why)
    }
}

/// Why `suspect`'s answers differ from `reference`'s (one run of each on
/// the same inputs), or `None` when they agree: the same outputs, dtypes
/// and shapes; integers, booleans and strings equal; floating-point values
/// within 1% of the reference's value plus 0.1% of its largest magnitude
/// (2% and 1% for FLOAT16), NaN where it has NaN, its infinities.
pub fn disagreement(reference: &[Tensor], suspect: &[Tensor], names: &[String]) -> Option<String> {
    if reference.len() != suspect.len() {
        return Some(format!(
            "{} outputs where {REFERENCE} gives {}",
            suspect.len(),
            reference.len()
        ));
    }
    for (i, (want, got)) in reference.iter().zip(suspect).enumerate() {
        let name = names.get(i).map_or("?", String::as_str);
        if want.dtype() != got.dtype() || want.shape() != got.shape() {
            return Some(format!(
                "output '{name}' is {:?} {:?} where {REFERENCE}'s is {:?} {:?}",
                got.dtype(),
                got.shape(),
                want.dtype(),
                want.shape()
            ));
        }
        if let Some(why) = values_differ(want, got) {
            return Some(format!("output '{name}': {why}"));
        }
    }
    None
}

fn values_differ(want: &Tensor, got: &Tensor) -> Option<String> {
    let (want, got) = (want.compact(), got.compact());
    if want.dtype() == DataType::Bytes {
        return (want.as_strings() != got.as_strings()).then(|| "different strings".to_string());
    }
    if !matches!(want.dtype(), DataType::F16 | DataType::F32 | DataType::F64) {
        return (want.as_bytes() != got.as_bytes()).then(|| "different values".to_string());
    }
    let (w, g) = (want.to_f64_lossy()?, got.to_f64_lossy()?);
    let (rtol, scale_tol) = match want.dtype() {
        DataType::F16 => (2e-2, 1e-2),
        _ => (1e-2, 1e-3),
    };
    let largest = w
        .iter()
        .filter(|v| v.is_finite())
        .fold(1.0f64, |m, v| m.max(v.abs()));
    let atol = scale_tol * largest;
    let bad = w.iter().zip(&g).position(|(&w, &g)| {
        let same = w == g || (w.is_nan() && g.is_nan());
        let close = w.is_finite() && g.is_finite() && (w - g).abs() <= atol + rtol * w.abs();
        !(same || close)
    })?;
    Some(format!(
        "element {bad} is {} where {REFERENCE} gives {}",
        g[bad], w[bad]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(v: &[f32]) -> Tensor {
        Tensor::from_vec(vec![v.len()], v.to_vec()).unwrap()
    }

    #[test]
    fn engines_agree_within_float_noise_and_not_past_it() {
        let names = vec!["y".to_string()];
        let want = [f32s(&[1.0, -2.0, 1000.0, 0.0, f32::NAN])];
        let close = [f32s(&[1.000_01, -2.0, 1000.05, 1e-6, f32::NAN])];
        assert_eq!(disagreement(&want, &close, &names), None);
        let off = [f32s(&[1.0, -2.0, 1000.0, 0.0, 0.0])];
        let why = disagreement(&want, &off, &names).unwrap();
        assert!(
            why.contains("output 'y': element 4 is 0 where onnxruntime gives NaN"),
            "{why}"
        );
        let wrong = [f32s(&[-0.99, -2.0, 1000.0, 0.0, f32::NAN])];
        assert!(disagreement(&want, &wrong, &names).is_some());
        let shape = [Tensor::from_vec(vec![5, 1], vec![0f32; 5]).unwrap()];
        assert!(disagreement(&want, &shape, &names)
            .unwrap()
            .contains("[5, 1]"));
        let dtype = [Tensor::from_vec(vec![5], vec![0f64; 5]).unwrap()];
        assert!(disagreement(&want, &dtype, &names).unwrap().contains("F64"));
        let ints = [Tensor::from_vec(vec![2], vec![1i64, 2]).unwrap()];
        let other = [Tensor::from_vec(vec![2], vec![1i64, 3]).unwrap()];
        assert!(disagreement(&ints, &other, &names).is_some());
        assert_eq!(disagreement(&ints, &ints, &names), None);
    }
}
