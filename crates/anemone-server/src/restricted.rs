//! Restricted API groups, as Triton's `--http-restricted-api` and
//! `--grpc-restricted-protocol`: requests to a restricted group must carry a
//! header with a value the server was given, or are refused (HTTP 403, gRPC
//! PERMISSION_DENIED) before any handler runs.
//!
//! A group is `<api>,<api>,...:<key>=<value>`. Over HTTP the header is
//! `<key>`; over gRPC it is `triton-grpc-protocol-<key>`, as Triton's clients
//! send it. Each API may be in one group only. The refusal names the header
//! to send, never the value expected, and the value is compared in constant
//! time.

use std::fmt;
use std::sync::Arc;

/// An API group a restriction can cover (Triton's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// Server live/ready, model ready; over gRPC also `grpc.health.v1`.
    Health,
    /// Server and model metadata.
    Metadata,
    /// Inference.
    Inference,
    /// Shared memory registration (not implemented by anemone).
    SharedMemory,
    /// A model's configuration.
    ModelConfig,
    /// The repository index, load and unload.
    ModelRepository,
    /// Statistics.
    Statistics,
    /// Trace settings (`/v2/trace/setting`, the `TraceSetting` RPC).
    Trace,
    /// Log settings (`/v2/logging`, gRPC LogSettings).
    Logging,
    /// anemone's settings and feature gates (`/v2/anemone/config`); not Triton's.
    Config,
}

impl Api {
    /// Every group, in Triton's order.
    pub const ALL: [Api; 10] = [
        Api::Health,
        Api::Metadata,
        Api::Inference,
        Api::SharedMemory,
        Api::ModelConfig,
        Api::ModelRepository,
        Api::Statistics,
        Api::Trace,
        Api::Logging,
        Api::Config,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Api::Health => "health",
            Api::Metadata => "metadata",
            Api::Inference => "inference",
            Api::SharedMemory => "shared-memory",
            Api::ModelConfig => "model-config",
            Api::ModelRepository => "model-repository",
            Api::Statistics => "statistics",
            Api::Trace => "trace",
            Api::Logging => "logging",
            Api::Config => "config",
        }
    }

    fn parse(name: &str) -> Option<Api> {
        Api::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The group of a gRPC method of `inference.GRPCInferenceService` (or of
    /// `grpc.health.v1.Health`), from the request path `/<service>/<method>`.
    pub fn of_grpc_path(path: &str) -> Option<Api> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        if service == "grpc.health.v1.Health" {
            return Some(Api::Health);
        }
        Some(match method {
            "ServerLive" | "ServerReady" | "ModelReady" => Api::Health,
            "ServerMetadata" | "ModelMetadata" => Api::Metadata,
            "ModelInfer" | "ModelStreamInfer" => Api::Inference,
            "ModelConfig" => Api::ModelConfig,
            "ModelStatistics" => Api::Statistics,
            "RepositoryIndex" | "RepositoryModelLoad" | "RepositoryModelUnload" => {
                Api::ModelRepository
            }
            "TraceSetting" => Api::Trace,
            "LogSettings" => Api::Logging,
            m if m.contains("SharedMemory") => Api::SharedMemory,
            _ => return None,
        })
    }
}

/// One restriction: the header a request must carry, and its value.
pub struct Rule {
    /// The header name, lowercase (for gRPC with Triton's prefix).
    header: axum::http::HeaderName,
    value: Box<[u8]>,
    /// The flag it came from, for messages.
    flag: &'static str,
}

impl Rule {
    /// Whether `headers` carry the right value.
    pub fn allows(&self, headers: &axum::http::HeaderMap) -> bool {
        headers
            .get(&self.header)
            .is_some_and(|v| constant_time_eq(&self.value, v.as_bytes()))
    }

    /// What the refusal says: the header to send, never the value.
    pub fn refusal(&self, api: Api) -> String {
        format!(
            "the '{}' API is restricted: send the header '{}' with the value the server was given ({})",
            api.name(),
            self.header,
            self.flag
        )
    }
}

