//! Runs the daemon: the HTTP listener and the adapters' loops, until a shutdown
//! signal; then stops intake and gives the answers in flight a grace period.

use std::future::Future;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::http::{Readiness, http_router};
use super::router::Router;
use super::settings::ServerSettings;

/// The name under which the HTTP server's task is reported.
const HTTP_COMPONENT: &str = "http";

/// A long-running adapter loop (long poll, Socket Mode), started with a token
/// that is cancelled when the daemon shuts down.
pub struct AdapterLoop {
    name: String,
    run: Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, anyhow::Result<()>> + Send>,
}

impl AdapterLoop {
    /// Wraps an adapter's run function; `name` labels its logs, e.g. `telegram`.
    ///
    /// The loop should return soon after the token is cancelled. Returning `Ok`
    /// early is logged and the daemon keeps running; returning `Err` shuts the
    /// daemon down with that error, so a supervisor can restart it.
    pub fn new<F, Fut>(name: impl Into<String>, run: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        AdapterLoop {
            name: name.into(),
            run: Box::new(move |token| Box::pin(run(token))),
        }
    }
}

/// Everything the daemon runs, built by `maxwin serve`.
pub struct DaemonParts {
    pub router: Router,
    pub readiness: Arc<Readiness>,
    /// Adapters' webhook routes, merged into the daemon's own HTTP routes.
    pub routes: Vec<axum::Router>,
    pub loops: Vec<AdapterLoop>,
}

impl DaemonParts {
    pub fn new(router: Router, readiness: Arc<Readiness>) -> Self {
        DaemonParts {
            router,
            readiness,
            routes: Vec::new(),
            loops: Vec::new(),
        }
    }

    pub fn with_routes(mut self, routes: axum::Router) -> Self {
        self.routes.push(routes);
        self
    }

    pub fn with_loop(mut self, adapter_loop: AdapterLoop) -> Self {
        self.loops.push(adapter_loop);
        self
    }
}

/// Binds `settings.bind` and runs the daemon until `shutdown` completes.
///
/// Returns `Ok` after a requested shutdown, also when the grace period ran out
/// with answers unfinished (they are logged and dropped). Returns an error when
/// the listener cannot be bound, or when the HTTP server or an adapter loop fails.
pub async fn run_daemon(
    parts: DaemonParts,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(settings.bind)
        .await
        .with_context(|| format!("could not bind the HTTP listener to {}", settings.bind))?;
    serve_with_listener(listener, parts, settings, shutdown).await
}

/// Runs the daemon on a listener that is already bound; see [`run_daemon`].
pub async fn serve_with_listener(
    listener: TcpListener,
    parts: DaemonParts,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let DaemonParts {
        router,
        readiness,
        routes,
        loops,
    } = parts;
    let token = CancellationToken::new();
    let app = routes.into_iter().fold(
        http_router(
            Arc::clone(router.ledger()),
            Arc::clone(router.metrics()),
            Arc::clone(&readiness),
        ),
        axum::Router::merge,
    );

    let address = listener
        .local_addr()
        .context("listener has no local address")?;
    info!(%address, adapter_loops = loops.len(), "daemon started");
    let mut components = JoinSet::new();
    let http_token = token.clone();
    components.spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(http_token.cancelled_owned())
            .await
            .context("HTTP server failed");
        (HTTP_COMPONENT.to_owned(), result)
    });
    for adapter_loop in loops {
        let name = adapter_loop.name;
        let run = (adapter_loop.run)(token.child_token());
        components.spawn(async move { (name, run.await) });
    }

    let failure = wait_for_shutdown(&mut components, shutdown).await;

    let deadline = Instant::now() + settings.shutdown_grace();
    readiness.set_shutting_down();
    token.cancel();
    stop_intake(&mut components, deadline).await;

    let remaining = deadline.saturating_duration_since(Instant::now());
    if router.shutdown(remaining).await {
        info!("all answers finished; daemon stopped");
    } else {
        warn!(
            unfinished = router.tasks_running(),
            grace_secs = settings.shutdown_grace_secs,
            "grace period over; dropping answers still in flight"
        );
    }

    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Waits for the shutdown signal or a failed component; returns the failure, if any.
async fn wait_for_shutdown(
    components: &mut JoinSet<(String, anyhow::Result<()>)>,
    shutdown: impl Future<Output = ()>,
) -> Option<anyhow::Error> {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                info!("shutdown requested; stopping intake");
                return None;
            }
            Some(joined) = components.join_next() => match joined {
                Ok((name, Ok(()))) if name != HTTP_COMPONENT => {
                    info!(component = %name, "adapter loop finished");
                }
                Ok((name, Ok(()))) => {
                    error!(component = %name, "HTTP server stopped; shutting down");
                    return Some(anyhow!("the HTTP server stopped unexpectedly"));
                }
                Ok((name, Err(e))) => {
                    error!(component = %name, error = ?e, "component failed; shutting down");
                    return Some(e.context(format!("{name} failed")));
                }
                Err(e) => {
                    error!(error = %e, "component panicked; shutting down");
                    return Some(anyhow!("a daemon component panicked: {e}"));
                }
            },
        }
    }
}

/// Waits until the HTTP server and the adapter loops have returned, or the
/// deadline passes; then aborts the ones still running.
async fn stop_intake(components: &mut JoinSet<(String, anyhow::Result<()>)>, deadline: Instant) {
    let drain = async {
        while let Some(joined) = components.join_next().await {
            match joined {
                Ok((name, Ok(()))) => info!(component = %name, "stopped"),
                Ok((name, Err(e))) => warn!(component = %name, error = ?e, "failed while stopping"),
                Err(e) => warn!(error = %e, "component panicked while stopping"),
            }
        }
    };
    if tokio::time::timeout_at(deadline, drain).await.is_err() {
        warn!(
            still_running = components.len(),
            "intake did not stop within the grace period; aborting it"
        );
        components.abort_all();
    }
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            error!(error = %e, "could not listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };

    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(e) => {
                error!(error = %e, "could not listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        _ = interrupt => info!("received SIGINT"),
        _ = terminate => info!("received SIGTERM"),
    }
}
