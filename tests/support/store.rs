//! Fresh databases for store tests: a SQLite file in a temporary directory, or
//! a PostgreSQL database with a random name on the server in `TEST_DATABASE_URL`.

// Each test binary includes this file and uses only some of it.
#![allow(dead_code)]

use std::sync::Arc;

use maxwin_coach::store::{self, Store};
use sqlx::{Connection, Executor, PgConnection};
use tempfile::TempDir;

/// The environment variable that names the PostgreSQL server for tests, e.g.
/// `postgres://postgres@127.0.0.1:5432/postgres`.
pub const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";

/// A store on a database that exists only for one test.
pub struct TestStore {
    pub store: Arc<dyn Store>,
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestStore {
    /// Creates a store on a new SQLite file.
    pub async fn sqlite() -> TestStore {
        let dir = tempfile::tempdir().expect("failed to create a temporary directory");
        let url = format!(
            "sqlite://{}",
            dir.path().join("nested/dir/test.db").display()
        );
        let store = store::connect(&url)
            .await
            .expect("failed to open SQLite store");
        TestStore {
            store,
            url,
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// Creates a store on a new PostgreSQL database, or prints a notice and
    /// returns `None` when `TEST_DATABASE_URL` is unset.
    pub async fn postgres(test: &str) -> Option<TestStore> {
        let Ok(admin_url) = std::env::var(TEST_DATABASE_URL) else {
            eprintln!("skipped PostgreSQL test `{test}`: {TEST_DATABASE_URL} is not set");
            return None;
        };

        let name = format!("maxwin_test_{:016x}", rand::random::<u64>());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("failed to connect to TEST_DATABASE_URL");
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("failed to create the test database");
        admin.close().await.ok();

        let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is not a URL");
        url.set_path(&name);
        let url = url.to_string();
        let store = store::connect(&url)
            .await
            .expect("failed to open PostgreSQL store");
        Some(TestStore {
            store,
            url,
            cleanup: Cleanup::Postgres { admin_url, name },
        })
    }

    /// Opens a second store on the same database, running the migrations again.
    pub async fn reconnect(&self) -> Arc<dyn Store> {
        store::connect(&self.url)
            .await
            .expect("failed to reopen the store")
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let Cleanup::Postgres { admin_url, name } = &self.cleanup else {
            return;
        };

        // Drop runs inside the test's runtime, which cannot block on a future,
        // so the database is dropped from a thread with its own runtime.
        let admin_url = admin_url.clone();
        let statement = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("failed to start a runtime for cleanup");
            runtime.block_on(async move {
                let mut admin = PgConnection::connect(&admin_url).await?;
                admin.execute(statement.as_str()).await?;
                admin.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("failed to drop test database {name}");
        }
    }
}