/// Whether `given` is `expected`, in a time that depends on the length of
/// `expected` only: not on where `given` differs, nor on whether its
/// length does (an early return there told a client the key's length).
fn constant_time_eq(expected: &[u8], given: &[u8]) -> bool {
    let mut diff = u8::from(expected.len() != given.len());
    for (i, x) in expected.iter().enumerate() {
        diff |= x ^ given.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// The restrictions of one protocol: at most one [`Rule`] per [`Api`].
#[derive(Clone, Default)]
pub struct Restrictions {
    rules: [Option<Arc<Rule>>; 10],
}

impl Restrictions {
    /// Parses `--http-restricted-api` values (`grpc == false`) or
    /// `--grpc-restricted-protocol` values: each `<api>,...:<key>=<value>`.
    pub fn parse(groups: &[String], grpc: bool) -> Result<Restrictions, String> {
        let flag = if grpc {
            "--grpc-restricted-protocol"
        } else {
            "--http-restricted-api"
        };
        let mut out = Restrictions::default();
        for group in groups {
            let bad = |why: &str| {
                format!("{flag} '{}': {why}; the form is <api>[,<api>...]:<key>=<value>, e.g. model-repository:admin-key=secret", redact(group))
            };
            let (apis, setting) = group.split_once(':').ok_or_else(|| bad("no ':'"))?;
            let (key, value) = setting
                .split_once('=')
                .ok_or_else(|| bad("no '=' after the key"))?;
            let key = key.trim().to_ascii_lowercase();
            if key.is_empty() || value.is_empty() {
                return Err(bad("the key and the value must not be empty"));
            }
            let name = if grpc {
                format!("triton-grpc-protocol-{key}")
            } else {
                key
            };
            let header = axum::http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad("the key is not a valid header name"))?;
            let rule = Arc::new(Rule {
                header,
                value: value.as_bytes().into(),
                flag,
            });
            for api in apis.split(',').map(str::trim) {
                let known = Api::parse(api).ok_or_else(|| {
                    let names: Vec<&str> = Api::ALL.iter().map(|a| a.name()).collect();
                    bad(&format!(
                        "unknown API '{api}'; the APIs are {}",
                        names.join(", ")
                    ))
                })?;
                let slot = &mut out.rules[known as usize];
                if slot.is_some() {
                    return Err(format!(
                        "{flag}: API '{api}' can not be specified in multiple groups"
                    ));
                }
                *slot = Some(Arc::clone(&rule));
            }
        }
        Ok(out)
    }

    /// The rule covering `api`, if it is restricted.
    pub fn rule(&self, api: Api) -> Option<&Arc<Rule>> {
        self.rules[api as usize].as_ref()
    }

    /// Whether nothing is restricted.
    pub fn is_empty(&self) -> bool {
        self.rules.iter().all(Option::is_none)
    }
}

/// The group text with its value left out, for messages: the APIs and
/// the key; what follows the ':' when there is no '=' (a forgotten key
/// leaves the value there), and the whole of a group without a ':'.
fn redact(group: &str) -> String {
    match group.split_once(':') {
        Some((apis, setting)) => match setting.split_once('=') {
            Some((key, _)) => format!("{apis}:{key}=…"),
            None => format!("{apis}:…"),
        },
        None => "…".to_string(),
    }
}

impl fmt::Debug for Restrictions {
    /// Lists the restricted APIs and their headers; values are never shown.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_map()
            .entries(
                Api::ALL
                    .iter()
                    .filter_map(|a| Some((a.name(), self.rule(*a)?.header.as_str()))),
            )
            .finish()
    }
}

