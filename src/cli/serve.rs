//! `ringer serve`: the TAS. Registers the subscribers and keeps them registered; SIGINT/SIGTERM
//! delete every registration, then exit.
//!
//! With a config file the subscribers live in the database (`[store]`): a `[[subscriber]]` list
//! in the file replaces the database's at start and on SIGHUP; otherwise `ringer subscribers`
//! changes them, and the running instance picks each change up within `store.poll_interval`.
//! The embedded defaults keep their sample subscribers in memory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use tracing::{error, info, warn};

use ringer::config::serve::{LastStop, ServeConfig, SubscriberConfig};
use ringer::lab::{Lab, LabConfig, LabPorts};
use ringer::registrar::auth::Credentials;
use ringer::registrar::sms::SmsClient;
use ringer::registrar::{Registrar, RegistrationClient};
use ringer::store::Store;
use ringer::tas::call::records::RecordWriter;
use ringer::tas::leases::{instance_name, Instance};
use ringer::tas::mailbox::Mailboxes;
use ringer::tas::selfcare::PinSms;
use ringer::tas::signup::Signup;
use ringer::tas::voicemail::{Archiver, Notifier};

use super::leases::LeaseSync;
use super::signals::{SignalEvent, Signals};

/// How often finished voicemail messages move from the spool into the database.
const VOICEMAIL_SWEEP: Duration = Duration::from_secs(1);

/// How often messages past their retention (`voicemail.keep_saved`, `keep_deleted`) are removed.
const RETENTION_SWEEP: Duration = Duration::from_secs(3600);

/// Where the embedded defaults keep their development certificates (relative to the working directory).
pub(super) const EMBEDDED_CERT_DIR: &str = "var/certs";

/// What the HTTP API serves beside the mailboxes: first-login PINs by SMS, sign-up.
struct HttpExtras {
    pin_sms: Option<PinSms>,
    signup: Option<Signup>,
}

