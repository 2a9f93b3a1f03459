//! The AI robot in long-connection mode: a WebSocket to WeCom, no public URL.
//!
//! Frames are JSON objects `{"cmd", "headers": {"req_id"}, "body"}`. The client
//! subscribes with the bot id and secret, sends a `ping` every 30 seconds, and
//! reconnects with exponential backoff (1 s doubling to 60 s) when the socket
//! closes or the subscription fails. User messages arrive as `aibot_msg_callback`;
//! the answer is pushed as `aibot_respond_msg` stream frames that reuse the
//! callback's `req_id`. All frames go through one writer task per connection, and
//! each stream id has exactly one [`WecomPushSink`] writing to it.
//!
//! NOTE: the frame shapes follow WeCom's long-connection page (path/101463); the
//! subscribe acknowledgement (`errcode` in the frame that echoes the `req_id`) and
//! the `aibot_send_msg` body are assumptions that no live server has confirmed.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use maxwin_channel::{
    Accepted, Delivered, Handler, LengthUnit, ProgressStyle, Reply, ReplySink, SinkCapabilities,
    SinkError,
};

use crate::bot::{BotSettings, STREAM_WINDOW, parse_feedback, parse_message};
use crate::render::{STREAM_MAX_BYTES, split_bytes, stream_markdown, truncate_bytes};

const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How long to wait for the subscribe acknowledgement.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Stream updates are pushed at most this often; the final frame is never skipped.
const PUSH_INTERVAL: Duration = Duration::from_millis(800);
const OUTBOX_CAPACITY: usize = 1024;

const CONTINUED_NOTE: &str = "\n\n……（未完，见下一条 / continued in the next message）";

