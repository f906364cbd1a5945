//! Latency percentiles, and how busy the machine was during a timed phase.

use std::time::Duration;

/// Latency summary of a run.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Maximum.
    pub max: Duration,
}

/// Summarises latencies (sorts them).
pub fn summarise(samples: &mut [Duration]) -> Summary {
    samples.sort_unstable();
    let at = |q: f64| -> Duration {
        if samples.is_empty() {
            return Duration::ZERO;
        }
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).copied().unwrap_or_default()
    };
    Summary {
        count: samples.len(),
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: samples.last().copied().unwrap_or_default(),
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max)
        )
    }
}

/// Machine-wide CPU time from the first line of `/proc/stat` (Linux), in clock ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuTimes {
    busy: u64,
    idle: u64,
    steal: u64,
}

impl CpuTimes {
    /// The counters now; `None` where `/proc/stat` is not available.
    pub fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        Self::parse(stat.lines().next()?)
    }

    /// Parses the aggregate `cpu  user nice system idle iowait irq softirq steal ...` line.
    fn parse(line: &str) -> Option<Self> {
        let mut fields = line.split_whitespace();
        if fields.next()? != "cpu" {
            return None;
        }
        let v: Vec<u64> = fields.map(|f| f.parse().ok()).collect::<Option<_>>()?;
        let at = |i: usize| v.get(i).copied();
        Some(Self {
            busy: at(0)? + at(1)? + at(2)? + at(5)? + at(6)?,
            idle: at(3)? + at(4)?,
            steal: at(7)?,
        })
    }

    /// What the machine did between `self` and `later`.
    pub fn until(self, later: Self) -> Option<MachineLoad> {
        let busy = later.busy.checked_sub(self.busy)?;
        let idle = later.idle.checked_sub(self.idle)?;
        let steal = later.steal.checked_sub(self.steal)?;
        let total = (busy + idle + steal) as f64;
        (total > 0.0).then(|| MachineLoad {
            busy: busy as f64 / total,
            steal: steal as f64 / total,
        })
    }

    /// What the machine did from `self` until now.
    pub fn until_now(self) -> Option<MachineLoad> {
        self.until(Self::now()?)
    }
}

/// The CPU time (user + system) one process has used, from `/proc/<pid>/stat` (Linux), in
/// clock ticks: the server's CPU over a phase, when the generator is given its process id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessCpu {
    pid: u32,
    ticks: u64,
}

impl ProcessCpu {
    /// The process's counters now; `None` where they cannot be read.
    pub fn now(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) is in parentheses and may hold spaces: count from after it.
        let rest = stat.get(stat.rfind(')')? + 1..)?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // Fields 14 and 15 of the line (utime, stime) are the 12th and 13th after the name.
        let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        Some(ProcessCpu { pid, ticks })
    }

    /// Seconds of CPU the process used from `self` until now. Clock ticks are USER_HZ, 100 per
    /// second on Linux (fixed by its ABI, whatever the kernel's own tick rate).
    pub fn seconds_until_now(self) -> Option<f64> {
        let later = Self::now(self.pid)?;
        Some(later.ticks.checked_sub(self.ticks)? as f64 / 100.0)
    }
}

/// Shares of all CPU time over a phase: on this shared virtual machine, the hypervisor gives
/// part of it to other guests ("steal"), and rates measured while it does are lower than on a
/// quiet host. Every mode prints it, so runs can be compared honestly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MachineLoad {
    /// Fraction of CPU time the machine's cores ran anything (user, system, interrupts).
    pub busy: f64,
    /// Fraction of CPU time taken by the hypervisor for other guests.
    pub steal: f64,
}

impl std::fmt::Display for MachineLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cores {:.0}% busy, {:.1}% stolen by the hypervisor",
            100.0 * self.busy,
            100.0 * self.steal
        )
    }
}

/// Formats an optional [`MachineLoad`] (`unknown` off Linux).
pub fn machine(m: Option<MachineLoad>) -> String {
    m.map_or_else(|| "unknown (no /proc/stat)".to_owned(), |m| m.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_cpu_time_grows_with_its_work() {
        let me = ProcessCpu::now(std::process::id()).expect("/proc/self/stat");
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let used = me.seconds_until_now().expect("/proc/self/stat");
        assert!((0.1..5.0).contains(&used), "{used} s for 0.3 s of work");
        assert!(ProcessCpu::now(u32::MAX).is_none());
    }

    #[test]
    fn machine_load_from_proc_stat() {
        let a = CpuTimes::parse("cpu  100 0 50 800 50 0 0 0 0 0").unwrap();
        let b = CpuTimes::parse("cpu  250 0 100 850 50 0 0 50 0 0").unwrap();
        let m = a.until(b).unwrap();
        // 200 busy, 50 idle, 50 steal out of 300 ticks.
        assert!((m.busy - 2.0 / 3.0).abs() < 1e-9);
        assert!((m.steal - 1.0 / 6.0).abs() < 1e-9);
        assert_eq!(CpuTimes::parse("cpu0 1 2 3 4 5 6 7 8"), None);
        assert_eq!(CpuTimes::parse("cpu  1 2 3"), None);
        // Counters that went backwards (another boot) give nothing rather than nonsense.
        assert_eq!(b.until(a), None);
    }

    #[test]
    fn percentiles() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let s = summarise(&mut v);
        assert_eq!(s.p50, Duration::from_millis(51));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.max, Duration::from_millis(100));
    }
}