/// Runs the TAS until SIGINT/SIGTERM.
pub(super) async fn run(config_path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let mut signals = Signals::install()?;
    // Before anything records a metric.
    let prometheus = super::ops::install_recorder()?;
    // Without a config, the whole call path runs in this process so a new user sees it all work.
    let (mut config, tas, mut registrar, embedded, database) = match &config_path {
        Some(path) => {
            let mut config = ServeConfig::load(path)?;
            let database = super::store::open(&config.store.url).await?;
            let (revision, subscribers) = from_file_or_database(&database, &config).await?;
            config.subscribers = subscribers;
            let (records, writer) =
                RecordWriter::start(Some(database.clone()), &config.call_records, &instance_name(&config.store))?;
            let reopen = records.clone();
            // The router recovers what a crash cut short in the spool; the archiver then moves
            // every finished message into the database, now and as they come.
            // Settings a subscriber changed through another instance apply to calls here
            // within the same poll interval as changed subscribers.
            let mailboxes = Mailboxes::new(database.clone(), &config.voicemail)?
                .with_settings_fresh_for(config.store.poll_interval);
            let tas = ringer::tas::start_sip_with(&config, Some(records), Some(mailboxes.clone())).await?;
            let spool = ringer::media::mailbox::Mailbox::open(&config.voicemail.dir)?;
            let credentials = Credentials::from_config(&config.auth)?;
            // Subscribers who signed up are registered with their own tokens, the others with
            // the configured credentials, side by side.
            let user_tokens = ringer::registrar::UserTokens::default();
            let client = RegistrationClient::new(&config.core, credentials)?.with_user_tokens(user_tokens.clone());
            let signup = match &config.signup {
                Some(signup_config) => {
                    let signup = Signup::new(signup_config, database.clone(), user_tokens)?;
                    let since = signup.load().await?;
                    info!(signed_up = since > 0, "sign-up through the operator's consent at /signup");
                    signup.clone().spawn_refresher(since);
                    Some(signup)
                }
                None => None,
            };
            let archiver = Archiver::new(spool, database.clone(), &instance_name(&config.store));
            // New messages told to their owners by SMS, over the registrations' connection.
            let sms = SmsClient::over(client.connection().clone());
            // First-login PINs of the self-care page go out the same way.
            let pin_sms = config.voicemail.notification.sms_from.clone().map(|from| PinSms { sms: sms.clone(), from });
            let archiver = match Notifier::new(sms, &config.voicemail.notification)? {
                Some(notifier) => archiver.notifying(notifier),
                None => archiver,
            };
            // The leases decide which registrations this instance refreshes: none until the
            // first heartbeat, just below.
            let registrar = Registrar::start(client, config.registrar.clone(), Vec::new());
            let http = HttpExtras { pin_sms, signup };
            (config, tas, registrar, None, Some((database, revision, (writer, reopen), archiver, mailboxes, http)))
        }
        None => {
            let lab = start_embedded().await?;
            let Lab { core, tas, config, registrar, alice, .. } = lab;
            (config, tas, registrar, Some((core, alice)), None)
        }
    };
    // Changes other processes make to the database's subscribers, as they come; the revision
    // of the list being served, so that a list read earlier never replaces a newer one.
    let (changes, mut changed) = tokio::sync::mpsc::channel(1);
    let mut applied = database.as_ref().map_or(0, |(_, revision, _, _, _, _)| *revision);
    let watcher = database.as_ref().map(|(database, revision, _, _, _, _)| {
        tokio::spawn(watch_subscribers(database.clone(), *revision, config.store.poll_interval, changes))
    });
    let (database, (record_writer, records), archiver, mailboxes, http_extras) = match database {
        Some((database, _, writer, archiver, mailboxes, http)) => {
            let sweeping = archiver.clone().spawn(VOICEMAIL_SWEEP);
            let (writer, records) = writer;
            (Some(database), (Some(writer), Some(records)), Some((archiver, sweeping)), Some(mailboxes), http)
        }
        None => (None, (None, None), None, None, HttpExtras { pin_sms: None, signup: None }),
    };
    let retention = mailboxes.clone().map(|mailboxes| mailboxes.spawn_retention(RETENTION_SWEEP));
    // Renewed certificates are taken without a restart (new connections get them).
    let tls_watch = match embedded {
        None => tas.tls.spawn_watch(config.sip.tls_watch_interval),
        Some(_) => None,
    };
    let sip = &tas.endpoint;
    let mut listening = Vec::new();
    for (transport, addr) in [("TLS", sip.tls_addr), ("TCP", sip.tcp_addr), ("UDP", sip.udp_addr)] {
        if let Some(addr) = addr {
            println!("SIP/{transport} listening on {addr}");
            listening.push(format!("{transport} {addr}"));
        }
    }
    let mut leases = database.as_ref().map(|database| {
        let instance =
            Instance::new(database.clone(), &config.store, instance_name(&config.store), listening.join(", "));
        println!("instance {} (registration leases in the database)", instance.name());
        if config.sip.contact_host.is_none() && config.store.url.starts_with("postgres") {
            warn!(
                host = %config.tas.sip_uri.host(),
                "sip.contact_host is not set: Contact names tas.sip_uri's host, which other instances share, \
                 so an in-dialog request that cannot use the dialog's connection may reach another instance"
            );
        }
        LeaseSync::new(instance, &config, &registrar.status())
    });
    let mut heartbeat = tokio::time::interval(config.store.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(subscribers = config.subscribers.len(), sip_uri = %config.tas.sip_uri, core = %config.core.endpoint, "ringer serving");
    if leases.is_some() {
        // Served from the routes, the leases and the registrar from now on: the list itself
        // is not kept (a million subscribers would hold it twice).
        config.subscribers = Vec::new();
    }

    if let Some(addr) = config.registrar.status_listen {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        warn!(addr = %listener.local_addr()?, "registrar.status_listen is deprecated: /registrations and /calls are on http.listen too, with /metrics, /healthz and /readyz");
        let app = super::ops::status_router(registrar.status(), tas.router.stats().clone());
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                error!(%error, "status view stopped");
            }
        });
    }

    if let Some(addr) = config.http.listen {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        println!("HTTP listening on {addr}");
        let ops = super::ops::Ops {
            prometheus: prometheus.clone(),
            board: registrar.status(),
            ua: tas.endpoint.user_agent().clone(),
            transactions: tas.endpoint.transactions().clone(),
            stats: tas.router.stats().clone(),
            store: database.clone(),
        };
        let mut app = super::ops::router(ops);
        match &mailboxes {
            Some(mailboxes) => {
                info!(%addr, "HTTP: /metrics, /healthz, /readyz, /registrations, /calls; the API at /api/v1/...; /me");
                let HttpExtras { pin_sms, signup } = http_extras;
                app = app.merge(ringer::tas::http_api(mailboxes.clone(), tas.router.clone(), pin_sms, signup.as_ref()));
            }
            None => info!(%addr, "HTTP: /metrics, /healthz, /readyz, /registrations, /calls (the APIs need a store)"),
        }
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                error!(%error, "HTTP listener stopped");
            }
        });
    }

    loop {
        tokio::select! {
            signal = signals.next() => match (signal, &config_path, &database) {
                (SignalEvent::Stop, _, _) => break,
                (SignalEvent::Reload, Some(path), Some(database)) => {
                    if let Some(records) = &records {
                        records.reopen();
                    }
                    tas.tls.reload("SIGHUP").await;
                    if let Some((revision, reloaded)) = reload(path, database).await {
                        apply(&mut config, reloaded, &mut registrar, &tas.router, &mut leases).await;
                        applied = applied.max(revision);
                    }
                }
                (SignalEvent::Reload, _, _) => {
                    warn!("SIGHUP ignored: running on embedded defaults, there is no file to reload")
                }
            },
            Some((revision, subscribers)) = changed.recv() => {
                if revision > applied {
                    info!(subscribers = subscribers.len(), revision, "subscribers changed in the database");
                    let updated = ServeConfig { subscribers, ..config.clone() };
                    apply(&mut config, updated, &mut registrar, &tas.router, &mut leases).await;
                    applied = revision;
                }
            }
            _ = heartbeat.tick(), if leases.is_some() => {
                if let Some(leases) = &mut leases {
                    leases.tick(&mut registrar).await;
                }
            }
        }
    }
    // New calls go to another instance from now on (told to come back after the drain);
    // those under way may end by themselves.
    sip.stop_taking_calls(config.calls.drain_timeout);
    let report = match &leases {
        Some(leases) => stop_registrations(leases, registrar, &config).await,
        None => {
            info!("shutting down: deleting registrations");
            let report = registrar.shutdown().await;
            format!("{} registrations deleted, {} left to lapse", report.deleted, report.failed)
        }
    };
    drain_calls(sip, config.calls.drain_timeout, &mut signals).await;
    // The calls just ended are recorded once their apps are done (a recording stored).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tas.router.calls_in_progress() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(writer) = record_writer {
        writer.finish(Duration::from_secs(10)).await;
    }
    if let Some(retention) = retention {
        retention.abort();
    }
    if let Some(watch) = tls_watch {
        watch.abort();
    }
    if let Some((archiver, sweeping)) = archiver {
        sweeping.abort();
        // Messages finished by the hang-ups just now; any still recording waits in the spool
        // for the next start.
        if let Err(error) = archiver.sweep().await {
            warn!(%error, "voicemail messages left in the spool for the next start");
        }
    }
    sip.shutdown();
    if let Some((core, alice)) = embedded {
        alice.shutdown();
        core.shutdown().await;
    }
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    if let Some(database) = database {
        database.close().await;
    }
    println!("ringer stopped: {report}");
    Ok(ExitCode::SUCCESS)
}

