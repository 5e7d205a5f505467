//! `--rate-limit` and `--rate-limit-resource`: Triton's rate limiter
//! (docs/SERVING.md, "Rate limiter").

use anemone_runtime::rate_limit::Available;

/// The rate limiter's flags.
#[derive(clap::Args, Debug, Clone)]
pub struct RateLimitArgs {
    /// Triton's rate limiter. `off` (the default, as in Triton): each instance runs as
    /// soon as it has work. `execution_count`: the instances of groups with a
    /// `rate_limiter` in config.pbtxt run only while they hold the resources it lists,
    /// and instances waiting for resources take turns across all models, the one with
    /// the fewest executions × priority first. See docs/SERVING.md, "Rate limiter".
    #[arg(long, value_name = "MODE", env = "ANEMONE_RATE_LIMIT", default_value = "off",
          value_parser = crate::triton_flags::parse_rate_limit)]
    pub rate_limit: String,

    /// How many of a rate-limiter resource there are, as NAME:COUNT (on each device) or
    /// NAME:COUNT:DEVICE; repeat it (or separate with commas) for each resource. By
    /// default each resource has as many as the largest count a loaded instance lists.
    /// Once one is given, a resource not given has none, and a model that needs more
    /// than there are does not load (it says which resource and what to give).
    #[arg(
        long,
        value_name = "NAME:COUNT[:DEVICE]",
        env = "ANEMONE_RATE_LIMIT_RESOURCE",
        value_delimiter = ','
    )]
    pub rate_limit_resource: Vec<Available>,
}

impl RateLimitArgs {
    /// The manager's rate limiter: the resources there are, or `None` when it is off.
    pub fn limiter(&self) -> Option<Vec<Available>> {
        if self.rate_limit != "execution_count" {
            if !self.rate_limit_resource.is_empty() {
                tracing::warn!(
                    "--rate-limit-resource is ignored: the rate limiter is off; add \
                     --rate-limit execution_count to use it"
                );
            }
            return None;
        }
        Some(self.rate_limit_resource.clone())
    }
}
