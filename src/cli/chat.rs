//! `maxwin chat`: an interactive session whose history lives in the store.

use std::io::{BufRead, IsTerminal, Write};

use chrono::Utc;
use maxwin_channel::{Inbound, Platform};

use super::console::{ConsoleSink, OutputFormat};
use crate::config::Settings;

#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// The conversation to continue; each name keeps its own history.
    #[arg(long, default_value = "terminal")]
    pub session: String,
    /// How to print replies.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

pub async fn run(args: ChatArgs, settings: Settings) -> anyhow::Result<()> {
    let (coach, _knowledge) = crate::app::build_coach(&settings).await?;
    let user = std::env::var("USER").unwrap_or_else(|_| "local".to_string());
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "销售参谋 · Max-Win-Win Coach. Describe your deal; /help for commands, /exit or Ctrl-D to quit."
        );
    }

    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut counter: u64 = 0;
    loop {
        if interactive {
            eprint!("> ");
            std::io::stderr().flush()?;
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        if matches!(text, "/exit" | "/quit" | "/退出") {
            break;
        }

        counter += 1;
        let now = Utc::now();
        let message = Inbound {
            platform: Platform::Console,
            tenant: "local".to_string(),
            conversation: args.session.clone(),
            thread: None,
            user: user.clone(),
            display_name: Some(user.clone()),
            text: text.to_string(),
            is_direct: true,
            mentions_bot: false,
            replies_to_bot: false,
            message_id: format!("{}-{counter}", now.timestamp_micros()),
            received_at: now,
        };
        let live = (coach.has_llm() && std::io::stderr().is_terminal()).then(std::io::stderr);
        let mut sink = ConsoleSink::new(std::io::stdout(), live, args.format);
        if let Err(error) = coach.handle(&message, &mut sink).await {
            eprintln!("error: {error}");
        }
        println!();
    }
    Ok(())
}