/// Lets the calls under way end by themselves for up to `limit` (new ones get 503 meanwhile),
/// then hangs up the rest; a second SIGINT or SIGTERM cuts the wait short.
async fn drain_calls(sip: &ringer::sip::endpoint::Endpoint, limit: Duration, signals: &mut Signals) {
    let under_way = || sip.live_dialogs() + sip.pending_invites();
    if under_way() > 0 && !limit.is_zero() {
        info!(calls = under_way(), ?limit, "stopping: waiting for the calls under way to end; new calls get 503");
        let deadline = tokio::time::Instant::now() + limit;
        while under_way() > 0 && tokio::time::Instant::now() < deadline {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                event = signals.next() => if matches!(event, SignalEvent::Stop) {
                    info!("stopping at once: a second signal");
                    break;
                },
            }
        }
    }
    let ringing = sip.end_pending_invites();
    if ringing > 0 {
        info!(calls = ringing, "calls not yet answered ended with 503");
    }
    let calls = sip.live_dialogs();
    if calls > 0 {
        info!(calls, "hanging up the calls still under way");
        let ended = tokio::time::timeout(Duration::from_secs(10), sip.hangup_all()).await.unwrap_or(0);
        info!(ended, of = calls, "calls hung up");
    }
}

/// The embedded defaults: the emulated core with its SBC and handsets, and the TAS with one
/// sample subscriber of each route type, on the documented ports.
pub(super) async fn start_embedded() -> anyhow::Result<Lab> {
    // A development CA and certificate, made on first start and kept for the next.
    let names = ["localhost".to_owned(), "127.0.0.1".to_owned()];
    let certs = ringer::tls::devcert::ensure(Path::new(EMBEDDED_CERT_DIR), &names)?;
    println!("embedded defaults: TLS certificate {} (CA {})", certs.server_cert.display(), certs.ca_cert.display());
    let lab = Lab::start(LabConfig::samples(LabPorts::EMBEDDED), &certs).await?;
    println!("embedded defaults: emulated core's SipBreakoutService at {}", lab.core.endpoint());
    if let Some(sbc) = lab.sbc() {
        if let (Some(udp), Some(interconnect)) = (sbc.access.udp_addr, sbc.interconnect.tls_addr) {
            println!("embedded defaults: emulated SBC takes calls at sip:<number>@{udp} (UDP or TCP); TASs reach it at sips:localhost:{}", interconnect.port());
        }
    }
    use ringer::lab::samples::*;
    println!(
        "embedded defaults: subscribers {LOOP} loop, {LOOP_MO} loop-mo, {LOOP_MT} loop-mt, {FORK} fork, {FALLBACK} fallback (busy phone), {INGRESS} ingress; {BOB} is a handset that answers"
    );
    Ok(lab)
}

