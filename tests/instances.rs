//! Several `ringer serve` processes sharing one PostgreSQL: each subscriber's registration is
//! refreshed by exactly one live instance (a lease with heartbeats); kill -9 of one leaves its
//! subscribers to the survivors before any registration lapses; a rolling restart and the
//! stops of all but the last delete nothing; the last one deletes every registration.
//! Registrations live 4 s at the emulated core here, so a lapse would show within the test.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::postgres::Postgres;
use common::process::*;
use common::*;
use nix::sys::signal::Signal;
use ringer::config::core::AuthMode;
use ringer::core::CoreHandle;

const TTL: Duration = Duration::from_secs(4);
const NUMBERS: [&str; 6] = ["+4799990101", "+4799990102", "+4799990103", "+4799990104", "+4799990105", "+4799990106"];

/// Refreshes at 40-45 % of the 4 s time to live: a takeover (lease timeout 1 s, a heartbeat,
/// a refresh) then always comes before the end of it, as with the defaults (70 % ± 10 %, a
/// 10 s lease timeout) and the core's hour.
const FAST_REFRESH: &str = "[registrar]\nrefresh_at = 0.4\nrefresh_jitter = 0.05\n";

fn instance_config(database: &str, endpoint: &str, name: &str) -> String {
    format!(
        "[store]\nurl = \"{database}\"\npoll_interval = \"200ms\"\nheartbeat_interval = \"250ms\"\n\
         lease_timeout = \"1s\"\ninstance = \"{name}\"\n{}",
        serve_config(endpoint, free_port(), &[]).replace("[registrar]\n", FAST_REFRESH)
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
    numbers: &'static [&'static str],
    upserts: HashMap<String, u64>,
}

impl Watch {
    fn new() -> Self {
        Self::new_for(&NUMBERS)
    }

