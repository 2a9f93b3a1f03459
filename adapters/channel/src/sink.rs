//! How the core shows progress and answers on a platform, and how adapters hand it messages.
//!
//! The three platforms stream in different ways, and [`ReplySink`] covers them all
//! with one call pattern: [`ReplySink::start`] once, [`ReplySink::progress`] with the
//! cumulative preview text as it grows (or shrinks, after a retry), then exactly one
//! [`ReplySink::finish`] with the final reply.
//!
//! - Push edits (Telegram, Slack): the sink edits one message, throttled to the rate it
//!   declares, and replaces it with the rendered card at the end.
//! - Pulled cumulative text (WeCom AI robot in callback mode): the sink stores the latest
//!   text, and the platform's refresh callbacks read it.
//! - Streams with a size cap: [`SinkCapabilities::max_progress_len`] tells the core how
//!   much preview the platform can take, in the platform's own unit.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::card::{Card, Lang};
use crate::message::{Feedback, Inbound};

/// What the bot sends back for one message.
// A reply is built once per message and moved, never stored in bulk, so the
// size difference between the variants costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    /// A coaching card, tailored by the LLM or assembled from the library.
    Card(Card),
    /// A short text: help, command confirmations, the off-topic reply, or an error
    /// explained in the user's language.
    Text {
        kind: ReplyKind,
        lang: Lang,
        text: String,
    },
}

impl Reply {
    /// Returns the kind of reply, for metrics and storage.
    pub fn kind(&self) -> ReplyKind {
        match self {
            Reply::Card(card) => match card.origin {
                crate::CardOrigin::Tailored => ReplyKind::Card,
                crate::CardOrigin::Library => ReplyKind::LibraryCard,
            },
            Reply::Text { kind, .. } => *kind,
        }
    }

    pub fn lang(&self) -> Lang {
        match self {
            Reply::Card(card) => card.lang,
            Reply::Text { lang, .. } => *lang,
        }
    }
}

/// The kinds of reply, as counted in metrics and stored with each turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    Card,
    LibraryCard,
    OffTopic,
    Command,
    /// A rate-limit notice, a queue notice or another refusal the user should read.
    Notice,
    Error,
}

impl ReplyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyKind::Card => "card",
            ReplyKind::LibraryCard => "library_card",
            ReplyKind::OffTopic => "off_topic",
            ReplyKind::Command => "command",
            ReplyKind::Notice => "notice",
            ReplyKind::Error => "error",
        }
    }
}

/// The unit a platform measures text length in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthUnit {
    /// UTF-8 bytes (WeCom).
    Bytes,
    /// Unicode scalar values (Slack, Telegram text).
    Chars,
    /// UTF-16 code units (Telegram entity offsets).
    Utf16,
}

/// How a sink shows an answer while it is being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressStyle {
    /// No preview; only a typing indicator, then the final reply (e.g. a terminal in `--json` mode).
    None,
    /// The sink edits or pushes each update itself, at most once per `min_interval`.
    Push { min_interval: Duration },
    /// The platform pulls the latest cumulative text when it wants it.
    Pull,
}

/// What a sink can do, so the core can stream the right amount of preview.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkCapabilities {
    pub progress: ProgressStyle,
    /// The largest preview the platform accepts, in `unit`; `None` when unbounded.
    pub max_progress_len: Option<usize>,
    pub unit: LengthUnit,
}

impl Default for SinkCapabilities {
    fn default() -> Self {
        SinkCapabilities {
            progress: ProgressStyle::None,
            max_progress_len: None,
            unit: LengthUnit::Chars,
        }
    }
}

/// What the platform reported after the final reply was delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// The platform ids of the messages that carry the reply, in order. Feedback
    /// buttons refer to an answer by one of these.
    pub message_ids: Vec<String>,
}

/// A failure to show something on the platform.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The platform asked us to slow down; the sink already waited or gave up.
    #[error("rate limited by the platform, retry after {0:?}")]
    RateLimited(Duration),
    /// The platform rejected the request; retrying the same request will not help.
    #[error("platform rejected the request: {0}")]
    Rejected(String),
    /// The request did not reach the platform or timed out.
    #[error("platform request failed: {0}")]
    Transport(String),
    /// The conversation or stream is gone (chat deleted, stream window closed).
    #[error("reply target is closed: {0}")]
    Closed(String),
}

/// The place an answer goes to: one per inbound message, provided by the adapter.
#[async_trait]
pub trait ReplySink: Send {
    fn capabilities(&self) -> SinkCapabilities;

    /// Signals that work has started (a typing indicator, a placeholder message).
    async fn start(&mut self) -> Result<(), SinkError>;

    /// Shows the preview so far. `text` is cumulative: each call replaces the
    /// previous preview. Sinks throttle as their platform needs and may skip calls.
    async fn progress(&mut self, text: &str) -> Result<(), SinkError>;

    /// Delivers the final reply; called exactly once, also after a failed `progress`.
    async fn finish(&mut self, reply: &Reply) -> Result<Delivered, SinkError>;
}

/// What the core did with a message an adapter handed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Recorded and queued; the reply will go to the sink.
    Queued,
    /// The same platform message was seen before; nothing will be sent.
    Duplicate,
    /// Not addressed to the bot (a group message without mention), or from a
    /// tenant or chat outside the allowlist; nothing will be sent.
    Ignored,
}

/// The core's entry point for adapters.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Records the message's dedupe key, then queues the answer and returns.
    ///
    /// Returns quickly (one database write), so adapters can call it inside a
    /// platform's acknowledgement deadline. An error means the dedupe key could not
    /// be stored; the adapter should answer the platform with a failure so that it
    /// redelivers later.
    async fn accept(
        &self,
        message: Inbound,
        sink: Box<dyn ReplySink>,
    ) -> Result<Accepted, HandlerError>;

    /// Stores a rating or comment against an earlier answer.
    async fn feedback(&self, feedback: Feedback) -> Result<(), HandlerError>;
}

/// A failure inside the core that an adapter should treat as temporary.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HandlerError(pub String);
