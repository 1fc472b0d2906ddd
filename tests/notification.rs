//! A voicemail message's owner is told by SMS through the operator's SmsService (the emulated
//! core's, over real gRPC, with the OAuth scope it needs): a message left by raw SIP and PCMA
//! reaches the database, then the core's outbox as a text to the owner naming the caller; a
//! temporary ERROR is sent again, a REJECT is not.

mod common;

use std::time::{Duration, Instant};

use common::process::*;
use common::*;
use nix::sys::signal::Signal;
use ringer::config::core::{AuthMode, StaticToken, TokenKind};
use ringer::core::sms::{SentText, SmsAnswer, SEND_TO_SUBSCRIBER_SCOPE};

const OWNER: &str = "+4799990701";
const TOKEN: &str = "registrar-and-sms";

async fn outbox_holds(core: &ringer::core::CoreHandle, count: usize) -> Vec<SentText> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let sent = core.sms().sent();
        if sent.len() >= count {
            return sent;
        }
        assert!(Instant::now() < deadline, "{count} texts expected, the core has {sent:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn leave_message(tas: std::net::SocketAddr, call_id: &str) {
    let call = common::sip::VoicemailCall::start(tas, "22", OWNER, call_id).await;
    call.speak(60).await;
    call.hang_up(OWNER).await;
}

/// `ringer serve` on a fresh SQLite database holding [`OWNER`] (Loop-MT, prefix 22, voicemail),
/// registering at `core` with `[voicemail.notification]` set to `notification`; returns it, its
/// SIP/TCP address and its folder.
async fn serve_with(
    core: &ringer::core::CoreHandle,
    auth: &str,
    notification: &str,
    env: &[(&str, &str)],
) -> (Server, std::net::SocketAddr, std::net::SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let database = format!("sqlite://{}", dir.path().join("ringer.db").display());
    let migrated = ringer(&["db", "migrate", "--database", &database], &[]).await;
    assert_eq!(migrated.code, Some(0), "{}", migrated.stderr);
    let add = ringer(
        &["subscribers", "add", OWNER, "--route-type", "loop-mt", "--mt-prefix", "22", "--mt", "answer voicemail"],
        &[("RINGER_DATABASE_URL", &database)],
    )
    .await;
    assert_eq!(add.code, Some(0), "{}", add.stderr);
    let port = free_port().port();
    let http = free_port();
    let path = dir.path().join("ringer.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\nurl = \"{database}\"\n[tas]\nsip_uri = \"sips:tas.example.com:5061\"\n[core]\nendpoint = \"{}\"\n\
             {auth}[registrar]\ninitial_backoff = \"100ms\"\n[http]\nlisten = \"{http}\"\n\
             [sip]\ntcp_listen = \"127.0.0.1:{port}\"\nmedia_address = \"127.0.0.1\"\n[media]\nbind_address = \"127.0.0.1\"\n\
             [voicemail]\ndir = \"{}\"\n[voicemail.notification]\n{notification}",
            core.endpoint(),
            dir.path().join("spool").display(),
        ),
    )
    .expect("config");
    let server = Server::spawn(&["serve", "--config", path.to_str().expect("utf-8")], env);
    eventually(Duration::from_secs(15), "ringer registered its subscriber", || {
        core.registry().lookup(&msisdn(OWNER)).is_some()
    })
    .await;
    (server, format!("127.0.0.1:{port}").parse().expect("addr"), http, dir)
}

