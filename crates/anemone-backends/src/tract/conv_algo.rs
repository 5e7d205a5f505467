//! Which cuDNN convolution algorithm to run: the policy, apart from the
//! CUDA calls that measure the candidates (`cuda_conv`), so it is tested on
//! every machine.
//!
//! The choice is a one-time benchmark per (operator, input shape), as
//! `cudnnFindConvolutionForwardAlgorithm` does and as PyTorch does with
//! `cudnn.benchmark`: cuDNN's v7 heuristic ranks by a model of the GPU and
//! often puts a slower algorithm first for the small spatial sizes of a
//! ResNet's last stages. It times the fused call itself (convolution, bias,
//! residual and ReLU), which `cudnnFind…` cannot, since that times the bare
//! convolution.

use std::sync::OnceLock;

/// Workspace an algorithm may use, at most (256 MiB). cuDNN's fastest
/// algorithms for large batches (FFT, Winograd) want workspace; the cap
/// keeps one convolution from holding a large share of the device.
pub const WORKSPACE_CAP: usize = 256 << 20;

/// Rounds of timed launches over the candidates, after one untimed launch
/// of each; a candidate's time is its fastest launch.
pub const REPEATS: u32 = 5;

/// The input shape an algorithm choice is kept under: the batch (first)
/// dimension rounded up to a power of two. A dynamic batcher runs every
/// batch size from 1 to its maximum; timing all the candidates for each one
/// held requests for seconds. Batches of 9 to 16 now share the choice timed
/// on the first of them (cuDNN's algorithms take any batch; the workspace
/// is still sized for the real shape).
pub fn shape_bucket(shape: &[usize]) -> Vec<usize> {
    let mut key = shape.to_vec();
    if let Some(n) = key.first_mut() {
        *n = n.next_power_of_two();
    }
    key
}

/// The candidates' names: cuDNN's forward algorithms in
/// `cudnnConvolutionFwdAlgo_t` order (without `CUDNN_CONVOLUTION_FWD_ALGO_`),
/// then [`SPLIT`]. `ANEMONE_TRACT_CUDA_CONV_ALGO` takes one of them.
pub const CANDIDATES: [&str; 9] = [
    "IMPLICIT_GEMM",
    "IMPLICIT_PRECOMP_GEMM",
    "GEMM",
    "DIRECT",
    "FFT",
    "FFT_TILING",
    "WINOGRAD",
    "WINOGRAD_NONFUSED",
    "SPLIT",
];

/// The candidate after cuDNN's algorithms, for a convolution with ReLU: the
/// fused call with no activation, then cuDNN's ReLU in place.
pub const SPLIT: usize = 8;

/// The candidate `name` means (as [`CANDIDATES`] spells it, any case).
pub fn candidate(name: &str) -> Option<usize> {
    CANDIDATES
        .iter()
        .position(|c| c.eq_ignore_ascii_case(name.trim()))
}

/// The environment variable that pins every ReLU convolution to one
/// candidate (`SPLIT`, `IMPLICIT_GEMM`, `WINOGRAD_NONFUSED`, ...:
/// [`CANDIDATES`]) instead of the benchmark's choice: for profilers, which
/// slow every launch and so skew the benchmark (under
/// Nsight Compute it picks the one-kernel `IMPLICIT_GEMM` everywhere), and
/// for checking one candidate's answers. An unknown name is ignored with a
/// warning.
pub const ALGO_ENV: &str = "ANEMONE_TRACT_CUDA_CONV_ALGO";

/// The candidate [`ALGO_ENV`] pins, if any: read once per process, so an
/// unknown name is warned about once, not for every convolution.
pub fn pinned() -> Option<usize> {
    static PINNED: OnceLock<Option<usize>> = OnceLock::new();
    *PINNED.get_or_init(|| {
        let name = std::env::var(ALGO_ENV).ok()?;
        let found = candidate(&name);
        if found.is_none() {
            tracing::warn!("{ALGO_ENV}={name:?} names no candidate; the benchmark chooses");
        }
        found
    })
}

