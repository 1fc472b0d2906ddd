//! `ringer serve`: the TAS. Registers the configured subscribers and keeps them registered;
//! SIGHUP reloads the subscriber list; SIGINT/SIGTERM delete every registration, then exit.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tracing::{error, info, warn};

use ringer::config::serve::ServeConfig;
use ringer::lab::{Lab, LabConfig, LabPorts};
use ringer::registrar::auth::Credentials;
use ringer::registrar::{status, Registrar, RegistrationClient};

/// Where the embedded defaults keep their development certificates (relative to the working directory).
pub(super) const EMBEDDED_CERT_DIR: &str = "var/certs";

/// Runs the TAS until SIGINT/SIGTERM.
pub(super) async fn run(config_path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let mut signals = super::signals::Signals::install()?;
    // Without a config, the whole call path runs in this process so a new user sees it all work.
    let (config, tas, mut registrar, embedded) = match &config_path {
        Some(path) => {
            let config = ServeConfig::load(path)?;
            let tas = ringer::tas::start_sip(&config).await?;
            let credentials = Credentials::from_config(&config.auth)?;
            let client = RegistrationClient::new(&config.core, credentials)?;
            let registrar = Registrar::start(client, config.registrar.clone(), config.registrations());
            (config, tas, registrar, None)
        }
        None => {
            let lab = start_embedded().await?;
            let Lab { core, tas, config, registrar, alice } = lab;
            (config, tas, registrar, Some((core, alice)))
        }
    };
    let sip = &tas.endpoint;
    for (transport, addr) in [("TLS", sip.tls_addr), ("TCP", sip.tcp_addr), ("UDP", sip.udp_addr)] {
        if let Some(addr) = addr {
            println!("SIP/{transport} listening on {addr}");
        }
    }
    info!(subscribers = config.subscribers.len(), sip_uri = %config.tas.sip_uri, core = %config.core.endpoint, "ringer serving");

    if let Some(addr) = config.registrar.status_listen {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        info!(addr = %listener.local_addr()?, "status at GET /registrations and GET /calls");
        let board = registrar.status();
        let stats = tas.router.stats().clone();
        let calls = axum::Router::new().route(
            "/calls",
            axum::routing::get(move || {
                let stats = stats.clone();
                async move { axum::Json(stats.view()) }
            }),
        );
        let app = status::router(board).merge(calls);
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                error!(%error, "status view stopped");
            }
        });
    }

    while let super::signals::SignalEvent::Reload = signals.next().await {
        match &config_path {
            Some(path) => reload(path, &mut registrar, &tas.router).await,
            None => warn!("SIGHUP ignored: running on embedded defaults, there is no file to reload"),
        }
    }
    info!("shutting down: deleting registrations");
    let report = registrar.shutdown().await;
    let calls = sip.live_dialogs();
    if calls > 0 {
        info!(calls, "hanging up active calls");
        let ended = tokio::time::timeout(std::time::Duration::from_secs(10), sip.hangup_all()).await.unwrap_or(0);
        info!(ended, of = calls, "calls hung up");
    }
    sip.shutdown();
    if let Some((core, alice)) = embedded {
        alice.shutdown();
        core.shutdown().await;
    }
    println!("ringer stopped: {} registrations deleted, {} left to lapse", report.deleted, report.failed);
    Ok(ExitCode::SUCCESS)
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

/// Re-reads the subscriber list; a bad file is reported and the running list kept.
async fn reload(path: &Path, registrar: &mut Registrar, router: &ringer::call::CallRouter) {
    match ServeConfig::load(path) {
        Ok(config) => {
            info!(path = %path.display(), "reloading subscribers and behaviours (endpoint and auth changes need a restart)");
            router.reload(&config);
            registrar.reload(config.registrations()).await;
        }
        Err(error) => error!(%error, "reload failed; keeping the running configuration"),
    }
}
