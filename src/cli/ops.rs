//! The operations endpoints of `ringer serve`, on `[http] listen` beside the APIs (and the
//! status views alone on the deprecated `registrar.status_listen`): `GET /metrics` (Prometheus
//! text, rendered by metrics-exporter-prometheus from what the library crates record through
//! the `metrics` facade, plus gauges sampled at scrape time), `/healthz` (the process answers),
//! `/readyz` (the database answers, registrations are not all failing), `/registrations` and
//! `/calls`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;

use ringer::registrar::{RegistrationState, StatusBoard};
use ringer::sip::core::UserAgent;
use ringer::store::Store;
use ringer::tas::call::stats::CallStats;

/// How long `/readyz` waits for the database.
const STORE_CHECK: Duration = Duration::from_secs(1);

/// Bucket bounds of every `_seconds` histogram: from the TAS hop's half millisecond to an
/// hour-long call.
const SECONDS_BUCKETS: [f64; 20] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    1800.0, 3600.0,
];

/// Installs the process's metrics recorder; its handle renders the exposition. Durations are
/// histograms with buckets (aggregatable across instances), not client-side quantiles.
pub(super) fn install_recorder() -> anyhow::Result<PrometheusHandle> {
    let builder =
        PrometheusBuilder::new().set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)?;
    Ok(builder.install_recorder()?)
}

/// What the endpoints read.
#[derive(Clone)]
pub(super) struct Ops {
    /// The recorder's handle.
    pub(super) prometheus: PrometheusHandle,
    /// The registrations.
    pub(super) board: Arc<StatusBoard>,
    /// The TAS's SIP user agent (dialogs, client transactions).
    pub(super) ua: UserAgent,
    /// Its server transactions.
    pub(super) transactions: Arc<ringer::sip::transaction::TransactionLayer>,
    /// What relaying adds to call setup.
    pub(super) stats: Arc<CallStats>,
    /// The database, when there is one.
    pub(super) store: Option<Store>,
}

/// The status views alone (`/registrations`, `/calls`).
pub(super) fn status_router(board: Arc<StatusBoard>, stats: Arc<CallStats>) -> axum::Router {
    let calls = axum::Router::new().route("/calls", get(move || async move { Json(stats.view()) }));
    ringer::registrar::status::router(board).merge(calls)
}

/// Every operations endpoint.
pub(super) fn router(ops: Ops) -> axum::Router {
    let status = status_router(ops.board.clone(), ops.stats.clone());
    axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(ops)
        .merge(status)
}

/// `GET /metrics`: the gauges sampled now, then everything recorded.
async fn metrics(State(ops): State<Ops>) -> Response {
    for (state, count) in ops.board.counts() {
        metrics::gauge!("ringer_registrations", "state" => state.name()).set(count as f64);
    }
    metrics::gauge!("ringer_sip_dialogs").set(ops.ua.live_dialogs() as f64);
    metrics::gauge!("ringer_sip_client_transactions").set(ops.ua.clients().in_progress() as f64);
    metrics::gauge!("ringer_sip_server_transactions").set(ops.transactions.live_transactions() as f64);
    exposition(&ops.prometheus)
}

/// Everything recorded, in the Prometheus text format, with the build's version.
pub(super) fn exposition(prometheus: &PrometheusHandle) -> Response {
    metrics::gauge!("ringer_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], prometheus.render()).into_response()
}

/// `GET /readyz`: 200 when the database answers within a second (if there is one) and the
/// registrations are not all failing; 503 otherwise. The JSON says which check failed.
async fn readyz(State(ops): State<Ops>) -> Response {
    let store = match &ops.store {
        None => "none".to_owned(),
        Some(store) => match tokio::time::timeout(STORE_CHECK, store.revision()).await {
            Ok(Ok(_)) => "ok".to_owned(),
            Ok(Err(error)) => format!("unreachable: {error}"),
            Err(_) => format!("no answer within {STORE_CHECK:?}"),
        },
    };
    let counts = ops.board.counts();
    let failing = |state: RegistrationState| {
        matches!(state, RegistrationState::Refused | RegistrationState::Lapsed | RegistrationState::Retrying)
    };
    let total = counts.iter().map(|(_, count)| count).sum::<usize>();
    let failed = counts.iter().filter(|(state, _)| failing(*state)).map(|(_, count)| count).sum::<usize>();
    let registrations = match (total, failed) {
        (0, _) => "none".to_owned(),
        (total, failed) if failed == total => format!("all {total} failing"),
        (total, failed) => format!("{} of {total} up or pending", total - failed),
    };
    let ready = (store == "ok" || store == "none") && !registrations.starts_with("all");
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body =
        json!({ "ready": ready, "checks": { "store": store, "registrations": registrations, "sip": "listening" } });
    (status, Json(body)).into_response()
}
