//! The `ringer` binary: register/unregister as grpcurl would, and `serve` registering,
//! reloading and deleting on SIGTERM, against the emulated core over real gRPC.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::netns::NetNs;
use common::process::*;
use common::*;
use nix::sys::signal::Signal;
use ringer::config::core::AuthMode;
use tokio::process::Command;

const HOUR: Duration = Duration::from_secs(3600);

fn register_args<'a>(endpoint: &'a str, number: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "register",
        "--endpoint",
        endpoint,
        "--phone-number",
        number,
        "--sip-uri",
        "sips:tas.example.com:5061",
        "--route-type",
        "loop",
    ];
    args.extend_from_slice(extra);
    args
}

#[tokio::test]
async fn register_prints_the_answer_as_grpcurl_does() {
    let core = start_core(AuthMode::Sandbox, HOUR).await;
    let endpoint = core.endpoint();
    let out = ringer(&register_args(&endpoint, "+4799990000", &["--mo-prefix", "11", "--mt-prefix", "22"]), &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "{\n  \"statusCode\": \"STATUS_CODE_OK\",\n  \"timeToLive\": \"3600s\"\n}\n");
    let stored = core.registry().lookup(&msisdn("+4799990000")).expect("registered");
    assert_eq!(stored.registration.mo_prefix.map(String::from), Some("11".into()));

    let mut unregister = register_args(&endpoint, "+4799990000", &[]);
    unregister[0] = "unregister";
    let out = ringer(&unregister, &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "{\n  \"statusCode\": \"STATUS_CODE_OK\"\n}\n");
    assert!(core.registry().snapshot().is_empty());
}

/// `ringer core` (a process) shows its side at `/metrics` on its API's port: the calls it
/// answered, by method and code, and the registrations it holds.
#[tokio::test]
async fn the_emulated_core_counts_what_it_answered_in_its_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let grpc = free_port();
    let path = dir.path().join("core.toml");
    std::fs::write(&path, format!("subscribers = [\"+4799990000\"]\n[grpc]\nlisten = \"{grpc}\"\n")).expect("config");
    let core = Server::spawn(&["core", "--config", path.to_str().expect("utf-8")], &[]);
    let endpoint = format!("http://{grpc}");
    common::scrape::until_status(&format!("{endpoint}/metrics"), 200, "the emulated core serves").await;
    assert_eq!(ringer(&register_args(&endpoint, "+4799990000", &[]), &[]).await.code, Some(0));
    assert_ne!(ringer(&register_args(&endpoint, "+4711111111", &[]), &[]).await.code, Some(0));
    let (_, metrics) = common::scrape::get(&format!("{endpoint}/metrics")).await;
    let count =
        |labels: &[(&str, &str)]| common::scrape::sample(&metrics, "ringer_emulated_core_requests_total", labels);
    assert_eq!(count(&[("method", "UpsertRegistration"), ("code", "STATUS_CODE_OK")]), 1.0, "{metrics}");
    assert_eq!(count(&[("method", "UpsertRegistration"), ("code", "STATUS_CODE_NOT_ACCEPTABLE")]), 1.0, "{metrics}");
    assert_eq!(common::scrape::sample(&metrics, "ringer_emulated_core_registrations", &[]), 1.0, "{metrics}");
    core.signal(nix::sys::signal::Signal::SIGTERM);
    let (code, _, stderr) = core.wait().await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test]
async fn not_acceptable_prints_the_core_message_and_fails() {
    let mut config = core_config(loopback_any_port(), AuthMode::Sandbox, HOUR);
    config.subscribers = vec![msisdn("+4799990000")];
    let core = ringer::core::start(&config).await.expect("core");
    let endpoint = core.endpoint();
    let out = ringer(&register_args(&endpoint, "+4711111111", &[]), &[]).await;
    assert_ne!(out.code, Some(0));
    assert!(out.stdout.contains("\"statusCode\": \"STATUS_CODE_NOT_ACCEPTABLE\""), "{}", out.stdout);
    assert!(out.stderr.contains("+4711111111 is not a subscriber of this operator"), "{}", out.stderr);
}

#[tokio::test]
async fn grpc_errors_print_code_and_message() {
    let core = start_core(AuthMode::Required, HOUR).await;
    let endpoint = core.endpoint();
    let out = ringer(&register_args(&endpoint, "+4799990000", &[]), &[]).await;
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("Code: Unauthenticated"), "{}", out.stderr);
    let out = ringer(&register_args(&endpoint, "+4799990000", &[]), &[("RINGER_TOKEN", NO_SCOPE_TOKEN)]).await;
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("Code: PermissionDenied"), "{}", out.stderr);
    let closed = format!("http://{}", free_port());
    let out = ringer(&register_args(&closed, "+4799990000", &["--timeout", "2s"]), &[]).await;
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("Code: Unavailable"), "{}", out.stderr);
}

#[tokio::test]
async fn bad_input_is_refused_locally() {
    let core = start_core(AuthMode::Sandbox, HOUR).await;
    let endpoint = core.endpoint();
    let mut insecure = register_args(&endpoint, "+4799990000", &[]);
    insecure[6] = "sip:tas.example.com";
    let out = ringer(&insecure, &[]).await;
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("Secure SIP domain name required"), "{}", out.stderr);
    let out = ringer(&register_args(&endpoint, "4799990000", &[]), &[]).await;
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("E.164"), "{}", out.stderr);
    let out = ringer(&register_args(&endpoint, "+47 9999", &["--mo-prefix", "1a"]), &[]).await;
    assert_ne!(out.code, Some(0));
    let out = ringer(&register_args(&endpoint, "+4799990000", &["--route-type", "sideways"]), &[]).await;
    assert_ne!(out.code, Some(0));
    assert_eq!(core.call_counts().upserts.load(Ordering::Relaxed), 0, "nothing reached the core");
}