/// The subscribers to serve: the file's list, written into the database first, when the file
/// has one; else the database's. With the database's revision read before them, so that a
/// change made while they are read is seen again rather than missed.
async fn from_file_or_database(database: &Store, config: &ServeConfig) -> anyhow::Result<(i64, Vec<SubscriberConfig>)> {
    if !config.subscribers.is_empty() {
        let rows = config.subscribers.iter().map(ringer::tas::subscribers::to_row).collect::<Result<Vec<_>, _>>()?;
        let replaced = database.replace_subscribers(&rows).await?;
        info!(
            written = replaced.written,
            removed = replaced.removed,
            "the config's [[subscriber]] list is now the database's"
        );
    }
    let revision = database.revision().await?;
    Ok((revision, super::store::stored(database).await?))
}

/// Re-reads the file and the subscribers, with the revision they were read at; a bad file is
/// reported and `None` returned (the running configuration stays).
async fn reload(path: &Path, database: &Store) -> Option<(i64, ServeConfig)> {
    let loaded = async {
        let mut config = ServeConfig::load(path)?;
        let (revision, subscribers) = from_file_or_database(database, &config).await?;
        config.subscribers = subscribers;
        anyhow::Ok((revision, config))
    };
    match loaded.await {
        Ok(loaded) => {
            info!(path = %path.display(), "reloading subscribers and behaviours (endpoint and auth changes need a restart)");
            Some(loaded)
        }
        Err(error) => {
            error!(error = %format!("{error:#}"), "reload failed; keeping the running configuration");
            None
        }
    }
}

/// At a stop, with other instances alive: the registrations are handed over, none deleted.
/// As the last one: deleted, or kept to lapse (`store.on_last_stop`). Leaving and counting the
/// others is one transaction, so that of instances stopping together the last deletes. When
/// the database cannot tell, nothing is deleted (registrations lapse at their time to live at
/// worst; deleting them while others serve would cut every subscriber off).
async fn stop_registrations(leases: &LeaseSync, registrar: Registrar, config: &ServeConfig) -> String {
    let instance = leases.instance();
    let delete = config.store.on_last_stop == LastStop::Delete;
    match instance.leave(delete).await {
        Ok((released, 0)) if delete => {
            info!(released, "shutting down as the last instance: deleting every registration");
            let report = registrar.shutdown_deleting(leases.registrations()).await;
            format!("{} registrations deleted, {} left to lapse", report.deleted, report.failed)
        }
        Ok((released, others)) => {
            let handed = registrar.hand_over().await;
            info!(others, handed, released, "shutting down: registrations handed over to the other instances");
            format!("{handed} registrations handed over, none deleted")
        }
        Err(error) => {
            warn!(%error, "cannot tell whether other instances are alive: no registration deleted");
            let handed = registrar.hand_over().await;
            format!("{handed} registrations left to the other instances or their time to live")
        }
    }
}

/// Serves `updated` from now on: the router's behaviours and the registrations this instance
/// holds the leases of (changed ones re-registered, removed ones deleted; new subscribers are
/// registered by whichever instance takes their lease at its next heartbeat).
async fn apply(
    config: &mut ServeConfig,
    updated: ServeConfig,
    registrar: &mut Registrar,
    router: &ringer::call::CallRouter,
    leases: &mut Option<LeaseSync>,
) {
    router.reload(&updated);
    if let Some(leases) = leases {
        leases.set_subscribers(&updated);
    }
    let held: std::collections::HashSet<_> = registrar.numbers().into_iter().collect();
    let wanted = updated
        .registrations()
        .into_iter()
        .filter(|registration| registration.phone_number.as_ref().is_some_and(|number| held.contains(number)))
        .collect();
    registrar.reload(wanted).await;
    *config = ServeConfig { subscribers: Vec::new(), ..updated };
}

/// Polls the database's revision every `interval`; sends the subscriber list, with the revision
/// read before it, whenever the revision moved from `seen` (the one the running list was read
/// at). A database that cannot be read is logged and tried again; the running list stays.
async fn watch_subscribers(
    database: Store,
    mut seen: i64,
    interval: Duration,
    changes: tokio::sync::mpsc::Sender<(i64, Vec<SubscriberConfig>)>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let revision = match database.revision().await {
            Ok(revision) => revision,
            Err(error) => {
                warn!(%error, "cannot read the database; keeping the subscribers as they are");
                continue;
            }
        };
        if seen == revision {
            continue;
        }
        match super::store::stored(&database).await {
            Ok(subscribers) => {
                seen = revision;
                if changes.send((revision, subscribers)).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                warn!(error = %format!("{error:#}"), "the database's subscribers cannot be served; keeping the running list")
            }
        }
    }
}
