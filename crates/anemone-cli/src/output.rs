//! Printing helpers shared by the subcommands: error chains, human-readable
//! sizes, number formatting, aligned tables and tensor previews.

use anemone_core::{DataType, Element, Tensor};
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

/// Prints `text` on stdout for the person watching `anemone serve`, and
/// carries on when stdout is gone (`anemone serve | head -1` once `head`
/// has exited, or stdout closed): `println!` would panic there, and the
/// server must serve on and stop as it would.
pub fn say(text: std::fmt::Arguments) {
    let _ = emit(&text.to_string());
}

/// A mistake in the flags that no one flag's parser sees (two flags that do
/// not go together, a backend list every model would refuse): reported as
/// any error, with the exit status of clap's flag mistakes, 2.
#[derive(Debug)]
pub struct FlagMistake(pub String);

impl std::fmt::Display for FlagMistake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FlagMistake {}

/// A flag's value refused by anemone's own parser (after clap's): a
/// [`FlagMistake`], exit status 2.
pub fn mistake(message: String) -> anyhow::Error {
    anyhow::Error::new(FlagMistake(message))
}

/// The error's message followed by each cause, joined by `: `, skipping a
/// cause whose text the message already contains (anemone errors often
/// repeat their source).
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Writes `text` to stdout. A closed pipe (`anemone inspect m.onnx | head`)
/// is not an error.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write to stdout"))
        }
        _ => Ok(()),
    }
}

