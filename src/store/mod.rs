//! Durable state: users, conversations, turns, dedupe keys, deliveries and feedback.
//!
//! [`Store`] is the one interface the rest of the crate uses. Two backends
//! implement it, each in its own module: SQLite ([`sqlite`]) as the embedded
//! default and PostgreSQL ([`postgres`]) for deployments where several daemon
//! replicas share one database. [`connect`] picks the backend from the URL
//! scheme and runs the embedded migrations before it returns.
//!
//! Both backends store times in UTC, keep every turn (a reset only moves a
//! watermark), and replace NUL characters in text with U+FFFD because
//! PostgreSQL `TEXT` and `JSONB` reject them.

mod error;
pub mod postgres;
pub mod sqlite;
mod values;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use maxwin_channel::{Feedback, Lang, Platform, Reply, ReplyKind};

pub use error::StoreError;
pub use values::clean_text;

/// The database used when the settings name none: a SQLite file under `data/`.
pub const DEFAULT_URL: &str = "sqlite://data/maxwin.db";

/// The persistence interface of the coach, shared as `Arc<dyn Store>`.
///
/// Every method is one short transaction or a single statement, so callers may
/// run them concurrently from many tasks and from several processes.
#[async_trait]
pub trait Store: Send + Sync {
    /// Records a dedupe key and returns true the first time the key is seen.
    ///
    /// Concurrent claims of one key return true exactly once. The key is
    /// committed before this returns, so it survives a crash or restart of the
    /// daemon. SQLite runs `synchronous = NORMAL`, so a power loss can roll back
    /// the last claims there. PostgreSQL keeps them.
    async fn claim_event(&self, key: &str) -> Result<bool, StoreError>;

    /// Deletes dedupe keys recorded before `older_than` and returns the number deleted.
    async fn prune_events(&self, older_than: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Inserts or updates a platform user and returns its database id.
    ///
    /// A `None` display name keeps the name stored earlier.
    async fn upsert_user(&self, user: &UserRef) -> Result<i64, StoreError>;

    /// Returns the conversation for `key`, creating it on first use.
    ///
    /// Concurrent calls with the same key return the same row.
    async fn conversation(&self, key: &ConversationKey) -> Result<Conversation, StoreError>;

    /// Sets the reply language of a conversation. `None` clears it.
    async fn set_lang(&self, conversation_id: i64, lang: Option<Lang>) -> Result<(), StoreError>;

    /// Hides the turns recorded so far from [`Store::recent_turns`]. The rows are kept.
    async fn reset_conversation(&self, conversation_id: i64) -> Result<(), StoreError>;

    /// Returns up to `limit` of the latest turns since the last reset, oldest first.
    async fn recent_turns(
        &self,
        conversation_id: i64,
        limit: usize,
    ) -> Result<Vec<Turn>, StoreError>;

    /// Stores one question and its answer and returns the answer's message id.
    async fn record_turn(&self, turn: &NewTurn) -> Result<i64, StoreError>;

    /// Links a delivered platform message to the answer it carries, so that
    /// feedback on that message finds the answer. Linking twice is a no-op.
    async fn link_delivery(
        &self,
        answer_id: i64,
        platform: Platform,
        tenant: &str,
        platform_message_id: &str,
    ) -> Result<(), StoreError>;

    /// Stores a rating or comment. Returns false when the rated message is not
    /// a delivered answer or the feedback event was stored before.
    ///
    /// The answer is looked up by platform, tenant, `feedback.conversation` and
    /// message id, so `conversation` must be the chat id that the answer's
    /// [`ConversationKey::chat`] had. A comment with an empty `answer_message_id`
    /// is stored as general feedback on the conversation, linked to no answer.
    async fn record_feedback(&self, feedback: &Feedback) -> Result<bool, StoreError>;

    /// Runs `SELECT 1` to check that the database is reachable, for readiness probes.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Creates or updates the daily-tip subscription of `subscription.key`
    /// and returns it, active.
    async fn upsert_subscription(
        &self,
        subscription: &NewSubscription,
    ) -> Result<Subscription, StoreError>;

    /// Stops or restarts a subscription.
    async fn set_subscription_active(
        &self,
        subscription_id: i64,
        active: bool,
    ) -> Result<(), StoreError>;

    /// Returns every active subscription, oldest first. The scheduler decides
    /// which are due, because it owns the time zone rules.
    async fn active_subscriptions(&self) -> Result<Vec<Subscription>, StoreError>;

    /// Records the tip for one local date and returns true for the first
    /// claim of that subscription and date, so that replicas send it once.
    async fn claim_tip_delivery(
        &self,
        subscription_id: i64,
        local_date: NaiveDate,
        tip_id: &str,
    ) -> Result<bool, StoreError>;
}

/// A platform user as the adapters report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRef {
    pub platform: Platform,
    pub tenant: String,
    /// The platform's own user id.
    pub user_id: String,
    pub display_name: Option<String>,
}

