use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = maxwin_coach::cli::Cli::parse();
    match maxwin_coach::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
