//! How busy the machine was with things other than this benchmark: the run
//! measures two processes sharing two cores, so a compiler running next to
//! it shows up directly in the figures. Read from /proc (Linux only).

/// CPU time counters, in clock ticks.
#[derive(Debug, Clone, Copy)]
pub struct CpuSnapshot {
    /// Every state, the whole machine.
    total: u64,
    /// user + nice + system + irq + softirq, the whole machine.
    busy: u64,
    /// Time the hypervisor gave to someone else.
    steal: u64,
    /// This process and its reaped children (the servers).
    ours: u64,
}

/// Shares of the machine's CPU capacity over an interval, 0.0 to 1.0.
#[derive(Debug, Clone, Copy)]
pub struct CpuShares {
    pub ours: f64,
    pub others: f64,
    pub steal: f64,
}

impl CpuSnapshot {
    pub fn now() -> Option<CpuSnapshot> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1) // "cpu"
            .map(|v| v.parse().ok())
            .collect::<Option<_>>()?;
        let field = |i: usize| fields.get(i).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal (guest is in user)
        let busy = field(0) + field(1) + field(2) + field(5) + field(6);
        let total = busy + field(3) + field(4) + field(7);
        Some(CpuSnapshot {
            total,
            busy,
            steal: field(7),
            ours: own_ticks()?,
        })
    }

    /// Shares between `self` (earlier) and `later`. Children count only once
    /// reaped, so take `later` after the servers have been stopped.
    pub fn shares_until(&self, later: &CpuSnapshot) -> CpuShares {
        let total = later.total.saturating_sub(self.total).max(1) as f64;
        let busy = later.busy.saturating_sub(self.busy);
        let ours = later.ours.saturating_sub(self.ours);
        CpuShares {
            ours: ours as f64 / total,
            others: busy.saturating_sub(ours) as f64 / total,
            steal: later.steal.saturating_sub(self.steal) as f64 / total,
        }
    }
}

/// utime + stime + cutime + cstime of this process.
fn own_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the ")" closing the command name start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    (11..=14).map(|i| fields.get(i)?.parse::<u64>().ok()).sum()
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
