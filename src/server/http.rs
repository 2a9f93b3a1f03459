//! The daemon's own HTTP endpoints: `/healthz`, `/readyz` and `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tracing::warn;

use super::EventLedger;
use super::metrics::Metrics;

/// How long `/readyz` waits for the ledger's ping before it reports not ready.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Flags for `/readyz` that other parts of the daemon set.
#[derive(Debug, Default)]
pub struct Readiness {
    index_ready: AtomicBool,
    shutting_down: AtomicBool,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the search index as loaded (or not); `/readyz` returns 503 until it is.
    pub fn set_index_ready(&self, ready: bool) {
        self.index_ready.store(ready, Ordering::SeqCst);
    }

    /// Makes `/readyz` return 503 from now on, so load balancers stop sending traffic.
    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }
}

#[derive(Clone)]
struct HttpState {
    ledger: Arc<dyn EventLedger>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

/// Builds the router of the daemon's own endpoints; adapters' routes are merged into it.
pub fn http_router(
    ledger: Arc<dyn EventLedger>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
) -> axum::Router {
    let state = HttpState {
        ledger,
        metrics,
        readiness,
    };
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<HttpState>) -> Response {
    if state.readiness.shutting_down.load(Ordering::SeqCst) {
        return not_ready("shutting down");
    }
    if !state.readiness.index_ready.load(Ordering::SeqCst) {
        return not_ready("search index not loaded yet");
    }

    match tokio::time::timeout(PING_TIMEOUT, state.ledger.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(e)) => {
            warn!(error = %e, cause = ?std::error::Error::source(&e), "readiness check: database ping failed");
            state.metrics.error("ledger");
            not_ready("database unavailable")
        }
        Err(_) => {
            warn!(
                timeout_secs = PING_TIMEOUT.as_secs(),
                "readiness check: database ping timed out"
            );
            state.metrics.error("ledger");
            not_ready("database ping timed out")
        }
    }
}

fn not_ready(reason: &'static str) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, reason).into_response()
}

async fn metrics_text(State(state): State<HttpState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
