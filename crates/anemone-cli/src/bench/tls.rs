//! TLS for `anemone bench`'s connections to an `https://` URL: the CA the
//! server's certificate is checked against (`--ca-cert`) and, for mutual
//! TLS, the client's own certificate (`--client-cert`, `--client-key`).

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// The PEM files named on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsPaths {
    /// `--ca-cert`: the CA certificates to trust.
    pub ca: Option<PathBuf>,
    /// `--client-cert`: a certificate chain to present (mTLS).
    pub cert: Option<PathBuf>,
    /// `--client-key`: its private key.
    pub key: Option<PathBuf>,
}

/// The files, read and checked: ready to open connections.
pub struct ClientTls {
    ca: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    rustls: Arc<ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

/// The most a PEM file may hold (as the server's own TLS files).
const MAX_PEM_BYTES: u64 = 1 << 20;

/// A PEM file, read with a bound (a device never ends) and a deadline (a
/// pipe nothing writes to would block for ever).
fn read(path: &Path, flag: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = anemone_server::bounded_read::read_bounded(path, MAX_PEM_BYTES)
        .with_context(|| format!("cannot read {flag} {}", path.display()))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        bail!(
            "cannot read {flag} {}: it holds more than {MAX_PEM_BYTES} bytes, more than a PEM \
             file does",
            path.display()
        );
    }
    Ok(bytes)
}

impl TlsPaths {
    /// Whether any file was named.
    pub fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// Reads and checks the files; an error names the file and the flag.
    pub fn load(&self) -> anyhow::Result<ClientTls> {
        let Some(ca_path) = &self.ca else {
            bail!(
                "an https:// URL needs --ca-cert FILE: the CA certificate that signed the \
                 server's certificate (PEM)"
            );
        };
        let ca = read(ca_path, "--ca-cert")?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca) {
            let cert =
                cert.with_context(|| format!("--ca-cert {} is not valid PEM", ca_path.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("--ca-cert {} holds an unusable CA", ca_path.display()))?;
        }
        if roots.is_empty() {
            bail!(
                "--ca-cert {} holds no certificate (no BEGIN CERTIFICATE block)",
                ca_path.display()
            );
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("cannot set up rustls")?
            .with_root_certificates(roots);
        let (config, identity) = match (&self.cert, &self.key) {
            (None, None) => (builder.with_no_client_auth(), None),
            (Some(cert_path), Some(key_path)) => {
                let cert = read(cert_path, "--client-cert")?;
                let key = read(key_path, "--client-key")?;
                let chain = CertificateDer::pem_slice_iter(&cert)
                    .collect::<Result<Vec<_>, _>>()
                    .ok()
                    .filter(|c| !c.is_empty())
                    .with_context(|| {
                        format!(
                            "--client-cert {} holds no PEM certificate",
                            cert_path.display()
                        )
                    })?;
                let private = PrivateKeyDer::from_pem_slice(&key).with_context(|| {
                    format!(
                        "--client-key {} holds no PEM private key",
                        key_path.display()
                    )
                })?;
                let config = builder
                    .with_client_auth_cert(chain, private)
                    .with_context(|| {
                        format!(
                            "cannot use --client-cert {} with --client-key {}",
                            cert_path.display(),
                            key_path.display()
                        )
                    })?;
                (config, Some((cert, key)))
            }
            (Some(_), None) => bail!("--client-cert needs --client-key: its private key"),
            (None, Some(_)) => bail!("--client-key needs --client-cert: its certificate"),
        };
        Ok(ClientTls {
            ca,
            identity,
            rustls: Arc::new(config),
        })
    }
}

impl ClientTls {
    /// tonic's configuration, checking the server's name against `host`.
    pub fn tonic(&self, host: &str) -> tonic::transport::ClientTlsConfig {
        let mut config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca))
            .domain_name(host);
        if let Some((cert, key)) = &self.identity {
            config = config.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        config
    }

    /// The TLS handshake on `tcp`, checking the server's name against `host`.
    pub async fn connect(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, String> {
        let name = ServerName::try_from(host.trim_matches(|c| c == '[' || c == ']').to_string())
            .map_err(|e| format!("'{host}' is not a TLS server name: {e}"))?;
        tokio_rustls::TlsConnector::from(Arc::clone(&self.rustls))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {host}: {e}"))
    }
}
