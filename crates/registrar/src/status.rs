//! What the registrar knows of each subscriber: last result, expiry, next attempt. Shown in log
//! lines and, when configured, as JSON at `GET /registrations`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::Json;
use parking_lot::RwLock;
use serde::Serialize;
use tokio::net::TcpListener;

use domain::types::{Msisdn, Registration, RouteType};

/// Where a subscriber's registration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationState {
    /// Not yet answered.
    Pending,
    /// Registered and not yet expired.
    Registered,
    /// Registered, but the last refresh failed; retrying before expiry.
    Retrying,
    /// The core refused it (NOT_ACCEPTABLE, PERMISSION_DENIED, a bad token…); retried on a long period.
    Refused,
    /// It expired while the core could not be reached.
    Lapsed,
    /// Deleted at shutdown or reload.
    Deleted,
}

impl RegistrationState {
    /// Every state.
    pub const ALL: [RegistrationState; 6] = [
        RegistrationState::Pending,
        RegistrationState::Registered,
        RegistrationState::Retrying,
        RegistrationState::Refused,
        RegistrationState::Lapsed,
        RegistrationState::Deleted,
    ];

    /// The state's name, as the status view and the metrics write it.
    pub fn name(self) -> &'static str {
        match self {
            RegistrationState::Pending => "pending",
            RegistrationState::Registered => "registered",
            RegistrationState::Retrying => "retrying",
            RegistrationState::Refused => "refused",
            RegistrationState::Lapsed => "lapsed",
            RegistrationState::Deleted => "deleted",
        }
    }
}

impl Serialize for RegistrationState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// One subscriber's registration status. Kept small (a million subscribers hold one each):
/// times as times and shared text, written as RFC 3339 and strings in JSON.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriberStatus {
    /// The subscriber.
    pub phone_number: String,
    /// Its route type.
    #[serde(serialize_with = "as_text")]
    pub route_type: RouteType,
    /// The `sip_uri` registered.
    pub sip_uri: Arc<str>,
    /// Where it stands.
    pub state: RegistrationState,
    /// What the last attempt brought.
    pub last_result: Arc<str>,
    /// When the last attempt ended.
    #[serde(serialize_with = "as_rfc3339")]
    pub last_attempt: Option<SystemTime>,
    /// When the registration expires at the core, if it is registered.
    #[serde(serialize_with = "as_rfc3339")]
    pub expires_at: Option<SystemTime>,
    /// When the next attempt is due.
    #[serde(serialize_with = "as_rfc3339")]
    pub next_attempt: Option<SystemTime>,
    /// Successful upserts so far.
    pub upserts: u64,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// Whether an upsert has been sent, so the core may hold this registration (it is then
    /// deleted at shutdown, even when the answer never came back).
    #[serde(skip)]
    pub may_be_registered: bool,
}

impl SubscriberStatus {
    pub(crate) fn new(registration: &Registration) -> Self {
        Self {
            phone_number: registration.label(),
            route_type: registration.route_type,
            sip_uri: registration.sip_uri.as_str().into(),
            state: RegistrationState::Pending,
            last_result: "".into(),
            last_attempt: None,
            expires_at: None,
            next_attempt: None,
            upserts: 0,
            consecutive_failures: 0,
            may_be_registered: false,
        }
    }
}

fn as_text<S: serde::Serializer>(value: &RouteType, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

fn as_rfc3339<S: serde::Serializer>(value: &Option<SystemTime>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(at) => serializer.collect_str(&humantime::format_rfc3339_seconds(*at)),
        None => serializer.serialize_none(),
    }
}

/// The status of every subscriber, shared by the registrar's tasks.
#[derive(Debug, Default)]
pub struct StatusBoard {
    entries: RwLock<BTreeMap<Msisdn, SubscriberStatus>>,
    /// Registrations made since the last [`StatusBoard::take_registered`], with their
    /// expiry, once [`StatusBoard::track_registered`] asked for them.
    registered: parking_lot::Mutex<Option<Vec<(Msisdn, SystemTime)>>>,
    /// The sip_uri last seen, shared by the entries that registered it.
    sip_uri: parking_lot::Mutex<Option<Arc<str>>>,
}

impl StatusBoard {
    /// From now on, keeps each registration made, with its expiry, for
    /// [`StatusBoard::take_registered`] (which must then be called regularly).
    pub fn track_registered(&self) {
        self.registered.lock().get_or_insert_with(Vec::new);
    }

    /// The registrations made since the last call, with their expiry.
    pub fn take_registered(&self) -> Vec<(Msisdn, SystemTime)> {
        self.registered.lock().as_mut().map(std::mem::take).unwrap_or_default()
    }

    pub(crate) fn note_registered(&self, msisdn: &Msisdn, expires: SystemTime) {
        if let Some(registered) = self.registered.lock().as_mut() {
            registered.push((msisdn.clone(), expires));
        }
    }

    /// The status of one subscriber.
    pub fn get(&self, msisdn: &Msisdn) -> Option<SubscriberStatus> {
        self.read().get(msisdn).cloned()
    }

    /// Every subscriber's status, by number.
    pub fn all(&self) -> Vec<SubscriberStatus> {
        self.read().values().cloned().collect()
    }

    /// How many registrations stand in each state of [`RegistrationState::ALL`], counted in
    /// place (a scrape copies no entry).
    pub fn counts(&self) -> [(RegistrationState, usize); 6] {
        let mut counts = RegistrationState::ALL.map(|state| (state, 0));
        for status in self.read().values() {
            if let Some((_, count)) = counts.iter_mut().find(|(state, _)| *state == status.state) {
                *count += 1;
            }
        }
        counts
    }

    pub(crate) fn update(&self, msisdn: &Msisdn, change: impl FnOnce(&mut SubscriberStatus)) {
        let mut entries = self.entries.write();
        if let Some(status) = entries.get_mut(msisdn) {
            change(status);
        }
    }

    pub(crate) fn insert(&self, msisdn: Msisdn, mut status: SubscriberStatus) {
        // Every subscriber of one TAS registers the same sip_uri: one copy for all.
        {
            let mut shared = self.sip_uri.lock();
            match shared.as_ref() {
                Some(uri) if **uri == *status.sip_uri => status.sip_uri = uri.clone(),
                _ => *shared = Some(status.sip_uri.clone()),
            }
        }
        let mut entries = self.entries.write();
        entries.insert(msisdn, status);
    }

    pub(crate) fn remove(&self, msisdn: &Msisdn) {
        let mut entries = self.entries.write();
        entries.remove(msisdn);
    }

    fn read(&self) -> parking_lot::RwLockReadGuard<'_, BTreeMap<Msisdn, SubscriberStatus>> {
        self.entries.read()
    }
}

/// The wall-clock moment `delay` from now.
pub(crate) fn at_in(delay: Duration) -> SystemTime {
    SystemTime::now() + delay
}

/// The text of a successful upsert, shared by every entry that shows it.
pub(crate) fn ok_result() -> Arc<str> {
    static OK: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    OK.get_or_init(|| Arc::from("STATUS_CODE_OK")).clone()
}

/// Serves `GET /registrations` (JSON) from `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, board: Arc<StatusBoard>) -> std::io::Result<()> {
    axum::serve(listener, router(board)).await
}

/// The `GET /registrations` route, to serve beside others.
pub fn router(board: Arc<StatusBoard>) -> axum::Router {
    axum::Router::new().route("/registrations", axum::routing::get(registrations)).with_state(board)
}

async fn registrations(State(board): State<Arc<StatusBoard>>) -> Json<Vec<SubscriberStatus>> {
    Json(board.all())
}