#[tokio::test]
async fn a_new_message_is_told_to_its_owner_by_sms_retried_after_error_not_after_reject() {
    let mut config = core_config(loopback_any_port(), AuthMode::Required, Duration::from_secs(3600));
    config.auth.tokens.push(StaticToken {
        token: TOKEN.into(),
        kind: TokenKind::Client,
        msisdn: None,
        scopes: vec![SCOPE.into(), SEND_TO_SUBSCRIBER_SCOPE.into()],
    });
    config.sms_answer = SmsAnswer::Error;
    let core = ringer::core::start(&config).await.expect("core starts");
    let auth = "[auth]\nmode = \"bearer\"\ntoken_env = \"RINGER_TEST_TOKEN\"\n";
    let notification =
        "sms_from = \"Voicemail\"\nsms_text = \"From {caller}, {seconds} s\"\nattempts = 6\nretry = \"300ms\"\n";
    let (server, tas, http, dir) = serve_with(&core, auth, notification, &[("RINGER_TEST_TOKEN", TOKEN)]).await;

    // The core answers ERROR: the text is sent again, and accepted once the core takes it.
    // During the call, /metrics shows it: one dialog, one media session.
    let call = common::sip::VoicemailCall::start(tas, "22", OWNER, "vm-notify-1").await;
    call.speak(20).await;
    let (_, during) = common::scrape::get(&format!("http://{http}/metrics")).await;
    assert_eq!(common::scrape::sample(&during, "ringer_sip_dialogs", &[]), 1.0, "{during}");
    assert_eq!(common::scrape::sample(&during, "ringer_media_sessions", &[]), 1.0, "{during}");
    call.speak(40).await;
    call.hang_up(OWNER).await;
    let first = outbox_holds(&core, 1).await;
    assert_eq!((first[0].to.as_str(), first[0].from.as_str()), (OWNER, "Voicemail"));
    assert!(first[0].content.starts_with("From +4711111111, "), "{:?}", first[0].content);
    core.sms().answer_with(SmsAnswer::Ok);
    eventually(Duration::from_secs(20), "the text accepted on a later attempt", || {
        core.sms().sent().iter().any(|text| text.status == SmsAnswer::Ok)
    })
    .await;
    let sent = core.sms().sent();
    let (accepted, errors) = sent.split_last().expect("texts");
    assert!(!errors.is_empty() && errors.iter().all(|text| text.status == SmsAnswer::Error), "{sent:?}");
    assert!(sent.iter().all(|text| text.content == accepted.content), "the same text each time: {sent:?}");
    // The message is in the HTTP API `ringer serve` runs, for a token made on the command line.
    let database = format!("sqlite://{}", dir.path().join("ringer.db").display());
    let made = ringer(&["voicemail", "tokens", "add", "--mailbox", OWNER, "--database", &database], &[]).await;
    assert_eq!(made.code, Some(0), "{}", made.stderr);
    let listed = tokio::process::Command::new("curl")
        .args(["-sS", "-f", "-H", &format!("Authorization: Bearer {}", made.stdout.trim())])
        .arg(format!("http://{http}/api/v1/mailboxes/{OWNER}/messages"))
        .output()
        .await
        .expect("curl runs");
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("\"caller\":\"+4711111111\"") && listed.contains("\"state\":\"new\""), "{listed}");

    // REJECT is final: one attempt, none after the retry time.
    core.sms().answer_with(SmsAnswer::Reject);
    leave_message(tas, "vm-notify-2").await;
    let all = outbox_holds(&core, sent.len() + 1).await;
    assert_eq!(all[sent.len()].status, SmsAnswer::Reject);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(core.sms().sent().len(), sent.len() + 1, "a rejected text is not sent again: {:?}", core.sms().sent());

    // Played over the API, then deleted: /metrics counts each, and the two calls and texts.
    let message: serde_json::Value = serde_json::from_str(&listed).expect("JSON");
    let id = message[0]["id"].as_str().expect("message id").to_owned();
    let token = made.stdout.trim().to_owned();
    for (method, path) in [("GET", format!("{id}/audio")), ("DELETE", id.clone())] {
        let done = tokio::process::Command::new("curl")
            .args(["-sS", "-f", "-o", "/dev/null", "-X", method, "-H", &format!("Authorization: Bearer {token}")])
            .arg(format!("http://{http}/api/v1/mailboxes/{OWNER}/messages/{path}"))
            .status()
            .await
            .expect("curl runs");
        assert!(done.success(), "{method} {path}");
    }
    let (_, metrics) = common::scrape::get(&format!("http://{http}/metrics")).await;
    let count = |name: &str, labels: &[(&str, &str)]| common::scrape::sample(&metrics, name, labels);
    assert_eq!(count("ringer_voicemail_messages_total", &[("event", "left")]), 2.0, "{metrics}");
    assert_eq!(count("ringer_voicemail_messages_total", &[("event", "played")]), 1.0, "{metrics}");
    assert_eq!(count("ringer_voicemail_messages_total", &[("event", "deleted")]), 1.0, "{metrics}");
    assert_eq!(count("ringer_notifications_total", &[("channel", "sms"), ("result", "accepted")]), 1.0, "{metrics}");
    assert_eq!(count("ringer_notifications_total", &[("channel", "sms"), ("result", "refused")]), 1.0, "{metrics}");
    assert_eq!(count("ringer_call_setup_seconds_count", &[]), 2.0, "two calls answered: {metrics}");
    assert_eq!(count("ringer_call_duration_seconds_count", &[]), 2.0, "two calls ended: {metrics}");
    assert_eq!(count("ringer_media_sessions", &[]), 0.0, "no media left: {metrics}");
    assert_eq!(count("ringer_sip_dialogs", &[]) + count("ringer_sip_server_transactions", &[]), 0.0, "{metrics}");
    assert!(count("ringer_media_packets_received_total", &[]) >= 100.0, "the callers' RTP counted: {metrics}");
    assert!(metrics.contains("ringer_call_duration_seconds_bucket{le=\"0.5\"}"), "a histogram with buckets: {metrics}");

    server.signal(Signal::SIGTERM);
    let (code, _, stderr) = server.wait().await;
    assert_eq!(code, Some(0), "{stderr}");
}

