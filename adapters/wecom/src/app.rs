//! The self-built app (自建应用): callback routes and the `message/send` reply sink.
//!
//! Status codes of the POST callback, chosen so that WeCom retries only what a
//! retry can fix:
//!
//! | case | status |
//! | --- | --- |
//! | body without a parsable `<Encrypt>` (nothing can be verified) | 400 |
//! | wrong `msg_signature` | 401 |
//! | wrong receive id (another corp's payload) | 403 |
//! | signed, but the ciphertext does not decrypt (EncodingAESKey mismatch) | 400 |
//! | signed, decrypted, but the inner XML does not parse | 200, logged |
//! | event, unknown message type, message without `MsgId`, empty `Content` | 200, ignored |
//! | text message handed to the core | 200 |
//! | the core could not store the dedupe key | 503, so WeCom redelivers |
//!
//! Every 200 has an empty body. The answer goes out later through `message/send`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use maxwin_channel::{
    Delivered, Handler, Inbound, LengthUnit, Platform, ProgressStyle, Reply, ReplySink, Secret,
    SinkCapabilities, SinkError,
};

use crate::api::{AppApi, DEFAULT_API_BASE};
use crate::crypto::{CallbackQuery, CryptoError, WecomCrypto};
use crate::pacer::{Pacer, RateWindow};
use crate::render::{APP_MESSAGE_MAX_BYTES, app_parts};
use crate::xml::{parse_envelope, parse_message};

/// Settings of the self-built app, config section `[wecom.app]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AppSettings {
    /// The WeCom API base URL; tests point it at a loopback mock.
    pub api_base: String,
    /// The corp id (企业ID); also the receive id inside every callback.
    pub corp_id: String,
    /// The app's AgentId.
    pub agent_id: i64,
    /// The app's Secret, used for `gettoken`.
    pub secret: Secret,
    /// The callback Token (used only for signatures).
    pub token: Secret,
    /// The 43-character callback EncodingAESKey.
    pub encoding_aes_key: Secret,
    /// The HTTP path of the callback URL.
    pub path: String,
    /// Sends a short "正在思考… / Thinking…" text before the answer. It costs one
    /// message of the member's per-minute quota, so it is off by default.
    pub thinking_notice: bool,
    /// Messages per member per minute. WeCom drops anything above 30 silently;
    /// the default leaves a margin for clock differences.
    pub per_member_per_minute: usize,
    /// Messages per member per hour. WeCom drops anything above 1000 silently.
    pub per_member_per_hour: usize,
    /// Timeout of one API request in seconds; 0 disables it.
    pub http_timeout_secs: u64,
}

impl Default for AppSettings {
    fn default() -> Self {
        AppSettings {
            api_base: DEFAULT_API_BASE.to_string(),
            corp_id: String::new(),
            agent_id: 0,
            secret: Secret::default(),
            token: Secret::default(),
            encoding_aes_key: Secret::default(),
            path: "/wecom/app".to_string(),
            thinking_notice: false,
            per_member_per_minute: 28,
            per_member_per_hour: 950,
            http_timeout_secs: crate::api::DEFAULT_HTTP_TIMEOUT_SECS,
        }
    }
}

/// A setting that makes the adapter unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("wecom setting `{0}` is missing")]
    Missing(&'static str),
    #[error("wecom setting `{key}` is invalid: {source}")]
    Invalid {
        key: &'static str,
        source: CryptoError,
    },
}

/// The shared state of the app's callback routes.
pub struct AppState {
    settings: AppSettings,
    crypto: WecomCrypto,
    handler: Arc<dyn Handler>,
    api: Arc<AppApi>,
    pacer: Arc<Pacer>,
}

impl AppState {
    pub fn new(settings: &AppSettings, handler: Arc<dyn Handler>) -> Result<Self, ConfigError> {
        if settings.corp_id.trim().is_empty() {
            return Err(ConfigError::Missing("wecom.app.corp_id"));
        }
        if settings.token.is_empty() {
            return Err(ConfigError::Missing("wecom.app.token"));
        }
        if settings.secret.is_empty() {
            return Err(ConfigError::Missing("wecom.app.secret"));
        }
        let crypto = WecomCrypto::new(
            &settings.token,
            &settings.encoding_aes_key,
            settings.corp_id.trim(),
        )
        .map_err(|source| ConfigError::Invalid {
            key: "wecom.app.encoding_aes_key",
            source,
        })?;
        let api = AppApi::new(
            &settings.api_base,
            settings.corp_id.trim(),
            settings.agent_id,
            &settings.secret,
            settings.http_timeout_secs,
        );
        let pacer = Pacer::new(vec![
            RateWindow {
                window: Duration::from_secs(60),
                max: settings.per_member_per_minute,
            },
            RateWindow {
                window: Duration::from_secs(3600),
                max: settings.per_member_per_hour,
            },
        ]);
        Ok(AppState {
            settings: settings.clone(),
            crypto,
            handler,
            api: Arc::new(api),
            pacer: Arc::new(pacer),
        })
    }

    /// Creates a sink that sends to one member through `message/send`.
    pub fn sink_for(&self, user: &str) -> WecomAppSink {
        WecomAppSink {
            api: self.api.clone(),
            pacer: self.pacer.clone(),
            to_user: user.to_string(),
            thinking_notice: self.settings.thinking_notice,
        }
    }
}

/// Builds the axum routes of the app callback (GET verification and POST messages).
pub fn app_router(
    settings: &AppSettings,
    handler: Arc<dyn Handler>,
) -> Result<Router, ConfigError> {
    let state = Arc::new(AppState::new(settings, handler)?);
    Ok(Router::new()
        .route(&settings.path, get(verify_url).post(receive))
        .with_state(state))
}

