//! The `maxwin` command line.

/// Prints a line to stdout like `println!`, but a closed pipe (`maxwin … | head`)
/// ends the process quietly instead of panicking.
macro_rules! outln {
    () => {
        $crate::cli::print_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::print_line(format_args!($($arg)*))
    };
}

pub mod ask;
pub mod chat;
pub mod console;
pub mod corpus;
pub mod eval;
pub mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Settings;

/// Max-Win-Win Coach (销售参谋): B2B sales coaching from the terminal and in chat apps.
#[derive(Debug, Parser)]
#[command(name = "maxwin", version, about)]
pub struct Cli {
    /// Config file (default: $MAXWIN_CONFIG, or ./maxwin.toml when it exists).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ask one question and print the coaching card.
    Ask(ask::AskArgs),
    /// Talk with the coach in the terminal; history is kept in the database.
    Chat(chat::ChatArgs),
    /// Run the daemon: webhooks, chat adapters, health and metrics.
    Serve,
    /// Import, inspect and search the knowledge base.
    Corpus {
        #[command(subcommand)]
        command: corpus::CorpusCommand,
    },
    /// Measure the coach on an evaluation set.
    Eval {
        #[command(subcommand)]
        command: EvalCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Score retrieval on a JSONL evaluation file and print one JSON object.
    Retrieval(eval::EvalRetrievalArgs),
}

/// Writes one line to stdout; exits with status 0 when the reader has gone away.
pub fn print_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = writeln!(stdout, "{line}") {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        panic!("failed printing to stdout: {error}");
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Ask(args) => {
            crate::telemetry::init(&quiet_level(&settings), settings.log.json);
            runtime()?.block_on(ask::run(args, settings))
        }
        Command::Chat(args) => {
            crate::telemetry::init(&quiet_level(&settings), settings.log.json);
            runtime()?.block_on(chat::run(args, settings))
        }
        Command::Serve => {
            crate::telemetry::init(&settings.log.level, settings.log.json);
            runtime()?.block_on(serve::run(settings))
        }
        Command::Corpus { command } => {
            crate::telemetry::init("warn", settings.log.json);
            corpus::run(command, &settings.corpus_dir)
        }
        Command::Eval {
            command: EvalCommand::Retrieval(args),
        } => {
            crate::telemetry::init("warn", settings.log.json);
            eval::run(args, &settings)
        }
    }
}

/// Terminal commands log only warnings unless the config asks for more, so the
/// card is not buried in log lines.
fn quiet_level(settings: &Settings) -> String {
    if settings.log.level == "info" {
        "warn".to_string()
    } else {
        settings.log.level.clone()
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
