//! TLS for the HTTP and gRPC listeners, on rustls with the `ring` crypto
//! provider, with optional client-certificate authentication (mTLS).
//!
//! [`TlsOptions`] names PEM files; [`TlsOptions::load`] reads and checks them
//! once, at start-up, and says which file is wrong and what to do: a file
//! that cannot be read, one with no certificate or no key in it, a key that
//! does not belong to its certificate, a client CA file with no usable CA.
//! Nothing here panics on a bad file.
//!
//! Each listener has its own files, so HTTP and gRPC may use different
//! certificates (or only one of them TLS). Both speak TLS 1.2 and 1.3.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

/// How long a gRPC client may take to finish its TLS handshake; then its
/// connection is closed. (An HTTP client gets `--http-header-timeout-secs`.)
pub const GRPC_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The PEM files of one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain, leaf first (`BEGIN CERTIFICATE`).
    pub cert: PathBuf,
    /// The server's private key: PKCS#8 (`BEGIN PRIVATE KEY`), PKCS#1
    /// (`BEGIN RSA PRIVATE KEY`) or SEC1 (`BEGIN EC PRIVATE KEY`).
    pub key: PathBuf,
    /// CA certificates that sign client certificates. When set, every client
    /// must present a certificate signed by one of them (mutual TLS) or is
    /// refused during the handshake. By default, `None`: no client
    /// certificate is asked for.
    pub client_ca: Option<PathBuf>,
    /// The command-line flags that name `cert`, `key` and `client_ca`, in
    /// that order, for error messages (`--http-tls-cert`, ...).
    pub flags: [&'static str; 3],
}

/// TLS on each listener. By default, neither: both serve plain text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// HTTPS on the HTTP port. By default, `None`: plain HTTP.
    pub http: Option<TlsFiles>,
    /// TLS on the gRPC port. By default, `None`: plain (h2c) gRPC.
    pub grpc: Option<TlsFiles>,
}

/// A certificate or key file that cannot be used; the message names the
/// file, the flag that gave it and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// [`TlsOptions`], read and checked.
#[derive(Clone, Default)]
pub struct LoadedTls {
    /// The HTTP listener's rustls configuration (ALPN `http/1.1`).
    pub http: Option<Arc<ServerConfig>>,
    /// The gRPC listener's configuration, in tonic's terms.
    pub grpc: Option<tonic::transport::ServerTlsConfig>,
}

impl std::fmt::Debug for LoadedTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedTls")
            .field("http", &self.http.is_some())
            .field("grpc", &self.grpc.is_some())
            .finish()
    }
}

impl TlsOptions {
    /// Reads and checks every file named; an error names the file that is wrong.
    pub fn load(&self) -> Result<LoadedTls, TlsError> {
        if self.http.is_none() && self.grpc.is_none() {
            return Ok(LoadedTls::default());
        }
        // tonic builds its configuration with the process's default
        // provider: make it ring, whatever features other crates turn on.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = match &self.http {
            Some(files) => {
                let mut config = files.load("HTTP")?.config;
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                Some(Arc::new(config))
            }
            None => None,
        };
        let grpc = match &self.grpc {
            Some(files) => {
                let pem = files.load("gRPC")?;
                let identity = tonic::transport::Identity::from_pem(&pem.cert, &pem.key);
                let mut config = tonic::transport::ServerTlsConfig::new()
                    .identity(identity)
                    .timeout(GRPC_HANDSHAKE_TIMEOUT);
                if let Some(ca) = &pem.client_ca {
                    config = config.client_ca_root(tonic::transport::Certificate::from_pem(ca));
                }
                // tonic parses the same files again: any refusal shows now.
                tonic::transport::Server::builder()
                    .tls_config(config.clone())
                    .map_err(|e| {
                        TlsError(format!(
                            "gRPC TLS: cannot use the certificate {} with the key {}: {e}",
                            files.cert.display(),
                            files.key.display()
                        ))
                    })?;
                Some(config)
            }
            None => None,
        };
        Ok(LoadedTls { http, grpc })
    }
}

/// The files of one listener, read, and the configuration built from them.
struct Pem {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
    config: ServerConfig,
}

/// The most a certificate, key or CA file may hold: PEM chains are a few KiB,
/// and the bound stops paths that never end (`/dev/zero`, a pipe).
pub const MAX_PEM_BYTES: u64 = 1 << 20;

/// A PEM file other than a listener's (the OTLP exporter's
/// `--otlp-ca-cert`): a regular file of at most [`MAX_PEM_BYTES`], refused
/// at once otherwise (`/dev/zero`, a pipe, a folder), with why.
pub fn read_pem_file(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file; give a PEM file".into());
    }
    let bytes = read_bounded(path).map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(format!(
            "holds more than {MAX_PEM_BYTES} bytes; a PEM file of certificates is a few KiB"
        ));
    }
    Ok(bytes)
}

