//! The machine's thermal state (`NSProcessInfo.thermalState` on Apple
//! systems) and what anemone does about it: at `Serious` or `Critical` a
//! model runs fewer requests at once and reports itself degraded.

/// Apple's `NSProcessInfoThermalState`, with Apple's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ThermalState {
    /// `NSProcessInfoThermalStateNominal` = 0.
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

    /// How many requests a model whose limit is `normal` should run at once:
    /// all of them up to `Fair`, half at `Serious`, one at `Critical`.
    pub fn concurrency(self, normal: usize) -> usize {
        match self {
            ThermalState::Nominal | ThermalState::Fair => normal,
            ThermalState::Serious => (normal / 2).max(1),
            ThermalState::Critical => 1,
        }
        .min(normal.max(1))
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
    fn apples_values_and_policy() {
        for (raw, s) in [
            (0, ThermalState::Nominal),
            (1, ThermalState::Fair),
            (2, ThermalState::Serious),
            (3, ThermalState::Critical),
        ] {
            assert_eq!(ThermalState::from_raw(raw), s);
            assert_eq!(s as isize, raw);
        }
        assert_eq!(ThermalState::from_raw(9), ThermalState::Critical);
        assert!(!ThermalState::Fair.is_degraded());
        assert!(ThermalState::Serious.is_degraded());
        assert_eq!(ThermalState::Fair.concurrency(8), 8);
        assert_eq!(ThermalState::Serious.concurrency(8), 4);
        assert_eq!(ThermalState::Serious.concurrency(1), 1);
        assert_eq!(ThermalState::Critical.concurrency(8), 1);
    }
}
