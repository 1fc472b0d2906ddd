//! A SIP endpoint: the listeners of each transport, wired to the transaction layer and the UAS
//! core, with the counts tests and operators read.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use tokio::net::{TcpListener, UdpSocket};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::client::ClientTransactions;
use super::config::UaConfig;
use super::core::UserAgent;
use super::outbound::{ListeningPorts, Outbound, OutboundContext, OutboundSettings};
use super::timers::Timers;
use super::transaction::TransactionLayer;
use super::transport::hep::{HepMirror, HepSettings};
use super::transport::policy::{ConnectionCounter, PeerPolicy};
use super::transport::stream::{self, StreamContext, StreamLimits};
use super::transport::{udp, Handler, Link};
use super::ua::{SessionHandler, Uas};

/// Where and how to listen.
#[derive(Clone)]
pub struct EndpointConfig {
    /// TLS listener and its server config.
    pub tls: Option<(SocketAddr, Arc<rustls::ServerConfig>)>,
    /// Plain TCP listener.
    pub tcp: Option<SocketAddr>,
    /// UDP listener.
    pub udp: Option<SocketAddr>,
    /// Peer restrictions and limits.
    pub policy: PeerPolicy,
    /// Stream timers.
    pub limits: StreamLimits,
    /// How the UA presents itself.
    pub ua: UaConfig,
    /// How ringer reaches the peers it sends requests to (TLS, the core, DNS).
    pub outbound: OutboundSettings,
    /// Where a copy of every SIP message sent and received goes (HEP v3); `None`: nowhere.
    pub hep: Option<HepSettings>,
}

/// A running endpoint.
pub struct Endpoint {
    /// The TLS listener's address.
    pub tls_addr: Option<SocketAddr>,
    /// The TCP listener's address.
    pub tcp_addr: Option<SocketAddr>,
    /// The UDP socket's address.
    pub udp_addr: Option<SocketAddr>,
    transactions: Arc<TransactionLayer>,
    clients: Arc<ClientTransactions>,
    udp_socket: Option<Arc<UdpSocket>>,
    ua: UserAgent,
    uas: Uas,
    connections: Arc<ConnectionCounter>,
    shutdown: CancellationToken,
    mirror: Option<Arc<HepMirror>>,
}

/// An endpoint's listeners, bound but not yet serving: their addresses are known (a handler
/// built before it serves can name them), nothing is read yet.
pub struct Bound {
    config: EndpointConfig,
    tls: Option<(TcpListener, TlsAcceptor)>,
    tcp: Option<TcpListener>,
    udp: Option<Arc<UdpSocket>>,
    /// The TLS listener's address.
    pub tls_addr: Option<SocketAddr>,
    /// The TCP listener's address.
    pub tcp_addr: Option<SocketAddr>,
    /// The UDP socket's address.
    pub udp_addr: Option<SocketAddr>,
    mirror: Option<Arc<HepMirror>>,
}

/// Binds every configured listener and starts serving with `handler` deciding calls.
pub async fn start(config: EndpointConfig, handler: Arc<dyn SessionHandler>) -> std::io::Result<Endpoint> {
    Ok(bind(config).await?.serve(handler))
}

/// Binds every configured listener of `config`: the ports go into the Contact and Via of what
/// the endpoint sends.
pub async fn bind(config: EndpointConfig) -> std::io::Result<Bound> {
    tls::install_crypto_provider();
    fn bind_error(addr: SocketAddr, transport: &'static str) -> impl Fn(std::io::Error) -> std::io::Error {
        move |error| std::io::Error::new(error.kind(), format!("cannot listen for SIP/{transport} on {addr}: {error}"))
    }
    let tls = match &config.tls {
        Some((addr, server_config)) => {
            let listener = TcpListener::bind(addr).await.map_err(bind_error(*addr, "TLS"))?;
            Some((listener, TlsAcceptor::from(server_config.clone())))
        }
        None => None,
    };
    let tcp = match config.tcp {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(bind_error(addr, "TCP"))?),
        None => None,
    };
    let udp = match config.udp {
        Some(addr) => Some(Arc::new(udp::bind(addr).map_err(bind_error(addr, "UDP"))?)),
        None => None,
    };
    let tls_addr = tls.as_ref().map(|(listener, _)| listener.local_addr()).transpose()?;
    let tcp_addr = tcp.as_ref().map(TcpListener::local_addr).transpose()?;
    let udp_addr = udp.as_ref().map(|socket| socket.local_addr()).transpose()?;
    let mirror = match &config.hep {
        Some(settings) => Some(Arc::new(HepMirror::new(settings.clone()).map_err(|error| {
            std::io::Error::new(error.kind(), format!("cannot send HEP to {}: {error}", settings.server))
        })?)),
        None => None,
    };
    Ok(Bound { config, tls, tcp, udp, tls_addr, tcp_addr, udp_addr, mirror })
}

