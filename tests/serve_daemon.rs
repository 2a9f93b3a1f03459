//! The daemon end to end on 127.0.0.1: health, readiness and metrics over HTTP,
//! merged adapter routes, adapter loops and graceful shutdown.

#[path = "support/server.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::routing::get;
use maxwin_coach::server::{
    AdapterLoop, DaemonParts, Readiness, RouterSettings, ServerSettings, serve_with_listener,
};
use support::{FakeResponder, Harness, direct};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A daemon running on an ephemeral port of 127.0.0.1.
struct Running {
    base: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

async fn start(
    harness: &Harness,
    readiness: Arc<Readiness>,
    parts: impl FnOnce(DaemonParts) -> DaemonParts,
    grace_secs: u64,
) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let settings = ServerSettings {
        shutdown_grace_secs: grace_secs,
        ..ServerSettings::default()
    };
    let parts = parts(DaemonParts::new(harness.router.clone(), readiness));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_with_listener(listener, parts, settings, async {
        let _ = stopped.await;
    }));
    Running { base, stop, task }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn get_text(url: &str) -> (u16, String) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn health_readiness_and_metrics_over_http() {
    let harness = Harness::new(FakeResponder::default(), RouterSettings::default());
    let readiness = Arc::new(Readiness::new());
    let daemon = start(&harness, Arc::clone(&readiness), |parts| parts, 5).await;

    assert_eq!(
        get_text(&format!("{}/healthz", daemon.base)).await,
        (200, "ok".into())
    );
    let (status, reason) = get_text(&format!("{}/readyz", daemon.base)).await;
    assert_eq!(status, 503);
    assert!(reason.contains("index"), "reason: {reason}");

    readiness.set_index_ready(true);
    assert_eq!(
        get_text(&format!("{}/readyz", daemon.base)).await,
        (200, "ready".into())
    );

    harness.ledger.set_down(true);
    let (status, reason) = get_text(&format!("{}/readyz", daemon.base)).await;
    assert_eq!(status, 503);
    assert!(reason.contains("database"), "reason: {reason}");
    assert_eq!(
        get_text(&format!("{}/healthz", daemon.base)).await,
        (200, "ok".into())
    );

    let accepted = harness.send(direct("m1", "hello")).await;
    assert!(accepted.is_err());
    let response = client()
        .get(format!("{}/metrics", daemon.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let metrics = response.text().await.unwrap();
    assert!(metrics.contains("maxwin_messages_in_total{platform=\"telegram\"} 1\n"));
    assert!(
        metrics.contains("maxwin_errors_total{kind=\"ledger\"} 2\n"),
        "{metrics}"
    );

    harness.ledger.set_down(false);
    assert_eq!(get_text(&format!("{}/readyz", daemon.base)).await.0, 200);

    daemon.stop.send(()).unwrap();
    daemon.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn adapter_routes_merged_and_loops_cancelled() {
    let harness = Harness::new(FakeResponder::default(), RouterSettings::default());
    let loop_stopped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&loop_stopped);
    let webhook = axum::Router::new().route("/webhook/test", get(|| async { "hook" }));
    let adapter = AdapterLoop::new("test-loop", move |token| async move {
        token.cancelled().await;
        flag.store(true, Ordering::SeqCst);
        Ok(())
    });
    let daemon = start(
        &harness,
        Arc::new(Readiness::new()),
        |parts| parts.with_routes(webhook).with_loop(adapter),
        5,
    )
    .await;

    assert_eq!(
        get_text(&format!("{}/webhook/test", daemon.base)).await,
        (200, "hook".into())
    );
    assert!(!loop_stopped.load(Ordering::SeqCst));

    daemon.stop.send(()).unwrap();
    daemon.task.await.unwrap().unwrap();
    assert!(loop_stopped.load(Ordering::SeqCst));
    assert!(
        client()
            .get(format!("{}/healthz", daemon.base))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn failing_adapter_loop_stops_daemon_with_error() {
    let harness = Harness::new(FakeResponder::default(), RouterSettings::default());
    let adapter = AdapterLoop::new("broken", |_token| async {
        anyhow::bail!("invalid bot token")
    });
    let daemon = start(
        &harness,
        Arc::new(Readiness::new()),
        |parts| parts.with_loop(adapter),
        5,
    )
    .await;

    let error = daemon.task.await.unwrap().unwrap_err();

    assert!(format!("{error:#}").contains("broken failed"), "{error:#}");
    assert!(
        format!("{error:#}").contains("invalid bot token"),
        "{error:#}"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_answer_within_grace() {
    let responder = FakeResponder::with_delay(Duration::from_secs(12));
    let mut harness = Harness::new(responder, RouterSettings::default());
    let daemon = start(&harness, Arc::new(Readiness::new()), |parts| parts, 20).await;

    harness.send(direct("m1", "hello")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stopping = tokio::time::Instant::now();
    daemon.stop.send(()).unwrap();
    daemon.task.await.unwrap().unwrap();

    assert_eq!(stopping.elapsed(), Duration::from_secs(10));
    assert_eq!(harness.next_reply().await.message_id, "m1");
    assert!(harness.send(direct("m2", "too late")).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn shutdown_gives_up_after_grace() {
    let responder = FakeResponder::with_delay(Duration::from_secs(120));
    let mut harness = Harness::new(responder, RouterSettings::default());
    let daemon = start(&harness, Arc::new(Readiness::new()), |parts| parts, 20).await;

    harness.send(direct("m1", "hello")).await.unwrap();
    tokio::task::yield_now().await;
    let stopping = tokio::time::Instant::now();
    daemon.stop.send(()).unwrap();
    let result = daemon.task.await.unwrap();

    assert!(result.is_ok());
    assert_eq!(stopping.elapsed(), Duration::from_secs(20));
    assert!(harness.drain_replies().await.is_empty());
    assert_eq!(harness.router.tasks_running(), 1);
}
