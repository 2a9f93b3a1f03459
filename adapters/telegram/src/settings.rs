//! The `[telegram]` configuration section and the errors of setting the adapter up.

use std::path::PathBuf;
use std::time::Duration;

use maxwin_channel::Secret;
use serde::Deserialize;
use url::Url;

/// The transport the adapter receives updates over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TelegramMode {
    /// `getUpdates` long polling: works behind NAT, no public URL needed.
    #[default]
    Polling,
    /// Telegram POSTs updates to `webhook_url` + `webhook_path`.
    Webhook,
}

/// The `[telegram]` section of `maxwin.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct TelegramSettings {
    pub enabled: bool,
    /// The token BotFather gave, `123456:ABC…`. Prefer `bot_token_file` or the environment.
    pub bot_token: Option<Secret>,
    /// A file whose first line is the bot token; used when `bot_token` is unset.
    pub bot_token_file: Option<PathBuf>,
    /// The Bot API base URL; unset means `https://api.telegram.org`. Set it for a
    /// self-hosted Bot API server or a test server.
    pub api_url: Option<String>,
    pub mode: TelegramMode,
    /// The public HTTPS base URL Telegram reaches this daemon at, e.g. `https://bot.example.com`.
    pub webhook_url: Option<String>,
    /// The route of the webhook on this daemon's HTTP server, appended to `webhook_url`.
    pub webhook_path: String,
    /// The value Telegram echoes in `X-Telegram-Bot-Api-Secret-Token`: 1–256 characters
    /// from `A-Z a-z 0-9 _ -`. Required in webhook mode.
    pub secret_token: Option<Secret>,
    /// A file whose first line is the secret token; used when `secret_token` is unset.
    pub secret_token_file: Option<PathBuf>,
    /// The minimum time between two edits or sends in one chat, in milliseconds.
    pub edit_interval_ms: u64,
    /// How long one `getUpdates` call waits for new updates, in seconds.
    pub poll_timeout_secs: u32,
    /// The longest `retry_after` the adapter waits out before it gives up on a message, in seconds.
    pub max_retry_after_secs: u64,
    /// The maximum number of retries of one request after HTTP 429.
    pub max_retries: u32,
}

impl Default for TelegramSettings {
    fn default() -> Self {
        TelegramSettings {
            enabled: false,
            bot_token: None,
            bot_token_file: None,
            api_url: None,
            mode: TelegramMode::Polling,
            webhook_url: None,
            webhook_path: "/telegram/webhook".to_string(),
            secret_token: None,
            secret_token_file: None,
            edit_interval_ms: 1000,
            poll_timeout_secs: 30,
            max_retry_after_secs: 60,
            max_retries: 3,
        }
    }
}

/// A failure to set up or run the Telegram adapter.
#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    #[error("telegram.bot_token is missing: set telegram.bot_token or telegram.bot_token_file")]
    MissingToken,
    #[error("could not read {key} from {path}: {source}")]
    SecretFile {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{key} = {value:?} is not a valid URL: {reason}")]
    InvalidUrl {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "telegram.secret_token is required in webhook mode: 1-256 characters from A-Z, a-z, 0-9, _ and -"
    )]
    MissingSecretToken,
    #[error("telegram.secret_token is invalid: use 1-256 characters from A-Z, a-z, 0-9, _ and -")]
    InvalidSecretToken,
    #[error("telegram.webhook_url is required in webhook mode")]
    MissingWebhookUrl,
    #[error("telegram.webhook_path must start with '/', found {0:?}")]
    InvalidWebhookPath(String),
    #[error("could not build the HTTP client for the Bot API: {0}")]
    HttpClient(String),
    #[error("Telegram Bot API call {method} failed: {source}")]
    Api {
        method: &'static str,
        #[source]
        source: teloxide::RequestError,
    },
}

impl TelegramSettings {
    pub fn edit_interval(&self) -> Duration {
        Duration::from_millis(self.edit_interval_ms)
    }

    /// Returns the bot token from `bot_token` or else from `bot_token_file`.
    pub fn token(&self) -> Result<Secret, TelegramError> {
        read_secret(
            "telegram.bot_token_file",
            self.bot_token.as_ref(),
            self.bot_token_file.as_ref(),
        )?
        .ok_or(TelegramError::MissingToken)
    }

