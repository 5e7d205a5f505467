//! The machine's CPU utilization and memory, as Triton reads them: the
//! aggregate `cpu` line of `/proc/stat` (busy time over busy and idle time
//! between two looks) and `/proc/meminfo` (used is `MemTotal` less
//! `MemAvailable`). Linux only; elsewhere the reads fail and the server
//! says once that CPU metrics are not there.

/// The aggregate CPU times of `/proc/stat`, in clock ticks since boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Ticks busy: user, nice, system, irq, softirq and steal (guest time
    /// is already inside user and nice).
    pub busy: u64,
    /// Ticks idle: idle and iowait.
    pub idle: u64,
}

impl CpuTimes {
    /// Reads `/proc/stat`.
    pub fn read() -> Result<CpuTimes, String> {
        let text = std::fs::read_to_string("/proc/stat")
            .map_err(|e| format!("cannot read /proc/stat: {e}"))?;
        CpuTimes::parse(&text)
    }

    /// The aggregate line (`cpu  user nice system idle iowait irq softirq
    /// steal ...`) of a `/proc/stat` text.
    pub fn parse(text: &str) -> Result<CpuTimes, String> {
        let line = (text.lines())
            .find(|l| l.starts_with("cpu "))
            .ok_or("no aggregate 'cpu' line in /proc/stat")?;
        let fields: Vec<u64> = (line.split_whitespace().skip(1))
            .map(|f| f.parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("a field of /proc/stat's cpu line is not a number: {e}"))?;
        if fields.len() < 4 {
            return Err(format!(
                "/proc/stat's cpu line has {} fields, fewer than 4",
                fields.len()
            ));
        }
        let at = |i: usize| fields.get(i).copied().unwrap_or(0);
        Ok(CpuTimes {
            // user, nice, system, irq, softirq, steal
            busy: at(0) + at(1) + at(2) + at(5) + at(6) + at(7),
            // idle, iowait
            idle: at(3) + at(4),
        })
    }

    /// The share of the time between `earlier` and `self` the CPUs were
    /// busy, 0 to 1; 0 when no tick passed (or the counters went back).
    pub fn utilization_since(&self, earlier: &CpuTimes) -> f64 {
        let busy = self.busy.saturating_sub(earlier.busy);
        let idle = self.idle.saturating_sub(earlier.idle);
        match busy + idle {
            0 => 0.0,
            all => busy as f64 / all as f64,
        }
    }
}

/// The machine's memory, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostMemory {
    /// `MemTotal`.
    pub total: u64,
    /// `MemTotal` less `MemAvailable`.
    pub used: u64,
}

impl HostMemory {
    /// Reads `/proc/meminfo`.
    pub fn read() -> Result<HostMemory, String> {
        let text = std::fs::read_to_string("/proc/meminfo")
            .map_err(|e| format!("cannot read /proc/meminfo: {e}"))?;
        HostMemory::parse(&text)
    }

    /// `MemTotal` and `MemAvailable` of a `/proc/meminfo` text (in kB there).
    pub fn parse(text: &str) -> Result<HostMemory, String> {
        let kib = |key: &str| -> Result<u64, String> {
            let line = (text.lines())
                .find(|l| l.split(':').next() == Some(key))
                .ok_or_else(|| format!("no {key} line in /proc/meminfo"))?;
            (line.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .map(|v| v * 1024)
                .ok_or_else(|| format!("/proc/meminfo's {key} line is not a number of kB"))
        };
        let total = kib("MemTotal")?;
        let available = kib("MemAvailable")?;
        if available > total {
            return Err(format!(
                "/proc/meminfo says {available} bytes available of {total}"
            ));
        }
        Ok(HostMemory {
            total,
            used: total - available,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT_A: &str = "cpu  100 20 30 1000 50 5 5 10 7 0\n\
                          cpu0 50 10 15 500 25 2 3 5 0 0\n\
                          intr 12345\n";
    // 300 ticks busy (user +200, system +60, irq +10, softirq +10, steal
    // +20), 100 idle (idle +80, iowait +20); guest (+99) is not counted again.
    const STAT_B: &str = "cpu  300 20 90 1080 70 15 15 30 106 0\n";

    #[test]
    fn utilization_is_busy_ticks_over_all_ticks_between_two_looks() {
        let a = CpuTimes::parse(STAT_A).unwrap();
        let b = CpuTimes::parse(STAT_B).unwrap();
        assert_eq!(
            a,
            CpuTimes {
                busy: 170,
                idle: 1050
            }
        );
        assert_eq!(b.utilization_since(&a), 0.75);
        // No tick between the looks, or counters that went back: 0, not NaN.
        assert_eq!(a.utilization_since(&a), 0.0);
        assert_eq!(a.utilization_since(&b), 0.0);
    }

    #[test]
    fn a_stat_without_its_cpu_line_or_with_words_is_an_error() {
        assert!(CpuTimes::parse("cpu0 1 2 3 4\n").is_err());
        assert!(CpuTimes::parse("cpu  1 2 x 4\n").is_err());
        assert!(CpuTimes::parse("cpu  1 2 3\n").is_err());
        // Old kernels write only four fields.
        assert_eq!(
            CpuTimes::parse("cpu  1 2 3 4\n").unwrap(),
            CpuTimes { busy: 6, idle: 4 }
        );
    }

    #[test]
    fn used_memory_is_total_less_available() {
        let text = "MemTotal:       24000 kB\nMemFree:         1000 kB\n\
                    MemAvailable:    6000 kB\nBuffers:          100 kB\n";
        assert_eq!(
            HostMemory::parse(text).unwrap(),
            HostMemory {
                total: 24000 * 1024,
                used: 18000 * 1024
            }
        );
        assert!(HostMemory::parse("MemTotal: 10 kB\n").is_err());
        assert!(HostMemory::parse("MemTotal: 10 kB\nMemAvailable: 20 kB\n").is_err());
    }

    #[test]
    fn this_machine_reads_as_the_kernel_says() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let memory = HostMemory::read().unwrap();
        assert!(memory.total > 0 && memory.used <= memory.total);
        let a = CpuTimes::read().unwrap();
        let b = CpuTimes::read().unwrap();
        assert!((0.0..=1.0).contains(&b.utilization_since(&a)));
    }
}
