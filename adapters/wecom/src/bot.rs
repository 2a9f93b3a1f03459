//! The AI robot (智能机器人) in callback mode: encrypted JSON callbacks, pulled
//! stream replies, `response_url` follow-ups and 👍/👎 feedback events.
//!
//! A user message is answered at once with a stream id and empty content. WeCom
//! then polls with refresh callbacks for that id; each is answered from the
//! in-memory [`StreamStore`], which the [`WecomBotSink`] fills as the coach writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use maxwin_channel::{
    Delivered, Feedback, Handler, Inbound, LengthUnit, Platform, ProgressStyle, Rating, Reply,
    ReplySink, Secret, SinkCapabilities, SinkError,
};

use crate::api::http_client;
use crate::app::ConfigError;
use crate::crypto::{CallbackQuery, CryptoError, WecomCrypto};
use crate::mention::strip_bot_mention;
use crate::render::{STREAM_MAX_BYTES, stream_markdown, truncate_bytes};

/// WeCom stops accepting stream updates 6 minutes after the user's message; the
/// stream is closed a little earlier so the last refresh still lands.
pub const STREAM_WINDOW: Duration = Duration::from_secs(5 * 60 + 30);
/// Stream state is forgotten this long after it was created.
const STREAM_TTL: Duration = Duration::from_secs(15 * 60);

const CONTINUED_NOTE: &str = "\n\n……（未完，见下一条 / continued in the next message）";
const CUT_OFF_NOTE: &str =
    "\n\n……（回答较长，完整内容见下一条 / the full answer follows in the next message）";

/// Settings of the AI robot, config section `[wecom.bot]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct BotSettings {
    /// `callback` (HTTPS callback URL) or `long_connection` (WebSocket, no public URL).
    pub mode: BotMode,
    /// Callback mode: the HTTP path of the callback URL.
    pub path: String,
    /// Callback mode: the Token.
    pub token: Secret,
    /// Callback mode: the EncodingAESKey.
    pub encoding_aes_key: Secret,
    /// The robot's display names as users type them after `@`, used to strip the
    /// mention. When empty, the first `@word` of a group message is stripped.
    pub names: Vec<String>,
    /// Long-connection mode: the BotID.
    pub bot_id: String,
    /// Long-connection mode: the robot Secret.
    pub secret: Secret,
    /// Long-connection mode: the WebSocket URL.
    pub ws_url: String,
    /// Timeout of one `response_url` request in seconds; 0 disables it.
    pub http_timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BotMode {
    #[default]
    Callback,
    LongConnection,
}

impl Default for BotSettings {
    fn default() -> Self {
        BotSettings {
            mode: BotMode::Callback,
            path: "/wecom/bot".to_string(),
            token: Secret::default(),
            encoding_aes_key: Secret::default(),
            names: Vec::new(),
            bot_id: String::new(),
            secret: Secret::default(),
            ws_url: "wss://openws.work.weixin.qq.com".to_string(),
            http_timeout_secs: crate::api::DEFAULT_HTTP_TIMEOUT_SECS,
        }
    }
}

/// One stream's state as the refresh callbacks see it.
#[derive(Debug, Clone)]
pub struct StreamState {
    pub content: String,
    pub finished: bool,
    pub created_at: Instant,
    /// Set when the stream was closed before the answer was done (time or size);
    /// the sink then sends the full answer as a follow-up.
    pub cut_off: bool,
}

/// Stream states by stream id, plus the stream opened for each message id, so a
/// redelivered message gets the same stream.
#[derive(Default)]
pub struct StreamStore {
    streams: Mutex<HashMap<String, StreamState>>,
    by_message: Mutex<HashMap<String, String>>,
}

