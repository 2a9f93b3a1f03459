//! Receives updates (long polling or webhook), drops repeats, and hands messages,
//! button presses and feedback to the core's `Handler`.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::Utc;
use maxwin_channel::{Accepted, Feedback, Handler, HandlerError, Lang, Platform};
use teloxide::RequestError;
use teloxide::prelude::*;
use teloxide::types::{AllowedUpdate, CallbackQuery, Message, Update, UpdateKind};
use tokio::sync::OnceCell;

use crate::inbound::{self, BotIdentity, ButtonAction, ButtonData};
use crate::settings::{TelegramError, TelegramSettings};
use crate::sink::TelegramClient;

/// How many recent update ids the adapter remembers to drop repeats.
const REMEMBERED_UPDATES: usize = 4096;

/// How long a button press waits for the core before Telegram gets its answer anyway.
const FEEDBACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The maximum pause between failed `getUpdates` calls.
const MAX_POLL_BACKOFF: Duration = Duration::from_secs(30);

/// The update kinds the adapter requests from Telegram.
fn allowed_updates() -> Vec<AllowedUpdate> {
    vec![AllowedUpdate::Message, AllowedUpdate::CallbackQuery]
}

/// Update ids seen by this process, oldest forgotten first.
#[derive(Default)]
struct RecentUpdates {
    order: VecDeque<u32>,
    set: HashSet<u32>,
}

impl RecentUpdates {
    /// Records the id; returns false when it was already recorded.
    fn insert(&mut self, id: u32) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > REMEMBERED_UPDATES
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }

    fn forget(&mut self, id: u32) {
        if self.set.remove(&id) {
            self.order.retain(|seen| *seen != id);
        }
    }
}

/// Turns updates into calls on the core's `Handler`.
pub(crate) struct Dispatcher {
    client: TelegramClient,
    me: BotIdentity,
    handler: Arc<dyn Handler>,
    recent: Mutex<RecentUpdates>,
}

impl Dispatcher {
    fn new(client: TelegramClient, me: BotIdentity, handler: Arc<dyn Handler>) -> Self {
        Dispatcher {
            client,
            me,
            handler,
            recent: Mutex::new(RecentUpdates::default()),
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, RecentUpdates> {
        self.recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Handles one update once. An error means the core could not record it, so the
    /// update is forgotten and must be delivered again.
    async fn process(&self, update: Update) -> Result<(), HandlerError> {
        let id = update.id.0;
        if !self.recent().insert(id) {
            tracing::debug!(update_id = id, "dropping a repeated update");
            return Ok(());
        }
        let result = match update.kind {
            UpdateKind::Message(message) => self.on_message(id, &message).await,
            UpdateKind::CallbackQuery(query) => {
                self.on_callback(&query).await;
                Ok(())
            }
            _ => Ok(()),
        };
        if result.is_err() {
            self.recent().forget(id);
        }
        result
    }

    async fn on_message(&self, update_id: u32, message: &Message) -> Result<(), HandlerError> {
        let Some(inbound) = inbound::message_to_inbound(message, &self.me, Utc::now()) else {
            tracing::debug!(
                update_id,
                chat = message.chat.id.0,
                "ignoring a message not meant for the bot"
            );
            return Ok(());
        };
        let thread = inbound.thread.as_deref().and_then(|t| t.parse().ok());
        // In groups the answer quotes the question, so readers see what it answers.
        let reply_to = (!inbound.is_direct).then_some(message.id.0);
        let sink = self.client.sink(message.chat.id.0, thread, reply_to);
        let accepted = self.handler.accept(inbound, Box::new(sink)).await;
        log_accept(update_id, message.chat.id.0, &accepted);
        accepted.map(|_| ())
    }

    /// Handles a card button press and always answers the callback query.
    async fn on_callback(&self, query: &CallbackQuery) {
        let data = query.data.as_deref().and_then(ButtonData::decode);
        let notice = match (data, query.message.as_ref()) {
            (Some(data), Some(message)) => match data.action {
                ButtonAction::Rate(rating) => {
                    let answer = data.answer_message.unwrap_or(message.id().0);
                    let feedback = Feedback {
                        platform: Platform::Telegram,
                        tenant: self.me.tenant(),
                        conversation: message.chat().id.0.to_string(),
                        user: query.from.id.0.to_string(),
                        answer_message_id: format!("{}:{}", message.chat().id.0, answer),
                        rating: Some(rating),
                        comment: None,
                        event_id: query.id.0.clone(),
                        received_at: Utc::now(),
                    };
                    match tokio::time::timeout(FEEDBACK_TIMEOUT, self.handler.feedback(feedback))
                        .await
                    {
                        Ok(Ok(())) => Some(
                            data.lang
                                .pick("已记录，谢谢反馈", "Thanks for the feedback"),
                        ),
                        Ok(Err(err)) => {
                            tracing::warn!(error = %err, callback = %query.id.0, "recording feedback failed");
                            Some(failure_notice(data.lang))
                        }
                        Err(_) => {
                            tracing::warn!(callback = %query.id.0, "recording feedback timed out");
                            Some(failure_notice(data.lang))
                        }
                    }
                }
                ButtonAction::MoreQuestions => self.on_more_questions(query, data.lang).await,
            },
            _ => {
                tracing::debug!(callback = %query.id.0, "ignoring a button press with unknown data");
                None
            }
        };

        let mut answer = self.client.bot().answer_callback_query(query.id.clone());
        if let Some(text) = notice {
            answer = answer.text(text);
        }
        if let Err(err) = answer.send().await {
            tracing::warn!(error = %err, callback = %query.id.0, "answerCallbackQuery failed");
        }
    }

    async fn on_more_questions(&self, query: &CallbackQuery, lang: Lang) -> Option<&'static str> {
        let message = query.message.as_ref()?;
        let inbound = inbound::more_questions_inbound(query, lang, &self.me, Utc::now())?;
        let thread = inbound.thread.as_deref().and_then(|t| t.parse().ok());
        let sink = self
            .client
            .sink(message.chat().id.0, thread, Some(message.id().0));
        let accepted = tokio::time::timeout(
            FEEDBACK_TIMEOUT,
            self.handler.accept(inbound, Box::new(sink)),
        )
        .await;
        match accepted {
            Ok(Ok(_)) => None,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, callback = %query.id.0, "queueing a follow-up request failed");
                Some(failure_notice(lang))
            }
            Err(_) => {
                tracing::warn!(callback = %query.id.0, "queueing a follow-up request timed out");
                Some(failure_notice(lang))
            }
        }
    }
}

