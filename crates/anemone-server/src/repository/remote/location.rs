//! Where a `--model-repository` lives: a local directory, or a prefix in an
//! S3 (or S3-compatible) bucket.

use std::fmt;
use std::path::PathBuf;

/// One `--model-repository` value, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on this machine.
    Local(PathBuf),
    /// A prefix in an S3 bucket.
    S3(S3Location),
}

/// `s3://bucket/prefix`, or Triton's `s3://host:port/bucket/prefix` (plain
/// HTTP) and `s3://https://host:port/bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The key prefix of the repository inside the bucket, without slashes at
    /// either end; empty for the whole bucket.
    pub prefix: String,
    /// The endpoint given in the URL (Triton's form), e.g. `http://minio:9000`.
    /// When absent, `AWS_ENDPOINT_URL` or AWS itself.
    pub endpoint: Option<String>,
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://")?;
        if let Some(e) = &self.endpoint {
            write!(f, "{e}/")?;
        }
        write!(f, "{}", self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3(s) => s.fmt(f),
        }
    }
}

impl Location {
    /// Parses a `--model-repository` value. A value with a scheme other than
    /// `s3://` is refused with what to do instead; anything without a scheme
    /// is a local path.
    pub fn parse(value: &str) -> Result<Location, String> {
        let Some((scheme, rest)) = value.split_once("://") else {
            return Ok(Location::Local(PathBuf::from(value)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "s3" => parse_s3(rest).map(Location::S3).map_err(|e| {
                format!("--model-repository {value}: {e} (use s3://bucket/prefix or s3://host:port/bucket/prefix)")
            }),
            "file" => Ok(Location::Local(PathBuf::from(rest))),
            "gs" | "az" | "as" | "abfs" | "https" | "http" => Err(format!(
                "--model-repository {value}: {scheme}:// repositories are not built into anemone; \
                 use the store's S3-compatible API (Google Cloud Storage: \
                 s3://https://storage.googleapis.com:443/bucket/prefix with HMAC keys in \
                 AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), or copy the repository to a local directory \
                 (Azure: `azcopy sync`; on KServe, its storage initializer does it: see docs/DEPLOY.md)"
            )),
            _ => Err(format!(
                "--model-repository {value}: unknown scheme '{scheme}://'; use a directory or s3://bucket/prefix"
            )),
        }
    }
}

fn parse_s3(rest: &str) -> Result<S3Location, String> {
    // Triton: `s3://https://host:port/...` and `s3://host:port/...` (HTTP).
    let (endpoint_scheme, rest) = match rest.split_once("://") {
        Some((s @ ("http" | "https"), r)) => (Some(s), r),
        Some((s, _)) => return Err(format!("unknown endpoint scheme '{s}://'")),
        None => (None, rest),
    };
    let mut parts = rest.trim_end_matches('/').splitn(2, '/');
    let first = parts.next().unwrap_or_default();
    let after = parts.next().unwrap_or_default();
    let (endpoint, bucket, prefix) = if endpoint_scheme.is_some() || first.contains(':') {
        let scheme = endpoint_scheme.unwrap_or("http");
        let mut p = after.splitn(2, '/');
        let bucket = p.next().unwrap_or_default();
        let prefix = p.next().unwrap_or_default();
        (Some(format!("{scheme}://{first}")), bucket, prefix)
    } else {
        (None, first, after)
    };
    if bucket.is_empty() {
        return Err("no bucket named".into());
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|c| c == ".." || c == ".") {
        return Err("the prefix may not contain '.' or '..' components".into());
    }
    Ok(S3Location {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
        endpoint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(value: &str) -> S3Location {
        match Location::parse(value).unwrap() {
            Location::S3(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn s3_forms() {
        let plain = s3("s3://models/prod/repo/");
        assert_eq!(
            (plain.bucket.as_str(), plain.prefix.as_str(), plain.endpoint),
            ("models", "prod/repo", None)
        );
        assert_eq!(s3("s3://models").prefix, "");
        let triton = s3("s3://minio:9000/models/repo");
        assert_eq!(triton.endpoint.as_deref(), Some("http://minio:9000"));
        assert_eq!(
            (triton.bucket.as_str(), triton.prefix.as_str()),
            ("models", "repo")
        );
        let tls = s3("s3://https://s3.example.com:443/b/p");
        assert_eq!(tls.endpoint.as_deref(), Some("https://s3.example.com:443"));
        assert_eq!(tls.to_string(), "s3://https://s3.example.com:443/b/p");
    }

    #[test]
    fn other_values() {
        assert_eq!(
            Location::parse("models").unwrap(),
            Location::Local("models".into())
        );
        for bad in [
            "s3://",
            "s3://host:9000/",
            "gs://b/p",
            "ftp://x/y",
            "s3://b/../x",
        ] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
        assert!(Location::parse("gs://b/p")
            .unwrap_err()
            .contains("S3-compatible"));
    }
}
