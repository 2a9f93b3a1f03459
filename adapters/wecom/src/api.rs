//! The WeCom server API used by the self-built app: `gettoken` and `message/send`.
//!
//! The base URL is configurable (default `https://qyapi.weixin.qq.com`) so tests run
//! against a loopback mock.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use maxwin_channel::{Secret, SinkError};

/// The public WeCom API host.
pub const DEFAULT_API_BASE: &str = "https://qyapi.weixin.qq.com";

/// A token is refreshed this long before the expiry that `gettoken` returned.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Retries of a call that returned errcode -1 (system busy), with doubling delays.
const BUSY_RETRIES: u32 = 3;
const BUSY_FIRST_DELAY: Duration = Duration::from_millis(500);
/// The default timeout of one WeCom API request.
pub const DEFAULT_HTTP_TIMEOUT_SECS: u64 = 15;

/// Errcodes that mean the access token is invalid or expired.
const TOKEN_ERRCODES: [i64; 3] = [40001, 40014, 42001];
const ERRCODE_BUSY: i64 = -1;
/// Errcodes for API frequency limits.
const RATE_ERRCODES: [i64; 2] = [45009, 45033];

/// A failed WeCom API call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("WeCom API request failed: {0}")]
    Transport(String),
    #[error("WeCom API returned errcode {errcode}: {errmsg}")]
    Api { errcode: i64, errmsg: String },
    #[error("WeCom API returned an invalid response: {0}")]
    InvalidResponse(String),
}

impl ApiError {
    pub fn errcode(&self) -> Option<i64> {
        match self {
            ApiError::Api { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }
}

impl From<ApiError> for SinkError {
    fn from(error: ApiError) -> SinkError {
        match &error {
            ApiError::Transport(_) => SinkError::Transport(error.to_string()),
            ApiError::Api { errcode, .. } if RATE_ERRCODES.contains(errcode) => {
                SinkError::RateLimited(Duration::from_secs(60))
            }
            _ => SinkError::Rejected(error.to_string()),
        }
    }
}

/// The common part of every WeCom API response.
#[derive(Debug, Deserialize)]
struct ErrorFields {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

fn check(value: &Value) -> Result<(), ApiError> {
    let fields: ErrorFields = serde_json::from_value(value.clone())
        .map_err(|error| ApiError::InvalidResponse(error.to_string()))?;
    if fields.errcode == 0 {
        Ok(())
    } else {
        Err(ApiError::Api {
            errcode: fields.errcode,
            errmsg: fields.errmsg,
        })
    }
}

async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> Result<Value, ApiError> {
    let response = http
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|error| ApiError::Transport(error.without_url().to_string()))?;
    decode(response).await
}

async fn decode(response: reqwest::Response) -> Result<Value, ApiError> {
    let status = response.status();
    if !status.is_success() {
        return Err(ApiError::Transport(format!("HTTP status {status}")));
    }
    response
        .json::<Value>()
        .await
        .map_err(|error| ApiError::InvalidResponse(error.without_url().to_string()))
}

/// Builds the HTTP client of the WeCom API clients. `timeout_secs == 0` disables
/// the request timeout. Tests with paused tokio time need that, because the
/// paused clock auto-advances to a pending timeout while a request is in flight.
pub fn http_client(timeout_secs: u64) -> reqwest::Client {
    let mut builder = reqwest::Client::builder();
    if timeout_secs > 0 {
        builder = builder.timeout(Duration::from_secs(timeout_secs));
    }
    builder.build().unwrap_or_default()
}

/// Runs `call` again after errcode -1 (system busy), at most [`BUSY_RETRIES`] times.
pub(crate) async fn retry_busy<F, Fut, T>(mut call: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let mut delay = BUSY_FIRST_DELAY;
    let mut attempt = 0;
    loop {
        match call().await {
            Err(error) if error.errcode() == Some(ERRCODE_BUSY) && attempt < BUSY_RETRIES => {
                attempt += 1;
                tracing::warn!(
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    "WeCom API busy, retrying"
                );
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
}

struct CachedToken {
    value: String,
    refresh_at: Instant,
}

/// An access-token cache with single-flight refresh.
///
/// The lock is held while `gettoken` runs, so however many senders need a token at
/// once, one request goes out and the others wait for its result.
pub struct AccessTokenCache {
    http: reqwest::Client,
    api_base: String,
    corp_id: String,
    secret: Secret,
    current: Mutex<Option<CachedToken>>,
}

impl AccessTokenCache {
    pub fn new(http: reqwest::Client, api_base: &str, corp_id: &str, secret: &Secret) -> Self {
        AccessTokenCache {
            http,
            api_base: api_base.trim_end_matches('/').to_string(),
            corp_id: corp_id.to_string(),
            secret: secret.clone(),
            current: Mutex::new(None),
        }
    }

    /// Returns a valid token, fetching one when none is cached or it is about to expire.
    pub async fn get(&self) -> Result<String, ApiError> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref()
            && Instant::now() < token.refresh_at
        {
            return Ok(token.value.clone());
        }
        let (value, expires_in) = retry_busy(|| self.fetch()).await?;
        let lifetime = Duration::from_secs(expires_in).saturating_sub(TOKEN_REFRESH_MARGIN);
        *current = Some(CachedToken {
            value: value.clone(),
            refresh_at: Instant::now() + lifetime,
        });
        tracing::info!(expires_in, "fetched WeCom access token");
        Ok(value)
    }

    /// Drops `token` from the cache unless another caller already replaced it.
    pub async fn invalidate(&self, token: &str) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|cached| cached.value == token) {
            *current = None;
        }
    }

    async fn fetch(&self) -> Result<(String, u64), ApiError> {
        let url = format!("{}/cgi-bin/gettoken", self.api_base);
        let response = self
            .http
            .get(&url)
            .query(&[
                ("corpid", self.corp_id.as_str()),
                ("corpsecret", self.secret.expose()),
            ])
            .send()
            .await
            .map_err(|error| ApiError::Transport(error.without_url().to_string()))?;
        let value = decode(response).await?;
        check(&value)?;
        let token = value
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| ApiError::InvalidResponse("gettoken returned no access_token".into()))?;
        let expires_in = value
            .get("expires_in")
            .and_then(Value::as_u64)
            .unwrap_or(7200);
        Ok((token.to_string(), expires_in))
    }
}

/// The result of a successful `message/send`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentMessage {
    /// The `msgid` WeCom assigned, usable for recall within 24 hours.
    pub msgid: String,
}

