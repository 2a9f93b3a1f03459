//! Turns Telegram messages and button presses into the core's `Inbound` and `Feedback`.

use chrono::{DateTime, Utc};
use maxwin_channel::{Inbound, Lang, Platform, Rating};
use teloxide::types::{CallbackQuery, Message, MessageEntityKind, MessageEntityRef, UserId};

/// The bot's own identity, from `getMe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotIdentity {
    pub id: UserId,
    /// The username without `@`.
    pub username: String,
}

impl BotIdentity {
    /// Returns the tenant id of the core: the bot's user id.
    pub fn tenant(&self) -> String {
        self.id.0.to_string()
    }

    fn is_me(&self, name: &str) -> bool {
        name.trim_start_matches('@')
            .eq_ignore_ascii_case(&self.username)
    }
}

/// Converts a message into an `Inbound`, or returns `None` when the message must be ignored.
///
/// Ignored: messages from any bot (this one included), messages without text or
/// caption, and messages that start with a command addressed to another bot
/// (`/ask@otherbot`). Group messages that do not address this bot are still
/// returned, with `mentions_bot` and `replies_to_bot` false, because the core's
/// router decides whether to answer them (for example in a thread the bot is part of).
pub fn message_to_inbound(
    message: &Message,
    me: &BotIdentity,
    received_at: DateTime<Utc>,
) -> Option<Inbound> {
    let sender = message.from.as_ref()?;
    if sender.is_bot {
        return None;
    }
    let (raw_text, entities) = match (message.text(), message.caption()) {
        (Some(text), _) => (text, message.parse_entities().unwrap_or_default()),
        (None, Some(caption)) => (
            caption,
            message.parse_caption_entities().unwrap_or_default(),
        ),
        (None, None) => return None,
    };
    let addressed = strip_addressing(raw_text, &entities, me)?;

    let thread = message
        .is_topic_message
        .then_some(message.thread_id)
        .flatten()
        .map(|thread| thread.0.0.to_string());

    Some(Inbound {
        platform: Platform::Telegram,
        tenant: me.tenant(),
        conversation: message.chat.id.0.to_string(),
        thread,
        user: sender.id.0.to_string(),
        display_name: Some(sender.full_name()).filter(|name| !name.trim().is_empty()),
        text: addressed.text,
        is_direct: message.chat.is_private(),
        mentions_bot: addressed.mentions_bot,
        replies_to_bot: replies_to_bot(message, me),
        message_id: format!("{}:{}", message.chat.id.0, message.id.0),
        received_at,
    })
}

struct Addressed {
    text: String,
    mentions_bot: bool,
}

/// Removes mentions of this bot and the `@botname` suffix of a leading command.
///
/// Returns `None` when the leading command names another bot.
fn strip_addressing(
    text: &str,
    entities: &[MessageEntityRef<'_>],
    me: &BotIdentity,
) -> Option<Addressed> {
    // (byte range, replacement), in entity order, which Telegram sorts by offset.
    let mut edits: Vec<(std::ops::Range<usize>, &str)> = Vec::new();
    let mut mentions_bot = false;

    for entity in entities {
        match entity.kind() {
            MessageEntityKind::Mention if me.is_me(entity.text()) => {
                mentions_bot = true;
                edits.push((entity.range(), ""));
            }
            MessageEntityKind::TextMention { user } if user.id == me.id => {
                mentions_bot = true;
                edits.push((entity.range(), ""));
            }
            MessageEntityKind::BotCommand if entity.start() == 0 => {
                let command = entity.text();
                if let Some((name, target)) = command.split_once('@') {
                    if !me.is_me(target) {
                        return None;
                    }
                    mentions_bot = true;
                    edits.push((entity.range(), name));
                }
            }
            _ => {}
        }
    }

    let mut out = String::with_capacity(text.len());
    let mut cursor = 0;
    for (range, replacement) in edits {
        if range.start < cursor {
            continue;
        }
        out.push_str(&text[cursor..range.start]);
        out.push_str(replacement);
        cursor = range.end;
        // Drop one of the two blanks that surrounded a removed mention.
        let next_is_blank = text[cursor..].starts_with([' ', '\u{a0}']);
        if replacement.is_empty()
            && next_is_blank
            && (out.is_empty() || out.ends_with(char::is_whitespace))
        {
            cursor += text[cursor..].chars().next().map_or(0, char::len_utf8);
        }
    }
    out.push_str(&text[cursor..]);

    Some(Addressed {
        text: out.trim().to_string(),
        mentions_bot,
    })
}

fn replies_to_bot(message: &Message, me: &BotIdentity) -> bool {
    let Some(parent) = message.reply_to_message() else {
        return false;
    };
    // In a forum topic every message replies to the topic's opening service message;
    // that is not a reply to the bot.
    if message.is_topic_message && message.thread_id.map(|t| t.0) == Some(parent.id) {
        return false;
    }
    parent.from.as_ref().is_some_and(|from| from.id == me.id)
}

/// The request a button under a card carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ButtonAction {
    Rate(Rating),
    MoreQuestions,
}

