//! The emulated SBC: the operator's call path on one machine.
//!
//! - The access side takes leg 1 from SIP user agents (UDP, TCP, TLS) and delivers calls to
//!   callees (simulated [`handsets`], or configured routes such as SIPp as Bob).
//! - The interconnect side (TLS) is where TASs are reached: leg 2 goes out to the registered
//!   `sip_uri` with the MO or MT prefix and a fresh `Session-ID`; leg 3 comes back carrying that
//!   `Session-ID` and becomes leg 4 to the callee. A leg 3 without a known `Session-ID` is
//!   refused and counted rather than looped to the TAS again; a call without one to an Ingress
//!   subscriber is the TAS placing a call.
//!
//! Route types: Loop/Loop-MO/Loop-MT send leg 2 and create leg 4 only when leg 3 comes back;
//! Fork rings the TAS and the callee at once (first 2xx wins, the other is cancelled), for the
//! subscriber's incoming calls and, with `fork_mo` (the default), its outgoing ones too;
//! Fallback rings the callee first and the TAS on busy or no answer.

mod access;
pub mod handsets;
mod interconnect;
mod legs;
mod records;
mod shared;

pub use records::{CallRoute, Leg, LegRecord, SbcCall};

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::Mutex;
use thiserror::Error;
use tracing::info;

use crate::config::SbcConfig;
use crate::registry::Registry;
use access::leg1;
use handsets::{HandsetHandler, Handsets};
use interconnect::from_tas;
use shared::Shared;
use sip::config::UaConfig;
use sip::dialog::{DialogId, OfferAnswer};
use sip::endpoint::{self, Endpoint, EndpointConfig};
use sip::message::StatusCode;
use sip::transport::policy::PeerPolicy;
use sip::transport::stream::StreamLimits;
use sip::ua::{PendingInvite, SessionHandler};
use tls::TlsError;

/// Why the SBC could not start.
#[derive(Debug, Error)]
pub enum SbcError {
    /// A certificate, key or CA is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A listener could not be opened.
    #[error("{0}")]
    Listen(#[from] std::io::Error),
    /// The config is inconsistent.
    #[error("{0}")]
    Config(String),
}

/// A running SBC.
pub struct Sbc {
    /// Where SIP user agents place calls (leg 1).
    pub access: Endpoint,
    /// Where TASs send leg 3 (TLS).
    pub interconnect: Endpoint,
    /// The simulated handsets' own endpoint.
    pub handset_endpoint: Endpoint,
    shared: Arc<Shared>,
}

fn ua_config(config: &SbcConfig, contact_host: String) -> UaConfig {
    config.extensions().apply(UaConfig::new(contact_host, format!("ringer-core-sbc/{}", env!("CARGO_PKG_VERSION"))))
}

/// Starts the SBC on the registrations of `registry`.
pub async fn start(config: &SbcConfig, registry: Arc<Registry>) -> Result<Sbc, SbcError> {
    config.validate().map_err(SbcError::Config)?;
    let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) else {
        return Err(SbcError::Config("sbc.cert_file and sbc.key_file are needed".into()));
    };
    let server_tls = tls::server_config(tls::load_chain(cert)?, tls::load_key(key)?, None)?;
    let client_tls = tls::client_config(config.tas_ca_file.as_deref(), None)?;
    let handsets = Arc::new(Handsets::new(&config.handsets));
    let base = EndpointConfig {
        hep: None,
        tls: None,
        tcp: None,
        udp: None,
        policy: PeerPolicy::default(),
        limits: StreamLimits::default(),
        ua: ua_config(config, config.interconnect_listen.ip().to_string()),
        outbound: sip::outbound::OutboundSettings { tls: Some(client_tls), core: None, dns_server: config.dns_server },
    };
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let handset_endpoint = endpoint::start(
        EndpointConfig {
            tcp: Some(loopback),
            udp: Some(loopback),
            ua: ua_config(config, "127.0.0.1".into()),
            ..base.clone()
        },
        Arc::new(HandsetHandler(handsets.clone())),
    )
    .await?;
    let access_host = [config.tls_listen, config.tcp_listen, config.udp_listen]
        .into_iter()
        .flatten()
        .next()
        .map(|addr| addr.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let access = endpoint::bind(EndpointConfig {
        tls: config.tls_listen.map(|addr| (addr, server_tls.clone())),
        tcp: config.tcp_listen,
        udp: config.udp_listen,
        ua: ua_config(config, access_host),
        ..base.clone()
    })
    .await?;
    let interconnect =
        endpoint::bind(EndpointConfig { tls: Some((config.interconnect_listen, server_tls)), ..base }).await?;
    // Each side places legs on the other's user agent: the sides are wired as they are built,
    // their handlers holding the SBC weakly.
    let mut endpoints = None;
    let shared = Arc::new_cyclic(|shared: &Weak<Shared>| {
        let access = access.serve(Arc::new(SideHandler { shared: shared.clone(), side: Side::Access }));
        let interconnect =
            interconnect.serve(Arc::new(SideHandler { shared: shared.clone(), side: Side::Interconnect }));
        let built = Shared {
            config: config.clone(),
            registry,
            handsets,
            handset_target: handset_endpoint.udp_addr.map(|addr| format!("sip:{addr}")),
            access: access.user_agent().clone(),
            interconnect: interconnect.user_agent().clone(),
            sessions: Mutex::new(HashMap::new()),
            calls: Mutex::new(VecDeque::new()),
            refused_leg3: AtomicU64::new(0),
            leg2_tel: AtomicBool::new(config.leg2_tel),
            fork_mo: AtomicBool::new(config.fork_mo),
            settling: Arc::default(),
        };
        endpoints = Some((access, interconnect));
        built
    });
    let (access, interconnect) = match endpoints {
        Some(endpoints) => endpoints,
        None => unreachable!("Arc::new_cyclic runs its closure before returning"),
    };
    info!(
        udp = ?access.udp_addr, tcp = ?access.tcp_addr, tls = ?access.tls_addr,
        interconnect = ?interconnect.tls_addr, handsets = config.handsets.len(),
        "emulated SBC listening"
    );
    Ok(Sbc { access, interconnect, handset_endpoint, shared })
}

impl Sbc {
    /// Whether leg 2's Request-URI is written `tel:+<prefix><number>` (else `sip:` with
    /// `user=phone`); the core uses both forms.
    pub fn set_leg2_tel(&self, tel: bool) {
        self.shared.leg2_tel.store(tel, Ordering::Relaxed);
    }