/// A failure of the long connection.
#[derive(Debug, thiserror::Error)]
pub enum LongConnError {
    #[error("wecom setting `{0}` is missing")]
    Missing(&'static str),
    #[error("WebSocket connection failed: {0}")]
    Connect(String),
    #[error("subscription rejected with errcode {errcode}: {errmsg}")]
    Subscribe { errcode: i64, errmsg: String },
    #[error("no subscription acknowledgement within {0:?}")]
    SubscribeTimeout(Duration),
    #[error("connection closed")]
    Closed,
}

fn new_req_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn frame(cmd: &str, req_id: &str, body: Value) -> String {
    json!({ "cmd": cmd, "headers": { "req_id": req_id }, "body": body }).to_string()
}

/// Runs the long connection until `shutdown` resolves, reconnecting as needed.
pub async fn run(
    settings: BotSettings,
    handler: Arc<dyn Handler>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), LongConnError> {
    if settings.bot_id.trim().is_empty() {
        return Err(LongConnError::Missing("wecom.bot.bot_id"));
    }
    if settings.secret.is_empty() {
        return Err(LongConnError::Missing("wecom.bot.secret"));
    }
    let (outbox, mut pending) = mpsc::channel::<String>(OUTBOX_CAPACITY);
    tokio::pin!(shutdown);

    let mut backoff = BACKOFF_MIN;
    loop {
        let session = connect_and_serve(&settings, &handler, &outbox, &mut pending, &mut backoff);
        tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("WeCom long connection stopped");
                return Ok(());
            }
            result = session => {
                match result {
                    Ok(()) => tracing::warn!("WeCom long connection closed; reconnecting"),
                    Err(error) => tracing::warn!(%error, "WeCom long connection failed; reconnecting"),
                }
            }
        }
        tracing::info!(
            delay_ms = backoff.as_millis() as u64,
            "waiting before reconnecting to WeCom"
        );
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Connects, subscribes and serves frames until the socket closes.
async fn connect_and_serve(
    settings: &BotSettings,
    handler: &Arc<dyn Handler>,
    outbox: &mpsc::Sender<String>,
    pending: &mut mpsc::Receiver<String>,
    backoff: &mut Duration,
) -> Result<(), LongConnError> {
    let (socket, _) = tokio_tungstenite::connect_async(settings.ws_url.as_str())
        .await
        .map_err(|error| LongConnError::Connect(error.to_string()))?;
    let (mut writer, mut reader) = socket.split();

    let subscribe_id = new_req_id();
    let subscribe = frame(
        "aibot_subscribe",
        &subscribe_id,
        json!({ "bot_id": settings.bot_id.trim(), "secret": settings.secret.expose() }),
    );
    writer
        .send(Message::text(subscribe))
        .await
        .map_err(|error| LongConnError::Connect(error.to_string()))?;
    wait_subscribed(&mut reader, &subscribe_id).await?;
    tracing::info!("WeCom long connection subscribed");
    *backoff = BACKOFF_MIN;

    let mut heartbeat =
        tokio::time::interval_at(Instant::now() + HEARTBEAT_INTERVAL, HEARTBEAT_INTERVAL);
    loop {
        tokio::select! {
            _ = heartbeat.tick() => {
                let ping = frame("ping", &new_req_id(), json!({}));
                writer.send(Message::text(ping)).await.map_err(|_| LongConnError::Closed)?;
            }
            Some(text) = pending.recv() => {
                writer.send(Message::text(text)).await.map_err(|_| LongConnError::Closed)?;
            }
            incoming = reader.next() => {
                let Some(Ok(message)) = incoming else {
                    return Ok(());
                };
                match message {
                    Message::Text(text) => dispatch(text.as_str(), handler, outbox, &settings.names).await,
                    Message::Ping(payload) => {
                        writer.send(Message::Pong(payload)).await.map_err(|_| LongConnError::Closed)?;
                    }
                    Message::Close(_) => return Ok(()),
                    _ => {}
                }
            }
        }
    }
}

async fn wait_subscribed<S>(reader: &mut S, req_id: &str) -> Result<(), LongConnError>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let wait = async {
        while let Some(message) = reader.next().await {
            let Ok(Message::Text(text)) = message else {
                continue;
            };
            let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            if value.pointer("/headers/req_id").and_then(Value::as_str) != Some(req_id) {
                continue;
            }
            let errcode = value.get("errcode").and_then(Value::as_i64).unwrap_or(0);
            if errcode != 0 {
                let errmsg = value
                    .get("errmsg")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                return Err(LongConnError::Subscribe {
                    errcode,
                    errmsg: errmsg.to_string(),
                });
            }
            return Ok(());
        }
        Err(LongConnError::Closed)
    };
    tokio::time::timeout(SUBSCRIBE_TIMEOUT, wait)
        .await
        .map_err(|_| LongConnError::SubscribeTimeout(SUBSCRIBE_TIMEOUT))?
}

/// Handles one frame from WeCom.
async fn dispatch(
    text: &str,
    handler: &Arc<dyn Handler>,
    outbox: &mpsc::Sender<String>,
    names: &[String],
) {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        tracing::warn!("unparsable frame on the WeCom long connection ignored");
        return;
    };
    let cmd = value.get("cmd").and_then(Value::as_str).unwrap_or_default();
    let req_id = value
        .pointer("/headers/req_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let body = value.get("body").cloned().unwrap_or(Value::Null);
    match cmd {
        "aibot_msg_callback" => {
            let Some(inbound) = parse_message(&body, names) else {
                tracing::debug!("WeCom long-connection message ignored");
                return;
            };
            let chat_id = inbound.conversation.clone();
            let is_group = !inbound.is_direct;
            let sink = WecomPushSink::new(outbox.clone(), req_id, chat_id, is_group);
            let message_id = inbound.message_id.clone();
            match handler.accept(inbound, Box::new(sink)).await {
                Ok(Accepted::Queued) => {
                    tracing::debug!(%message_id, "WeCom long-connection message queued")
                }
                Ok(other) => {
                    tracing::debug!(%message_id, ?other, "WeCom long-connection message not answered")
                }
                Err(error) => {
                    tracing::error!(%error, %message_id, "handler could not accept WeCom long-connection message")
                }
            }
        }
        "aibot_event_callback" => {
            if let Some(feedback) = parse_feedback(&body)
                && let Err(error) = handler.feedback(feedback).await
            {
                tracing::error!(%error, "could not store WeCom AI robot feedback");
            }
            let event = body
                .pointer("/event/eventtype")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if event == "disconnected_event" {
                tracing::warn!(
                    "WeCom closed this long connection because another one opened for the same robot"
                );
            }
        }
        _ => {}
    }
}

