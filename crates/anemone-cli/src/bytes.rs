//! Byte sizes and counts on the command line (`--memory-budget 2GiB`, `--workers 4`).

/// Parses a byte count: a plain number of bytes (`1048576`), or a number
/// with a unit: `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024; `Ki`, `Mi`, ...
/// too) or `kB`, `MB`, `GB`, `TB` (powers of 1000; `K`, `M`, ... too), in any
/// case, with or without a space. A fraction is allowed with a unit (`1.5GiB`).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = (t[..split].trim(), t[split..].trim());
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        _ => return Err(hint(text, "unknown unit")),
    };
    if number.is_empty() {
        return Err(hint(text, "no number"));
    }
    if let Ok(n) = number.parse::<u64>() {
        return n
            .checked_mul(multiplier)
            .ok_or_else(|| hint(text, "too large"));
    }
    match number.parse::<f64>() {
        Ok(x) if x.is_finite() && multiplier > 1 => {
            let bytes = x * multiplier as f64;
            if bytes >= u64::MAX as f64 {
                Err(hint(text, "too large"))
            } else {
                Ok(bytes as u64)
            }
        }
        _ => Err(hint(text, "not a number")),
    }
}

/// [`parse_bytes`], refusing 0 (a budget of no bytes holds no model).
pub fn parse_positive_bytes(text: &str) -> Result<u64, String> {
    match parse_bytes(text)? {
        0 => Err("0 bytes holds nothing; give at least 1 byte (e.g. 2GiB), or leave the flag out for its default".into()),
        n => Ok(n),
    }
}

/// [`parse_positive_bytes`] as a `usize` (`--max-request-bytes 80MiB`).
pub fn parse_positive_byte_size(text: &str) -> Result<usize, String> {
    let bytes = parse_positive_bytes(text)?;
    usize::try_from(bytes).map_err(|_| hint(text, "too large"))
}

/// A count of at least 1 (`--max-concurrency`, `--workers`, `--threads`):
/// 0 would refuse every request or run nothing, so it is refused up front.
pub fn parse_positive(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1 (leave the flag out for the default)".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("'{text}' is not a count: {e}")),
    }
}

/// The most worker threads (`--workers`): each has its own stack, and tens
/// of thousands would exhaust the process's memory maps at start-up.
pub const MAX_WORKERS: usize = 1024;

/// The most models loading at once (`--model-load-thread-count`): each
/// load holds its model's file and engines in memory.
pub const MAX_MODEL_LOADS: usize = 256;

/// [`parse_positive`], at most `max` (`what` names the bound's reason).
pub fn parse_count_up_to(text: &str, max: usize, what: &str) -> Result<usize, String> {
    match parse_positive(text)? {
        n if n > max => Err(format!("{n} is more than {max}, {what}; give 1 to {max}")),
        n => Ok(n),
    }
}

/// `--threads` (and ONNX Runtime's `intra_op_thread_count`): engine threads
/// per model, at most four per core, as a model's own `threads` setting.
pub fn parse_threads(text: &str) -> Result<usize, String> {
    let max = anemone_server::model_config::max_threads();
    parse_count_up_to(text, max, "four per core of this machine")
}

fn hint(text: &str, what: &str) -> String {
    format!(
        "'{text}' is not a byte size ({what}); give bytes (e.g. 2147483648) or a number with a unit: \
         KiB, MiB, GiB, TiB (powers of 1024) or kB, MB, GB, TB (powers of 1000), e.g. 2GiB or 512MiB"
    )
}

#[cfg(test)]
mod tests {
    use super::{parse_bytes, parse_positive, parse_positive_bytes};

    #[test]
    fn zero_is_refused_where_it_would_serve_nothing() {
        assert_eq!(parse_positive("3"), Ok(3));
        assert_eq!(super::parse_positive_byte_size("80MiB"), Ok(80 << 20));
        assert_eq!(super::parse_positive_byte_size("67108864"), Ok(64 << 20));
        assert!(super::parse_positive_byte_size("0").is_err());
        assert!(parse_positive("0").unwrap_err().contains("at least 1"));
        assert!(parse_positive("-1").unwrap_err().contains("not a count"));
        assert_eq!(parse_positive_bytes("1KiB"), Ok(1024));
        assert!(parse_positive_bytes("0GiB")
            .unwrap_err()
            .contains("at least 1 byte"));
        assert!(parse_positive_bytes("lots").is_err());
    }

    #[test]
    fn counts_and_units() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("2 gib"), Ok(2 << 30));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("512Mi"), Ok(512 << 20));
        assert_eq!(parse_bytes("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_bytes("3MB"), Ok(3_000_000));
        assert_eq!(parse_bytes("10kB"), Ok(10_000));
        assert_eq!(parse_bytes("7B"), Ok(7));
        for bad in ["", "GiB", "2XB", "-1", "1.5", "99999999999TiB", "2 G i B"] {
            let e = parse_bytes(bad).unwrap_err();
            assert!(e.contains("e.g. 2GiB"), "{bad}: {e}");
        }
    }
}