    /// Whether a Fork subscriber's own calls (MO) are forked to its TAS too (`sbc.fork_mo`).
    pub fn set_fork_mo(&self, fork: bool) {
        self.shared.fork_mo.store(fork, Ordering::Relaxed);
    }

    /// The calls seen, oldest first (the last 1000).
    pub fn calls(&self) -> Vec<SbcCall> {
        self.shared.calls.lock().iter().map(|call| call.lock().clone()).collect()
    }

    /// Leg 3 INVITEs refused because they carried no known Session-ID.
    pub fn refused_leg3(&self) -> u64 {
        self.shared.refused_leg3.load(Ordering::Relaxed)
    }

    /// The simulated handsets.
    pub fn handsets(&self) -> &Arc<Handsets> {
        &self.shared.handsets
    }

    /// Dialogs and transactions still alive on every side (0 when every call is over).
    pub fn live_state(&self) -> usize {
        [&self.access, &self.interconnect, &self.handset_endpoint]
            .iter()
            .map(|endpoint| endpoint.live_dialogs() + endpoint.pending_invites() + endpoint.clients().in_progress())
            .sum::<usize>()
            + self.shared.settling.load(Ordering::Relaxed)
    }

    /// Calls with a leg 2 under way.
    pub fn open_sessions(&self) -> usize {
        self.shared.sessions.lock().len()
    }

    /// Stops every listener.
    pub fn shutdown(&self) {
        self.access.shutdown();
        self.interconnect.shutdown();
        self.handset_endpoint.shutdown();
    }
}

/// Which side of the SBC a handler serves.
#[derive(Clone, Copy)]
enum Side {
    /// User agents: leg 1.
    Access,
    /// TASs: leg 3 and Ingress calls.
    Interconnect,
}

struct SideHandler {
    /// The SBC, held weakly: it owns the endpoints that own this handler.
    shared: Weak<Shared>,
    side: Side,
}

impl SessionHandler for SideHandler {
    fn on_invite(&self, invite: PendingInvite) {
        let Some(shared) = self.shared.upgrade() else {
            invite.reject(StatusCode::SERVICE_UNAVAILABLE, None, Some("the SBC is stopping"));
            return;
        };
        match self.side {
            Side::Access => tokio::spawn(leg1(shared, invite)),
            Side::Interconnect => tokio::spawn(from_tas(shared, invite)),
        };
    }

    fn on_offer(&self, _dialog: &DialogId, _offer: &Bytes) -> OfferAnswer {
        OfferAnswer::NotAcceptable("the SBC relays offers only within bridged calls".into())
    }
}
