//! The store, the same cases against both backends: an SQLite file and a real PostgreSQL
//! started for the test (Debian's postgresql, as the postgres user, on a free port). Under
//! CI=true a missing PostgreSQL fails.

mod common;

use common::postgres::Postgres;
use ringer::types::{Msisdn, Prefix, RouteType};
use store::{
    Backend, CallRecordRow, InstanceRow, LeaseRow, Leases, MessageState, PinState, Reception as StoredReception,
    Replaced, Store, StoreError, SubscriberRow, VoicemailRow,
};

fn row(number: &str, route_type: RouteType, mt: Option<&str>) -> SubscriberRow {
    SubscriberRow {
        phone_number: Msisdn::parse(number).expect("number"),
        route_type,
        mo_prefix: Some(Prefix::parse("11").expect("prefix")),
        mt_prefix: Some(Prefix::parse("22").expect("prefix")),
        mo_behaviour: None,
        mt_behaviour: mt.map(str::to_owned),
    }
}

/// Every case, against the store at `url`.
async fn cases(url: &str, backend: Backend) {
    let store = Store::open(url).await.expect("open");
    assert_eq!(store.backend(), backend);
    // Migrations: all of them the first time, none the second.
    assert_eq!(store.migrate().await.expect("migrate"), Store::known_migrations());
    assert_eq!(store.migrate().await.expect("migrate again"), Vec::<i64>::new());
    assert_eq!(store.subscribers().await.expect("list"), []);
    let start = store.revision().await.expect("revision");

    // Add, read back, change, remove; each change counts the revision up.
    let loop_sub = row("+4799990001", RouteType::Loop, Some(r#"{"action":"answer echo"}"#));
    store.put_subscriber(&loop_sub).await.expect("put");
    assert_eq!(store.subscriber(&loop_sub.phone_number).await.expect("get"), Some(loop_sub.clone()));
    let changed = SubscriberRow { route_type: RouteType::LoopMt, mo_prefix: None, ..loop_sub.clone() };
    store.put_subscriber(&changed).await.expect("put again");
    assert_eq!(store.subscribers().await.expect("list"), std::slice::from_ref(&changed));
    assert_eq!(store.revision().await.expect("revision"), start + 2);

    // Another instance on the same database sees the change through the revision.
    let other = Store::open(url).await.expect("second instance");
    assert_eq!(other.revision().await.expect("revision"), start + 2);
    assert_eq!(other.subscribers().await.expect("list"), std::slice::from_ref(&changed));

    // Replacing the list: written and removed counted; the same list again changes nothing.
    let fork = row("+4799990004", RouteType::Fork, None);
    let ingress = row("+4799990006", RouteType::Ingress, None);
    let list = [fork.clone(), ingress.clone()];
    assert_eq!(store.replace_subscribers(&list).await.expect("replace"), Replaced { written: 2, removed: 1 });
    assert_eq!(store.subscribers().await.expect("list"), list);
    let revision = store.revision().await.expect("revision");
    assert_eq!(store.replace_subscribers(&list).await.expect("replace again"), Replaced::default());
    assert_eq!(store.revision().await.expect("revision"), revision, "nothing changed, no new revision");

    assert!(store.remove_subscriber(&fork.phone_number).await.expect("remove"));
    assert!(!store.remove_subscriber(&fork.phone_number).await.expect("remove again"));
    assert_eq!(other.subscribers().await.expect("list"), [ingress]);

    // Two instances writing at once: every write lands, each counted once.
    let before = store.revision().await.expect("revision");
    let writers = [store.clone(), other.clone()].into_iter().enumerate().map(|(instance, writer)| {
        tokio::spawn(async move {
            for index in 0..20 {
                let number = format!("+47988{instance}{index:05}");
                writer.put_subscriber(&row(&number, RouteType::Loop, None)).await.expect("concurrent put");
            }
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.expect("writer");
    }
    assert_eq!(store.revision().await.expect("revision"), before + 40);
    let written = store.subscribers().await.expect("list");
    assert_eq!(written.iter().filter(|s| s.phone_number.as_str().starts_with("+47988")).count(), 40);

    other.close().await;
    store.close().await;
    lease_cases(url).await;
    call_record_cases(url).await;
    voicemail_cases(url).await;
    mailbox_cases(url).await;
    consent_cases(url).await;
    web_cases(url).await;

    // A row this version cannot read is named, not skipped or panicked on.
    let store = Store::open(url).await.expect("open");
    sqlx_insert_bad_row(url).await;
    let error = store.subscribers().await.expect_err("a bad route type");
    assert!(matches!(&error, StoreError::BadRow { what: "route_type", .. }), "{error}");
    assert!(error.to_string().contains("+4799990009") && error.to_string().contains("teleport"), "{error}");
    store.close().await;
}

fn instance(name: &str, at: i64) -> InstanceRow {
    InstanceRow { instance: name.into(), contact: format!("TLS {name}:5061"), started_at: 0, heartbeat_at: at }
}

fn held(leases: &Leases) -> usize {
    leases.held.as_ref().map_or(0, Vec::len)
}

fn holders(leases: &[LeaseRow]) -> Vec<Option<&str>> {
    leases.iter().map(|lease| lease.holder.as_deref()).collect()
}

/// Registration leases shared by instances: each subscriber refreshed by one live instance,
/// fair shares, a dead instance's leases taken over, hand-over at a stop. Times are the
/// test's own (milliseconds); an instance is dead when its heartbeat is 10 s old.
async fn lease_cases(url: &str) {
    const TIMEOUT: i64 = 10_000;
    let a = Store::open(url).await.expect("a");
    let b = Store::open(url).await.expect("b");
    let subscribers: Vec<SubscriberRow> =
        (0..10).map(|index| row(&format!("+4791000{index:04}"), RouteType::Loop, None)).collect();
    a.replace_subscribers(&subscribers).await.expect("subscribers");
    let t0 = 1_000_000_000;

    // Alone, A takes every lease.
    let leases = a.rebalance_leases(&instance("a", t0), t0 - TIMEOUT, None).await.expect("a alone");
    assert_eq!((leases.live_instances, leases.claimed, held(&leases)), (1, 10, 10));
    // B joins: nothing is free yet; A gives back above its fair share of 5; B takes those.
    let leases = b.rebalance_leases(&instance("b", t0 + 1_000), t0 + 1_000 - TIMEOUT, None).await.expect("b joins");
    assert_eq!((leases.live_instances, held(&leases)), (2, 0));
    let leases = a.rebalance_leases(&instance("a", t0 + 2_000), t0 + 2_000 - TIMEOUT, None).await.expect("a gives");
    assert_eq!((leases.live_instances, leases.released, held(&leases)), (2, 5, 5));
    let leases = b.rebalance_leases(&instance("b", t0 + 3_000), t0 + 3_000 - TIMEOUT, None).await.expect("b takes");
    assert_eq!((leases.claimed, held(&leases)), (5, 5));
    let all = a.leases().await.expect("leases");
    assert_eq!(all.len(), 10);
    assert_eq!(holders(&all).iter().filter(|holder| **holder == Some("a")).count(), 5);
    assert_eq!(holders(&all).iter().filter(|holder| **holder == Some("b")).count(), 5);

    // Nothing changed since: the leases are not read again when the caller knows how many.
    let leases = b.rebalance_leases(&instance("b", t0 + 3_100), t0 + 3_100 - TIMEOUT, Some(5)).await.expect("same");
    assert_eq!((leases.held, leases.claimed, leases.released), (None, 0, 0));
    let leases = b.rebalance_leases(&instance("b", t0 + 3_200), t0 + 3_200 - TIMEOUT, Some(4)).await.expect("other");
    assert_eq!(held(&leases), 5, "a count that differs reads them again");

    // The holder notes until when the core keeps a registration; nobody else can.
    let of_a = all.iter().find(|lease| lease.holder.as_deref() == Some("a")).expect("one of a's").phone_number.clone();
    a.note_registered("a", &[(of_a.clone(), t0 + 3_600_000)]).await.expect("note");
    b.note_registered("b", &[(of_a.clone(), 1)]).await.expect("note by another");
    // Many at once, in one statement per 500: each of b's noted, a's left alone.
    let of_b: Vec<(Msisdn, i64)> = all
        .iter()
        .filter(|lease| lease.holder.as_deref() == Some("b"))
        .map(|lease| (lease.phone_number.clone(), t0 + 7_000))
        .collect();
    let many: Vec<(Msisdn, i64)> = of_b.iter().cloned().chain(std::iter::once((of_a.clone(), 2))).collect();
    b.note_registered("b", &many).await.expect("note many");
    let after = b.leases().await.expect("leases");
    for (number, _) in &of_b {
        let lease = after.iter().find(|lease| &lease.phone_number == number).expect("lease");
        assert_eq!(lease.registered_until, Some(t0 + 7_000), "{lease:?}");
    }
    let noted =
        |leases: &[LeaseRow]| leases.iter().find(|lease| lease.phone_number == of_a).and_then(|l| l.registered_until);
    assert_eq!(noted(&a.leases().await.expect("leases")), Some(t0 + 3_600_000));

    // A goes silent: once its heartbeat is older than the timeout, B frees and takes every
    // lease, the expiry A noted kept for B to refresh in time.
    let later = t0 + 2_000 + TIMEOUT + 1;
    let leases = b.rebalance_leases(&instance("b", later), later - TIMEOUT, None).await.expect("b takes over");
    assert_eq!((leases.freed, leases.live_instances, held(&leases)), (5, 1, 10));
    assert_eq!(noted(leases.held.as_deref().unwrap_or_default()), Some(t0 + 3_600_000));
    assert_eq!(b.instances().await.expect("instances").len(), 1, "the dead instance is gone");

    // A stop hands every lease back and leaves.
    assert_eq!(b.leave("b", later - TIMEOUT, false).await.expect("leave"), (10, 0));
    assert!(holders(&b.leases().await.expect("leases")).iter().all(Option::is_none));
    assert_eq!(b.instances().await.expect("instances"), []);

    // A removed subscriber's lease goes at the next heartbeat.
    b.replace_subscribers(&subscribers[..9]).await.expect("one removed");
    let leases = b.rebalance_leases(&instance("b", later + 1), later + 1 - TIMEOUT, None).await.expect("after removal");
    assert_eq!(held(&leases), 9);
    assert_eq!(b.leases().await.expect("leases").len(), 9);
    b.leave("b", later + 1 - TIMEOUT, false).await.expect("leave");

    // Three instances rebalancing at once, round after round, share the 9 leases 3, 3, 3.
    let stores = [a.clone(), b.clone(), Store::open(url).await.expect("c")];
    for round in 0..4 {
        let at = later + 10 + round;
        let rounds = stores.iter().enumerate().map(|(index, store)| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .rebalance_leases(&instance(&format!("i{index}"), at), at - TIMEOUT, None)
                    .await
                    .expect("rebalance")
            })
        });
        for round in rounds.collect::<Vec<_>>() {
            round.await.expect("task");
        }
    }
    let all = a.leases().await.expect("leases");
    for name in ["i0", "i1", "i2"] {
        assert_eq!(holders(&all).iter().filter(|holder| **holder == Some(name)).count(), 3, "{name}: {all:?}");
    }
    // All three stop at the same moment: leaving and counting the others is one turn each, so
    // exactly one sees none left (it deletes the registrations and clears the noted expiries).
    let at = later + 20;
    let mut leaving = Vec::new();
    for (index, store) in stores.iter().enumerate() {
        let store = store.clone();
        leaving.push(tokio::spawn(async move {
            store.leave(&format!("i{index}"), at - TIMEOUT, true).await.expect("leave")
        }));
    }
    let mut others_seen = Vec::new();
    for leave in leaving {
        others_seen.push(leave.await.expect("task").1);
    }
    others_seen.sort();
    assert_eq!(others_seen, [0, 1, 2], "one after another, the last sees none");
    let all = a.leases().await.expect("leases");
    assert!(all.iter().all(|lease| lease.holder.is_none() && lease.registered_until.is_none()), "{all:?}");
    a.replace_subscribers(&[]).await.expect("clear");
    for store in stores {
        store.close().await;
    }
}

/// Call detail records: written in a batch, read back newest first, by subscriber.
async fn call_record_cases(url: &str) {
    let store = Store::open(url).await.expect("open");
    let record = |id: &str, subscriber: Option<&str>, at: i64| CallRecordRow {
        record_id: id.into(),
        instance: "a".into(),
        call_id: format!("{id}@core"),
        leg3_call_ids: vec![format!("{id}-leg3@tas"), format!("{id}-leg3b@tas")],
        request_uri: "sip:+1014799990001@tas.test;user=phone".into(),
        subscriber: subscriber.map(str::to_owned),
        direction: subscriber.map(|_| "MT".to_owned()),
        route_type: subscriber.map(|_| "LOOP".to_owned()),
        prefix: Some("101".into()),
        caller: Some("+4799990002".into()),
        callee: subscriber.map(str::to_owned),
        actions: vec!["loop".into(), r#"forward +4799990003 (user-busy) \ "quoted""#.into()],
        diversion_reason: Some("user-busy".into()),
        final_status: Some(200),
        invite_at: at,
        answered_at: Some(at + 1_500),
        ended_at: at + 60_000,
        ended_by: Some("callee".into()),
        codec: Some("PCMA".into()),
        reception: Some(StoredReception { packets_received: 2_999, packets_lost: 1, jitter_us: 1_250 }),
    };
    let rows = [
        record("r1", Some("+4799990001"), 1_000),
        record("r2", None, 2_000),
        CallRecordRow {
            answered_at: None,
            final_status: Some(486),
            codec: None,
            reception: None,
            ..record("r3", Some("+4799990001"), 3_000)
        },
    ];
    store.add_call_records(&rows).await.expect("write");
    let newest_first: Vec<CallRecordRow> = rows.iter().rev().cloned().collect();
    assert_eq!(store.call_records(None, 10).await.expect("read"), newest_first);
    assert_eq!(store.call_records(None, 1).await.expect("read one"), newest_first[..1]);
    assert_eq!(
        store.call_records(Some("+4799990001"), 10).await.expect("by subscriber"),
        [newest_first[0].clone(), newest_first[2].clone()]
    );
    // A batch written again (its commit's answer lost) keeps each record once, as first written.
    let again = [record("r4", None, 4_000), record("r1", None, 5_000)];
    store.add_call_records(&again).await.expect("written again");
    let stored = store.call_records(None, 10).await.expect("read");
    assert_eq!(stored.len(), 4);
    assert_eq!(stored.iter().find(|r| r.record_id == "r1").map(|r| r.invite_at), Some(1_000));
    // A batch larger than one statement takes (several INSERTs in the transaction), every row
    // with its own values.
    let many: Vec<CallRecordRow> = (0..250).map(|n| record(&format!("m{n:03}"), None, 10_000 + n)).collect();
    store.add_call_records(&many).await.expect("a large batch");
    let stored = store.call_records(None, 1000).await.expect("read");
    assert_eq!(stored.len(), 254);
    assert!(many.iter().all(|row| stored.contains(row)), "each row as written");
    // Rows travel to the database as one JSON array: integers past a double's precision,
    // text JSON must escape and text beyond ASCII come back as they went.
    let edge = CallRecordRow {
        request_uri: "sip:+4799990001@tas.test;x=\"ü\u{1F4DE}\"\n\t".into(),
        caller: Some("'; DROP TABLE call_records; --".into()),
        reception: Some(StoredReception { packets_received: i64::MAX as u64, packets_lost: 0, jitter_us: 1 }),
        ended_at: 9_007_199_254_740_993,
        ..record("edge", None, 9_007_199_254_740_000)
    };
    store.add_call_records(std::slice::from_ref(&edge)).await.expect("edge values");
    assert_eq!(store.call_records(None, 1).await.expect("read"), [edge]);
    store.close().await;
}

/// A subscriber row with a route type no ringer writes, as a hand edit would leave it.
async fn sqlx_insert_bad_row(url: &str) {
    sqlx::any::install_default_drivers();
    let mut connection = <sqlx::AnyConnection as sqlx::Connection>::connect(url).await.expect("connect");
    sqlx::query("INSERT INTO subscribers (phone_number, route_type, updated_at) VALUES ('+4799990009', 'teleport', 0)")
        .execute(&mut connection)
        .await
        .expect("insert");
}

#[tokio::test]
async fn the_store_on_an_sqlite_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A folder that does not exist yet is created.
    let url = format!("sqlite://{}/state/ringer.db", dir.path().display());
    cases(&url, Backend::Sqlite).await;
    assert!(dir.path().join("state/ringer.db").exists());
}

#[tokio::test]
async fn the_store_on_postgresql() {
    let Some(postgres) = Postgres::start() else { return };
    cases(&postgres.url, Backend::Postgres).await;
}

#[tokio::test]
async fn an_unreachable_database_is_an_error_that_names_it_without_the_password() {
    let port = common::free_port().port();
    let url = format!("postgres://ringer:s3cret@127.0.0.1:{port}/ringer");
    let error = Store::open(&url).await.expect_err("nothing listens there");
    let text = error.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")) && !text.contains("s3cret"), "{text}");
}

/// Voicemail messages: metadata and audio in one row, byte for byte; a message written twice
/// kept once; listed by subscriber; deleted.
async fn voicemail_cases(url: &str) {
    let store = Store::open(url).await.expect("open");
    let message = |id: &str, subscriber: &str, partial: bool| VoicemailRow {
        id: id.into(),
        subscriber: subscriber.into(),
        caller: Some("+4711111111".into()),
        callee: Some(subscriber.into()),
        direction: Some("MT".into()),
        recorded_at: "2026-12-01T04:00:00Z".into(),
        duration_ms: 2_480,
        codec: "PCMA".into(),
        partial,
        instance: "a".into(),
        state: MessageState::New,
    };
    // Every byte value, as a WAV holds them.
    let audio: Vec<u8> = (0..=255u8).cycle().take(40_000).collect();
    let first = message("20261201T040000-aaaa", "+4799990001", false);
    let second = message("20261201T040100-bbbb", "+4799990002", true);
    assert!(store.add_voicemail(&first, &audio).await.expect("add"));
    assert!(store.add_voicemail(&second, &audio[..100]).await.expect("add"));
    assert!(!store.add_voicemail(&first, b"other").await.expect("again"), "a second write keeps the first");
    assert_eq!(store.voicemails(None).await.expect("list"), [first.clone(), second.clone()]);
    assert_eq!(store.voicemails(Some("+4799990002")).await.expect("list one"), std::slice::from_ref(&second));
    assert_eq!(store.voicemail(&first.id).await.expect("get"), Some((first.clone(), audio.clone())));
    assert_eq!(store.voicemail("nothing").await.expect("get none"), None);
    assert!(store.delete_voicemail(&first.id).await.expect("delete"));
    assert!(!store.delete_voicemail(&first.id).await.expect("delete again"));
    assert_eq!(store.voicemails(None).await.expect("list"), [second]);
    store.close().await;
}

/// What a mailbox keeps: message states (new, heard, saved, deleted) and their retention,
/// greetings, the PIN's failed logins and lockout, API tokens by hash.
/// Consents: stored, followed by change time, claimed for a refresh by one of two instances
/// only, and withdrawn with the tokens wiped.
async fn consent_cases(url: &str) {
    use ringer::store::{ConsentRow, CONSENT_ACTIVE, CONSENT_REVOKED};
    let store = Store::open(url).await.expect("open");
    let other = Store::open(url).await.expect("a second instance");
    let now = ringer::store::now_millis();
    let consent = |subscriber: &str, refresh_at_ms: i64| ConsentRow {
        subscriber: subscriber.into(),
        access_token: "sealed-access".into(),
        refresh_token: "sealed-refresh".into(),
        scope: "phone offline_access call.routing:write".into(),
        expires_ms: now + 3_600_000,
        refresh_at_ms,
        state: CONSENT_ACTIVE.into(),
        note: "signed up".into(),
        updated_ms: 0,
    };
    store.put_consent(&consent("+4799990081", now - 1000)).await.expect("due");
    store.put_consent(&consent("+4799990082", now + 600_000)).await.expect("not due");
    let all = store.consents().await.expect("consents");
    assert_eq!(all.iter().map(|c| c.subscriber.as_str()).collect::<Vec<_>>(), ["+4799990081", "+4799990082"]);
    assert!(all.iter().all(|c| c.updated_ms >= now && c.access_token == "sealed-access"));
    let newest = all.iter().map(|c| c.updated_ms).max().expect("some");
    assert!(store.consents_changed_since(newest).await.expect("changes").is_empty());

    // Two instances claim at once: one wins, the other gets nothing until the hold ends.
    let (mine, theirs) =
        tokio::join!(store.claim_due_consents(now, 20_000, 10), other.claim_due_consents(now, 20_000, 10));
    let (mine, theirs) = (mine.expect("claim"), theirs.expect("claim"));
    assert_eq!(mine.len() + theirs.len(), 1, "one claim: {mine:?} {theirs:?}");
    assert_eq!(mine.iter().chain(&theirs).next().map(|c| c.subscriber.as_str()), Some("+4799990081"));
    assert!(store.claim_due_consents(now + 1000, 20_000, 10).await.expect("claim").is_empty(), "held");
    assert_eq!(store.claim_due_consents(now + 21_000, 20_000, 10).await.expect("claim").len(), 1, "hold over");
    // A refresh stored ends the claim; refreshed, it is not due.
    store.put_consent(&consent("+4799990081", now + 600_000)).await.expect("refreshed");
    assert!(store.claim_due_consents(now + 1000, 20_000, 10).await.expect("claim").is_empty());

    store.revoke_consent("+4799990081", "consent withdrawn").await.expect("revoke");
    let revoked = store.consents().await.expect("consents").into_iter().find(|c| c.subscriber == "+4799990081");
    let revoked = revoked.expect("kept for the status view");
    assert_eq!(
        (revoked.state.as_str(), revoked.access_token.as_str(), revoked.refresh_token.as_str()),
        (CONSENT_REVOKED, "", "")
    );
    assert!(store
        .claim_due_consents(now + 10_000_000, 20_000, 10)
        .await
        .expect("claim")
        .iter()
        .all(|c| c.subscriber != "+4799990081"));
    other.close().await;
    store.close().await;
}

/// Self-care sessions (by hash, until they expire) and one-time PINs.
async fn web_cases(url: &str) {
    let store = Store::open(url).await.expect("open");
    let now = ringer::store::now_millis();
    store.put_session("hash-a", "+4799990091", now + 60_000).await.expect("session");
    store.put_session("hash-old", "+4799990091", now - 1).await.expect("expired session");
    assert_eq!(store.session("hash-a", now).await.expect("read").as_deref(), Some("+4799990091"));
    assert_eq!(store.session("hash-old", now).await.expect("read"), None, "expired");
    assert_eq!(store.session("hash-b", now).await.expect("read"), None, "unknown");
    store.end_session("hash-a", now).await.expect("end");
    assert_eq!(store.session("hash-a", now).await.expect("read"), None, "ended");
    store.put_session("hash-c", "+4799990091", now + 60_000).await.expect("session");
    store.put_session("hash-d", "+4799990091", now + 60_000).await.expect("session");
    store.end_other_sessions("+4799990091", "hash-d").await.expect("end others");
    assert_eq!(store.session("hash-c", now).await.expect("read"), None, "another session ended");
    assert!(store.session("hash-d", now).await.expect("read").is_some(), "this one kept");

    assert_eq!(store.login_pin("+4799990092").await.expect("read"), None);
    store.put_login_pin("+4799990092", "pin-hash-1", now + 600_000).await.expect("PIN");
    store.put_login_pin("+4799990092", "pin-hash-2", now + 600_000).await.expect("a new PIN replaces it");
    let pin = store.login_pin("+4799990092").await.expect("read").expect("kept");
    assert_eq!((pin.pin_hash.as_str(), pin.expires_ms), ("pin-hash-2", now + 600_000));
    assert!(pin.sent_ms >= now);
    let (first, second) = tokio::join!(
        store.spend_login_pin("+4799990092", "pin-hash-2"),
        store.spend_login_pin("+4799990092", "pin-hash-2")
    );
    assert_eq!([first.expect("spend"), second.expect("spend")].iter().filter(|won| **won).count(), 1, "one try");
    let spent = store.login_pin("+4799990092").await.expect("read").expect("kept, for when it was sent");
    assert_eq!((spent.pin_hash.as_str(), spent.sent_ms), ("", pin.sent_ms));
    store.delete_login_pin("+4799990092").await.expect("delete");
    assert_eq!(store.login_pin("+4799990092").await.expect("read"), None);
    store.close().await;
}

async fn mailbox_cases(url: &str) {
    let store = Store::open(url).await.expect("open");
    let owner = "+4799990077";
    let message = |id: &str| VoicemailRow {
        id: id.into(),
        subscriber: owner.into(),
        caller: None,
        callee: None,
        direction: None,
        recorded_at: "2026-12-02T01:00:00Z".into(),
        duration_ms: 1_000,
        codec: "PCMU".into(),
        partial: false,
        instance: "a".into(),
        state: MessageState::New,
    };
    for id in ["m1", "m2", "m3"] {
        assert!(store.add_voicemail(&message(id), b"RIFF").await.expect("add"));
    }
    assert_eq!(store.count_voicemails(owner).await.expect("count"), 3);
    assert!(store.set_voicemail_state(owner, "m1", MessageState::Saved).await.expect("save"));
    assert!(store.set_voicemail_state(owner, "m2", MessageState::Deleted).await.expect("delete"));
    assert!(!store.set_voicemail_state("+4799990078", "m3", MessageState::Heard).await.expect("not theirs"));
    assert!(!store.set_voicemail_state(owner, "m2", MessageState::Saved).await.expect("deleted stays deleted"));
    let listed = store.voicemails(Some(owner)).await.expect("list");
    let states: Vec<_> = listed.iter().map(|m| (m.id.as_str(), m.state)).collect();
    assert_eq!(states, [("m1", MessageState::Saved), ("m3", MessageState::New)], "deleted ones are not listed");
    assert_eq!(store.voicemail("m2").await.expect("get"), None);
    assert!(!store.mark_voicemail_heard(owner, "m1").await.expect("saved"), "a saved message stays saved");
    assert!(store.mark_voicemail_heard(owner, "m3").await.expect("new"), "a new one is heard");
    assert!(!store.mark_voicemail_heard(owner, "m3").await.expect("again"));
    assert!(store.set_voicemail_state(owner, "m3", MessageState::New).await.expect("back to new"));
    assert_eq!(store.count_voicemails(owner).await.expect("count"), 2);
    // Retention: new messages stay whatever their age; kept and deleted ones go by their own limits.
    let now = store::now_millis();
    assert_eq!(store.purge_voicemails(now - 60_000, now - 60_000).await.expect("purge"), 0, "all too young");
    assert_eq!(store.purge_voicemails(now - 60_000, now + 1).await.expect("purge"), 1, "the deleted one");
    assert_eq!(store.purge_voicemails(now + 1, now + 1).await.expect("purge"), 1, "the saved one, not the new");
    assert_eq!(store.voicemails(Some(owner)).await.expect("list").len(), 1);

    assert_eq!(store.greeting(owner, "busy").await.expect("none"), None);
    store.put_greeting(owner, "busy", b"first").await.expect("put");
    store.put_greeting(owner, "busy", b"second").await.expect("replace");
    store.put_greeting(owner, "name", b"name").await.expect("put");
    assert_eq!(store.greeting(owner, "busy").await.expect("get"), Some(b"second".to_vec()));
    assert_eq!(store.greetings(owner).await.expect("kinds"), ["busy", "name"]);
    assert!(store.delete_greeting(owner, "busy").await.expect("delete"));
    assert!(!store.delete_greeting(owner, "busy").await.expect("again"));

    assert_eq!(store.pin_state(owner).await.expect("state"), PinState::default());
    store.set_pin_hash(owner, "hash").await.expect("set");
    // Attempts are counted before the PIN is checked; a locked mailbox counts none.
    assert_eq!(store.begin_login("+4799990079", now).await.expect("no row"), None, "no PIN, no attempt");
    assert_eq!(store.begin_login(owner, now).await.expect("one"), Some(1));
    assert_eq!(store.begin_login(owner, now).await.expect("two"), Some(2));
    store.clear_failed_logins(owner).await.expect("a good PIN clears them");
    assert_eq!(store.begin_login(owner, now).await.expect("again one"), Some(1));
    let lock_until = now + 900_000;
    store.lock_mailbox(owner, lock_until).await.expect("lock");
    assert_eq!(
        store.pin_state(owner).await.expect("state"),
        PinState { pin_hash: Some("hash".into()), failed_logins: 0, locked_until_ms: lock_until }
    );
    assert_eq!(store.begin_login(owner, now).await.expect("locked"), None, "locked: no attempt");
    assert_eq!(store.begin_login(owner, lock_until).await.expect("after"), Some(1), "the lock over at its time");
    store.set_pin_hash(owner, "other").await.expect("a new PIN");
    assert_eq!(store.pin_state(owner).await.expect("state").failed_logins, 0, "a new PIN starts afresh");

    store.add_token("abcdef01", Some(owner), "phone app").await.expect("token");
    store.add_token("abff0000", None, "admin").await.expect("admin");
    assert!(store.add_token("abcdef01", None, "again").await.is_err(), "a hash is stored once");
    assert_eq!(store.token("abcdef01").await.expect("get").map(|t| t.mailbox), Some(Some(owner.to_owned())));
    assert_eq!(store.tokens().await.expect("all").len(), 2);
    assert_eq!(store.revoke_tokens("").await.expect("empty"), 0, "an empty prefix revokes nothing");
    assert_eq!(store.revoke_tokens("%").await.expect("wildcard"), 0);
    assert_eq!(store.revoke_tokens("abc").await.expect("revoke"), 1);
    assert_eq!(store.token("abcdef01").await.expect("gone"), None);
    store.close().await;
}
