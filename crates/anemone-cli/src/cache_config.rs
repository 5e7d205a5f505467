//! `--cache-config`, as Triton spells it: `local,size=BYTES` gives the server
//! a response cache of that many bytes for models whose config has
//! `response_cache { enable: true }`.

/// The response cache's size in bytes, from `--cache-config` values.
///
/// Accepts `local,size=N`, where N is a byte count, optionally with a unit
/// (`KiB`, `MiB`, `GiB`, or `KB`, `MB`, `GB`: see [`crate::bytes::parse_bytes`]). Repeating the flag for the
/// same cache overrides the earlier size, as Triton does. Anything else is
/// an error that says what is accepted.
pub fn cache_bytes(values: &[String]) -> anyhow::Result<Option<u64>> {
    let mut size = None;
    for value in values {
        let (name, settings) = value.split_once(',').unwrap_or((value, ""));
        if name != "local" {
            anyhow::bail!(
                "--cache-config '{value}': anemone has the 'local' cache only; \
                 use --cache-config local,size=BYTES"
            );
        }
        for setting in settings.split(',').filter(|s| !s.is_empty()) {
            match setting.split_once('=') {
                Some(("size", n)) => {
                    size = Some(
                        crate::bytes::parse_bytes(n)
                            .map_err(|e| anyhow::anyhow!("--cache-config '{value}': {e}"))?,
                    )
                }
                _ => anyhow::bail!(
                    "--cache-config '{value}': unknown setting '{setting}'; \
                     the local cache takes size=BYTES (e.g. size=256MiB)"
                ),
            }
        }
        if size.is_none() {
            anyhow::bail!("--cache-config '{value}': give its size, e.g. local,size=256MiB");
        }
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> anyhow::Result<Option<u64>> {
        cache_bytes(&[v.to_string()])
    }

    #[test]
    fn reads_tritons_form_with_units() {
        assert_eq!(cache_bytes(&[]).unwrap(), None);
        assert_eq!(one("local,size=1048576").unwrap(), Some(1 << 20));
        assert_eq!(one("local,size=256MiB").unwrap(), Some(256 << 20));
        assert_eq!(one("local,size=2GB").unwrap(), Some(2_000_000_000));
        let later = cache_bytes(&["local,size=1".into(), "local,size=2".into()]).unwrap();
        assert_eq!(later, Some(2));
    }

    #[test]
    fn refuses_what_it_cannot_do_and_says_what_works() {
        for (v, want) in [
            ("redis,host=x", "the 'local' cache only"),
            ("local", "give its size"),
            ("local,size=lots", "size=lots"),
            ("local,size=3XiB", "unknown unit"),
            ("local,ttl=5", "unknown setting 'ttl=5'"),
            ("local,size=99999999999GiB", "too large"),
        ] {
            let e = one(v).unwrap_err().to_string();
            assert!(e.contains(want), "{v}: {e}");
        }
    }
}
