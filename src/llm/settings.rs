//! Settings of the `[llm]` config section and their validation.

use std::path::PathBuf;
use std::time::Duration;

use maxwin_channel::Secret;
use serde::Deserialize;
use url::Url;

use super::error::LlmError;

/// Settings of one OpenAI-compatible provider: the `[llm]` section, and
/// `[llm.fallback]` for an optional second provider used when the first fails.
///
/// Works with any server that implements `POST {base_url}/chat/completions`:
/// OpenAI, DeepSeek, Qwen (DashScope compatible mode), Moonshot, Zhipu, and
/// local Ollama, vLLM or llama.cpp servers, which need no API key.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmSettings {
    /// Provider label in logs and stored turns. Defaults to the host of `base_url`.
    pub name: Option<String>,
    /// API root, for example `https://api.deepseek.com` or
    /// `http://127.0.0.1:11434/v1`. A URL without a path gets `/v1` appended.
    pub base_url: Option<String>,
    /// Chat model name, for example `deepseek-chat` or `qwen-plus`.
    pub model: Option<String>,
    /// API key sent as a bearer token. Takes precedence over the two below.
    pub api_key: Option<Secret>,
    /// File whose trimmed content is the API key.
    pub api_key_file: Option<PathBuf>,
    /// Name of an environment variable that contains the API key.
    pub api_key_env: Option<String>,
    /// Time limit for opening a connection, in seconds.
    pub connect_timeout_secs: f64,
    /// Time limit from sending a request to the first event of the answer, in seconds.
    pub first_token_timeout_secs: f64,
    /// Time limit for a whole call on this provider, retries included, in seconds.
    pub total_timeout_secs: f64,
    /// Retries after a connection failure, a timeout before the answer
    /// started, a 408, 429 or 5xx status, or a stream that broke off.
    pub max_retries: u32,
    /// Backoff before the first retry, in milliseconds. It doubles per retry, with jitter.
    pub retry_base_delay_ms: u64,
    /// Maximum wait before one retry, in seconds. A `Retry-After` longer than
    /// this ends the retries.
    pub retry_max_delay_secs: f64,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    /// Context window of the model, in tokens, for the caller's prompt budget.
    pub context_tokens: usize,
    /// Requests `stream_options.include_usage` so the last chunk reports token
    /// counts. Turned off for the process when the server rejects the field.
    pub stream_usage: bool,
    /// Model for `/embeddings`. Embeddings are off when unset.
    pub embedding_model: Option<String>,
    /// Inputs per `/embeddings` request.
    pub embedding_batch_size: usize,
    /// Extra JSON fields merged into every chat request body, for provider
    /// options such as `enable_thinking = false` on Qwen3.
    pub extra_body: Option<serde_json::Map<String, serde_json::Value>>,
    /// Provider used when this one fails after its retries (`[llm.fallback]`).
    pub fallback: Option<Box<LlmSettings>>,
}

impl Default for LlmSettings {
    fn default() -> Self {
        LlmSettings {
            name: None,
            base_url: None,
            model: None,
            api_key: None,
            api_key_file: None,
            api_key_env: None,
            connect_timeout_secs: 10.0,
            // Reasoning models can take long before their first token.
            first_token_timeout_secs: 60.0,
            total_timeout_secs: 180.0,
            max_retries: 2,
            retry_base_delay_ms: 500,
            retry_max_delay_secs: 20.0,
            temperature: None,
            max_tokens: None,
            context_tokens: 8192,
            stream_usage: true,
            embedding_model: None,
            embedding_batch_size: 16,
            extra_body: None,
            fallback: None,
        }
    }
}

impl LlmSettings {
    /// Returns true when `base_url` and `model` are both set.
    pub fn is_configured(&self) -> bool {
        let filled =
            |value: &Option<String>| value.as_deref().is_some_and(|text| !text.trim().is_empty());
        filled(&self.base_url) && filled(&self.model)
    }
}

/// Validated settings of one provider, ready for requests.
#[derive(Debug, Clone)]
pub(crate) struct ProviderConfig {
    pub section: &'static str,
    pub name: String,
    pub model: String,
    pub chat_url: Url,
    pub embeddings_url: Url,
    pub api_key: Option<Secret>,
    pub connect_timeout: Duration,
    pub first_token_timeout: Duration,
    pub total_timeout: Duration,
    pub max_retries: u32,
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub stream_usage: bool,
    pub embedding_model: Option<String>,
    pub embedding_batch_size: usize,
    pub extra_body: serde_json::Map<String, serde_json::Value>,
}