impl StreamStore {
    pub fn new() -> Arc<Self> {
        Arc::new(StreamStore::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, StreamState>> {
        self.streams
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Returns the stream id for `message_id`, opening a stream when it is new.
    /// The flag is true when the stream was created by this call.
    pub fn open(&self, message_id: &str) -> (String, bool) {
        let mut by_message = self.by_message.lock().unwrap_or_else(|p| p.into_inner());
        let mut streams = self.lock();
        let now = Instant::now();
        streams.retain(|_, state| now.duration_since(state.created_at) < STREAM_TTL);
        by_message.retain(|_, stream_id| streams.contains_key(stream_id));
        if let Some(stream_id) = by_message.get(message_id) {
            return (stream_id.clone(), false);
        }
        let stream_id = format!("{:032x}", rand::random::<u128>());
        streams.insert(
            stream_id.clone(),
            StreamState {
                content: String::new(),
                finished: false,
                created_at: now,
                cut_off: false,
            },
        );
        by_message.insert(message_id.to_string(), stream_id.clone());
        (stream_id, true)
    }

    /// Returns what a refresh callback should show, closing the stream when its
    /// window is about to end. `None` for an unknown id.
    pub fn refresh(&self, stream_id: &str) -> Option<(String, bool)> {
        let mut streams = self.lock();
        let state = streams.get_mut(stream_id)?;
        if !state.finished && Instant::now().duration_since(state.created_at) >= STREAM_WINDOW {
            close_cut_off(state);
        }
        Some((state.content.clone(), state.finished))
    }

    pub fn get(&self, stream_id: &str) -> Option<StreamState> {
        self.lock().get(stream_id).cloned()
    }

    fn update(&self, stream_id: &str, apply: impl FnOnce(&mut StreamState)) -> Option<StreamState> {
        let mut streams = self.lock();
        let state = streams.get_mut(stream_id)?;
        apply(state);
        Some(state.clone())
    }
}

fn close_cut_off(state: &mut StreamState) {
    let keep = STREAM_MAX_BYTES - CUT_OFF_NOTE.len();
    let mut content = truncate_bytes(&state.content, keep).to_string();
    content.push_str(CUT_OFF_NOTE);
    state.content = content;
    state.finished = true;
    state.cut_off = true;
}

/// The shared state of the AI robot callback route.
pub struct BotState {
    crypto: WecomCrypto,
    handler: Arc<dyn Handler>,
    streams: Arc<StreamStore>,
    names: Vec<String>,
    http: reqwest::Client,
}

/// Builds the axum route of the AI robot callback URL.
pub fn bot_router(
    settings: &BotSettings,
    handler: Arc<dyn Handler>,
) -> Result<Router, ConfigError> {
    let (router, _) = bot_router_with_store(settings, handler)?;
    Ok(router)
}

/// Like [`bot_router`], also returning the stream store (for tests and metrics).
pub fn bot_router_with_store(
    settings: &BotSettings,
    handler: Arc<dyn Handler>,
) -> Result<(Router, Arc<StreamStore>), ConfigError> {
    if settings.token.is_empty() {
        return Err(ConfigError::Missing("wecom.bot.token"));
    }
    // The AI robot's receive id is the empty string.
    let crypto =
        WecomCrypto::new(&settings.token, &settings.encoding_aes_key, "").map_err(|source| {
            ConfigError::Invalid {
                key: "wecom.bot.encoding_aes_key",
                source,
            }
        })?;
    let streams = StreamStore::new();
    let state = Arc::new(BotState {
        crypto,
        handler,
        streams: streams.clone(),
        names: settings.names.clone(),
        http: http_client(settings.http_timeout_secs),
    });
    let router = Router::new()
        .route(&settings.path, post(receive).get(verify_url))
        .with_state(state);
    Ok((router, streams))
}

fn status_for(error: &CryptoError) -> StatusCode {
    match error {
        CryptoError::InvalidSignature => StatusCode::UNAUTHORIZED,
        CryptoError::ReceiveIdMismatch => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_REQUEST,
    }
}

async fn verify_url(State(state): State<Arc<BotState>>, RawQuery(raw): RawQuery) -> Response {
    let query = CallbackQuery::parse(raw.as_deref());
    let Some(echostr) = query.echostr.as_deref() else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    match state.crypto.open(
        &query.msg_signature,
        &query.timestamp,
        &query.nonce,
        echostr,
    ) {
        Ok(plain) => (StatusCode::OK, plain).into_response(),
        Err(error) => {
            tracing::warn!(%error, "WeCom AI robot URL verification failed");
            status_for(&error).into_response()
        }
    }
}

async fn receive(
    State(state): State<Arc<BotState>>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let query = CallbackQuery::parse(raw.as_deref());
    let Some(encrypt) = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|value| {
            value
                .get("encrypt")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
    else {
        tracing::warn!("WeCom AI robot callback without an encrypt field");
        return StatusCode::BAD_REQUEST.into_response();
    };
    let plain = match state.crypto.open(
        &query.msg_signature,
        &query.timestamp,
        &query.nonce,
        &encrypt,
    ) {
        Ok(plain) => plain,
        Err(error) => {
            tracing::warn!(%error, "WeCom AI robot callback rejected");
            return status_for(&error).into_response();
        }
    };
    let Ok(payload) = serde_json::from_str::<Value>(&plain) else {
        tracing::warn!(
            "signed WeCom AI robot callback has unparsable JSON; acknowledged and dropped"
        );
        return StatusCode::OK.into_response();
    };

    match handle_payload(&state, &payload).await {
        Ok(Some(reply)) => encrypted_reply(&state.crypto, &query.nonce, &reply),
        Ok(None) => StatusCode::OK.into_response(),
        Err(status) => status.into_response(),
    }
}

/// Returns the reply body for a decrypted callback, `None` for an empty 200.
async fn handle_payload(state: &BotState, payload: &Value) -> Result<Option<Value>, StatusCode> {
    let msgtype = str_at(payload, &["msgtype"]);
    match msgtype {
        "stream" => {
            let stream_id = str_at(payload, &["stream", "id"]);
            Ok(Some(match state.streams.refresh(stream_id) {
                Some((content, finished)) => stream_body(stream_id, &content, finished),
                // Unknown id (expired or from before a restart): end the polling.
                None => stream_body(stream_id, "", true),
            }))
        }
        "event" => {
            if let Some(feedback) = parse_feedback(payload)
                && let Err(error) = state.handler.feedback(feedback).await
            {
                tracing::error!(%error, "could not store WeCom AI robot feedback");
                return Err(StatusCode::SERVICE_UNAVAILABLE);
            }
            Ok(None)
        }
        _ => {
            let Some(inbound) = parse_message(payload, &state.names) else {
                tracing::debug!(msgtype, "WeCom AI robot callback ignored");
                return Ok(None);
            };
            let (stream_id, created) = state.streams.open(&inbound.message_id);
            let sink = WecomBotSink::callback(
                state.streams.clone(),
                stream_id.clone(),
                str_at(payload, &["response_url"]).to_string(),
                state.http.clone(),
            );
            let message_id = inbound.message_id.clone();
            match state.handler.accept(inbound, Box::new(sink)).await {
                Ok(maxwin_channel::Accepted::Ignored) => Ok(None),
                Ok(accepted) => {
                    tracing::debug!(%message_id, ?accepted, created, "WeCom AI robot message accepted");
                    if accepted == maxwin_channel::Accepted::Duplicate && created {
                        // The core handled this message before this process opened
                        // the stream (a restart), so nothing will write to it.
                        state
                            .streams
                            .update(&stream_id, |stream| stream.finished = true);
                    }
                    let (content, finished) = state.streams.refresh(&stream_id).unwrap_or_default();
                    Ok(Some(stream_body(&stream_id, &content, finished)))
                }
                Err(error) => {
                    tracing::error!(%error, %message_id, "handler could not accept WeCom AI robot message");
                    Err(StatusCode::SERVICE_UNAVAILABLE)
                }
            }
        }
    }
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    let mut current = value;
    for key in path {
        match current.get(key) {
            Some(next) => current = next,
            None => return "",
        }
    }
    current.as_str().unwrap_or_default()
}

/// Builds the `stream` reply; the stream id doubles as the feedback id.
pub fn stream_body(stream_id: &str, content: &str, finished: bool) -> Value {
    let mut stream = json!({ "id": stream_id, "finish": finished, "content": content });
    if finished {
        stream["feedback"] = json!({ "id": stream_id });
    }
    json!({ "msgtype": "stream", "stream": stream })
}

fn encrypted_reply(crypto: &WecomCrypto, nonce: &str, reply: &Value) -> Response {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        .to_string();
    let encrypt = crypto.encrypt(&reply.to_string());
    let body = json!({
        "encrypt": encrypt,
        "msgsignature": crypto.sign(&timestamp, nonce, &encrypt),
        "timestamp": timestamp.parse::<u64>().unwrap_or_default(),
        "nonce": nonce,
    });
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Turns a user message (callback or long connection) into an [`Inbound`].
pub fn parse_message(payload: &Value, names: &[String]) -> Option<Inbound> {
    let msgtype = str_at(payload, &["msgtype"]);
    let raw_text = match msgtype {
        "text" => str_at(payload, &["text", "content"]).to_string(),
        // Voice arrives already transcribed.
        "voice" => str_at(payload, &["voice", "content"]).to_string(),
        "mixed" => payload
            .pointer("/mixed/msg_item")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .map(|item| str_at(item, &["text", "content"]))
                    .filter(|text| !text.is_empty())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default(),
        _ => return None,
    };
    let message_id = str_at(payload, &["msgid"]).trim();
    let user = str_at(payload, &["from", "userid"]).trim();
    if message_id.is_empty() || user.is_empty() {
        return None;
    }
    let is_group = str_at(payload, &["chattype"]) == "group";
    let (text, mentioned) = if is_group {
        strip_bot_mention(&raw_text, names)
    } else {
        (raw_text.trim().to_string(), false)
    };
    if text.is_empty() {
        return None;
    }
    let chat_id = str_at(payload, &["chatid"]).trim();
    let conversation = if is_group && !chat_id.is_empty() {
        chat_id.to_string()
    } else {
        user.to_string()
    };
    Some(Inbound {
        platform: Platform::Wecom,
        tenant: format!("aibot:{}", str_at(payload, &["aibotid"]).trim()),
        conversation,
        thread: None,
        user: user.to_string(),
        display_name: None,
        text,
        is_direct: !is_group,
        // Group messages reach the robot only when it is @-mentioned.
        mentions_bot: is_group || mentioned,
        replies_to_bot: false,
        message_id: message_id.to_string(),
        received_at: chrono::Utc::now(),
    })
}

/// Turns a `feedback_event` into a [`Feedback`].
///
/// NOTE: the field names (`feedback_event.id`, `type` 1 = accurate, 2 = inaccurate,
/// `content`) are assumed from WeCom's event documentation (path/101027) and have
/// not been checked against a live robot.
pub fn parse_feedback(payload: &Value) -> Option<Feedback> {
    if str_at(payload, &["event", "eventtype"]) != "feedback_event" {
        return None;
    }
    let event = payload.pointer("/event/feedback_event")?;
    let answer = str_at(event, &["id"]).trim();
    if answer.is_empty() {
        return None;
    }
    let rating = match event.get("type").and_then(Value::as_i64) {
        Some(1) => Some(Rating::Up),
        Some(2) => Some(Rating::Down),
        _ => None,
    };
    let comment = Some(str_at(event, &["content"]).trim().to_string()).filter(|c| !c.is_empty());
    let user = str_at(payload, &["from", "userid"]).trim().to_string();
    let chat = str_at(payload, &["chatid"]).trim();
    let msgid = str_at(payload, &["msgid"]).trim();
    Some(Feedback {
        platform: Platform::Wecom,
        tenant: format!("aibot:{}", str_at(payload, &["aibotid"]).trim()),
        conversation: if chat.is_empty() {
            user.clone()
        } else {
            chat.to_string()
        },
        user,
        answer_message_id: answer.to_string(),
        rating,
        comment,
        event_id: if msgid.is_empty() {
            format!("feedback:{answer}")
        } else {
            msgid.to_string()
        },
        received_at: chrono::Utc::now(),
    })
}

/// Writes one answer into a stream that WeCom pulls (callback mode).
///
/// It is the only writer of its stream id. Progress is cut to the 20,480-byte
/// stream cap. A final answer that does not fit, or that arrives after the stream
/// was closed, continues through the one-shot `response_url`.
pub struct WecomBotSink {
    streams: Arc<StreamStore>,
    stream_id: String,
    response_url: String,
    http: reqwest::Client,
}

impl WecomBotSink {
    pub fn callback(
        streams: Arc<StreamStore>,
        stream_id: String,
        response_url: String,
        http: reqwest::Client,
    ) -> Self {
        WecomBotSink {
            streams,
            stream_id,
            response_url,
            http,
        }
    }

    async fn follow_up(&self, markdown: &str) -> Result<(), SinkError> {
        if self.response_url.is_empty() {
            return Err(SinkError::Closed(
                "no response_url for the follow-up".into(),
            ));
        }
        let body = json!({
            "msgtype": "markdown",
            "markdown": { "content": truncate_bytes(markdown, STREAM_MAX_BYTES) },
        });
        let response = self
            .http
            .post(&self.response_url)
            .json(&body)
            .send()
            .await
            .map_err(|error| SinkError::Transport(error.without_url().to_string()))?;
        let value: Value = response
            .json()
            .await
            .map_err(|error| SinkError::Transport(error.without_url().to_string()))?;
        match value.get("errcode").and_then(Value::as_i64).unwrap_or(0) {
            0 => Ok(()),
            errcode => Err(SinkError::Rejected(format!(
                "response_url returned errcode {errcode}"
            ))),
        }
    }
}

/// Splits a final answer into the stream content and the follow-up, if any.
///
/// The stream takes as much as fits. It is cut at the last line break when the
/// rest still fits in the one follow-up, and inside the line otherwise, so that a
/// long paragraph does not push the whole tail into the follow-up, which is cut.
fn split_final(markdown: &str) -> (String, Option<String>) {
    if markdown.len() <= STREAM_MAX_BYTES {
        return (markdown.to_string(), None);
    }
    let room = truncate_bytes(markdown, STREAM_MAX_BYTES - CONTINUED_NOTE.len()).len();
    let cut = markdown[..room]
        .rfind('\n')
        .filter(|&at| markdown.len() - at - 1 <= STREAM_MAX_BYTES)
        .unwrap_or(room);
    let mut first = markdown[..cut].trim_end_matches('\n').to_string();
    first.push_str(CONTINUED_NOTE);
    let rest = markdown[cut..].trim_start_matches('\n').to_string();
    if rest.len() > STREAM_MAX_BYTES {
        // NOTE: response_url works once, so text beyond two 20 KB messages is cut.
        tracing::warn!(
            bytes = markdown.len(),
            "AI robot answer exceeds two messages; the end is cut"
        );
    }
    (first, Some(rest))
}

#[async_trait]
impl ReplySink for WecomBotSink {
    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities {
            progress: ProgressStyle::Pull,
            max_progress_len: Some(STREAM_MAX_BYTES - CUT_OFF_NOTE.len()),
            unit: LengthUnit::Bytes,
        }
    }

    async fn start(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn progress(&mut self, text: &str) -> Result<(), SinkError> {
        let limit = STREAM_MAX_BYTES - CUT_OFF_NOTE.len();
        let state = self.streams.update(&self.stream_id, |state| {
            if !state.finished {
                state.content = truncate_bytes(text, limit).to_string();
            }
        });
        match state {
            Some(state) if state.finished => Err(SinkError::Closed("stream window closed".into())),
            Some(_) => Ok(()),
            None => Err(SinkError::Closed("stream expired".into())),
        }
    }

    async fn finish(&mut self, reply: &Reply) -> Result<Delivered, SinkError> {
        let markdown = stream_markdown(reply);
        let (first, rest) = split_final(&markdown);
        let mut follow_up = rest;
        let state = self.streams.update(&self.stream_id, |state| {
            if state.finished {
                // The window closed before the answer was done: send it whole.
                follow_up = Some(markdown.clone());
            } else {
                state.content = first.clone();
                state.finished = true;
            }
        });
        if state.is_none() {
            follow_up = Some(markdown.clone());
        }
        if let Some(text) = follow_up.filter(|text| !text.trim().is_empty()) {
            self.follow_up(&text).await?;
        }
        Ok(Delivered {
            message_ids: vec![self.stream_id.clone()],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_final_keeps_long_line_whole() {
        let long_line = "第一步复述顾虑并给案例。".repeat(650);
        let markdown = format!("# 标题\n\n**诊断：** 短\n\n* {long_line}\n\n### 后续策略\n* 收尾");
        assert!(markdown.len() > STREAM_MAX_BYTES);
        assert!(markdown.len() < 2 * STREAM_MAX_BYTES - CONTINUED_NOTE.len());

        let (first, rest) = split_final(&markdown);
        let rest = rest.expect("a follow-up");

        assert!(first.len() <= STREAM_MAX_BYTES);
        assert!(rest.len() <= STREAM_MAX_BYTES);
        let stream_text = first
            .strip_suffix(CONTINUED_NOTE)
            .expect("the note ends the stream");
        let joined: String = format!("{stream_text}{rest}")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let expected: String = markdown.chars().filter(|c| !c.is_whitespace()).collect();
        assert_eq!(joined, expected);
    }

    #[test]
    fn split_final_prefers_line_break() {
        let line = "先确认客户的真实顾虑。\n";
        let markdown = line.repeat(STREAM_MAX_BYTES / line.len() + 10);

        let (first, rest) = split_final(&markdown);
        let rest = rest.expect("a follow-up");

        let stream_text = first.strip_suffix(CONTINUED_NOTE).unwrap();
        assert!(stream_text.ends_with('。'), "cut at a line end");
        assert!(rest.starts_with('先'));
        assert!(
            format!("{stream_text}\n{rest}") == markdown,
            "nothing lost at the cut"
        );
    }
}
