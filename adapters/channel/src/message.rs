//! Messages and events that cross the boundary between adapters and the core.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::sink::Reply;

/// The chat platform a message came from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Console,
    Telegram,
    Slack,
    Wecom,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Console => "console",
            Platform::Telegram => "telegram",
            Platform::Slack => "slack",
            Platform::Wecom => "wecom",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One user message, verified and normalised by an adapter.
///
/// Ids are the platform's own, as strings. `text` has the bot mention removed
/// and a command addressed to this bot written without the `@botname` suffix
/// (`/ask …`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inbound {
    pub platform: Platform,
    /// Slack team, WeCom corp (and agent or robot), Telegram bot id.
    pub tenant: String,
    /// Channel, group chat or private chat id.
    pub conversation: String,
    /// Thread or forum topic inside the conversation, if any.
    pub thread: Option<String>,
    /// The sender's platform user id.
    pub user: String,
    pub display_name: Option<String>,
    pub text: String,
    /// True in a one-to-one chat with the bot.
    pub is_direct: bool,
    /// True when the message @-mentions the bot.
    pub mentions_bot: bool,
    /// True when the message replies to one of the bot's messages.
    pub replies_to_bot: bool,
    /// The platform's message id; together with platform and tenant it is the dedupe key.
    pub message_id: String,
    pub received_at: DateTime<Utc>,
}

impl Inbound {
    /// Returns the key under which the router records this message as processed.
    pub fn dedupe_key(&self) -> String {
        format!("{}:{}:{}", self.platform, self.tenant, self.message_id)
    }
}

/// A rating a user gave to one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rating {
    Up,
    Down,
}

/// A 👍 / 👎 press on an answer, or a written `/feedback` comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    pub platform: Platform,
    pub tenant: String,
    pub conversation: String,
    pub user: String,
    /// The platform message id of the answer being rated, as reported by
    /// [`crate::Delivered::message_ids`] when the answer was sent.
    pub answer_message_id: String,
    pub rating: Option<Rating>,
    pub comment: Option<String>,
    /// The platform's id of the button press, for dedupe.
    pub event_id: String,
    pub received_at: DateTime<Utc>,
}

/// A message the bot sends on its own initiative, such as a daily tip or a broadcast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outbound {
    pub platform: Platform,
    pub tenant: String,
    pub conversation: String,
    pub thread: Option<String>,
    pub reply: Reply,
}
