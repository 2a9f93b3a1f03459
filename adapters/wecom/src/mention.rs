//! Removes the robot's @-mention from group message text.
//!
//! WeCom puts the mention into `text.content` as `@Name`, with either the ASCII
//! `@` or the full-width `＠`, often followed by U+2005 (four-per-em space). Names
//! may contain spaces, so the configured names are matched literally; without
//! them the first `@word` is taken to be the robot.

const AT_SIGNS: [char; 2] = ['@', '＠'];

/// Returns the text without the robot's mentions, and whether one was found.
///
/// When the remaining text is a command preceded only by mentions of other
/// people (`@张三 /reset`), those mentions are dropped too, so a command after
/// the mention works as in a single chat.
pub fn strip_bot_mention(text: &str, names: &[String]) -> (String, bool) {
    let mut names: Vec<&str> = names
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .collect();
    // Longest first, so "Max Win" does not shadow "Max Win Coach".
    names.sort_by_key(|name| std::cmp::Reverse(name.len()));

    let (mut rest, found) = if names.is_empty() {
        strip_first_mention(text)
    } else {
        strip_named(text, &names)
    };

    let without_others = skip_leading_mentions(&rest);
    if without_others.starts_with('/') {
        rest = without_others.to_string();
    }
    (normalize_space(&rest), found)
}

fn strip_named(text: &str, names: &[&str]) -> (String, bool) {
    let mut out = String::with_capacity(text.len());
    let mut found = false;
    let mut index = 0;
    while index < text.len() {
        let tail = &text[index..];
        let ch = tail.chars().next().unwrap_or_default();
        if AT_SIGNS.contains(&ch) {
            let after_at = &tail[ch.len_utf8()..];
            if let Some(name) = names.iter().find(|name| ends_mention(after_at, name)) {
                found = true;
                index += ch.len_utf8() + name.len();
                out.push(' ');
                continue;
            }
        }
        out.push(ch);
        index += ch.len_utf8();
    }
    (out, found)
}

/// True when `text` starts with `name` followed by whitespace, punctuation or the end.
fn ends_mention(text: &str, name: &str) -> bool {
    let Some(after) = strip_prefix_ignore_ascii_case(text, name) else {
        return false;
    };
    after.chars().next().is_none_or(|next| {
        next.is_whitespace() || next.is_ascii_punctuation() || "，。：！？".contains(next)
    })
}

fn strip_prefix_ignore_ascii_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Removes the first `@word` (up to whitespace); used when no names are configured.
fn strip_first_mention(text: &str) -> (String, bool) {
    let Some(start) = text.find(AT_SIGNS) else {
        return (text.to_string(), false);
    };
    let after = &text[start..];
    let end = after.find(char::is_whitespace).unwrap_or(after.len());
    (format!("{} {}", &text[..start], &after[end..]), true)
}

/// Skips `@word` tokens (and the whitespace around them) at the start of `text`.
fn skip_leading_mentions(text: &str) -> &str {
    let mut rest = text.trim_start();
    while rest.starts_with(AT_SIGNS) {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        rest = rest[end..].trim_start();
    }
    rest
}

/// Trims and collapses the runs of whitespace that removing a mention leaves.
fn normalize_space(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for ch in text.trim().chars() {
        if ch.is_whitespace() && ch != '\n' {
            pending_space = true;
            continue;
        }
        if pending_space && !out.is_empty() && ch != '\n' && !out.ends_with('\n') {
            out.push(' ');
        }
        pending_space = false;
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["销售参谋".into(), "Max Win Coach".into()]
    }

    #[test]
    fn strips_leading_mention() {
        assert_eq!(
            strip_bot_mention("@销售参谋 客户不签约怎么办", &names()),
            ("客户不签约怎么办".to_string(), true)
        );
    }

    #[test]
    fn strips_full_width_at_and_four_per_em_space() {
        assert_eq!(
            strip_bot_mention("＠销售参谋\u{2005}客户压价", &names()),
            ("客户压价".to_string(), true)
        );
    }

    #[test]
    fn strips_name_with_spaces() {
        assert_eq!(
            strip_bot_mention("@Max Win Coach how do I handle price?", &names()),
            ("how do I handle price?".to_string(), true)
        );
    }

    #[test]
    fn keeps_other_person_mentioned_first() {
        assert_eq!(
            strip_bot_mention("@张三 @销售参谋 帮他看看这个客户", &names()),
            ("@张三 帮他看看这个客户".to_string(), true)
        );
    }

    #[test]
    fn command_after_mentions_works() {
        assert_eq!(strip_bot_mention("@销售参谋 /reset", &names()).0, "/reset");
        assert_eq!(
            strip_bot_mention("@张三 @销售参谋 /help", &names()).0,
            "/help"
        );
    }

    #[test]
    fn name_prefix_of_longer_word_is_kept() {
        assert_eq!(
            strip_bot_mention("@销售参谋长 你好", &names()),
            ("@销售参谋长 你好".to_string(), false)
        );
    }

    #[test]
    fn without_names_first_mention_goes() {
        assert_eq!(
            strip_bot_mention("@Robot 你好", &[]),
            ("你好".to_string(), true)
        );
    }
}
