//! The chat completion client: request, streaming, timeouts, retries and
//! fallback.

use std::error::Error as _;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::time::{Instant, sleep, timeout_at};
use tracing::{Instrument, Span, debug, field, info, info_span, warn};
use url::Url;

use super::decode::{ChatStreamDecoder, DecodeError, decode_full_response, error_body_message};
use super::error::{LlmError, TimeoutKind};
use super::retry::{backoff_delay, retry_after};
use super::settings::{LlmSettings, ProviderConfig};
use super::sse::SseParser;
use super::{ChatRequest, Completion, StreamEvent};

/// Client of one OpenAI-compatible provider plus an optional fallback.
/// Cloning is cheap and shares the connection pools.
#[derive(Clone)]
pub struct LlmClient {
    inner: Arc<Inner>,
}

struct Inner {
    primary: Provider,
    fallback: Option<Provider>,
    context_tokens: usize,
}

impl fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmClient")
            .field("provider", &self.inner.primary.config.name)
            .field("model", &self.inner.primary.config.model)
            .field(
                "fallback",
                &self
                    .inner
                    .fallback
                    .as_ref()
                    .map(|provider| &provider.config.name),
            )
            .finish()
    }
}

impl LlmClient {
    /// Builds a client from the `[llm]` settings. Returns `None` when
    /// `base_url` or `model` is missing, so the caller can answer without an LLM.
    pub fn new(settings: &LlmSettings) -> Result<Option<LlmClient>, LlmError> {
        if !settings.is_configured() {
            if settings.fallback.is_some() {
                return Err(LlmError::Config(
                    "llm.fallback is set but llm.base_url or llm.model is missing".to_string(),
                ));
            }
            return Ok(None);
        }

        let primary = Provider::new(ProviderConfig::from_settings(settings, "llm")?)?;
        let fallback = match settings.fallback.as_deref() {
            None => None,
            Some(fallback) if fallback.fallback.is_some() => {
                return Err(LlmError::Config(
                    "llm.fallback.fallback is not supported: configure at most one fallback provider".to_string(),
                ));
            }
            Some(fallback) => Some(Provider::new(ProviderConfig::from_settings(
                fallback,
                "llm.fallback",
            )?)?),
        };

        Ok(Some(LlmClient {
            inner: Arc::new(Inner {
                primary,
                fallback,
                context_tokens: settings.context_tokens,
            }),
        }))
    }

    /// Name of the primary provider.
    pub fn provider(&self) -> &str {
        &self.inner.primary.config.name
    }

    /// Chat model of the primary provider.
    pub fn model(&self) -> &str {
        &self.inner.primary.config.model
    }

    /// Embedding model of the primary provider (`llm.embedding_model`), if set.
    pub fn embedding_model(&self) -> Option<&str> {
        self.inner.primary.config.embedding_model.as_deref()
    }

    /// Context window of the primary model in tokens (`llm.context_tokens`).
    pub fn context_tokens(&self) -> usize {
        self.inner.context_tokens
    }