#[tokio::test]
async fn bearer_token_from_environment_or_file() {
    let core = start_core(AuthMode::Required, HOUR).await;
    let endpoint = core.endpoint();
    let out = ringer(&register_args(&endpoint, "+4799990001", &[]), &[("RINGER_TOKEN", CLIENT_TOKEN)]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);

    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{USER_TOKEN}\n")).expect("write");
    let token_path = token_file.to_str().expect("utf-8 path");
    // A user's token may leave out the phone number.
    let args = [
        "register",
        "--endpoint",
        &endpoint,
        "--sip-uri",
        "sips:tas.example.com",
        "--route-type",
        "loop-mt",
        "--mt-prefix",
        "22",
        "--token-file",
        token_path,
    ];
    let out = ringer(&args, &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(core.registry().lookup(&msisdn(USER_MSISDN)).is_some());
}

#[tokio::test]
async fn client_credentials_from_the_command_line_never_print_the_secret() {
    let core = start_core(AuthMode::Required, HOUR).await;
    let endpoint = core.endpoint();
    let token_url = core.token_url();
    let credentials = ["--client-id", CLIENT_ID, "--token-url", &token_url];
    let trace = ("RINGER_LOG", "trace");
    let out = ringer(
        &register_args(&endpoint, "+4799990002", &credentials),
        &[("RINGER_CLIENT_SECRET", CLIENT_SECRET), trace],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(core.registry().lookup(&msisdn("+4799990002")).is_some());
    assert!(!out.stderr.contains(CLIENT_SECRET) && !out.stdout.contains(CLIENT_SECRET), "secret leaked into output");

    let wrong = "wrong-secret-do-not-print";
    let out =
        ringer(&register_args(&endpoint, "+4799990002", &credentials), &[("RINGER_CLIENT_SECRET", wrong), trace]).await;
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("invalid_client"), "{}", out.stderr);
    assert!(!out.stderr.contains(wrong) && !out.stdout.contains(wrong), "secret leaked into output");

    let mut args =
        vec!["register", "--endpoint", &endpoint, "--sip-uri", "sips:tas.example.com", "--route-type", "loop"];
    args.extend_from_slice(&credentials);
    let out = ringer(&args, &[("RINGER_CLIENT_SECRET", CLIENT_SECRET)]).await;
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("phone number is required"), "{}", out.stderr);
}

/// A running `ringer serve` whose output is collected as it comes.
#[tokio::test]
async fn serve_registers_reloads_on_sighup_and_deletes_on_sigterm() {
    let core = start_core(AuthMode::Required, HOUR).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ringer.toml");
    let status = free_port();
    std::fs::write(
        &path,
        with_store(&path, serve_config(&core.endpoint(), status, &[("+4799990010", "loop"), ("+4799990011", "fork")])),
    )
    .expect("write");
    let path_text = path.to_str().expect("utf-8 path").to_owned();
    let server = Server::spawn(&["serve", "--config", &path_text], &[("RINGER_TEST_TOKEN", CLIENT_TOKEN)]);
    eventually(Duration::from_secs(10), "both registered", || core.registry().snapshot().len() == 2).await;

    // The status view tells the same, once the answers are back.
    let url = format!("http://{status}/registrations");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let entries = loop {
        let view: serde_json::Value =
            reqwest::get(&url).await.expect("status view answers").json().await.expect("JSON");
        let entries = view.as_array().expect("a list").clone();
        if entries.iter().all(|entry| entry["state"] == "registered") || tokio::time::Instant::now() > deadline {
            break entries;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(entries.len(), 2);
    for entry in &entries {
        assert_eq!(entry["state"], "registered", "{entry}");
        assert_eq!(entry["last_result"], "STATUS_CODE_OK", "{entry}");
        assert!(entry["expires_at"].is_string() && entry["next_attempt"].is_string(), "{entry}");
    }

    let calls: serde_json::Value =
        reqwest::get(format!("http://{status}/calls")).await.expect("calls view").json().await.expect("JSON");
    assert_eq!(calls["request_hop"]["count"], 0, "no call relayed yet: {calls}");
    assert!(calls["answer_hop"]["p99_us"].is_u64(), "{calls}");

    std::fs::write(
        &path,
        with_store(
            &path,
            serve_config(&core.endpoint(), status, &[("+4799990011", "fork"), ("+4799990012", "fallback")]),
        ),
    )
    .expect("write");
    server.signal(Signal::SIGHUP);
    let reloaded = poll_until(Duration::from_secs(10), || {
        let numbers: Vec<String> = core.registry().snapshot().iter().map(|r| r.msisdn.to_string()).collect();
        numbers == ["+4799990011", "+4799990012"]
    })
    .await;
    assert!(reloaded, "reload not applied: {:?}\n{}", core.registry().snapshot(), server.stderr.lock().expect("lock"));

    server.signal(Signal::SIGTERM);
    let (code, stdout, stderr) = server.wait().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("2 registrations deleted"), "{stdout}");
    assert!(core.registry().snapshot().is_empty(), "every registration deleted");
    assert!(!stderr.contains(CLIENT_TOKEN), "token leaked into logs");
}

#[tokio::test]
async fn serve_refuses_a_bad_config_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[tas]\nsip_uri = \"sip:tas.example.com\"\n[core]\nendpoint = \"http://127.0.0.1:1\"\n")
        .expect("write");
    let out = ringer(&["serve", "--config", path.to_str().expect("utf-8")], &[]).await;
    assert_ne!(out.code, Some(0));
    assert!(
        out.stderr.contains("bad.toml") && out.stderr.contains("Secure SIP domain name required"),
        "{}",
        out.stderr
    );
    let out = ringer(&["serve", "--config", "/nonexistent/ringer.toml"], &[]).await;
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("cannot read /nonexistent/ringer.toml"), "{}", out.stderr);
}

