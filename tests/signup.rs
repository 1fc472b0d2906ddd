//! Sign-up through the operator's consent, end to end: `ringer serve` (a process, SQLite)
//! beside the emulated core; headless Chromium (Debian's, over chromedriver) opens ringer's
//! sign-up page, follows "Enable" to the core's authorization page, logs in as a test number
//! and grants; ringer exchanges the code, registers the subscriber with their own token (the
//! core records it), a call to the number reaches ringer, the token is refreshed across several
//! short lifetimes, and withdrawing consent at the operator removes the subscriber. A `state`
//! that does not match the browser's is refused. Screenshots: `target/test-output/signup-*.png`.

mod common;

use std::time::{Duration, Instant};

use common::browser::Browser;
use common::process::{ringer, Server};
use common::*;
use ringer::config::core::{AuthMode, OAuthClient};

const OWNER: &str = "+4799990301";
const CALLER: &str = "+4711111114";
/// The user tokens' lifetime at the emulated core: several refreshes within the test.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3);
/// The key ringer seals tokens with in its database (32 bytes, base64).
const TOKEN_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

async fn listening(addr: std::net::SocketAddr, server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        let stderr = server.stderr.lock().expect("lock").clone();
        assert!(Instant::now() < deadline, "ringer did not listen on {addr}:\n{stderr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_subscriber_signs_up_in_a_browser_and_is_served_until_consent_is_withdrawn() {
    let Some(browser) = Browser::start().await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = ringer::tls::devcert::generate(&["localhost".into()])
        .expect("certs")
        .write_to(dir.path())
        .expect("write certs");
    let http = free_port();
    let tls = free_port();
    let callback = format!("http://{http}/signup/callback");

    let sbc = format!(
        "udp_listen = \"127.0.0.1:0\"\ninterconnect_listen = \"127.0.0.1:0\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
         tas_ca_file = \"{}\"\n[[handset]]\nnumber = \"{OWNER}\"\nmode = \"answer\"\nring_time = \"50ms\"\n",
        certs.server_cert.display(),
        certs.server_key.display(),
        certs.ca_cert.display(),
    );
    let mut core_config = core_config(loopback_any_port(), AuthMode::Required, Duration::from_secs(4));
    core_config.auth.clients = vec![OAuthClient {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        scopes: vec![SCOPE.into()],
        token_lifetime: TOKEN_LIFETIME,
        redirect_uris: vec![callback.clone()],
    }];
    core_config.sbc = Some(toml::from_str(&sbc).expect("SBC config"));
    let core = ringer::core::start(&core_config).await.expect("core starts");
    let interconnect = core.sbc().and_then(|sbc| sbc.interconnect.tls_addr).expect("interconnect");

    let database = format!("sqlite://{}/ringer.db", dir.path().display());
    let migrated = ringer(&["db", "migrate", "--database", &database], &[]).await;
    assert_eq!(migrated.code, Some(0), "{}", migrated.stderr);
    let config = format!(
        "[store]\nurl = \"{database}\"\npoll_interval = \"200ms\"\n[tas]\nsip_uri = \"sips:localhost:{tls_port}\"\n\
         [core]\nendpoint = \"{endpoint}\"\n\
         [auth]\nmode = \"client-credentials\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret_env = \"RINGER_TEST_SECRET\"\ntoken_url = \"{token}\"\n\
         [registrar]\nrefresh_at = 0.4\nrefresh_jitter = 0.05\ninitial_backoff = \"100ms\"\n\
         [http]\nlisten = \"{http}\"\n\
         [sip]\ntls_listen = \"{tls}\"\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\ncore_ca_file = \"{ca}\"\n\
         core_uri = \"sips:localhost:{interconnect_port}\"\n[voicemail]\ndir = \"{spool}\"\n\
         [signup]\nclient_id = \"{CLIENT_ID}\"\nclient_secret_env = \"RINGER_TEST_SECRET\"\n\
         authorize_url = \"{authorize}\"\ntoken_url = \"{token}\"\nuserinfo_url = \"{userinfo}\"\n\
         redirect_uri = \"{callback}\"\ntoken_key_env = \"RINGER_TEST_TOKEN_KEY\"\nmt_prefix = \"22\"\npoll_interval = \"200ms\"\n",
        tls_port = tls.port(),
        endpoint = core.endpoint(),
        token = core.token_url(),
        authorize = core.authorize_url(),
        userinfo = core.userinfo_url(),
        cert = certs.server_cert.display(),
        key = certs.server_key.display(),
        ca = certs.ca_cert.display(),
        interconnect_port = interconnect.port(),
        spool = dir.path().join("spool").display(),
    );
    let path = dir.path().join("ringer.toml");
    std::fs::write(&path, config).expect("write config");
    let env = [("RINGER_TEST_SECRET", CLIENT_SECRET), ("RINGER_TEST_TOKEN_KEY", TOKEN_KEY)];
    let server = Server::spawn(&["serve", "--config", path.to_str().expect("utf-8")], &env);
    listening(http, &server).await;

    // An answer this browser did not ask for: refused, nothing enabled.
    browser.open(&format!("{callback}?code=stolen&state=forged")).await;
    let refused = browser.text().await;
    browser.screenshot("signup-state-mismatch").await;
    assert!(refused.contains("state mismatch"), "{refused}");

    browser.open(&format!("http://{http}/signup")).await;
    browser.screenshot("signup-page").await;
    browser.click("#enable").await;
    let at = browser.url().await;
    assert!(at.starts_with(&core.authorize_url()), "sent to the operator: {at}");
    assert!(at.contains("offline_access") && at.contains("state="), "{at}");
    browser.type_into("#phone_number", OWNER).await;
    browser.screenshot("signup-consent").await;
    browser.click("#grant").await;
    let enabled = browser.text().await;
    browser.screenshot("signup-enabled").await;
    assert!(enabled.contains(&format!("The service is now on for {OWNER}")), "{enabled}");

    let registered = |core: &ringer::core::CoreHandle| {
        core.registry().snapshot().into_iter().find(|record| record.msisdn.as_str() == OWNER)
    };
    eventually(Duration::from_secs(10), "registered with the subscriber's own token", || {
        registered(&core).is_some_and(|record| record.by_user_token)
    })
    .await;

    // A call to the number comes to ringer (leg 2 with the MT prefix) and on to the phone.
    let alice = ringer::core::caller::Caller::start([127, 0, 0, 1].into(), "alice").await.expect("caller");
    let access = core.sbc().and_then(|sbc| sbc.access.udp_addr).expect("access");
    let mut call = alice.invite(access, &msisdn(CALLER), &msisdn(OWNER), lab::OFFER.into()).expect("INVITE");
    let ringer::sip::uac::Progress::Answered(dialog, _) = lab::final_of(&mut call).await else { panic!("answered") };
    dialog.ack(None).expect("ACK");
    assert_eq!(dialog.hangup().await.expect("BYE"), 200);
    let calls = core.sbc().expect("SBC").calls();
    let legs: Vec<String> = calls.last().expect("a call").legs.iter().map(|leg| leg.request_uri.clone()).collect();
    assert!(legs.iter().any(|uri| uri.contains(&format!("+22{}", &OWNER[1..]))), "leg 2 to ringer: {legs:?}");

    // Several token lifetimes: each refreshed in time, the registration kept up with it.
    let refreshed = core.auth().refresh_count();
    tokio::time::sleep(TOKEN_LIFETIME * 3).await;
    assert!(core.auth().refresh_count() >= refreshed + 3, "refreshed: {}", core.auth().refresh_count());
    let record = registered(&core).expect("still registered");
    assert!(record.by_user_token && record.upserts >= 3, "{record:?}");

    // The subscriber withdraws consent at the operator: ringer's next refresh is refused, and
    // it removes the subscriber instead of registering it again.
    let withdraw =
        format!("{}/admin/oauth2/auth/sessions/consent?subject=%2B{}&client={CLIENT_ID}", core.endpoint(), &OWNER[1..]);
    let response = reqwest::Client::new().delete(withdraw).send().await.expect("withdrawn");
    assert_eq!(response.status().as_u16(), 204);
    let store = ringer::store::Store::open(&database).await.expect("store");
    let mut revoked = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !revoked && Instant::now() < deadline {
        let consents = store.consents().await.expect("consents");
        revoked = consents.iter().any(|row| row.subscriber == OWNER && row.state == ringer::store::CONSENT_REVOKED);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(revoked, "ringer saw the consent withdrawn");
    // The status view says so (curl with an admin token).
    let admin = common::curl::token_for(&store, None).await;
    let (status, body) = common::curl::curl(http, &admin, "GET", "/api/v1/signups", None).await;
    assert_eq!(status, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(view[0]["subscriber"], OWNER, "{view}");
    assert_eq!(view[0]["state"], "revoked", "{view}");
    assert!(view[0]["note"].as_str().is_some_and(|note| note.contains("consent withdrawn")), "{view}");
    assert!(store.subscriber(&msisdn(OWNER)).await.expect("read").is_none(), "the subscriber is removed");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(registered(&core).is_none(), "not registered again");
    let stderr = server.stderr.lock().expect("lock").clone();
    assert!(stderr.contains("consent withdrawn"), "said in the log");
    for secret in [CLIENT_SECRET, TOKEN_KEY] {
        assert!(!stderr.contains(secret), "a secret in the log");
    }
}