impl Bound {
    /// Starts serving: the layers are built bottom-up (client transactions, connections, the
    /// user agent, its UAS passing calls to `handler`, the transaction layer), the connections
    /// ringer opens delivering to that transaction layer through a weak reference made as it
    /// is built.
    pub fn serve(self, handler: Arc<dyn SessionHandler>) -> Endpoint {
        let Bound { config, tls, tcp, udp, tls_addr, tcp_addr, udp_addr, mirror } = self;
        let ports = ListeningPorts {
            tls: tls_addr.map(|addr| addr.port()),
            tcp: tcp_addr.map(|addr| addr.port()),
            udp: udp_addr.map(|addr| addr.port()),
        };
        let timers: Timers = config.ua.timers;
        let clients = ClientTransactions::new(timers);
        let policy = Arc::new(config.policy.clone());
        let connections = Arc::new(ConnectionCounter::default());
        let shutdown = CancellationToken::new();
        let udp_local = udp.clone().zip(udp_addr);
        let mut user_agent = None;
        let transactions = Arc::new_cyclic(|layer: &Weak<TransactionLayer>| {
            let context = OutboundContext {
                handler: layer.clone(),
                policy: policy.clone(),
                counter: connections.clone(),
                limits: config.limits.clone(),
                shutdown: shutdown.clone(),
                mirror: mirror.clone(),
            };
            let outbound = Arc::new(Outbound::new(config.outbound.clone(), ports, udp_local, context));
            let ua = UserAgent::new(config.ua.clone(), clients.clone(), outbound);
            let uas = Uas::new(ua.clone(), handler);
            user_agent = Some((ua, uas.clone()));
            TransactionLayer::new(Arc::new(uas), clients.clone(), timers)
        });
        let (ua, uas) = match user_agent {
            Some(built) => built,
            None => unreachable!("Arc::new_cyclic runs its closure before returning"),
        };
        let as_handler: Arc<dyn Handler> = transactions.clone();
        let context = StreamContext {
            handler: as_handler.clone(),
            policy: policy.clone(),
            counter: connections.clone(),
            limits: config.limits.clone(),
            shutdown: shutdown.clone(),
            mirror: mirror.clone(),
        };
        if let Some((listener, acceptor)) = tls {
            tokio::spawn(stream::serve(listener, Some(acceptor), context.clone()));
        }
        if let Some(listener) = tcp {
            tokio::spawn(stream::serve(listener, None, context.clone()));
        }
        if let Some(socket) = &udp {
            // One receive loop per core: a datagram's whole handling runs in the loop that read it.
            let loops = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
            for _ in 0..loops {
                tokio::spawn(udp::serve(
                    socket.clone(),
                    as_handler.clone(),
                    policy.clone(),
                    shutdown.clone(),
                    mirror.clone(),
                ));
            }
        }
        info!(tls = ?tls_addr, tcp = ?tcp_addr, udp = ?udp_addr, "SIP listening");
        Endpoint {
            tls_addr,
            tcp_addr,
            udp_addr,
            transactions,
            clients,
            udp_socket: udp,
            ua,
            uas,
            connections,
            shutdown,
            mirror,
        }
    }
}

impl Endpoint {
    /// The client transactions, for requests the TAS originates.
    pub fn clients(&self) -> &Arc<ClientTransactions> {
        &self.clients
    }

    /// The user agent, to place calls and open connections.
    pub fn user_agent(&self) -> &UserAgent {
        &self.ua
    }

    /// A link from the UDP listener to `peer`, for requests sent over UDP.
    pub fn udp_link(&self, peer: SocketAddr) -> Option<Link> {
        let socket = self.udp_socket.clone()?;
        Some(Link::datagram(socket, self.udp_addr?, peer).mirrored(self.mirror.as_ref()))
    }

    /// Server transactions alive now.
    pub fn live_transactions(&self) -> usize {
        self.transactions.live_transactions()
    }

    /// The server transaction layer, to count its transactions from elsewhere (a metrics view).
    pub fn transactions(&self) -> &Arc<TransactionLayer> {
        &self.transactions
    }

    /// Dialogs alive now.
    pub fn live_dialogs(&self) -> usize {
        self.ua.live_dialogs()
    }

    /// Session timers (RFC 4028) waiting to refresh or end a dialog.
    pub fn waiting_session_timers(&self) -> usize {
        self.ua.waiting_session_timers()
    }

    /// 2xx responses to INVITEs waiting for their ACK (RFC 3261 §13.3.1.4).
    pub fn unacknowledged_answers(&self) -> usize {
        self.ua.unacknowledged_answers()
    }

    /// INVITEs awaiting a decision.
    pub fn pending_invites(&self) -> usize {
        self.uas.pending_invites()
    }

    /// Takes no new calls: new INVITEs and OPTIONS get 503 with `retry_after`; see
    /// [`Uas::stop_taking_calls`](crate::ua::Uas::stop_taking_calls).
    pub fn stop_taking_calls(&self, retry_after: std::time::Duration) {
        self.uas.stop_taking_calls(retry_after);
    }

    /// Ends every INVITE still awaiting a decision with 503; returns how many.
    pub fn end_pending_invites(&self) -> usize {
        self.uas.end_pending_invites()
    }

    /// Open stream connections.
    pub fn open_connections(&self) -> usize {
        self.connections.total()
    }

    /// Stream connections admitted since start.
    pub fn admitted_connections(&self) -> u64 {
        self.connections.admitted()
    }

    /// Ends every call with BYE (each bounded by Timer F); returns how many were acknowledged.
    pub async fn hangup_all(&self) -> usize {
        self.ua.hangup_all().await
    }

    /// Stops the listeners and closes connections.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
