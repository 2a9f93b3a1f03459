//! The PostgreSQL backend, for deployments where several replicas share one database.

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use maxwin_channel::{Feedback, Lang, Platform};
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};

use super::values::{
    card_json, clean_opt, clean_text, format_local_time, ids_json, key_part, key_part_opt,
    limit_i64, parse_lang, parse_local_time, parse_platform, parse_reply_kind, rating_str, to_i64,
};
use super::{
    ConnectOptions, Conversation, ConversationKey, NewSubscription, NewTurn, Store, StoreError,
    Subscription, Turn, UserRef,
};

/// A [`Store`] on a PostgreSQL database, through a connection pool.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to the database at `url` and runs the migrations.
    ///
    /// Fails with [`StoreError::Unavailable`] once `options.acquire_timeout`
    /// passes without a connection. Replicas that start together are safe,
    /// because sqlx holds an advisory lock while it migrates.
    pub async fn connect(url: &str, options: ConnectOptions) -> Result<Self, StoreError> {
        let connect_options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl(format!("not a PostgreSQL URL: {e}")))?;

        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect_options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        tracing::info!(backend = "postgres", "store opened and migrated");
        Ok(PostgresStore { pool })
    }

    /// Returns the underlying pool, for tests and maintenance commands.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn turn_from_row(row: &PgRow) -> Result<Turn, StoreError> {
    let kind: String = row.try_get("reply_kind")?;
    Ok(Turn {
        user_id: row.try_get("platform_user_id")?,
        display_name: row.try_get("display_name")?,
        user_text: row.try_get("user_text")?,
        reply_kind: parse_reply_kind(&kind)?,
        reply_text: row.try_get("reply_text")?,
        created_at: row.try_get("created_at")?,
    })
}

fn subscription_from_row(row: &PgRow) -> Result<Subscription, StoreError> {
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
impl Store for PostgresStore {
    async fn claim_event(&self, key: &str) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO processed_events (event_key, created_at) VALUES ($1, $2)
             ON CONFLICT (event_key) DO NOTHING",
        )
        .bind(clean_text(key))
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn prune_events(&self, older_than: DateTime<Utc>) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM processed_events WHERE created_at < $1")
            .bind(older_than)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    async fn upsert_user(&self, user: &UserRef) -> Result<i64, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (platform, tenant, platform_user_id, display_name, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (platform, tenant, platform_user_id) DO UPDATE SET
                 display_name = COALESCE(excluded.display_name, users.display_name),
                 updated_at = excluded.updated_at
             RETURNING id",
        )
        .bind(user.platform.as_str())
        .bind(clean_text(&user.tenant))
        .bind(clean_text(&user.user_id))
        .bind(clean_opt(user.display_name.as_deref()))
        .bind(Utc::now())
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
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (platform, tenant, chat, thread, direct_user) DO NOTHING",
        )
        .bind(key.platform.as_str())
        .bind(&tenant)
        .bind(&chat)
        .bind(&thread)
        .bind(&user)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;

        let row = sqlx::query(
            "SELECT id, lang, reset_at FROM conversations
             WHERE platform = $1 AND tenant = $2 AND chat = $3 AND thread = $4 AND direct_user = $5",
        )
        .bind(key.platform.as_str())
        .bind(&tenant)
        .bind(&chat)
        .bind(&thread)
        .bind(&user)
        .fetch_one(&self.pool)
        .await?;

        let lang: Option<String> = row.try_get("lang")?;
        Ok(Conversation {
            id: row.try_get("id")?,
            lang: parse_lang(lang.as_deref())?,
            reset_at: row.try_get("reset_at")?,
        })
    }

    async fn set_lang(&self, conversation_id: i64, lang: Option<Lang>) -> Result<(), StoreError> {
        let result = sqlx::query("UPDATE conversations SET lang = $1 WHERE id = $2")
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
                 reset_at = $1,
                 reset_after_message = COALESCE(
                     (SELECT MAX(id) FROM messages WHERE conversation_id = conversations.id), 0)
             WHERE id = $2",
        )
        .bind(Utc::now())
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
             WHERE m.conversation_id = $1 AND m.id > c.reset_after_message
             ORDER BY m.id DESC
             LIMIT $2",
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
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO messages (
                 conversation_id, user_id, user_text, reply_kind, reply_lang, card, reply_text,
                 retrieved_ids, provider, model, prompt_tokens, completion_tokens,
                 first_token_ms, total_ms, complete, inbound_message_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
             RETURNING id",
        )
        .bind(turn.conversation_id)
        .bind(turn.user_db_id)
        .bind(clean_text(&turn.user_text))
        .bind(turn.reply.kind().as_str())
        .bind(turn.reply.lang().code())
        .bind(card_json(&turn.reply)?)
        .bind(clean_text(&turn.reply_text))
        .bind(ids_json(&turn.retrieved_ids))
        .bind(clean_opt(turn.provider.as_deref()))
        .bind(clean_opt(turn.model.as_deref()))
        .bind(turn.prompt_tokens.map(i64::from))
        .bind(turn.completion_tokens.map(i64::from))
        .bind(turn.first_token_ms.map(to_i64))
        .bind(to_i64(turn.total_ms))
        .bind(turn.complete)
        .bind(clean_opt(turn.inbound_message_id.as_deref()))
        .bind(Utc::now())
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
             SELECT m.id, $1, $2, c.chat, $3, $4
             FROM messages m JOIN conversations c ON c.id = m.conversation_id
             WHERE m.id = $5
             ON CONFLICT (platform, tenant, chat, platform_message_id) DO NOTHING",
        )
        .bind(platform.as_str())
        .bind(clean_text(tenant))
        .bind(clean_text(platform_message_id))
        .bind(Utc::now())
        .bind(answer_id)
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 1 {
            return Ok(());
        }

        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM messages WHERE id = $1")
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
             WHERE platform = $1 AND tenant = $2 AND chat = $3 AND platform_message_id = $4",
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
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
        .bind(feedback.received_at)
        .bind(Utc::now())
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
        let row = sqlx::query(
            "INSERT INTO subscriptions (platform, tenant, chat, thread, direct_user, local_time,
                                        time_zone, lang, active, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, TRUE, $9, $9)
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
        .bind(Utc::now())
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
            sqlx::query("UPDATE subscriptions SET active = $1, updated_at = $2 WHERE id = $3")
                .bind(active)
                .bind(Utc::now())
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
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (subscription_id, local_date) DO NOTHING",
        )
        .bind(subscription_id)
        .bind(local_date)
        .bind(clean_text(tip_id))
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }
}