/// At most [`MAX_PEM_BYTES`] + 1 bytes of `path` (one more says "too
/// large"); a pipe that nothing writes to is refused after a wait.
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    crate::bounded_read::read_bounded(path, MAX_PEM_BYTES)
}

impl TlsFiles {
    fn load(&self, listener: &str) -> Result<Pem, TlsError> {
        let [cert_flag, key_flag, ca_flag] = self.flags;
        let fail = |path: &Path, flag: &str, what: String| {
            TlsError(format!(
                "{listener} TLS: {} ({flag}) {what}",
                path.display()
            ))
        };
        let read = |path: &Path, flag: &str| {
            let bytes = read_bounded(path).map_err(|e| {
                fail(
                    path,
                    flag,
                    format!("cannot be read: {e}; give a readable PEM file"),
                )
            })?;
            if bytes.len() as u64 > MAX_PEM_BYTES {
                return Err(fail(
                    path,
                    flag,
                    format!(
                        "is larger than {} KiB; give a PEM file",
                        MAX_PEM_BYTES >> 10
                    ),
                ));
            }
            Ok(bytes)
        };

        let cert = read(&self.cert, cert_flag)?;
        let chain = CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                fail(
                    &self.cert,
                    cert_flag,
                    format!("is not valid PEM ({e}); give the certificate as PEM"),
                )
            })?;
        if chain.is_empty() {
            return Err(fail(
                &self.cert,
                cert_flag,
                "holds no certificate (no BEGIN CERTIFICATE block); give the server's \
                 certificate chain as PEM, leaf first"
                    .into(),
            ));
        }

        let key = read(&self.key, key_flag)?;
        let private = PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
            let why = match e {
                rustls::pki_types::pem::Error::NoItemsFound => "holds no private key".to_string(),
                e => format!("is not valid PEM ({e})"),
            };
            fail(
                &self.key,
                key_flag,
                format!(
                    "{why}; give the certificate's private key as PEM: BEGIN PRIVATE KEY \
                     (PKCS#8), BEGIN RSA PRIVATE KEY or BEGIN EC PRIVATE KEY, unencrypted"
                ),
            )
        })?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(format!("{listener} TLS: cannot set up rustls: {e}")))?;
        let (builder, client_ca) = match &self.client_ca {
            None => (builder.with_no_client_auth(), None),
            Some(path) => {
                let ca = read(path, ca_flag)?;
                let mut roots = RootCertStore::empty();
                let mut bad = None;
                for c in CertificateDer::pem_slice_iter(&ca) {
                    match c
                        .map_err(|e| e.to_string())
                        .and_then(|c| roots.add(c).map_err(|e| e.to_string()))
                    {
                        Ok(()) => {}
                        Err(e) => bad = Some(e),
                    }
                }
                if let Some(e) = bad {
                    return Err(fail(
                        path,
                        ca_flag,
                        format!("holds a certificate that cannot be used as a CA: {e}"),
                    ));
                }
                if roots.is_empty() {
                    return Err(fail(
                        path,
                        ca_flag,
                        "holds no certificate (no BEGIN CERTIFICATE block); give the CA \
                         certificates that sign client certificates, as PEM"
                            .into(),
                    ));
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| {
                            fail(path, ca_flag, format!("cannot verify clients with it: {e}"))
                        })?;
                (builder.with_client_cert_verifier(verifier), Some(ca))
            }
        };
        let config = builder
            .with_single_cert(chain, private)
            .map_err(|e| match e {
                rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                    TlsError(format!(
                        "{listener} TLS: the private key {} ({key_flag}) does not belong to the \
                     certificate {} ({cert_flag}); give the key the certificate was made for",
                        self.key.display(),
                        self.cert.display()
                    ))
                }
                e => {
                    // rustls takes X.509 version 3 certificates only; Triton's
                    // QA recipe (`openssl x509 -req` without extensions)
                    // makes version 1 ones.
                    let v1 = e.to_string().contains("UnsupportedCertVersion");
                    let fix = match v1 {
                        true => {
                            "; it is an X.509 version 1 certificate, and anemone's TLS takes \
                             version 3 only: sign it again with extensions, e.g. `openssl x509 \
                             -req ... -extfile <(printf 'subjectAltName=DNS:localhost')` \
                             (docs/SECURITY.md)"
                        }
                        false => "",
                    };
                    TlsError(format!(
                        "{listener} TLS: cannot use the certificate {} ({cert_flag}) with the \
                         key {} ({key_flag}): {e}{fix}",
                        self.cert.display(),
                        self.key.display()
                    ))
                }
            })?;
        Ok(Pem {
            cert,
            key,
            client_ca,
            config,
        })
    }
}
