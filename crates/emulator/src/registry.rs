//! The emulated core's registrations: one per MSISDN, each alive for the time to live from its
//! last upsert. The SBC emulator reads routes from here.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, MutexGuard};
use tokio::time::Instant;

use domain::types::{Msisdn, Registration, SipsUri};

/// One stored registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationRecord {
    /// The registration as last upserted (its `phone_number` always set).
    pub registration: Registration,
    /// The subscriber.
    pub msisdn: Msisdn,
    /// When it lapses unless refreshed.
    pub expires_at: Instant,
    /// When it was last upserted.
    pub upserted_at: SystemTime,
    /// How many upserts this registration has seen since it was created.
    pub upserts: u64,
    /// Whether the last upsert came with the subscriber's own token (authorization code flow)
    /// rather than a client's.
    pub by_user_token: bool,
}

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The registration was removed.
    Removed,
    /// There was no live registration for that number.
    NotFound,
    /// A registration exists, for another `sip_uri`; it was left alone.
    SipUriMismatch,
}

/// Registrations with their time to live.
#[derive(Debug)]
pub struct Registry {
    time_to_live: Duration,
    entries: Mutex<HashMap<Msisdn, RegistrationRecord>>,
    /// How many registrations of each number a delete removed (lapses not counted).
    deletions: Mutex<HashMap<Msisdn, u64>>,
}

impl Registry {
    /// An empty registry whose entries live `time_to_live` from their last upsert.
    pub fn new(time_to_live: Duration) -> Self {
        Self { time_to_live, entries: Mutex::new(HashMap::new()), deletions: Mutex::new(HashMap::new()) }
    }

    /// The time to live granted by each upsert.
    pub fn time_to_live(&self) -> Duration {
        self.time_to_live
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<Msisdn, RegistrationRecord>> {
        // A panic while holding the lock cannot leave a half-written map: every update is one insert or remove.
        self.entries.lock()
    }

    /// Creates or replaces the registration of `msisdn` (by a client); returns the time to
    /// live granted.
    pub fn upsert(&self, msisdn: Msisdn, registration: Registration) -> Duration {
        self.upsert_by(msisdn, registration, false)
    }

    /// As [`Registry::upsert`], telling whether the subscriber's own token made it.
    pub fn upsert_by(&self, msisdn: Msisdn, mut registration: Registration, by_user_token: bool) -> Duration {
        registration.phone_number = Some(msisdn.clone());
        let now = Instant::now();
        let mut entries = self.entries();
        let upserts = match entries.get(&msisdn) {
            Some(old) if old.expires_at > now => old.upserts + 1,
            _ => 1,
        };
        entries.insert(
            msisdn.clone(),
            RegistrationRecord {
                registration,
                msisdn,
                expires_at: now + self.time_to_live,
                upserted_at: SystemTime::now(),
                upserts,
                by_user_token,
            },
        );
        self.time_to_live
    }

    /// Removes the registration of `msisdn` that its own token made (its consent is withdrawn);
    /// whether there was one.
    pub fn remove_user_registration(&self, msisdn: &Msisdn) -> bool {
        let mut entries = self.entries();
        match entries.get(msisdn) {
            Some(record) if record.by_user_token => entries.remove(msisdn).is_some(),
            _ => false,
        }
    }

    /// Removes the registration of `msisdn` if it was made for `sip_uri`.
    pub fn delete(&self, msisdn: &Msisdn, sip_uri: &SipsUri) -> DeleteOutcome {
        let mut entries = self.entries();
        match entries.get(msisdn) {
            Some(record) if record.expires_at <= Instant::now() => {
                entries.remove(msisdn);
                DeleteOutcome::NotFound
            }
            Some(record) if !same_sip_uri(&record.registration.sip_uri, sip_uri) => DeleteOutcome::SipUriMismatch,
            Some(_) => {
                entries.remove(msisdn);
                *self.deletions.lock().entry(msisdn.clone()).or_default() += 1;
                DeleteOutcome::Removed
            }
            None => DeleteOutcome::NotFound,
        }
    }

    /// How many live registrations of `msisdn` a delete has removed so far.
    pub fn deletions(&self, msisdn: &Msisdn) -> u64 {
        self.deletions.lock().get(msisdn).copied().unwrap_or(0)
    }

    /// The live registration of `msisdn`, if any.
    pub fn lookup(&self, msisdn: &Msisdn) -> Option<RegistrationRecord> {
        let entries = self.entries();
        entries.get(msisdn).filter(|record| record.expires_at > Instant::now()).cloned()
    }

    /// How many registrations are live.
    pub fn live(&self) -> usize {
        let now = Instant::now();
        self.entries().values().filter(|record| record.expires_at > now).count()
    }

    /// Every live registration, sorted by number.
    pub fn snapshot(&self) -> Vec<RegistrationRecord> {
        let now = Instant::now();
        let mut records: Vec<_> = self.entries().values().filter(|record| record.expires_at > now).cloned().collect();
        records.sort_by(|a, b| a.msisdn.cmp(&b.msisdn));
        records
    }

    /// Drops lapsed registrations and returns them.
    pub fn sweep(&self) -> Vec<RegistrationRecord> {
        let now = Instant::now();
        let mut entries = self.entries();
        let lapsed: Vec<Msisdn> =
            entries.values().filter(|record| record.expires_at <= now).map(|record| record.msisdn.clone()).collect();
        lapsed.iter().filter_map(|msisdn| entries.remove(msisdn)).collect()
    }
}

/// The scheme and host compare without regard to case; the rest must match exactly.
fn same_sip_uri(a: &SipsUri, b: &SipsUri) -> bool {
    a.host().eq_ignore_ascii_case(b.host()) && a.port() == b.port()
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::types::RouteType;

    fn registration(uri: &str) -> Registration {
        Registration {
            phone_number: None,
            sip_uri: SipsUri::parse(uri).unwrap(),
            route_type: RouteType::Loop,
            mo_prefix: None,
            mt_prefix: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn entries_lapse_after_their_ttl_unless_refreshed() {
        let registry = Registry::new(Duration::from_secs(10));
        let msisdn = Msisdn::parse("+4711").unwrap();
        registry.upsert(msisdn.clone(), registration("sips:a.example:5061"));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(registry.upsert(msisdn.clone(), registration("sips:a.example:5061")), Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(registry.lookup(&msisdn).map(|r| r.upserts), Some(2));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(registry.lookup(&msisdn), None);
        assert_eq!(registry.sweep().len(), 1);
        assert!(registry.snapshot().is_empty());
    }

    #[test]
    fn delete_needs_the_same_sip_uri() {
        let registry = Registry::new(Duration::from_secs(10));
        let msisdn = Msisdn::parse("+4711").unwrap();
        registry.upsert(msisdn.clone(), registration("sips:a.example:5061"));
        let other = SipsUri::parse("sips:b.example:5061").unwrap();
        assert_eq!(registry.delete(&msisdn, &other), DeleteOutcome::SipUriMismatch);
        let same = SipsUri::parse("sips:A.example:5061").unwrap();
        assert_eq!(registry.deletions(&msisdn), 0);
        assert_eq!(registry.delete(&msisdn, &same), DeleteOutcome::Removed);
        assert_eq!(registry.delete(&msisdn, &same), DeleteOutcome::NotFound);
        assert_eq!(registry.deletions(&msisdn), 1);
    }
}
