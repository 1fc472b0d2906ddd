//! `ringer core`: runs the emulated operator core until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use ringer::config::core::CoreConfig;

/// Starts the emulated core and serves until asked to stop.
pub(super) async fn run(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let mut signals = super::signals::Signals::install()?;
    let config = match config {
        Some(path) => CoreConfig::load(&path)?,
        None => CoreConfig::default(),
    };
    // The emulated core's side in the same exposition format as the TAS's: its API calls and
    // registrations, and the SIP its SBC sends and receives.
    let prometheus = super::ops::install_recorder()?;
    let metrics = move |registry: std::sync::Arc<ringer::core::registry::Registry>| {
        axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let (prometheus, registry) = (prometheus.clone(), registry.clone());
                async move {
                    metrics::gauge!("ringer_emulated_core_registrations").set(registry.live() as f64);
                    super::ops::exposition(&prometheus)
                }
            }),
        )
    };
    let core = ringer::core::start_with(&config, metrics).await?;
    println!(
        "emulated core: SipBreakoutService at {}, token endpoint {}, metrics at {}/metrics",
        core.endpoint(),
        core.token_url(),
        core.endpoint()
    );
    if let Some(sbc) = core.sbc() {
        for (side, transport, addr) in [
            ("access", "UDP", sbc.access.udp_addr),
            ("access", "TCP", sbc.access.tcp_addr),
            ("access", "TLS", sbc.access.tls_addr),
            ("interconnect", "TLS", sbc.interconnect.tls_addr),
        ] {
            if let Some(addr) = addr {
                println!("emulated SBC: {side} SIP/{transport} on {addr}");
            }
        }
    }
    while let super::signals::SignalEvent::Reload = signals.next().await {
        tracing::warn!("SIGHUP ignored: restart the emulated core to change its configuration");
    }
    core.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
