//! Chat commands, the same on every platform: `/start`, `/help`, `/ask`, `/reset`,
//! `/lang`, `/feedback`, with Chinese aliases.

use maxwin_channel::Lang;

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Start,
    Help,
    /// `/ask <text>`; the text may be empty, which earns a usage hint.
    Ask(String),
    Reset,
    /// `/lang zh|en`; `None` when the argument is missing or unknown.
    Lang(Option<Lang>),
    /// `/feedback <text>`.
    Feedback(String),
    /// A slash word that is not one of ours, such as `/weather`.
    Unknown(String),
}

/// Parses a message that starts with `/` (or the full-width `／`) into a command.
///
/// Returns `None` for ordinary text. Adapters have already removed any
/// `@botname` suffix addressed to this bot, but a leftover suffix is tolerated.
pub fn parse_command(text: &str) -> Option<Command> {
    let text = text.trim_start();
    let rest = text.strip_prefix('/').or_else(|| text.strip_prefix('／'))?;
    let (word, argument) = match rest.find(char::is_whitespace) {
        Some(index) => (&rest[..index], rest[index..].trim()),
        None => (rest, ""),
    };
    let word = word.split('@').next().unwrap_or_default().to_lowercase();
    if word.is_empty() {
        return None;
    }

    let command = match word.as_str() {
        "start" | "开始" => Command::Start,
        "help" | "帮助" | "h" | "?" => Command::Help,
        "ask" | "问" | "提问" => Command::Ask(argument.to_string()),
        "reset" | "new" | "重置" | "清空" => Command::Reset,
        "lang" | "language" | "语言" => Command::Lang(Lang::parse(argument)),
        "feedback" | "反馈" => Command::Feedback(argument.to_string()),
        _ => Command::Unknown(word),
    };
    Some(command)
}

/// Returns the help text in `lang`.
pub fn help_text(lang: Lang) -> &'static str {
    match lang {
        Lang::Zh => {
            "我是销售参谋（Max-Win-Win Coach），帮你分析 B2B 销售中的具体局面。\n\
             直接描述你的情况，例如：“客户说我们比竞品贵 30%，要不要申请折扣？”\n\
             我会给出一张问答卡：局势评估、关键破局提问、行动路径和参考来源。\n\n\
             命令：\n\
             /ask <问题>  提问（群聊里也可以 @我）\n\
             /reset  清空本对话的上下文，重新开始\n\
             /lang zh|en  设置回答语言（中文或英文）\n\
             /feedback <内容>  给我们留言\n\
             /help  显示本帮助"
        }
        Lang::En => {
            "I'm Max-Win-Win Coach (销售参谋). I help you think through a specific B2B sales situation.\n\
             Describe what is going on, for example: \"The client says we're 30% more expensive than the competitor. Should I offer a discount?\"\n\
             You get a Q&A card: a situation assessment, breakthrough questions, an action plan and sources.\n\n\
             Commands:\n\
             /ask <question>  ask a question (in a group you can also @-mention me)\n\
             /reset  clear this conversation's context and start over\n\
             /lang zh|en  set the reply language (Chinese or English)\n\
             /feedback <text>  send us a comment\n\
             /help  show this help"
        }
    }
}

/// Returns the welcome text for `/start` in `lang`.
pub fn welcome_text(lang: Lang) -> String {
    let greeting = lang.pick(
        "你好！欢迎使用销售参谋。",
        "Hello! Welcome to Max-Win-Win Coach.",
    );
    format!("{greeting}\n\n{}", help_text(lang))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_plain_text_is_not_a_command() {
        assert_eq!(parse_command("客户嫌贵怎么回"), None);
        assert_eq!(parse_command("a/b test"), None);
        assert_eq!(parse_command("/"), None);
    }

    #[test]
    fn parse_ask_keeps_argument() {
        assert_eq!(
            parse_command("/ask 客户嫌贵怎么回"),
            Some(Command::Ask("客户嫌贵怎么回".into()))
        );
        assert_eq!(parse_command("/ask"), Some(Command::Ask(String::new())));
    }

    #[test]
    fn parse_tolerates_bot_suffix_and_case() {
        assert_eq!(
            parse_command("/Ask@MaxWinBot price?"),
            Some(Command::Ask("price?".into()))
        );
        assert_eq!(parse_command("  /RESET"), Some(Command::Reset));
    }

    #[test]
    fn parse_lang_argument() {
        assert_eq!(
            parse_command("/lang en"),
            Some(Command::Lang(Some(Lang::En)))
        );
        assert_eq!(
            parse_command("/lang 中文"),
            Some(Command::Lang(Some(Lang::Zh)))
        );
        assert_eq!(parse_command("/lang fr"), Some(Command::Lang(None)));
        assert_eq!(parse_command("/lang"), Some(Command::Lang(None)));
    }

    #[test]
    fn parse_chinese_aliases_and_full_width_slash() {
        assert_eq!(parse_command("／帮助"), Some(Command::Help));
        assert_eq!(parse_command("/重置"), Some(Command::Reset));
        assert_eq!(
            parse_command("/反馈 很有用"),
            Some(Command::Feedback("很有用".into()))
        );
    }

    #[test]
    fn parse_unknown_command() {
        assert_eq!(
            parse_command("/weather today"),
            Some(Command::Unknown("weather".into()))
        );
    }
}