    /// Streams an answer, calling `on_event` with each piece of visible text.
    ///
    /// Tries the primary provider with its retries, then the fallback
    /// provider. When an attempt fails after text was shown and another
    /// attempt starts, `on_event` receives [`StreamEvent::Restart`] first, and
    /// the returned [`Completion::text`] contains only the last attempt's text.
    /// When both providers fail, the fallback's error is returned.
    pub async fn chat_stream(
        &self,
        request: &ChatRequest,
        on_event: &mut (dyn FnMut(StreamEvent<'_>) + Send),
    ) -> Result<Completion, LlmError> {
        let started = Instant::now();
        let mut text_shown = false;

        let primary = &self.inner.primary;
        let primary_error = match primary
            .chat(request, on_event, &mut text_shown, started)
            .await
        {
            Ok(completion) => return Ok(completion),
            Err(error) => error,
        };
        let Some(fallback) = &self.inner.fallback else {
            return Err(primary_error);
        };

        warn!(
            provider = %primary.config.name,
            fallback = %fallback.config.name,
            error = %primary_error,
            "LLM provider failed after its retries; switching to the fallback provider"
        );
        fallback
            .chat(request, on_event, &mut text_shown, started)
            .await
    }

    /// Returns the whole answer at once; the same path as [`LlmClient::chat_stream`].
    pub async fn chat(&self, request: &ChatRequest) -> Result<Completion, LlmError> {
        self.chat_stream(request, &mut |_| {}).await
    }

    pub(super) fn primary(&self) -> &Provider {
        &self.inner.primary
    }
}

/// One configured provider with its HTTP client.
pub(super) struct Provider {
    pub config: ProviderConfig,
    http: reqwest::Client,
    /// Cleared when the server rejects `stream_options`, for the rest of the process.
    include_usage: AtomicBool,
}

/// A failed attempt and whether, and how soon, it may be retried.
pub(super) struct Failure {
    pub error: LlmError,
    pub retry: Retry,
    pub retry_after: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    Never,
    /// Retry after a backoff delay, counted against `max_retries`.
    Backoff,
    /// Retry at once without counting, after the request was fixed.
    Immediately,
}

impl Failure {
    fn retryable(error: LlmError) -> Failure {
        Failure {
            error,
            retry: Retry::Backoff,
            retry_after: None,
        }
    }

    fn from_decode(error: DecodeError) -> Failure {
        Failure {
            error: error.error,
            retry: if error.retryable {
                Retry::Backoff
            } else {
                Retry::Never
            },
            retry_after: None,
        }
    }
}

impl Provider {
    fn new(config: ProviderConfig) -> Result<Provider, LlmError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("maxwin-coach/", env!("CARGO_PKG_VERSION")));
        if is_loopback(&config.chat_url) {
            // A local model server must never be reached through an HTTP proxy from the environment.
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|error| {
            LlmError::Config(format!(
                "could not build the HTTP client for [{}]: {error}",
                config.section
            ))
        })?;

        Ok(Provider {
            include_usage: AtomicBool::new(config.stream_usage),
            config,
            http,
        })
    }

