//! Connections ringer opens itself: for the calls it places (leg 3, Ingress) and for requests
//! in a dialog whose connection has closed. Stream connections are kept and reused per
//! destination, so a busy TAS does one TLS handshake with the core rather than one a call.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;
use parking_lot::{Mutex, MutexGuard};
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::message::Uri;
use super::transport::policy::{ConnectionCounter, PeerPolicy};
use super::transport::stream::{self, StreamContext, StreamLimits};
use super::transport::Handler;
use super::transport::{Link, Transport};

/// Why no connection could be made to a target.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The target is not a SIP URI ringer can send to.
    #[error("{target}: {reason}")]
    BadTarget {
        /// The target, as written.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The host did not resolve.
    #[error("{target}: cannot resolve {host}: {source}")]
    Resolve {
        /// The target, as written.
        target: String,
        /// The host looked up.
        host: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// The host resolved to no address.
    #[error("{target}: {host} has no address")]
    NoAddress {
        /// The target, as written.
        target: String,
        /// The host looked up.
        host: String,
    },
    /// The host is not a name a TLS certificate can be checked against.
    #[error("{target}: {host} is not a valid TLS server name: {source}")]
    ServerName {
        /// The target, as written.
        target: String,
        /// The host.
        host: String,
        /// Why rustls refused it.
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
    /// A `sips:` target, and no TLS client settings.
    #[error("{target}: no TLS client settings to connect with")]
    NoTls {
        /// The target, as written.
        target: String,
    },
    /// The endpoint is shutting down.
    #[error("{target}: the endpoint has stopped")]
    Stopped {
        /// The target, as written.
        target: String,
    },
    /// The connection (or its TLS handshake) failed.
    #[error("{target}: cannot connect: {explained}")]
    Connect {
        /// The target, as written.
        target: String,
        /// What went wrong, in words an operator can act on (a TLS alert or certificate
        /// problem named).
        explained: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The ports the endpoint listens on, which go into Contact and Via of requests it sends.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListeningPorts {
    /// TLS.
    pub tls: Option<u16>,
    /// TCP.
    pub tcp: Option<u16>,
    /// UDP.
    pub udp: Option<u16>,
}

impl ListeningPorts {
    /// The listening port for `transport`.
    pub fn of(&self, transport: Transport) -> Option<u16> {
        match transport {
            Transport::Tls => self.tls,
            Transport::Tcp => self.tcp,
            Transport::Udp => self.udp,
        }
    }
}

/// What the connections ringer opens need from the endpoint: where what they read goes (the
/// transaction layer, held weakly: it owns the user agent that owns this), and the endpoint's
/// policy, counter, limits and shutdown.
pub(crate) struct OutboundContext {
    pub(crate) handler: Weak<dyn Handler>,
    pub(crate) policy: Arc<PeerPolicy>,
    pub(crate) counter: Arc<ConnectionCounter>,
    pub(crate) limits: StreamLimits,
    pub(crate) shutdown: CancellationToken,
}

/// How ringer reaches the peers it sends requests to.
#[derive(Clone, Default)]
pub struct OutboundSettings {
    /// TLS client settings for `sips:` targets; `None`: no TLS out.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Where in-dialog requests whose connection has closed go (the core), when no route set
    /// says otherwise; `None`: the peer's Contact.
    pub core: Option<Uri>,
    /// The DNS server for SRV lookups (a lab's own); `None`: the system's.
    pub dns_server: Option<SocketAddr>,
}

/// Opens (and keeps) the connections for requests ringer sends.
pub struct Outbound {
    context: OutboundContext,
    udp: Option<(Arc<UdpSocket>, SocketAddr)>,
    tls: Option<Arc<rustls::ClientConfig>>,
    core: Option<Uri>,
    ports: ListeningPorts,
    connections: Mutex<HashMap<(String, u16, Transport), ConnectionSlot>>,
    /// For SRV lookups (RFC 3263) of targets without a port; `None` when none could be set up.
    resolver: Option<TokioResolver>,
}

/// The connection to one destination, once made.
type ConnectionSlot = Arc<tokio::sync::Mutex<Option<Link>>>;

/// How long a new connection (TCP and TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Outbound {
    /// Connections as `settings` say, from an endpoint listening on `ports` (its UDP socket,
    /// if any, sends requests to `sip:` targets without a transport).
    pub(crate) fn new(
        settings: OutboundSettings,
        ports: ListeningPorts,
        udp: Option<(Arc<UdpSocket>, SocketAddr)>,
        context: OutboundContext,
    ) -> Self {
        let OutboundSettings { tls, core, dns_server } = settings;
        Self { context, udp, tls, core, ports, connections: Mutex::new(HashMap::new()), resolver: resolver(dns_server) }
    }

    fn resolver(&self) -> Option<&TokioResolver> {
        self.resolver.as_ref()
    }

    /// Where a target without a port is served (RFC 3263 §4.2): the SRV record of lowest
    /// priority and highest weight, or `None` (then the default port applies).
    pub async fn srv(&self, host: &str, transport: Transport) -> Option<(String, u16)> {
        let service = match transport {
            Transport::Tls => "_sips._tcp",
            Transport::Tcp => "_sip._tcp",
            Transport::Udp => "_sip._udp",
        };
        let name = format!("{service}.{}.", host.trim_end_matches('.'));
        let lookup = match self.resolver()?.srv_lookup(name.as_str()).await {
            Ok(lookup) => lookup,
            Err(error) => {
                debug!(%name, %error, "no SRV record; using the default port");
                return None;
            }
        };
        let best = lookup.iter().min_by_key(|srv| (srv.priority(), std::cmp::Reverse(srv.weight())))?;
        let target = best.target().to_utf8();
        info!(%name, target = %target, port = best.port(), "SRV record found");
        Some((target.trim_end_matches('.').to_owned(), best.port()))
    }

    /// The core's SIP address, if configured.
    pub fn core(&self) -> Option<&Uri> {
        self.core.as_ref()
    }

    /// The ports the endpoint listens on.
    pub fn ports(&self) -> ListeningPorts {
        self.ports
    }

    fn connections(&self) -> MutexGuard<'_, HashMap<(String, u16, Transport), ConnectionSlot>> {
        self.connections.lock()
    }

    /// A link to a SIP URI: TLS for `sips:` or `transport=tls`, TCP for `transport=tcp`, else
    /// UDP (TCP when the endpoint has no UDP socket). An open connection to the same place is
    /// reused, and callers asking at once share one connection attempt. Without a port: the
    /// DNS SRV record (`_sips._tcp`, `_sip._tcp`, `_sip._udp`), else 5061 for TLS and 5060.
    pub async fn link_to(&self, target: &Uri) -> Result<Link, ConnectError> {
        let bad = |reason: &str| ConnectError::BadTarget { target: target.to_string(), reason: reason.to_owned() };
        let sip = target.as_sip().ok_or_else(|| bad("not a sip: or sips: URI"))?;
        let named = sip.params.get("transport").flatten().map(str::to_ascii_lowercase);
        let transport = match named.as_deref() {
            _ if sip.secure => Transport::Tls,
            Some("tls") => Transport::Tls,
            Some("tcp") => Transport::Tcp,
            Some("udp") | None if self.udp.is_some() => Transport::Udp,
            None => Transport::Tcp,
            Some(other) => return Err(bad(&format!("transport {other} is not supported"))),
        };
        let default_port = if transport == Transport::Tls { 5061 } else { 5060 };
        let host = sip.host.clone();
        // Without a port, DNS SRV names the server; the certificate must still name `host`.
        let is_name = host.parse::<std::net::IpAddr>().is_err();
        let (address, port) = match sip.port {
            Some(port) => (host.clone(), port),
            None if is_name => self.srv(&host, transport).await.unwrap_or((host.clone(), default_port)),
            None => (host.clone(), default_port),
        };
        if transport == Transport::Udp {
            let (socket, local) = self.udp.clone().ok_or_else(|| bad("no UDP socket"))?;
            return Ok(Link::datagram(socket, local, resolve(target, &address, port).await?));
        }
        // One slot per destination: the first caller connects, the others wait for its link.
        let key = (host.clone(), sip.port.unwrap_or(0), transport);
        let slot = self.connections().entry(key).or_default().clone();
        let mut slot = slot.lock().await;
        if let Some(link) = slot.as_ref().filter(|link| link.is_open()) {
            return Ok(link.clone());
        }
        let addr = resolve(target, &address, port).await?;
        let handler =
            self.context.handler.upgrade().ok_or_else(|| ConnectError::Stopped { target: target.to_string() })?;
        let context = StreamContext {
            handler,
            policy: self.context.policy.clone(),
            counter: self.context.counter.clone(),
            limits: self.context.limits.clone(),
            shutdown: self.context.shutdown.clone(),
        };
        let connector = match transport {
            Transport::Tls => {
                let config = self.tls.clone().ok_or_else(|| ConnectError::NoTls { target: target.to_string() })?;
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|source| ConnectError::ServerName { target: target.to_string(), host, source })?;
                Some((tokio_rustls::TlsConnector::from(config), name))
            }
            _ => None,
        };
        let link = stream::connect(addr, connector, context, CONNECT_TIMEOUT).await.map_err(|source| {
            ConnectError::Connect { target: target.to_string(), explained: tls::verify::explain_io(&source), source }
        })?;
        debug!(%addr, %transport, "connection opened for outgoing requests");
        *slot = Some(link.clone());
        Ok(link)
    }
}

/// The first address of `host`.
async fn resolve(target: &Uri, host: &str, port: u16) -> Result<SocketAddr, ConnectError> {
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| ConnectError::Resolve { target: target.to_string(), host: host.to_owned(), source })?
        .next()
        .ok_or_else(|| ConnectError::NoAddress { target: target.to_string(), host: host.to_owned() })
}

/// A resolver for SRV lookups: through `server` (a lab's DNS server), else the system's; `None`
/// (SIP URIs without a port then use the default port) when the system has no configuration.
fn resolver(server: Option<SocketAddr>) -> Option<TokioResolver> {
    match server {
        Some(server) => {
            let servers = NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true);
            let config = ResolverConfig::from_parts(None, Vec::new(), servers);
            Some(TokioResolver::builder_with_config(config, TokioConnectionProvider::default()).build())
        }
        None => match TokioResolver::builder_tokio() {
            Ok(builder) => Some(builder.build()),
            Err(error) => {
                warn!(%error, "no DNS resolver configuration: SIP URIs without a port use the default port");
                None
            }
        },
    }
}