/// The measured candidates as `NAME 12.3 µs` (or `NAME did not run`),
/// comma-separated: for diagnostics.
pub fn describe(measured: &[Measured]) -> String {
    measured
        .iter()
        .map(|m| {
            let name = CANDIDATES.get(m.algo).copied().unwrap_or("?");
            match m.seconds {
                Some(s) => format!("{name} {:.1} µs", s * 1e6),
                None => format!("{name} did not run"),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One candidate algorithm as measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// The candidate: an index in cuDNN's `cudnnConvolutionFwdAlgo_t`, or
    /// one of the caller's own beyond them (`cuda_conv`'s `SPLIT`).
    pub algo: usize,
    /// Workspace bytes it needs.
    pub workspace: usize,
    /// Seconds of its fastest launch; `None` when cuDNN refused to run it.
    pub seconds: Option<f64>,
}

/// The fastest candidate that ran within `cap` bytes of workspace. Times
/// within 3% of each other count as equal, and then the smaller workspace
/// wins (less memory held for noise). `None` when none ran.
pub fn choose(candidates: &[Measured], cap: usize) -> Option<Measured> {
    let ok: Vec<Measured> = candidates
        .iter()
        .copied()
        .filter(|m| m.workspace <= cap && m.seconds.is_some_and(f64::is_finite))
        .collect();
    let best = ok
        .iter()
        .filter_map(|m| m.seconds)
        .fold(f64::INFINITY, f64::min);
    ok.into_iter()
        .filter(|m| m.seconds.is_some_and(|s| s <= best * 1.03))
        .min_by_key(|m| m.workspace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(algo: usize, workspace: usize, seconds: Option<f64>) -> Measured {
        Measured {
            algo,
            workspace,
            seconds,
        }
    }

    #[test]
    fn batches_share_a_choice_up_to_the_next_power_of_two() {
        assert_eq!(shape_bucket(&[1, 64, 56, 56]), vec![1, 64, 56, 56]);
        assert_eq!(shape_bucket(&[3, 64, 56, 56]), vec![4, 64, 56, 56]);
        assert_eq!(
            shape_bucket(&[13, 64, 56, 56]),
            shape_bucket(&[16, 64, 56, 56])
        );
        assert_ne!(
            shape_bucket(&[17, 64, 56, 56]),
            shape_bucket(&[16, 64, 56, 56])
        );
        assert_ne!(
            shape_bucket(&[16, 64, 28, 28]),
            shape_bucket(&[16, 64, 56, 56])
        );
        assert!(shape_bucket(&[]).is_empty());
    }

    #[test]
    fn candidates_are_named_as_the_pinning_variable_takes_them() {
        assert_eq!(candidate("SPLIT"), Some(SPLIT));
        assert_eq!(candidate("implicit_gemm"), Some(0));
        assert_eq!(candidate(" WINOGRAD_NONFUSED "), Some(7));
        assert_eq!(candidate("WINOGRAD"), Some(6));
        assert_eq!(candidate("FASTEST"), None);
        assert_eq!(candidate(""), None);
        assert_eq!(
            describe(&[m(1, 0, Some(1.25e-4)), m(SPLIT, 0, None)]),
            "IMPLICIT_PRECOMP_GEMM 125.0 µs, SPLIT did not run"
        );
    }

    #[test]
    fn the_fastest_within_the_cap_wins() {
        let c = [
            m(0, 0, Some(3e-4)),
            m(1, 1 << 20, Some(1e-4)),
            m(4, 1 << 30, Some(5e-5)),
            m(6, 0, None),
        ];
        assert_eq!(choose(&c, WORKSPACE_CAP).map(|m| m.algo), Some(1));
        assert_eq!(choose(&c, usize::MAX).map(|m| m.algo), Some(4));
        assert_eq!(choose(&c, 0).map(|m| m.algo), Some(0));
    }

    #[test]
    fn near_ties_take_the_smaller_workspace_and_nothing_run_is_none() {
        let c = [m(5, 64 << 20, Some(1.00e-4)), m(1, 4096, Some(1.02e-4))];
        assert_eq!(choose(&c, WORKSPACE_CAP).map(|m| m.algo), Some(1));
        assert_eq!(
            choose(&[m(0, 0, None), m(1, 0, Some(f64::NAN))], WORKSPACE_CAP),
            None
        );
        assert_eq!(choose(&[], WORKSPACE_CAP), None);
    }
}