/// Both protocols' restrictions, as `anemone serve` is given them.
#[derive(Debug, Clone, Default)]
pub struct RestrictedApi {
    /// From `--http-restricted-api`. By default, nothing is restricted.
    pub http: Restrictions,
    /// From `--grpc-restricted-protocol`. By default, nothing is restricted.
    pub grpc: Restrictions,
    /// From `--http-allow-origin`: the web pages that may use the HTTP API
    /// (requests with an `Origin` header). By default, none.
    pub origins: crate::origins::AllowedOrigins,
    /// From `--http-allow-host`: the names the HTTP and metrics listeners
    /// answer to besides IP addresses, `localhost` and names of one label.
    /// By default, none (checked on loopback listeners only).
    pub hosts: crate::hosts::AllowedHosts,
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    #[test]
    fn the_key_compare_takes_only_the_exact_value() {
        for (given, same) in [
            (&b"S3cret"[..], true),
            (b"S3cre", false),
            (b"S3cret!", false),
            (b"S3cret\0", false),
            (b"", false),
            (b"s3cret", false),
        ] {
            assert_eq!(constant_time_eq(b"S3cret", given), same, "{given:?}");
        }
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn groups_parse_as_triton_writes_them() {
        let r = Restrictions::parse(
            &[
                "model-repository,model-config:Admin-Key=s3cret".into(),
                "inference:user=u".into(),
            ],
            false,
        )
        .unwrap();
        let rule = r.rule(Api::ModelRepository).unwrap();
        assert!(r.rule(Api::Health).is_none());
        let mut h = HeaderMap::new();
        assert!(!rule.allows(&h));
        h.insert("admin-key", "s3cre".parse().unwrap());
        assert!(!rule.allows(&h));
        h.insert("admin-key", "s3cret".parse().unwrap());
        assert!(rule.allows(&h));
        assert!(r.rule(Api::ModelConfig).unwrap().allows(&h));
        assert!(!r.rule(Api::Inference).unwrap().allows(&h));
        let message = rule.refusal(Api::ModelRepository);
        assert!(message.contains("'admin-key'") && !message.contains("s3cret"));
        assert!(!format!("{r:?}").contains("s3cret"));

        let g = Restrictions::parse(&["health:k=v".into()], true).unwrap();
        assert_eq!(
            g.rule(Api::Health).unwrap().header.as_str(),
            "triton-grpc-protocol-k"
        );
    }

    #[test]
    fn bad_groups_say_what_is_wrong_without_the_value() {
        let e = |g: &str| Restrictions::parse(&[g.into()], false).unwrap_err();
        assert!(e("model-repository").contains("no ':'"));
        assert!(e("model-repository:key").contains("no '='"));
        // A forgotten key leaves the value after the ':': never repeated.
        let forgot = e("model-repository:TopS3cret");
        assert!(
            forgot.contains("'model-repository:…'") && !forgot.contains("TopS3cret"),
            "{forgot}"
        );
        assert!(!e("TopS3cret").contains("TopS3cret"));
        assert!(e("model-repository:=v").contains("must not be empty"));
        let unknown = e("repository:k=topsecret");
        assert!(
            unknown.contains("unknown API 'repository'") && !unknown.contains("topsecret"),
            "{unknown}"
        );
        let twice = Restrictions::parse(&["health,metadata:a=1".into(), "health:b=2".into()], true)
            .unwrap_err();
        assert!(twice.contains("API 'health' can not be specified in multiple groups"));
    }

    #[test]
    fn grpc_methods_fall_in_their_groups() {
        let g = |m: &str| Api::of_grpc_path(&format!("/inference.GRPCInferenceService/{m}"));
        assert_eq!(g("ModelInfer"), Some(Api::Inference));
        assert_eq!(g("RepositoryModelLoad"), Some(Api::ModelRepository));
        assert_eq!(g("CudaSharedMemoryRegister"), Some(Api::SharedMemory));
        assert_eq!(g("ModelReady"), Some(Api::Health));
        assert_eq!(
            Api::of_grpc_path("/grpc.health.v1.Health/Check"),
            Some(Api::Health)
        );
        assert_eq!(g("Nothing"), None);
    }
}