/// Replaces the default panic message with a debug-level log line: `main`
/// reports a panic as one `error:` line, and the runtime turns engine panics
/// into errors of their own. With `RUST_BACKTRACE` set, the default is kept.
pub fn quiet_panics() {
    if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
        return;
    }
    std::panic::set_hook(Box::new(|info| tracing::debug!("{info}")));
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `44.7 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A count in SI units: `950`, `1.2K`, `11.7M`, `3.4B`.
pub fn human_count(n: u64) -> String {
    const UNITS: [(f64, &str); 4] = [(1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")];
    for (scale, unit) in UNITS {
        if n as f64 >= scale {
            return format!("{:.1}{unit}", n as f64 / scale);
        }
    }
    n.to_string()
}

/// A duration in milliseconds, with precision that suits its size.
pub fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    match ms {
        ms if ms < 10.0 => format!("{ms:.3} ms"),
        ms if ms < 1000.0 => format!("{ms:.1} ms"),
        ms => format!("{ms:.0} ms"),
    }
}

/// A float with 6 significant digits, like C's `%g`: `0.1`, `11`, `1.23457e+07`.
pub fn g6(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "nan".into()
        } else if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // Round to 6 significant digits first: the exponent after rounding decides the style.
    let sci = format!("{v:.5e}");
    let (mantissa, exp) = sci
        .split_once('e')
        .expect("`{:e}` always writes an exponent; this is a bug");
    let exp: i32 = exp
        .parse()
        .expect("`{:e}` writes an integer exponent; this is a bug");
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim_zeros(mantissa), exp.abs())
    } else {
        trim_zeros(&format!("{v:.*}", (5 - exp) as usize)).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// `s` with control characters escaped, so that names and properties from a
/// model file cannot break lines or drive the terminal.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Rows as aligned columns separated by two spaces, each line starting with
/// `indent`. The last column is not padded.
pub fn table(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::from(indent);
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One element of a tensor, for previews.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// A float, widened; `shortest` is its shortest decimal form at its own precision.
    Float { value: f64, shortest: String },
    /// A byte string, decoded lossily as UTF-8.
    Str(String),
}

/// The first `n` elements of `t`, in C order.
pub fn first_values(t: &Tensor, n: usize) -> Vec<Value> {
    fn read<T: Element>(t: &Tensor, n: usize, f: impl Fn(T) -> Value) -> Vec<Value> {
        let bytes = t.as_bytes().unwrap_or_default();
        bytes
            .chunks_exact(std::mem::size_of::<T>())
            .take(n)
            .map(|c| f(T::read_le(c)))
            .collect()
    }
    let float = |value: f64, shortest: String| Value::Float { value, shortest };
    match t.dtype() {
        DataType::Bool => read::<bool>(t, n, Value::Bool),
        DataType::U8 => read::<u8>(t, n, |v| Value::UInt(v.into())),
        DataType::U16 => read::<u16>(t, n, |v| Value::UInt(v.into())),
        DataType::U32 => read::<u32>(t, n, |v| Value::UInt(v.into())),
        DataType::U64 => read::<u64>(t, n, Value::UInt),
        DataType::I8 => read::<i8>(t, n, |v| Value::Int(v.into())),
        DataType::I16 => read::<i16>(t, n, |v| Value::Int(v.into())),
        DataType::I32 => read::<i32>(t, n, |v| Value::Int(v.into())),
        DataType::I64 => read::<i64>(t, n, Value::Int),
        // `half` is not a dependency of the CLI: widen through the core's conversion.
        DataType::F16 => t
            .to_f64_lossy()
            .unwrap_or_default()
            .into_iter()
            .take(n)
            .map(|v| float(v, (v as f32).to_string()))
            .collect(),
        DataType::F32 => read::<f32>(t, n, |v| float(v.into(), v.to_string())),
        DataType::F64 => read::<f64>(t, n, |v| float(v, v.to_string())),
        DataType::Bytes => t
            .as_strings()
            .unwrap_or_default()
            .iter()
            .take(n)
            .map(|s| Value::Str(String::from_utf8_lossy(s).into_owned()))
            .collect(),
    }
}

impl Value {
    /// Text for the terminal: floats with 6 significant digits, strings quoted.
    pub fn text(&self) -> String {
        match self {
            Value::Bool(b) => b.to_string(),
            Value::Int(v) => v.to_string(),
            Value::UInt(v) => v.to_string(),
            Value::Float { value, .. } => g6(*value),
            Value::Str(s) => format!("{:?}", s),
        }
    }

    /// JSON: numbers (floats at their own precision), booleans, strings;
    /// a non-finite float becomes the string `"nan"`, `"inf"` or `"-inf"`.
    pub fn json(&self) -> serde_json::Value {
        match self {
            Value::Bool(b) => (*b).into(),
            Value::Int(v) => (*v).into(),
            Value::UInt(v) => (*v).into(),
            Value::Float { value, shortest } if value.is_finite() => shortest
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or(serde_json::Value::Null, Into::into),
            Value::Float { value, .. } => g6(*value).into(),
            Value::Str(s) => s.clone().into(),
        }
    }
}

/// `[a, b, c]`, with `, … (N values)` when the tensor has more than shown.
pub fn preview(values: &[Value], total: usize) -> String {
    let parts: Vec<String> = values.iter().map(Value::text).collect();
    if total > values.len() {
        format!("[{}, … ({total} values)]", parts.join(", "))
    } else {
        format!("[{}]", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g6_matches_printf() {
        let cases = [
            (0.0, "0"),
            (11.0, "11"),
            (-9.0, "-9"),
            (0.1f32 as f64, "0.1"),
            (1.0 / 3.0, "0.333333"),
            (123456.7, "123457"),
            (999999.5, "1e+06"),
            (12345678.0, "1.23457e+07"),
            (0.0001234567, "0.000123457"),
            (0.00001234567, "1.23457e-05"),
            (f64::NAN, "nan"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (v, want) in cases {
            assert_eq!(g6(v), want, "{v}");
        }
    }

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(46_758_048), "44.6 MiB");
        assert_eq!(human_count(950), "950");
        assert_eq!(human_count(11_689_512), "11.7M");
        assert_eq!(human_count(1_200), "1.2K");
    }

    #[test]
    fn printable_escapes_control_characters() {
        assert_eq!(printable("a\nb\x1b[31m"), "a\\nb\\u{1b}[31m");
    }

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["x".into(), "f32".into(), "[1]".into()],
            vec!["long".into(), "i64".into(), "[]".into()],
        ];
        assert_eq!(table(&rows, "  "), "  x     f32  [1]\n  long  i64  []\n");
    }

    #[test]
    fn previews_are_typed() {
        let t = Tensor::from_vec(vec![3], vec![0.1f32, 2.0, f32::NAN]).unwrap();
        let v = first_values(&t, 2);
        assert_eq!(preview(&v, t.len()), "[0.1, 2, … (3 values)]");
        assert_eq!(v[0].json(), serde_json::json!(0.1));
        assert_eq!(first_values(&t, 8)[2].json(), serde_json::json!("nan"));
        let big = Tensor::from_vec(vec![1], vec![u64::MAX]).unwrap();
        assert_eq!(first_values(&big, 8)[0].json(), serde_json::json!(u64::MAX));
        let b = Tensor::from_vec(vec![2], vec![true, false]).unwrap();
        assert_eq!(preview(&first_values(&b, 8), 2), "[true, false]");
    }
}
