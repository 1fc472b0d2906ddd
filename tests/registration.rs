//! The registration client against the emulated core, over real gRPC (HTTP/2) on loopback.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use ringer::config::core::AuthMode;
use ringer::core::grpc::SECURE_SIP_REQUIRED;
use ringer::proto::sipbreakout::v1::{
    sip_breakout_service_client::SipBreakoutServiceClient, Registration as WireRegistration, StatusCode,
    UpsertRegistrationRequest,
};
use ringer::registrar::auth::{BearerSource, ClientCredentials, Credentials, Secret};
use ringer::registrar::{ClientError, Registrar, RegistrationState};
use ringer::types::RouteType;
use tonic::Code;

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn every_route_type_with_and_without_prefixes_is_stored_as_sent() {
    let core = start_core(AuthMode::Sandbox, HOUR).await;
    let client = client(&core, Credentials::None);
    for (index, route_type) in RouteType::ALL.into_iter().enumerate() {
        for (offset, (mo, mt)) in
            [(Some("11"), Some("22")), (None, None), (Some("0"), None), (None, Some("987"))].into_iter().enumerate()
        {
            let number = format!("+47900{index}{offset}");
            let wanted = registration(&number, route_type, mo, mt);
            let response = client.upsert(&wanted).await.expect("upsert answered");
            assert_eq!(response.status_code, StatusCode::Ok as i32, "{route_type} {mo:?} {mt:?}");
            assert_eq!(response.time_to_live.map(|d| d.seconds), Some(3600));
            let stored = core.registry().lookup(&msisdn(&number)).expect("stored");
            assert_eq!(stored.registration, wanted);
        }
    }
    assert_eq!(core.registry().snapshot().len(), RouteType::ALL.len() * 4);
}

#[tokio::test]
async fn upsert_replaces_and_delete_needs_the_same_sip_uri() {
    let core = start_core(AuthMode::Sandbox, HOUR).await;
    let client = client(&core, Credentials::None);
    let first = registration("+4790000100", RouteType::Loop, Some("11"), None);
    client.upsert(&first).await.expect("upsert");
    let replaced = registration("+4790000100", RouteType::Fallback, None, Some("25"));
    client.upsert(&replaced).await.expect("upsert");
    let stored = core.registry().lookup(&msisdn("+4790000100")).expect("stored");
    assert_eq!(stored.registration, replaced);

    let mut elsewhere = replaced.clone();
    elsewhere.sip_uri = "sips:other.example.com".parse().expect("uri");
    let refused = client.delete(&elsewhere).await.expect("answered");
    assert_eq!(refused.status_code, StatusCode::NotAcceptable as i32);
    assert!(core.registry().lookup(&msisdn("+4790000100")).is_some());

    let deleted = client.delete(&replaced).await.expect("answered");
    assert_eq!(deleted.status_code, StatusCode::Ok as i32);
    assert!(core.registry().lookup(&msisdn("+4790000100")).is_none());
}

/// The core's own refusals, sent with a raw gRPC client since ringer's client cannot send them.
#[tokio::test]
async fn core_refuses_insecure_uris_and_anonymous_registrations_without_number() {
    let core = start_core(AuthMode::Sandbox, HOUR).await;
    let mut raw = SipBreakoutServiceClient::connect(core.endpoint()).await.expect("connect");
    let send = |registration: WireRegistration| UpsertRegistrationRequest { registration: Some(registration) };
    let base = WireRegistration {
        sip_uri: "sips:tas.example.com".into(),
        route_type: 1,
        phone_number: Some(ringer::proto::common::v1::E164 { e164: "+4790000200".into() }),
        ..Default::default()
    };
    for insecure in ["sip:tas.example.com", "tas.example.com", "", "https://tas.example.com"] {
        let response = raw
            .upsert_registration(send(WireRegistration { sip_uri: insecure.into(), ..base.clone() }))
            .await
            .expect("answered")
            .into_inner();
        assert_eq!(response.status_code, StatusCode::NotAcceptable as i32, "{insecure:?}");
        assert_eq!(response.error_message, SECURE_SIP_REQUIRED);
        assert_eq!(response.time_to_live, None);
    }
    let no_number = raw
        .upsert_registration(send(WireRegistration { phone_number: None, ..base.clone() }))
        .await
        .expect("answered")
        .into_inner();
    assert_eq!(no_number.status_code, StatusCode::NotAcceptable as i32);
    assert!(no_number.error_message.contains("phone_number"));
    let unspecified = raw
        .upsert_registration(send(WireRegistration { route_type: 0, ..base.clone() }))
        .await
        .expect("answered")
        .into_inner();
    assert_eq!(unspecified.status_code, StatusCode::NotAcceptable as i32);
    assert!(core.registry().snapshot().is_empty());
}

