//! Reply-language detection.

use maxwin_channel::Lang;

/// Returns true for Han characters (CJK Unified Ideographs and their extensions).
pub fn is_han(ch: char) -> bool {
    matches!(ch,
        '\u{4E00}'..='\u{9FFF}'
        | '\u{3400}'..='\u{4DBF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{2FA1F}')
}

/// Chooses the reply language for a message: `zh` or `en`.
///
/// Mixed text follows its main language. One Han character carries about as much
/// as one English word, so the message is Chinese when it has at least as many Han
/// characters as Latin words. Text with neither (digits, emoji) returns `fallback`.
pub fn detect(text: &str, fallback: Lang) -> Lang {
    let han = text.chars().filter(|c| is_han(*c)).count();
    let latin_words = text
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
        .count();
    if han == 0 && latin_words == 0 {
        fallback
    } else if han >= latin_words {
        Lang::Zh
    } else {
        Lang::En
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_plain_chinese() {
        assert_eq!(detect("客户已读不回咋整", Lang::En), Lang::Zh);
    }

    #[test]
    fn detect_plain_english() {
        assert_eq!(
            detect("The prospect went silent after our proposal.", Lang::Zh),
            Lang::En
        );
    }

    #[test]
    fn detect_mixed_follows_main_language() {
        assert_eq!(
            detect("pipeline 看着挺满，但老板说我 forecast 水分太大", Lang::En),
            Lang::Zh
        );
        assert_eq!(
            detect("Meeting 王总 tomorrow about the renewal pricing", Lang::Zh),
            Lang::En
        );
    }

    #[test]
    fn detect_without_letters_uses_fallback() {
        assert_eq!(detect("123 😀 ？？", Lang::En), Lang::En);
        assert_eq!(detect("", Lang::Zh), Lang::Zh);
    }

    #[test]
    fn detect_full_width_latin_counts_as_neither() {
        // Full-width letters are not ASCII; the caller normalises text first when it matters.
        assert_eq!(detect("ＯＫ", Lang::Zh), Lang::Zh);
    }
}
