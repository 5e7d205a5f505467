//! gzip and zlib ("deflate") streams written into memory: the one encoder
//! behind compressed HTTP bodies and compressed gRPC answers.

use std::io::Write;

/// The compressed formats both protocols speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// gzip (RFC 1952).
    Gzip,
    /// zlib (RFC 1950), which HTTP and gRPC call "deflate".
    Zlib,
}

/// `parts`, one after the other, compressed into one buffer at `level`.
pub(crate) fn compress(format: Format, parts: &[&[u8]], level: flate2::Compression) -> Vec<u8> {
    fn all<W: Write>(mut w: W, parts: &[&[u8]]) -> W {
        for part in parts {
            // Writing into a Vec cannot fail.
            w.write_all(part).expect("writing into memory");
        }
        w
    }
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let out = Vec::with_capacity(total / 2 + 64);
    let done = match format {
        Format::Gzip => all(flate2::write::GzEncoder::new(out, level), parts).finish(),
        Format::Zlib => all(flate2::write::ZlibEncoder::new(out, level), parts).finish(),
    };
    done.expect("writing into memory")
}
