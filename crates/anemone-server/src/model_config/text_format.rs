//! Protobuf text-format details: the list colons Triton's configs leave out,
//! and parse errors with line and column.

/// Inserts the optional `:` between a field name and a `[` list, which
/// prost-reflect's parser requires but protobuf's grammar (and Triton's
/// configs, `input [ { ... } ]`) leave out. Strings and `#` comments are
/// left alone. Returns the new text and the original byte offsets at which a
/// `:` was inserted, in order.
pub(super) fn add_list_colons(text: &str) -> (String, Vec<usize>) {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let mut inserted = Vec::new();
    let mut copied = 0;
    let mut i = 0;
    let skip_comment = |mut j: usize| {
        while j < b.len() && b[j] != b'\n' {
            j += 1;
        }
        j
    };
    while i < b.len() {
        match b[i] {
            b'#' => i = skip_comment(i),
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < b.len() && b[i] != q && b[i] != b'\n' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let end = i;
                let mut j = i;
                loop {
                    while j < b.len() && b[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if j < b.len() && b[j] == b'#' {
                        j = skip_comment(j);
                    } else {
                        break;
                    }
                }
                if j < b.len() && b[j] == b'[' {
                    out.push_str(&text[copied..end]);
                    out.push(':');
                    copied = end;
                    inserted.push(end);
                }
            }
            c if c.is_ascii_digit() => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.')
                {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out.push_str(&text[copied..]);
    (out, inserted)
}

/// Turns a text-format parse error into a message with line and column.
///
/// prost-reflect's `ParseError` shows its location only through the optional
/// `miette` feature; its `Debug` form does carry the byte span
/// (`span: 12..15`), which is used here. `inserted` are the offsets where
/// [`add_list_colons`] added a `:`; positions are mapped back past them.
pub(super) fn text_format_error(
    text: &str,
    inserted: &[usize],
    err: &prost_reflect::text_format::ParseError,
) -> String {
    let debug = format!("{err:?}");
    let offset = if debug.contains("UnexpectedEof") {
        Some(text.len())
    } else {
        span_start(&debug).map(|n| {
            let shift = inserted
                .iter()
                .enumerate()
                .filter(|&(k, &p)| p + k < n)
                .count();
            n - shift
        })
    };
    let place = match offset {
        Some(off) => {
            let (line, col) = line_col(text, off);
            format!("config.pbtxt line {line}, column {col}")
        }
        None => "config.pbtxt".to_string(),
    };
    format!(
        "{place}: {err}; fix the protobuf text format (fields and enums as in Triton's model_config.proto, \
         e.g. `max_batch_size: 8`, `dims: [ 3, 224, 224 ]`, `data_type: TYPE_FP32`)"
    )
}

/// The start of the last `span: A..B` in a `Debug` string.
fn span_start(debug: &str) -> Option<usize> {
    let at = debug.rfind("span: ")?;
    let rest = debug.get(at + "span: ".len()..)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let (mut line, mut col) = (1, 1);
    for (i, c) in text.char_indices() {
        if i >= offset {
            break;
        }
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_config::fixtures::*;
    use crate::model_config::parse_pbtxt;

    #[test]
    fn list_colons_leave_strings_and_comments_alone() {
        let text = "name: \"a [b\" # input [ x\ninput # note\n [ { name: 'x[' } ] output: [ { name: \"y\" } ]";
        let (fixed, at) = add_list_colons(text);
        assert_eq!(fixed, "name: \"a [b\" # input [ x\ninput: # note\n [ { name: 'x[' } ] output: [ { name: \"y\" } ]");
        assert_eq!(at, vec![text.find("input #").unwrap() + 5]);
        let c = parse_pbtxt(text).unwrap();
        assert_eq!(
            (
                c.name.as_str(),
                c.input[0].name.as_str(),
                c.output[0].name.as_str()
            ),
            ("a [b", "x[", "y")
        );
        // Columns refer to the original text, before any insertion.
        let e = err_pbtxt("input [ { name: \"x\" } ] output [ { name: \"y\" dims: [ 3, ] } ]");
        assert!(e.contains("line 1, column 57"), "{e}");
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let e =
            err_pbtxt("name: \"m\"\nmax_batch_size: 8\ninput [ { name: \"x\" dims: [ 3, ] } ]\n");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("column"), "{e}");
        let e = err_pbtxt("name: \"m\"\n  max_batchsize: 8\n");
        assert!(e.contains("line 2, column 3"), "{e}");
        assert!(e.contains("max_batchsize"), "{e}");
        let e = err_pbtxt("name: \"m\"\ninput [ { data_type: TYPE_FLOAT } ]");
        assert!(e.contains("line 2") && e.contains("TYPE_FLOAT"), "{e}");
        let e = err_pbtxt("name: \"m\"\ninput [ {");
        assert!(e.contains("line 2") && e.contains("end of input"), "{e}");
        let e = err_pbtxt("max_batch_size: 99999999999");
        assert!(e.contains("line 1"), "{e}");
    }
}
