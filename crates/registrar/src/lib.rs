//! The registration client: keeps each subscriber's registration alive at the core, refreshing it
//! before its time to live ends, backing off while the core is unreachable, and deleting every
//! registration it made at shutdown.

// Outside tests nothing is unwrapped: errors are handled or explained (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod auth;
pub mod client;
pub mod config;
pub mod status;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use client::{ClientError, RegistrationClient};
pub use status::{RegistrationState, StatusBoard, SubscriberStatus};

use crate::config::RegistrarConfig;
use domain::proto::duration_from_wire;
use domain::proto::sipbreakout::v1::StatusCode;
use domain::types::{Msisdn, Registration};

/// The time to live the operator documents, used when an answer carries none.
pub const DEFAULT_TIME_TO_LIVE: Duration = Duration::from_secs(3600);

/// What one upsert attempt brought, reduced to what decides the next attempt.
#[derive(Debug)]
enum Attempt {
    Registered(Duration),
    Refused(String),
    Failed(String),
}

struct SubscriberTask {
    registration: Registration,
    wake: Arc<Notify>,
    stop: CancellationToken,
    join: JoinHandle<()>,
}

/// Keeps a set of registrations alive; one task per subscriber.
pub struct Registrar {
    client: RegistrationClient,
    config: RegistrarConfig,
    in_flight: Arc<Semaphore>,
    board: Arc<StatusBoard>,
    tasks: HashMap<Msisdn, SubscriberTask>,
}

/// What shutdown did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Registrations deleted.
    pub deleted: usize,
    /// Registrations whose delete failed or timed out (they lapse at their TTL).
    pub failed: usize,
}

impl Registrar {
    /// Starts keeping `registrations` alive. Each must carry its phone number.
    pub fn start(client: RegistrationClient, config: RegistrarConfig, registrations: Vec<Registration>) -> Self {
        let mut registrar = Self {
            client,
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            config,
            board: Arc::new(StatusBoard::default()),
            tasks: HashMap::new(),
        };
        for registration in registrations {
            registrar.spawn(registration);
        }
        registrar
    }

    /// The status of every subscriber.
    pub fn status(&self) -> Arc<StatusBoard> {
        self.board.clone()
    }

    /// Applies a new subscriber list: new ones are registered, changed ones re-registered,
    /// removed ones deleted, and refused ones tried again at once.
    pub async fn reload(&mut self, registrations: Vec<Registration>) -> ShutdownReport {
        let mut wanted: HashMap<Msisdn, Registration> = registrations
            .into_iter()
            .filter_map(|registration| Some((registration.phone_number.clone()?, registration)))
            .collect();
        let mut retired = Vec::new();
        for msisdn in self.tasks.keys().cloned().collect::<Vec<_>>() {
            let Some(task) = self.tasks.get(&msisdn) else { continue };
            match wanted.remove(&msisdn) {
                Some(registration) if task.registration == registration => {
                    let failing = self.board.get(&msisdn).is_some_and(|status| {
                        matches!(
                            status.state,
                            RegistrationState::Refused | RegistrationState::Lapsed | RegistrationState::Retrying
                        )
                    });
                    if failing {
                        task.wake.notify_one();
                    }
                }
                Some(registration) => {
                    // Replaced: the new task's upsert replaces the old registration at the core.
                    if let Some(task) = self.tasks.remove(&msisdn) {
                        stop_task(task).await;
                    }
                    self.spawn(registration);
                }
                None => {
                    if let Some(task) = self.tasks.remove(&msisdn) {
                        retired.push(stop_task(task).await);
                    }
                }
            }
        }
        for registration in wanted.into_values() {
            self.spawn(registration);
        }
        let retired_numbers: Vec<Msisdn> = retired.iter().filter_map(|r| r.phone_number.clone()).collect();
        let report = self.delete_all(retired).await;
        for msisdn in &retired_numbers {
            self.board.remove(msisdn);
        }
        info!(subscribers = self.tasks.len(), deleted = report.deleted, "subscriber list reloaded");
        report
    }

    /// Takes over refreshing `registrations` that another instance kept: each with the time
    /// the core holds it until, when known, so that its first refresh comes in time rather
    /// than at once (without one, or when it has passed, it is registered at once).
    pub fn adopt(&mut self, registrations: Vec<(Registration, Option<SystemTime>)>) {
        for (registration, until) in registrations {
            let remaining = until.and_then(|until| until.duration_since(SystemTime::now()).ok());
            self.spawn_after(registration, remaining);
        }
    }

    /// Stops refreshing the registrations of `numbers` without deleting them: another
    /// instance refreshes them from now on.
    pub async fn release(&mut self, numbers: &[Msisdn]) {
        for msisdn in numbers {
            if let Some(task) = self.tasks.remove(msisdn) {
                stop_task(task).await;
                self.board.remove(msisdn);
            }
        }
    }