#[tokio::test]
async fn serve_on_embedded_defaults_registers_samples_and_cleans_up() {
    // The embedded defaults use well-known ports: in a namespace of its own the test runs while
    // `ringer serve` (or anything else) holds them on this machine.
    let Some(namespace) = NetNs::new() else { return };
    let namespace = Some(&namespace);
    let ringer = |args: &'static [&'static str]| ringer_in(namespace, args, &[]);
    let server = Server::spawn_in(namespace, &["serve"], &[]);
    let stderr = server.stderr.clone();
    eventually(Duration::from_secs(10), "six sample subscribers registered", || {
        stderr.lock().expect("lock").matches(" registered ").count() >= 6
    })
    .await;
    // The TAS places a call through the running emulated core to the Ingress sample.
    let call = ringer(&["call", "--to", "+4799990006", "--from", "+4799999999", "--hold", "100ms"]).await;
    assert_eq!(call.code, Some(0), "{}\n{}", call.stdout, call.stderr);
    assert!(call.stdout.contains("200 OK: answered"), "{}", call.stdout);
    assert!(call.stdout.contains("hung up: BYE answered 200"), "{}", call.stdout);
    // A number with no Ingress registration: the core refuses a TAS call without a Session-ID.
    let refused = ringer(&["call", "--to", "+4712345678", "--from", "+4799999999"]).await;
    assert_eq!(refused.code, Some(1), "{}\n{}", refused.stdout, refused.stderr);
    assert!(refused.stdout.contains("403 Forbidden") && refused.stdout.contains("Session-ID"), "{}", refused.stdout);
    // A handset calls the Loop sample through the SBC with WebRTC media; the TAS loops the call
    // back to the core, whose answering handset echoes: the tone comes back across all four legs.
    let dir = tempfile::tempdir().expect("tempdir");
    let heard = dir.path().join("heard.wav");
    let heard_text = heard.to_str().expect("utf-8");
    let dial =
        ringer_in(namespace, &["dial", "--to", "+4799990001", "--duration", "1s", "--record", heard_text], &[]).await;
    assert_eq!(dial.code, Some(0), "{}\n{}", dial.stdout, dial.stderr);
    assert!(dial.stdout.contains("answered; ICE and DTLS up after "), "{}", dial.stdout);
    let samples: Vec<f64> = hound::WavReader::open(&heard)
        .expect("recording")
        .samples::<i16>()
        .map(|s| f64::from(s.expect("sample")))
        .collect();
    let loud: Vec<f64> = samples.iter().copied().skip_while(|s| s.abs() < 1000.0).take(4000).collect();
    assert!(loud.len() >= 4000, "half a second of echo: {}", dial.stdout);
    assert!(common::audio::tone_share(&loud, 1000.0) > 0.5, "the echo is the tone sent");
    server.signal(Signal::SIGINT);
    let (code, stdout, stderr) = server.wait().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("embedded defaults: emulated core's SipBreakoutService at http://127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("emulated SBC takes calls at sip:<number>@127.0.0.1:5070"), "{stdout}");
    assert!(stdout.contains("6 registrations deleted"), "{stdout}");
}

#[tokio::test]
async fn demo_places_a_call_per_route_type_and_direction() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(BINARY).arg("demo").current_dir(dir.path()).output(),
    )
    .await
    .expect("demo finished in time")
    .expect("demo ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let rows: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 11, "{stdout}");
    let row = |route: &str, direction: &str| {
        rows.iter().find(|row| row.split_whitespace().take(2).eq([route, direction])).copied().unwrap_or_default()
    };
    assert!(row("loop", "MO").contains("1:200 2:200 3:200 4:200") && row("loop", "MO").contains(" 11 "), "{stdout}");
    assert!(row("loop-mo", "MT").contains("direct"), "{stdout}");
    assert!(row("fork", "MT").contains("2:487 4:200"), "{stdout}");
    assert!(
        row("fallback", "MT").contains("4:486 2:200") && row("fallback", "MT").contains("answer voicemail"),
        "{stdout}"
    );
    assert!(row("ingress", "TAS").contains("3:200 4:200"), "{stdout}");
    assert!(rows.iter().all(|row| row.trim_end().ends_with("200")), "{stdout}");
}

fn tls_serve_config(endpoint: &str, certs: &std::path::Path) -> String {
    format!(
        "[tas]\nsip_uri = \"sips:tas.example.com:5061\"\n[core]\nendpoint = \"{endpoint}\"\n\
         [sip]\ntls_listen = \"127.0.0.1:0\"\ncert_file = \"{0}/server.pem\"\nkey_file = \"{0}/server.key\"\n\
         \n[calls]\nunknown_number = \"reject 486\"\n[[subscriber]]\nphone_number = \"+4799990020\"\nroute_type = \"loop\"\n",
        certs.display()
    )
}

#[tokio::test]
async fn certs_then_serve_over_tls_verified_against_the_dev_ca() {
    let core = start_core(AuthMode::Sandbox, HOUR).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    let certs_text = certs.to_str().expect("utf-8").to_owned();
    let out =
        ringer(&["certs", "--domain", "tas.example.com", "--domain", "127.0.0.1", "--out", &certs_text], &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(certs.join("server.key")).expect("key").permissions().mode();
    assert_eq!(mode & 0o077, 0, "the key is readable by its owner only");

    let path = dir.path().join("ringer.toml");
    std::fs::write(&path, with_store(&path, tls_serve_config(&core.endpoint(), &certs))).expect("write");
    let server = Server::spawn(&["serve", "--config", path.to_str().expect("utf-8")], &[]);
    let addr = server.tls_listener().await;
    let mut peer = common::sip::Peer::tls(addr, &certs.join("ca.pem"), "tas.example.com").await;
    peer.send(common::sip::request("OPTIONS", "cli-tls", 1, "clitls", "TLS", None, "", "").as_bytes()).await;
    let response = peer.final_response().await;
    assert_eq!(response.status.as_u16(), 200);
    assert!(response.headers.get("Server").is_some_and(|s| s.starts_with("ringer/")));
    peer.send(
        common::sip::request("INVITE", "cli-inv", 1, "cliinv", "TLS", None, "", common::sip::SDP_OFFER).as_bytes(),
    )
    .await;
    assert_eq!(peer.final_response().await.status.as_u16(), 486, "the configured default action");
    server.signal(Signal::SIGTERM);
    let (code, _, stderr) = server.wait().await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test]
async fn serve_refuses_a_certificate_for_another_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    let out = ringer(&["certs", "--domain", "other.example.com", "--out", certs.to_str().expect("utf-8")], &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let path = dir.path().join("ringer.toml");
    std::fs::write(&path, with_store(&path, tls_serve_config("http://127.0.0.1:1", &certs))).expect("write");
    let out = ringer(&["serve", "--config", path.to_str().expect("utf-8")], &[]).await;
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("is not valid for \"tas.example.com\""), "{}", out.stderr);
    assert!(out.stderr.contains("ringer certs --domain tas.example.com"), "{}", out.stderr);
}

