//! Memory pressure: the process's resident memory against the memory
//! budget, and the machine's available memory against its total.

/// The figures one look at memory gives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MemoryFigures {
    /// The process's resident set, in bytes (0 where it cannot be read).
    pub rss: u64,
    /// The machine's memory, in bytes (0 where it cannot be read).
    pub machine_total: u64,
    /// The machine's available memory, in bytes (0 where it cannot be read).
    pub machine_available: u64,
}

impl MemoryFigures {
    /// Reads them now (Linux: `/proc`; elsewhere all 0).
    pub(crate) fn read() -> MemoryFigures {
        MemoryFigures {
            rss: rss(),
            machine_total: meminfo("MemTotal:"),
            machine_available: meminfo("MemAvailable:"),
        }
    }

    /// Why memory is under pressure, with the figures; `None` when it is not.
    /// `start` is the resident memory when the manager started (the budget
    /// is for what models hold, so the server's own memory is left out);
    /// `ratio` is [`super::HealthPolicy::memory_ratio`].
    pub(crate) fn pressure(&self, start: u64, budget: Option<u64>, ratio: f64) -> Option<String> {
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        let grown = self.rss.saturating_sub(start);
        if let Some(budget) = budget.filter(|b| *b > 0 && self.rss > 0) {
            if grown as f64 >= budget as f64 * ratio {
                return Some(format!(
                    "memory pressure: the process grew by {} since start, {:.0}% of the {} budget",
                    amount(grown),
                    grown as f64 * 100.0 / budget as f64,
                    amount(budget)
                ));
            }
        }
        if self.machine_total > 0
            && (self.machine_available as f64) < self.machine_total as f64 * (1.0 - ratio)
        {
            return Some(format!(
                "memory pressure: the machine has {:.0} MiB of {:.0} MiB available",
                mib(self.machine_available),
                mib(self.machine_total)
            ));
        }
        None
    }
}

/// The resident set size of this process in bytes (`VmRSS` of
/// `/proc/self/status`); 0 where it cannot be read.
pub fn rss() -> u64 {
    proc_kib("/proc/self/status", "VmRSS:")
}

/// A `/proc/meminfo` line's value in bytes; 0 where it cannot be read.
fn meminfo(key: &str) -> u64 {
    proc_kib("/proc/meminfo", key)
}

/// The value of the `key` line of a `/proc` file that counts in kB, in bytes.
fn proc_kib(file: &str, key: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// `bytes` in MiB, or in KiB or bytes when under one MiB (a budget of a
/// few KiB read "0 MiB").
fn amount(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.0} KiB", b as f64 / 1024.0),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_names_the_budget_or_the_machine() {
        let m = MemoryFigures {
            rss: 950 << 20,
            machine_total: 16 << 30,
            machine_available: 8 << 30,
        };
        let why = m.pressure(50 << 20, Some(1000 << 20), 0.9).unwrap();
        assert!(
            why.contains("grew by 900 MiB since start, 90% of the 1000 MiB budget"),
            "{why}"
        );
        assert_eq!(
            m.pressure(100 << 20, Some(1000 << 20), 0.9),
            None,
            "850 MiB grown"
        );
        assert_eq!(m.pressure(0, Some(2000 << 20), 0.9), None);
        // A budget under a MiB is said in KiB, not "0 MiB".
        let why = m.pressure(0, Some(64 << 10), 0.9).unwrap();
        assert!(why.contains("of the 64 KiB budget"), "{why}");
        assert_eq!(m.pressure(0, None, 0.9), None);
        let tight = MemoryFigures {
            machine_available: 1 << 30,
            ..m
        };
        let why = tight.pressure(0, None, 0.9).unwrap();
        assert!(why.contains("1024 MiB of 16384 MiB available"), "{why}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let m = MemoryFigures::read();
        assert!(m.rss > 1 << 20 && m.machine_total > m.rss, "{m:?}");
    }
}
