//! The TLS flags of `anemone serve`: Triton's names for gRPC, and the same
//! three files under `--http-tls-*` for HTTP (Triton has no HTTPS of its own).

use anemone_server::tls::{TlsFiles, TlsOptions};
use clap::builder::BoolishValueParser;
use std::path::PathBuf;

/// TLS and client-certificate (mTLS) flags; by default both listeners serve plain text.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// Serve HTTPS on the HTTP port with this PEM certificate chain (leaf first);
    /// needs --http-tls-key. Plain HTTP requests then get 400. [default: plain HTTP]
    #[arg(long, value_name = "FILE", env = "ANEMONE_HTTP_TLS_CERT")]
    pub http_tls_cert: Option<PathBuf>,

    /// The PEM private key of --http-tls-cert (PKCS#8, RSA or EC; unencrypted). [default: none]
    #[arg(long, value_name = "FILE", env = "ANEMONE_HTTP_TLS_KEY")]
    pub http_tls_key: Option<PathBuf>,

    /// Require HTTPS clients to present a certificate signed by a CA in this PEM file
    /// (mutual TLS); others are refused in the handshake. [default: no client certificate]
    #[arg(long, value_name = "FILE", env = "ANEMONE_HTTP_TLS_CLIENT_CA")]
    pub http_tls_client_ca: Option<PathBuf>,

    /// Serve gRPC over TLS (Triton's flag); needs --grpc-server-cert and
    /// --grpc-server-key. Takes an optional true/false (`--grpc-use-ssl`,
    /// `--grpc-use-ssl=true` and Triton's `--grpc-use-ssl true` are the same).
    #[arg(long, env = "ANEMONE_GRPC_USE_SSL", value_parser = BoolishValueParser::new(),
          num_args = 0..=1, default_missing_value = "true",
          default_value_t = false, action = clap::ArgAction::Set)]
    pub grpc_use_ssl: bool,

    /// Serve gRPC over TLS and require clients to present a certificate signed by
    /// --grpc-root-cert (Triton's flag; implies --grpc-use-ssl).
    #[arg(long, env = "ANEMONE_GRPC_USE_SSL_MUTUAL", value_parser = BoolishValueParser::new(),
          num_args = 0..=1, default_missing_value = "true",
          default_value_t = false, action = clap::ArgAction::Set)]
    pub grpc_use_ssl_mutual: bool,

    /// The gRPC server's PEM certificate chain, leaf first. [default: none]
    #[arg(long, value_name = "FILE", env = "ANEMONE_GRPC_SERVER_CERT")]
    pub grpc_server_cert: Option<PathBuf>,

    /// The PEM private key of --grpc-server-cert (PKCS#8, RSA or EC; unencrypted). [default: none]
    #[arg(long, value_name = "FILE", env = "ANEMONE_GRPC_SERVER_KEY")]
    pub grpc_server_key: Option<PathBuf>,

    /// PEM CA certificates that sign gRPC client certificates; used with
    /// --grpc-use-ssl-mutual. [default: none]
    #[arg(long, value_name = "FILE", env = "ANEMONE_GRPC_ROOT_CERT")]
    pub grpc_root_cert: Option<PathBuf>,
}

/// A combination of TLS flags that cannot work: a flag mistake (exit 2).
fn mistake(message: &str) -> anyhow::Error {
    crate::output::mistake(message.to_string())
}

impl TlsArgs {
    /// Checks that the flags go together (a certificate without its key, or
    /// files given without TLS switched on, are refused rather than ignored:
    /// serving plain text by mistake is worse than not starting).
    pub fn options(&self) -> anyhow::Result<TlsOptions> {
        Ok(TlsOptions {
            http: self.http()?,
            grpc: self.grpc()?,
        })
    }

