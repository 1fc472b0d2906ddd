//! Certificates renewed without a restart, checked from outside with OpenSSL's `s_client`
//! (Debian's `openssl`): a renewal written over the files is served to new connections while a
//! call set up on the old certificate goes on and ends normally; SNI picks the certificate per
//! name; SIGHUP takes a renewal and refuses a broken key, keeping what is in use; the handshakes,
//! reloads and expiry are in `/metrics`.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::lab::{final_of, subscriber, Lab};
use common::process::Server;
use common::scrape::{get, sample, until_status};
use common::sipp::tool;
use common::*;
use ringer::config::core::AuthMode;
use ringer::sip::uac::Progress;
use ringer::tls::devcert::{self, DevCertificates};

/// The serial and subject of a certificate, as `openssl x509` prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Presented {
    serial: String,
    subject: String,
}

async fn x509(openssl: &Path, pem: &str) -> Presented {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(openssl)
        .args(["x509", "-noout", "-serial", "-subject"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl x509");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(pem.as_bytes()).await.expect("PEM written");
    drop(stdin);
    let output = child.wait_with_output().await.expect("openssl x509 ran");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let field = |name: &str| {
        text.lines().find_map(|line| line.strip_prefix(name)).map(str::trim).unwrap_or_default().to_owned()
    };
    Presented { serial: field("serial="), subject: field("subject=") }
}

/// What the TLS server at `addr` presents to a client asking for `name` (`None`: no SNI).
async fn presented(openssl: &Path, addr: SocketAddr, name: Option<&str>) -> Presented {
    let mut command = tokio::process::Command::new(openssl);
    command.args(["s_client", "-connect", &addr.to_string()]);
    match name {
        Some(name) => command.args(["-servername", name]),
        None => command.arg("-noservername"),
    };
    let output = tokio::time::timeout(
        Duration::from_secs(10),
        command.stdin(std::process::Stdio::null()).stderr(std::process::Stdio::null()).output(),
    )
    .await
    .expect("s_client finished")
    .expect("s_client ran");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let begin = text.find("-----BEGIN CERTIFICATE-----").unwrap_or_else(|| panic!("no certificate presented: {text}"));
    let end = text[begin..].find("-----END CERTIFICATE-----").expect("PEM end") + begin + 25;
    x509(openssl, &text[begin..end]).await
}

/// Asks until the server presents the certificate with `serial` (10 s at most).
async fn until_presented(openssl: &Path, addr: SocketAddr, name: Option<&str>, serial: &str) -> Presented {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = presented(openssl, addr, name).await;
        if now.serial == serial || tokio::time::Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `ringer serve` with TLS on `certificate` (for `tas.example.com`), reloaded on SIGHUP only,
/// `sip` added to its `[sip]` section and `tables` after it; the server, its HTTP base URL and
/// its TLS address once it answers.
async fn serve(
    dir: &Path,
    core: &ringer::core::CoreHandle,
    certificate: &devcert::DevCertificateFiles,
    sip: &str,
    tables: &str,
) -> (Server, String, SocketAddr) {
    let (http, tls) = (free_port(), free_port());
    let config = format!(
        "[store]\nurl = \"sqlite://{db}\"\n[tas]\nsip_uri = \"sips:tas.example.com:5061\"\n[core]\nendpoint = \"{core}\"\n\
         [http]\nlisten = \"{http}\"\n[voicemail]\ndir = \"{spool}\"\n\
         [sip]\ntls_listen = \"{tls}\"\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\ntls_watch_interval = \"0s\"\n{sip}\
         {tables}[[subscriber]]\nphone_number = \"+4799990601\"\nroute_type = \"loop\"\nmt_prefix = \"21\"\n",
        db = dir.join("ringer.db").display(),
        core = core.endpoint(),
        spool = dir.join("spool").display(),
        cert = certificate.server_cert.display(),
        key = certificate.server_key.display(),
    );
    let path = dir.join("ringer.toml");
    std::fs::write(&path, config).expect("config");
    let server = Server::spawn(&["serve", "--config", path.to_str().expect("utf-8")], &[]);
    let base = format!("http://{http}");
    until_status(&format!("{base}/healthz"), 200, "alive").await;
    (server, base, tls)
}

#[tokio::test]
async fn a_renewal_serves_new_connections_while_a_call_on_the_old_certificate_goes_on() {
    let Some(openssl) = tool(&["openssl"], "openssl") else { return };
    let lab = Lab::start(&[subscriber("+4799990001", "loop", "", "21", "", "\"answer voicemail\"")], vec![]).await;
    let tls = lab.tas.endpoint.tls_addr.expect("TLS listener");
    let old = x509(&openssl, &lab.generated.server_cert_pem).await;
    assert_eq!(presented(&openssl, tls, Some("localhost")).await, old);

    // A call set up over TLS with the old certificate (the SBC's leg 2).
    let mut call = lab.call("+4711111111", "+4799990001");
    let Progress::Answered(dialog, _) = final_of(&mut call).await else { panic!("not answered") };
    dialog.ack(None).expect("ACK");

    // The renewal is written over the files (same CA, new key); the TAS notices by itself.
    let watch = lab.tas.tls.spawn_watch(Duration::from_millis(100)).expect("watching");
    let names = ["localhost".to_owned(), "127.0.0.1".to_owned()];
    let renewed = lab.generated.issue(&names).expect("renewal");
    renewed.write_to(lab.dir.path()).expect("written over");
    let new = x509(&openssl, &renewed.server_cert_pem).await;
    assert_ne!(new.serial, old.serial);
    assert_eq!(until_presented(&openssl, tls, Some("localhost"), &new.serial).await, new, "new connections");
    assert_eq!(lab.tas.tls.certificates()[0].names, names);

    // The call on the old connection goes on and ends normally.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(dialog.hangup().await.expect("BYE"), 200);
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
    let record = lab.call_records_when(1).await.remove(0);
    assert_eq!((&record["final_status"], &record["ended_by"]), (&200.into(), &"caller".into()), "{record}");

    // And a new call is served.
    let mut call = lab.call("+4711111111", "+4799990001");
    let Progress::Answered(dialog, _) = final_of(&mut call).await else { panic!("not answered after the renewal") };
    dialog.ack(None).expect("ACK");
    assert_eq!(dialog.hangup().await.expect("BYE"), 200);
    watch.abort();
}

#[tokio::test]
async fn sni_picks_the_certificate_and_sighup_takes_a_renewal_but_not_a_broken_key() {
    let Some(openssl) = tool(&["openssl"], "openssl") else { return };
    let core = start_core(AuthMode::Sandbox, Duration::from_secs(60)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let default = devcert::generate(&["tas.example.com".to_owned()]).expect("certificate");
    let default_files = default.write_to(&dir.path().join("default")).expect("written");
    let other: DevCertificates =
        default.issue(&["other.example.com".to_owned(), "*.wild.example.com".to_owned()]).expect("second");
    let other_files = other.write_to(&dir.path().join("other")).expect("written");
    let sni = format!(
        "[[sip.certificate]]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        other_files.server_cert.display(),
        other_files.server_key.display()
    );
    let (server, base, tls) = serve(dir.path(), &core, &default_files, "", &sni).await;
    let first = x509(&openssl, &default.server_cert_pem).await;
    let second = x509(&openssl, &other.server_cert_pem).await;
    assert_eq!(presented(&openssl, tls, Some("other.example.com")).await, second, "by its name");
    assert_eq!(presented(&openssl, tls, Some("a.wild.example.com")).await, second, "by its wildcard");
    assert_eq!(presented(&openssl, tls, Some("nobody.example.com")).await, first, "no match: the default");
    assert_eq!(presented(&openssl, tls, None).await, first, "no SNI: the default");

    // A renewal written over the files and SIGHUP.
    let renewed = default.issue(&["tas.example.com".to_owned()]).expect("renewal");
    renewed.write_to(&dir.path().join("default")).expect("written over");
    let new = x509(&openssl, &renewed.server_cert_pem).await;
    server.signal(nix::sys::signal::Signal::SIGHUP);
    assert_eq!(until_presented(&openssl, tls, None, &new.serial).await, new, "SIGHUP took the renewal");
    assert_eq!(presented(&openssl, tls, Some("other.example.com")).await, second, "the other kept");

    // A broken key is refused; the certificate in use stays.
    std::fs::write(&default_files.server_key, "-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
        .expect("broken key");
    server.signal(nix::sys::signal::Signal::SIGHUP);
    let (_, metrics) = get(&format!("{base}/metrics")).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut metrics = metrics;
    while sample(&metrics, "ringer_tls_reloads_total", &[("result", "error")]) < 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "the broken key was refused:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        metrics = get(&format!("{base}/metrics")).await.1;
    }
    assert_eq!(presented(&openssl, tls, None).await, new, "still the renewal");

    // Something that is not TLS at all fails its handshake, counted by why.
    {
        use tokio::io::AsyncWriteExt;
        let mut plain = tokio::net::TcpStream::connect(tls).await.expect("connect");
        plain.write_all(b"OPTIONS sip:tas.example.com SIP/2.0\r\n\r\n").await.expect("written");
        let mut buffer = [0u8; 64];
        let _ =
            tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read(&mut plain, &mut buffer)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sample(&metrics, "ringer_tls_handshakes_total", &[("direction", "in"), ("result", "protocol")]) < 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "the plain text was counted:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        metrics = get(&format!("{base}/metrics")).await.1;
    }
    let handshakes = sample(&metrics, "ringer_tls_handshakes_total", &[("direction", "in"), ("result", "ok")]);
    assert!(handshakes >= 7.0, "each s_client handshake counted: {handshakes}\n{metrics}");
    assert_eq!(sample(&metrics, "ringer_tls_reloads_total", &[("result", "ok")]), 1.0, "{metrics}");
    let file = default_files.server_cert.display().to_string();
    let expiry = sample(&metrics, "ringer_tls_certificate_expiry_timestamp_seconds", &[("file", &file)]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
    assert!(expiry > now + 86_400.0, "the expiry, in the future: {expiry}\n{metrics}");

    server.signal(nix::sys::signal::Signal::SIGTERM);
    let (code, _, stderr) = server.wait().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("TLS files not reloaded"), "the refusal logged:\n{stderr}");
    assert!(stderr.contains("other.example.com, *.wild.example.com") && stderr.contains("expires"), "{stderr}");
}

#[tokio::test]
async fn sighup_takes_a_new_client_ca_for_mutual_tls() {
    let Some(openssl) = tool(&["openssl"], "openssl") else { return };
    let core = start_core(AuthMode::Sandbox, Duration::from_secs(60)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let server_certificate = devcert::generate(&["tas.example.com".to_owned()]).expect("certificate");
    let server_files = server_certificate.write_to(&dir.path().join("server")).expect("written");
    // Two client identities from two CAs; the TAS trusts the first CA, then the second.
    let sbc_a = devcert::generate(&["sbc-a.example.net".to_owned()]).expect("client A");
    let sbc_b = devcert::generate(&["sbc-b.example.net".to_owned()]).expect("client B");
    let files_a = sbc_a.write_to(&dir.path().join("a")).expect("written");
    let files_b = sbc_b.write_to(&dir.path().join("b")).expect("written");
    let client_ca = dir.path().join("client-ca.pem");
    std::fs::write(&client_ca, &sbc_a.ca_cert_pem).expect("client CA");
    let sip = format!("client_ca_file = \"{}\"\n", client_ca.display());
    let (server, _, tls) = serve(dir.path(), &core, &server_files, &sip, "").await;

    // Whether the TAS completes a handshake with a client presenting `identity`.
    let accepted = |identity: devcert::DevCertificateFiles| {
        let openssl = openssl.clone();
        async move {
            // TLS 1.2: the client certificate is checked within the handshake (TLS 1.3 would
            // refuse it only after s_client is done).
            let run = tokio::process::Command::new(&openssl)
                .args(["s_client", "-tls1_2", "-connect", &tls.to_string(), "-servername", "tas.example.com"])
                .args(["-cert", &identity.server_cert.display().to_string()])
                .args(["-key", &identity.server_key.display().to_string()])
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output();
            let output =
                tokio::time::timeout(Duration::from_secs(10), run).await.expect("s_client ended").expect("ran");
            let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
            match output.status.success() && !text.contains("alert") {
                true => Accepted::Yes,
                // A refusal is the server's alert (unknown CA), not any failure of s_client.
                false if text.contains("alert unknown ca") || text.contains("alert bad certificate") => {
                    Accepted::Refused
                }
                false => Accepted::Other(text),
            }
        }
    };
    assert_eq!(accepted(files_a.clone()).await, Accepted::Yes, "client A's CA is trusted");
    assert_eq!(accepted(files_b.clone()).await, Accepted::Refused, "client B's is not");

    std::fs::write(&client_ca, &sbc_b.ca_cert_pem).expect("new client CA");
    server.signal(nix::sys::signal::Signal::SIGHUP);
    let trusted = || {
        let files_b = files_b.clone();
        async move { accepted(files_b).await == Accepted::Yes }
    };
    assert!(poll_async(Duration::from_secs(10), trusted).await, "client B trusted after SIGHUP");
    assert_eq!(accepted(files_a).await, Accepted::Refused, "client A no longer");
}

/// What became of a handshake with a client certificate.
#[derive(Debug, PartialEq, Eq)]
enum Accepted {
    Yes,
    /// The server refused the certificate with an alert.
    Refused,
    /// Something else went wrong (what s_client printed).
    Other(String),
}

/// Asks `condition` until it holds (true) or `limit` passes (false).
async fn poll_async<F: std::future::Future<Output = bool>>(limit: Duration, mut condition: impl FnMut() -> F) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