#[tokio::test]
async fn voicemail_lists_plays_and_deletes_and_recovers_partial_messages() {
    use ringer::media::mailbox::{Mailbox, MessageMeta};
    let dir = tempfile::tempdir().expect("tempdir");
    let mailbox = Mailbox::open(dir.path()).expect("mailbox");
    let meta = MessageMeta::new("+4799990001", Some("+4711111111"), Some("+4799990001"), Some("MT"), "PCMA");
    let mut complete = mailbox.start(meta.clone()).expect("start");
    complete.append(&vec![100i16; 16000]).expect("append");
    let complete = complete.finish().expect("finish");
    // A recording whose process died: never finished.
    let mut cut = mailbox.start(meta).expect("start");
    cut.append(&vec![100i16; 8000]).expect("append");
    drop(cut);
    let dir_text = dir.path().to_str().expect("utf-8").to_owned();

    let list = ringer(&["voicemail", "list", "--dir", &dir_text], &[]).await;
    assert_eq!(list.code, Some(0), "{}", list.stderr);
    assert!(list.stderr.contains("recovered"), "{}", list.stderr);
    assert!(list.stdout.contains("2 message(s)"), "{}", list.stdout);
    assert!(list.stdout.contains(&complete.id) && list.stdout.contains("+4711111111"), "{}", list.stdout);
    assert_eq!(list.stdout.lines().filter(|line| line.trim_end().ends_with(" yes")).count(), 1, "{}", list.stdout);

    let copy = dir.path().join("copy.wav");
    let play =
        ringer(&["voicemail", "play", &complete.id, "--dir", &dir_text, "--out", copy.to_str().expect("utf-8")], &[])
            .await;
    assert_eq!(play.code, Some(0), "{}", play.stderr);
    assert_eq!(hound::WavReader::open(&copy).expect("a WAV").len(), 16000);

    let delete = ringer(&["voicemail", "delete", &complete.id, "--dir", &dir_text], &[]).await;
    assert_eq!(delete.code, Some(0), "{}", delete.stderr);
    let missing = ringer(&["voicemail", "delete", &complete.id, "--dir", &dir_text], &[]).await;
    assert_ne!(missing.code, Some(0));
    assert!(missing.stderr.contains("no message"), "{}", missing.stderr);
}

#[tokio::test]
async fn a_process_killed_mid_recording_leaves_a_recoverable_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sip_port = free_port().port();
    let voicemail = dir.path().join("voicemail");
    let config = format!(
        "[tas]\nsip_uri = \"sips:tas.example.com:5061\"\n[core]\nendpoint = \"http://127.0.0.1:1\"\n\
         [registrar]\ninitial_backoff = \"60s\"\n[sip]\ntcp_listen = \"127.0.0.1:{sip_port}\"\nmedia_address = \"127.0.0.1\"\n\
         [media]\nbind_address = \"127.0.0.1\"\n[voicemail]\ndir = \"{}\"\n\
         [[subscriber]]\nphone_number = \"+4799990001\"\nroute_type = \"loop-mt\"\nmt_prefix = \"22\"\nmt = \"answer voicemail\"\n",
        voicemail.display()
    );
    let path = dir.path().join("ringer.toml");
    std::fs::write(&path, with_store(&path, config)).expect("config");
    let server = Server::spawn(&["serve", "--config", path.to_str().expect("utf-8")], &[]);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{sip_port}").parse().expect("addr");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "ringer did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The core's leg 2 for an MT call to the subscriber, offering plain PCMA; past the
    // greeting and beep, two and a half seconds of speech, then the process dies.
    let call = common::sip::VoicemailCall::start(addr, "22", "+4799990001", "kill-test").await;
    call.speak(125).await;
    server.signal(Signal::SIGKILL);
    let (code, _, _) = server.wait().await;
    assert_eq!(code, None, "killed by a signal");
    assert!(
        std::fs::read_dir(voicemail.join("4799990001"))
            .expect("mailbox folder")
            .any(|entry| { entry.map(|e| e.file_name().to_string_lossy().ends_with(".wav.partial")).unwrap_or(false) }),
        "the recording was under way"
    );

    let list = ringer(&["voicemail", "list", "--config", path.to_str().expect("utf-8")], &[]).await;
    assert_eq!(list.code, Some(0), "{}", list.stderr);
    assert!(
        list.stdout.contains("1 message(s)")
            && list.stdout.trim_end().lines().nth(1).is_some_and(|row| row.ends_with("yes")),
        "{}",
        list.stdout
    );
    // Recovered, then moved from the spool into the database: played from there.
    let row = list.stdout.lines().nth(1).expect("a message row").to_owned();
    assert!(row.contains("+4711111111"), "{row}");
    let id = row.split_whitespace().next().expect("id");
    let copy = dir.path().join("copy.wav");
    let config_path = path.to_str().expect("utf-8");
    let play =
        ringer(&["voicemail", "play", id, "--config", config_path, "--out", copy.to_str().expect("utf-8")], &[]).await;
    assert_eq!(play.code, Some(0), "{}", play.stderr);
    let samples = hound::WavReader::open(&copy).expect("a WAV").len();
    assert!(samples >= 8000, "at least the synced seconds survived: {samples} samples");
    let spool = ringer::media::mailbox::Mailbox::open(&voicemail).expect("spool");
    assert_eq!(spool.list(None).expect("spool list"), [], "the spool keeps nothing the database has");
}

