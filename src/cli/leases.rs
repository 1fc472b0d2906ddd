//! Keeps the registrar refreshing exactly the subscribers whose leases this instance holds:
//! each heartbeat rebalances the leases, adopts the registrations gained (with the time the
//! core holds them until, so they are refreshed in time rather than at once), releases those
//! given away without deleting them, and notes the registrations' expiry for the next holder.

use std::collections::{HashMap, HashSet};

use tracing::{info, warn};

use ringer::config::serve::ServeConfig;
use ringer::registrar::Registrar;
use ringer::tas::leases::{from_millis, millis, Instance};
use ringer::types::Msisdn;

/// The leases of one running instance and what it last noted of them.
pub(super) struct LeaseSync {
    instance: Instance,
    /// The expiry last written for each held registration (milliseconds).
    noted: HashMap<Msisdn, i64>,
}

impl LeaseSync {
    pub(super) fn new(instance: Instance) -> Self {
        Self { instance, noted: HashMap::new() }
    }

    pub(super) fn instance(&self) -> &Instance {
        &self.instance
    }

    /// One heartbeat: rebalances, then makes the registrar refresh what is held. A database
    /// that cannot be reached is logged; the registrar goes on as it was (another instance
    /// takes the leases over once this one's heartbeat is older than the lease timeout).
    pub(super) async fn tick(&mut self, registrar: &mut Registrar, config: &ServeConfig) {
        let leases = match self.instance.rebalance().await {
            Ok(leases) => leases,
            Err(error) => {
                warn!(%error, instance = self.instance.name(), "heartbeat failed: cannot reach the database");
                return;
            }
        };
        let known: HashMap<Msisdn, _> = config
            .registrations()
            .into_iter()
            .filter_map(|registration| Some((registration.phone_number.clone()?, registration)))
            .collect();
        let held: HashMap<&Msisdn, Option<i64>> = leases
            .held
            .iter()
            .filter(|lease| known.contains_key(&lease.phone_number))
            .map(|lease| (&lease.phone_number, lease.registered_until))
            .collect();
        let current: HashSet<Msisdn> = registrar.numbers().into_iter().collect();
        let gained: Vec<_> = held
            .iter()
            .filter(|(number, _)| !current.contains(**number))
            .filter_map(|(number, until)| {
                let registration = known.get(*number)?.clone();
                Some((registration, until.map(from_millis)))
            })
            .collect();
        // Numbers no longer subscribers are the subscriber reload's to delete, not released here.
        let lost: Vec<Msisdn> = current
            .iter()
            .filter(|number| known.contains_key(*number) && !held.contains_key(number))
            .cloned()
            .collect();
        if leases.freed > 0 {
            info!(freed = leases.freed, "leases of instances silent past the lease timeout freed");
        }
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
        for number in &lost {
            self.noted.remove(number);
        }
        registrar.release(&lost).await;
        registrar.adopt(gained);
        let board = registrar.status();
        let mut changed = Vec::new();
        for (number, until) in &held {
            let Some(expires) = board.get(number).and_then(|status| status.expires).map(millis) else { continue };
            if *until != Some(expires) && self.noted.get(*number) != Some(&expires) {
                changed.push(((*number).clone(), expires));
            }
        }
        if !changed.is_empty() {
            match self.instance.note_registered(&changed).await {
                Ok(()) => self.noted.extend(changed),
                Err(error) => warn!(%error, "cannot note the registrations' expiry in the database"),
            }
        }
    }
}