    /// Runs one chat call on this provider with its retries, in a tracing span.
    async fn chat(
        &self,
        request: &ChatRequest,
        on_event: &mut (dyn FnMut(StreamEvent<'_>) + Send),
        text_shown: &mut bool,
        call_started: Instant,
    ) -> Result<Completion, LlmError> {
        let span = info_span!(
            "llm_call",
            provider = %self.config.name,
            model = %self.config.model,
            attempts = field::Empty,
            first_token_ms = field::Empty,
            total_ms = field::Empty,
            prompt_tokens = field::Empty,
            completion_tokens = field::Empty,
            finish_reason = field::Empty,
        );
        self.chat_with_retries(request, on_event, text_shown, call_started)
            .instrument(span)
            .await
    }

    async fn chat_with_retries(
        &self,
        request: &ChatRequest,
        on_event: &mut (dyn FnMut(StreamEvent<'_>) + Send),
        text_shown: &mut bool,
        call_started: Instant,
    ) -> Result<Completion, LlmError> {
        let deadline = Instant::now() + self.config.total_timeout;
        let mut retries = 0;
        let mut attempts = 0;

        loop {
            if *text_shown {
                on_event(StreamEvent::Restart);
                *text_shown = false;
            }
            attempts += 1;
            Span::current().record("attempts", attempts);

            let failure = match self
                .stream_attempt(request, on_event, text_shown, deadline, call_started)
                .await
            {
                Ok(completion) => {
                    record_completion(&completion);
                    return Ok(completion);
                }
                Err(failure) => failure,
            };

            let Some(delay) = self.retry_delay(&failure, retries, deadline) else {
                warn!(attempts, error = %failure.error, "LLM chat request failed");
                return Err(failure.error);
            };
            warn!(
                attempts,
                delay_ms = delay.as_millis() as u64,
                error = %failure.error,
                "LLM chat request failed; retrying"
            );
            sleep(delay).await;
            if failure.retry == Retry::Backoff {
                retries += 1;
            }
        }
    }

    /// Decides whether `failure` is retried and after which delay.
    pub(super) fn retry_delay(
        &self,
        failure: &Failure,
        retries: u32,
        deadline: Instant,
    ) -> Option<Duration> {
        let delay = match failure.retry {
            Retry::Never => return None,
            Retry::Immediately => Duration::ZERO,
            Retry::Backoff if retries >= self.config.max_retries => return None,
            Retry::Backoff => match failure.retry_after {
                Some(wait) if wait > self.config.retry_max_delay => {
                    info!(
                        retry_after_ms = wait.as_millis() as u64,
                        "server asks to wait longer than retry_max_delay_secs; not retrying"
                    );
                    return None;
                }
                Some(wait) => wait,
                None => backoff_delay(
                    retries,
                    self.config.retry_base_delay,
                    self.config.retry_max_delay,
                ),
            },
        };
        (Instant::now() + delay < deadline).then_some(delay)
    }

    /// Sends one streamed request and reads the answer to its end.
    async fn stream_attempt(
        &self,
        request: &ChatRequest,
        on_event: &mut (dyn FnMut(StreamEvent<'_>) + Send),
        text_shown: &mut bool,
        deadline: Instant,
        call_started: Instant,
    ) -> Result<Completion, Failure> {
        let first_deadline = (Instant::now() + self.config.first_token_timeout).min(deadline);
        let first_timeout = if first_deadline == deadline {
            TimeoutKind::Total
        } else {
            TimeoutKind::FirstToken
        };
        let include_usage = self.include_usage.load(Ordering::Relaxed);
        let body = self.chat_body(request, include_usage);
        debug!(
            messages = request.messages.len(),
            include_usage, "sending chat completion request"
        );

        let sending = self
            .post(&self.config.chat_url, &body)
            .header("accept", "text/event-stream")
            .send();
        let response = match timeout_at(first_deadline, sending).await {
            Err(_) => return Err(Failure::retryable(LlmError::Timeout(first_timeout))),
            Ok(Err(error)) => return Err(transport_failure(error)),
            Ok(Ok(response)) => response,
        };
        if !response.status().is_success() {
            return Err(self.status_failure(response, include_usage, deadline).await);
        }

        let mut emitter = Emitter {
            on_event,
            text_shown,
            call_started,
            first_token_ms: None,
        };
        let is_json = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/json"));
        let decoder = if is_json {
            self.read_json_answer(response, first_deadline, first_timeout, &mut emitter)
                .await?
        } else {
            self.read_stream(
                response,
                first_deadline,
                first_timeout,
                deadline,
                &mut emitter,
            )
            .await?
        };

        let usage = decoder.usage.unwrap_or_default();
        Ok(Completion {
            provider: self.config.name.clone(),
            model: self.config.model.clone(),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            first_token_ms: emitter.first_token_ms,
            total_ms: call_started.elapsed().as_millis() as u64,
            finish_reason: decoder.finish_reason.clone(),
            text: decoder.into_text(),
        })
    }

    /// Reads the SSE body until `[DONE]` or the end of the stream.
    async fn read_stream(
        &self,
        response: reqwest::Response,
        first_deadline: Instant,
        first_timeout: TimeoutKind,
        deadline: Instant,
        emitter: &mut Emitter<'_>,
    ) -> Result<ChatStreamDecoder, Failure> {
        let mut body = response.bytes_stream();
        let mut parser = SseParser::new();
        let mut decoder = ChatStreamDecoder::default();
        let mut got_event = false;

        let mut finished_at: Option<Instant> = None;

        'read: loop {
            if finished_at.is_none() && decoder.finish_reason.is_some() {
                finished_at = Some(Instant::now());
            }
            let (limit, timeout) = match finished_at {
                // Only the usage chunk and `[DONE]` can follow a finish_reason,
                // so a server that then hangs must not hold the answer back.
                Some(finished) => (
                    (finished + AFTER_FINISH_WAIT).min(deadline),
                    TimeoutKind::Total,
                ),
                None if got_event => (deadline, TimeoutKind::Total),
                None => (first_deadline, first_timeout),
            };
            let piece = match timeout_at(limit, body.next()).await {
                Err(_) if finished_at.is_some() => {
                    debug!(
                        "LLM stream stayed open after finish_reason; treating the answer as complete"
                    );
                    break;
                }
                Err(_) => return Err(Failure::retryable(LlmError::Timeout(timeout))),
                Ok(None) => break,
                Ok(Some(Err(error))) => {
                    debug!(error = %error_chain(&error), "LLM answer stream broke off");
                    break;
                }
                Ok(Some(Ok(piece))) => piece,
            };

            for event in parser.push(&piece) {
                got_event = true;
                let visible = decoder.decode(&event).map_err(Failure::from_decode)?;
                emitter.emit(&visible);
                if decoder.done {
                    break 'read;
                }
            }
        }

        let rest = decoder.finish();
        emitter.emit(&rest);
        if !decoder.is_complete() {
            return Err(Failure::retryable(LlmError::Incomplete {
                partial: decoder.into_text(),
            }));
        }
        Ok(decoder)
    }

    /// Reads a plain JSON answer from a server that ignored `stream: true`.
    async fn read_json_answer(
        &self,
        response: reqwest::Response,
        first_deadline: Instant,
        first_timeout: TimeoutKind,
        emitter: &mut Emitter<'_>,
    ) -> Result<ChatStreamDecoder, Failure> {
        let body = match timeout_at(first_deadline, response.text()).await {
            Err(_) => return Err(Failure::retryable(LlmError::Timeout(first_timeout))),
            Ok(Err(error)) => {
                return Err(Failure::retryable(LlmError::Transport(error_chain(&error))));
            }
            Ok(Ok(body)) => body,
        };
        let decoder = decode_full_response(&body).map_err(Failure::from_decode)?;
        emitter.emit(decoder.text());
        Ok(decoder)
    }

    fn chat_body(&self, request: &ChatRequest, include_usage: bool) -> Value {
        let mut body = self.config.extra_body.clone();
        body.insert("model".into(), json!(self.config.model));
        body.insert("messages".into(), json!(request.messages));
        body.insert("stream".into(), json!(true));
        if include_usage {
            body.insert("stream_options".into(), json!({ "include_usage": true }));
        }
        if let Some(temperature) = request.temperature.or(self.config.temperature) {
            body.insert("temperature".into(), json!(temperature));
        }
        if let Some(max_tokens) = request.max_tokens.or(self.config.max_tokens) {
            body.insert("max_tokens".into(), json!(max_tokens));
        }
        Value::Object(body)
    }

    pub(super) fn post(&self, url: &Url, body: &Value) -> reqwest::RequestBuilder {
        let builder = self.http.post(url.clone()).json(body);
        match &self.config.api_key {
            Some(key) => builder.bearer_auth(key.expose()),
            None => builder,
        }
    }

    /// Builds the failure for a non-2xx response from its status, headers and body.
    pub(super) async fn status_failure(
        &self,
        response: reqwest::Response,
        include_usage: bool,
        deadline: Instant,
    ) -> Failure {
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers(), Utc::now());
        let body = match timeout_at(deadline, response.text()).await {
            Ok(Ok(body)) => body,
            _ => String::new(),
        };
        let error = LlmError::Http {
            status,
            message: error_body_message(&body),
            section: self.config.section,
        };

        if include_usage && matches!(status, 400 | 422) && body.contains("stream_options") {
            self.include_usage.store(false, Ordering::Relaxed);
            info!(
                status,
                "LLM server rejected stream_options; retrying without requesting token usage"
            );
            return Failure {
                error,
                retry: Retry::Immediately,
                retry_after: None,
            };
        }

        let retry = if matches!(status, 408 | 429 | 500..=599) {
            Retry::Backoff
        } else {
            Retry::Never
        };
        Failure {
            error,
            retry,
            retry_after,
        }
    }
}

/// Maximum wait for the usage chunk and `[DONE]` after a chunk with a finish_reason.
const AFTER_FINISH_WAIT: Duration = Duration::from_secs(2);

/// Passes visible text to the caller and notes when the first text arrived.
struct Emitter<'a> {
    on_event: &'a mut (dyn FnMut(StreamEvent<'_>) + Send),
    text_shown: &'a mut bool,
    call_started: Instant,
    first_token_ms: Option<u64>,
}

impl Emitter<'_> {
    fn emit(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if self.first_token_ms.is_none() {
            self.first_token_ms = Some(self.call_started.elapsed().as_millis() as u64);
        }
        (self.on_event)(StreamEvent::Delta(text));
        *self.text_shown = true;
    }
}

fn record_completion(completion: &Completion) {
    let span = Span::current();
    span.record("total_ms", completion.total_ms);
    if let Some(value) = completion.first_token_ms {
        span.record("first_token_ms", value);
    }
    if let Some(value) = completion.prompt_tokens {
        span.record("prompt_tokens", value);
    }
    if let Some(value) = completion.completion_tokens {
        span.record("completion_tokens", value);
    }
    if let Some(value) = &completion.finish_reason {
        span.record("finish_reason", value.as_str());
    }
    info!(
        total_ms = completion.total_ms,
        first_token_ms = completion.first_token_ms,
        "LLM answer complete"
    );
}

/// Maps a failure to send the request: a connect timeout or any transport
/// error (refused, reset, DNS, TLS), all retried.
pub(super) fn transport_failure(error: reqwest::Error) -> Failure {
    if error.is_timeout() {
        return Failure::retryable(LlmError::Timeout(TimeoutKind::Connect));
    }
    Failure::retryable(LlmError::Transport(error_chain(&error)))
}

/// Formats an error with its sources, because reqwest puts the cause
/// (connection refused, reset) in the source chain.
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        Some(url::Host::Domain(domain)) => domain == "localhost",
        None => false,
    }
}
