//! RFC 3263 for `sip_uri`s without a port: the SRV record `_sips._tcp.<host>` names the port
//! (and server), the certificate still has to name `<host>`; without a record, 5061. A small
//! DNS server on loopback answers the lookups, so no network is needed.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::dns::{srv_server, Srv};
use ringer::call::DefaultActionHandler;
use ringer::sip::config::UaConfig;
use ringer::sip::endpoint::{self, Endpoint, EndpointConfig};
use ringer::sip::message::{Headers, Method, Request, Uri};
use ringer::sip::transport::policy::PeerPolicy;
use ringer::sip::transport::stream::StreamLimits;

/// Answers SRV queries for `name` with one record: priority 10, weight 5, `port`, target
/// `localhost.`; anything else gets NXDOMAIN. Returns the server's address.
async fn dns_server(name: &'static str, port: u16) -> SocketAddr {
    dns_server_with(name, vec![(10, 5, port)]).await
}

/// Answers SRV queries for `name` with `records` (priority, weight, port; target `localhost.`).
async fn dns_server_with(name: &'static str, records: Vec<(u16, u16, u16)>) -> SocketAddr {
    let records = records
        .into_iter()
        .map(|(priority, weight, port)| Srv { priority, weight, port, target: "localhost" })
        .collect();
    srv_server(name, records).await
}

fn config(
    tls: Option<(SocketAddr, Arc<rustls::ServerConfig>)>,
    client_tls: Option<Arc<rustls::ClientConfig>>,
    dns_server: Option<SocketAddr>,
) -> EndpointConfig {
    named_config(tls, client_tls, dns_server, "ringer-test")
}

/// As [`config`], with `server` as the Server header of its responses (which endpoint answered).
fn named_config(
    tls: Option<(SocketAddr, Arc<rustls::ServerConfig>)>,
    client_tls: Option<Arc<rustls::ClientConfig>>,
    dns_server: Option<SocketAddr>,
    server: &str,
) -> EndpointConfig {
    EndpointConfig {
        hep: None,
        tls,
        tcp: None,
        udp: None,
        policy: PeerPolicy::default(),
        limits: StreamLimits::default(),
        ua: UaConfig::new("tas.test", server),
        outbound: ringer::sip::outbound::OutboundSettings { tls: client_tls, core: None, dns_server },
    }
}

async fn options(from: &Endpoint, target: &str) -> Result<u16, String> {
    options_answered_by(from, target).await.map(|(status, _)| status)
}

/// OPTIONS to `target`: the status, and the Server header of whoever answered.
async fn options_answered_by(from: &Endpoint, target: &str) -> Result<(u16, String), String> {
    let ua = from.user_agent();
    let target = Uri::parse(target).expect("a test's own URI");
    let link = ua.outbound().link_to(&target).await.map_err(|error| error.to_string())?;
    let mut headers = Headers::new();
    headers.push("Via", format!("SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK-srv-{}", rand::random::<u32>()));
    headers.push("Max-Forwards", "70");
    headers.push("From", "<sips:core@127.0.0.1>;tag=srv");
    headers.push("To", format!("<{target}>"));
    headers.push("Call-ID", format!("srv-{}", rand::random::<u32>()));
    headers.push("CSeq", "1 OPTIONS");
    let request = Request { method: Method::Options, uri: target, headers, body: Default::default() };
    ua.clients()
        .send(&request, &link)
        .await
        .map(|response| (response.status.as_u16(), response.headers.get("Server").unwrap_or_default().to_owned()))
        .map_err(|error| error.to_string())
}