#[tokio::test]
async fn conformance_passes_against_ringer_serve_and_writes_junit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    let certs_text = certs.to_str().expect("utf-8").to_owned();
    let out = ringer(&["certs", "--domain", "localhost", "--domain", "127.0.0.1", "--out", &certs_text], &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let harness = common::free_port();
    let config = format!(
        "[tas]\nsip_uri = \"sips:localhost:5061\"\n[core]\nendpoint = \"http://127.0.0.1:1\"\n\
         [sip]\ntls_listen = \"127.0.0.1:0\"\ncert_file = \"{0}/server.pem\"\nkey_file = \"{0}/server.key\"\n\
         core_uri = \"sips:localhost:{1}\"\ncore_ca_file = \"{0}/ca.pem\"\nmedia_address = \"127.0.0.1\"\n\
         [media]\nbind_address = \"127.0.0.1\"\n[voicemail]\ndir = \"{2}\"\n\
         [[subscriber]]\nphone_number = \"+4799990061\"\nroute_type = \"loop\"\nmo_prefix = \"11\"\nmt_prefix = \"21\"\n",
        certs.display(),
        harness.port(),
        dir.path().join("voicemail").display(),
    );
    let path = dir.path().join("ringer.toml");
    std::fs::write(&path, with_store(&path, config)).expect("write");
    let path_text = path.to_str().expect("utf-8");
    let server = Server::spawn(&["serve", "--config", path_text], &[]);
    let tls = server.tls_listener().await;
    let junit = dir.path().join("report.xml");
    let target = format!("sips:localhost:{}", tls.port());
    let listen = harness.to_string();
    let ca = format!("{certs_text}/ca.pem");
    let (cert, key) = (format!("{certs_text}/server.pem"), format!("{certs_text}/server.key"));
    let junit_text = junit.to_str().expect("utf-8");
    let args = [
        "conformance",
        "--target",
        &target,
        "--ca",
        &ca,
        "--config",
        path_text,
        "--listen",
        &listen,
        "--cert",
        &cert,
        "--key",
        &key,
        "--junit",
        junit_text,
    ];
    let out = ringer(&args, &[]).await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("call.loop.mt.tel.+4799990061") && out.stdout.contains("0 failed"), "{}", out.stdout);
    assert!(out.stderr.contains("running tls.certificate"), "progress on stderr: {}", out.stderr);
    let xml = std::fs::read_to_string(&junit).expect("JUnit report");
    assert!(xml.contains("failures=\"0\"") && xml.contains("name=\"sip.options\""), "{xml}");
    // Without the CA the dev certificate does not verify: a failing run, exit code 1.
    let args =
        ["conformance", "--target", &target, "--config", path_text, "--listen", &listen, "--json", "--only", "tls.*"];
    let out = ringer(&args, &[]).await;
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON report");
    assert_eq!(json["cases"].as_array().map(Vec::len), Some(1), "only the TLS case: {json}");
    assert_eq!(json["cases"][0]["name"], "tls.certificate");
    assert_eq!(json["cases"][0]["verdict"], "fail");
    // Waiting for deletes needs the harness's own gRPC side.
    let args = ["conformance", "--target", &target, "--config", path_text, "--grpc-delete-wait", "5s"];
    let out = ringer(&args, &[]).await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--grpc-listen"), "{}", out.stderr);
    server.signal(Signal::SIGTERM);
    let (code, _, stderr) = server.wait().await;
    assert_eq!(code, Some(0), "{stderr}");
}