/// The webhook: each new message POSTed as JSON, signed with HMAC-SHA256 over the body (the
/// signature checked with OpenSSL, not with ringer's code); a 503 is tried again, and the
/// secret never reaches the logs.
#[tokio::test]
async fn a_new_message_is_posted_to_the_webhook_signed_and_retried_after_503() {
    use std::sync::{Arc, Mutex};
    type Received = Arc<Mutex<Vec<(Option<String>, Vec<u8>)>>>;
    let received: Received = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hooks/voicemail",
            axum::routing::post(
                |axum::extract::State(received): axum::extract::State<Received>,
                 headers: axum::http::HeaderMap,
                 body: axum::body::Bytes| async move {
                    let signature =
                        headers.get("x-ringer-signature").and_then(|value| value.to_str().ok()).map(str::to_owned);
                    let mut received = received.lock().expect("lock");
                    received.push((signature, body.to_vec()));
                    // The first delivery finds the app down.
                    if received.len() == 1 {
                        axum::http::StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        axum::http::StatusCode::NO_CONTENT
                    }
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let core = start_core(AuthMode::Sandbox, Duration::from_secs(3600)).await;
    let notification = format!(
        "webhook_url = \"http://{hook}/hooks/voicemail\"\nwebhook_secret_env = \"RINGER_WEBHOOK_SECRET\"\n\
         attempts = 3\nretry = \"300ms\"\n"
    );
    let secret = "webhook-secret-4711";
    let env = [("RINGER_WEBHOOK_SECRET", secret), ("RINGER_LOG", "debug")];
    let (server, tas, _, dir) = serve_with(&core, "", &notification, &env).await;
    leave_message(tas, "vm-hook-1").await;
    eventually(Duration::from_secs(20), "the webhook taken on its second delivery", || {
        received.lock().expect("lock").len() == 2
    })
    .await;
    let deliveries = received.lock().expect("lock").clone();
    assert_eq!(deliveries[0], deliveries[1], "the same event, signed the same, each time");
    let (signature, body) = &deliveries[0];
    let event: serde_json::Value = serde_json::from_slice(body).expect("JSON");
    assert_eq!(
        (event["event"].as_str(), event["subscriber"].as_str(), event["caller"].as_str(), event["partial"].as_bool()),
        (Some("voicemail.message"), Some(OWNER), Some("+4711111111"), Some(false))
    );
    assert!(event["duration_ms"].as_u64().is_some_and(|ms| ms > 0), "{event}");
    // OpenSSL computes the HMAC over the exact bytes received.
    let file = dir.path().join("body.json");
    std::fs::write(&file, body).expect("body");
    let openssl = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret, "-r"])
        .arg(&file)
        .output()
        .expect("openssl runs (Debian package openssl)");
    let expected = String::from_utf8_lossy(&openssl.stdout).split_whitespace().next().unwrap_or_default().to_owned();
    assert_eq!(signature.as_deref(), Some(format!("sha256={expected}").as_str()));

    server.signal(Signal::SIGTERM);
    let (code, stdout, stderr) = server.wait().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stdout.contains(secret) && !stderr.contains(secret), "the secret never reaches the logs");
}
