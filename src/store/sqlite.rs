//! The SQLite backend: the embedded default, one file in WAL mode.

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use maxwin_channel::{Feedback, Lang, Platform};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use super::values::{
    card_json, clean_opt, clean_text, format_local_time, ids_json, key_part, key_part_opt,
    limit_i64, parse_lang, parse_local_time, parse_platform, parse_reply_kind, rating_str, to_i64,
};
use super::{
    ConnectOptions, Conversation, ConversationKey, NewSubscription, NewTurn, Store, StoreError,
    Subscription, Turn, UserRef,
};

/// The text form of every stored time: fixed width, UTC, so text order is time order.
const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// A [`Store`] on a SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (and on first run creates) the database at `url` and runs the migrations.
    ///
    /// `url` is `sqlite://path`, `sqlite:///absolute/path` or `sqlite::memory:`.
    pub async fn connect(url: &str, options: ConnectOptions) -> Result<Self, StoreError> {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut connect_options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl(format!("not a SQLite URL: {e}")))?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(options.acquire_timeout);

        // A pool of in-memory connections shares one database only while a
        // connection stays open, so keep exactly one forever.
        let mut pool_options = SqlitePoolOptions::new().acquire_timeout(options.acquire_timeout);
        if in_memory {
            pool_options = pool_options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        } else {
            create_parent_dir(connect_options.get_filename())?;
            // In WAL mode NORMAL keeps every commit across a crash or restart of
            // the daemon and skips the fsync per commit that FULL adds. Only an
            // OS crash or power loss can roll back the last commits, so a
            // dedupe key claimed just before one may let a redelivery through
            // once. FULL cost about 4 ms per claim and held a 1,000-message
            // Telegram burst's first-progress p99 at 734 ms (docs/benchmarks.md).
            connect_options = connect_options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
            pool_options = pool_options.max_connections(options.max_connections.max(1));
        }

        let pool = pool_options.connect_with(connect_options).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        tracing::info!(backend = "sqlite", "store opened and migrated");
        Ok(SqliteStore { pool })
    }

    /// Returns the underlying pool, for tests and maintenance commands.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

fn create_parent_dir(path: &std::path::Path) -> Result<(), StoreError> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    if parent.as_os_str().is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(parent).map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))
}