#[tokio::test]
async fn a_sips_uri_without_port_is_found_through_srv_and_verified_by_its_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let names = ["tas.test".to_owned()];
    let certs = ringer::tls::devcert::generate(&names).expect("certs").write_to(dir.path()).expect("write");
    let chain = ringer::tls::load_chain(&certs.server_cert).expect("chain");
    let key = ringer::tls::load_key(&certs.server_key).expect("key");
    let server_tls = ringer::tls::server_config(chain, key, None).expect("server TLS");
    let handler = Arc::new(DefaultActionHandler::new("reject 486".parse().expect("action"), [127, 0, 0, 1].into()));
    let tas =
        endpoint::start(config(Some(("127.0.0.1:0".parse().expect("addr"), server_tls)), None, None), handler.clone())
            .await
            .expect("TAS");
    let tas_port = tas.tls_addr.expect("TLS").port();
    let dns = dns_server("_sips._tcp.tas.test", tas_port).await;

    let client_tls = ringer::tls::client_config(Some(&certs.ca_cert), None).expect("client TLS");
    let core = endpoint::start(config(None, Some(client_tls), Some(dns)), handler).await.expect("core");
    assert_eq!(options(&core, "sips:tas.test").await, Ok(200), "SRV gave the port; the certificate names tas.test");
    // No SRV record for another name: the default port 5061, where nothing of ours listens.
    let error = options(&core, "sips:other.test").await.expect_err("no SRV record, no TAS");
    assert!(error.contains("other.test"), "{error}");
}

/// Several SRV targets (RFC 2782): requests spread over those of the lowest priority by their
/// weights; a target that stops is skipped for the next; the higher priority serves only when
/// every lower one is down.
#[tokio::test]
async fn requests_spread_over_the_srv_targets_and_skip_one_that_is_down() {
    let dir = tempfile::tempdir().expect("temp dir");
    let names = ["tas.test".to_owned()];
    let certs = ringer::tls::devcert::generate(&names).expect("certs").write_to(dir.path()).expect("write");
    let handler = Arc::new(DefaultActionHandler::new("reject 486".parse().expect("action"), [127, 0, 0, 1].into()));
    let mut servers = Vec::new();
    for name in ["tas-1", "tas-2", "tas-3", "backup"] {
        let chain = ringer::tls::load_chain(&certs.server_cert).expect("chain");
        let key = ringer::tls::load_key(&certs.server_key).expect("key");
        let tls = ringer::tls::server_config(chain, key, None).expect("server TLS");
        let config = named_config(Some(("127.0.0.1:0".parse().expect("addr"), tls)), None, None, name);
        servers.push(endpoint::start(config, handler.clone()).await.expect("TAS"));
    }
    let port = |index: usize| servers[index].tls_addr.expect("TLS").port();
    let records = vec![(10, 1, port(0)), (10, 1, port(1)), (10, 1, port(2)), (20, 1, port(3))];
    let dns = dns_server_with("_sips._tcp.tas.test", records).await;
    let client_tls = ringer::tls::client_config(Some(&certs.ca_cert), None).expect("client TLS");
    let core = endpoint::start(config(None, Some(client_tls), Some(dns)), handler).await.expect("core");

    let answered = |count: usize| {
        let core = &core;
        async move {
            let mut by = std::collections::HashMap::<String, usize>::new();
            for _ in 0..count {
                let (status, server) = options_answered_by(core, "sips:tas.test").await.expect("answered");
                assert_eq!(status, 200);
                *by.entry(server).or_default() += 1;
            }
            by
        }
    };
    let by = answered(60).await;
    for name in ["tas-1", "tas-2", "tas-3"] {
        assert!(by.get(name).copied().unwrap_or(0) >= 8, "spread over the three of priority 10: {by:?}");
    }
    assert_eq!(by.get("backup"), None, "priority 20 waits while priority 10 serves: {by:?}");

    // tas-2 stops: its connection closes and its port refuses; nothing fails, nothing reaches it.
    servers[1].shutdown();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let by = answered(30).await;
    assert_eq!(by.get("tas-2"), None, "{by:?}");
    assert_eq!(by.values().sum::<usize>(), 30, "{by:?}");

    // All of priority 10 down: the backup serves.
    servers[0].shutdown();
    servers[2].shutdown();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let by = answered(5).await;
    assert_eq!(by.get("backup"), Some(&5), "{by:?}");
}
