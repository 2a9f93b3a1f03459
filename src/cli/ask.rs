//! `maxwin ask`: one question in, one card out.

use std::io::IsTerminal;

use anyhow::bail;
use maxwin_channel::Lang;

use super::console::{ConsoleSink, OutputFormat};
use crate::config::Settings;

#[derive(Debug, clap::Args)]
pub struct AskArgs {
    /// The question, in Chinese or English; several words are joined with spaces.
    #[arg(required = true, value_name = "QUESTION")]
    pub question: Vec<String>,
    /// Prints the reply as JSON (the card model) instead of text.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// How to print the reply.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Answers in this language (zh or en) instead of the question's own.
    #[arg(long, value_parser = parse_lang)]
    pub lang: Option<Lang>,
    /// Does not stream the LLM's draft to stderr while it is written.
    #[arg(long)]
    pub no_stream: bool,
}

fn parse_lang(value: &str) -> Result<Lang, String> {
    Lang::parse(value).ok_or_else(|| format!("unknown language `{value}`: use zh or en"))
}

pub async fn run(args: AskArgs, settings: Settings) -> anyhow::Result<()> {
    let question = args.question.join(" ");
    if question.trim().is_empty() {
        bail!(
            "the question is empty: write it after `maxwin ask`, e.g. maxwin ask \"客户嫌贵怎么回？\""
        );
    }
    let format = if args.json {
        OutputFormat::Json
    } else {
        args.format
    };

    let (coach, _knowledge) = crate::app::build_coach(&settings).await?;
    let stream = coach.has_llm() && !args.no_stream && format != OutputFormat::Json;
    let live = (stream && std::io::stderr().is_terminal()).then(std::io::stderr);
    let mut sink = ConsoleSink::new(std::io::stdout(), live, format);

    let reply = coach.answer_once(&question, args.lang, &mut sink).await;
    use maxwin_channel::ReplySink;
    sink.finish(&reply).await?;
    Ok(())
}
