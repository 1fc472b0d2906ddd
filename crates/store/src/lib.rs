//! ringer's state in a database, through one query layer for both backends (sqlx's `Any`
//! driver): an embedded SQLite file for a single instance (no database server needed) and
//! PostgreSQL for several instances sharing their state. The schema is versioned by the
//! migrations in `crates/store/migrations`, applied at start or ahead with `ringer db migrate`.
//!
//! What it keeps: the subscribers (number, route type, prefixes, behaviours per direction, the
//! behaviours as opaque JSON the TAS writes and reads) with a revision counted up by every
//! change, so that running instances notice one by reading a single number; the registration
//! leases that share the subscribers among live instances; call detail records; voicemail
//! messages with their audio and state, greetings, PINs and the HTTP API's tokens; the settings
//! subscribers make for themselves (forwarding, do-not-disturb), as JSON.

// Outside tests nothing is unwrapped: errors are handled or explained (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod calls;
mod consents;
mod leases;
mod mailboxes;
mod pool;
mod settings;
mod subscribers;
mod voicemail;
mod web;

pub use calls::{CallRecordRow, Reception};
pub use consents::{ConsentRow, CONSENT_ACTIVE, CONSENT_REVOKED};
pub use leases::{InstanceRow, LeaseRow, Leases};
pub use mailboxes::{PinState, TokenRow};
pub use pool::{now_millis, without_password, Backend, Store, StoreError, DEFAULT_URL};
pub use subscribers::{Replaced, SubscriberRow};
pub use voicemail::{MessageState, VoicemailRow};
pub use web::LoginPinRow;