/// The identity of a conversation: one chat, one thread in it, and in direct
/// chats one user.
///
/// `None` and `Some("")` name the same conversation, because platforms never
/// use an empty id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConversationKey {
    pub platform: Platform,
    pub tenant: String,
    /// The chat, channel or group id.
    pub chat: String,
    /// The thread or forum topic inside the chat, if any.
    pub thread: Option<String>,
    /// The user in a direct chat, or `None` in a group, where the members share history.
    pub user: Option<String>,
}

/// A stored conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub id: i64,
    /// The language set with `/lang`, if any.
    pub lang: Option<Lang>,
    /// The time of the last `/reset`, if any.
    pub reset_at: Option<DateTime<Utc>>,
}

/// One stored question and answer, as the prompt builder reads history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// The platform user id of the person who asked.
    pub user_id: String,
    pub display_name: Option<String>,
    pub user_text: String,
    pub reply_kind: ReplyKind,
    /// The rendered card or the text reply.
    pub reply_text: String,
    pub created_at: DateTime<Utc>,
}

/// A question and answer to store, with the facts about how the answer was made.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTurn {
    pub conversation_id: i64,
    /// The id returned by [`Store::upsert_user`].
    pub user_db_id: i64,
    pub user_text: String,
    pub reply: Reply,
    /// The rendered card or the text reply, as the user saw it.
    pub reply_text: String,
    /// The corpus document ids that retrieval returned for this question.
    pub retrieved_ids: Vec<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub first_token_ms: Option<u64>,
    pub total_ms: u64,
    /// False when the answer was cut short (LLM timeout, stream broke off).
    pub complete: bool,
    /// The platform message id of the question.
    pub inbound_message_id: Option<String>,
}

/// A daily-tip subscription to create or update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscription {
    /// The conversation that receives the tips. A key has at most one subscription.
    pub key: ConversationKey,
    /// The wall-clock time of the tip in `time_zone`, stored to the minute.
    pub local_time: NaiveTime,
    /// An IANA time zone name such as `Asia/Shanghai`, validated by the caller.
    pub time_zone: String,
    pub lang: Lang,
}

/// A stored daily-tip subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: i64,
    pub key: ConversationKey,
    pub local_time: NaiveTime,
    pub time_zone: String,
    pub lang: Lang,
    pub active: bool,
}

/// Connection settings that apply to both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectOptions {
    /// How long to wait for a connection (or, in SQLite, a write lock) before
    /// reporting the database as unavailable.
    pub acquire_timeout: Duration,
    /// The size of the connection pool.
    pub max_connections: u32,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            acquire_timeout: Duration::from_secs(5),
            max_connections: 8,
        }
    }
}

/// Opens the database named by `url` with default options and runs the migrations.
///
/// `sqlite://path` creates the file and its parent directory on first run;
/// `postgres://` and `postgresql://` open a connection pool.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    connect_with(url, ConnectOptions::default()).await
}

/// Opens the database named by `url` and runs the migrations.
pub async fn connect_with(
    url: &str,
    options: ConnectOptions,
) -> Result<Arc<dyn Store>, StoreError> {
    let scheme = url.split_once(':').map(|(scheme, _)| scheme).unwrap_or("");

    match scheme {
        "sqlite" => Ok(Arc::new(sqlite::SqliteStore::connect(url, options).await?)),
        "postgres" | "postgresql" => Ok(Arc::new(
            postgres::PostgresStore::connect(url, options).await?,
        )),
        // The URL may carry a password, so the message names only the scheme.
        _ => Err(StoreError::InvalidUrl(format!(
            "unsupported scheme `{scheme}`; expected sqlite://, postgres:// or postgresql://"
        ))),
    }
}