/// The parsed `callback_data` of a card button: `<action>:<lang>:<message id>`.
///
/// The message id is the first message of the answer; it is empty when the button
/// sits on that message itself, whose id was not known before it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ButtonData {
    pub action: ButtonAction,
    pub lang: Lang,
    pub answer_message: Option<i32>,
}

impl ButtonData {
    pub fn encode(&self) -> String {
        let action = match self.action {
            ButtonAction::Rate(Rating::Up) => "up",
            ButtonAction::Rate(Rating::Down) => "down",
            ButtonAction::MoreQuestions => "more",
        };
        let id = self
            .answer_message
            .map(|id| id.to_string())
            .unwrap_or_default();
        format!("{action}:{}:{id}", self.lang.code())
    }

    pub fn decode(data: &str) -> Option<ButtonData> {
        let mut parts = data.splitn(3, ':');
        let action = match parts.next()? {
            "up" => ButtonAction::Rate(Rating::Up),
            "down" => ButtonAction::Rate(Rating::Down),
            "more" => ButtonAction::MoreQuestions,
            _ => return None,
        };
        let lang = Lang::parse(parts.next()?)?;
        let id = parts.next()?;
        let answer_message = if id.is_empty() {
            None
        } else {
            Some(id.parse().ok()?)
        };
        Some(ButtonData {
            action,
            lang,
            answer_message,
        })
    }
}

/// The `/ask` request a "More questions" press sends to the core, in the card's language.
pub fn more_questions_request(lang: Lang) -> String {
    lang.pick(
        "/ask 针对上面的情况，再给我几个可以直接问对方的问题",
        "/ask For the situation above, give me more questions I can ask the other side",
    )
    .to_string()
}

/// Converts a "More questions" press into a follow-up `Inbound` that replies to the card.
pub fn more_questions_inbound(
    query: &CallbackQuery,
    lang: Lang,
    me: &BotIdentity,
    received_at: DateTime<Utc>,
) -> Option<Inbound> {
    let message = query.message.as_ref()?;
    let chat = message.chat();
    let regular = message.regular_message();
    let thread = regular
        .filter(|m| m.is_topic_message)
        .and_then(|m| m.thread_id)
        .map(|thread| thread.0.0.to_string());
    Some(Inbound {
        platform: Platform::Telegram,
        tenant: me.tenant(),
        conversation: chat.id.0.to_string(),
        thread,
        user: query.from.id.0.to_string(),
        display_name: Some(query.from.full_name()).filter(|name| !name.trim().is_empty()),
        text: more_questions_request(lang),
        is_direct: chat.is_private(),
        mentions_bot: false,
        replies_to_bot: true,
        // Callback query ids are unique, so the press gets its own dedupe key.
        message_id: format!("{}:callback:{}", chat.id.0, query.id.0),
        received_at,
    })
}
