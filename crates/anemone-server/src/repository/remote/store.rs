//! Listing and fetching the files of one repository source: a prefix of an
//! S3 bucket, or a local directory (when several repositories are mixed).

use super::location::{Location, S3Location};
use futures_util::StreamExt;
use object_store::{path::Path as ObjectPath, GetOptions, GetRange, ObjectStore};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Attempts at one file before its download is given up (until the next
/// sync); each resumes where the last one stopped.
const DOWNLOAD_ATTEMPTS: u32 = 4;

/// Files at least this large report their progress in the log.
const PROGRESS_BYTES: u64 = 16 << 20;

/// One file of a source, relative to the source's root (`model/1/model.onnx`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The path below the source's root, `/`-separated.
    pub relative: String,
    /// Its size in bytes.
    pub size: u64,
    /// What changes when the content changes: the ETag in a bucket, the
    /// modification time on disk.
    pub tag: String,
}

/// A source of repository files.
pub enum Source {
    /// A local directory, copied file by file.
    Local(PathBuf),
    /// A prefix in a bucket.
    Remote {
        /// The client.
        store: Arc<dyn ObjectStore>,
        /// The prefix, as the client spells it; `None` for the bucket's root.
        prefix: Option<ObjectPath>,
        /// The URL, for messages.
        label: String,
    },
}

impl Source {
    /// Opens a source. S3 takes its credentials, region and endpoint from the
    /// standard `AWS_*` variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`); an endpoint in the
    /// URL (Triton's `s3://host:port/bucket`) wins over `AWS_ENDPOINT_URL`.
    pub fn open(location: &Location) -> Result<Source, String> {
        match location {
            Location::Local(dir) => Ok(Source::Local(dir.clone())),
            Location::S3(s3) => open_s3(s3),
        }
    }

    /// The source as the user named it.
    pub fn label(&self) -> String {
        match self {
            Source::Local(dir) => dir.display().to_string(),
            Source::Remote { label, .. } => label.clone(),
        }
    }

    /// Every file of the source.
    pub async fn list(&self) -> Result<Vec<Listed>, String> {
        match self {
            Source::Local(dir) => {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || list_local(&dir))
                    .await
                    .map_err(|e| format!("internal error while listing: {e}"))?
            }
            Source::Remote {
                store,
                prefix,
                label,
            } => {
                let mut files = Vec::new();
                let mut stream = store.list(prefix.as_ref());
                while let Some(meta) = stream.next().await {
                    let meta = meta.map_err(|e| {
                        // Listing a prefix that holds nothing is no error: a 404 is the bucket.
                        let e = match e {
                            object_store::Error::NotFound { path, source } => {
                                object_store::Error::Generic {
                                    store: "S3",
                                    source: format!("NoSuchBucket ({path}): {source}").into(),
                                }
                            }
                            other => other,
                        };
                        explain(&e, &format!("cannot list {label}"))
                    })?;
                    let key = meta.location.as_ref();
                    let relative = match prefix {
                        Some(p) => key
                            .strip_prefix(p.as_ref())
                            .map(|r| r.trim_start_matches('/')),
                        None => Some(key),
                    };
                    let Some(relative) = relative.filter(|r| !r.is_empty()) else {
                        continue;
                    };
                    files.push(Listed {
                        relative: relative.to_string(),
                        size: meta.size,
                        tag: meta
                            .e_tag
                            .unwrap_or_else(|| meta.last_modified.to_rfc3339()),
                    });
                }
                Ok(files)
            }
        }
    }

    /// Copies `file` to `dest`, checking its size (and, in a bucket, that the
    /// object is still the one listed: its ETag). A download that breaks is
    /// resumed from where it stopped, up to [`DOWNLOAD_ATTEMPTS`] times.
    pub async fn fetch(&self, file: &Listed, dest: &Path) -> Result<(), String> {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        match self {
            Source::Local(dir) => {
                let from = dir.join(&file.relative);
                let copied = std::fs::copy(&from, dest)
                    .map_err(|e| format!("cannot copy {}: {e}", from.display()))?;
                check_size(copied, file, &from.display().to_string())
            }
            Source::Remote {
                store,
                prefix,
                label,
            } => {
                let key = match prefix {
                    Some(p) => ObjectPath::from(format!("{}/{}", p.as_ref(), file.relative)),
                    None => ObjectPath::from(file.relative.as_str()),
                };
                let url = format!("{label}/{}", file.relative);
                download(store.as_ref(), &key, file, dest, &url).await
            }
        }
    }
}

fn open_s3(s3: &S3Location) -> Result<Source, String> {
    use object_store::aws::AmazonS3Builder;
    use object_store::{BackoffConfig, ClientOptions, RetryConfig};
    // reqwest is built without a provider of its own: use the workspace's (ring).
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(&s3.bucket);
    if let Some(endpoint) = &s3.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    let endpoint = s3
        .endpoint
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .unwrap_or_default();
    if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
        // S3-compatible stores mostly ignore the region, but it is signed.
        builder = builder.with_region("us-east-1");
    }
    let options = ClientOptions::new()
        .with_allow_http(endpoint.starts_with("http://"))
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(60));
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
    };
    let store = builder
        .with_client_options(options)
        .with_retry(retry)
        .build()
        .map_err(|e| format!("cannot use {s3}: {e}"))?;
    Ok(Source::Remote {
        store: Arc::new(store),
        prefix: (!s3.prefix.is_empty()).then(|| ObjectPath::from(s3.prefix.as_str())),
        label: s3.to_string(),
    })
}

