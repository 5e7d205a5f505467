//! The async runtime a subcommand runs on, started only when the file
//! descriptors it needs can be had: tokio panics when its signal driver
//! cannot make its pipe (a process started under `ulimit -n 10`), where
//! anemone says why and exits.

/// Builds `builder`'s runtime, or says that the open-file limit is too low
/// for it.
pub fn build(builder: &mut tokio::runtime::Builder) -> anyhow::Result<tokio::runtime::Runtime> {
    // The poller, its waker, the signal driver's pipe and its copy, and a
    // few to spare: eight (10 passed four, and tokio then panicked).
    descriptors_left(8).map_err(|e| too_few(&e))?;
    builder.build().map_err(|e| too_few(&e))
}

/// Fails as the system does (EMFILE) unless `n` more file descriptors can
/// be opened now; opens none for good.
fn descriptors_left(n: usize) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut held = Vec::with_capacity(n.div_ceil(2));
        for _ in 0..n.div_ceil(2) {
            held.push(std::os::unix::net::UnixStream::pair()?);
        }
    }
    let _ = n;
    Ok(())
}

/// The error for a runtime that cannot start, with the limit to raise when
/// it is the open-file limit.
fn too_few(e: &std::io::Error) -> anyhow::Error {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::EMFILE) {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct it is given, nothing else.
        let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
        let shown = if known {
            format!(" (it is {})", limit.rlim_cur)
        } else {
            String::new()
        };
        return anyhow::anyhow!(
            "cannot start the async runtime: {e}: raise the open-file limit{shown}, e.g. `ulimit -n 65536`"
        );
    }
    anyhow::anyhow!("cannot start the async runtime: {e}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_few_descriptors_are_found_and_given_back() {
        super::descriptors_left(4).unwrap();
        let mut builder = tokio::runtime::Builder::new_current_thread();
        super::build(builder.enable_all()).unwrap();
    }
}
