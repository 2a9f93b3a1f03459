//! The Telegram reply sink: typing indicator, a throttled preview message, and the
//! final reply as HTML chunks with feedback buttons.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use maxwin_channel::{
    Delivered, Lang, LengthUnit, ProgressStyle, Rating, Reply, ReplySink, SinkCapabilities,
    SinkError,
};
use teloxide::prelude::*;
use teloxide::types::{
    ChatAction, InlineKeyboardButton, InlineKeyboardMarkup, MessageId, ParseMode, ReplyParameters,
    ThreadId,
};
use teloxide::{ApiError, RequestError};

use crate::html::{self, Chunk, MAX_MESSAGE_CHARS};
use crate::inbound::{ButtonAction, ButtonData};
use crate::settings::{TelegramError, TelegramSettings};
use crate::throttle::ChatThrottle;

/// The smallest chunk the sink splits a rejected "too long" message into.
const MIN_SPLIT_CHARS: usize = 64;

/// Extra time the HTTP client allows beyond the long-poll timeout before it gives up.
const CLIENT_TIMEOUT_MARGIN: Duration = Duration::from_secs(15);

/// A Bot API client with the per-chat pacing and retry rules shared by all sinks.
#[derive(Clone)]
pub struct TelegramClient {
    bot: Bot,
    throttle: Arc<ChatThrottle>,
    max_retries: u32,
    max_retry_after: Duration,
}

impl TelegramClient {
    /// Builds the client from settings: token, optional API URL and edit interval.
    pub fn new(settings: &TelegramSettings) -> Result<Self, TelegramError> {
        let token = settings.token()?;
        let timeout =
            Duration::from_secs(u64::from(settings.poll_timeout_secs)) + CLIENT_TIMEOUT_MARGIN;
        let http = teloxide::net::default_reqwest_settings()
            .timeout(timeout)
            .build()
            .map_err(|err| TelegramError::HttpClient(err.to_string()))?;
        let mut bot = Bot::with_client(token.expose(), http);
        if let Some(url) = settings.api_base()? {
            bot = bot.set_api_url(url);
        }
        Ok(TelegramClient {
            bot,
            throttle: Arc::new(ChatThrottle::new(settings.edit_interval())),
            max_retries: settings.max_retries,
            max_retry_after: Duration::from_secs(settings.max_retry_after_secs),
        })
    }

    /// Returns the underlying teloxide bot, for calls the adapter does not wrap.
    pub fn bot(&self) -> &Bot {
        &self.bot
    }

    /// Creates a sink that answers in `chat`, inside forum topic `thread` when set,
    /// as a reply to message `reply_to` when set.
    pub fn sink(&self, chat: i64, thread: Option<i32>, reply_to: Option<i32>) -> TelegramSink {
        TelegramSink {
            client: self.clone(),
            chat: ChatId(chat),
            thread: thread.map(|id| ThreadId(MessageId(id))),
            reply_to: reply_to.map(MessageId),
            preview: None,
            shown: String::new(),
        }
    }

    /// Runs `call`, waiting for the chat's pacing slot first when `paced`, and waits
    /// out each 429 `retry_after` up to the configured number of retries.
    async fn with_retry<T, F, Fut>(
        &self,
        chat: ChatId,
        paced: bool,
        mut call: F,
    ) -> Result<T, RequestError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RequestError>>,
    {
        let mut retries = 0;
        loop {
            if paced {
                self.throttle.acquire(chat.0).await;
            }
            match call().await {
                Err(RequestError::RetryAfter(after))
                    if retries < self.max_retries && after.duration() <= self.max_retry_after =>
                {
                    retries += 1;
                    tracing::warn!(
                        chat = chat.0,
                        retry_after_secs = after.seconds(),
                        retries,
                        "Telegram rate limit, waiting"
                    );
                    self.throttle.defer(chat.0, after.duration());
                    if !paced {
                        tokio::time::sleep(after.duration()).await;
                    }
                }
                other => return other,
            }
        }
    }
}

/// Shows one answer in one Telegram chat.
///
/// `progress` sends a plain-text preview message and then edits it, at most once per
/// edit interval per chat; calls that come sooner are skipped, because each call
/// carries the whole text so far. `finish` replaces the preview with the first chunk
/// of the final reply and sends further chunks as new messages.
pub struct TelegramSink {
    client: TelegramClient,
    chat: ChatId,
    thread: Option<ThreadId>,
    reply_to: Option<MessageId>,
    preview: Option<MessageId>,
    shown: String,
}

enum Delivery {
    Sent(MessageId),
    TooLong,
}

