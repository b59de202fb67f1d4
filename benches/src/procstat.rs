//! What `/proc` says about a process: CPU time, resident memory and open file descriptors.

use std::fs;
use std::io;

/// Which process to read: `self` or a pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pid {
    /// The calling process.
    Current,
    /// Another process.
    Other(u32),
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Self::Current => "/proc/self".to_owned(),
            Self::Other(pid) => format!("/proc/{pid}"),
        }
    }
}

/// Clock ticks per second of `/proc/PID/stat`'s times: `USER_HZ`, 100 on every Linux this runs on.
const TICKS_PER_SECOND: u64 = 100;

/// CPU time (user + system, every thread, reaped ones included) in nanoseconds, from `/proc/PID/stat`.
///
/// The resolution is a clock tick (10 ms); measuring windows are seconds long, so that is under a percent.
pub(crate) fn cpu_ns(pid: Pid) -> io::Result<u64> {
    let stat = fs::read_to_string(format!("{}/stat", pid.dir()))?;
    // The command name is in parentheses and may hold spaces; the fields after it are plain.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).ok_or_else(|| bad("no `)` in stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3 of the man page, utime 14 and stime 15, so indexes 11 and 12 here.
    let field =
        |i: usize| -> io::Result<u64> { fields.get(i).and_then(|f| f.parse().ok()).ok_or_else(|| bad("short stat")) };
    Ok((field(11)? + field(12)?) * (1_000_000_000 / TICKS_PER_SECOND))
}

/// Resident set size in bytes, from `VmRSS` in `/proc/PID/status`.
pub(crate) fn rss_bytes(pid: Pid) -> io::Result<u64> {
    let status = fs::read_to_string(format!("{}/status", pid.dir()))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or_else(|| bad("no VmRSS"))?;
    let kb: u64 =
        line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().map_err(|_| bad("bad VmRSS"))?;
    Ok(kb * 1024)
}

/// How many file descriptors the process holds open, from `/proc/PID/fd`.
pub(crate) fn fd_count(pid: Pid) -> io::Result<usize> {
    Ok(fs::read_dir(format!("{}/fd", pid.dir()))?.count())
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// CPU time of the server and of this process at one instant, to turn into percentages over a window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuMark {
    at: std::time::Instant,
    server_ns: u64,
    own_ns: u64,
}

/// CPU use over a window, in percent of one core.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuUse {
    /// The window, in seconds.
    pub(crate) secs: f64,
    /// The server's CPU time in the window, in nanoseconds.
    pub(crate) server_ns: u64,
    /// The server's CPU, percent of one core.
    pub(crate) server_pct: f64,
    /// The load generator's CPU, percent of one core.
    pub(crate) loadgen_pct: f64,
}

impl CpuMark {
    /// Reads both processes' CPU time now; a server that cannot be read counts as 0.
    pub(crate) fn now(server: Option<u32>) -> Self {
        Self {
            at: std::time::Instant::now(),
            server_ns: server.and_then(|pid| cpu_ns(Pid::Other(pid)).ok()).unwrap_or(0),
            own_ns: cpu_ns(Pid::Current).unwrap_or(0),
        }
    }

    /// CPU use from `self` to `later`.
    pub(crate) fn until(&self, later: &Self) -> CpuUse {
        let secs = later.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let server_ns = later.server_ns.saturating_sub(self.server_ns);
        let own_ns = later.own_ns.saturating_sub(self.own_ns);
        CpuUse { secs, server_ns, server_pct: server_ns as f64 / 1e7 / secs, loadgen_pct: own_ns as f64 / 1e7 / secs }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_reads() {
        assert!(rss_bytes(Pid::Current).unwrap() > 0);
        assert!(fd_count(Pid::Current).unwrap() >= 3);
        let start = cpu_ns(Pid::Current).unwrap();
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_ns(Pid::Current).unwrap() >= start);
    }
}
