//! Several `ringer serve` processes sharing one PostgreSQL: each subscriber's registration is
//! refreshed by exactly one live instance (a lease with heartbeats); kill -9 of one leaves its
//! subscribers to the survivors before any registration lapses; a rolling restart and the
//! stops of all but the last delete nothing; the last one deletes every registration.
//! Registrations live 4 s at the emulated core here, so a lapse would show within the test.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::postgres::Postgres;
use common::process::*;
use common::*;
use nix::sys::signal::Signal;
use ringer::config::core::AuthMode;
use ringer::core::CoreHandle;

const TTL: Duration = Duration::from_secs(4);
const NUMBERS: [&str; 6] = ["+4799990101", "+4799990102", "+4799990103", "+4799990104", "+4799990105", "+4799990106"];

fn instance_config(database: &str, endpoint: &str, name: &str) -> String {
    format!(
        "[store]\nurl = \"{database}\"\npoll_interval = \"200ms\"\nheartbeat_interval = \"250ms\"\n\
         lease_timeout = \"1s\"\ninstance = \"{name}\"\n{}",
        serve_config(endpoint, free_port(), &[])
    )
}

fn start_instance(dir: &std::path::Path, database: &str, core: &CoreHandle, name: &str) -> Server {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, instance_config(database, &core.endpoint(), name)).expect("write config");
    Server::spawn(&["serve", "--config", path.to_str().expect("utf-8")], &[("RINGER_TEST_TOKEN", CLIENT_TOKEN)])
}

/// Who holds each lease, read from the database as an operator would.
async fn holders(database: &str) -> HashMap<String, usize> {
    let store = ringer::store::Store::open_existing(database).await.expect("open");
    let mut counts = HashMap::new();
    for lease in store.leases().await.expect("leases") {
        *counts.entry(lease.holder.unwrap_or_default()).or_insert(0) += 1;
    }
    store.close().await;
    counts
}

/// Watches the core's registrations: every subscriber must stay registered without a break
/// (its upsert count only grows: a lapse would start it again at 1) and none be deleted.
struct Watch {
    upserts: HashMap<String, u64>,
}

impl Watch {
    fn new() -> Self {
        Self { upserts: HashMap::new() }
    }

    fn check(&mut self, core: &CoreHandle, when: &str) {
        let snapshot = core.registry().snapshot();
        for number in NUMBERS {
            let record = snapshot.iter().find(|record| record.msisdn.as_str() == number);
            let record = record.unwrap_or_else(|| panic!("{when}: {number} is not registered at the core"));
            let seen = self.upserts.entry(number.to_owned()).or_insert(0);
            assert!(record.upserts >= *seen, "{when}: {number}'s registration lapsed and was made again");
            *seen = record.upserts;
            assert_eq!(core.registry().deletions(&record.msisdn), 0, "{when}: {number}'s registration was deleted");
        }
    }