    /// The numbers whose registrations this registrar refreshes.
    pub fn numbers(&self) -> Vec<Msisdn> {
        self.tasks.keys().cloned().collect()
    }

    /// Stops refreshing and leaves every registration at the core: the instances that stay
    /// take them over.
    pub async fn hand_over(mut self) -> usize {
        let count = self.tasks.len();
        for (_, task) in self.tasks.drain() {
            stop_task(task).await;
        }
        info!(registrations = count, "registrations handed over, none deleted");
        count
    }

    /// Stops refreshing and deletes `registrations` at the core, whether this registrar
    /// refreshed them or not (the last instance to stop deletes every subscriber's).
    pub async fn shutdown_deleting(mut self, registrations: Vec<Registration>) -> ShutdownReport {
        for (_, task) in self.tasks.drain() {
            stop_task(task).await;
        }
        for registration in &registrations {
            if let Some(msisdn) = &registration.phone_number {
                if self.board.get(msisdn).is_none() {
                    self.board.insert(msisdn.clone(), SubscriberStatus::new(registration));
                }
                self.board.update(msisdn, |status| status.may_be_registered = true);
            }
        }
        let report = self.delete_all(registrations).await;
        info!(deleted = report.deleted, failed = report.failed, "registrations removed at shutdown");
        report
    }

    /// Stops refreshing and deletes every registration the core may hold.
    pub async fn shutdown(mut self) -> ShutdownReport {
        let mut registrations = Vec::with_capacity(self.tasks.len());
        for (_, task) in self.tasks.drain() {
            registrations.push(stop_task(task).await);
        }
        let report = self.delete_all(registrations).await;
        info!(deleted = report.deleted, failed = report.failed, "registrations removed at shutdown");
        report
    }

    fn spawn(&mut self, registration: Registration) {
        self.spawn_after(registration, None);
    }

    /// Starts refreshing `registration`; with `held_for`, the core holds it that long already
    /// and the first refresh waits as a refresh after an upsert would.
    fn spawn_after(&mut self, registration: Registration, held_for: Option<Duration>) {
        let Some(msisdn) = registration.phone_number.clone() else {
            error!(registration = ?registration, "registration without phone number skipped");
            return;
        };
        if let Some(task) = self.tasks.remove(&msisdn) {
            // Replaced without a delete: the new task's upsert replaces it at the core.
            task.stop.cancel();
        }
        let mut status = SubscriberStatus::new(&registration);
        if let Some(held_for) = held_for {
            status.state = RegistrationState::Registered;
            status.last_result = "held over from another instance".into();
            status.may_be_registered = true;
            status.expires_at = Some(status::rfc3339_in(held_for));
            status.expires = Some(SystemTime::now() + held_for);
        }
        self.board.insert(msisdn.clone(), status);
        let wake = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let worker = Worker {
            msisdn: msisdn.clone(),
            registration: registration.clone(),
            client: self.client.clone(),
            config: self.config.clone(),
            in_flight: self.in_flight.clone(),
            board: self.board.clone(),
        };
        let join = tokio::spawn(worker.run(held_for, wake.clone(), stop.clone()));
        self.tasks.insert(msisdn, SubscriberTask { registration, wake, stop, join });
    }

    /// Deletes those of `registrations` that the core may hold, within the shutdown timeout.
    async fn delete_all(&self, registrations: Vec<Registration>) -> ShutdownReport {
        let mut deletes = tokio::task::JoinSet::new();
        for registration in registrations {
            let Some(msisdn) = registration.phone_number.clone() else { continue };
            if !self.board.get(&msisdn).is_some_and(|status| status.may_be_registered) {
                self.board.remove(&msisdn);
                continue;
            }
            let client = self.client.clone();
            let in_flight = self.in_flight.clone();
            let board = self.board.clone();
            deletes.spawn(async move {
                let _permit = in_flight.acquire_owned().await;
                let result = client.delete(&registration).await;
                let deleted = match &result {
                    Ok(response) if response.status_code == StatusCode::Ok as i32 => true,
                    Ok(response) => {
                        warn!(%msisdn, message = %response.error_message, "core refused the delete");
                        false
                    }
                    Err(error) => {
                        warn!(%msisdn, %error, "delete failed; the registration lapses at its TTL");
                        false
                    }
                };
                board.update(&msisdn, |status| {
                    if deleted {
                        status.state = RegistrationState::Deleted;
                        status.expires_at = None;
                        status.expires = None;
                    }
                    status.next_attempt = None;
                });
                deleted
            });
        }
        let mut report = ShutdownReport::default();
        let deadline = Instant::now() + self.config.shutdown_timeout;
        loop {
            match tokio::time::timeout_at(deadline, deletes.join_next()).await {
                Ok(Some(Ok(true))) => report.deleted += 1,
                Ok(Some(_)) => report.failed += 1,
                Ok(None) => break,
                Err(_) => {
                    report.failed += deletes.len();
                    warn!(pending = deletes.len(), "shutdown timeout: some deletes did not finish");
                    deletes.abort_all();
                    break;
                }
            }
        }
        report
    }
}