impl TelegramSink {
    fn send_message(
        &self,
        text: &str,
        html: bool,
        keyboard: Option<&InlineKeyboardMarkup>,
    ) -> teloxide::requests::JsonRequest<teloxide::payloads::SendMessage> {
        let mut request = self.client.bot.send_message(self.chat, text);
        if html {
            request = request.parse_mode(ParseMode::Html);
        }
        if let Some(thread) = self.thread {
            request = request.message_thread_id(thread);
        }
        if let Some(reply_to) = self.reply_to {
            request = request
                .reply_parameters(ReplyParameters::new(reply_to).allow_sending_without_reply());
        }
        if let Some(keyboard) = keyboard {
            request = request.reply_markup(keyboard.clone());
        }
        request
    }

    fn edit_message(
        &self,
        id: MessageId,
        text: &str,
        html: bool,
        keyboard: Option<&InlineKeyboardMarkup>,
    ) -> teloxide::requests::JsonRequest<teloxide::payloads::EditMessageText> {
        let mut request = self.client.bot.edit_message_text(self.chat, id, text);
        if html {
            request = request.parse_mode(ParseMode::Html);
        }
        if let Some(keyboard) = keyboard {
            request = request.reply_markup(keyboard.clone());
        }
        request
    }

    /// Sends or edits one chunk, falling back to plain text when Telegram rejects the
    /// markup and to a new message when the message to edit is gone.
    async fn deliver(
        &self,
        chunk: &Chunk,
        mut edit_target: Option<MessageId>,
        keyboard: Option<&InlineKeyboardMarkup>,
    ) -> Result<Delivery, SinkError> {
        let mut html = chunk.html.is_some();
        loop {
            let text = if html {
                chunk.html.as_deref().unwrap_or(&chunk.plain)
            } else {
                chunk.plain.as_str()
            };
            let result = match edit_target {
                Some(id) => {
                    self.client
                        .with_retry(self.chat, true, || {
                            self.edit_message(id, text, html, keyboard).send()
                        })
                        .await
                }
                None => {
                    self.client
                        .with_retry(self.chat, true, || {
                            self.send_message(text, html, keyboard).send()
                        })
                        .await
                }
            };
            match result {
                Ok(message) => return Ok(Delivery::Sent(message.id)),
                Err(RequestError::Api(err)) if edit_target.is_some() && is_not_modified(&err) => {
                    return Ok(Delivery::Sent(edit_target.unwrap_or(MessageId(0))));
                }
                Err(RequestError::Api(ApiError::CantParseEntities(reason))) if html => {
                    tracing::warn!(chat = self.chat.0, %reason, "Telegram rejected the HTML, resending as plain text");
                    html = false;
                }
                Err(RequestError::Api(
                    ApiError::MessageIsTooLong | ApiError::EditedMessageIsTooLong,
                )) => {
                    return Ok(Delivery::TooLong);
                }
                Err(RequestError::Api(
                    ApiError::MessageToEditNotFound | ApiError::MessageCantBeEdited,
                )) if edit_target.is_some() => {
                    tracing::warn!(
                        chat = self.chat.0,
                        "preview message cannot be edited, sending a new message"
                    );
                    edit_target = None;
                }
                Err(err) => return Err(sink_error(err)),
            }
        }
    }
}

