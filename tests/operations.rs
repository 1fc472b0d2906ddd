//! The operations endpoints of `ringer serve` (a process, on PostgreSQL): `/metrics` scraped
//! before and after calls SIPp (Debian's `sip-tester`) places, the exposition parsed and the
//! counters (calls, SIP messages in and out) checked to have moved by the calls made; `/healthz`; `/readyz` unready while
//! PostgreSQL is stopped and ready again once it is back.

mod common;

use std::time::{Duration, Instant};

use common::postgres::Postgres;
use common::process::{ringer, Server};
use common::scrape::{get, sample, until_status};
use common::sipp::{client, tool};
use common::*;
use ringer::config::core::AuthMode;

const SUBSCRIBER: &str = "+4799990501";

#[tokio::test]
async fn metrics_move_with_calls_and_readiness_follows_the_database() {
    let Some(sipp) = tool(&["sipp"], "sip-tester") else { return };
    let Some(postgres) = Postgres::start() else { return };
    let core = start_core(AuthMode::Sandbox, Duration::from_secs(60)).await;
    let migrated = ringer(&["db", "migrate", "--database", &postgres.url], &[]).await;
    assert_eq!(migrated.code, Some(0), "{}", migrated.stderr);
    let dir = tempfile::tempdir().expect("tempdir");
    let records = dir.path().join("calls.jsonl");
    let http = free_port();
    let sip = free_port();
    let config = format!(
        "[store]\nurl = \"{}\"\n[tas]\nsip_uri = \"sips:tas.example.com:5061\"\n[core]\nendpoint = \"{}\"\n\
         [registrar]\ninitial_backoff = \"100ms\"\n[http]\nlisten = \"{http}\"\n\
         [sip]\ntcp_listen = \"{sip}\"\n[voicemail]\ndir = \"{}\"\n[call_records]\nfile = \"{}\"\n\
         [[subscriber]]\nphone_number = \"{SUBSCRIBER}\"\nroute_type = \"loop-mt\"\nmt_prefix = \"22\"\nmt = \"reject 486\"\n",
        postgres.url,
        core.endpoint(),
        dir.path().join("spool").display(),
        records.display(),
    );
    let path = dir.path().join("ringer.toml");
    std::fs::write(&path, config).expect("write config");
    let server = Server::spawn(&["serve", "--config", path.to_str().expect("utf-8")], &[]);
    let base = format!("http://{http}");
    until_status(&format!("{base}/healthz"), 200, "alive").await;

    let registered = [("state", "registered")];
    let deadline = Instant::now() + Duration::from_secs(15);
    let before = loop {
        let (status, exposition) = get(&format!("{base}/metrics")).await;
        assert_eq!(status, 200, "{exposition}");
        if sample(&exposition, "ringer_registrations", &registered) == 1.0 {
            break exposition;
        }
        assert!(Instant::now() < deadline, "the subscriber registered: {exposition}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let rejected = [("direction", "mt"), ("route_type", "loop-mt"), ("action", "reject"), ("outcome", "4xx")];
    let (ok, failed, screen) =
        client(&sipp, "uac_reject.xml", "t1", &[], &format!("+22{}", &SUBSCRIBER[1..]), sip, 5).await;
    assert_eq!((ok, failed), (5, 0), "{screen}");
    let (_, after) = get(&format!("{base}/metrics")).await;
    assert_eq!(
        sample(&after, "ringer_calls_total", &rejected) - sample(&before, "ringer_calls_total", &rejected),
        5.0,
        "five calls rejected, counted once each:\n{after}"
    );
    assert_eq!(sample(&after, "ringer_calls_total", &[("outcome", "2xx")]), 0.0, "none answered");
    // On the wire: five INVITEs and their ACKs in, five 486s out.
    let moved = |name: &str, labels: &[(&str, &str)]| sample(&after, name, labels) - sample(&before, name, labels);
    assert_eq!(moved("ringer_sip_requests_total", &[("direction", "in"), ("method", "INVITE")]), 5.0, "{after}");
    assert_eq!(moved("ringer_sip_requests_total", &[("direction", "in"), ("method", "ACK")]), 5.0, "{after}");
    assert_eq!(moved("ringer_sip_responses_total", &[("direction", "out"), ("class", "4xx")]), 5.0, "{after}");
    assert_eq!(sample(&after, "ringer_sip_dialogs", &[]), 0.0, "no dialog left");
    assert_eq!(sample(&after, "ringer_registrations", &registered), 1.0);
    // The registration's upsert to the core, with its latency.
    let upserts = [("method", "UpsertRegistration"), ("code", "OK")];
    assert!(sample(&after, "ringer_core_requests_total", &upserts) >= 1.0, "{after}");
    assert!(sample(&after, "ringer_core_request_seconds_count", &[("method", "UpsertRegistration")]) >= 1.0, "{after}");
    assert!(after.contains("# TYPE ringer_calls_total counter"), "typed as a counter:\n{after}");

    // The five calls' records: in the file, one JSON line each, and in the database.
    let lines = |path: &std::path::Path| -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines().map(|line| serde_json::from_str(line).expect("a JSON object per line")).collect()
    };
    assert!(poll_until(Duration::from_secs(10), || lines(&records).len() == 5).await, "{:?}", lines(&records));
    for record in lines(&records) {
        let expected = serde_json::json!({
            "subscriber": SUBSCRIBER, "direction": "MT", "route_type": "loop-mt", "prefix": "22",
            "callee": SUBSCRIBER, "actions": ["reject 486 Busy Here"], "final_status": 486, "answered_at": null,
            "ended_by": "tas", "codec": null, "media": null, "leg3_call_ids": [],
        });
        for (key, value) in expected.as_object().expect("fields") {
            assert_eq!(&record[key], value, "{key} in {record}");
        }
    }
    let store = ringer::store::Store::open(&postgres.url).await.expect("database");
    // Written off the call path, in batches: there within moments.
    let deadline = Instant::now() + Duration::from_secs(10);
    let stored = loop {
        let stored = store.call_records(Some(SUBSCRIBER), 10).await.expect("records");
        if stored.len() >= 5 || Instant::now() >= deadline {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(stored.len(), 5, "{stored:?}");
    assert!(stored.iter().all(|row| row.final_status == Some(486) && row.ended_by.as_deref() == Some("tas")));
    let mut in_file: Vec<String> =
        lines(&records).iter().map(|record| record["call_id"].as_str().unwrap_or_default().to_owned()).collect();
    let mut in_store: Vec<String> = stored.iter().map(|row| row.call_id.clone()).collect();
    in_file.sort();
    in_store.sort();
    assert_eq!(in_file, in_store, "the same calls in both");
    store.close().await;

    // logrotate moves the file away and sends SIGHUP: the next call goes to a new file.
    let rotated = dir.path().join("calls.jsonl.1");
    std::fs::rename(&records, &rotated).expect("rotate");
    server.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        poll_until(Duration::from_secs(10), || records.exists()).await,
        "SIGHUP reopened the records file by its name"
    );
    let (ok, failed, screen) =
        client(&sipp, "uac_reject.xml", "t2", &[], &format!("+22{}", &SUBSCRIBER[1..]), sip, 1).await;
    assert_eq!((ok, failed), (1, 0), "{screen}");
    assert!(poll_until(Duration::from_secs(10), || lines(&records).len() == 1).await, "{:?}", lines(&records));
    assert_eq!(lines(&rotated).len(), 5, "the rotated file keeps its five");

    let ready = until_status(&format!("{base}/readyz"), 200, "ready").await;
    assert!(ready.contains("\"store\":\"ok\""), "{ready}");
    postgres.stop();
    let unready = until_status(&format!("{base}/readyz"), 503, "unready without the database").await;
    assert!(unready.contains("\"ready\":false") && !unready.contains("\"store\":\"ok\""), "{unready}");
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200, "alive all the same");
    postgres.restart();
    until_status(&format!("{base}/readyz"), 200, "ready again with the database back").await;
}
