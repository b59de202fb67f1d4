//! `Caps`: the global and per-IP WebSocket connection caps, and the `Slot` a connection holds while it lives.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CapExceeded {
    /// The server holds its maximum of connections.
    Global,
    /// The client's IP address holds its maximum.
    PerIp,
}

impl CapExceeded {
    /// The message for the 503 body.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::Global => "the server is at its connection limit",
            Self::PerIp => "too many connections from this address",
        }
    }
}

/// Counts connections, globally and per IP address. Only connects and disconnects touch it.
#[derive(Debug)]
pub(crate) struct Caps {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl Caps {
    /// Caps of `max_total` connections and `max_per_ip` per address.
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self { max_total, max_per_ip, total: AtomicUsize::new(0), per_ip: Mutex::new(HashMap::new()) })
    }

    /// Takes a slot for a connection from `ip`, or says which cap is full.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, CapExceeded> {
        let mut per_ip = self.per_ip.lock();
        let count = per_ip.get(&ip).copied().unwrap_or(0);
        if count >= self.max_per_ip {
            return Err(CapExceeded::PerIp);
        }
        // The per-IP lock orders every acquire, so this check and increment cannot overshoot.
        if self.total.load(Ordering::Relaxed) >= self.max_total {
            return Err(CapExceeded::Global);
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        per_ip.insert(ip, count + 1);
        Ok(Slot { caps: Arc::clone(self), ip })
    }

    /// Connections holding a slot now.
    #[cfg(test)]
    pub(crate) fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    fn release(&self, ip: IpAddr) {
        let mut per_ip = self.per_ip.lock();
        if let Some(count) = per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&ip);
            }
        }
        self.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One connection's place under the caps, given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    caps: Arc<Caps>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.caps.release(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_globally_and_per_ip_and_release_on_drop() {
        let caps = Caps::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = caps.acquire(a).unwrap();
        let _a2 = caps.acquire(a).unwrap();
        assert_eq!(caps.acquire(a).unwrap_err(), CapExceeded::PerIp);
        let _b1 = caps.acquire(b).unwrap();
        assert_eq!(caps.acquire(b).unwrap_err(), CapExceeded::Global);
        drop(a1);
        assert_eq!(caps.total(), 2);
        assert!(caps.acquire(b).is_ok());
    }
}