/// The harness judges only what the TAS did: the emulated core's own 503 (nothing listening,
/// a failed TLS handshake) fails every call case with the reason, and so does a refusal where
/// the subscriber is declared to loop; undeclared, the refusal passes and the report names it.
#[tokio::test]
async fn conformance_fails_calls_the_tas_never_took_or_took_otherwise_than_declared() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ringer(&args, &[]).await
    };
    let listen = common::free_port().to_string();
    let calls = |target: &str, subscriber: &str, extra: &[&str]| {
        let mut args: Vec<String> =
            ["conformance", "--target", target, "--subscriber", subscriber, "--listen", &listen]
                .iter()
                .map(|arg| arg.to_string())
                .collect();
        args.extend(["--only", "call.*", "--answer-wait", "10s"].iter().map(|arg| arg.to_string()));
        args.extend(extra.iter().map(|arg| arg.to_string()));
        args
    };
    let failures = |stdout: &str, why: &str| {
        stdout.lines().filter(|line| line.contains(" FAIL ")).count() == 4
            && stdout.lines().filter(|line| line.contains("got:") && line.contains(why)).count() == 4
            && stdout.contains("4 failed")
    };

    // Nothing listens where the TAS should be.
    let nowhere = format!("sips:127.0.0.1:{}", common::free_port().port());
    let out = run(calls(&nowhere, "+4799990070,loop,mo=11,mt=21", &[])).await;
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(failures(&out.stdout, "leg 2 never reached the TAS"), "{}", out.stdout);
    assert!(out.stdout.contains("came from the emulated core, not from the TAS"), "{}", out.stdout);

    // A TAS whose certificate the harness does not trust: the handshake fails, in words.
    let certs = dir.path().join("certs");
    let certs_text = certs.to_str().expect("utf-8").to_owned();
    let out = ringer(&["certs", "--domain", "localhost", "--domain", "127.0.0.1", "--out", &certs_text], &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let config = |behaviour: &str| {
        format!(
            "[tas]\nsip_uri = \"sips:localhost:5061\"\n[core]\nendpoint = \"http://127.0.0.1:1\"\n\
             [sip]\ntls_listen = \"127.0.0.1:0\"\ncert_file = \"{0}/server.pem\"\nkey_file = \"{0}/server.key\"\n\
             core_uri = \"sips:localhost:{1}\"\ncore_ca_file = \"{0}/ca.pem\"\nmedia_address = \"127.0.0.1\"\n\
             [media]\nbind_address = \"127.0.0.1\"\n[voicemail]\ndir = \"{2}\"\n\
             [[subscriber]]\nphone_number = \"+4799990071\"\nroute_type = \"loop\"\nmo_prefix = \"11\"\nmt_prefix = \"21\"\n{3}",
            certs.display(),
            listen.rsplit(':').next().unwrap_or_default(),
            dir.path().join("voicemail").display(),
            behaviour,
        )
    };
    let path = dir.path().join("refuses.toml");
    std::fs::write(&path, with_store(&path, config("mo = \"reject 404\"\nmt = \"reject 404\"\n"))).expect("write");
    let server = Server::spawn(&["serve", "--config", path.to_str().expect("utf-8")], &[]);
    let target = format!("sips:localhost:{}", server.tls_listener().await.port());
    let out = run(calls(&target, "+4799990071,loop,mo=11,mt=21", &[])).await;
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(
        failures(&out.stdout, "TLS handshake failed: the server's certificate is signed by an issuer"),
        "{}",
        out.stdout
    );

    // Trusted now, the TAS refuses every call with 404: a pass that says so when nothing is
    // declared, a failure of each call case when the subscriber is declared to loop.
    let ca = format!("{certs_text}/ca.pem");
    let out = run(calls(&target, "+4799990071,loop,mo=11,mt=21", &["--ca", &ca])).await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.stdout.matches("outcome:  refused 404").count(), 4, "{}", out.stdout);
    let declared = "+4799990071,loop,mo=11,mt=21,expect-mo=loop,expect-mt=loop";
    let out = run(calls(&target, declared, &["--ca", &ca])).await;
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(failures(&out.stdout, "refused 404"), "{}", out.stdout);
    assert!(out.stdout.contains("expected: loop for MT calls of +4799990071 (as declared)"), "{}", out.stdout);
    // The TAS's own config declares what it does: refusals pass as such.
    let mut only_config = calls(&target, "+4799990071,loop,mo=11,mt=21", &["--ca", &ca]);
    only_config.retain(|arg| arg != "--subscriber" && arg != "+4799990071,loop,mo=11,mt=21");
    only_config.extend(["--config".to_owned(), path.to_str().expect("utf-8").to_owned()]);
    let out = run(only_config).await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.stdout.matches("outcome:  refused 404").count(), 4, "{}", out.stdout);
    server.signal(Signal::SIGTERM);
    let (code, _, stderr) = server.wait().await;
    assert_eq!(code, Some(0), "{stderr}");
}

/// Subscribers in a real PostgreSQL, changed with `ringer subscribers` while `ringer serve`
/// runs: each change reaches the core's registrations within seconds, with no restart or
/// SIGHUP; bad input is refused with the reason and changes nothing.
#[tokio::test]
async fn subscribers_changed_in_postgresql_reach_a_running_instance() {
    let Some(postgres) = common::postgres::Postgres::start() else { return };
    subscribers_changed_while_serving(&postgres.url).await;
}

/// The same on the default backend, an SQLite file that `ringer subscribers` writes while the
/// server reads it.
#[tokio::test]
async fn subscribers_changed_in_the_sqlite_file_reach_a_running_instance() {
    let dir = tempfile::tempdir().expect("tempdir");
    subscribers_changed_while_serving(&format!("sqlite://{}/ringer.db", dir.path().display())).await;
}