/// Stops a subscriber's refresh loop and hands back its registration.
async fn stop_task(task: SubscriberTask) -> Registration {
    task.stop.cancel();
    let _ = task.join.await;
    task.registration
}

/// The refresh loop of one subscriber.
struct Worker {
    msisdn: Msisdn,
    registration: Registration,
    client: RegistrationClient,
    config: RegistrarConfig,
    in_flight: Arc<Semaphore>,
    board: Arc<StatusBoard>,
}

impl Worker {
    async fn run(self, held_for: Option<Duration>, wake: Arc<Notify>, stop: CancellationToken) {
        let mut failures: u32 = 0;
        let mut expires: Option<Instant> = held_for.map(|held_for| Instant::now() + held_for);
        // Registrations made together (at start, an import) would otherwise be refreshed
        // together, every time to live: the first refresh is spread over the window instead.
        let mut first = held_for.is_none();
        if let Some(held_for) = held_for {
            let delay = refresh_delay(held_for, &self.config);
            self.board.update(&self.msisdn, |status| status.next_attempt = Some(status::rfc3339_in(delay)));
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = wake.notified() => {}
                () = stop.cancelled() => return,
            }
        }
        loop {
            let attempt = tokio::select! {
                // Boxed: the gRPC call's future is large, and only lives while it runs; the
                // task of each of many subscribers otherwise carries its space while it sleeps.
                attempt = Box::pin(self.attempt()) => attempt,
                () = stop.cancelled() => return,
            };
            let delay = match &attempt {
                Attempt::Registered(ttl) => {
                    failures = 0;
                    expires = Some(Instant::now() + *ttl);
                    if std::mem::take(&mut first) {
                        first_refresh_delay(*ttl, &self.config)
                    } else {
                        refresh_delay(*ttl, &self.config)
                    }
                }
                Attempt::Refused(_) => {
                    failures = failures.saturating_add(1);
                    self.config.refused_retry
                }
                Attempt::Failed(_) => {
                    failures = failures.saturating_add(1);
                    let remaining = expires.map(|at| at.saturating_duration_since(Instant::now()));
                    backoff_delay(failures, remaining, &self.config)
                }
            };
            self.report(&attempt, failures, expires, delay);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = wake.notified() => info!(msisdn = %self.msisdn, "retrying at once (config reload)"),
                () = stop.cancelled() => return,
            }
        }
    }

    async fn attempt(&self) -> Attempt {
        let Ok(_permit) = self.in_flight.acquire().await else {
            return Attempt::Failed("registrar is shutting down".into());
        };
        // Set before sending: if this task is stopped mid-call, the core may still have accepted it.
        self.board.update(&self.msisdn, |status| status.may_be_registered = true);
        match self.client.upsert(&self.registration).await {
            Ok(response) if response.status_code == StatusCode::Ok as i32 => {
                let ttl = duration_from_wire(response.time_to_live.as_ref())
                    .filter(|ttl| !ttl.is_zero())
                    .unwrap_or(DEFAULT_TIME_TO_LIVE);
                Attempt::Registered(ttl)
            }
            Ok(response) => {
                let status = StatusCode::try_from(response.status_code)
                    .map(|code| code.as_str_name().to_owned())
                    .unwrap_or_else(|_| response.status_code.to_string());
                Attempt::Refused(format!("{status}: {}", response.error_message))
            }
            Err(error) if error.is_transient() => Attempt::Failed(error.to_string()),
            Err(error) => Attempt::Refused(error.to_string()),
        }
    }

    fn report(&self, attempt: &Attempt, failures: u32, expires: Option<Instant>, delay: Duration) {
        let now = Instant::now();
        let live = expires.is_some_and(|at| at > now);
        let (state, result) = match attempt {
            Attempt::Registered(ttl) => {
                info!(msisdn = %self.msisdn, route_type = %self.registration.route_type, ttl = ?ttl,
                      next_refresh_in = ?delay, "registered");
                (RegistrationState::Registered, "STATUS_CODE_OK".to_owned())
            }
            Attempt::Refused(reason) => {
                warn!(msisdn = %self.msisdn, %reason, retry_in = ?delay, "core refused the registration");
                (RegistrationState::Refused, reason.clone())
            }
            Attempt::Failed(reason) if live => {
                warn!(msisdn = %self.msisdn, %reason, attempt = failures, retry_in = ?delay,
                      expires_in = ?expires.map(|at| at - now), "refresh failed; retrying before expiry");
                (RegistrationState::Retrying, reason.clone())
            }
            Attempt::Failed(reason) => {
                warn!(msisdn = %self.msisdn, %reason, attempt = failures, retry_in = ?delay, "registration failed");
                let state = if expires.is_some() { RegistrationState::Lapsed } else { RegistrationState::Pending };
                (state, reason.clone())
            }
        };
        self.board.update(&self.msisdn, |status| {
            status.state = state;
            status.last_result = result;
            status.last_attempt = Some(status::rfc3339_in(Duration::ZERO));
            status.next_attempt = Some(status::rfc3339_in(delay));
            status.consecutive_failures = failures;
            status.expires_at = expires.filter(|at| *at > now).map(|at| status::rfc3339_in(at - now));
            status.expires = expires.filter(|at| *at > now).map(|at| SystemTime::now() + (at - now));
            if matches!(attempt, Attempt::Registered(_)) {
                status.upserts += 1;
            }
        });
        if let (Attempt::Registered(ttl), true) = (attempt, live) {
            self.board.note_registered(&self.msisdn, SystemTime::now() + *ttl);
        }
    }
}

