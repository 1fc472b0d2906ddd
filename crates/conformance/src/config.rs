//! What the harness is told (the TAS under test, its subscribers, the harness's own listeners
//! and waits) and why it may fail to run at all. Kept apart from the crate root so that the
//! shared context and the cases can name these types without reaching back to `lib.rs`;
//! `lib.rs` re-exports them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use domain::types::{Direction, Msisdn, Registration, SipsUri};

use crate::expect::Expectation;

/// What the harness needs to know.
#[derive(Debug, Clone)]
pub struct HarnessConfig {
    /// The TAS under test, `sips:host` or `sips:host:port`, as it registers.
    pub target: SipsUri,
    /// The CA its certificate must chain to; default: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The subscribers the TAS serves, as it would register them.
    pub subscribers: Vec<Registration>,
    /// Where the harness takes leg 3 from the TAS, over TLS (the TAS's view of the core).
    pub interconnect: SocketAddr,
    /// The harness's certificate chain and key for that listener.
    pub cert_file: PathBuf,
    /// Its key.
    pub key_file: PathBuf,
    /// The address the harness's media and handsets use.
    pub media_address: IpAddr,
    /// How long to wait for the TAS to call each Ingress subscriber (it starts those calls
    /// itself); `None` skips the Ingress cases.
    pub ingress_wait: Option<Duration>,
    /// How long after its INVITE a call may go without a final response before the harness
    /// cancels it (a Fallback call's no-answer time, 5 s at the harness's core, included).
    pub answer_wait: Duration,
    /// Only the cases these patterns name (a name, or a prefix ending in `*`); all when empty.
    pub only: Vec<String>,
    /// Serve SipBreakoutService too, for the TAS to register against (instead of the harness
    /// registering the claimed subscribers itself).
    pub grpc: Option<GrpcSide>,
    /// What the TAS is declared to do per subscriber and direction; a call case whose outcome
    /// differs fails. Undeclared calls pass on any proper outcome, which the report names.
    pub expectations: HashMap<(Msisdn, Direction), Expectation>,
}

/// The harness's own SipBreakoutService.
#[derive(Debug, Clone)]
pub struct GrpcSide {
    /// Where it listens (plain HTTP/2, sandbox authentication).
    pub listen: SocketAddr,
    /// The time to live it grants; the TAS must refresh within it.
    pub time_to_live: Duration,
    /// How long the TAS has to register every subscriber.
    pub wait: Duration,
    /// After every other case, how long to wait for DeleteRegistration of each subscriber
    /// while the TAS is being stopped; `None` skips those cases.
    pub delete_wait: Option<Duration>,
}

/// Why the harness could not run at all (as opposed to a case failing).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The emulated SBC would not start.
    #[error("the emulated SBC: {0}")]
    Sbc(#[from] emulator::sbc::SbcError),
    /// The emulated core would not start.
    #[error("the emulated core: {0}")]
    Core(#[from] emulator::CoreError),
    /// A socket would not open.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// TLS settings are unusable.
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
}
