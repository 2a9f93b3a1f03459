//! Picks the language of the router's own short replies from the user's text.

use maxwin_channel::Lang;

/// Share of CJK characters among letters at or above which a text counts as Chinese.
///
/// Chinese text often carries English product names and acronyms, and one Han
/// character carries about as much as a short English word, so the bar sits well
/// below one half.
const ZH_SHARE: f64 = 0.25;

/// Detects Chinese or English from the share of CJK characters among the letters.
///
/// Text without any letters (emoji, digits, an empty command) is treated as
/// Chinese, the language most users of the bot write in.
pub fn detect_lang(text: &str) -> Lang {
    let mut cjk = 0usize;
    let mut other_letters = 0usize;
    for ch in text.chars() {
        if is_cjk(ch) {
            cjk += 1;
        } else if ch.is_alphabetic() {
            other_letters += 1;
        }
    }

    let letters = cjk + other_letters;
    if letters == 0 {
        return Lang::Zh;
    }
    if cjk as f64 / letters as f64 >= ZH_SHARE {
        Lang::Zh
    } else {
        Lang::En
    }
}

/// Returns true for Han ideographs (the unified blocks and their extensions).
fn is_cjk(ch: char) -> bool {
    matches!(
        ch,
        '\u{3400}'..='\u{4DBF}'
            | '\u{4E00}'..='\u{9FFF}'
            | '\u{F900}'..='\u{FAFF}'
            | '\u{20000}'..='\u{2FA1F}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_lang_cases() {
        let cases = [
            ("客户说我们比竞品贵 30%，要不要申请折扣？", Lang::Zh),
            ("客户说 SaaS license 太贵", Lang::Zh),
            ("The client says we are 30% more expensive", Lang::En),
            (
                "Our buyer in 上海 wants a discount before the demo",
                Lang::En,
            ),
            ("", Lang::Zh),
            ("👍 123 !!!", Lang::Zh),
            ("/help", Lang::En),
            ("/帮助", Lang::Zh),
            ("Ça coûte trop cher", Lang::En),
        ];
        for (text, expected) in cases {
            assert_eq!(detect_lang(text), expected, "text: {text:?}");
        }
    }
}