impl ProviderConfig {
    /// Validates `settings` of the config section `section`.
    pub fn from_settings(
        settings: &LlmSettings,
        section: &'static str,
    ) -> Result<ProviderConfig, LlmError> {
        let base_url = required(&settings.base_url, section, "base_url")?;
        let model = required(&settings.model, section, "model")?;
        let root = api_root(base_url).map_err(|reason| {
            LlmError::Config(format!("{section}.base_url {base_url:?} {reason}"))
        })?;
        let chat_url = join(&root, "chat/completions");
        let embeddings_url = join(&root, "embeddings");

        let name = match settings.name.as_deref().map(str::trim) {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => root.host_str().unwrap_or("llm").to_string(),
        };

        if settings.embedding_batch_size == 0 {
            return Err(LlmError::Config(format!(
                "{section}.embedding_batch_size must be at least 1"
            )));
        }

        Ok(ProviderConfig {
            section,
            name,
            model: model.to_string(),
            chat_url,
            embeddings_url,
            api_key: resolve_api_key(settings, section)?,
            connect_timeout: seconds(
                settings.connect_timeout_secs,
                section,
                "connect_timeout_secs",
            )?,
            first_token_timeout: seconds(
                settings.first_token_timeout_secs,
                section,
                "first_token_timeout_secs",
            )?,
            total_timeout: seconds(settings.total_timeout_secs, section, "total_timeout_secs")?,
            max_retries: settings.max_retries,
            retry_base_delay: Duration::from_millis(settings.retry_base_delay_ms),
            retry_max_delay: seconds(
                settings.retry_max_delay_secs,
                section,
                "retry_max_delay_secs",
            )?,
            temperature: settings.temperature,
            max_tokens: settings.max_tokens,
            stream_usage: settings.stream_usage,
            embedding_model: settings
                .embedding_model
                .clone()
                .filter(|model| !model.trim().is_empty()),
            embedding_batch_size: settings.embedding_batch_size,
            extra_body: settings.extra_body.clone().unwrap_or_default(),
        })
    }
}

fn required<'a>(value: &'a Option<String>, section: &str, key: &str) -> Result<&'a str, LlmError> {
    match value.as_deref().map(str::trim) {
        Some(text) if !text.is_empty() => Ok(text),
        _ => Err(LlmError::Config(format!("{section}.{key} is missing"))),
    }
}

fn seconds(value: f64, section: &str, key: &str) -> Result<Duration, LlmError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| {
            LlmError::Config(format!(
                "{section}.{key} must be a positive number of seconds, got {value}"
            ))
        })
}

/// Normalises a base URL to the API root that `chat/completions` is joined to.
///
/// `http://host:11434` becomes `http://host:11434/v1/`, while a URL with a
/// path (`…/compatible-mode/v1`, `…/api/paas/v4`) is kept. A URL that already
/// ends in `/chat/completions` is cut back to its root.
fn api_root(base_url: &str) -> Result<Url, &'static str> {
    let mut url = Url::parse(base_url).map_err(|_| "is not a valid URL")?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err("must start with http:// or https://");
    }
    if url.host_str().is_none() {
        return Err("has no host");
    }

    let mut path = url.path().trim_end_matches('/').to_string();
    if let Some(root) = path.strip_suffix("/chat/completions") {
        path = root.to_string();
    }
    if path.is_empty() {
        path = "/v1".to_string();
    }
    url.set_path(&format!("{path}/"));
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

fn join(root: &Url, endpoint: &str) -> Url {
    root.join(endpoint).expect("endpoint is a relative path")
}