#[tokio::test]
async fn client_credential_tokens_must_name_the_phone_number() {
    let core = start_core(AuthMode::Required, HOUR).await;
    // Refused locally by ringer's client, with a clear message...
    let credentials = Credentials::ClientCredentials(ClientCredentials {
        token_url: core.token_url(),
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
        scope: SCOPE.into(),
    });
    let mut without_number = registration("+4790000300", RouteType::Loop, None, None);
    without_number.phone_number = None;
    let error = client(&core, credentials).upsert(&without_number).await.expect_err("refused locally");
    assert!(matches!(error, ClientError::Invalid(_)));
    assert!(error.to_string().contains("phone number is required"), "{error}");
    assert_eq!(core.call_counts().upserts.load(Ordering::Relaxed), 0, "nothing was sent");

    // ...and by the core, for a client that sends it anyway.
    let bearer = client(&core, Credentials::Bearer(BearerSource::Value(Secret::new(CLIENT_TOKEN))));
    let mut raw = SipBreakoutServiceClient::connect(core.endpoint()).await.expect("connect");
    let mut request = tonic::Request::new(UpsertRegistrationRequest {
        registration: Some(WireRegistration {
            sip_uri: "sips:tas.example.com".into(),
            route_type: 1,
            ..Default::default()
        }),
    });
    request.metadata_mut().insert("authorization", format!("Bearer {CLIENT_TOKEN}").parse().expect("header"));
    let response = raw.upsert_registration(request).await.expect("answered").into_inner();
    assert_eq!(response.status_code, StatusCode::NotAcceptable as i32);
    assert!(response.error_message.contains("client credentials"), "{}", response.error_message);
    // With the number it is accepted.
    let accepted = bearer.upsert(&registration("+4790000300", RouteType::Loop, None, None)).await.expect("answered");
    assert_eq!(accepted.status_code, StatusCode::Ok as i32);
}

#[tokio::test]
async fn authentication_failures_are_grpc_statuses() {
    let core = start_core(AuthMode::Required, HOUR).await;
    let wanted = registration("+4790000400", RouteType::Fork, Some("14"), Some("24"));
    fn status_of<T: std::fmt::Debug>(result: Result<T, ClientError>) -> Code {
        match result {
            Err(ClientError::Status { code, .. }) => code,
            other => panic!("expected a gRPC status, got {other:?}"),
        }
    }
    assert_eq!(status_of(client(&core, Credentials::None).upsert(&wanted).await), Code::Unauthenticated);
    let unknown = Credentials::Bearer(BearerSource::Value(Secret::new("not-a-token")));
    assert_eq!(status_of(client(&core, unknown).upsert(&wanted).await), Code::Unauthenticated);
    let no_scope = Credentials::Bearer(BearerSource::Value(Secret::new(NO_SCOPE_TOKEN)));
    assert_eq!(status_of(client(&core, no_scope.clone()).upsert(&wanted).await), Code::PermissionDenied);
    assert_eq!(status_of(client(&core, no_scope).delete(&wanted).await), Code::PermissionDenied);
    assert!(core.registry().snapshot().is_empty());
}

#[tokio::test]
async fn sandbox_checks_a_token_that_is_sent() {
    let core = start_core(AuthMode::Sandbox, HOUR).await;
    let wanted = registration("+4790000450", RouteType::Loop, None, None);
    let anonymous = client(&core, Credentials::None).upsert(&wanted).await.expect("answered");
    assert_eq!(anonymous.status_code, StatusCode::Ok as i32);
    let bad = Credentials::Bearer(BearerSource::Value(Secret::new("stale")));
    let error = client(&core, bad).upsert(&wanted).await.expect_err("checked");
    assert!(matches!(error, ClientError::Status { code: Code::Unauthenticated, .. }), "{error:?}");
}

