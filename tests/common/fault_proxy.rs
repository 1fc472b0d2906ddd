//! A TLS man in the middle between the harness (the core) and a real ringer TAS that drops or
//! holds chosen SIP messages: a TAS with one protocol fault and everything else right.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringer::sip::message::header::{CSeq, NameAddr};
use ringer::sip::message::{frame_stream, parse_message, Framing, Message, Method};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Clone, Copy)]
pub(crate) enum Fault {
    /// The TAS answers CANCEL 200 but never ends the INVITE with 487.
    No487OnCancel,
    /// The TAS never answers a re-INVITE once a BYE has crossed it.
    ForgetsCrossedReinvite,
    /// The TAS does not answer a BYE for a dialog it is hanging up itself.
    IgnoresByeWhileHangingUp,
}

/// What the proxy has seen, per Call-ID.
#[derive(Default)]
struct Seen {
    /// (Call-ID, CSeq) of re-INVITEs from the core.
    reinvites: HashSet<(String, u32)>,
    byes_from_core: HashSet<String>,
    byes_from_tas: HashSet<String>,
}

enum Way {
    ToTas,
    FromTas,
}

/// Listens on loopback as the TAS (with its certificate), and relays each connection to
/// the TAS at `tas` over TLS; returns the proxy's address.
pub(crate) async fn start(
    fault: Fault,
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    tas: SocketAddr,
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let connector = tokio_rustls::TlsConnector::from(client);
    let seen = Arc::new(Mutex::new(Seen::default()));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, connector, seen) = (acceptor.clone(), connector.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(core) = acceptor.accept(tcp).await else { return };
                let Ok(upstream) = tokio::net::TcpStream::connect(tas).await else { return };
                let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
                let Ok(tas) = connector.connect(name, upstream).await else { return };
                let (core_read, core_write) = tokio::io::split(core);
                let (tas_read, tas_write) = tokio::io::split(tas);
                tokio::join!(
                    pump(core_read, tas_write, Way::ToTas, fault, seen.clone()),
                    pump(tas_read, core_write, Way::FromTas, fault, seen),
                );
            });
        }
    });
    address
}

async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    way: Way,
    fault: Fault,
    seen: Arc<Mutex<Seen>>,
) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        let length = match frame_stream(&buffer) {
            Framing::Message(length) | Framing::KeepAlive { consumed: length, .. } => length,
            Framing::Incomplete => match from.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(read) => {
                    buffer.extend_from_slice(&chunk[..read]);
                    continue;
                }
            },
            Framing::Invalid(_) => return,
        };
        let bytes: Vec<u8> = buffer.drain(..length).collect();
        let forward = match parse_message(&bytes) {
            Ok(message) => decide(&message, &way, fault, &seen).await,
            Err(_) => true,
        };
        if forward && to.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

/// Whether to pass `message` on (after holding it, for some faults).
async fn decide(message: &Message, way: &Way, fault: Fault, seen: &Mutex<Seen>) -> bool {
    let headers = match message {
        Message::Request(request) => &request.headers,
        Message::Response(response) => &response.headers,
    };
    let call_id = headers.get("Call-ID").unwrap_or_default().to_owned();
    let Some(cseq) = headers.get("CSeq").and_then(|value| CSeq::parse(value).ok()) else { return true };
    match (message, way) {
        (Message::Request(request), Way::ToTas) => {
            let in_dialog =
                headers.get("To").and_then(|to| NameAddr::parse(to).ok()).is_some_and(|to| to.tag().is_some());
            match request.method {
                Method::Invite if in_dialog => {
                    seen.lock().expect("lock").reinvites.insert((call_id, cseq.number));
                }
                Method::Bye => {
                    if let Fault::IgnoresByeWhileHangingUp = fault {
                        // Let the TAS's own BYE for this call go first, if it sends one.
                        let tas_said_bye = || seen.lock().expect("lock").byes_from_tas.contains(&call_id);
                        crate::common::poll_until(Duration::from_secs(2), tas_said_bye).await;
                    }
                    seen.lock().expect("lock").byes_from_core.insert(call_id);
                }
                _ => {}
            }
            true
        }
        (Message::Request(request), Way::FromTas) => {
            if request.method == Method::Bye {
                seen.lock().expect("lock").byes_from_tas.insert(call_id);
            }
            true
        }
        (Message::Response(_), Way::ToTas) => true,
        (Message::Response(response), Way::FromTas) => match fault {
            Fault::No487OnCancel => response.status != 487,
            Fault::ForgetsCrossedReinvite => {
                let reinvite = cseq.method == Method::Invite
                    && response.status >= 200
                    && seen.lock().expect("lock").reinvites.contains(&(call_id.clone(), cseq.number));
                if !reinvite {
                    return true;
                }
                // Held until a BYE comes (then forgotten), or 2 s.
                let core_said_bye = || seen.lock().expect("lock").byes_from_core.contains(&call_id);
                !crate::common::poll_until(Duration::from_secs(2), core_said_bye).await
            }
            Fault::IgnoresByeWhileHangingUp => {
                !(cseq.method == Method::Bye && seen.lock().expect("lock").byes_from_tas.contains(&call_id))
            }
        },
    }
}
