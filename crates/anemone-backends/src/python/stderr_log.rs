//! A Python process's standard error, logged line by line under the
//! model's name: `pb_utils.Logger` lines at their level, anything else
//! (prints, warnings, tracebacks) at `info`; the last [`TAIL_LINES`] kept
//! for the message of a process that ends.
//!
//! Whatever the process writes, the reader holds little and reads on:
//! bytes that are not UTF-8 are shown replaced (the line is not lost, and
//! the pipe stays read, so the model's later prints do not fail); a line
//! is cut at [`MAX_LINE`] bytes; and a carriage return without a newline
//! (a progress bar, as tqdm draws one) starts the line again, as a
//! terminal shows it, so that only its last state is logged.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::sync::Mutex;

/// How many of the last lines are kept.
pub(super) const TAIL_LINES: usize = 20;

/// The longest line logged whole; a longer one is logged in pieces.
const MAX_LINE: usize = 16 * 1024;

/// Reads `stderr` to its end, logging each line for `model` and keeping
/// the last ones in `tail`.
pub(super) fn log_lines(model: &str, stderr: impl Read, tail: &Mutex<VecDeque<String>>) {
    read_lines(stderr, |line| log_line(model, line, tail));
}

/// Calls `each` with every line of `input` (without its end), as text.
fn read_lines(input: impl Read, mut each: impl FnMut(String)) {
    let mut reader = BufReader::new(input);
    let mut line: Vec<u8> = Vec::new();
    // A carriage return was read: the next text starts the line again,
    // unless a newline comes first (CRLF).
    let mut returned = false;
    let mut emit = |line: &mut Vec<u8>| {
        each(String::from_utf8_lossy(line).into_owned());
        line.clear();
    };
    loop {
        let buf = match reader.fill_buf() {
            Ok([]) => break,
            Ok(buf) => buf,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let end = buf
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .unwrap_or(buf.len());
        let (text, separator) = (&buf[..end], buf.get(end).copied());
        if !text.is_empty() && returned {
            line.clear();
            returned = false;
        }
        let mut text = text;
        while line.len() + text.len() >= MAX_LINE {
            let (fits, rest) = text.split_at(MAX_LINE - line.len());
            line.extend_from_slice(fits);
            emit(&mut line);
            text = rest;
        }
        line.extend_from_slice(text);
        match separator {
            Some(b'\n') => {
                emit(&mut line);
                returned = false;
            }
            Some(_) => returned = true,
            None => {}
        }
        let used = end + usize::from(separator.is_some());
        reader.consume(used);
    }
    if !line.is_empty() {
        emit(&mut line);
    }
}

fn log_line(model: &str, line: String, tail: &Mutex<VecDeque<String>>) {
    let (level, text) = match line.strip_prefix("\u{1e}anemone-log:") {
        Some(rest) => match rest.split_once(':') {
            Some((level, text)) => (level.to_string(), text.to_string()),
            None => ("I".into(), rest.to_string()),
        },
        None => ("I".into(), line),
    };
    match level.as_str() {
        "E" => tracing::error!(model = %model, "model.py: {text}"),
        "W" => tracing::warn!(model = %model, "model.py: {text}"),
        "V" => tracing::debug!(model = %model, "model.py: {text}"),
        _ => tracing::info!(model = %model, "model.py: {text}"),
    }
    if let Ok(mut t) = tail.lock() {
        if t.len() == TAIL_LINES {
            t.pop_front();
        }
        t.push_back(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        read_lines(input, |l| out.push(l));
        out
    }

    #[test]
    fn lines_survive_bytes_that_are_not_utf8_and_windows_ends() {
        assert_eq!(
            lines(b"a\n\xff\xfe x\nb\r\nc"),
            ["a", "\u{fffd}\u{fffd} x", "b", "c"]
        );
        assert_eq!(lines(b""), Vec::<String>::new());
        assert_eq!(lines(b"\n\n"), ["", ""]);
    }

    #[test]
    fn a_progress_bar_keeps_only_its_last_state() {
        let mut bar = Vec::new();
        for i in 0..100_000 {
            bar.extend_from_slice(format!("\r{i:>6}/100000 |####|").as_bytes());
        }
        bar.extend_from_slice(b"\ndone\n");
        assert_eq!(
            lines(&bar),
            [
                "100000/100000 |####|".replace("100000/", " 99999/"),
                "done".into()
            ]
        );
    }

    #[test]
    fn a_long_line_is_logged_in_pieces_of_at_most_max_line() {
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let got = lines(&[&long[..], b"\nend\n"].concat());
        assert_eq!(
            got.iter().map(String::len).collect::<Vec<_>>(),
            [MAX_LINE, MAX_LINE, 10, 3]
        );
    }
}