/// Responds to the URL verification with the bare decrypted `echostr`.
async fn verify_url(State(state): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> Response {
    let query = CallbackQuery::parse(raw.as_deref());
    let Some(echostr) = query.echostr.as_deref() else {
        return (StatusCode::BAD_REQUEST, "").into_response();
    };
    match state.crypto.open(
        &query.msg_signature,
        &query.timestamp,
        &query.nonce,
        echostr,
    ) {
        Ok(plain) => (StatusCode::OK, plain).into_response(),
        Err(error) => {
            tracing::warn!(%error, "WeCom app URL verification failed");
            (status_for(&error), "").into_response()
        }
    }
}

fn status_for(error: &CryptoError) -> StatusCode {
    match error {
        CryptoError::InvalidSignature => StatusCode::UNAUTHORIZED,
        CryptoError::ReceiveIdMismatch => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn ack() -> Response {
    StatusCode::OK.into_response()
}

async fn receive(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let query = CallbackQuery::parse(raw.as_deref());
    let body = String::from_utf8_lossy(&body);
    let envelope = match parse_envelope(&body) {
        Ok(envelope) => envelope,
        Err(error) => {
            tracing::warn!(%error, "WeCom app callback without a parsable Encrypt element");
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    let plain = match state.crypto.open(
        &query.msg_signature,
        &query.timestamp,
        &query.nonce,
        &envelope.encrypt,
    ) {
        Ok(plain) => plain,
        Err(error) => {
            tracing::warn!(%error, "WeCom app callback rejected");
            return status_for(&error).into_response();
        }
    };
    let message = match parse_message(&plain) {
        Ok(message) => message,
        Err(error) => {
            // Signed by WeCom, so a retry would bring the same body: acknowledge it.
            tracing::warn!(%error, "signed WeCom app callback has unparsable XML; acknowledged and dropped");
            return ack();
        }
    };

    let Some(inbound) = to_inbound(&state.settings, &message) else {
        tracing::debug!(
            msg_type = message.msg_type.as_deref().unwrap_or(""),
            event = message.event.as_deref().unwrap_or(""),
            "WeCom app callback ignored"
        );
        return ack();
    };

    let sink = Box::new(state.sink_for(&inbound.user));
    let message_id = inbound.message_id.clone();
    match state.handler.accept(inbound, sink).await {
        Ok(accepted) => {
            tracing::debug!(%message_id, ?accepted, "WeCom app message accepted");
            ack()
        }
        Err(error) => {
            tracing::error!(%error, %message_id, "handler could not accept WeCom app message; WeCom will redeliver");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// Turns a text message into an [`Inbound`]; returns `None` for everything the
/// coach does not answer (events, other types, no `MsgId`, empty text, another agent).
fn to_inbound(settings: &AppSettings, message: &crate::xml::AppMessageXml) -> Option<Inbound> {
    if message.msg_type.as_deref().map(str::trim) != Some("text") {
        return None;
    }
    let msg_id = message
        .msg_id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty())?;
    let text = message
        .content
        .as_deref()
        .map(str::trim)
        .filter(|text| !text.is_empty())?;
    let user = message
        .from_user_name
        .as_deref()
        .map(str::trim)
        .filter(|user| !user.is_empty())?;
    if let Some(agent) = message.agent_id.as_deref().map(str::trim)
        && !agent.is_empty()
        && agent != settings.agent_id.to_string()
    {
        tracing::warn!(agent, "WeCom app callback for another agent ignored");
        return None;
    }
    Some(Inbound {
        platform: Platform::Wecom,
        tenant: format!("{}:{}", settings.corp_id.trim(), settings.agent_id),
        conversation: user.to_string(),
        thread: None,
        user: user.to_string(),
        display_name: None,
        text: text.to_string(),
        is_direct: true,
        mentions_bot: false,
        replies_to_bot: false,
        message_id: msg_id.to_string(),
        received_at: chrono::Utc::now(),
    })
}

/// Sends the answer to one member through `message/send`, paced under the
/// per-member quota. The app cannot stream, so there is no preview.
pub struct WecomAppSink {
    api: Arc<AppApi>,
    pacer: Arc<Pacer>,
    to_user: String,
    thinking_notice: bool,
}

impl WecomAppSink {
    async fn send(&self, msgtype: &str, content: String) -> Result<String, SinkError> {
        self.pacer.acquire(&self.to_user).await;
        let sent = self
            .api
            .send(
                &self.to_user,
                msgtype,
                serde_json::json!({ "content": content }),
            )
            .await?;
        Ok(sent.msgid)
    }
}

#[async_trait]
impl ReplySink for WecomAppSink {
    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities {
            progress: ProgressStyle::None,
            max_progress_len: None,
            unit: LengthUnit::Bytes,
        }
    }

    async fn start(&mut self) -> Result<(), SinkError> {
        if self.thinking_notice {
            self.send("text", "正在思考… / Thinking…".to_string())
                .await?;
        }
        Ok(())
    }

    async fn progress(&mut self, _text: &str) -> Result<(), SinkError> {
        Ok(())
    }

    async fn finish(&mut self, reply: &Reply) -> Result<Delivered, SinkError> {
        let mut delivered = Delivered::default();
        for part in app_parts(reply, APP_MESSAGE_MAX_BYTES) {
            let msgid = self.send(part.msgtype, part.content).await?;
            delivered.message_ids.push(msgid);
        }
        Ok(delivered)
    }
}
