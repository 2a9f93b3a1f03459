//! The `maxwin serve` daemon: the message router, health and metrics endpoints,
//! and graceful shutdown.
//!
//! The layers, from the outside in:
//!
//! - [`daemon`] binds the HTTP listener, runs the adapters' loops, waits for
//!   SIGTERM or SIGINT and drains the answers in flight.
//! - [`http`] serves `/healthz`, `/readyz` and `/metrics` and merges the
//!   adapters' webhook routes.
//! - [`router`] is the [`maxwin_channel::Handler`] that adapters call: allowlist,
//!   addressing rules, dedupe, per-user rate limit and one answer at a time per
//!   conversation.
//! - [`Responder`] and [`EventLedger`] are the two ports the router needs from the
//!   rest of the core: the coach answers, the store records dedupe keys.

pub mod daemon;
pub mod http;
pub mod lang;
pub mod metrics;
pub mod notice;
pub mod queue;
pub mod rate_limit;
pub mod router;
pub mod settings;
pub mod threads;

use async_trait::async_trait;
use maxwin_channel::{Feedback, Inbound, ReplyKind, ReplySink, SinkError};

pub use daemon::{AdapterLoop, DaemonParts, run_daemon, serve_with_listener, shutdown_signal};
pub use http::{Readiness, http_router};
pub use metrics::Metrics;
pub use router::Router;
pub use settings::{RateLimitSettings, RouterSettings, ServerSettings};

/// A boxed error from another part of the core, kept as the source of a port error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The part of the core that answers messages; the coach implements it.
#[async_trait]
pub trait Responder: Send + Sync + 'static {
    /// Answers one message (commands included), writing progress and the final reply to the sink.
    ///
    /// When this returns an error before calling [`ReplySink::finish`], the router
    /// sends the user an apology in their language.
    async fn respond(
        &self,
        msg: &Inbound,
        sink: &mut dyn ReplySink,
    ) -> Result<ResponseInfo, ResponderError>;

    /// Stores a rating or comment; returns false when the answer is unknown or the
    /// event was already recorded.
    async fn feedback(&self, fb: &Feedback) -> Result<bool, ResponderError>;
}

/// What the responder reports about one answer, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseInfo {
    pub kind: ReplyKind,
    /// Total LLM time in milliseconds, when an LLM was called.
    pub llm_ms: Option<u64>,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
}

impl ResponseInfo {
    /// Describes a reply that needed no LLM call, such as a command confirmation.
    pub fn without_llm(kind: ReplyKind) -> Self {
        ResponseInfo {
            kind,
            llm_ms: None,
            prompt_tokens: None,
            completion_tokens: None,
        }
    }
}

/// A failure while answering one message.
#[derive(Debug, thiserror::Error)]
pub enum ResponderError {
    /// The database failed while loading or storing the conversation.
    #[error("storage failed")]
    Storage(#[source] BoxError),
    /// The LLM failed and no fallback answer could be built.
    #[error("LLM request failed")]
    Llm(#[source] BoxError),
    /// The platform rejected or lost the reply.
    #[error("reply delivery failed")]
    Sink(#[from] SinkError),
    /// Any other failure inside the core.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

impl ResponderError {
    /// Returns the label under which this error is counted in metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ResponderError::Storage(_) => "storage",
            ResponderError::Llm(_) => "llm",
            ResponderError::Sink(_) => "sink",
            ResponderError::Internal(_) => "internal",
        }
    }
}

/// The durable record of platform events already processed; the store implements it.
#[async_trait]
pub trait EventLedger: Send + Sync + 'static {
    /// Records `key` durably; returns true the first time the key is seen.
    async fn claim_event(&self, key: &str) -> Result<bool, LedgerError>;

    /// Checks that the backing database answers.
    async fn ping(&self) -> Result<(), LedgerError>;
}

/// A failure to reach or write the event ledger.
#[derive(Debug, thiserror::Error)]
#[error("event ledger unavailable")]
pub struct LedgerError(#[source] pub BoxError);

impl LedgerError {
    /// Wraps the underlying database error.
    pub fn new(source: impl Into<BoxError>) -> Self {
        LedgerError(source.into())
    }
}