/// An object-store error, said so that the user knows what to check.
fn explain(e: &object_store::Error, what: &str) -> String {
    use object_store::Error as E;
    let text = e.to_string();
    let hint = match e {
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
            "the credentials were refused: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY \
             (and AWS_SESSION_TOKEN) and their permissions on the bucket"
        }
        _ if text.contains("NoSuchBucket") => {
            "the bucket does not exist: check the bucket name, AWS_REGION and AWS_ENDPOINT_URL"
        }
        _ if text.contains("InvalidAccessKeyId")
            || text.contains("SignatureDoesNotMatch")
            || text.contains("403") =>
        {
            "the credentials were refused: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY \
             (and AWS_SESSION_TOKEN) and their permissions on the bucket"
        }
        E::NotFound { .. } => "it is not there (was it removed?)",
        _ if text.contains("connect") || text.contains("error sending request") => {
            "the store could not be reached: check AWS_ENDPOINT_URL (or the host in the URL) \
             and the network"
        }
        _ => "",
    };
    if hint.is_empty() {
        format!("{what}: {text}")
    } else {
        format!("{what}: {hint} ({text})")
    }
}

/// Whether another attempt could succeed.
fn transient(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    !matches!(
        e,
        E::NotFound { .. }
            | E::Precondition { .. }
            | E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::InvalidPath { .. }
            | E::NotSupported { .. }
    )
}

async fn download(
    store: &dyn ObjectStore,
    key: &ObjectPath,
    file: &Listed,
    dest: &Path,
    url: &str,
) -> Result<(), String> {
    let mut out = std::fs::File::create(dest)
        .map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let mut progress = Progress::new(url, file.size);
    let mut written = 0u64;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let options = GetOptions {
            // The object listed, not one replaced since (it is fetched at the next sync).
            if_match: (!file.tag.is_empty() && file.tag.starts_with('"')).then(|| file.tag.clone()),
            range: (written > 0).then_some(GetRange::Offset(written)),
            ..Default::default()
        };
        let failure = match store.get_opts(key, options).await {
            Err(e) => e,
            Ok(result) => {
                let mut stream = result.into_stream();
                let mut broke = None;
                while let Some(chunk) = stream.next().await {
                    match chunk {
                        Ok(bytes) => {
                            out.write_all(&bytes)
                                .map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
                            written += bytes.len() as u64;
                            progress.update(written);
                        }
                        Err(e) => {
                            broke = Some(e);
                            break;
                        }
                    }
                }
                match broke {
                    None => break,
                    Some(e) => e,
                }
            }
        };
        if !transient(&failure) || attempt >= DOWNLOAD_ATTEMPTS {
            return Err(explain(
                &failure,
                &format!(
                    "cannot download {url} (after {attempt} attempt(s), {written} of {} bytes)",
                    file.size
                ),
            ));
        }
        tracing::warn!(
            "download of {url} broke at {written} of {} bytes ({failure}); resuming (attempt {} of {DOWNLOAD_ATTEMPTS})",
            file.size,
            attempt + 1
        );
        tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
    }
    out.sync_all()
        .map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
    progress.done(written);
    check_size(written, file, url)
}

fn check_size(got: u64, file: &Listed, what: &str) -> Result<(), String> {
    if got == file.size {
        Ok(())
    } else {
        Err(format!(
            "{what}: got {got} bytes where the listing said {}; the file changed while it was copied, \
             or the store is inconsistent (it is fetched again at the next sync)",
            file.size
        ))
    }
}

/// Progress lines for a large download, at most every 5 seconds.
struct Progress<'a> {
    url: &'a str,
    size: u64,
    started: Instant,
    last: Instant,
}

impl<'a> Progress<'a> {
    fn new(url: &'a str, size: u64) -> Self {
        if size >= PROGRESS_BYTES {
            tracing::info!("downloading {url} ({} MiB)", size >> 20);
        }
        let now = Instant::now();
        Progress {
            url,
            size,
            started: now,
            last: now,
        }
    }

    fn update(&mut self, written: u64) {
        if self.size >= PROGRESS_BYTES && self.last.elapsed() >= Duration::from_secs(5) {
            self.last = Instant::now();
            tracing::info!(
                "downloading {}: {} of {} MiB ({}%)",
                self.url,
                written >> 20,
                self.size >> 20,
                written * 100 / self.size.max(1)
            );
        }
    }

    fn done(&self, written: u64) {
        let secs = self.started.elapsed().as_secs_f64();
        if self.size >= PROGRESS_BYTES {
            tracing::info!(
                "downloaded {} ({} MiB in {secs:.1} s)",
                self.url,
                written >> 20
            );
        } else {
            tracing::debug!("downloaded {} ({written} bytes in {secs:.2} s)", self.url);
        }
    }
}

/// Every regular file below `root` (links followed), as `/`-separated paths.
/// How deep a local repository is listed below its root.
const MAX_LIST_DEPTH: usize = 16;

fn list_local(root: &Path) -> Result<Vec<Listed>, String> {
    let mut files = Vec::new();
    // Each folder is listed once, by its real path: links that loop back
    // (a `x -> .`) are not followed round and round; and no deeper than
    // any repository goes.
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let real = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
        if !seen.insert(real) || depth > MAX_LIST_DEPTH {
            continue;
        }
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| format!("cannot read the model repository {}: {e}", dir.display()))?;
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push((path, depth + 1));
            } else if meta.is_file() {
                let Some(relative) = path
                    .strip_prefix(root)
                    .ok()
                    .and_then(|r| r.to_str())
                    .map(|r| r.replace(std::path::MAIN_SEPARATOR, "/"))
                else {
                    continue;
                };
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .unwrap_or_default();
                files.push(Listed {
                    relative,
                    size: meta.len(),
                    tag: format!("mtime:{modified}"),
                });
            }
        }
    }
    Ok(files)
}
