//! Certificates renewed without a restart: on SIGHUP and when the files change, every TLS file
//! is read again and, when all are usable, put in use for new connections (calls under way keep
//! the connections they have). Each certificate in use is logged with its names and expiry, and
//! its expiry is a metric (`ringer_tls_certificate_expiry_timestamp_seconds{file}`) to alert on.

use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use tls::reload::{CertificateSummary, ReloadableTls};

/// Reloads the TAS's TLS files and reports what is in use.
#[derive(Debug, Clone)]
pub struct TlsReloader(Arc<ReloadableTls>);

impl TlsReloader {
    /// Reports the certificates loaded at start.
    pub fn new(tls: Arc<ReloadableTls>) -> Self {
        let reloader = Self(tls);
        reloader.report(&reloader.0.certificates(), "in use");
        reloader
    }

    /// The certificates in use.
    pub fn certificates(&self) -> Vec<CertificateSummary> {
        self.0.certificates()
    }

    /// Reads every TLS file again (off the async runtime); on success the new certificates and
    /// CAs serve the next handshakes. On failure the ones in use stay, and the error is logged.
    /// Returns whether the files were taken.
    pub async fn reload(&self, why: &str) -> bool {
        let tls = self.0.clone();
        let Ok(reloaded) = tokio::task::spawn_blocking(move || tls.reload()).await else {
            error!(why, "TLS files not reloaded: the reload stopped");
            return false;
        };
        match reloaded {
            Ok(certificates) => {
                metrics::counter!("ringer_tls_reloads_total", "result" => "ok").increment(1);
                self.report(&certificates, why);
                true
            }
            Err(error) => {
                metrics::counter!("ringer_tls_reloads_total", "result" => "error").increment(1);
                error!(%error, why, "TLS files not reloaded: the certificates and CAs in use stay");
                false
            }
        }
    }

    /// Looks at the files every `interval` and reloads them when one changed; `None` for a
    /// zero interval.
    pub fn spawn_watch(&self, interval: Duration) -> Option<tokio::task::JoinHandle<()>> {
        if interval.is_zero() {
            return None;
        }
        let reloader = self.clone();
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let tls = reloader.0.clone();
                if tokio::task::spawn_blocking(move || tls.files_changed()).await.unwrap_or(false) {
                    reloader.reload("a TLS file changed").await;
                }
            }
        }))
    }

    fn report(&self, certificates: &[CertificateSummary], why: &str) {
        let now = std::time::SystemTime::now();
        for certificate in certificates {
            let expiry = certificate.not_after.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let file = certificate.file.display().to_string();
            metrics::gauge!("ringer_tls_certificate_expiry_timestamp_seconds", "file" => file)
                .set(expiry.as_secs_f64());
            let expires = humantime::format_rfc3339_seconds(certificate.not_after).to_string();
            let names = certificate.names.join(", ");
            match certificate.not_after.duration_since(now) {
                Ok(left) if left > Duration::from_secs(14 * 24 * 3600) => {
                    info!(file = %certificate.file.display(), names, expires, why, "TLS certificate")
                }
                Ok(_) => {
                    warn!(file = %certificate.file.display(), names, expires, why, "TLS certificate expires within 14 days")
                }
                Err(_) => {
                    error!(file = %certificate.file.display(), names, expires, why, "TLS certificate has expired")
                }
            }
        }
    }
}