fn failure_notice(lang: Lang) -> &'static str {
    lang.pick(
        "暂时没能记录，请稍后再试",
        "That did not go through, please try again later",
    )
}

fn log_accept(update_id: u32, chat: i64, accepted: &Result<Accepted, HandlerError>) {
    match accepted {
        Ok(outcome) => tracing::debug!(update_id, chat, ?outcome, "message handed to the core"),
        Err(err) => {
            tracing::warn!(update_id, chat, error = %err, "the core could not record a message; it will be retried")
        }
    }
}

/// Asks the Bot API who this bot is.
async fn fetch_identity(client: &TelegramClient) -> Result<BotIdentity, TelegramError> {
    let me = client
        .bot()
        .get_me()
        .await
        .map_err(|source| TelegramError::Api {
            method: "getMe",
            source,
        })?;
    Ok(BotIdentity {
        id: me.user.id,
        username: me.user.username.clone().unwrap_or_default(),
    })
}

/// Receives updates by long polling until `shutdown` completes.
///
/// Removes a registered webhook first, because Telegram refuses `getUpdates` while
/// one is set. The loop only hands each message to `Handler::accept`, which queues
/// the answer, so a long answer in one chat never holds up other chats. When
/// `accept` fails, the update is fetched again after a pause.
pub async fn run_polling(
    settings: TelegramSettings,
    handler: Arc<dyn Handler>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), TelegramError> {
    let client = TelegramClient::new(&settings)?;
    tokio::pin!(shutdown);

    let dispatcher = tokio::select! {
        _ = &mut shutdown => return Ok(()),
        started = start_polling(&client) => Dispatcher::new(client.clone(), started?, handler),
    };
    tracing::info!(bot = %dispatcher.me.username, "Telegram long polling started");

    let mut offset: i32 = 0;
    let mut backoff = Duration::from_secs(1);
    loop {
        let request = client
            .bot()
            .get_updates()
            .offset(offset)
            .timeout(settings.poll_timeout_secs)
            .allowed_updates(allowed_updates());
        let updates = tokio::select! {
            _ = &mut shutdown => break,
            result = request.send() => result,
        };
        let updates = match updates {
            Ok(updates) => {
                backoff = Duration::from_secs(1);
                updates
            }
            Err(err) => {
                let pause = match &err {
                    RequestError::RetryAfter(after) => after.duration(),
                    _ => backoff,
                };
                tracing::warn!(error = %err, pause_secs = pause.as_secs(), "getUpdates failed");
                backoff = (backoff * 2).min(MAX_POLL_BACKOFF);
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };

        let mut failed = false;
        for update in updates {
            let id = update.id.0;
            if let Err(err) = dispatcher.process(update).await {
                tracing::warn!(update_id = id, error = %err, "will fetch the update again");
                failed = true;
                break;
            }
            offset = next_offset(id);
        }
        if failed {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_POLL_BACKOFF);
        }
    }

    // Confirm the updates handled so far, so a restart does not receive them again.
    if offset != 0 {
        let confirm = client
            .bot()
            .get_updates()
            .offset(offset)
            .limit(1)
            .timeout(0);
        if let Err(err) = tokio::time::timeout(Duration::from_secs(5), confirm.send())
            .await
            .unwrap_or(Ok(Vec::new()))
        {
            tracing::warn!(error = %err, "could not confirm the last updates on shutdown");
        }
    }
    tracing::info!("Telegram long polling stopped");
    Ok(())
}