async fn subscribers_changed_while_serving(database: &str) {
    let migrated = ringer(&["db", "migrate", "--database", database], &[]).await;
    assert_eq!(migrated.code, Some(0), "{}", migrated.stderr);
    assert!(migrated.stdout.contains("applied 9 migration(s) [1, 2, 3, 4, 5, 6, 7, 8, 9]"), "{}", migrated.stdout);
    let again = ringer(&["db", "migrate", "--database", database], &[]).await;
    assert!(again.stdout.contains("up to date (schema version 9)"), "{}", again.stdout);

    let core = start_core(AuthMode::Required, HOUR).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ringer.toml");
    let config = format!(
        "[store]\nurl = \"{database}\"\npoll_interval = \"200ms\"\n{}",
        serve_config(&core.endpoint(), free_port(), &[])
    );
    std::fs::write(&path, config).expect("write");
    let server =
        Server::spawn(&["serve", "--config", path.to_str().expect("utf-8")], &[("RINGER_TEST_TOKEN", CLIENT_TOKEN)]);
    let registered = |numbers: &[&str]| {
        let mut seen: Vec<String> = core.registry().snapshot().iter().map(|r| r.msisdn.to_string()).collect();
        seen.sort();
        seen == numbers
    };

    let add = ringer(
        &[
            "subscribers",
            "add",
            "+4799990030",
            "--route-type",
            "loop",
            "--mo-prefix",
            "11",
            "--mt-prefix",
            "22",
            "--mt",
            "reject 486",
            "--database",
            database,
        ],
        &[],
    )
    .await;
    assert_eq!(add.code, Some(0), "{}", add.stderr);
    eventually(Duration::from_secs(10), "the added subscriber registered", || registered(&["+4799990030"])).await;
    let list = ringer(&["subscribers", "list", "--database", database], &[]).await;
    assert!(list.stdout.contains("+4799990030") && list.stdout.contains("reject 486"), "{}", list.stdout);

    // An import that replaces the list: the new ones register, the one left out is deleted.
    let file = dir.path().join("subscribers.toml");
    std::fs::write(
        &file,
        "[[subscriber]]\nphone_number = \"+4799990031\"\nroute_type = \"fork\"\nmt_prefix = \"23\"\n\
         [[subscriber]]\nphone_number = \"+4799990032\"\nroute_type = \"loop-mo\"\nmo_prefix = \"12\"\nmo = { action = \"forward +4712345678\", ring_time = \"1s\" }\n",
    )
    .expect("write");
    let import =
        ringer(&["subscribers", "import", file.to_str().expect("utf-8"), "--replace", "--database", database], &[])
            .await;
    assert_eq!(import.code, Some(0), "{}", import.stderr);
    assert!(import.stdout.contains("2 written, 1 removed"), "{}", import.stdout);
    eventually(Duration::from_secs(10), "the imported list registered, the old one deleted", || {
        registered(&["+4799990031", "+4799990032"])
    })
    .await;

    // Bad input: refused with the reason, nothing changed.
    for (args, reason) in [
        (vec!["add", "4799990033", "--route-type", "loop"], "4799990033"),
        (vec!["add", "+4799990033", "--route-type", "teleport"], "teleport"),
        (vec!["add", "+4799990033", "--route-type", "loop", "--mt", "reject 99"], "99"),
        (vec!["remove", "+4799990099"], "no subscriber +4799990099"),
    ] {
        let mut full = vec!["subscribers"];
        full.extend(args);
        full.extend(["--database", database]);
        let out = ringer(&full, &[]).await;
        assert_eq!(out.code, Some(1), "{full:?}: {}", out.stdout);
        assert!(out.stderr.contains(reason), "{full:?}: {}", out.stderr);
    }
    // An import with one entry the TAS could not serve writes none of them.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[subscriber]]\nphone_number = \"+4799990034\"\nroute_type = \"loop\"\n\
         [[subscriber]]\nphone_number = \"+4799990035\"\nroute_type = \"loop-mo\"\nmt = \"reject 486\"\n",
    )
    .expect("write");
    let out = ringer(&["subscribers", "import", bad.to_str().expect("utf-8"), "--database", database], &[]).await;
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert!(out.stderr.contains("+4799990035") && out.stderr.contains("nothing written"), "{}", out.stderr);
    // A database that does not exist is not made by a typo: `db migrate` makes one.
    let missing = format!("sqlite://{}/nowhere/ringer.db", dir.path().display());
    let out = ringer(&["subscribers", "list", "--database", &missing], &[]).await;
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert!(out.stderr.contains("ringer db migrate"), "{}", out.stderr);
    assert!(!dir.path().join("nowhere").exists());

    let remove = ringer(&["subscribers", "remove", "+4799990031", "--database", database], &[]).await;
    assert_eq!(remove.code, Some(0), "{}", remove.stderr);
    eventually(Duration::from_secs(10), "the removed subscriber's registration deleted", || {
        registered(&["+4799990032"])
    })
    .await;
    let list = ringer(&["subscribers", "list", "--database", database], &[]).await;
    assert!(list.stdout.contains("1 subscriber(s)"), "{}", list.stdout);

    server.signal(Signal::SIGTERM);
    let (code, _, stderr) = server.wait().await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test]
async fn mailbox_pins_and_api_tokens_are_set_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/ringer.db", dir.path().display());
    assert_eq!(ringer(&["db", "migrate", "--database", &url], &[]).await.code, Some(0));
    let owner = "+4799990101";

    // The PIN comes on standard input, never as an argument, and is kept as a hash only.
    let set = ringer_with_input(&["voicemail", "pin", owner, "--database", &url], "2468\n").await;
    assert_eq!(set.code, Some(0), "{}", set.stderr);
    assert!(!set.stdout.contains("2468") && !set.stderr.contains("2468"), "{set:?}");
    let short = ringer_with_input(&["voicemail", "pin", owner, "--database", &url], "12\n").await;
    assert_ne!(short.code, Some(0));
    assert!(short.stderr.contains("4 to 8 digits"), "{}", short.stderr);
    let bad_number = ringer_with_input(&["voicemail", "pin", "4799", "--database", &url], "1234\n").await;
    assert_ne!(bad_number.code, Some(0), "{}", bad_number.stdout);

    let add =
        ringer(&["voicemail", "tokens", "add", "--mailbox", owner, "--label", "phone", "--database", &url], &[]).await;
    assert_eq!(add.code, Some(0), "{}", add.stderr);
    let token = add.stdout.trim().to_owned();
    assert!(token.starts_with("rgr_") && token.len() == 52, "{token}");
    let admin = ringer(&["voicemail", "tokens", "add", "--admin", "--database", &url], &[]).await;
    assert_eq!(admin.code, Some(0), "{}", admin.stderr);
    let neither = ringer(&["voicemail", "tokens", "add", "--database", &url], &[]).await;
    assert_eq!(neither.code, Some(2), "a token needs --mailbox or --admin: {}", neither.stderr);
    let hash = ringer::tas::mailbox::api::token_hash(&token);
    let listed = ringer(&["voicemail", "tokens", "list", "--database", &url], &[]).await;
    assert!(listed.stdout.contains(&hash[..12]) && listed.stdout.contains(owner), "{}", listed.stdout);
    assert!(listed.stdout.contains("(all)") && !listed.stdout.contains(&token), "{}", listed.stdout);

    let store = ringer::store::Store::open(&url).await.expect("store");
    let state = store.pin_state(owner).await.expect("PIN state");
    assert!(ringer::tas::mailbox::pin::verify("2468", state.pin_hash.as_deref().unwrap_or("")), "{state:?}");
    assert!(!ringer::tas::mailbox::pin::verify("2469", state.pin_hash.as_deref().unwrap_or("")));
    assert_eq!(store.token(&hash).await.expect("token").and_then(|t| t.mailbox).as_deref(), Some(owner));

    let vague = ringer(&["voicemail", "tokens", "revoke", &hash[..2], "--database", &url], &[]).await;
    assert_ne!(vague.code, Some(0), "a short prefix could revoke many");
    let revoked = ringer(&["voicemail", "tokens", "revoke", &hash[..12], "--database", &url], &[]).await;
    assert!(revoked.code == Some(0) && revoked.stdout.contains("1 token(s) revoked"), "{revoked:?}");
    assert_eq!(store.token(&hash).await.expect("token"), None);
    store.close().await;
}

