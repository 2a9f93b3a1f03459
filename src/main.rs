// NOTE: temporary entry point on the retrieval branch for running the corpus
// and eval commands; the lead's main.rs replaces it on merge.
use std::path::PathBuf;

use clap::Parser;
use maxwin_coach::cli::{corpus::CorpusCommand, eval::EvalRetrievalArgs};

#[derive(Parser)]
#[command(name = "maxwin")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    Corpus {
        #[arg(long, default_value = "corpus")]
        corpus_dir: PathBuf,
        #[command(subcommand)]
        command: CorpusCommand,
    },
    Eval {
        #[command(subcommand)]
        command: EvalCommand,
    },
}

#[derive(clap::Subcommand)]
enum EvalCommand {
    Retrieval(EvalRetrievalArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Corpus {
            corpus_dir,
            command,
        } => maxwin_coach::cli::corpus::run(command, &corpus_dir),
        Command::Eval {
            command: EvalCommand::Retrieval(args),
        } => maxwin_coach::cli::eval::run(args),
    }
}