fn next_offset(update_id: u32) -> i32 {
    i32::try_from(update_id).map_or(i32::MAX, |id| id.saturating_add(1))
}

/// Reads the bot identity and removes any webhook, retrying with back-off until it works.
async fn start_polling(client: &TelegramClient) -> Result<BotIdentity, TelegramError> {
    let mut backoff = Duration::from_secs(1);
    loop {
        let attempt = async {
            let me = fetch_identity(client).await?;
            client
                .bot()
                .delete_webhook()
                .await
                .map_err(|source| TelegramError::Api {
                    method: "deleteWebhook",
                    source,
                })?;
            Ok::<_, TelegramError>(me)
        };
        match attempt.await {
            Ok(me) => return Ok(me),
            Err(TelegramError::Api {
                source: RequestError::Api(teloxide::ApiError::InvalidToken),
                method,
            }) => {
                return Err(TelegramError::Api {
                    method,
                    source: RequestError::Api(teloxide::ApiError::InvalidToken),
                });
            }
            Err(err) => {
                tracing::warn!(error = %err, pause_secs = backoff.as_secs(), "Telegram start-up failed, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_POLL_BACKOFF);
            }
        }
    }
}

/// Registers `webhook_url` + `webhook_path` with Telegram, with the secret token.
pub async fn register_webhook(settings: &TelegramSettings) -> Result<(), TelegramError> {
    let client = TelegramClient::new(settings)?;
    let url = settings.webhook_endpoint()?;
    let secret = settings.webhook_secret()?;
    client
        .bot()
        .set_webhook(url.clone())
        .secret_token(secret.expose().to_string())
        .allowed_updates(allowed_updates())
        .await
        .map_err(|source| TelegramError::Api {
            method: "setWebhook",
            source,
        })?;
    tracing::info!(%url, "Telegram webhook registered");
    Ok(())
}

struct WebhookState {
    client: TelegramClient,
    handler: Arc<dyn Handler>,
    secret: maxwin_channel::Secret,
    dispatcher: OnceCell<Dispatcher>,
}

/// Builds the axum router that receives webhook updates at `webhook_path`.
///
/// A request whose `X-Telegram-Bot-Api-Secret-Token` header is missing or wrong gets
/// 401 and is not processed. The bot identity is fetched with `getMe` on the first
/// update. When the core cannot record a message the answer is 500, so Telegram
/// delivers the update again.
pub fn webhook_router(
    settings: &TelegramSettings,
    handler: Arc<dyn Handler>,
) -> Result<axum::Router, TelegramError> {
    let state = Arc::new(WebhookState {
        client: TelegramClient::new(settings)?,
        handler,
        secret: settings.webhook_secret()?,
        dispatcher: OnceCell::new(),
    });
    Ok(axum::Router::new()
        .route(settings.route_path()?, post(receive_update))
        .with_state(state))
}

const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

async fn receive_update(
    State(state): State<Arc<WebhookState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let presented = headers
        .get(SECRET_HEADER)
        .map(|value| value.as_bytes())
        .unwrap_or_default();
    if !constant_time_eq(presented, state.secret.expose().as_bytes()) {
        tracing::warn!("rejected a webhook request with a missing or wrong secret token");
        return StatusCode::UNAUTHORIZED;
    }

    let update: Update = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(err) => {
            // Telegram would send the same body again on an error status, so acknowledge it.
            tracing::warn!(error = %err, "ignoring a webhook body that is not an Update");
            return StatusCode::OK;
        }
    };

    let dispatcher = state
        .dispatcher
        .get_or_try_init(|| async {
            let me = fetch_identity(&state.client).await?;
            Ok::<_, TelegramError>(Dispatcher::new(
                state.client.clone(),
                me,
                state.handler.clone(),
            ))
        })
        .await;
    let dispatcher = match dispatcher {
        Ok(dispatcher) => dispatcher,
        Err(err) => {
            tracing::warn!(error = %err, "cannot handle a webhook update before getMe succeeds");
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    };

    match dispatcher.process(update).await {
        Ok(()) => StatusCode::OK,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    let mut diff = presented.len() ^ expected.len();
    for (i, byte) in expected.iter().enumerate() {
        let other = presented.get(i).copied().unwrap_or(0);
        diff |= usize::from(byte ^ other);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_matches_only_equal_strings() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abd", b"abc"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
    }

    #[test]
    fn recent_updates_drop_repeats_and_forget_oldest() {
        let mut recent = RecentUpdates::default();
        assert!(recent.insert(1));
        assert!(!recent.insert(1));
        recent.forget(1);
        assert!(recent.insert(1));
        for id in 2..=(REMEMBERED_UPDATES as u32 + 1) {
            assert!(recent.insert(id));
        }
        assert!(
            recent.insert(1),
            "the oldest id is forgotten once the window is full"
        );
    }
}
