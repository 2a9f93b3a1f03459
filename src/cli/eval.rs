//! `maxwin eval retrieval FILE.jsonl`: score retrieval on a labelled message set.

use std::path::PathBuf;

use anyhow::Context;

use crate::eval::{evaluate, load_cases};
use crate::retrieval::{RetrievalSettings, Retriever};

#[derive(Debug, clap::Args)]
pub struct EvalRetrievalArgs {
    /// JSONL file of labelled messages (`qid`, `text`, `relevant`, `expect`).
    pub file: PathBuf,
    /// Number of documents that count as a hit.
    #[arg(long, default_value_t = 5)]
    pub k: usize,
    /// Also run the LLM query rewrite (needs a configured LLM).
    #[arg(long)]
    pub with_llm: bool,
    /// Corpus folder to index.
    #[arg(long, default_value = "corpus")]
    pub corpus: PathBuf,
    /// Times each message is searched, for stable latency figures.
    #[arg(long, default_value_t = 5)]
    pub timing_rounds: usize,
}

/// Runs the evaluation and prints one JSON object on standard output.
pub fn run(args: EvalRetrievalArgs) -> anyhow::Result<()> {
    let cases = load_cases(&args.file)?;
    let corpus = super::corpus::load(&args.corpus)?;
    let retriever = Retriever::build(&corpus, &RetrievalSettings::default())
        .context("failed to build the search index")?;
    let report = evaluate(
        &retriever,
        &corpus,
        &cases,
        args.k,
        &args.file.display().to_string(),
        args.timing_rounds,
    );
    let mut value = serde_json::to_value(&report)?;
    // TODO: run the LLM query rewrite once the llm module provides `LlmClient`.
    value["with_llm"] = serde_json::json!(if args.with_llm {
        "not run: the LLM query rewrite needs the llm module, so these are offline scores"
    } else {
        "off"
    });
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}
