//! Renders replies as WeCom markdown and splits them under WeCom's byte limits.
//!
//! The app and webhook markdown subset has headings, bold, links, inline code,
//! `>` quotes and `<font color>`, but no lists or tables, so bullets become lines
//! that start with "• ". The AI robot's stream markdown is richer and takes the
//! channel crate's CommonMark rendering as it is.

use maxwin_channel::render::{Line, Section, pack_chunks, sections};
use maxwin_channel::{Card, LengthUnit, Reply};

/// `text.content` and app `markdown.content` limit, in UTF-8 bytes.
pub const APP_MESSAGE_MAX_BYTES: usize = 2048;
/// Group webhook `markdown.content` limit, in UTF-8 bytes.
pub const WEBHOOK_MARKDOWN_MAX_BYTES: usize = 4096;
/// Group webhook `text.content` limit, in UTF-8 bytes.
pub const WEBHOOK_TEXT_MAX_BYTES: usize = 2048;
/// AI robot stream `content` limit, in UTF-8 bytes.
pub const STREAM_MAX_BYTES: usize = 20480;

/// One message ready to send: the WeCom msgtype and its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub msgtype: &'static str,
    pub content: String,
}

/// Renders one card section in the app markdown subset.
pub fn section_to_wecom_markdown(card: &Card, section: &Section) -> String {
    let colon = card.lang.pick("：", ": ");
    let mut out = String::new();
    for line in &section.lines {
        match line {
            Line::Title(text) => out.push_str(&format!("# {text}\n")),
            Line::Heading { level: 1, text } => out.push_str(&format!("\n## {text}\n")),
            Line::Heading { text, .. } => out.push_str(&format!("### {text}\n")),
            Line::Notice(text) => {
                out.push_str(&format!("> <font color=\"comment\">{text}</font>\n"))
            }
            Line::Field { label, text } => out.push_str(&format!("**{label}{colon}**{text}\n")),
            Line::Bullet {
                label: Some(label),
                text,
            } => out.push_str(&format!("• **{label}{colon}**{text}\n")),
            Line::Bullet { label: None, text } => out.push_str(&format!("• {text}\n")),
            Line::Paragraph(text) => out.push_str(&format!("{text}\n")),
        }
    }
    out
}

/// Splits a reply into app messages of at most `max_bytes` each: a card as
/// markdown split between sections, a text reply as plain text split at lines.
pub fn app_parts(reply: &Reply, max_bytes: usize) -> Vec<Part> {
    match reply {
        Reply::Card(card) => {
            let rendered: Vec<String> = sections(card)
                .iter()
                .map(|section| section_to_wecom_markdown(card, section))
                .collect();
            to_parts(
                "markdown",
                pack_chunks(&rendered, max_bytes, LengthUnit::Bytes),
            )
        }
        Reply::Text { text, .. } => {
            to_parts("text", pack_chunks(&[text], max_bytes, LengthUnit::Bytes))
        }
    }
}

/// Splits plain text or markdown into pieces of at most `max_bytes`, at lines
/// where possible and never inside a UTF-8 character.
pub fn split_bytes(text: &str, max_bytes: usize) -> Vec<String> {
    pack_chunks(&[text], max_bytes, LengthUnit::Bytes)
        .into_iter()
        .map(|chunk| chunk.trim_matches('\n').to_string())
        .filter(|chunk| !chunk.trim().is_empty())
        .collect()
}

/// Renders a reply as the AI robot's stream markdown (CommonMark).
pub fn stream_markdown(reply: &Reply) -> String {
    match reply {
        Reply::Card(card) => maxwin_channel::render::to_markdown(card),
        Reply::Text { text, .. } => text.clone(),
    }
}

/// Returns the longest prefix of `text` of at most `max_bytes` that ends on a character boundary.
pub fn truncate_bytes(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn to_parts(msgtype: &'static str, chunks: Vec<String>) -> Vec<Part> {
    chunks
        .into_iter()
        // Sections start with a blank line; trimming only shortens a chunk.
        .map(|chunk| chunk.trim_matches('\n').to_string())
        .filter(|chunk| !chunk.trim().is_empty())
        .map(|content| Part { msgtype, content })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use maxwin_channel::{Labelled, Lang, ReplyKind, Situation, SourceRef};

    fn card() -> Card {
        Card {
            lang: Lang::Zh,
            title: "价格异议".into(),
            question: "客户说太贵".into(),
            situation: Situation {
                stage: "推进中".into(),
                diagnosis: "客户在比较方案".into(),
            },
            self_check: vec!["我是否了解预算？".into()],
            outward: vec![Labelled::new("澄清顾虑", "您最担心的是哪一部分？")],
            actions_now: vec![Labelled::new("确认", "约一次电话")],
            actions_later: vec![Labelled::new("跟进", "发送案例")],
            sources: vec![SourceRef {
                id: "QA_002".into(),
                title: "价格异议".into(),
            }],
            ..Card::default()
        }
    }

    #[test]
    fn card_markdown_has_no_list_syntax() {
        let parts = app_parts(&Reply::Card(card()), APP_MESSAGE_MAX_BYTES);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].msgtype, "markdown");
        let content = &parts[0].content;
        assert!(content.starts_with("# 价格异议"));
        assert!(content.contains("• **澄清顾虑：**您最担心的是哪一部分？"));
        assert!(
            !content
                .lines()
                .any(|line| line.starts_with("* ") || line.starts_with("- "))
        );
    }

    #[test]
    fn text_reply_splits_under_limit() {
        let text = "销售参谋".repeat(300);
        let reply = Reply::Text {
            kind: ReplyKind::Command,
            lang: Lang::Zh,
            text: text.clone(),
        };
        let parts = app_parts(&reply, APP_MESSAGE_MAX_BYTES);
        assert!(parts.len() >= 2);
        assert!(
            parts
                .iter()
                .all(|p| p.content.len() <= APP_MESSAGE_MAX_BYTES)
        );
        assert_eq!(
            parts.iter().map(|p| p.content.as_str()).collect::<String>(),
            text
        );
    }

    #[test]
    fn truncate_respects_char_boundary() {
        assert_eq!(truncate_bytes("销售", 4), "销");
        assert_eq!(truncate_bytes("ab", 4), "ab");
    }
}