    /// Returns the webhook secret token, checked against the Bot API's character rules.
    pub fn webhook_secret(&self) -> Result<Secret, TelegramError> {
        let secret = read_secret(
            "telegram.secret_token_file",
            self.secret_token.as_ref(),
            self.secret_token_file.as_ref(),
        )?
        .ok_or(TelegramError::MissingSecretToken)?;
        let value = secret.expose();
        let valid_chars = value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if value.is_empty() || value.len() > 256 || !valid_chars {
            return Err(TelegramError::InvalidSecretToken);
        }
        Ok(secret)
    }

    /// Returns the Bot API base URL override, if any.
    pub fn api_base(&self) -> Result<Option<Url>, TelegramError> {
        self.api_url
            .as_deref()
            .filter(|value| !value.trim().is_empty())
            .map(|value| parse_url("telegram.api_url", value))
            .transpose()
    }

    /// Returns the full public URL Telegram should POST updates to.
    pub fn webhook_endpoint(&self) -> Result<Url, TelegramError> {
        let base = self
            .webhook_url
            .as_deref()
            .filter(|value| !value.trim().is_empty())
            .ok_or(TelegramError::MissingWebhookUrl)?;
        let path = self.route_path()?;
        let joined = format!("{}{}", base.trim().trim_end_matches('/'), path);
        parse_url("telegram.webhook_url", &joined)
    }

    /// Returns `webhook_path` after checking that it is an absolute route.
    pub fn route_path(&self) -> Result<&str, TelegramError> {
        if self.webhook_path.starts_with('/') {
            Ok(&self.webhook_path)
        } else {
            Err(TelegramError::InvalidWebhookPath(self.webhook_path.clone()))
        }
    }
}

fn parse_url(key: &'static str, value: &str) -> Result<Url, TelegramError> {
    Url::parse(value.trim()).map_err(|err| TelegramError::InvalidUrl {
        key,
        value: value.to_string(),
        reason: err.to_string(),
    })
}

/// Returns the inline secret when set and non-empty, otherwise the first line of the file.
fn read_secret(
    key: &'static str,
    inline: Option<&Secret>,
    file: Option<&PathBuf>,
) -> Result<Option<Secret>, TelegramError> {
    if let Some(secret) = inline.filter(|s| !s.is_empty()) {
        return Ok(Some(Secret::new(secret.expose().trim())));
    }
    let Some(path) = file else {
        return Ok(None);
    };
    let content = std::fs::read_to_string(path).map_err(|source| TelegramError::SecretFile {
        key,
        path: path.clone(),
        source,
    })?;
    let first = content.lines().next().unwrap_or("").trim();
    Ok((!first.is_empty()).then(|| Secret::new(first)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_poll_with_one_second_edits() {
        let settings = TelegramSettings::default();
        assert_eq!(settings.mode, TelegramMode::Polling);
        assert_eq!(settings.edit_interval(), Duration::from_secs(1));
        assert_eq!(settings.webhook_path, "/telegram/webhook");
    }

    #[test]
    fn webhook_endpoint_joins_base_and_path() {
        let settings = TelegramSettings {
            webhook_url: Some("https://bot.example.com/".into()),
            ..TelegramSettings::default()
        };
        assert_eq!(
            settings.webhook_endpoint().unwrap().as_str(),
            "https://bot.example.com/telegram/webhook"
        );
    }

    #[test]
    fn secret_token_rejects_bad_characters() {
        let mut settings = TelegramSettings {
            secret_token: Some(Secret::new("has space")),
            ..TelegramSettings::default()
        };
        assert!(matches!(
            settings.webhook_secret(),
            Err(TelegramError::InvalidSecretToken)
        ));
        settings.secret_token = Some(Secret::new("a".repeat(257)));
        assert!(matches!(
            settings.webhook_secret(),
            Err(TelegramError::InvalidSecretToken)
        ));
        settings.secret_token = None;
        assert!(matches!(
            settings.webhook_secret(),
            Err(TelegramError::MissingSecretToken)
        ));
        settings.secret_token = Some(Secret::new("ok_Token-1"));
        assert_eq!(settings.webhook_secret().unwrap().expose(), "ok_Token-1");
    }

    #[test]
    fn token_file_first_line_is_read() {
        let dir = std::env::temp_dir().join(format!("maxwin-tg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "123:abc\n").unwrap();
        let settings = TelegramSettings {
            bot_token_file: Some(path),
            ..TelegramSettings::default()
        };
        assert_eq!(settings.token().unwrap().expose(), "123:abc");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_token_is_an_error() {
        assert!(matches!(
            TelegramSettings::default().token(),
            Err(TelegramError::MissingToken)
        ));
    }
}