    fn http(&self) -> anyhow::Result<Option<TlsFiles>> {
        let flags = ["--http-tls-cert", "--http-tls-key", "--http-tls-client-ca"];
        match (&self.http_tls_cert, &self.http_tls_key) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.http_tls_client_ca.clone(),
                flags,
            })),
            (Some(_), None) => Err(mistake(
                "--http-tls-cert needs --http-tls-key: the certificate's private key",
            )),
            (None, Some(_)) => Err(mistake(
                "--http-tls-key needs --http-tls-cert: the certificate it belongs to",
            )),
            (None, None) if self.http_tls_client_ca.is_some() => Err(mistake(
                "--http-tls-client-ca asks HTTPS clients for certificates, but HTTPS is off; \
                 add --http-tls-cert and --http-tls-key",
            )),
            (None, None) => Ok(None),
        }
    }

    fn grpc(&self) -> anyhow::Result<Option<TlsFiles>> {
        let flags = [
            "--grpc-server-cert",
            "--grpc-server-key",
            "--grpc-root-cert",
        ];
        if !self.grpc_use_ssl && !self.grpc_use_ssl_mutual {
            let given = [
                (flags[0], self.grpc_server_cert.is_some()),
                (flags[1], self.grpc_server_key.is_some()),
                (flags[2], self.grpc_root_cert.is_some()),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
                return Err(mistake(&format!(
                    "{flag} is set but gRPC TLS is off; add --grpc-use-ssl (or \
                     --grpc-use-ssl-mutual to require client certificates)"
                )));
            }
            return Ok(None);
        }
        let switch = if self.grpc_use_ssl_mutual {
            "--grpc-use-ssl-mutual"
        } else {
            "--grpc-use-ssl"
        };
        let (Some(cert), Some(key)) = (&self.grpc_server_cert, &self.grpc_server_key) else {
            return Err(mistake(&format!(
                "{switch} needs --grpc-server-cert and --grpc-server-key (PEM files)"
            )));
        };
        let client_ca = match (self.grpc_use_ssl_mutual, &self.grpc_root_cert) {
            (true, None) => {
                return Err(mistake(
                    "--grpc-use-ssl-mutual needs --grpc-root-cert: the CA that signs client certificates",
                ))
            }
            (false, Some(_)) => {
                return Err(mistake(
                    "--grpc-root-cert is only used to check client certificates; add \
                     --grpc-use-ssl-mutual to require them, or drop --grpc-root-cert",
                ))
            }
            (_, ca) => ca.clone(),
        };
        Ok(Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca,
            flags,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        tls: TlsArgs,
    }

    fn options(args: &[&str]) -> anyhow::Result<TlsOptions> {
        let cli = Cli::try_parse_from(std::iter::once("anemone").chain(args.iter().copied()))?;
        cli.tls.options()
    }

    #[test]
    fn nothing_given_is_plain_text() {
        assert_eq!(options(&[]).unwrap(), TlsOptions::default());
    }

    #[test]
    fn triton_grpc_flags_take_an_optional_boolean() {
        let mutual = options(&[
            "--grpc-use-ssl-mutual=true",
            "--grpc-server-cert",
            "c.pem",
            "--grpc-server-key",
            "k.pem",
            "--grpc-root-cert",
            "ca.pem",
        ])
        .unwrap()
        .grpc
        .unwrap();
        assert_eq!(mutual.client_ca, Some(PathBuf::from("ca.pem")));
        let plain = options(&[
            "--grpc-use-ssl",
            "--grpc-server-cert",
            "c.pem",
            "--grpc-server-key",
            "k.pem",
        ])
        .unwrap()
        .grpc
        .unwrap();
        assert_eq!(plain.client_ca, None);
        assert_eq!(plain.cert, PathBuf::from("c.pem"));
        let off = options(&["--grpc-use-ssl=false"]).unwrap();
        assert_eq!(off.grpc, None);
        // Triton's command line also writes the value as the next word.
        let spaced = options(&[
            "--grpc-use-ssl",
            "true",
            "--grpc-server-cert",
            "c.pem",
            "--grpc-server-key",
            "k.pem",
        ])
        .unwrap();
        assert_eq!(spaced.grpc.unwrap().cert, PathBuf::from("c.pem"));
        assert_eq!(options(&["--grpc-use-ssl", "false"]).unwrap().grpc, None);
    }

    #[test]
    fn files_without_tls_switched_on_are_refused() {
        let e = options(&["--grpc-server-cert", "c.pem", "--grpc-server-key", "k.pem"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("add --grpc-use-ssl"), "{e}");
        let e = options(&["--http-tls-client-ca", "ca.pem"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("add --http-tls-cert"), "{e}");
        let e = options(&[
            "--grpc-use-ssl",
            "--grpc-server-cert",
            "c.pem",
            "--grpc-server-key",
            "k.pem",
            "--grpc-root-cert",
            "ca.pem",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("--grpc-use-ssl-mutual"), "{e}");
    }

    #[test]
    fn a_certificate_needs_its_key() {
        let e = options(&["--http-tls-cert", "c.pem"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs --http-tls-key"), "{e}");
        let e = options(&["--grpc-use-ssl", "--grpc-server-cert", "c.pem"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("needs --grpc-server-cert and --grpc-server-key"),
            "{e}"
        );
        let e = options(&[
            "--grpc-use-ssl-mutual",
            "--grpc-server-cert",
            "c.pem",
            "--grpc-server-key",
            "k.pem",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("needs --grpc-root-cert"), "{e}");
    }
}
