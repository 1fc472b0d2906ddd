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
use tracing::{debug, warn};

use super::message::Uri;
use super::transport::hep::HepMirror;
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
    pub(crate) mirror: Option<Arc<HepMirror>>,
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
    /// Open connections by the URI's host, the server's address and port, and transport.
    connections: Mutex<HashMap<ConnectionKey, ConnectionSlot>>,
    /// For SRV lookups (RFC 3263) of targets without a port; `None` when none could be set up.
    resolver: Option<TokioResolver>,
}

/// The connection to one destination, once made.
type ConnectionSlot = Arc<tokio::sync::Mutex<Option<Link>>>;

/// A destination: the URI's host (the name its certificate must carry), the server's address
/// and port (from the URI, or an SRV record), the transport.
type ConnectionKey = (String, String, u16, Transport);

/// One server of a SIP URI: where to connect and how (the URI's host stays the name the
/// certificate must show).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The host name or address to connect to.
    pub address: String,
    /// Its port.
    pub port: u16,
    /// The transport.
    pub transport: Transport,
}

fn bad_target(target: &Uri, reason: &str) -> ConnectError {
    ConnectError::BadTarget { target: target.to_string(), reason: reason.to_owned() }
}

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SrvTarget {
    priority: u16,
    weight: u16,
    target: String,
    port: u16,
}

