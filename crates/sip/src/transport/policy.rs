//! Who may connect, and how many connections they may hold: only the core should send calls.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use parking_lot::Mutex;

/// Peer restrictions and connection limits.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    /// Networks allowed to connect or send; empty allows everyone.
    pub allow: Vec<IpNet>,
    /// Open connections allowed in total.
    pub max_connections: usize,
    /// Open connections allowed from one address.
    pub max_connections_per_peer: usize,
}

impl Default for PeerPolicy {
    fn default() -> Self {
        Self { allow: Vec::new(), max_connections: 10_000, max_connections_per_peer: 1_000 }
    }
}

impl PeerPolicy {
    /// Whether `ip` may talk to us at all.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip))
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The address is not in the allow list.
    #[error("peer not in the allowed networks")]
    NotAllowed,
    /// Too many connections in total.
    #[error("connection limit reached")]
    TooMany,
    /// Too many connections from this address.
    #[error("per-peer connection limit reached")]
    TooManyFromPeer,
}

/// Counts open connections; a [`ConnectionSlot`] gives its place back when dropped.
#[derive(Debug, Default)]
pub struct ConnectionCounter {
    per_peer: Mutex<HashMap<IpAddr, usize>>,
    admitted: std::sync::atomic::AtomicU64,
}

/// One admitted connection's place in the counts.
#[derive(Debug)]
pub struct ConnectionSlot {
    counter: Arc<ConnectionCounter>,
    ip: IpAddr,
}

impl ConnectionCounter {
    /// Admits a connection from `ip` if the policy allows it.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, policy: &PeerPolicy) -> Result<ConnectionSlot, Refused> {
        if !policy.allows(ip) {
            return Err(Refused::NotAllowed);
        }
        let mut per_peer = self.per_peer.lock();
        let total: usize = per_peer.values().sum();
        if total >= policy.max_connections {
            return Err(Refused::TooMany);
        }
        let count = per_peer.entry(ip).or_insert(0);
        if *count >= policy.max_connections_per_peer {
            return Err(Refused::TooManyFromPeer);
        }
        *count += 1;
        self.admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(ConnectionSlot { counter: self.clone(), ip })
    }

    /// Connections admitted since start.
    pub fn admitted(&self) -> u64 {
        self.admitted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Open connections in total.
    pub fn total(&self) -> usize {
        self.per_peer.lock().values().sum()
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut per_peer = self.counter.per_peer.lock();
        if let Some(count) = per_peer.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_peer.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_allow_list() {
        let policy =
            PeerPolicy { allow: vec!["127.0.0.0/8".parse().unwrap()], max_connections: 3, max_connections_per_peer: 2 };
        let counter = Arc::new(ConnectionCounter::default());
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(counter.admit("192.0.2.1".parse().unwrap(), &policy).unwrap_err(), Refused::NotAllowed);
        assert!(policy.allows("::ffff:127.0.0.1".parse().unwrap()));
        let first = counter.admit(local, &policy).unwrap();
        let _second = counter.admit(local, &policy).unwrap();
        assert_eq!(counter.admit(local, &policy).unwrap_err(), Refused::TooManyFromPeer);
        let _other = counter.admit("127.0.0.2".parse().unwrap(), &policy).unwrap();
        assert_eq!(counter.admit("127.0.0.3".parse().unwrap(), &policy).unwrap_err(), Refused::TooMany);
        drop(first);
        assert_eq!(counter.total(), 2);
        assert!(counter.admit(local, &policy).is_ok());
    }
}
