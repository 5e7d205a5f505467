//! Thermal pressure: what the machine's thermal state does to serving.
//!
//! On macOS the state comes from `NSProcessInfo.thermalState` (read by the
//! Apple code and handed to [`crate::Manager::set_thermal_state`]); elsewhere
//! nothing sets it and it stays nominal. The policy lives here, portable and
//! tested: at `Serious` the global concurrency limit halves, at `Critical` it
//! drops to a quarter, and health reports every model as degraded with the
//! reason, so load balancers can steer traffic away before the OS throttles.

/// The machine's thermal state, in Apple's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ThermalState {
    /// Within normal limits.
    Nominal,
    /// Slightly elevated; no action.
    Fair,
    /// High: performance is reduced by the OS; serve less at once.
    Serious,
    /// Very high: the OS throttles hard; serve much less at once.
    Critical,
}

impl ThermalState {
    /// From `NSProcessInfoThermalState`'s raw value (0 nominal, 1 fair,
    /// 2 serious, 3 critical); unknown values count as critical, the safe side.
    pub fn from_apple(raw: i64) -> ThermalState {
        match raw {
            0 => ThermalState::Nominal,
            1 => ThermalState::Fair,
            2 => ThermalState::Serious,
            _ => ThermalState::Critical,
        }
    }

    /// The share of the configured concurrency allowed: `(numerator, denominator)`.
    pub fn concurrency_share(self) -> (usize, usize) {
        match self {
            ThermalState::Nominal | ThermalState::Fair => (1, 1),
            ThermalState::Serious => (1, 2),
            ThermalState::Critical => (1, 4),
        }
    }

    /// Whether models should be reported as degraded.
    pub fn degrades(self) -> bool {
        self >= ThermalState::Serious
    }

    /// A lowercase name.
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
        let got: Vec<ThermalState> = (0..5).map(ThermalState::from_apple).collect();
        use ThermalState::*;
        assert_eq!(got, [Nominal, Fair, Serious, Critical, Critical]);
        assert!(!Fair.degrades() && Serious.degrades());
        assert_eq!(Critical.concurrency_share(), (1, 4));
    }
}
