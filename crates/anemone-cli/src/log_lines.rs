//! One log line per event in the text format, whatever the event carries.
//!
//! Log messages quote what clients send (a model name in a URL, a
//! parameter's key in a load request). With a carriage return or a line
//! feed in it, the text format wrote a second line that looked like one of
//! the server's own (`...nothing to do model=evil` and then `2026-12-06T00:00:00Z
//! ERROR forged`): a forged entry for whoever reads or parses the log.
//! This writer escapes both inside an event (`\r`, `\n`), as Triton quotes
//! and escapes names in its log; the JSON format escapes them already.

use std::io::Write;
use tracing_subscriber::fmt::MakeWriter;

/// A [`MakeWriter`] whose writers escape line breaks inside each event.
pub struct OneLinePerEvent<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for OneLinePerEvent<M> {
    type Writer = Escaping<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        Escaping(self.0.make_writer())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        Escaping(self.0.make_writer_for(meta))
    }
}

/// Writes each buffer (one formatted event: tracing-subscriber writes an
/// event with one `write_all`) with its line breaks escaped, but the last.
pub struct Escaping<W>(W);

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (body, end) = match buf.split_last() {
            Some((b'\n', body)) => (body, &b"\n"[..]),
            _ => (buf, &b""[..]),
        };
        if !body.iter().any(|&b| b == b'\n' || b == b'\r') {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut line = Vec::with_capacity(buf.len() + 16);
        for &b in body {
            match b {
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                b => line.push(b),
            }
        }
        line.extend_from_slice(end);
        self.0.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> String {
        let mut out = Escaping(Vec::new());
        out.write_all(text.as_bytes()).unwrap();
        String::from_utf8(out.0).unwrap()
    }

    #[test]
    fn line_breaks_inside_an_event_are_escaped_and_its_own_end_kept() {
        assert_eq!(
            escaped("INFO unload model=evil\r\n2026-12-06T00:00:00Z ERROR forged\n"),
            "INFO unload model=evil\\r\\n2026-12-06T00:00:00Z ERROR forged\n"
        );
        assert_eq!(escaped("plain line\n"), "plain line\n");
        assert_eq!(escaped("no end\nat all"), "no end\\nat all");
        assert_eq!(escaped("\n"), "\n");
    }

    #[test]
    fn an_event_logged_through_the_text_format_stays_one_line() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl Write for Buffer {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let out = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(OneLinePerEvent(move || out.clone()))
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(model = %"evil\r\nERROR forged", "nothing to do");
            tracing::warn!("second");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("model=evil\\r\\nERROR forged"), "{text}");
    }
}
