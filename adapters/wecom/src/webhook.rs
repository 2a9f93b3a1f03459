//! The group webhook robot (群机器人): push-only text and markdown to one group.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use maxwin_channel::Secret;

use crate::api::{ApiError, DEFAULT_API_BASE, http_client, retry_busy};
use crate::pacer::{Pacer, RateWindow};
use crate::render::{WEBHOOK_MARKDOWN_MAX_BYTES, WEBHOOK_TEXT_MAX_BYTES, split_bytes};

/// WeCom allows 20 messages per minute per robot; one is kept in reserve.
pub const WEBHOOK_PER_MINUTE: usize = 19;

/// A client for one group robot, identified by its webhook key.
///
/// Every send waits for room in the robot's per-minute quota, so a long text
/// split into many parts is queued, not dropped by WeCom. Clones share the queue.
#[derive(Clone)]
pub struct WebhookRobot {
    http: reqwest::Client,
    api_base: String,
    key: Secret,
    pacer: Arc<Pacer>,
}

impl WebhookRobot {
    /// Creates a robot client. `api_base` defaults to the public host when empty.
    pub fn new(api_base: &str, key: Secret) -> Self {
        Self::with_options(
            api_base,
            key,
            WEBHOOK_PER_MINUTE,
            crate::api::DEFAULT_HTTP_TIMEOUT_SECS,
        )
    }

    /// Creates a robot client with a custom per-minute limit and request timeout
    /// in seconds (0 disables the timeout).
    pub fn with_options(
        api_base: &str,
        key: Secret,
        per_minute: usize,
        http_timeout_secs: u64,
    ) -> Self {
        let api_base = if api_base.trim().is_empty() {
            DEFAULT_API_BASE
        } else {
            api_base.trim()
        };
        WebhookRobot {
            http: http_client(http_timeout_secs),
            api_base: api_base.trim_end_matches('/').to_string(),
            key,
            pacer: Arc::new(Pacer::new(vec![RateWindow {
                window: Duration::from_secs(60),
                max: per_minute,
            }])),
        }
    }

    /// Sends text, split into parts of at most 2048 bytes. Returns the number of parts sent.
    pub async fn send_text(&self, text: &str) -> Result<usize, ApiError> {
        self.send_split("text", text, WEBHOOK_TEXT_MAX_BYTES).await
    }

    /// Sends markdown, split at lines into parts of at most 4096 bytes.
    pub async fn send_markdown(&self, markdown: &str) -> Result<usize, ApiError> {
        self.send_split("markdown", markdown, WEBHOOK_MARKDOWN_MAX_BYTES)
            .await
    }

    async fn send_split(
        &self,
        msgtype: &str,
        text: &str,
        max_bytes: usize,
    ) -> Result<usize, ApiError> {
        let parts = split_bytes(text, max_bytes);
        for part in &parts {
            let body = json!({ "msgtype": msgtype, msgtype: { "content": part } });
            self.post(&body).await?;
        }
        Ok(parts.len())
    }

    async fn post(&self, body: &Value) -> Result<(), ApiError> {
        retry_busy(|| async {
            self.pacer.acquire("robot").await;
            let url = format!("{}/cgi-bin/webhook/send", self.api_base);
            let response = self
                .http
                .post(&url)
                .query(&[("key", self.key.expose())])
                .json(body)
                .send()
                .await
                .map_err(|error| ApiError::Transport(error.without_url().to_string()))?;
            let status = response.status();
            if !status.is_success() {
                return Err(ApiError::Transport(format!("HTTP status {status}")));
            }
            let value: Value = response
                .json()
                .await
                .map_err(|error| ApiError::InvalidResponse(error.without_url().to_string()))?;
            let errcode = value.get("errcode").and_then(Value::as_i64).unwrap_or(0);
            if errcode != 0 {
                let errmsg = value
                    .get("errmsg")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                return Err(ApiError::Api { errcode, errmsg });
            }
            Ok(())
        })
        .await
    }
}
