//! This instance among several sharing one database: its name, its heartbeat, and the leases
//! of the registrations it refreshes (see `store`'s leases for how they are shared out).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use domain::types::Msisdn;
use store::{InstanceRow, Leases, Store, StoreError};

use crate::config::StoreConfig;

/// One running instance, as the database knows it.
pub struct Instance {
    store: Store,
    me: InstanceRow,
    timeout: Duration,
}

impl Instance {
    /// This instance on `store`, named `instance` ([`instance_name`]), taking SIP at `contact`.
    pub fn new(store: Store, config: &StoreConfig, instance: String, contact: String) -> Self {
        let now = millis(SystemTime::now());
        Self {
            store,
            me: InstanceRow { instance, contact, started_at: now, heartbeat_at: now },
            timeout: config.lease_timeout,
        }
    }

    /// The instance's name.
    pub fn name(&self) -> &str {
        &self.me.instance
    }

    /// One heartbeat: shows this instance alive and moves leases towards its fair share;
    /// the leases held are read only when they differ from the `held_before` this instance
    /// knows of.
    pub async fn rebalance(&mut self, held_before: Option<u64>) -> Result<Leases, StoreError> {
        self.me.heartbeat_at = millis(SystemTime::now());
        self.store.rebalance_leases(&self.me, self.dead_before(), held_before).await
    }

    /// Notes until when the core holds the registrations this instance refreshed.
    pub async fn note_registered(&self, until: &[(Msisdn, i64)]) -> Result<(), StoreError> {
        self.store.note_registered(&self.me.instance, until).await
    }

    /// Hands every lease back and leaves; how many there were, and how many other instances
    /// are alive, counted so that of several leaving at once the last sees none. With
    /// `forget`, the last one clears the noted expiries (it deletes the registrations).
    pub async fn leave(&self, forget: bool) -> Result<(u64, u64), StoreError> {
        self.store.leave(&self.me.instance, self.dead_before(), forget).await
    }

    fn dead_before(&self) -> i64 {
        millis(SystemTime::now()) - self.timeout.as_millis() as i64
    }
}

/// Milliseconds since the Unix epoch, as the leases keep times.
pub fn millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as i64)
}

/// `duration` in milliseconds, as the store counts spans (saturating).
pub fn duration_millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The moment `millis` milliseconds after the Unix epoch.
pub fn from_millis(millis: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis.max(0) as u64)
}

/// This instance's name: `store.instance`, else the host's name and this process's id
/// (unique among instances on one database).
pub fn instance_name(config: &StoreConfig) -> String {
    config.instance.clone().unwrap_or_else(default_name)
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "ringer".to_owned());
    format!("{host}-{}", std::process::id())
}
