//! The router's own replies to users, in Simplified Chinese and English.

use maxwin_channel::{Lang, Reply, ReplyKind};

/// Builds the reply sent once when a user exceeds the per-user rate limit.
pub fn rate_limited(lang: Lang) -> Reply {
    text(
        ReplyKind::Notice,
        lang,
        lang.pick(
            "消息发得有点快，我需要一点时间。请稍等一分钟再发，刚才超出的消息我不会回复。",
            "You are sending messages faster than I can answer. Please wait a minute and send again; I skipped the messages over the limit.",
        ),
    )
}

/// Builds the reply sent when too many messages already wait in one conversation.
pub fn queue_full(lang: Lang) -> Reply {
    text(
        ReplyKind::Notice,
        lang,
        lang.pick(
            "我还在回答这个对话里之前的几条消息。等我回复完，请把这条消息再发一次。",
            "I am still answering earlier messages in this chat. Please send this one again after I reply to them.",
        ),
    )
}

/// Builds the apology sent when an answer failed or timed out.
pub fn answer_failed(lang: Lang) -> Reply {
    text(
        ReplyKind::Error,
        lang,
        lang.pick(
            "抱歉，这次没能生成回答。请稍后再试一次。",
            "Sorry, I could not answer this time. Please try again in a moment.",
        ),
    )
}

fn text(kind: ReplyKind, lang: Lang, text: &str) -> Reply {
    Reply::Text {
        kind,
        lang,
        text: text.to_owned(),
    }
}