/// When to refresh a registration granted `ttl`: at `refresh_at` of it, spread by the jitter.
fn refresh_delay(ttl: Duration, config: &RegistrarConfig) -> Duration {
    let spread = rand::rng().random_range(-config.refresh_jitter..=config.refresh_jitter);
    ttl.mul_f64((config.refresh_at + spread).clamp(0.05, 0.95))
}

/// The first refresh after a registration: anywhere from a tenth of `ttl` to the end of the
/// refresh window, evenly, so that registrations made at once are refreshed spread over the
/// time to live and stay spread.
fn first_refresh_delay(ttl: Duration, config: &RegistrarConfig) -> Duration {
    let latest = (config.refresh_at + config.refresh_jitter).clamp(0.1, 0.95);
    ttl.mul_f64(rand::rng().random_range(0.1..=latest))
}

/// Exponential backoff with jitter, kept short enough near expiry that several attempts still
/// fit before the registration lapses.
fn backoff_delay(failures: u32, remaining: Option<Duration>, config: &RegistrarConfig) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let mut ceiling = config.initial_backoff.saturating_mul(1 << exponent).min(config.max_backoff);
    if let Some(remaining) = remaining.filter(|r| !r.is_zero()) {
        ceiling = ceiling.min(remaining / 4).max(config.initial_backoff);
    }
    // "Equal jitter": half fixed, half random, so retries neither synchronise nor collapse to zero.
    let half = ceiling / 2;
    half + half.mul_f64(rand::rng().random_range(0.0..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_falls_inside_the_jitter_window() {
        let config = RegistrarConfig::default();
        for _ in 0..1000 {
            let delay = refresh_delay(Duration::from_secs(3600), &config);
            assert!(delay >= Duration::from_secs(2160) && delay <= Duration::from_secs(2880), "{delay:?}");
        }
    }

    #[test]
    fn first_refreshes_spread_over_the_window() {
        let config = RegistrarConfig::default();
        let ttl = Duration::from_secs(3600);
        let delays: Vec<Duration> = (0..2000).map(|_| first_refresh_delay(ttl, &config)).collect();
        let latest = ttl.mul_f64(config.refresh_at + config.refresh_jitter);
        assert!(delays.iter().all(|delay| *delay >= ttl / 10 && *delay <= latest));
        // Evenly: each tenth of the window holds about a tenth of them.
        let window = latest - ttl / 10;
        for tenth in 0..10 {
            let from = ttl / 10 + window.mul_f64(f64::from(tenth) / 10.0);
            let to = from + window / 10;
            let count = delays.iter().filter(|delay| **delay >= from && **delay < to).count();
            assert!((130..270).contains(&count), "tenth {tenth}: {count} of 2000");
        }
    }

    #[test]
    fn backoff_grows_to_its_cap_and_shrinks_near_expiry() {
        let config = RegistrarConfig::default();
        let first = backoff_delay(1, None, &config);
        assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
        let late = backoff_delay(30, None, &config);
        assert!(late >= Duration::from_secs(30) && late <= Duration::from_secs(60));
        let near_expiry = backoff_delay(30, Some(Duration::from_secs(20)), &config);
        assert!(near_expiry <= Duration::from_secs(5), "{near_expiry:?}");
        let at_expiry = backoff_delay(30, Some(Duration::from_millis(10)), &config);
        assert!(at_expiry >= Duration::from_millis(500), "never busy-loops: {at_expiry:?}");
    }
}