#[async_trait]
impl ReplySink for TelegramSink {
    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities {
            progress: ProgressStyle::Push {
                min_interval: self.client.throttle.interval(),
            },
            max_progress_len: Some(MAX_MESSAGE_CHARS),
            unit: LengthUnit::Chars,
        }
    }

    async fn start(&mut self) -> Result<(), SinkError> {
        let mut request = self
            .client
            .bot
            .send_chat_action(self.chat, ChatAction::Typing);
        if let Some(thread) = self.thread {
            request = request.message_thread_id(thread);
        }
        // A chat action is not a message, so it does not take the chat's pacing slot.
        self.client
            .with_retry(self.chat, false, || request.send_ref())
            .await
            .map(|_| ())
            .map_err(sink_error)
    }

    async fn progress(&mut self, text: &str) -> Result<(), SinkError> {
        let preview = html::truncate_preview(text.trim(), MAX_MESSAGE_CHARS);
        if preview.is_empty() || preview == self.shown {
            return Ok(());
        }
        if !self.client.throttle.try_acquire(self.chat.0) {
            return Ok(());
        }
        let result = match self.preview {
            Some(id) => self.edit_message(id, preview, false, None).send().await,
            None => self.send_message(preview, false, None).send().await,
        };
        match result {
            Ok(message) => {
                self.preview = Some(message.id);
                self.shown = preview.to_string();
                Ok(())
            }
            Err(RequestError::Api(err)) if is_not_modified(&err) => {
                self.shown = preview.to_string();
                Ok(())
            }
            Err(RequestError::RetryAfter(after)) => {
                // Skip this preview; the chat stays paused until retry_after has passed.
                tracing::warn!(
                    chat = self.chat.0,
                    retry_after_secs = after.seconds(),
                    "Telegram rate limit on a preview"
                );
                self.client.throttle.defer(self.chat.0, after.duration());
                Ok(())
            }
            Err(err) => Err(sink_error(err)),
        }
    }

    async fn finish(&mut self, reply: &Reply) -> Result<Delivered, SinkError> {
        let (chunks, card_lang) = match reply {
            Reply::Card(card) => (html::card_chunks(card, MAX_MESSAGE_CHARS), Some(card.lang)),
            Reply::Text { text, .. } => (html::text_chunks(text, MAX_MESSAGE_CHARS), None),
        };
        if chunks.is_empty() {
            return Err(SinkError::Rejected(
                "the reply has no text to send".to_string(),
            ));
        }

        let mut queue: VecDeque<Chunk> = chunks.into();
        let mut edit_target = self.preview.take();
        let mut ids: Vec<MessageId> = Vec::new();
        while let Some(chunk) = queue.pop_front() {
            let keyboard = match card_lang {
                Some(lang) if queue.is_empty() => Some(card_keyboard(lang, ids.first().copied())),
                _ => None,
            };
            match self.deliver(&chunk, edit_target, keyboard.as_ref()).await? {
                Delivery::Sent(id) => {
                    ids.push(id);
                    edit_target = None;
                }
                Delivery::TooLong => {
                    let len = chunk
                        .plain
                        .chars()
                        .count()
                        .max(chunk.html.as_deref().map_or(0, |h| h.chars().count()));
                    let limit = len / 2;
                    let parts = html::split_chunk(&chunk, limit.max(MIN_SPLIT_CHARS));
                    if limit < MIN_SPLIT_CHARS || parts.len() < 2 {
                        return Err(SinkError::Rejected(
                            "Telegram rejected a message as too long".to_string(),
                        ));
                    }
                    tracing::warn!(
                        chat = self.chat.0,
                        parts = parts.len(),
                        "Telegram rejected a chunk as too long, splitting it"
                    );
                    for part in parts.into_iter().rev() {
                        queue.push_front(part);
                    }
                }
            }
        }
        Ok(Delivered {
            message_ids: ids
                .iter()
                .map(|id| format!("{}:{}", self.chat.0, id.0))
                .collect(),
        })
    }
}

/// Builds the 👍 / 👎 / "More questions" keyboard; `answer` is the first message of the
/// answer when it differs from the message carrying the keyboard.
pub fn card_keyboard(lang: Lang, answer: Option<MessageId>) -> InlineKeyboardMarkup {
    let data = |action| {
        ButtonData {
            action,
            lang,
            answer_message: answer.map(|id| id.0),
        }
        .encode()
    };
    InlineKeyboardMarkup::new([
        vec![
            InlineKeyboardButton::callback("👍", data(ButtonAction::Rate(Rating::Up))),
            InlineKeyboardButton::callback("👎", data(ButtonAction::Rate(Rating::Down))),
        ],
        vec![InlineKeyboardButton::callback(
            lang.pick("更多提问", "More questions"),
            data(ButtonAction::MoreQuestions),
        )],
    ])
}

fn is_not_modified(err: &ApiError) -> bool {
    match err {
        ApiError::MessageNotModified => true,
        ApiError::Unknown(text) => text.starts_with("Bad Request: message is not modified"),
        _ => false,
    }
}

/// Maps a Bot API failure onto the channel contract's error kinds.
pub(crate) fn sink_error(err: RequestError) -> SinkError {
    match err {
        RequestError::RetryAfter(after) => SinkError::RateLimited(after.duration()),
        RequestError::MigrateToChatId(chat) => {
            SinkError::Closed(format!("the group moved to supergroup {}", chat.0))
        }
        RequestError::Api(
            api @ (ApiError::BotBlocked
            | ApiError::BotKicked
            | ApiError::BotKickedFromSupergroup
            | ApiError::BotKickedFromChannel
            | ApiError::ChatNotFound
            | ApiError::UserDeactivated
            | ApiError::CantInitiateConversation
            | ApiError::CantTalkWithBots
            | ApiError::GroupDeactivated),
        ) => SinkError::Closed(api.to_string()),
        RequestError::Api(api) => SinkError::Rejected(api.to_string()),
        RequestError::Network(err) => SinkError::Transport(err.to_string()),
        RequestError::Io(err) => SinkError::Transport(err.to_string()),
        RequestError::InvalidJson { source, .. } => {
            SinkError::Transport(format!("invalid JSON from the Bot API: {source}"))
        }
    }
}