#[tokio::test]
async fn a_user_token_acts_on_its_own_number_only() {
    let core = start_core(AuthMode::Required, HOUR).await;
    let user = client(&core, Credentials::Bearer(BearerSource::Value(Secret::new(USER_TOKEN))));
    let mut own = registration(USER_MSISDN, RouteType::LoopMt, None, Some("22"));
    own.phone_number = None;
    let response = user.upsert(&own).await.expect("answered");
    assert_eq!(response.status_code, StatusCode::Ok as i32);
    let stored = core.registry().lookup(&msisdn(USER_MSISDN)).expect("stored under the token's number");
    assert_eq!(stored.registration.route_type, RouteType::LoopMt);

    let someone_else = registration("+4790000999", RouteType::Loop, None, None);
    let error = user.upsert(&someone_else).await.expect_err("not its number");
    assert!(matches!(error, ClientError::Status { code: Code::PermissionDenied, .. }), "{error:?}");
    assert!(core.registry().lookup(&msisdn("+4790000999")).is_none());
    let deleted = user.delete(&own).await.expect("answered");
    assert_eq!(deleted.status_code, StatusCode::Ok as i32);
    assert!(core.registry().lookup(&msisdn(USER_MSISDN)).is_none());
}

#[tokio::test]
async fn client_credentials_token_is_cached_renewed_and_refetched_after_unauthenticated() {
    let mut config = core_config(loopback_any_port(), AuthMode::Required, HOUR);
    config.auth.clients[0].token_lifetime = Duration::from_secs(2);
    let core = ringer::core::start(&config).await.expect("core");
    let credentials = Credentials::ClientCredentials(ClientCredentials {
        token_url: core.token_url(),
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
        scope: SCOPE.into(),
    });
    let client = client(&core, credentials);
    let wanted = registration("+4790000500", RouteType::Loop, Some("11"), Some("22"));
    for _ in 0..3 {
        let response = client.upsert(&wanted).await.expect("answered");
        assert_eq!(response.status_code, StatusCode::Ok as i32);
    }
    assert_eq!(core.auth().issued_token_count(), 1, "one token serves every call while fresh");

    // Tokens live 2 s; ringer renews 0.4 s before that, before the core would refuse it.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    client.upsert(&wanted).await.expect("answered");
    assert_eq!(core.auth().issued_token_count(), 2, "renewed shortly before expiry");

    // The identity provider forgets its tokens: the call is refused once, then retried with a new token.
    assert_eq!(core.auth().revoke_issued_tokens(), 2);
    let before = core.call_counts().upserts.load(Ordering::Relaxed);
    let response = client.upsert(&wanted).await.expect("answered after one retry");
    assert_eq!(response.status_code, StatusCode::Ok as i32);
    assert_eq!(core.call_counts().upserts.load(Ordering::Relaxed) - before, 2);
    assert_eq!(core.auth().issued_token_count(), 1);
}

#[tokio::test]
async fn a_wrong_client_secret_is_reported_without_the_secret() {
    let core = start_core(AuthMode::Required, HOUR).await;
    let credentials = Credentials::ClientCredentials(ClientCredentials {
        token_url: core.token_url(),
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new("wrong-secret-value"),
        scope: SCOPE.into(),
    });
    let error = client(&core, credentials)
        .upsert(&registration("+4790000600", RouteType::Loop, None, None))
        .await
        .expect_err("refused");
    let text = format!("{error} {error:?}");
    assert!(text.contains("401") && text.contains("invalid_client"), "{text}");
    assert!(!text.contains("wrong-secret-value"), "secret leaked: {text}");
    assert!(!error.is_transient(), "a wrong secret is not retried quickly");
}

#[tokio::test]
async fn https_endpoint_is_verified_against_the_given_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = ringer::tls::devcert::generate(&["localhost".into(), "127.0.0.1".into()])
        .expect("certs")
        .write_to(dir.path())
        .expect("written");
    let mut config = core_config(loopback_any_port(), AuthMode::Sandbox, HOUR);
    config.grpc.tls = Some(ringer::config::core::TlsFiles {
        cert_file: files.server_cert.clone(),
        key_file: files.server_key.clone(),
    });
    let core = ringer::core::start(&config).await.expect("core");
    let endpoint = format!("https://localhost:{}", core.grpc_addr().port());
    let wanted = registration("+4790000700", RouteType::Ingress, None, None);

    let mut trusted = api(endpoint.clone());
    trusted.ca_file = Some(files.ca_cert.clone());
    let response = ringer::registrar::RegistrationClient::new(&trusted, Credentials::None)
        .expect("client")
        .upsert(&wanted)
        .await
        .expect("answered over TLS");
    assert_eq!(response.status_code, StatusCode::Ok as i32);

    let untrusted = ringer::registrar::RegistrationClient::new(&api(endpoint), Credentials::None).expect("client");
    let error = untrusted.upsert(&wanted).await.expect_err("unknown CA refused");
    assert!(matches!(error, ClientError::Status { code: Code::Unavailable, .. }), "{error:?}");
}