    fn new_for(numbers: &'static [&'static str]) -> Self {
        Self { numbers, upserts: HashMap::new() }
    }

    fn check(&mut self, core: &CoreHandle, when: &str) {
        let snapshot = core.registry().snapshot();
        for &number in self.numbers {
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
    let dir = tempfile::tempdir().expect("tempdir");
    import(&database, dir.path(), &NUMBERS).await;

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
         [registrar]\ninitial_backoff = \"60s\"\n[sip]\ntcp_listen = \"127.0.0.1:{sip_port}\"\ncontact_host = \"127.0.0.1\"\nmedia_address = \"127.0.0.1\"\n\
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

/// Adds `number` as a Loop-MT subscriber (MT prefix 22) whose calls get `behaviour`, as an
/// operator would, through the database named in the environment.
async fn add_loop_mt(database: &str, number: &str, behaviour: &str) {
    let add = ringer(
        &["subscribers", "add", number, "--route-type", "loop-mt", "--mt-prefix", "22", "--mt", behaviour],
        &[("RINGER_DATABASE_URL", database)],
    )
    .await;
    assert_eq!(add.code, Some(0), "{}", add.stderr);
}

/// Kamailio's dispatcher in front of three instances, as an operator's load balancer: calls
/// spread over all three (each instance records the calls it handled); after kill -9 of one
/// and the dispatcher's probing, every new call is served by the other two; a rolling restart
/// of all three under SIPp's answered calls fails none (each of drain, the dispatcher's
/// failover on 503 and SIPp following the route set was seen to matter).
#[tokio::test]
async fn behind_kamailios_dispatcher_calls_spread_and_go_on_after_an_instance_is_killed() {
    let Some(postgres) = Postgres::start() else { return };
    let Some(sipp) = common::sipp::tool(&["sipp"], "sip-tester") else { return };
    let database = postgres.url.clone();
    let migrated = ringer(&["db", "migrate", "--database", &database], &[]).await;
    assert_eq!(migrated.code, Some(0), "{}", migrated.stderr);
    let number = "+4799990301";
    add_loop_mt(&database, number, "reject 486").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut servers = HashMap::new();
    let mut ports = Vec::new();
    let mut configs = HashMap::new();
    let start = |config: &std::path::Path| Server::spawn(&["serve", "--config", config.to_str().expect("utf-8")], &[]);
    for name in ["a", "b", "c"] {
        let port = free_port().port();
        let config = voicemail_instance(dir.path(), &database, name, port);
        servers.insert(name, start(&config));
        listening(port).await;
        ports.push(port);
        configs.insert(name, (config, port));
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

    // Rolling restart under load: b comes back, then a, b and c are stopped (SIGTERM: new
    // calls get 503, on which the dispatcher tries the next instance; calls under way end as
    // their caller ends them) and started again one at a time while SIPp places 150 calls that
    // ringer answers and Alice hangs up 200 ms later; none fails.
    add_loop_mt(&database, "+4799990302", "answer echo").await;
    servers.insert("b", start(&configs["b"].0));
    listening(configs["b"].1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let load = {
        let sipp = sipp.clone();
        tokio::spawn(async move {
            let keys = [("caller", "+4711111111")];
            common::sipp::client(&sipp, "alice_uac.xml", "u1", &keys, "+224799990302", access, 150).await
        })
    };
    for name in ["a", "b", "c"] {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let server = servers.remove(name).expect("running");
        server.signal(Signal::SIGTERM);
        let (code, _, stderr) = server.wait().await;
        assert_eq!(code, Some(0), "{name}: {stderr}");
        let (config, port) = &configs[name];
        servers.insert(name, start(config));
        listening(*port).await;
    }
    let (ok, failed, screen) = load.await.expect("SIPp");
    assert_eq!((ok, failed), (150, 0), "no call fails in the rolling restart:\n{screen}\n{}", kamailio.log());
    store.close().await;
    for (_, server) in servers {
        server.signal(Signal::SIGTERM);
        let (code, _, stderr) = server.wait().await;
        assert_eq!(code, Some(0), "{stderr}");
    }
}

/// The subscribers of the SRV test: Loop, MT prefix 22.
const SRV_NUMBERS: [&str; 6] =
    ["+4799990501", "+4799990502", "+4799990503", "+4799990504", "+4799990505", "+4799990506"];

/// One instance of the SRV test: its own loopback address, the shared certificate naming
/// `tas.test`, leg 3 to the emulated SBC's interconnect.
struct SrvInstance {
    name: &'static str,
    tls: std::net::SocketAddr,
    status: std::net::SocketAddr,
    config: std::path::PathBuf,
}

impl SrvInstance {
    fn write(
        dir: &std::path::Path,
        database: &str,
        core: &CoreHandle,
        certs: &ringer::tls::devcert::DevCertificateFiles,
        name: &'static str,
        tls: std::net::SocketAddr,
    ) -> Self {
        let status = free_port();
        let interconnect = core.sbc().and_then(|sbc| sbc.interconnect.tls_addr).expect("interconnect");
        let config = format!(
            "[store]\nurl = \"{database}\"\npoll_interval = \"200ms\"\nheartbeat_interval = \"250ms\"\n\
             lease_timeout = \"1s\"\ninstance = \"{name}\"\n[tas]\nsip_uri = \"sips:tas.test\"\n\
             [core]\nendpoint = \"{}\"\n[auth]\nmode = \"bearer\"\ntoken_env = \"RINGER_TEST_TOKEN\"\n\
             {FAST_REFRESH}initial_backoff = \"100ms\"\n[http]\nlisten = \"{status}\"\n[calls]\ndrain_timeout = \"20s\"\n\
             [sip]\ntls_listen = \"{tls}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\ncore_ca_file = \"{}\"\n\
             core_uri = \"sips:localhost:{}\"\n[voicemail]\ndir = \"{}\"\n",
            core.endpoint(),
            certs.server_cert.display(),
            certs.server_key.display(),
            certs.ca_cert.display(),
            interconnect.port(),
            dir.join(format!("spool-{name}")).display(),
        );
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).expect("write config");
        Self { name, tls, status, config: path }
    }

    async fn start(&self) -> Server {
        let server = Server::spawn(
            &["serve", "--config", self.config.to_str().expect("utf-8")],
            &[("RINGER_TEST_TOKEN", CLIENT_TOKEN)],
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(self.tls).await.is_err() {
            assert!(Instant::now() < deadline, "{} did not listen on {}", self.name, self.tls);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    /// Calls this instance has relayed (sent leg 3 for), from its status view.
    async fn relayed(&self) -> u64 {
        let view: serde_json::Value = reqwest::get(format!("http://{}/calls", self.status))
            .await
            .expect("calls view")
            .json()
            .await
            .expect("JSON");
        let count = view["request_hop"]["count"].as_u64().expect("a count");
        // The same relays in the Prometheus histogram of the TAS hop.
        let (_, metrics) = common::scrape::get(&format!("http://{}/metrics", self.status)).await;
        let histogram = common::scrape::sample(&metrics, "ringer_tas_hop_seconds_count", &[("hop", "request")]);
        assert_eq!(histogram, count as f64, "{}: /metrics and /calls agree:\n{metrics}", self.name);
        count
    }
}

/// Imports `numbers` as Loop subscribers with MO prefix 11 and MT prefix 22.
async fn import(database: &str, dir: &std::path::Path, numbers: &[&str]) {
    let migrated = ringer(&["db", "migrate", "--database", database], &[]).await;
    assert_eq!(migrated.code, Some(0), "{}", migrated.stderr);
    let file = dir.join("subscribers.toml");
    let list: String = numbers
        .iter()
        .map(|number| {
            format!("[[subscriber]]\nphone_number = \"{number}\"\nroute_type = \"loop\"\nmo_prefix = \"11\"\nmt_prefix = \"22\"\n")
        })
        .collect();
    std::fs::write(&file, list).expect("write");
    let import = ringer(&["subscribers", "import", file.to_str().expect("utf-8"), "--database", database], &[]).await;
    assert_eq!(import.code, Some(0), "{}", import.stderr);
}

/// A call from `from` to `to` through the SBC's access side, answered and ACKed.
async fn answered_call(
    alice: &ringer::core::caller::Caller,
    access: std::net::SocketAddr,
    from: &str,
    to: &str,
) -> Result<ringer::sip::call::CallHandle, String> {
    let mut call = alice
        .invite(access, &common::msisdn(from), &common::msisdn(to), common::lab::OFFER.into())
        .map_err(|error| error.to_string())?;
    match tokio::time::timeout(Duration::from_secs(15), common::lab::final_of(&mut call)).await {
        Ok(ringer::sip::uac::Progress::Answered(dialog, _)) => {
            dialog.ack(None).map_err(|error| error.to_string())?;
            Ok(dialog)
        }
        Ok(other) => Err(format!("{from} → {to}: {other:?}")),
        Err(_) => Err(format!("{from} → {to}: no final response")),
    }
}

/// The emulated core in front of three instances sharing `sip_uri = "sips:tas.test"`, an SRV
/// record with one target per instance (each on its own loopback address): calls spread over
/// all three; kill -9 of one ends the calls it held and no other (a re-INVITE through each
/// call tells), new calls go to the survivors, which take over its registrations before they
/// lapse; a rolling restart of all three, while calls keep coming, fails none of them (a
/// stopping instance answers new calls 503 and the core tries the next target) and deletes
/// no registration.
#[tokio::test]
async fn behind_the_emulated_core_with_an_srv_record_calls_survive_kill_and_rolling_restart() {
    let Some(postgres) = Postgres::start() else { return };
    let database = postgres.url.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    import(&database, dir.path(), &SRV_NUMBERS).await;
    let names: Vec<String> =
        ["tas.test", "localhost", "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"].map(String::from).to_vec();
    let certs = ringer::tls::devcert::generate(&names).expect("certs").write_to(dir.path()).expect("write certs");
    let addresses: Vec<std::net::SocketAddr> =
        (2..=4u8).map(|host| std::net::SocketAddr::from(([127, 0, 0, host], free_port().port()))).collect();
    let targets = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
    let records = addresses
        .iter()
        .zip(targets)
        .map(|(addr, target)| common::dns::Srv { priority: 10, weight: 10, port: addr.port(), target })
        .collect();
    let dns = common::dns::srv_server("_sips._tcp.tas.test", records).await;
    let handsets: String = SRV_NUMBERS
        .iter()
        .map(|number| format!("[[handset]]\nnumber = \"{number}\"\nmode = \"answer\"\nring_time = \"50ms\"\n"))
        .collect();
    let sbc = format!(
        "udp_listen = \"127.0.0.1:0\"\ninterconnect_listen = \"127.0.0.1:0\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
         tas_ca_file = \"{}\"\ndns_server = \"{dns}\"\n{handsets}",
        certs.server_cert.display(),
        certs.server_key.display(),
        certs.ca_cert.display(),
    );
    let mut core_config = common::core_config(common::loopback_any_port(), AuthMode::Required, TTL);
    core_config.sbc = Some(toml::from_str(&sbc).expect("SBC config"));
    let core = ringer::core::start(&core_config).await.expect("core starts");
    let access = core.sbc().and_then(|sbc| sbc.access.udp_addr).expect("access");
    let alice = ringer::core::caller::Caller::start([127, 0, 0, 1].into(), "alice").await.expect("caller");

    let instances: Vec<SrvInstance> = ["a", "b", "c"]
        .into_iter()
        .zip(&addresses)
        .map(|(name, addr)| SrvInstance::write(dir.path(), &database, &core, &certs, name, *addr))
        .collect();
    let mut servers = HashMap::new();
    for instance in &instances {
        servers.insert(instance.name, instance.start().await);
    }
    eventually(Duration::from_secs(20), "every subscriber registered", || core.registry().snapshot().len() == 6).await;

    // Calls spread: 30 calls up at once, each instance relaying some (RFC 2782's weighted
    // random order; one left out would happen 3 × (2/3)^30, 0.002 % of runs).
    let mut calls = Vec::new();
    for n in 0..30 {
        let call = answered_call(&alice, access, &format!("+4711110{n:03}"), SRV_NUMBERS[n % 6]).await;
        calls.push(call.expect("answered"));
    }
    let mut relayed = Vec::new();
    for instance in &instances {
        relayed.push(instance.relayed().await);
    }
    assert!(relayed.iter().all(|count| *count > 0), "calls spread over all three: {relayed:?}");
    assert_eq!(relayed.iter().sum::<u64>(), 30, "{relayed:?}");

    // kill -9 of A mid-call.
    let mut watch = Watch::new_for(&SRV_NUMBERS);
    watch.check(&core, "before the kill");
    let a = servers.remove("a").expect("a");
    a.signal(Signal::SIGKILL);
    a.wait().await;
    // A's calls are over, the others' go on: a re-INVITE through each call is answered end to
    // end exactly where its instance lives (a new version of the offer, which a B2BUA must
    // pass on: the same one again is a refresh each side answers itself).
    let changed = common::lab::OFFER.replace("o=alice 1 1", "o=alice 1 2").replace("m=audio 40000", "m=audio 40002");
    let mut alive = 0;
    for call in &calls {
        let answer = tokio::time::timeout(Duration::from_secs(15), call.reinvite(changed.clone().into())).await;
        if matches!(answer, Ok(Ok(_))) {
            alive += 1;
        }
    }
    assert_eq!(alive as u64, relayed[1] + relayed[2], "calls through b and c alive, a's ended ({relayed:?})");
    // New calls go to b and c; then every call is hung up.
    for (n, number) in SRV_NUMBERS.iter().enumerate() {
        let call = answered_call(&alice, access, &format!("+4711111{n:03}"), number).await;
        calls.push(call.expect("a new call after the kill is answered"));
    }
    assert_eq!(
        instances[1].relayed().await + instances[2].relayed().await,
        relayed[1] + relayed[2] + 6,
        "the new calls went to the survivors"
    );
    for call in calls.drain(..) {
        let _ = tokio::time::timeout(Duration::from_secs(15), call.hangup()).await;
    }
    // A's registrations refreshed by the survivors before they lapse; none deleted.
    watch.hold(&core, TTL * 2, "after kill -9 of a").await;
    let shares = holders(&database).await;
    assert_eq!(shares.get("a"), None, "a's leases taken over: {shares:?}");

    // Rolling restart under load: A comes back, then A, B and C are stopped and started one
    // at a time while four callers keep placing calls (answered, held a second, hung up), so
    // that each instance holds calls when it is stopped.
    servers.insert("a", instances[0].start().await);
    let restarting = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let alice = Arc::new(alice);
    let mut load = tokio::task::JoinSet::new();
    for caller in 0..4 {
        let (restarting, alice) = (restarting.clone(), alice.clone());
        load.spawn(async move {
            let (mut done, mut failed) = (0, Vec::new());
            let mut n = 0;
            while restarting.load(std::sync::atomic::Ordering::Relaxed) {
                let from = format!("+471111{caller}{n:03}");
                let result = async {
                    let call = answered_call(&alice, access, &from, SRV_NUMBERS[n % 6]).await?;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    match call.hangup().await {
                        Ok(status) if status.as_u16() == 200 => Ok(()),
                        other => Err(format!("{from}: BYE: {other:?}")),
                    }
                }
                .await;
                match result {
                    Ok(()) => done += 1,
                    Err(why) => failed.push(why),
                }
                n += 1;
            }
            (done, failed)
        });
    }
    for instance in &instances {
        stop_handing_over(servers.remove(instance.name).expect("running"), instance.name).await;
        watch.check(&core, &format!("{} stopped", instance.name));
        servers.insert(instance.name, instance.start().await);
        watch.hold(&core, Duration::from_secs(2), &format!("{} restarted", instance.name)).await;
    }
    restarting.store(false, std::sync::atomic::Ordering::Relaxed);
    let (mut done, mut failed) = (0, Vec::new());
    while let Some(result) = load.join_next().await {
        let (caller_done, caller_failed) = result.expect("a caller");
        done += caller_done;
        failed.extend(caller_failed);
    }
    let unfinished: Vec<_> = core
        .sbc()
        .map(|sbc| sbc.calls())
        .unwrap_or_default()
        .into_iter()
        .filter(|call| call.status.is_none_or(|status| !status.is_success()))
        .collect();
    assert!(
        failed.is_empty(),
        "no call fails during the rolling restart ({done} did not): {failed:#?}\nthe SBC's calls not answered: {unfinished:#?}"
    );
    assert!(done >= 20, "calls kept coming: {done}");
    watch.hold(&core, TTL, "after the rolling restart").await;
    for (name, server) in servers {
        server.signal(Signal::SIGTERM);
        let (code, _, stderr) = server.wait().await;
        assert_eq!(code, Some(0), "{name}: {stderr}");
    }
}