    /// Checks every 100 ms for `duration`.
    async fn hold(&mut self, core: &CoreHandle, duration: Duration, when: &str) {
        let end = Instant::now() + duration;
        while Instant::now() < end {
            self.check(core, when);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// SIGTERM to instance `name` while others run: it exits cleanly, handing its registrations over.
async fn stop_handing_over(server: Server, name: &str) {
    server.signal(Signal::SIGTERM);
    let (code, stdout, stderr) = server.wait().await;
    assert_eq!(code, Some(0), "{name}: {stderr}");
    assert!(stdout.contains("handed over, none deleted"), "{name} handed its registrations over:\n{stdout}");
}

#[tokio::test]
async fn three_instances_share_the_registrations_and_survive_kill_and_rolling_restart() {
    let Some(postgres) = Postgres::start() else { return };
    let database = postgres.url.clone();
    let migrated = ringer(&["db", "migrate", "--database", &database], &[]).await;
    assert_eq!(migrated.code, Some(0), "{}", migrated.stderr);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("subscribers.toml");
    let list: String = NUMBERS
        .iter()
        .map(|number| {
            format!("[[subscriber]]\nphone_number = \"{number}\"\nroute_type = \"loop\"\nmo_prefix = \"11\"\n")
        })
        .collect();
    std::fs::write(&file, list).expect("write");
    let import = ringer(&["subscribers", "import", file.to_str().expect("utf-8"), "--database", &database], &[]).await;
    assert_eq!(import.code, Some(0), "{}", import.stderr);

    let core = common::start_core(AuthMode::Required, TTL).await;
    let mut servers: HashMap<&str, Server> = HashMap::new();
    for name in ["a", "b", "c"] {
        servers.insert(name, start_instance(dir.path(), &database, &core, name));
    }
    eventually(Duration::from_secs(20), "every subscriber registered", || core.registry().snapshot().len() == 6).await;
    let mut shares = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        shares = holders(&database).await;
        if ["a", "b", "c"].iter().all(|name| shares.get(*name) == Some(&2)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(["a", "b", "c"].iter().all(|name| shares.get(*name) == Some(&2)), "two leases each: {shares:?}");
    let mut watch = Watch::new();
    // Two lifetimes of every registration: each refreshed by its holder alone.
    watch.hold(&core, TTL * 2, "three instances").await;

    // kill -9 of A: B and C take its leases after the lease timeout and refresh its
    // subscribers before their registrations lapse; nothing is deleted.
    let a = servers.remove("a").expect("a");
    a.signal(Signal::SIGKILL);
    let (_, a_out, a_err) = a.wait().await;
    watch.hold(&core, TTL * 2, "after kill -9 of a").await;
    let shares = holders(&database).await;
    assert_eq!(shares.get("a"), None, "a's leases taken over: {shares:?}\n{a_out}\n{a_err}");
    assert_eq!(shares.get("b").copied().unwrap_or(0) + shares.get("c").copied().unwrap_or(0), 6, "{shares:?}");

    // Rolling restart: A comes back, then B and C are stopped and started one at a time.
    servers.insert("a", start_instance(dir.path(), &database, &core, "a"));
    watch.hold(&core, Duration::from_secs(2), "a back").await;
    for name in ["b", "c"] {
        stop_handing_over(servers.remove(name).expect("running"), name).await;
        watch.hold(&core, Duration::from_secs(2), &format!("{name} stopped")).await;
        servers.insert(name, start_instance(dir.path(), &database, &core, name));
        watch.hold(&core, Duration::from_secs(2), &format!("{name} restarted")).await;
    }
    watch.hold(&core, TTL, "after the rolling restart").await;

    // Stopping all: the first two hand over, the last deletes every registration.
    for name in ["a", "b"] {
        stop_handing_over(servers.remove(name).expect("running"), name).await;
        watch.hold(&core, Duration::from_secs(1), &format!("{name} stopped for good")).await;
    }
    let last = servers.remove("c").expect("running");
    last.signal(Signal::SIGTERM);
    let (code, stdout, stderr) = last.wait().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("6 registrations deleted"), "the last instance deletes them all:\n{stdout}");
    assert_eq!(core.registry().snapshot().len(), 0);
    assert_eq!(holders(&database).await.get("").copied(), Some(6), "every lease free again");
}

fn voicemail_instance(dir: &std::path::Path, database: &str, name: &str, sip_port: u16) -> std::path::PathBuf {
    let config = format!(
        "[store]\nurl = \"{database}\"\npoll_interval = \"200ms\"\nheartbeat_interval = \"250ms\"\nlease_timeout = \"1s\"\n\
         instance = \"{name}\"\n[tas]\nsip_uri = \"sips:tas.example.com:5061\"\n[core]\nendpoint = \"http://127.0.0.1:1\"\n\
         [registrar]\ninitial_backoff = \"60s\"\n[sip]\ntcp_listen = \"127.0.0.1:{sip_port}\"\nmedia_address = \"127.0.0.1\"\n\
         [media]\nbind_address = \"127.0.0.1\"\n[voicemail]\ndir = \"{}\"\n",
        dir.join(format!("spool-{name}")).display()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).expect("write config");
    path
}

async fn listening(port: u16) -> std::net::SocketAddr {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "ringer did not listen on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    addr
}

/// A voicemail left through instance A is listed, played and deleted through instance B's
/// config (the database both share), and the call is recorded once, by A, with its times.
#[tokio::test]
async fn a_message_left_through_one_instance_is_played_through_another_and_the_call_recorded() {
    let Some(postgres) = Postgres::start() else { return };
    let database = postgres.url.clone();
    let migrated = ringer(&["db", "migrate", "--database", &database], &[]).await;
    assert_eq!(migrated.code, Some(0), "{}", migrated.stderr);
    let add = ringer(
        &[
            "subscribers",
            "add",
            "+4799990201",
            "--route-type",
            "loop-mt",
            "--mt-prefix",
            "22",
            "--mt",
            "answer voicemail",
            "--database",
            &database,
        ],
        &[],
    )
    .await;
    assert_eq!(add.code, Some(0), "{}", add.stderr);
    let dir = tempfile::tempdir().expect("tempdir");
    let (port_a, port_b) = (free_port().port(), free_port().port());
    let config_a = voicemail_instance(dir.path(), &database, "a", port_a);
    let config_b = voicemail_instance(dir.path(), &database, "b", port_b);
    let a = Server::spawn(&["serve", "--config", config_a.to_str().expect("utf-8")], &[]);
    let b = Server::spawn(&["serve", "--config", config_b.to_str().expect("utf-8")], &[]);
    let tas_a = listening(port_a).await;
    listening(port_b).await;

    let call = common::sip::VoicemailCall::start(tas_a, "22", "+4799990201", "vm-across").await;
    call.speak(100).await;
    call.hang_up("+4799990201").await;

    // Listed through B once A has moved it from its spool into the database.
    let config_b = config_b.to_str().expect("utf-8");
    let deadline = Instant::now() + Duration::from_secs(15);
    let listed = loop {
        let list = ringer(&["voicemail", "list", "--config", config_b], &[]).await;
        assert_eq!(list.code, Some(0), "{}", list.stderr);
        if list.stdout.contains("1 message(s) in the database") {
            break list.stdout;
        }
        assert!(Instant::now() < deadline, "the message never reached the database: {}", list.stdout);
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let row = listed.lines().nth(1).expect("a row");
    assert!(row.contains("+4799990201") && row.contains("+4711111111") && row.trim_end().ends_with("no"), "{row}");
    let id = row.split_whitespace().next().expect("id");
    let copy = dir.path().join("played.wav");
    let play =
        ringer(&["voicemail", "play", id, "--config", config_b, "--out", copy.to_str().expect("utf-8")], &[]).await;
    assert_eq!(play.code, Some(0), "{}", play.stderr);
    let samples = hound::WavReader::open(&copy).expect("a WAV").len();
    assert!(samples >= 8000, "the message holds the speech sent: {samples} samples");
    let delete = ringer(&["voicemail", "delete", id, "--config", config_b], &[]).await;
    assert_eq!(delete.code, Some(0), "{}", delete.stderr);
    let list = ringer(&["voicemail", "list", "--config", config_a.to_str().expect("utf-8")], &[]).await;
    assert!(list.stdout.contains("0 message(s) in the database"), "deleted for every instance: {}", list.stdout);

    // The call detail record, written by A when the call ended.
    let store = ringer::store::Store::open_existing(&database).await.expect("open");
    let deadline = Instant::now() + Duration::from_secs(10);
    let records = loop {
        let records = store.call_records(Some("+4799990201"), 10).await.expect("records");
        if !records.is_empty() || Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(
        (record.instance.as_str(), record.call_id.as_str(), record.direction.as_deref(), record.prefix.as_deref()),
        ("a", "vm-across", Some("MT"), Some("22"))
    );
    assert_eq!((record.final_status, record.caller.as_deref()), (Some(200), Some("+4711111111")));
    assert_eq!(record.actions, ["answer voicemail"]);
    let answered = record.answered_at.expect("answered");
    assert!(record.invite_at <= answered && answered + 2_000 <= record.ended_at, "{record:?}");
    store.close().await;
    for server in [a, b] {
        server.signal(Signal::SIGTERM);
        let (code, _, stderr) = server.wait().await;
        assert_eq!(code, Some(0), "{stderr}");
    }
}

/// Kamailio's dispatcher in front of three instances, as an operator's load balancer: calls
/// spread over all three (each instance records the calls it handled); after kill -9 of one
/// and the dispatcher's probing, every new call is served by the other two.
#[tokio::test]
async fn behind_kamailios_dispatcher_calls_spread_and_go_on_after_an_instance_is_killed() {
    let Some(postgres) = Postgres::start() else { return };
    let Some(sipp) = common::sipp::tool(&["sipp"], "sip-tester") else { return };
    let database = postgres.url.clone();
    let migrated = ringer(&["db", "migrate", "--database", &database], &[]).await;
    assert_eq!(migrated.code, Some(0), "{}", migrated.stderr);
    let number = "+4799990301";
    let add = ringer(
        &["subscribers", "add", number, "--route-type", "loop-mt", "--mt-prefix", "22", "--mt", "reject 486"],
        &[("RINGER_DATABASE_URL", &database)],
    )
    .await;
    assert_eq!(add.code, Some(0), "{}", add.stderr);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut servers = HashMap::new();
    let mut ports = Vec::new();
    for name in ["a", "b", "c"] {
        let port = free_port().port();
        let config = voicemail_instance(dir.path(), &database, name, port);
        servers.insert(name, Server::spawn(&["serve", "--config", config.to_str().expect("utf-8")], &[]));
        listening(port).await;
        ports.push(port);
    }
    let access = free_port();
    let Some(kamailio) = common::kamailio::Kamailio::start_dispatcher(access.port(), &ports).await else { return };
    let service = "+224799990301";
    let (ok, failed, screen) = common::sipp::client(&sipp, "uac_reject.xml", "u1", &[], service, access, 30).await;
    assert_eq!((ok, failed), (30, 0), "{screen}\n{}", kamailio.log());

    let store = ringer::store::Store::open_existing(&database).await.expect("open");
    let by_instance = |records: &[ringer::store::CallRecordRow], after: i64| {
        let mut counts = HashMap::<String, usize>::new();
        for record in records.iter().filter(|record| record.invite_at >= after) {
            *counts.entry(record.instance.clone()).or_default() += 1;
        }
        counts
    };
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while records.len() < 30 && Instant::now() < deadline {
        records = store.call_records(Some(number), 1000).await.expect("records");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let spread = by_instance(&records, 0);
    for name in ["a", "b", "c"] {
        assert!(spread.get(name).copied().unwrap_or(0) >= 5, "calls spread over all three: {spread:?}");
    }
    assert!(records.iter().all(|record| record.final_status == Some(486)), "{records:?}");

    // kill -9 of b: the dispatcher's probe finds it gone; the calls after go to a and c.
    let b = servers.remove("b").expect("b");
    b.signal(nix::sys::signal::Signal::SIGKILL);
    b.wait().await;
    let killed_at = ringer::tas::leases::millis(std::time::SystemTime::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (ok, failed, screen) = common::sipp::client(&sipp, "uac_reject.xml", "u1", &[], service, access, 30).await;
    assert_eq!((ok, failed), (30, 0), "no call fails once b is gone:\n{screen}\n{}", kamailio.log());
    let deadline = Instant::now() + Duration::from_secs(10);
    while records.len() < 60 && Instant::now() < deadline {
        records = store.call_records(Some(number), 1000).await.expect("records");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = by_instance(&records, killed_at);
    assert_eq!(after.get("b"), None, "{after:?}");
    assert_eq!(after.values().sum::<usize>(), 30, "{after:?}");
    assert!(after.contains_key("a") && after.contains_key("c"), "both survivors serve: {after:?}");
    store.close().await;
    for (_, server) in servers {
        server.signal(Signal::SIGTERM);
        let (code, _, stderr) = server.wait().await;
        assert_eq!(code, Some(0), "{stderr}");
    }
}
