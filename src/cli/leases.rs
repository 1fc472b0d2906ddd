//! Keeps the registrar refreshing exactly the subscribers whose leases this instance holds:
//! each heartbeat rebalances the leases, adopts the registrations gained (with the time the
//! core holds them until, so they are refreshed in time rather than at once), releases those
//! given away without deleting them, and notes the expiry of each registration made since the
//! last heartbeat for the next holder. The leases are read only when they changed, so that a
//! heartbeat costs the same with a million subscribers as with ten.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tracing::{info, warn};

use ringer::config::serve::ServeConfig;
use ringer::registrar::{Registrar, StatusBoard};
use ringer::tas::leases::{from_millis, millis, Instance};
use ringer::types::{Msisdn, Registration};

/// The leases of one running instance.
pub(super) struct LeaseSync {
    instance: Instance,
    /// Every subscriber's registration, by number (shared with the registrar once adopted).
    known: HashMap<Msisdn, Arc<Registration>>,
    /// How many leases the database said this instance holds, once read since the last change
    /// of the subscribers; `None`: read them at the next heartbeat.
    held: Option<u64>,
    /// Expiries still to note (after a start, more than one heartbeat should write).
    unnoted: Vec<(Msisdn, i64)>,
}

/// Expiries noted per heartbeat at most, so that a heartbeat stays short after a mass
/// registration (the rest wait for the next ones).
const NOTES_PER_HEARTBEAT: usize = 50_000;

impl LeaseSync {
    /// The leases of `instance`, for the subscribers of `config`; `board` keeps the
    /// registrations made from now on for the heartbeats to note.
    pub(super) fn new(instance: Instance, config: &ServeConfig, board: &StatusBoard) -> Self {
        board.track_registered();
        let mut sync = Self { instance, known: HashMap::new(), held: None, unnoted: Vec::new() };
        sync.set_subscribers(config);
        sync
    }

    pub(super) fn instance(&self) -> &Instance {
        &self.instance
    }

    /// Every subscriber's registration.
    pub(super) fn registrations(&self) -> Vec<Registration> {
        self.known.values().map(|registration| Registration::clone(registration)).collect()
    }

    /// Takes the subscribers of `config` (after a change); the next heartbeat reads the leases.
    pub(super) fn set_subscribers(&mut self, config: &ServeConfig) {
        self.known = config
            .registrations()
            .into_iter()
            .filter_map(|registration| Some((registration.phone_number.clone()?, Arc::new(registration))))
            .collect();
        self.held = None;
    }

    /// One heartbeat: rebalances, then makes the registrar refresh what is held. A database
    /// that cannot be reached is logged; the registrar goes on as it was (another instance
    /// takes the leases over once this one's heartbeat is older than the lease timeout).
    pub(super) async fn tick(&mut self, registrar: &mut Registrar) {
        let leases = match self.instance.rebalance(self.held).await {
            Ok(leases) => leases,
            Err(error) => {
                warn!(%error, instance = self.instance.name(), "heartbeat failed: cannot reach the database");
                return;
            }
        };
        if leases.freed > 0 {
            info!(freed = leases.freed, "leases of instances silent past the lease timeout freed");
        }
        if let Some(rows) = leases.held {
            self.held = Some(rows.len() as u64);
            let held: HashMap<&Msisdn, Option<i64>> = rows
                .iter()
                .filter(|lease| self.known.contains_key(&lease.phone_number))
                .map(|lease| (&lease.phone_number, lease.registered_until))
                .collect();
            let current: HashSet<Msisdn> = registrar.numbers().into_iter().collect();
            let gained: Vec<_> = held
                .iter()
                .filter(|(number, _)| !current.contains(**number))
                .filter_map(|(number, until)| Some((self.known.get(*number)?.clone(), until.map(from_millis))))
                .collect();
            // Numbers no longer subscribers are the subscriber reload's to delete, not released here.
            let lost: Vec<Msisdn> = current
                .into_iter()
                .filter(|number| self.known.contains_key(number) && !held.contains_key(number))
                .collect();
            if !gained.is_empty() || !lost.is_empty() {
                info!(
                    instance = self.instance.name(),
                    gained = gained.len(),
                    given_away = lost.len(),
                    held = held.len(),
                    live_instances = leases.live_instances,
                    "registration leases changed"
                );
            }
            registrar.release(&lost).await;
            registrar.adopt(gained);
        }
        self.unnoted.extend(
            registrar.status().take_registered().into_iter().map(|(number, expires)| (number, millis(expires))),
        );
        if !self.unnoted.is_empty() {
            let batch: Vec<(Msisdn, i64)> = self.unnoted.drain(..self.unnoted.len().min(NOTES_PER_HEARTBEAT)).collect();
            if let Err(error) = self.instance.note_registered(&batch).await {
                warn!(%error, count = batch.len(), "cannot note the registrations' expiry in the database");
            }
        }
    }
}
