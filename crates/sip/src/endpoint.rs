//! A SIP endpoint: the listeners of each transport, wired to the transaction layer and the UAS
//! core, with the counts tests and operators read.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::client::ClientTransactions;
use super::outbound::{ListeningPorts, Outbound};
use super::transaction::{Timers, TransactionLayer};
use super::transport::policy::{ConnectionCounter, PeerPolicy};
use super::transport::stream::{self, StreamContext, StreamLimits};
use super::transport::{udp, Handler, Link};
use super::ua::{SessionHandler, UaConfig, UserAgent};

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
    /// TLS client settings for connections ringer opens (to the core); `None`: no TLS out.
    pub client_tls: Option<Arc<rustls::ClientConfig>>,
    /// Where new connections for ringer's own requests go; `None`: the peer's Contact.
    pub core_uri: Option<String>,
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
    connections: Arc<ConnectionCounter>,
    shutdown: CancellationToken,
}

/// Binds every configured listener and starts serving with `handler` deciding calls.
pub async fn start(config: EndpointConfig, handler: Arc<dyn SessionHandler>) -> std::io::Result<Endpoint> {
    tls::install_crypto_provider();
    fn bind_error(addr: SocketAddr, transport: &'static str) -> impl Fn(std::io::Error) -> std::io::Error {
        move |error| std::io::Error::new(error.kind(), format!("cannot listen for SIP/{transport} on {addr}: {error}"))
    }
    // Bind first: the ports go into the Contact and Via of what ringer sends.
    let tls_listener = match &config.tls {
        Some((addr, server_config)) => {
            let listener = TcpListener::bind(addr).await.map_err(bind_error(*addr, "TLS"))?;
            Some((listener, TlsAcceptor::from(server_config.clone())))
        }
        None => None,
    };
    let tcp_listener = match config.tcp {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(bind_error(addr, "TCP"))?),
        None => None,
    };
    let udp_socket = match config.udp {
        Some(addr) => Some(Arc::new(udp::bind(addr).map_err(bind_error(addr, "UDP"))?)),
        None => None,
    };
    let tls_addr = tls_listener.as_ref().map(|(listener, _)| listener.local_addr()).transpose()?;
    let tcp_addr = tcp_listener.as_ref().map(TcpListener::local_addr).transpose()?;
    let udp_addr = udp_socket.as_ref().map(|socket| socket.local_addr()).transpose()?;
    let ports = ListeningPorts {
        tls: tls_addr.map(|addr| addr.port()),
        tcp: tcp_addr.map(|addr| addr.port()),
        udp: udp_addr.map(|addr| addr.port()),
    };

    let timers: Timers = config.ua.timers;
    let clients = Arc::new(ClientTransactions::new(timers));
    let outbound = Arc::new(Outbound::new(config.client_tls.clone(), config.core_uri.clone(), ports));
    let ua = UserAgent::new(config.ua.clone(), handler, clients.clone(), outbound.clone());
    let transactions = Arc::new(TransactionLayer::new(Arc::new(ua.clone()), clients.clone(), timers));
    let as_handler: Arc<dyn Handler> = transactions.clone();
    let policy = Arc::new(config.policy.clone());
    let connections = Arc::new(ConnectionCounter::default());
    let shutdown = CancellationToken::new();
    let context = StreamContext {
        handler: as_handler.clone(),
        policy: policy.clone(),
        counter: connections.clone(),
        limits: config.limits.clone(),
        shutdown: shutdown.clone(),
    };
    outbound.set_context(context.clone());
    if let Some((listener, acceptor)) = tls_listener {
        tokio::spawn(stream::serve(listener, Some(acceptor), context.clone()));
    }
    if let Some(listener) = tcp_listener {
        tokio::spawn(stream::serve(listener, None, context.clone()));
    }
    if let (Some(socket), Some(addr)) = (&udp_socket, udp_addr) {
        outbound.set_udp(socket.clone(), addr);
        // One receive loop per core: a datagram's whole handling runs in the loop that read it.
        let loops = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
        for _ in 0..loops {
            tokio::spawn(udp::serve(socket.clone(), as_handler.clone(), policy.clone(), shutdown.clone()));
        }
    }
    info!(tls = ?tls_addr, tcp = ?tcp_addr, udp = ?udp_addr, "SIP listening");
    Ok(Endpoint { tls_addr, tcp_addr, udp_addr, transactions, clients, udp_socket, ua, connections, shutdown })
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
        Some(Link::datagram(socket, self.udp_addr?, peer))
    }

    /// Server transactions alive now.
    pub fn live_transactions(&self) -> usize {
        self.transactions.live_transactions()
    }

    /// Dialogs alive now.
    pub fn live_dialogs(&self) -> usize {
        self.ua.live_dialogs()
    }

    /// INVITEs awaiting a decision.
    pub fn pending_invites(&self) -> usize {
        self.ua.pending_invites()
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