/// RFC 2782's order: by priority; within one priority, repeatedly a record chosen at random
/// with a chance in proportion to its weight. Zero-weight records are placed first and chosen
/// only when the draw is zero, as the RFC asks; without one the draw starts at one, since a
/// zero would otherwise fall to the first record and give it a double share.
fn srv_order(mut records: Vec<SrvTarget>, rng: &mut impl rand::Rng) -> Vec<(String, u16)> {
    records.sort_by_key(|record| (record.priority, record.weight != 0));
    let mut ordered = Vec::with_capacity(records.len());
    while let Some(first) = records.first() {
        let priority = first.priority;
        let end = records.iter().position(|record| record.priority != priority).unwrap_or(records.len());
        let mut group: Vec<SrvTarget> = records.drain(..end).collect();
        while !group.is_empty() {
            let total: u32 = group.iter().map(|record| u32::from(record.weight)).sum();
            let index = if total == 0 {
                rng.random_range(0..group.len())
            } else {
                let lowest = if group.iter().any(|record| record.weight == 0) { 0 } else { 1 };
                let draw = rng.random_range(lowest..=total);
                let mut running = 0;
                group
                    .iter()
                    .position(|record| {
                        running += u32::from(record.weight);
                        running >= draw
                    })
                    .unwrap_or(0)
            };
            let chosen = group.remove(index);
            ordered.push((chosen.target, chosen.port));
        }
    }
    ordered
}

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

    /// Where a target without a port is served (RFC 3263 §4.2): the first SRV target in
    /// RFC 2782's order ([`Outbound::srv_targets`]), or `None` (then the default port applies).
    pub async fn srv(&self, host: &str, transport: Transport) -> Option<(String, u16)> {
        self.srv_targets(host, transport).await.into_iter().next()
    }

    /// Every SRV target of `host` for `transport`, in the order to try them (RFC 2782): lowest
    /// priority first, and within one priority a random order weighted by the records' weights,
    /// so that load spreads over the servers as their weights ask. Empty without a record.
    pub async fn srv_targets(&self, host: &str, transport: Transport) -> Vec<(String, u16)> {
        let service = match transport {
            Transport::Tls => "_sips._tcp",
            Transport::Tcp => "_sip._tcp",
            Transport::Udp => "_sip._udp",
        };
        let name = format!("{service}.{}.", host.trim_end_matches('.'));
        let Some(resolver) = self.resolver() else { return Vec::new() };
        let lookup = match resolver.srv_lookup(name.as_str()).await {
            Ok(lookup) => lookup,
            Err(error) => {
                debug!(%name, %error, "no SRV record; using the default port");
                return Vec::new();
            }
        };
        let records = lookup
            .iter()
            .map(|srv| SrvTarget {
                priority: srv.priority(),
                weight: srv.weight(),
                target: srv.target().to_utf8().trim_end_matches('.').to_owned(),
                port: srv.port(),
            })
            // A target of "." says the service is not offered there (RFC 2782).
            .filter(|srv| !srv.target.is_empty())
            .collect();
        let ordered = srv_order(records, &mut rand::rng());
        debug!(%name, targets = ?ordered, "SRV records found");
        ordered
    }

    /// The core's SIP address, if configured.
    pub fn core(&self) -> Option<&Uri> {
        self.core.as_ref()
    }

    /// The ports the endpoint listens on.
    pub fn ports(&self) -> ListeningPorts {
        self.ports
    }

    fn connections(&self) -> MutexGuard<'_, HashMap<ConnectionKey, ConnectionSlot>> {
        self.connections.lock()
    }

    /// A link to a SIP URI: TLS for `sips:` or `transport=tls`, TCP for `transport=tcp`, else
    /// UDP (TCP when the endpoint has no UDP socket). An open connection to the same place is
    /// reused, and callers asking at once share one connection attempt. Without a port: the
    /// DNS SRV record (`_sips._tcp`, `_sip._tcp`, `_sip._udp`), else 5061 for TLS and 5060.
    /// A server that cannot be reached gives way to the next (RFC 3263 §4.3).
    pub async fn link_to(&self, target: &Uri) -> Result<Link, ConnectError> {
        let servers = self.servers(target).await?;
        let count = servers.len();
        let mut failed = None;
        for (index, server) in servers.iter().enumerate() {
            match self.link_to_server(target, server).await {
                Ok(link) => return Ok(link),
                Err(error) if index + 1 < count => {
                    warn!(%target, server = %server.address, port = server.port, %error, "SRV target unreachable; trying the next");
                    failed = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(failed.unwrap_or_else(|| bad_target(target, "no server to try")))
    }

    /// The servers of `target` in the order to try them (RFC 3263 §4): with a port or an
    /// address, the one it names; else its SRV targets in RFC 2782's order; else the default
    /// port. Never empty. A caller that wants to try the next one after a 503 (§4.3) links to
    /// each with [`Outbound::link_to_server`].
    pub async fn servers(&self, target: &Uri) -> Result<Vec<Server>, ConnectError> {
        let sip = target.as_sip().ok_or_else(|| bad_target(target, "not a sip: or sips: URI"))?;
        let named = sip.params.get("transport").flatten().map(str::to_ascii_lowercase);
        let transport = match named.as_deref() {
            _ if sip.secure => Transport::Tls,
            Some("tls") => Transport::Tls,
            Some("tcp") => Transport::Tcp,
            Some("udp") | None if self.udp.is_some() => Transport::Udp,
            None => Transport::Tcp,
            Some(other) => return Err(bad_target(target, &format!("transport {other} is not supported"))),
        };
        let default_port = if transport == Transport::Tls { 5061 } else { 5060 };
        // Without a port, DNS SRV names the servers; the certificate must still name the host.
        let is_name = sip.host.parse::<std::net::IpAddr>().is_err();
        let found = match sip.port {
            None if is_name => self.srv_targets(&sip.host, transport).await,
            _ => Vec::new(),
        };
        let mut servers: Vec<Server> =
            found.into_iter().map(|(address, port)| Server { address, port, transport }).collect();
        if servers.is_empty() {
            servers.push(Server { address: sip.host.clone(), port: sip.port.unwrap_or(default_port), transport });
        }
        Ok(servers)
    }

    /// A link to one of `target`'s [`Outbound::servers`].
    pub async fn link_to_server(&self, target: &Uri, server: &Server) -> Result<Link, ConnectError> {
        let host = target.as_sip().ok_or_else(|| bad_target(target, "not a sip: or sips: URI"))?.host.clone();
        if server.transport == Transport::Udp {
            let (socket, local) = self.udp.clone().ok_or_else(|| bad_target(target, "no UDP socket"))?;
            let peer = resolve(target, &server.address, server.port).await?;
            return Ok(Link::datagram(socket, local, peer).mirrored(self.context.mirror.as_ref()));
        }
        self.stream_link(target, &host, &server.address, server.port, server.transport).await
    }

    /// A TCP or TLS link to `address`:`port` for `target` (whose host, `host`, the certificate
    /// must name). An open connection there is reused, and callers asking at once share one
    /// connection attempt.
    async fn stream_link(
        &self,
        target: &Uri,
        host: &str,
        address: &str,
        port: u16,
        transport: Transport,
    ) -> Result<Link, ConnectError> {
        let host = host.to_owned();
        // One slot per destination: the first caller connects, the others wait for its link.
        let key = (host.clone(), address.to_owned(), port, transport);
        let slot = self.connections().entry(key).or_default().clone();
        let mut slot = slot.lock().await;
        if let Some(link) = slot.as_ref().filter(|link| link.is_open()) {
            return Ok(link.clone());
        }
        let addr = resolve(target, address, port).await?;
        let handler =
            self.context.handler.upgrade().ok_or_else(|| ConnectError::Stopped { target: target.to_string() })?;
        let context = StreamContext {
            handler,
            policy: self.context.policy.clone(),
            counter: self.context.counter.clone(),
            limits: self.context.limits.clone(),
            shutdown: self.context.shutdown.clone(),
            mirror: self.context.mirror.clone(),
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

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn record(priority: u16, weight: u16, target: &str) -> SrvTarget {
        SrvTarget { priority, weight, target: target.to_owned(), port: 5061 }
    }

    #[test]
    fn srv_targets_are_tried_by_priority_then_by_weight() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let records = vec![
            record(20, 10, "backup"),
            record(10, 1, "a"),
            record(10, 1, "b"),
            record(10, 2, "c"),
            record(10, 0, "spare"),
        ];
        let mut first = HashMap::<String, u32>::new();
        for _ in 0..4000 {
            let ordered = srv_order(records.clone(), &mut rng);
            let names: Vec<&str> = ordered.iter().map(|(name, _)| name.as_str()).collect();
            // Every record once; the lower priority before the higher.
            assert_eq!(names.len(), 5);
            assert_eq!(names[4], "backup", "{names:?}");
            *first.entry(names[0].to_owned()).or_default() += 1;
        }
        // The draw runs 0..=4: zero picks the zero-weight record (placed first), then weights
        // 1, 1, 2: about 800, 800, 800 and 1600 of 4000.
        let share = |name: &str| first.get(name).copied().unwrap_or(0);
        for (name, expected) in [("spare", 800), ("a", 800), ("b", 800), ("c", 1600)] {
            assert!(share(name).abs_diff(expected) < 150, "{name}: {first:?}");
        }
    }

    /// Equal weights get equal shares: the draw never falls to zero without a zero-weight
    /// record, which would hand the first record of the answer half of the load.
    #[test]
    fn equal_weights_share_the_first_place_equally() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let records = vec![record(10, 1, "a"), record(10, 1, "b"), record(10, 1, "c")];
        let mut first = HashMap::<String, u32>::new();
        for _ in 0..3000 {
            let ordered = srv_order(records.clone(), &mut rng);
            *first.entry(ordered[0].0.clone()).or_default() += 1;
        }
        for name in ["a", "b", "c"] {
            let share = first.get(name).copied().unwrap_or(0);
            assert!(share.abs_diff(1000) < 120, "{name}: {first:?}");
        }
    }

    #[test]
    fn srv_with_every_weight_zero_still_lists_each_target() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let ordered = srv_order(vec![record(1, 0, "x"), record(1, 0, "y")], &mut rng);
        let mut names: Vec<String> = ordered.into_iter().map(|(name, _)| name).collect();
        names.sort();
        assert_eq!(names, ["x", "y"]);
    }
}
