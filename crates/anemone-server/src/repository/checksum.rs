//! Triton's checksum repository agent (`model_repository_agents { agents [
//! { name: "checksum" parameters { key: "MD5:1/model.onnx" value: "..." } }
//! ] }`): before a model loads, each file a parameter names is hashed and
//! compared with the digest given; a file that differs fails the load, and
//! nothing of the model runs (not even a Python model's
//! `auto_complete_config`).
//!
//! As Triton's agent (`checksum_repository_agent/src/checksum.cc`): the key
//! is `ALGORITHM:path`, the path relative to the model's directory, the
//! algorithm named in any case; the value is the lowercase hexadecimal
//! digest. Triton's agent knows MD5 only; anemone also takes SHA256 (MD5
//! catches a corrupt copy, not a forged one), and a digest in uppercase.
//! The path must stay in the model's directory and name a regular file, as
//! every path a config gives (`paths.rs`).

use std::io::Read;
use std::path::Path;

use md5::Digest as _;
use sha2::Digest as _;

use super::paths;
use crate::proto::ModelConfig;

/// The agent anemone runs; Triton's others are libraries it cannot load.
const CHECKSUM: &str = "checksum";

/// Checks every checksum the config's `model_repository_agents` give for
/// files of the model directory `dir` (in the repository `root`).
pub(super) fn verify(root: &Path, dir: &Path, config: &ModelConfig) -> Result<(), String> {
    let Some(agents) = &config.model_repository_agents else {
        return Ok(());
    };
    for (i, agent) in agents.agents.iter().enumerate() {
        if agent.name != CHECKSUM {
            return Err(format!(
                "model_repository_agents.agents[{i}] is '{}', an agent anemone does not have (it runs \
                 Triton's 'checksum' agent only); remove it",
                agent.name
            ));
        }
        // In key order, so that the first mismatch named is the same each load.
        let mut checks: Vec<(&String, &String)> = agent.parameters.iter().collect();
        checks.sort();
        for (key, want) in checks {
            check(root, dir, key, want)?;
        }
    }
    Ok(())
}

/// One `ALGORITHM:path` = digest parameter.
fn check(root: &Path, dir: &Path, key: &str, want: &str) -> Result<(), String> {
    let Some((algorithm, file)) = key.split_once(':') else {
        return Err(format!(
            "checksum agent: failed to parse key '{key}'; write it ALGORITHM:path, e.g. MD5:1/model.onnx"
        ));
    };
    let got = match algorithm.to_ascii_lowercase().as_str() {
        "md5" => {
            let mut hasher = md5::Md5::new();
            read_pieces(root, dir, file, |piece| hasher.update(piece))?;
            hex(&hasher.finalize())
        }
        "sha256" => {
            let mut hasher = sha2::Sha256::new();
            read_pieces(root, dir, file, |piece| hasher.update(piece))?;
            hex(&hasher.finalize())
        }
        _ => {
            return Err(format!(
            "checksum agent: unsupported checksum algorithm '{algorithm}' (in '{key}'); use MD5 \
                 (Triton's) or SHA256"
        ))
        }
    };
    if !got.eq_ignore_ascii_case(want.trim()) {
        return Err(format!(
            "Mismatched {} hash for file {file}, expect: {want}, got: {got}; the file is not the one its \
             checksum was taken of: restore it, or update the checksum in model_repository_agents",
            algorithm.to_ascii_uppercase()
        ));
    }
    Ok(())
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Gives `dir/file` to `take` in pieces (a model file may be gigabytes).
fn read_pieces(
    root: &Path,
    dir: &Path,
    file: &str,
    mut take: impl FnMut(&[u8]),
) -> Result<(), String> {
    let refused = || {
        format!(
            "checksum agent: '{file}' must name a regular file in the model's directory (a relative path \
             without '..'; a symbolic link must not lead outside the model directory)"
        )
    };
    let plain = paths::plain_form(file).ok_or_else(refused)?;
    let path = dir.join(&plain);
    let inside = dir
        .canonicalize()
        .ok()
        .and_then(|model| paths::real_inside(&model, &path))
        .and_then(|_| paths::real_inside(root, &path));
    // Looked at before it is opened: opening a FIFO would wait for a writer.
    let real = inside
        .filter(|real| std::fs::metadata(real).is_ok_and(|m| m.is_file()))
        .ok_or_else(refused)?;
    let unreadable = |e: std::io::Error| format!("checksum agent: cannot read '{file}': {e}");
    let mut opened = std::fs::File::open(real).map_err(unreadable)?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        match opened.read(&mut buffer).map_err(unreadable)? {
            0 => return Ok(()),
            n => take(&buffer[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_config::parse_pbtxt;

    fn agents(parameters: &str) -> ModelConfig {
        parse_pbtxt(&format!(
            "model_repository_agents {{ agents [ {{ name: \"checksum\" parameters {{ {parameters} }} }} ] }}"
        ))
        .unwrap()
    }

    #[test]
    fn md5_and_sha256_of_a_file_in_the_model_directory() {
        let root = tempfile_dir();
        let dir = root.join("m");
        std::fs::create_dir_all(dir.join("1")).unwrap();
        std::fs::write(dir.join("1/model.onnx"), b"hello").unwrap();
        // `printf hello | md5sum`, `| sha256sum`.
        let md5 = "5d41402abc4b2a76b9719d911017c592";
        let sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        verify(
            &root,
            &dir,
            &agents(&format!("key: \"MD5:1/model.onnx\" value: \"{md5}\"")),
        )
        .unwrap();
        verify(
            &root,
            &dir,
            &agents(&format!(
                "key: \"sha256:1/model.onnx\" value: \"{}\"",
                sha.to_uppercase()
            )),
        )
        .unwrap();
        let e = verify(
            &root,
            &dir,
            &agents("key: \"MD5:1/model.onnx\" value: \"00\""),
        )
        .unwrap_err();
        assert!(
            e.starts_with(&format!(
                "Mismatched MD5 hash for file 1/model.onnx, expect: 00, got: {md5}"
            )),
            "{e}"
        );
        for (parameters, want) in [
            ("key: \"1/model.onnx\" value: \"00\"", "failed to parse key"),
            (
                "key: \"SHA1:1/model.onnx\" value: \"00\"",
                "unsupported checksum algorithm 'SHA1'",
            ),
            (
                "key: \"MD5:../m/1/model.onnx\" value: \"00\"",
                "regular file in the model's directory",
            ),
            ("key: \"MD5:1/absent.onnx\" value: \"00\"", "regular file"),
            ("key: \"MD5:1\" value: \"00\"", "regular file"),
        ] {
            let e = verify(&root, &dir, &agents(parameters)).unwrap_err();
            assert!(e.contains(want), "{parameters}: {e}");
        }
        let other =
            parse_pbtxt("model_repository_agents { agents [ { name: \"relocation\" } ] }").unwrap();
        assert!(verify(&root, &dir, &other)
            .unwrap_err()
            .contains("'relocation'"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("anemone-checksum-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.canonicalize().unwrap()
    }
}
