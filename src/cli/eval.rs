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
    /// Leave out the bilingual vocabulary expansion (for measuring its effect).
    #[arg(long)]
    pub no_vocabulary: bool,
    /// Leave out the documents' scenarios (for measuring their effect).
    #[arg(long)]
    pub no_scenarios: bool,
    /// Leave out Han bigram matching (for measuring its effect).
    #[arg(long)]
    pub no_bigrams: bool,
    /// Weight every field the same (for measuring the field boosts).
    #[arg(long)]
    pub no_field_boosts: bool,
    /// Times each message is searched, for stable latency figures.
    #[arg(long, default_value_t = 5)]
    pub timing_rounds: usize,
}

/// Runs the evaluation and prints one JSON object on standard output.
pub fn run(args: EvalRetrievalArgs) -> anyhow::Result<()> {
    let cases = load_cases(&args.file)?;
    let corpus = super::corpus::load(&args.corpus)?;
    let settings = RetrievalSettings {
        vocabulary: args.no_vocabulary.then_some(false),
        scenarios: args.no_scenarios.then_some(false),
        bigrams: args.no_bigrams.then_some(false),
        field_boosts: args.no_field_boosts.then_some(false),
        ..RetrievalSettings::default()
    };
    let retriever =
        Retriever::build(&corpus, &settings).context("failed to build the search index")?;
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
