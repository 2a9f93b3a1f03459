//! `maxwin eval retrieval FILE.jsonl`: score retrieval on a labelled message set.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;

use crate::config::Settings;
use crate::corpus::Corpus;
use crate::eval::{EvalCase, evaluate, evaluate_with_llm, load_cases};
use crate::llm::LlmClient;
use crate::retrieval::{EMBEDDINGS_FILE, RetrievalSettings, Retriever};

#[derive(Debug, clap::Args)]
pub struct EvalRetrievalArgs {
    /// JSONL file of labelled messages (`qid`, `text`, `relevant`, `expect`).
    pub file: PathBuf,
    /// Number of documents that count as a hit.
    #[arg(long, default_value_t = 5)]
    pub k: usize,
    /// Search through the LLM features turned on in the config file
    /// (`[retrieval] rewrite`, `embeddings`; needs `[llm]`). Passage
    /// embeddings are cached in `embeddings.bin` in the configured index_dir.
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
pub fn run(args: EvalRetrievalArgs, config: &Settings) -> anyhow::Result<()> {
    let cases = load_cases(&args.file)?;
    let corpus = super::corpus::load(&args.corpus)?;
    let settings = RetrievalSettings {
        vocabulary: args.no_vocabulary.then_some(false),
        scenarios: args.no_scenarios.then_some(false),
        bigrams: args.no_bigrams.then_some(false),
        field_boosts: args.no_field_boosts.then_some(false),
        ..RetrievalSettings::default()
    };
    let value = if args.with_llm {
        run_with_llm(&args, &cases, &corpus, settings, config)?
    } else {
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
        value["with_llm"] = json!("off");
        value
    };
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// Evaluates through `Retriever::search_with_llm` with the `[llm]` and
/// `[retrieval]` sections of the settings.
fn run_with_llm(
    args: &EvalRetrievalArgs,
    cases: &[EvalCase],
    corpus: &Corpus,
    ablation: RetrievalSettings,
    config: &Settings,
) -> anyhow::Result<serde_json::Value> {
    let llm = LlmClient::new(&config.llm)
        .context("invalid [llm] settings")?
        .context("--with-llm needs an LLM: set [llm] base_url and model")?;
    let settings = RetrievalSettings {
        rewrite: config.retrieval.rewrite,
        embeddings: config.retrieval.embeddings,
        llm_deadline_ms: config.retrieval.llm_deadline_ms,
        candidates: config.retrieval.candidates,
        ..ablation
    };
    let mut retriever =
        Retriever::build(corpus, &settings).context("failed to build the search index")?;
    retriever.set_embeddings_cache(Some(config.index_dir.join(EMBEDDINGS_FILE)));
    let deadline = retriever.llm_deadline();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let (report, summary, embedding_index) = runtime.block_on(async {
        let embedding_index = if settings.embeddings == Some(true) {
            match retriever.prepare_embeddings(&llm).await {
                Ok(stats) => json!(stats),
                Err(error) => json!({ "error": error.to_string() }),
            }
        } else {
            json!("off")
        };
        let file = args.file.display().to_string();
        let (report, summary) =
            evaluate_with_llm(&retriever, corpus, cases, args.k, &file, &llm, deadline).await;
        (report, summary, embedding_index)
    });

    let mut value = serde_json::to_value(&report)?;
    value["with_llm"] = json!({
        "provider": llm.provider(),
        "model": llm.model(),
        "embedding_model": llm.embedding_model(),
        "rewrite_enabled": settings.rewrite == Some(true),
        "embeddings_enabled": settings.embeddings == Some(true),
        "deadline_ms": deadline.as_millis() as u64,
        "embedding_index": embedding_index,
        "runs": summary,
    });
    Ok(value)
}