/// A client for the self-built app's server API.
pub struct AppApi {
    http: reqwest::Client,
    api_base: String,
    agent_id: i64,
    tokens: AccessTokenCache,
}

impl AppApi {
    pub fn new(
        api_base: &str,
        corp_id: &str,
        agent_id: i64,
        secret: &Secret,
        http_timeout_secs: u64,
    ) -> Self {
        let http = http_client(http_timeout_secs);
        AppApi {
            tokens: AccessTokenCache::new(http.clone(), api_base, corp_id, secret),
            http,
            api_base: api_base.trim_end_matches('/').to_string(),
            agent_id,
        }
    }

    pub fn tokens(&self) -> &AccessTokenCache {
        &self.tokens
    }

    /// Sends one message to one member. `content` is the message object for
    /// `msgtype`, e.g. `{"content": "…"}` for text and markdown.
    pub async fn send(
        &self,
        to_user: &str,
        msgtype: &str,
        content: Value,
    ) -> Result<SentMessage, ApiError> {
        let mut body = serde_json::json!({
            "touser": to_user,
            "msgtype": msgtype,
            "agentid": self.agent_id,
        });
        body[msgtype] = content;

        let value = retry_busy(|| self.send_with_token_retry(&body)).await?;
        if let Some(invalid) = value.get("invaliduser").and_then(Value::as_str)
            && !invalid.is_empty()
        {
            return Err(ApiError::Api {
                errcode: 0,
                errmsg: format!("recipient {invalid} is invalid"),
            });
        }
        let msgid = value
            .get("msgid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok(SentMessage { msgid })
    }

    /// Posts to `message/send`, and after a token errcode evicts the token,
    /// fetches a new one and posts once more.
    async fn send_with_token_retry(&self, body: &Value) -> Result<Value, ApiError> {
        let mut refetched = false;
        loop {
            let token = self.tokens.get().await?;
            let url = format!(
                "{}/cgi-bin/message/send?access_token={}",
                self.api_base, token
            );
            let value = post_json(&self.http, &url, body).await?;
            match check(&value) {
                Ok(()) => return Ok(value),
                Err(error)
                    if !refetched
                        && error
                            .errcode()
                            .is_some_and(|code| TOKEN_ERRCODES.contains(&code)) =>
                {
                    tracing::warn!(
                        errcode = error.errcode(),
                        "WeCom access token rejected, refetching"
                    );
                    self.tokens.invalidate(&token).await;
                    refetched = true;
                }
                Err(error) => return Err(error),
            }
        }
    }
}