fn resolve_api_key(settings: &LlmSettings, section: &str) -> Result<Option<Secret>, LlmError> {
    if let Some(key) = settings.api_key.as_ref().filter(|key| !key.is_empty()) {
        return Ok(Some(Secret::new(key.expose().trim())));
    }

    if let Some(path) = &settings.api_key_file {
        let content = std::fs::read_to_string(path).map_err(|error| {
            LlmError::Config(format!(
                "could not read {section}.api_key_file {}: {error}",
                path.display()
            ))
        })?;
        let key = content.trim();
        if key.is_empty() {
            return Err(LlmError::Config(format!(
                "{section}.api_key_file {} is empty",
                path.display()
            )));
        }
        return Ok(Some(Secret::new(key)));
    }

    if let Some(variable) = &settings.api_key_env {
        return match std::env::var(variable) {
            Ok(key) if !key.trim().is_empty() => Ok(Some(Secret::new(key.trim()))),
            _ => Err(LlmError::Config(format!(
                "{section}.api_key_env names the environment variable {variable}, which is not set or empty"
            ))),
        };
    }

    // Local servers (Ollama, vLLM, llama.cpp) accept requests without a key.
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(base_url: &str) -> LlmSettings {
        LlmSettings {
            base_url: Some(base_url.to_string()),
            model: Some("m".to_string()),
            ..LlmSettings::default()
        }
    }

    #[test]
    fn chat_url_for_common_base_urls() {
        let cases = [
            (
                "https://api.openai.com/v1",
                "https://api.openai.com/v1/chat/completions",
            ),
            (
                "https://api.deepseek.com",
                "https://api.deepseek.com/v1/chat/completions",
            ),
            (
                "https://api.moonshot.cn/v1/",
                "https://api.moonshot.cn/v1/chat/completions",
            ),
            (
                "https://dashscope.aliyuncs.com/compatible-mode/v1",
                "https://dashscope.aliyuncs.com/compatible-mode/v1/chat/completions",
            ),
            (
                "https://open.bigmodel.cn/api/paas/v4",
                "https://open.bigmodel.cn/api/paas/v4/chat/completions",
            ),
            (
                "http://127.0.0.1:11434",
                "http://127.0.0.1:11434/v1/chat/completions",
            ),
            (
                "http://localhost:8000/v1/chat/completions",
                "http://localhost:8000/v1/chat/completions",
            ),
        ];

        for (base_url, expected) in cases {
            let config = ProviderConfig::from_settings(&settings(base_url), "llm").unwrap();
            assert_eq!(config.chat_url.as_str(), expected, "base_url {base_url}");
        }
    }

    #[test]
    fn embeddings_url_next_to_chat_url() {
        let config =
            ProviderConfig::from_settings(&settings("http://127.0.0.1:8080"), "llm").unwrap();

        assert_eq!(
            config.embeddings_url.as_str(),
            "http://127.0.0.1:8080/v1/embeddings"
        );
    }

    #[test]
    fn invalid_base_url_rejected() {
        for base_url in ["not a url", "ftp://example.com", "file:///tmp"] {
            let result = ProviderConfig::from_settings(&settings(base_url), "llm");
            assert!(
                matches!(result, Err(LlmError::Config(_))),
                "base_url {base_url}"
            );
        }
    }

    #[test]
    fn is_configured_needs_base_url_and_model() {
        assert!(!LlmSettings::default().is_configured());
        assert!(settings("http://127.0.0.1:1").is_configured());
        let no_model = LlmSettings {
            model: Some("  ".to_string()),
            ..settings("http://127.0.0.1:1")
        };
        assert!(!no_model.is_configured());
    }

    #[test]
    fn api_key_from_file_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "sk-test-file\n").unwrap();
        let with_file = LlmSettings {
            api_key_file: Some(path),
            ..settings("http://127.0.0.1:1")
        };

        let config = ProviderConfig::from_settings(&with_file, "llm").unwrap();

        assert_eq!(config.api_key.unwrap().expose(), "sk-test-file");
    }

    #[test]
    fn missing_api_key_file_is_an_error() {
        let with_file = LlmSettings {
            api_key_file: Some("/nonexistent/maxwin/key".into()),
            ..settings("http://127.0.0.1:1")
        };

        let error = ProviderConfig::from_settings(&with_file, "llm").unwrap_err();

        assert!(error.to_string().contains("llm.api_key_file"), "{error}");
    }

    #[test]
    fn unset_api_key_env_is_an_error() {
        let with_env = LlmSettings {
            api_key_env: Some("MAXWIN_TEST_SURELY_UNSET_KEY".to_string()),
            ..settings("http://127.0.0.1:1")
        };

        let error = ProviderConfig::from_settings(&with_env, "llm").unwrap_err();

        assert!(
            error.to_string().contains("MAXWIN_TEST_SURELY_UNSET_KEY"),
            "{error}"
        );
    }

    #[test]
    fn no_key_allowed_for_local_servers() {
        let config =
            ProviderConfig::from_settings(&settings("http://127.0.0.1:11434"), "llm").unwrap();

        assert!(config.api_key.is_none());
    }

    #[test]
    fn zero_timeout_rejected() {
        let zero = LlmSettings {
            total_timeout_secs: 0.0,
            ..settings("http://127.0.0.1:1")
        };

        let error = ProviderConfig::from_settings(&zero, "llm.fallback").unwrap_err();

        assert!(
            error
                .to_string()
                .contains("llm.fallback.total_timeout_secs"),
            "{error}"
        );
    }

    #[test]
    fn settings_parse_from_toml_with_fallback() {
        let text = r#"
            base_url = "https://api.deepseek.com"
            model = "deepseek-chat"
            api_key = "sk-primary"
            max_retries = 1

            [fallback]
            base_url = "http://127.0.0.1:11434"
            model = "qwen3:8b"
            extra_body = { enable_thinking = false }
        "#;

        let settings: LlmSettings = toml::from_str(text).unwrap();

        assert_eq!(settings.max_retries, 1);
        assert_eq!(settings.connect_timeout_secs, 10.0);
        let fallback = settings.fallback.as_deref().unwrap();
        assert_eq!(fallback.model.as_deref(), Some("qwen3:8b"));
        assert_eq!(
            fallback.extra_body.as_ref().unwrap()["enable_thinking"],
            serde_json::json!(false)
        );
        assert!(!format!("{settings:?}").contains("sk-primary"));
    }
}