#[tokio::test]
async fn registrations_expire_without_refresh() {
    let core = start_core(AuthMode::Sandbox, Duration::from_secs(1)).await;
    let client = client(&core, Credentials::None);
    let wanted = registration("+4790000800", RouteType::Loop, None, None);
    let response = client.upsert(&wanted).await.expect("answered");
    assert_eq!(response.time_to_live.map(|d| d.seconds), Some(1));
    assert!(core.registry().lookup(&msisdn("+4790000800")).is_some());
    eventually(Duration::from_secs(3), "registration lapses", || {
        core.registry().lookup(&msisdn("+4790000800")).is_none()
    })
    .await;
}

#[tokio::test]
async fn refresh_keeps_registrations_alive_over_several_ttls_then_shutdown_deletes_them() {
    let ttl = Duration::from_secs(2);
    let core = start_core(AuthMode::Sandbox, ttl).await;
    let numbers = ["+4790000901", "+4790000902", "+4790000903"];
    let registrations = numbers.iter().map(|n| registration(n, RouteType::Loop, Some("11"), None)).collect();
    let registrar = Registrar::start(client(&core, Credentials::None), fast_registrar(), registrations);
    eventually(Duration::from_secs(5), "all registered", || core.registry().snapshot().len() == 3).await;

    // Watch for 3.5 TTLs: the registration must never be missing.
    let watch_until = tokio::time::Instant::now() + ttl.mul_f64(3.5);
    while tokio::time::Instant::now() < watch_until {
        for number in numbers {
            assert!(core.registry().lookup(&msisdn(number)).is_some(), "{number} lapsed");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for number in numbers {
        let record = core.registry().lookup(&msisdn(number)).expect("live");
        assert!(record.upserts >= 4, "{number} refreshed only {} times", record.upserts);
        let status = registrar.status().get(&msisdn(number)).expect("status");
        assert_eq!(status.state, RegistrationState::Registered);
        assert!(status.expires_at.is_some() && status.next_attempt.is_some());
    }

    let report = registrar.shutdown().await;
    assert_eq!((report.deleted, report.failed), (3, 0));
    assert!(core.registry().snapshot().is_empty(), "deleted at shutdown");
}

#[tokio::test]
async fn backoff_registers_once_a_late_core_starts() {
    let addr = free_port();
    let api = api(format!("http://{addr}"));
    let client = ringer::registrar::RegistrationClient::new(&api, Credentials::None).expect("client");
    let number = "+4790001000";
    let registrar = Registrar::start(client, fast_registrar(), vec![registration(number, RouteType::Fork, None, None)]);
    eventually(Duration::from_secs(5), "a few failed attempts", || {
        registrar.status().get(&msisdn(number)).is_some_and(|s| s.consecutive_failures >= 3)
    })
    .await;
    let status = registrar.status().get(&msisdn(number)).expect("status");
    assert_eq!(status.state, RegistrationState::Pending);
    assert!(status.last_result.contains("Unavailable"), "{}", status.last_result);

    let core = ringer::core::start(&core_config(addr, AuthMode::Sandbox, HOUR)).await.expect("core");
    eventually(Duration::from_secs(5), "registered after the core came up", || {
        core.registry().lookup(&msisdn(number)).is_some()
    })
    .await;
    let attempts = core.call_counts().upserts.load(Ordering::Relaxed);
    assert_eq!(attempts, 1, "one upsert once the core is there");
    registrar.shutdown().await;
}

#[tokio::test]
async fn a_core_restart_is_bridged_before_the_registration_lapses() {
    let ttl = Duration::from_secs(6);
    let addr = free_port();
    let core = ringer::core::start(&core_config(addr, AuthMode::Sandbox, ttl)).await.expect("core");
    let number = "+4790001100";
    let registrar = Registrar::start(
        client(&core, Credentials::None),
        fast_registrar(),
        vec![registration(number, RouteType::Loop, Some("11"), Some("21"))],
    );
    eventually(Duration::from_secs(5), "registered", || core.registry().lookup(&msisdn(number)).is_some()).await;
    let registered_at = tokio::time::Instant::now();
    core.shutdown().await;

    // The refresh is due at about half the TTL (3 s): it fails while the core is down.
    eventually(Duration::from_secs(6), "refresh fails while the core is down", || {
        registrar.status().get(&msisdn(number)).is_some_and(|s| s.state == RegistrationState::Retrying)
    })
    .await;
    tokio::time::sleep_until(registered_at + Duration::from_millis(4000)).await;
    let core = ringer::core::start(&core_config(addr, AuthMode::Sandbox, ttl)).await.expect("core restarts");
    eventually(Duration::from_secs(2), "re-registered at the restarted core", || {
        core.registry().lookup(&msisdn(number)).is_some()
    })
    .await;
    assert!(registered_at.elapsed() < ttl, "re-registered {:?} after the last success", registered_at.elapsed());
    // The core stores the upsert before its answer reaches the registrar.
    eventually(Duration::from_secs(2), "the registrar saw the success", || {
        registrar.status().get(&msisdn(number)).is_some_and(|s| s.state == RegistrationState::Registered)
    })
    .await;
    registrar.shutdown().await;
}

#[tokio::test]
async fn refusals_are_not_hammered_and_are_retried_on_reload() {
    let mut config = core_config(loopback_any_port(), AuthMode::Sandbox, HOUR);
    config.subscribers = vec![msisdn("+4790001200")];
    let core = ringer::core::start(&config).await.expect("core");
    let refused = registration("+4790001299", RouteType::Loop, None, None);
    let accepted = registration("+4790001200", RouteType::Loop, None, None);
    let mut registrar =
        Registrar::start(client(&core, Credentials::None), fast_registrar(), vec![refused.clone(), accepted.clone()]);
    eventually(Duration::from_secs(5), "both answered", || {
        registrar.status().all().iter().all(|s| s.state != RegistrationState::Pending)
    })
    .await;
    let status = registrar.status().get(&msisdn("+4790001299")).expect("status");
    assert_eq!(status.state, RegistrationState::Refused);
    assert!(status.last_result.contains("not a subscriber"), "{}", status.last_result);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(core.call_counts().upserts.load(Ordering::Relaxed), 2, "a refusal is not retried at backoff pace");

    // A reload with the same list retries the refused one (only).
    registrar.reload(vec![refused.clone(), accepted.clone()]).await;
    eventually(Duration::from_secs(5), "retried on reload", || core.call_counts().upserts.load(Ordering::Relaxed) == 3)
        .await;

    // A reload that drops a subscriber deletes it; a changed one is re-registered.
    let changed = registration("+4790001200", RouteType::Fallback, None, Some("25"));
    registrar.reload(vec![changed.clone()]).await;
    eventually(Duration::from_secs(5), "changed registration upserted", || {
        core.registry().lookup(&msisdn("+4790001200")).is_some_and(|r| r.registration == changed)
    })
    .await;
    assert!(registrar.status().get(&msisdn("+4790001299")).is_none());
    registrar.reload(vec![]).await;
    assert!(core.registry().snapshot().is_empty(), "removed subscriber deleted");
    registrar.shutdown().await;
}

/// A slow core (each upsert applied 600 ms after it arrives): a subscriber replaced, then
/// removed, while its upsert is under way ends as the last change says. The replacement goes
/// out after the old upsert is answered, and the delete after the new one, so that neither
/// old upsert lands at the core after what followed it.
#[tokio::test]
async fn a_change_while_an_upsert_is_under_way_is_not_overtaken_by_it() {
    let mut config = core_config(loopback_any_port(), AuthMode::Sandbox, HOUR);
    config.upsert_delay = Duration::from_millis(600);
    let core = ringer::core::start(&config).await.expect("core");
    let first = registration("+4790001300", RouteType::Loop, Some("11"), None);
    let mut registrar = Registrar::start(client(&core, Credentials::None), fast_registrar(), vec![first]);
    eventually(Duration::from_secs(5), "the first upsert under way", || {
        core.call_counts().upserts.load(Ordering::Relaxed) == 1
    })
    .await;
    let second = registration("+4790001300", RouteType::Loop, Some("12"), None);
    registrar.reload(vec![second.clone()]).await;
    eventually(Duration::from_secs(5), "the second upsert under way", || {
        core.call_counts().upserts.load(Ordering::Relaxed) == 2
    })
    .await;
    assert!(
        core.registry().lookup(&msisdn("+4790001300")).is_some_and(|r| r.registration.mo_prefix.is_some()),
        "the second upsert went out only once the first was applied"
    );
    // Removed while the second upsert is under way: the delete waits for its answer.
    registrar.reload(vec![]).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(core.registry().snapshot().len(), 0, "the delete was not overtaken by the upsert");
    assert_eq!(core.registry().deletions(&msisdn("+4790001300")), 1);
    registrar.shutdown().await;
}