/// `ringer certs` for `host` into `dir/certs`, as the examples expect them.
async fn certs_in(dir: &std::path::Path, host: &str) {
    let out = dir.join("certs");
    let made = ringer(&["certs", "--domain", host, "--out", out.to_str().expect("utf-8")], &[]).await;
    assert_eq!(made.code, Some(0), "{}", made.stderr);
}

/// `ringer check-config` with `args` in `dir` (the examples name files relative to it).
async fn check_config(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let output = Command::new(BINARY)
        .args(["check-config"])
        .args(args)
        .current_dir(dir)
        .env_remove("RINGER_CLIENT_SECRET")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("ringer ran");
    Output {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test]
async fn check_config_passes_the_shipped_examples_and_names_what_is_wrong_in_broken_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    certs_in(dir.path(), "tas.example.com").await;
    let example = repo.join("ringer.example.toml");
    let secret = [("RINGER_CLIENT_SECRET", "s3cret")];
    let checked = check_config(dir.path(), &[example.to_str().expect("utf-8")], &secret).await;
    assert_eq!(checked.code, Some(0), "{}", checked.stderr);
    assert!(checked.stdout.contains(": ok"), "{}", checked.stdout);
    let core = repo.join("core.example.toml");
    let checked = check_config(dir.path(), &["--core", core.to_str().expect("utf-8")], &[]).await;
    assert_eq!(checked.code, Some(0), "{}", checked.stderr);

    // The production example, its certificate paths pointed at development certificates.
    let production = std::fs::read_to_string(repo.join("deploy/ringer.toml"))
        .expect("deploy/ringer.toml")
        .replace("/etc/ringer/tls/", &format!("{}/certs/", dir.path().display()));
    let path = dir.path().join("production.toml");
    std::fs::write(&path, production).expect("write");
    let path = path.to_str().expect("utf-8");
    let checked = check_config(dir.path(), &[path], &secret).await;
    assert_eq!(checked.code, Some(0), "{}", checked.stderr);
    let checked = check_config(dir.path(), &[path], &[]).await;
    assert_eq!(checked.code, Some(1));
    assert!(checked.stderr.contains("RINGER_CLIENT_SECRET"), "the missing secret named: {}", checked.stderr);

    // Broken files: the place of the first error, and nothing else said.
    let broken = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let base = "[tas]\nsip_uri = \"sips:tas.example.com\"\n[core]\nendpoint = \"http://127.0.0.1:50051\"\n";
    for (name, text, named) in [
        ("typo.toml", format!("{base}[sip]\ntls_lisen = \"0.0.0.0:5061\"\n"), "line 6"),
        ("typo.toml", format!("{base}[sip]\ntls_lisen = \"0.0.0.0:5061\"\n"), "tls_lisen"),
        ("value.toml", format!("{base}[calls]\nmax_diversions = \"many\"\n"), "max_diversions"),
        (
            "codes.toml",
            format!("{base}[sip]\ntcp_listen = \"127.0.0.1:5060\"\n[feature_codes.forward_busy]\non = \"*72\"\noff = \"*91\"\nquery = \"*#90\"\n"),
            "feature_codes.forward_busy.on",
        ),
        ("tls.toml", format!("{base}[sip]\ntls_listen = \"0.0.0.0:5061\"\n"), "sip.cert_file"),
        (
            "files.toml",
            format!("{base}[sip]\ntls_listen = \"0.0.0.0:5061\"\ncert_file = \"missing.pem\"\nkey_file = \"missing.key\"\n"),
            "missing.pem",
        ),
    ] {
        let path = broken(name, &text);
        let checked = check_config(dir.path(), &[path.to_str().expect("utf-8")], &[]).await;
        assert_eq!(checked.code, Some(1), "{name}: {}", checked.stdout);
        assert!(checked.stderr.contains(named), "{name}: {named} in {}", checked.stderr);
    }
}

#[tokio::test]
async fn systemd_accepts_the_shipped_unit() {
    let Some(analyze) = common::sipp::tool(&["systemd-analyze"], "systemd") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/ringer.service"))
        .expect("deploy/ringer.service");
    // verify wants the programs it names to exist: the built binary stands in for the installed one.
    let unit = unit.replace("/usr/local/bin/ringer", BINARY);
    let verify = |text: String| {
        let path = dir.path().join("ringer.service");
        std::fs::write(&path, text).expect("write unit");
        let analyze = analyze.clone();
        async move {
            let output = Command::new(analyze).args(["verify"]).arg(&path).output().await.expect("systemd-analyze ran");
            (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
        }
    };
    let (code, stderr) = verify(unit.clone()).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("ringer.service"), "no complaint about the unit: {stderr}");
    // A misspelt key is reported (the check can fail).
    let (_, stderr) = verify(unit.replace("DynamicUser=yes", "DynamicUsr=yes")).await;
    assert!(stderr.contains("DynamicUsr"), "{stderr}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_and_every_line_about_a_call_names_it() {
    let demo = ringer(&["demo", "--log-format", "json"], &[("RINGER_LOG", "info")]).await;
    assert_eq!(demo.code, Some(0), "{}", demo.stderr);
    let mut about_calls = 0;
    for line in demo.stderr.lines() {
        let object: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(object["timestamp"].is_string() && object["level"].is_string(), "{line}");
        assert!(object["fields"]["message"].is_string(), "{line}");
        let target = object["target"].as_str().unwrap_or_default();
        // The TAS's call handling and the B2BUA relaying its legs.
        if target.starts_with("tas::call") || target.starts_with("sip::b2bua") {
            let named = object["fields"]["call_id"].is_string()
                || object["spans"].as_array().is_some_and(|spans| spans.iter().any(|span| span["call_id"].is_string()));
            assert!(named, "a line about a call without its call id: {line}");
            about_calls += 1;
        }
    }
    assert!(about_calls >= 10, "the demo's calls were logged: {about_calls} lines");
}
