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
    cache_bytes_checked(values).map_err(crate::output::mistake)
}

fn cache_bytes_checked(values: &[String]) -> Result<Option<u64>, String> {
    let mut size = None;
    for value in values {
        let (name, settings) = value.split_once(',').unwrap_or((value, ""));
        if name != "local" {
            return Err(format!(
                "--cache-config '{value}': anemone has the 'local' cache only; \
                 use --cache-config local,size=BYTES"
            ));
        }
        for setting in settings.split(',').filter(|s| !s.is_empty()) {
            match setting.split_once('=') {
                Some(("size", n)) => {
                    size = Some(
                        crate::bytes::parse_bytes(n)
                            .map_err(|e| format!("--cache-config '{value}': {e}"))?,
                    )
                }
                _ => {
                    return Err(format!(
                        "--cache-config '{value}': unknown setting '{setting}'; \
                         the local cache takes size=BYTES (e.g. size=256MiB)"
                    ))
                }
            }
        }
        if size.is_none() {
            return Err(format!(
                "--cache-config '{value}': give its size, e.g. local,size=256MiB"
            ));
        }
    }
    Ok(size)
}

/// The response cache's size from `--cache-config` values and Triton's older
/// `--response-cache-byte-size`; both at once are refused.
pub fn cache_size(values: &[String], byte_size: Option<u64>) -> anyhow::Result<Option<u64>> {
    match (cache_bytes(values)?, byte_size) {
        (Some(_), Some(_)) => Err(crate::output::mistake(
            "--cache-config and --response-cache-byte-size both size the response cache; \
             give one (--response-cache-byte-size N is Triton's older form of --cache-config local,size=N)"
                .into(),
        )),
        (size, None) | (None, size) => Ok(size),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> anyhow::Result<Option<u64>> {
        cache_bytes(&[v.to_string()])
    }

    #[test]
    fn tritons_older_byte_size_flag_sizes_the_cache_alone() {
        assert_eq!(cache_size(&[], Some(4096)).unwrap(), Some(4096));
        assert_eq!(
            cache_size(&["local,size=1KiB".into()], None).unwrap(),
            Some(1024)
        );
        assert_eq!(cache_size(&[], None).unwrap(), None);
        let both = cache_size(&["local,size=1KiB".into()], Some(4096)).unwrap_err();
        assert!(both.to_string().contains("give one"), "{both}");
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
