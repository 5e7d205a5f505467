//! What the CUDA probe says about tract-cuda's kernels, and the one warning
//! before the first load that compiles them: portable, so the wording the
//! probe writes and the warning reads are tested together on any machine
//! (the CUDA code only calls these).

use std::path::Path;

/// The probe's detail when the kernels are not cached yet: the first load
/// compiles them from the CUDA headers in `include` into `cache`.
pub fn compiles_on_first_load(include: &Path, cache: &Path) -> String {
    format!(
        "{FIRST_LOAD}from the headers in {} into {}",
        include.display(),
        cache.display()
    )
}

const FIRST_LOAD: &str = "the first load compiles the kernels (about a minute) ";

/// The warning to give before the first load, from the probe's `detail`;
/// `None` when the kernels are cached (or the probe said nothing of them).
pub fn first_compile_warning(detail: &str) -> Option<String> {
    let (_, whence) = detail.split_once(FIRST_LOAD)?;
    Some(format!(
        "tract-cuda: compiling its CUDA kernels for this GPU before the first model loads, \
         once per machine (about a minute; later starts read them from the cache): {whence}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_s_words_for_a_first_compile_give_one_warning_naming_where() {
        let detail = format!(
            "tract 0.23.9 on NVIDIA H200 (sm_90, 143771 MiB), driver CUDA 13.0, NVRTC 13.0, \
             cuBLAS 13.1.0, cuDNN 9.14.0; {}",
            compiles_on_first_load(
                Path::new("/usr/local/cuda/include"),
                Path::new("/root/.cache/tract/0.23.9/cuda/13000/cubins/sm_90")
            )
        );
        let warning = first_compile_warning(&detail).unwrap();
        assert!(warning.contains("about a minute"), "{warning}");
        assert!(
            warning.ends_with(
                "from the headers in /usr/local/cuda/include into \
                 /root/.cache/tract/0.23.9/cuda/13000/cubins/sm_90"
            ),
            "{warning}"
        );
        assert_eq!(
            first_compile_warning("...; kernels cached in /root/.cache/tract, headers in /usr"),
            None
        );
    }
}
