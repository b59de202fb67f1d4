//! `Summary`: what a soak run did and what the server looked like before, during and after it; printed as the
//! run's report, and the verdict: the run passes only with no violation, descriptors back to the starting
//! count, nothing left registered in the hub, the server's own close counts matching, and memory in bound.

use std::fmt;

use super::tally::Counts;

const MIB: f64 = 1024.0 * 1024.0;

/// Everything the report says.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    /// How long the load ran, in seconds.
    pub(crate) secs: f64,
    /// What the workloads did.
    pub(crate) counts: Counts,
    /// Violations seen during the run and in the final checks.
    pub(crate) violations: u64,
    /// The first violations, verbatim.
    pub(crate) first_violations: Vec<String>,
    /// The server's open descriptors before the load and once it settled.
    pub(crate) fds_before: usize,
    pub(crate) fds_after: usize,
    /// The server's hub after the load: connections, subscriptions and channels left (`/api/stats`).
    pub(crate) left: Left,
    /// The steady channels, which keep their history and so stay.
    pub(crate) steady_channels: u64,
    /// What the server counted under close codes 4000 and 4004 (`ws_disconnections_total`).
    pub(crate) server_closed_slow: u64,
    pub(crate) server_closed_kicked: u64,
    /// The server's resident memory before, at its highest during, and after the load, in bytes.
    pub(crate) rss_start: u64,
    pub(crate) rss_peak: u64,
    pub(crate) rss_end: u64,
    /// How far above `rss_start` `rss_end` may be, in bytes.
    pub(crate) rss_bound: u64,
}

/// What the hub still held after the load, from `/api/stats`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Left {
    pub(crate) connections: u64,
    pub(crate) subscriptions: u64,
    pub(crate) channels: u64,
}

impl Summary {
    /// Every way the run failed, one line each; empty when it passed.
    pub(crate) fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        if self.violations > 0 {
            failures.push(format!("{} violations (the first are listed above)", self.violations));
        }
        if self.fds_after != self.fds_before {
            failures.push(format!("{} descriptors open after the load, {} before", self.fds_after, self.fds_before));
        }
        let clean = Left { connections: 0, subscriptions: 0, channels: self.steady_channels };
        if self.left != clean {
            failures.push(format!("the hub still holds {:?} after the load, not {clean:?}", self.left));
        }
        if self.server_closed_slow != self.counts.slow_closed {
            let (server, seen) = (self.server_closed_slow, self.counts.slow_closed);
            failures.push(format!(
                "the server closed {server} connections with 4000, the soak saw {seen} slow consumers closed"
            ));
        }
        if self.server_closed_kicked != self.counts.kicks {
            let (server, seen) = (self.server_closed_kicked, self.counts.kicks);
            failures.push(format!("the server closed {server} connections with 4004, the soak kicked {seen}"));
        }
        if self.rss_end > self.rss_start + self.rss_bound {
            failures.push(format!(
                "RSS after the load is {:.1} MiB, over the start's {:.1} MiB + {:.0} MiB",
                self.rss_end as f64 / MIB,
                self.rss_start as f64 / MIB,
                self.rss_bound as f64 / MIB
            ));
        }
        failures
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        let mib = |bytes: u64| bytes as f64 / MIB;
        let churn = c.churn_clean + c.churn_dropped + c.churn_reset + c.churn_abandoned;
        writeln!(f, "soak: {:.0} s of load", self.secs)?;
        writeln!(f, "  connections   {} upgraded in all", c.connections)?;
        writeln!(
            f,
            "  churn         {churn}: {} closed cleanly, {} dropped (FIN), {} reset (RST), {} abandoned mid-handshake",
            c.churn_clean, c.churn_dropped, c.churn_reset, c.churn_abandoned
        )?;
        writeln!(
            f,
            "  recoveries    {} subscribes with recover replayed what was missed, {} were answered recovered: false",
            c.recovered, c.recovery_refused
        )?;
        writeln!(
            f,
            "  publications  {} over WebSocket, {} over the HTTP API ({} API requests in all)",
            c.published_ws, c.published_http, c.api_requests
        )?;
        writeln!(f, "  deliveries    {} checked: offsets consecutive, publishers' order kept, none lost on the steady subscribers", c.deliveries)?;
        writeln!(
            f,
            "  kicks         {} got disconnect + close 4004 (server counted {})",
            c.kicks, self.server_closed_kicked
        )?;
        writeln!(
            f,
            "  slow          {} closed as slow consumers (server counted {} closes with 4000)",
            c.slow_closed, self.server_closed_slow
        )?;
        writeln!(f, "  descriptors   {} before, {} after", self.fds_before, self.fds_after)?;
        writeln!(
            f,
            "  hub after     {} connections, {} subscriptions, {} channels ({} steady channels keep history)",
            self.left.connections, self.left.subscriptions, self.left.channels, self.steady_channels
        )?;
        writeln!(
            f,
            "  RSS           start {:.1} MiB, peak {:.1} MiB, end {:.1} MiB (bound: start + {:.0} MiB = {:.1} MiB)",
            mib(self.rss_start),
            mib(self.rss_peak),
            mib(self.rss_end),
            mib(self.rss_bound),
            mib(self.rss_start + self.rss_bound)
        )?;
        writeln!(f, "  violations    {}", self.violations)?;
        for violation in &self.first_violations {
            writeln!(f, "    {violation}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_run_passes_and_each_leak_or_mismatch_fails_it() {
        let clean = || Summary {
            fds_before: 9,
            fds_after: 9,
            steady_channels: 8,
            left: Left { connections: 0, subscriptions: 0, channels: 8 },
            rss_start: 10 << 20,
            rss_end: 30 << 20,
            rss_bound: 32 << 20,
            ..Summary::default()
        };
        assert_eq!(clean().failures(), Vec::<String>::new());
        let mut leaky = clean();
        leaky.fds_after = 10;
        leaky.left.subscriptions = 1;
        leaky.rss_end = 43 << 20;
        leaky.server_closed_slow = 1;
        assert_eq!(leaky.failures().len(), 4);
    }
}
