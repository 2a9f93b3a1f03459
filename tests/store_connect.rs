//! Opening the store: URL schemes, file creation and database outages.

#[path = "support/store.rs"]
mod store_support;

use std::time::{Duration, Instant};

use maxwin_coach::store::{self, ConnectOptions, StoreError};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Returns a port on 127.0.0.1 that nothing listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn postgres_closed_port_is_unavailable() {
    let port = closed_port().await;
    let url = format!("postgres://postgres:secret-password@127.0.0.1:{port}/maxwin");

    let started = Instant::now();
    let result = store::connect(&url).await;
    let elapsed = started.elapsed();

    let error = result.err().expect("connecting to a closed port succeeded");
    assert!(error.is_unavailable(), "{error:?}");
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
    assert!(!error.to_string().contains("secret-password"), "{error}");
}

#[tokio::test]
async fn unknown_scheme_is_invalid_url() {
    let result = store::connect("mysql://root:hunter2@127.0.0.1/maxwin").await;

    let error = result.err().expect("a MySQL URL was accepted");
    assert!(matches!(error, StoreError::InvalidUrl(_)), "{error:?}");
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

#[tokio::test]
async fn sqlite_creates_file_and_parents() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/maxwin.db");

    let store = store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();

    store.ping().await.unwrap();
    assert!(path.is_file());
}

#[tokio::test]
async fn sqlite_relative_path() {
    let dir = tempfile::tempdir().unwrap();
    // Tests run in the package directory; climb to `/` and descend into the
    // temporary directory so the URL path is relative.
    let depth = std::env::current_dir().unwrap().components().count() - 1;
    let relative = format!(
        "{}{}/data/maxwin.db",
        "../".repeat(depth),
        dir.path().strip_prefix("/").unwrap().display()
    );

    let store = store::connect(&format!("sqlite://{relative}"))
        .await
        .unwrap();

    store.ping().await.unwrap();
    assert!(dir.path().join("data/maxwin.db").is_file());
}

#[tokio::test]
async fn sqlite_in_memory() {
    let store = store::connect("sqlite::memory:").await.unwrap();

    assert!(store.claim_event("k").await.unwrap());
    assert!(!store.claim_event("k").await.unwrap());
}

#[tokio::test]
async fn sqlite_unopenable_path_is_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();

    let result = store::connect(&format!("sqlite://{}/maxwin.db", file.display())).await;

    let error = result
        .err()
        .expect("opened a database under a regular file");
    assert!(error.is_unavailable(), "{error:?}");
}

/// Forwards TCP connections from a local port to `target` until aborted, and
/// cuts every forwarded connection when aborted.
async fn start_proxy(target: String) -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();

    let handle = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let target = target.clone();
            connections.spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (port, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_after_connect_is_unavailable() {
    let Some(db) = store_support::TestStore::postgres("postgres_outage_after_connect").await else {
        return;
    };
    let mut url = url::Url::parse(&db.url).unwrap();
    let target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let (port, proxy) = start_proxy(target).await;
    url.set_port(Some(port)).unwrap();

    let options = ConnectOptions {
        acquire_timeout: Duration::from_secs(2),
        max_connections: 2,
    };
    let store = store::connect_with(url.as_str(), options).await.unwrap();
    store.ping().await.unwrap();

    // Aborting the proxy closes its listener and drops every forwarded
    // connection, so the pool's next query fails as if the server had stopped.
    proxy.abort();
    let _ = proxy.await;

    let started = Instant::now();
    let mut last = None;
    for _ in 0..3 {
        last = Some(store.ping().await);
    }
    let error = last
        .unwrap()
        .expect_err("ping succeeded with the server gone");
    assert!(error.is_unavailable(), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(10));

    assert!(
        store
            .claim_event("during-outage")
            .await
            .unwrap_err()
            .is_unavailable()
    );
}
