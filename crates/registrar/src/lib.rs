//! The registration client: keeps each subscriber's registration alive at the core, refreshing it
//! before its time to live ends, backing off while the core is unreachable, and deleting every
//! registration it made at shutdown.
//!
//! One driver task serves every subscriber: a queue ordered by when each is due, one timer
//! for the earliest, and an upsert task only while a call to the core is under way (at most
//! `max_in_flight` at once), so that a million subscribers cost a queue entry each, not a
//! task each.

// Outside tests nothing is unwrapped: errors are handled or explained (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod auth;
pub mod client;
pub mod config;
pub mod sms;
pub mod status;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use rand::Rng;
use tokio::sync::{Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use client::{ClientError, RegistrationClient, UserTokens};
pub use status::{RegistrationState, StatusBoard, SubscriberStatus};

use crate::config::RegistrarConfig;
use domain::proto::duration_from_wire;
use domain::proto::sipbreakout::v1::StatusCode;
use domain::types::{Msisdn, Registration};

/// The time to live the operator documents, used when an answer carries none.
pub const DEFAULT_TIME_TO_LIVE: Duration = Duration::from_secs(3600);

/// How soon a registration due while the upsert it replaced is still under way looks again.
const UPSERT_UNDER_WAY_RETRY: Duration = Duration::from_millis(50);

/// The longest time to live taken from an answer; longer ones are refreshed as if this.
const MAX_TIME_TO_LIVE: Duration = Duration::from_secs(7 * 24 * 3600);

/// What one upsert attempt brought, reduced to what decides the next attempt.
#[derive(Debug)]
enum Attempt {
    Registered(Duration),
    Refused(String),
    Failed(String),
}

/// One subscriber's refresh state.
struct Entry {
    registration: Arc<Registration>,
    /// Counted up when the registration is replaced: answers to earlier attempts are ignored.
    generation: u64,
    /// When the next attempt is due; queue items for another time are stale.
    due: Instant,
    /// An upsert is under way.
    in_flight: bool,
    failures: u32,
    expires: Option<Instant>,
    /// No refresh yet since it was (re)registered here: the first is spread over the window.
    first: bool,
}

/// What the driver and the registrar's methods share.
struct State {
    entries: HashMap<Msisdn, Entry>,
    /// (due, generation, number), earliest first; stale items are skipped when popped.
    queue: BinaryHeap<Reverse<(Instant, u64, Msisdn)>>,
    generations: u64,
    /// Numbers with an upsert under way, whatever became of their entry since: no second
    /// upsert and no delete goes out for one until it is answered, so that an old upsert
    /// cannot reach the core after the registration that replaced it, or after its delete.
    upserting: HashSet<Msisdn>,
}

impl State {
    fn schedule(&mut self, msisdn: &Msisdn, due: Instant) {
        if let Some(entry) = self.entries.get_mut(msisdn) {
            entry.due = due;
            self.queue.push(Reverse((due, entry.generation, msisdn.clone())));
        }
    }
}

/// Keeps a set of registrations alive.
pub struct Registrar {
    client: RegistrationClient,
    config: RegistrarConfig,
    board: Arc<StatusBoard>,
    state: Arc<Mutex<State>>,
    /// Wakes the driver when something became due earlier than it sleeps for.
    wake: Arc<Notify>,
    stop: CancellationToken,
    driver: JoinHandle<()>,
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
        let board = Arc::new(StatusBoard::default());
        let state = Arc::new(Mutex::new(State {
            entries: HashMap::new(),
            queue: BinaryHeap::new(),
            generations: 0,
            upserting: HashSet::new(),
        }));
        let wake = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let driver = tokio::spawn(
            Driver {
                client: client.clone(),
                config: config.clone(),
                in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
                board: board.clone(),
                state: state.clone(),
                wake: wake.clone(),
            }
            .run(stop.clone()),
        );
        let mut registrar = Self { client, config, board, state, wake, stop, driver };
        for registration in registrations {
            registrar.spawn_after(Arc::new(registration), None);
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
        let mut replaced = Vec::new();
        {
            let mut state = self.state.lock();
            let numbers: Vec<Msisdn> = state.entries.keys().cloned().collect();
            let now = Instant::now();
            for msisdn in numbers {
                let Some(entry) = state.entries.get(&msisdn) else { continue };
                match wanted.remove(&msisdn) {
                    Some(registration) if *entry.registration == registration => {
                        let failing = self.board.get(&msisdn).is_some_and(|status| {
                            matches!(
                                status.state,
                                RegistrationState::Refused | RegistrationState::Lapsed | RegistrationState::Retrying
                            )
                        });
                        if failing && !entry.in_flight {
                            info!(%msisdn, "retrying at once (config reload)");
                            state.schedule(&msisdn, now);
                        }
                    }
                    // Replaced: the new registration's upsert replaces the old one at the core.
                    Some(registration) => replaced.push(registration),
                    None => {
                        if let Some(entry) = state.entries.remove(&msisdn) {
                            retired.push(Arc::unwrap_or_clone(entry.registration));
                        }
                    }
                }
            }
        }
        for registration in replaced.into_iter().chain(wanted.into_values()) {
            self.spawn_after(Arc::new(registration), None);
        }
        self.wake.notify_one();
        let retired_numbers: Vec<Msisdn> = retired.iter().filter_map(|r| r.phone_number.clone()).collect();
        self.upserts_answered(&retired_numbers).await;
        let report = self.deleter().delete_all(retired).await;
        for msisdn in &retired_numbers {
            self.board.remove(msisdn);
        }
        info!(subscribers = self.state.lock().entries.len(), deleted = report.deleted, "subscriber list reloaded");
        report
    }

    /// Waits until no upsert of `numbers` is under way (each is bounded by the client's
    /// request timeout), so that a delete sent next is not overtaken by one.
    async fn upserts_answered(&self, numbers: &[Msisdn]) {
        let deadline = Instant::now() + self.config.shutdown_timeout;
        loop {
            let waiting = {
                let state = self.state.lock();
                numbers.iter().filter(|msisdn| state.upserting.contains(*msisdn)).count()
            };
            if waiting == 0 {
                return;
            }
            if Instant::now() >= deadline {
                warn!(waiting, "upserts still under way; deleting anyway");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Takes over refreshing `registrations` that another instance kept: each with the time
    /// the core holds it until, when known, so that its first refresh comes in time rather
    /// than at once (without one, or when it has passed, it is registered at once).
    /// Each registration is shared with the caller, not copied.
    pub fn adopt(&mut self, registrations: Vec<(Arc<Registration>, Option<SystemTime>)>) {
        for (registration, until) in registrations {
            let remaining = until.and_then(|until| until.duration_since(SystemTime::now()).ok());
            self.spawn_after(registration, remaining);
        }
        self.wake.notify_one();
    }

    /// Stops refreshing the registrations of `numbers` without deleting them: another
    /// instance refreshes them from now on.
    pub async fn release(&mut self, numbers: &[Msisdn]) {
        let mut state = self.state.lock();
        for msisdn in numbers {
            if state.entries.remove(msisdn).is_some() {
                self.board.remove(msisdn);
            }
        }
    }

    /// The numbers whose registrations this registrar refreshes.
    pub fn numbers(&self) -> Vec<Msisdn> {
        self.state.lock().entries.keys().cloned().collect()
    }

    /// Stops refreshing and leaves every registration at the core: the instances that stay
    /// take them over.
    pub async fn hand_over(self) -> usize {
        let registrations = self.stop_driver().await;
        let count = registrations.len();
        info!(registrations = count, "registrations handed over, none deleted");
        count
    }

    /// Stops refreshing and deletes `registrations` at the core, whether this registrar
    /// refreshed them or not (the last instance to stop deletes every subscriber's).
    pub async fn shutdown_deleting(self, registrations: Vec<Registration>) -> ShutdownReport {
        let (board, deleter) = (self.board.clone(), self.deleter());
        self.stop_driver().await;
        for registration in &registrations {
            if let Some(msisdn) = &registration.phone_number {
                if board.get(msisdn).is_none() {
                    board.insert(msisdn.clone(), SubscriberStatus::new(registration));
                }
                board.update(msisdn, |status| status.may_be_registered = true);
            }
        }
        let report = deleter.delete_all(registrations).await;
        info!(deleted = report.deleted, failed = report.failed, "registrations removed at shutdown");
        report
    }

    /// Stops refreshing and deletes every registration the core may hold.
    pub async fn shutdown(self) -> ShutdownReport {
        let deleter = self.deleter();
        let registrations = self.stop_driver().await;
        let report = deleter.delete_all(registrations).await;
        info!(deleted = report.deleted, failed = report.failed, "registrations removed at shutdown");
        report
    }

    /// Stops the driver (no upsert is under way once this returns) and hands back every
    /// registration it refreshed.
    async fn stop_driver(self) -> Vec<Registration> {
        self.stop.cancel();
        if let Err(error) = self.driver.await {
            error!(%error, "the registrar's driver ended abnormally");
        }
        let mut state = self.state.lock();
        state.queue.clear();
        state.entries.drain().map(|(_, entry)| Arc::unwrap_or_clone(entry.registration)).collect()
    }

    /// Starts refreshing `registration`; with `held_for`, the core holds it that long already
    /// and the first refresh waits as a refresh after an upsert would.
    fn spawn_after(&mut self, registration: Arc<Registration>, held_for: Option<Duration>) {
        let Some(msisdn) = registration.phone_number.clone() else {
            error!(registration = ?registration, "registration without phone number skipped");
            return;
        };
        let mut status = SubscriberStatus::new(&registration);
        let now = Instant::now();
        let due = match held_for {
            Some(held_for) => {
                status.state = RegistrationState::Registered;
                status.last_result = "held over from another instance".into();
                status.may_be_registered = true;
                status.expires_at = Some(status::at_in(held_for));
                let delay = refresh_delay(held_for, &self.config);
                status.next_attempt = Some(status::at_in(delay));
                now + delay
            }
            None => now,
        };
        self.board.insert(msisdn.clone(), status);
        let mut state = self.state.lock();
        state.generations += 1;
        let entry = Entry {
            registration,
            generation: state.generations,
            due,
            in_flight: false,
            failures: 0,
            expires: held_for.map(|held_for| now + held_for),
            first: held_for.is_none(),
        };
        state.entries.insert(msisdn.clone(), entry);
        state.schedule(&msisdn, due);
        // The driver may be asleep until a later time (or, at start, not have looked yet).
        self.wake.notify_one();
    }

    fn deleter(&self) -> Deleter {
        Deleter { client: self.client.clone(), config: self.config.clone(), board: self.board.clone() }
    }
}

/// Deletes registrations at the core, at a stop or for subscribers removed.
struct Deleter {
    client: RegistrationClient,
    config: RegistrarConfig,
    board: Arc<StatusBoard>,
}

impl Deleter {
    /// Deletes those of `registrations` that the core may hold, within the shutdown timeout.
    async fn delete_all(&self, registrations: Vec<Registration>) -> ShutdownReport {
        let in_flight = Arc::new(Semaphore::new(self.config.max_in_flight));
        let mut deletes = JoinSet::new();
        for registration in registrations {
            let Some(msisdn) = registration.phone_number.clone() else { continue };
            if !self.board.get(&msisdn).is_some_and(|status| status.may_be_registered) {
                self.board.remove(&msisdn);
                continue;
            }
            let client = self.client.clone();
            let in_flight = in_flight.clone();
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

/// The one task that refreshes every registration.
struct Driver {
    client: RegistrationClient,
    config: RegistrarConfig,
    in_flight: Arc<Semaphore>,
    board: Arc<StatusBoard>,
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
}

/// What an upsert task hands back: whose, for which generation, and what came of it.
type Answered = (Msisdn, u64, Attempt);

impl Driver {
    async fn run(self, stop: CancellationToken) {
        // Upserts under way; dropped (aborted) with the driver at a stop.
        let mut attempts: JoinSet<Answered> = JoinSet::new();
        loop {
            self.start_due(&mut attempts);
            // At the in-flight limit the next due waits for an answer, not for its time.
            let room = attempts.len() < self.config.max_in_flight;
            let next = self.state.lock().queue.peek().map(|Reverse((due, _, _))| *due);
            let sleep = tokio::time::sleep_until(next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)));
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.wake.notified() => {}
                () = sleep, if room => {}
                Some(answered) = attempts.join_next(), if !attempts.is_empty() => {
                    match answered {
                        Ok((msisdn, generation, attempt)) => self.answered(&msisdn, generation, &attempt),
                        Err(error) => error!(%error, "a registration attempt ended abnormally"),
                    }
                }
            }
        }
    }

    /// Starts an upsert for every subscriber due now, up to the in-flight limit (the rest
    /// wait in the queue, not as tasks).
    fn start_due(&self, attempts: &mut JoinSet<Answered>) {
        let now = Instant::now();
        let mut guard = self.state.lock();
        let state = &mut *guard;
        while attempts.len() < self.config.max_in_flight {
            let Some(Reverse((due, generation, _))) = state.queue.peek() else { break };
            if *due > now {
                break;
            }
            let (due, generation) = (*due, *generation);
            let Some(Reverse((_, _, msisdn))) = state.queue.pop() else { break };
            if state.upserting.contains(&msisdn) {
                // The upsert of the registration this one replaced is still under way: this
                // one goes out once it is answered.
                let retry = now + UPSERT_UNDER_WAY_RETRY;
                if let Some(entry) = state.entries.get_mut(&msisdn).filter(|entry| entry.generation == generation) {
                    entry.due = retry;
                    state.queue.push(Reverse((retry, generation, msisdn)));
                }
                continue;
            }
            let Some(entry) = state.entries.get_mut(&msisdn) else { continue };
            if entry.generation != generation || entry.due != due || entry.in_flight {
                continue;
            }
            entry.in_flight = true;
            state.upserting.insert(msisdn.clone());
            let registration = entry.registration.clone();
            let (client, in_flight, board) = (self.client.clone(), self.in_flight.clone(), self.board.clone());
            attempts.spawn(async move {
                let attempt = attempt(&client, &in_flight, &board, &msisdn, &registration).await;
                (msisdn, generation, attempt)
            });
        }
    }

    /// Takes an upsert's answer: the next attempt's time, and the status.
    fn answered(&self, msisdn: &Msisdn, generation: u64, attempt: &Attempt) {
        let mut state = self.state.lock();
        state.upserting.remove(msisdn);
        let Some(entry) = state.entries.get_mut(msisdn) else { return };
        if entry.generation != generation {
            return;
        }
        entry.in_flight = false;
        let delay = match attempt {
            Attempt::Registered(ttl) => {
                entry.failures = 0;
                entry.expires = Some(Instant::now() + *ttl);
                if std::mem::take(&mut entry.first) {
                    first_refresh_delay(*ttl, &self.config)
                } else {
                    refresh_delay(*ttl, &self.config)
                }
            }
            Attempt::Refused(_) => {
                entry.failures = entry.failures.saturating_add(1);
                self.config.refused_retry
            }
            Attempt::Failed(_) => {
                entry.failures = entry.failures.saturating_add(1);
                let remaining = entry.expires.map(|at| at.saturating_duration_since(Instant::now()));
                backoff_delay(entry.failures, remaining, &self.config)
            }
        };
        let (failures, expires, route_type) = (entry.failures, entry.expires, entry.registration.route_type);
        state.schedule(msisdn, Instant::now() + delay);
        drop(state);
        report(&self.board, msisdn, route_type, attempt, failures, expires, delay);
    }
}

/// One upsert of `registration`, within the in-flight limit.
async fn attempt(
    client: &RegistrationClient,
    in_flight: &Semaphore,
    board: &StatusBoard,
    msisdn: &Msisdn,
    registration: &Registration,
) -> Attempt {
    let Ok(_permit) = in_flight.acquire().await else {
        return Attempt::Failed("registrar is shutting down".into());
    };
    // Set before sending: if this attempt is stopped mid-call, the core may still have accepted it.
    board.update(msisdn, |status| status.may_be_registered = true);
    match client.upsert(registration).await {
        Ok(response) if response.status_code == StatusCode::Ok as i32 => {
            let ttl = duration_from_wire(response.time_to_live.as_ref())
                .filter(|ttl| !ttl.is_zero())
                .unwrap_or(DEFAULT_TIME_TO_LIVE)
                // A time to live meant as "for ever" must not overflow the clock arithmetic.
                .min(MAX_TIME_TO_LIVE);
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

/// Logs an attempt's outcome and shows it on the board.
fn report(
    board: &StatusBoard,
    msisdn: &Msisdn,
    route_type: domain::types::RouteType,
    attempt: &Attempt,
    failures: u32,
    expires: Option<Instant>,
    delay: Duration,
) {
    let now = Instant::now();
    let live = expires.is_some_and(|at| at > now);
    let (state, result) = match attempt {
        Attempt::Registered(ttl) => {
            info!(%msisdn, %route_type, ttl = ?ttl, next_refresh_in = ?delay, "registered");
            (RegistrationState::Registered, status::ok_result())
        }
        Attempt::Refused(reason) => {
            warn!(%msisdn, %reason, retry_in = ?delay, "core refused the registration");
            (RegistrationState::Refused, Arc::from(reason.as_str()))
        }
        Attempt::Failed(reason) if live => {
            warn!(%msisdn, %reason, attempt = failures, retry_in = ?delay,
                  expires_in = ?expires.map(|at| at - now), "refresh failed; retrying before expiry");
            (RegistrationState::Retrying, Arc::from(reason.as_str()))
        }
        Attempt::Failed(reason) => {
            warn!(%msisdn, %reason, attempt = failures, retry_in = ?delay, "registration failed");
            let state = if expires.is_some() { RegistrationState::Lapsed } else { RegistrationState::Pending };
            (state, Arc::from(reason.as_str()))
        }
    };
    board.update(msisdn, |status| {
        status.state = state;
        status.last_result = result;
        status.last_attempt = Some(status::at_in(Duration::ZERO));
        status.next_attempt = Some(status::at_in(delay));
        status.consecutive_failures = failures;
        status.expires_at = expires.filter(|at| *at > now).map(|at| status::at_in(at - now));
        if matches!(attempt, Attempt::Registered(_)) {
            status.upserts += 1;
        }
    });
    if let (Attempt::Registered(ttl), true) = (attempt, live) {
        board.note_registered(msisdn, SystemTime::now() + *ttl);
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
