//! The machine's thermal state, in Apple's terms (`NSProcessInfo.thermalState`
//! on macOS; nothing reports one elsewhere, so it stays nominal there).
//!
//! The policy that acts on it lives in the runtime
//! (`anemone_runtime::Manager::set_thermal_state`): at `Serious` the global
//! concurrency limit halves, at `Critical` it drops to a quarter, and health
//! reports every model as degraded.

/// Apple's `NSProcessInfoThermalState`, with Apple's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ThermalState {
    /// `NSProcessInfoThermalStateNominal` = 0: within normal limits.
    Nominal = 0,
    /// `NSProcessInfoThermalStateFair` = 1: fans up, no throttling yet.
    Fair = 1,
    /// `NSProcessInfoThermalStateSerious` = 2: the system is throttling.
    Serious = 2,
    /// `NSProcessInfoThermalStateCritical` = 3: cool down now.
    Critical = 3,
}

impl ThermalState {
    /// From Apple's raw value; unknown values count as `Critical`, the safe side.
    pub fn from_raw(value: isize) -> ThermalState {
        match value {
            0 => ThermalState::Nominal,
            1 => ThermalState::Fair,
            2 => ThermalState::Serious,
            _ => ThermalState::Critical,
        }
    }

    /// Whether models should report themselves degraded.
    pub fn is_degraded(self) -> bool {
        self >= ThermalState::Serious
    }

    /// The share of the configured concurrency allowed: `(numerator, denominator)`.
    pub fn concurrency_share(self) -> (usize, usize) {
        match self {
            ThermalState::Nominal | ThermalState::Fair => (1, 1),
            ThermalState::Serious => (1, 2),
            ThermalState::Critical => (1, 4),
        }
    }

    /// A lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ThermalState::Nominal => "nominal",
            ThermalState::Fair => "fair",
            ThermalState::Serious => "serious",
            ThermalState::Critical => "critical",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apple_values_map_and_unknown_is_critical() {
        use ThermalState::*;
        let got: Vec<ThermalState> = (0..5).map(ThermalState::from_raw).collect();
        assert_eq!(got, [Nominal, Fair, Serious, Critical, Critical]);
        assert_eq!(
            [
                Nominal as isize,
                Fair as isize,
                Serious as isize,
                Critical as isize
            ],
            [0, 1, 2, 3]
        );
        assert!(!Fair.is_degraded() && Serious.is_degraded());
        assert_eq!(Serious.concurrency_share(), (1, 2));
        assert_eq!(Critical.concurrency_share(), (1, 4));
    }
}