fn format_time(time: DateTime<Utc>) -> String {
    time.format(TIME_FORMAT).to_string()
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, StoreError> {
    NaiveDateTime::parse_from_str(text, TIME_FORMAT)
        .map(|naive| naive.and_utc())
        .map_err(|e| StoreError::InvalidData(format!("invalid stored time `{text}`: {e}")))
}

fn now() -> String {
    format_time(Utc::now())
}

fn turn_from_row(row: &SqliteRow) -> Result<Turn, StoreError> {
    let kind: String = row.try_get("reply_kind")?;
    let created_at: String = row.try_get("created_at")?;
    Ok(Turn {
        user_id: row.try_get("platform_user_id")?,
        display_name: row.try_get("display_name")?,
        user_text: row.try_get("user_text")?,
        reply_kind: parse_reply_kind(&kind)?,
        reply_text: row.try_get("reply_text")?,
        created_at: parse_time(&created_at)?,
    })
}

fn subscription_from_row(row: &SqliteRow) -> Result<Subscription, StoreError> {
    let platform: String = row.try_get("platform")?;
    let local_time: String = row.try_get("local_time")?;
    let lang: String = row.try_get("lang")?;
    Ok(Subscription {
        id: row.try_get("id")?,
        key: ConversationKey {
            platform: parse_platform(&platform)?,
            tenant: row.try_get("tenant")?,
            chat: row.try_get("chat")?,
            thread: key_part_opt(row.try_get("thread")?),
            user: key_part_opt(row.try_get("direct_user")?),
        },
        local_time: parse_local_time(&local_time)?,
        time_zone: row.try_get("time_zone")?,
        lang: parse_lang(Some(&lang))?.unwrap_or_default(),
        active: row.try_get("active")?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn claim_event(&self, key: &str) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO processed_events (event_key, created_at) VALUES (?, ?)
             ON CONFLICT (event_key) DO NOTHING",
        )
        .bind(clean_text(key))
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn prune_events(&self, older_than: DateTime<Utc>) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM processed_events WHERE created_at < ?")
            .bind(format_time(older_than))
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    async fn upsert_user(&self, user: &UserRef) -> Result<i64, StoreError> {
        let now = now();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (platform, tenant, platform_user_id, display_name, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (platform, tenant, platform_user_id) DO UPDATE SET
                 display_name = COALESCE(excluded.display_name, users.display_name),
                 updated_at = excluded.updated_at
             RETURNING id",
        )
        .bind(user.platform.as_str())
        .bind(clean_text(&user.tenant))
        .bind(clean_text(&user.user_id))
        .bind(clean_opt(user.display_name.as_deref()))
        .bind(&now)
        .bind(&now)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    async fn conversation(&self, key: &ConversationKey) -> Result<Conversation, StoreError> {
        let tenant = clean_text(&key.tenant);
        let chat = clean_text(&key.chat);
        let thread = key_part(key.thread.as_deref());
        let user = key_part(key.user.as_deref());

        // Insert first and read second: the unique index settles a race
        // between two first messages, and both then read the same row.
        sqlx::query(
            "INSERT INTO conversations (platform, tenant, chat, thread, direct_user, created_at)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (platform, tenant, chat, thread, direct_user) DO NOTHING",
        )
        .bind(key.platform.as_str())
        .bind(&tenant)
        .bind(&chat)
        .bind(&thread)
        .bind(&user)
        .bind(now())
        .execute(&self.pool)
        .await?;

        let row = sqlx::query(
            "SELECT id, lang, reset_at FROM conversations
             WHERE platform = ? AND tenant = ? AND chat = ? AND thread = ? AND direct_user = ?",
        )
        .bind(key.platform.as_str())
        .bind(&tenant)
        .bind(&chat)
        .bind(&thread)
        .bind(&user)
        .fetch_one(&self.pool)
        .await?;

        let lang: Option<String> = row.try_get("lang")?;
        let reset_at: Option<String> = row.try_get("reset_at")?;
        Ok(Conversation {
            id: row.try_get("id")?,
            lang: parse_lang(lang.as_deref())?,
            reset_at: reset_at.as_deref().map(parse_time).transpose()?,
        })
    }

    async fn set_lang(&self, conversation_id: i64, lang: Option<Lang>) -> Result<(), StoreError> {
        let result = sqlx::query("UPDATE conversations SET lang = ? WHERE id = ?")
            .bind(lang.map(Lang::code))
            .bind(conversation_id)
            .execute(&self.pool)
            .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::ConversationNotFound(conversation_id));
        }
        Ok(())
    }

    async fn reset_conversation(&self, conversation_id: i64) -> Result<(), StoreError> {
        let result = sqlx::query(
            "UPDATE conversations SET
                 reset_at = ?,
                 reset_after_message = COALESCE(
                     (SELECT MAX(id) FROM messages WHERE conversation_id = conversations.id), 0)
             WHERE id = ?",
        )
        .bind(now())
        .bind(conversation_id)
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::ConversationNotFound(conversation_id));
        }
        Ok(())
    }

    async fn recent_turns(
        &self,
        conversation_id: i64,
        limit: usize,
    ) -> Result<Vec<Turn>, StoreError> {
        let rows = sqlx::query(
            "SELECT u.platform_user_id, u.display_name, m.user_text, m.reply_kind,
                    m.reply_text, m.created_at
             FROM messages m
             JOIN conversations c ON c.id = m.conversation_id
             JOIN users u ON u.id = m.user_id
             WHERE m.conversation_id = ? AND m.id > c.reset_after_message
             ORDER BY m.id DESC
             LIMIT ?",
        )
        .bind(conversation_id)
        .bind(limit_i64(limit))
        .fetch_all(&self.pool)
        .await?;

        let mut turns = rows
            .iter()
            .map(turn_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        turns.reverse();
        Ok(turns)
    }

    async fn record_turn(&self, turn: &NewTurn) -> Result<i64, StoreError> {
        let card = card_json(&turn.reply)?.map(|value| value.to_string());
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO messages (
                 conversation_id, user_id, user_text, reply_kind, reply_lang, card, reply_text,
                 retrieved_ids, provider, model, prompt_tokens, completion_tokens,
                 first_token_ms, total_ms, complete, inbound_message_id, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             RETURNING id",
        )
        .bind(turn.conversation_id)
        .bind(turn.user_db_id)
        .bind(clean_text(&turn.user_text))
        .bind(turn.reply.kind().as_str())
        .bind(turn.reply.lang().code())
        .bind(card)
        .bind(clean_text(&turn.reply_text))
        .bind(ids_json(&turn.retrieved_ids).to_string())
        .bind(clean_opt(turn.provider.as_deref()))
        .bind(clean_opt(turn.model.as_deref()))
        .bind(turn.prompt_tokens.map(i64::from))
        .bind(turn.completion_tokens.map(i64::from))
        .bind(turn.first_token_ms.map(to_i64))
        .bind(to_i64(turn.total_ms))
        .bind(turn.complete)
        .bind(clean_opt(turn.inbound_message_id.as_deref()))
        .bind(now())
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    async fn link_delivery(
        &self,
        answer_id: i64,
        platform: Platform,
        tenant: &str,
        platform_message_id: &str,
    ) -> Result<(), StoreError> {
        // The chat comes from the answer's conversation, because some
        // platforms (Telegram) number messages per chat.
        let result = sqlx::query(
            "INSERT INTO deliveries (answer_id, platform, tenant, chat, platform_message_id, created_at)
             SELECT m.id, ?, ?, c.chat, ?, ?
             FROM messages m JOIN conversations c ON c.id = m.conversation_id
             WHERE m.id = ?
             ON CONFLICT (platform, tenant, chat, platform_message_id) DO NOTHING",
        )
        .bind(platform.as_str())
        .bind(clean_text(tenant))
        .bind(clean_text(platform_message_id))
        .bind(now())
        .bind(answer_id)
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 1 {
            return Ok(());
        }

        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM messages WHERE id = ?")
            .bind(answer_id)
            .fetch_optional(&self.pool)
            .await?;
        match exists {
            Some(_) => Ok(()),
            None => Err(StoreError::AnswerNotFound(answer_id)),
        }
    }

    async fn record_feedback(&self, feedback: &Feedback) -> Result<bool, StoreError> {
        let tenant = clean_text(&feedback.tenant);
        let chat = clean_text(&feedback.conversation);
        // A written comment (`/feedback …`) refers to no particular answer.
        let general_comment = feedback.answer_message_id.is_empty() && feedback.comment.is_some();
        let answer_id: Option<i64> = if general_comment {
            None
        } else {
            sqlx::query_scalar(
                "SELECT answer_id FROM deliveries
             WHERE platform = ? AND tenant = ? AND chat = ? AND platform_message_id = ?",
            )
            .bind(feedback.platform.as_str())
            .bind(&tenant)
            .bind(&chat)
            .bind(clean_text(&feedback.answer_message_id))
            .fetch_optional(&self.pool)
            .await?
        };
        if answer_id.is_none() && !general_comment {
            return Ok(false);
        }

        let result = sqlx::query(
            "INSERT INTO feedback (answer_id, platform, tenant, chat, platform_user_id, rating,
                                   comment, event_id, received_at, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (platform, tenant, event_id) DO NOTHING",
        )
        .bind(answer_id)
        .bind(feedback.platform.as_str())
        .bind(&tenant)
        .bind(&chat)
        .bind(clean_text(&feedback.user))
        .bind(rating_str(feedback.rating))
        .bind(clean_opt(feedback.comment.as_deref()))
        .bind(clean_text(&feedback.event_id))
        .bind(format_time(feedback.received_at))
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn upsert_subscription(
        &self,
        subscription: &NewSubscription,
    ) -> Result<Subscription, StoreError> {
        let key = &subscription.key;
        let now = now();
        let row = sqlx::query(
            "INSERT INTO subscriptions (platform, tenant, chat, thread, direct_user, local_time,
                                        time_zone, lang, active, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, TRUE, ?, ?)
             ON CONFLICT (platform, tenant, chat, thread, direct_user) DO UPDATE SET
                 local_time = excluded.local_time,
                 time_zone = excluded.time_zone,
                 lang = excluded.lang,
                 active = TRUE,
                 updated_at = excluded.updated_at
             RETURNING id, platform, tenant, chat, thread, direct_user, local_time, time_zone, lang, active",
        )
        .bind(key.platform.as_str())
        .bind(clean_text(&key.tenant))
        .bind(clean_text(&key.chat))
        .bind(key_part(key.thread.as_deref()))
        .bind(key_part(key.user.as_deref()))
        .bind(format_local_time(subscription.local_time))
        .bind(clean_text(&subscription.time_zone))
        .bind(subscription.lang.code())
        .bind(&now)
        .bind(&now)
        .fetch_one(&self.pool)
        .await?;
        subscription_from_row(&row)
    }

    async fn set_subscription_active(
        &self,
        subscription_id: i64,
        active: bool,
    ) -> Result<(), StoreError> {
        let result =
            sqlx::query("UPDATE subscriptions SET active = ?, updated_at = ? WHERE id = ?")
                .bind(active)
                .bind(now())
                .bind(subscription_id)
                .execute(&self.pool)
                .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::SubscriptionNotFound(subscription_id));
        }
        Ok(())
    }

    async fn active_subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        let rows = sqlx::query("SELECT id, platform, tenant, chat, thread, direct_user, local_time, time_zone, lang, active FROM subscriptions WHERE active ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(subscription_from_row).collect()
    }

    async fn claim_tip_delivery(
        &self,
        subscription_id: i64,
        local_date: NaiveDate,
        tip_id: &str,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO tip_deliveries (subscription_id, local_date, tip_id, created_at)
             VALUES (?, ?, ?, ?)
             ON CONFLICT (subscription_id, local_date) DO NOTHING",
        )
        .bind(subscription_id)
        .bind(local_date.format("%Y-%m-%d").to_string())
        .bind(clean_text(tip_id))
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }
}
