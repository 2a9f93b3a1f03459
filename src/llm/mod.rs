//! Client for OpenAI-compatible chat completion APIs, with SSE streaming.
//!
//! [`LlmClient`] sends `POST {base_url}/chat/completions` with `stream: true`
//! and hands each piece of visible answer text to a callback as it arrives.
//! It applies connect, first-token and total timeouts, retries transient
//! failures with jittered exponential backoff (honouring `Retry-After`), and
//! switches to the `[llm.fallback]` provider when the primary one still fails.
//!
//! Reasoning never reaches the caller: `reasoning_content` and `reasoning`
//! deltas are dropped and `<think>…</think>` blocks are cut out of the content.
//!
//! A streamed answer counts as complete only when the server sent a
//! `finish_reason` or the `[DONE]` sentinel. A stream that breaks off before
//! that is an [`LlmError::Incomplete`] carrying the partial text.

mod client;
mod decode;
mod embed;
mod error;
mod retry;
mod settings;
pub mod sse;
pub mod think;

use serde::{Deserialize, Serialize};

pub use client::LlmClient;
pub use error::{LlmError, TimeoutKind};
pub use settings::LlmSettings;

/// Author of a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One message of the conversation sent to the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::System,
            content: content.into(),
        }
    }

    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::User,
            content: content.into(),
        }
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// A chat completion request. `temperature` and `max_tokens` override the
/// values in [`LlmSettings`] when set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
}

/// Progress of a streamed answer, passed to the `chat_stream` callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEvent<'a> {
    /// Next piece of visible answer text, to append to what is shown.
    Delta(&'a str),
    /// A retry (or the fallback provider) is starting after text was already
    /// shown: drop all text shown so far, because the new attempt streams
    /// the answer again from its beginning. Only sent when text was shown.
    Restart,
}

/// A finished answer with its provider, token counts and latency.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Answer text with reasoning removed.
    pub text: String,
    /// Provider name (`name` setting, or the host of `base_url`).
    pub provider: String,
    /// Configured model name.
    pub model: String,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    /// Milliseconds from the call to the first visible text of this answer,
    /// or `None` when the answer has no visible text.
    pub first_token_ms: Option<u64>,
    /// Milliseconds from the call to the end of the answer, retries and
    /// fallback included.
    pub total_ms: u64,
    /// `stop`, `length`, `content_filter`, …, as the server reported it.
    pub finish_reason: Option<String>,
}
