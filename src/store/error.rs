//! The error type of the store, split so that callers can tell an outage from a bug.

use sqlx::migrate::MigrateError;
use sqlx::postgres::PgDatabaseError;
use sqlx::sqlite::SqliteError;

/// A failed store operation.
///
/// [`StoreError::Unavailable`] means the database could not be reached or was
/// too busy; the daemon reports it as a temporary failure and retries later.
/// Every other variant is a defect or a misconfiguration.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL could not be used. The message never contains the URL,
    /// because the URL may carry a password.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),

    /// The database refused or dropped the connection, the pool timed out, or
    /// the database stayed locked past the timeout.
    #[error("database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),

    /// The schema migrations failed to apply.
    #[error("database migration failed: {0}")]
    Migration(#[source] MigrateError),

    /// The conversation id does not exist.
    #[error("conversation {0} not found")]
    ConversationNotFound(i64),

    /// The subscription id does not exist.
    #[error("subscription {0} not found")]
    SubscriptionNotFound(i64),

    /// The answer id does not exist.
    #[error("answer {0} not found")]
    AnswerNotFound(i64),

    /// A query failed for a reason other than an outage.
    #[error("database query failed: {0}")]
    Query(#[source] sqlx::Error),

    /// A stored value could not be read back into its Rust type.
    #[error("invalid stored value: {0}")]
    InvalidData(String),
}

impl StoreError {
    /// Returns true when the failure is an outage that may pass on its own.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if is_outage(&error) {
            StoreError::Unavailable(error)
        } else {
            StoreError::Query(error)
        }
    }
}

impl From<MigrateError> for StoreError {
    fn from(error: MigrateError) -> Self {
        match error {
            MigrateError::Execute(inner) | MigrateError::ExecuteMigration(inner, _)
                if is_outage(&inner) =>
            {
                StoreError::Unavailable(inner)
            }
            other => StoreError::Migration(other),
        }
    }
}

/// Decides whether a driver error means the database is out of reach.
fn is_outage(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
                return is_postgres_outage(pg.code());
            }
            if db.try_downcast_ref::<SqliteError>().is_some() {
                return db.code().is_some_and(|code| is_sqlite_outage(&code));
            }
            false
        }
        _ => false,
    }
}

/// Matches the SQLSTATE codes that PostgreSQL returns when it cannot serve a
/// session: class 08 (connection exception), class 53 (insufficient
/// resources, e.g. too many connections) and the 57P0x shutdown codes.
fn is_postgres_outage(sqlstate: &str) -> bool {
    sqlstate.starts_with("08")
        || sqlstate.starts_with("53")
        || matches!(sqlstate, "57P01" | "57P02" | "57P03")
}

/// Matches the SQLite result codes for a locked, unreadable or full database.
/// sqlx reports extended codes, whose low byte is the primary code.
fn is_sqlite_outage(code: &str) -> bool {
    const IOERR: i64 = 10;
    const BUSY: i64 = 5;
    const LOCKED: i64 = 6;
    const FULL: i64 = 13;
    const CANTOPEN: i64 = 14;

    let Ok(extended) = code.parse::<i64>() else {
        return false;
    };
    matches!(extended & 0xff, BUSY | LOCKED | IOERR | FULL | CANTOPEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_outage_codes() {
        assert!(is_postgres_outage("08006"));
        assert!(is_postgres_outage("53300"));
        assert!(is_postgres_outage("57P01"));
        assert!(!is_postgres_outage("23505"));
        assert!(!is_postgres_outage("42P01"));
    }

    #[test]
    fn sqlite_outage_codes() {
        assert!(is_sqlite_outage("5"));
        assert!(is_sqlite_outage("517"));
        assert!(is_sqlite_outage("14"));
        assert!(!is_sqlite_outage("2067"));
        assert!(!is_sqlite_outage("1"));
        assert!(!is_sqlite_outage("not a number"));
    }

    #[test]
    fn pool_timeout_is_unavailable() {
        let error = StoreError::from(sqlx::Error::PoolTimedOut);
        assert!(error.is_unavailable());
    }

    #[test]
    fn row_not_found_is_query_error() {
        let error = StoreError::from(sqlx::Error::RowNotFound);
        assert!(!error.is_unavailable());
    }
}
