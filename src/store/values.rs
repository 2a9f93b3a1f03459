//! Conversions between domain values and column values, shared by both backends.

use std::borrow::Cow;

use chrono::NaiveTime;
use maxwin_channel::{Lang, Platform, Rating, Reply, ReplyKind};
use serde_json::Value;

use super::StoreError;

/// Replaces each NUL character with U+FFFD REPLACEMENT CHARACTER.
///
/// PostgreSQL rejects NUL in `TEXT` and `JSONB`, and SQLite's C string
/// functions stop at it, so both backends store the cleaned text. All other
/// characters, including U+FFFE and bidirectional marks, are kept unchanged.
pub fn clean_text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Cleans an optional text, see [`clean_text`].
pub(super) fn clean_opt(text: Option<&str>) -> Option<String> {
    text.map(|t| clean_text(t).into_owned())
}

/// Returns the card of a reply as JSON with NUL replaced in every string,
/// or `None` for a text reply.
pub(super) fn card_json(reply: &Reply) -> Result<Option<Value>, StoreError> {
    let Reply::Card(card) = reply else {
        return Ok(None);
    };

    let mut value = serde_json::to_value(card)
        .map_err(|e| StoreError::InvalidData(format!("card cannot be encoded as JSON: {e}")))?;
    clean_json(&mut value);
    Ok(Some(value))
}

/// Returns the retrieved document ids as a JSON array with NUL replaced.
pub(super) fn ids_json(ids: &[String]) -> Value {
    Value::Array(
        ids.iter()
            .map(|id| Value::String(clean_text(id).into_owned()))
            .collect(),
    )
}

fn clean_json(value: &mut Value) {
    match value {
        Value::String(text) => {
            if text.contains('\0') {
                *text = text.replace('\0', "\u{FFFD}");
            }
        }
        Value::Array(items) => items.iter_mut().for_each(clean_json),
        Value::Object(fields) => fields.values_mut().for_each(clean_json),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Parses a stored reply kind, written by [`ReplyKind::as_str`].
pub(super) fn parse_reply_kind(value: &str) -> Result<ReplyKind, StoreError> {
    let kind = match value {
        "card" => ReplyKind::Card,
        "library_card" => ReplyKind::LibraryCard,
        "off_topic" => ReplyKind::OffTopic,
        "command" => ReplyKind::Command,
        "notice" => ReplyKind::Notice,
        "error" => ReplyKind::Error,
        other => {
            return Err(StoreError::InvalidData(format!(
                "unknown reply kind `{other}`"
            )));
        }
    };
    Ok(kind)
}

/// Parses a stored language code, written by [`Lang::code`].
pub(super) fn parse_lang(value: Option<&str>) -> Result<Option<Lang>, StoreError> {
    match value {
        None => Ok(None),
        Some(code) => Lang::parse(code)
            .map(Some)
            .ok_or_else(|| StoreError::InvalidData(format!("unknown language code `{code}`"))),
    }
}

/// Parses a stored platform name, written by [`Platform::as_str`].
pub(super) fn parse_platform(value: &str) -> Result<Platform, StoreError> {
    let platform = match value {
        "console" => Platform::Console,
        "telegram" => Platform::Telegram,
        "slack" => Platform::Slack,
        "wecom" => Platform::Wecom,
        other => {
            return Err(StoreError::InvalidData(format!(
                "unknown platform `{other}`"
            )));
        }
    };
    Ok(platform)
}

/// The text form of a subscription's local time.
const LOCAL_TIME_FORMAT: &str = "%H:%M";

pub(super) fn format_local_time(time: NaiveTime) -> String {
    time.format(LOCAL_TIME_FORMAT).to_string()
}

pub(super) fn parse_local_time(value: &str) -> Result<NaiveTime, StoreError> {
    NaiveTime::parse_from_str(value, LOCAL_TIME_FORMAT)
        .map_err(|e| StoreError::InvalidData(format!("invalid local time `{value}`: {e}")))
}

/// Decodes an optional key part stored as '' when absent.
pub(super) fn key_part_opt(part: String) -> Option<String> {
    (!part.is_empty()).then_some(part)
}

pub(super) fn rating_str(rating: Option<Rating>) -> Option<&'static str> {
    rating.map(|r| match r {
        Rating::Up => "up",
        Rating::Down => "down",
    })
}

/// Encodes an optional key part; `None` becomes '' so unique indexes see it.
pub(super) fn key_part(part: Option<&str>) -> String {
    clean_text(part.unwrap_or("")).into_owned()
}

/// Converts a count or duration for a signed 64-bit column, saturating at `i64::MAX`.
pub(super) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Converts a `limit` argument for SQL `LIMIT`.
pub(super) fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use maxwin_channel::{Card, CardOrigin};

    use super::*;

    #[test]
    fn clean_text_replaces_nul_only() {
        assert_eq!(clean_text("a\0b"), "a\u{FFFD}b");
        assert_eq!(clean_text("\u{FFFE}\u{200F}😀"), "\u{FFFE}\u{200F}😀");
        assert!(matches!(clean_text("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn card_json_cleans_nested_strings() {
        let card = Card {
            title: "t\0".into(),
            self_check: vec!["q\0".into()],
            origin: CardOrigin::Library,
            ..Card::default()
        };
        let value = card_json(&Reply::Card(card)).unwrap().unwrap();
        let text = value.to_string();
        assert!(!text.contains("\\u0000"), "{text}");
        assert_eq!(value["title"], "t\u{FFFD}");
        assert_eq!(value["self_check"][0], "q\u{FFFD}");
    }

    #[test]
    fn reply_kind_round_trips() {
        for kind in [
            ReplyKind::Card,
            ReplyKind::LibraryCard,
            ReplyKind::OffTopic,
            ReplyKind::Command,
            ReplyKind::Notice,
            ReplyKind::Error,
        ] {
            assert_eq!(parse_reply_kind(kind.as_str()).unwrap(), kind);
        }
        assert!(parse_reply_kind("bogus").is_err());
    }

    #[test]
    fn to_i64_saturates() {
        assert_eq!(to_i64(5), 5);
        assert_eq!(to_i64(u64::MAX), i64::MAX);
    }
}