/// Pushes one streamed answer over the long connection.
pub struct WecomPushSink {
    outbox: mpsc::Sender<String>,
    req_id: String,
    stream_id: String,
    chat_id: String,
    is_group: bool,
    started_at: Instant,
    last_push: Option<Instant>,
    closed: bool,
}

impl WecomPushSink {
    pub fn new(
        outbox: mpsc::Sender<String>,
        req_id: String,
        chat_id: String,
        is_group: bool,
    ) -> Self {
        WecomPushSink {
            outbox,
            req_id,
            stream_id: new_req_id(),
            chat_id,
            is_group,
            started_at: Instant::now(),
            last_push: None,
            closed: false,
        }
    }

    async fn push(&mut self, content: &str, finish: bool) -> Result<(), SinkError> {
        let mut stream = json!({ "id": self.stream_id, "finish": finish, "content": content });
        if finish {
            stream["feedback"] = json!({ "id": self.stream_id });
        }
        let body = json!({ "msgtype": "stream", "stream": stream });
        self.outbox
            .send(frame("aibot_respond_msg", &self.req_id, body))
            .await
            .map_err(|_| SinkError::Closed("long connection stopped".into()))?;
        self.last_push = Some(Instant::now());
        Ok(())
    }

    async fn send_markdown(&self, content: &str) -> Result<(), SinkError> {
        let body = json!({
            "chatid": self.chat_id,
            "chat_type": if self.is_group { 2 } else { 1 },
            "msgtype": "markdown",
            "markdown": { "content": content },
        });
        self.outbox
            .send(frame("aibot_send_msg", &new_req_id(), body))
            .await
            .map_err(|_| SinkError::Closed("long connection stopped".into()))
    }

    fn window_open(&self) -> bool {
        Instant::now().duration_since(self.started_at) < STREAM_WINDOW
    }
}

#[async_trait]
impl ReplySink for WecomPushSink {
    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities {
            progress: ProgressStyle::Push {
                min_interval: PUSH_INTERVAL,
            },
            max_progress_len: Some(STREAM_MAX_BYTES - CONTINUED_NOTE.len()),
            unit: LengthUnit::Bytes,
        }
    }

    async fn start(&mut self) -> Result<(), SinkError> {
        self.push("", false).await
    }

    async fn progress(&mut self, text: &str) -> Result<(), SinkError> {
        if self.closed || !self.window_open() {
            return Err(SinkError::Closed("stream window closed".into()));
        }
        if self
            .last_push
            .is_some_and(|at| Instant::now().duration_since(at) < PUSH_INTERVAL)
        {
            return Ok(());
        }
        let limit = STREAM_MAX_BYTES - CONTINUED_NOTE.len();
        self.push(truncate_bytes(text, limit), false).await
    }

    async fn finish(&mut self, reply: &Reply) -> Result<Delivered, SinkError> {
        let markdown = stream_markdown(reply);
        let mut chunks = split_bytes(&markdown, STREAM_MAX_BYTES - CONTINUED_NOTE.len());
        if chunks.is_empty() {
            chunks.push(String::new());
        }
        if self.window_open() {
            let mut first = chunks.remove(0);
            if !chunks.is_empty() {
                first.push_str(CONTINUED_NOTE);
            }
            self.push(&first, true).await?;
        } else {
            // Too late to update the stream: close it and send the whole answer.
            self.push("", true).await?;
        }
        self.closed = true;
        for chunk in chunks {
            self.send_markdown(&chunk).await?;
        }
        Ok(Delivered {
            message_ids: vec![self.stream_id.clone()],
        })
    }
}
