//! The platform-neutral contract between the coach and its chat adapters.
//!
//! Adapters turn platform events into [`Inbound`] messages and hand them to a
//! [`Handler`] together with a [`ReplySink`] that knows how to show progress and
//! the final [`Reply`] on that platform. The coach fills a [`Card`]; each adapter
//! renders it natively. Nothing here knows about retrieval, the LLM or storage,
//! and nothing here knows any platform's wire format.

pub mod card;
pub mod message;
pub mod render;
pub mod secret;
pub mod sink;

pub use card::{Card, CardOrigin, Labelled, Lang, Situation, SourceRef};
pub use message::{Feedback, Inbound, Outbound, Platform, Rating};
pub use secret::Secret;
pub use sink::{
    Accepted, Delivered, Handler, HandlerError, LengthUnit, ProgressStyle, Reply, ReplyKind,
    ReplySink, SinkCapabilities, SinkError,
};
