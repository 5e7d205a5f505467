//! Folders anemone runs or serves what it finds in (unpacked Python
//! environments, the model cache): made private to this user, and refused
//! when another user owns them or can write them, since whoever can write
//! there decides what the server runs.

use std::path::Path;

/// Creates `dir` (mode 0700 on Unix, with its missing parents) or checks
/// the one there: a directory this user owns that nobody else can write.
/// The error says why, in words that follow "cannot use DIR: ".
pub fn ensure(dir: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        let made = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir);
        let meta = match (std::fs::symlink_metadata(dir), made) {
            (Ok(meta), _) => meta,
            // Why it could not be made, not that it is missing.
            (Err(_), Err(e)) => return Err(format!("it cannot be created: {e}")),
            (Err(e), Ok(())) => return Err(e.to_string()),
        };
        if !meta.is_dir() {
            return Err("it is not a directory".into());
        }
        if meta.mode() & 0o022 != 0 {
            return Err("other users can write it".into());
        }
        // Who we are: the owner of a file we create there. Named for this
        // call alone: two models loading at once (two Python models with
        // environments) each write and remove their own; one name per
        // process let one remove the other's before it was read.
        static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let probe = dir.join(format!(".owner-{}-{call}", std::process::id()));
        std::fs::write(&probe, b"").map_err(|e| format!("it cannot be written: {e}"))?;
        let mine = std::fs::metadata(&probe).map(|m| m.uid());
        let _ = std::fs::remove_file(&probe);
        if mine.map_err(|e| e.to_string())? != meta.uid() {
            return Err("another user owns it".into());
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir).map_err(|e| format!("it cannot be created: {e}"))
    }
}

/// The user's cache folder: `$XDG_CACHE_HOME`, else `$HOME/.cache`; `None`
/// where neither is set (a service with no home), so that the caller
/// picks its own fallback.
pub fn user_cache() -> Option<std::path::PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| Path::new(&h).join(".cache"))
        })
}

/// `name` in anemone's folder of the user's cache (`<cache>/anemone/<name>`),
/// else, with no cache folder, `<fallback>-<user>` in the temporary
/// directory. Neither made nor checked ([`ensure`] does that).
pub fn cache_folder(name: &str, fallback: &str) -> std::path::PathBuf {
    match user_cache() {
        Some(cache) => cache.join("anemone").join(name),
        None => std::env::temp_dir().join(format!("{fallback}-{}", user_tag())),
    }
}

/// This user's name for a folder in the shared temporary directory: the
/// numeric user id on Unix (`$USER` can be unset or shared), else `$USER`.
pub fn user_tag() -> String {
    #[cfg(unix)]
    {
        // The owner of a file we create is who we are; the id of the
        // process's own /proc entry is the same without writing anything.
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::metadata("/proc/self") {
            return meta.uid().to_string();
        }
    }
    std::env::var("USER").unwrap_or_else(|_| "anyone".into())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("anemone-private-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_folder_others_can_write_is_refused_and_a_new_one_is_private() {
        let dir = scratch("shared");
        let shared = dir.join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(ensure(&shared).unwrap_err(), "other users can write it");
        let fresh = dir.join("fresh/envs");
        ensure(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "made private");
        let file = dir.join("file");
        std::fs::write(&file, b"").unwrap();
        assert_eq!(ensure(&file).unwrap_err(), "it is not a directory");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn calls_at_once_on_one_folder_all_pass() {
        // Models load on threads of their own: every Python model with an
        // environment checks the same folder. With one probe name per
        // process, a call whose probe another had removed failed with "No
        // such file or directory" (a Python model failed to load in a cold
        // test run; here within a few hundred calls).
        let dir = scratch("at-once");
        let shared = dir.join("envs");
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..300 {
                        ensure(&shared).unwrap();
                    }
                });
            }
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_folder_that_cannot_be_made_says_why() {
        // A regular file where a parent should be: creating fails, and the
        // reason is that, not "No such file or directory" of a later look.
        let dir = scratch("blocked");
        std::fs::write(dir.join("parent"), b"").unwrap();
        let e = ensure(&dir.join("parent/envs")).unwrap_err();
        assert!(e.starts_with("it cannot be created: "), "{e}");
        assert!(!e.contains("No such file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
