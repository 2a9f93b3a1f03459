//! `maxwin corpus …`: import the export, show statistics, search from the terminal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::corpus::{Corpus, import_export};
use crate::retrieval::{RetrievalSettings, Retriever};

#[derive(Debug, clap::Subcommand)]
pub enum CorpusCommand {
    /// Import the single-file export into one Markdown file per document.
    Import {
        /// Path of the export (the `max-win-win-corpus.txt` file).
        export: PathBuf,
    },
    /// Show document counts by kind and language, tips and passages.
    Stats {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Search the corpus and show the best passages.
    Search {
        /// The message to search for.
        query: String,
        /// Number of documents to show.
        #[arg(short, long, default_value_t = 5)]
        k: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one corpus command against the corpus folder `corpus_dir`.
pub fn run(cmd: CorpusCommand, corpus_dir: &Path) -> anyhow::Result<()> {
    match cmd {
        CorpusCommand::Import { export } => {
            let report = import_export(&export, corpus_dir)
                .with_context(|| format!("failed to import {}", export.display()))?;
            outln!(
                "imported {} documents into {}: {} written, {} unchanged, {} tips",
                report.documents,
                corpus_dir.display(),
                report.written,
                report.unchanged,
                report.tips
            );
            for id in &report.unknown_scenario_ids {
                eprintln!(
                    "warning: scenarios.toml names `{id}`, which the export does not contain"
                );
            }
            Ok(())
        }
        CorpusCommand::Stats { json } => {
            let corpus = load(corpus_dir)?;
            let stats = stats(&corpus);
            if json {
                outln!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print_stats(&stats);
            }
            Ok(())
        }
        CorpusCommand::Search { query, k, json } => {
            let corpus = load(corpus_dir)?;
            let retriever = Retriever::build(&corpus, &RetrievalSettings::default())
                .context("failed to build the search index")?;
            let result = retriever.search(&query, k);
            if json {
                outln!("{}", serde_json::to_string_pretty(&result)?);
                return Ok(());
            }
            if result.off_topic {
                outln!("(looks off-topic for sales coaching)");
            }
            if result.hits.is_empty() {
                outln!("no matching passages");
            }
            for (rank, hit) in result.hits.iter().enumerate() {
                outln!(
                    "{}. {} [{}] score {:.2}\n   {}{}\n   {}\n",
                    rank + 1,
                    hit.doc_id,
                    hit.kind,
                    hit.score,
                    hit.title,
                    if hit.heading.is_empty() {
                        String::new()
                    } else {
                        format!(" › {}", hit.heading)
                    },
                    snippet(&hit.text, 120)
                );
            }
            Ok(())
        }
    }
}

/// Loads the corpus, printing skipped files as warnings.
pub fn load(corpus_dir: &Path) -> anyhow::Result<Corpus> {
    let (corpus, warnings) = Corpus::load_dir(corpus_dir)
        .with_context(|| format!("failed to load the corpus from {}", corpus_dir.display()))?;
    for warning in warnings {
        eprintln!("warning: skipped {warning}");
    }
    Ok(corpus)
}

#[derive(Debug, serde::Serialize)]
struct Stats {
    documents: usize,
    by_kind: BTreeMap<String, usize>,
    by_lang: BTreeMap<String, usize>,
    tips: usize,
    with_scenarios: usize,
    passages: usize,
}

fn stats(corpus: &Corpus) -> Stats {
    let mut by_kind = BTreeMap::new();
    let mut by_lang = BTreeMap::new();
    for document in &corpus.documents {
        *by_kind
            .entry(document.kind.as_str().to_string())
            .or_insert(0) += 1;
        *by_lang.entry(document.lang.code().to_string()).or_insert(0) += 1;
    }
    Stats {
        documents: corpus.documents.len(),
        by_kind,
        by_lang,
        tips: corpus.documents.iter().filter(|d| d.tip).count(),
        with_scenarios: corpus
            .documents
            .iter()
            .filter(|d| !d.scenarios.is_empty())
            .count(),
        passages: corpus.passages().len(),
    }
}

fn print_stats(stats: &Stats) {
    outln!("documents       {}", stats.documents);
    for (kind, count) in &stats.by_kind {
        outln!("  kind {kind:<10} {count}");
    }
    for (lang, count) in &stats.by_lang {
        outln!("  lang {lang:<10} {count}");
    }
    outln!("tips            {}", stats.tips);
    outln!("with scenarios  {}", stats.with_scenarios);
    outln!("passages        {}", stats.passages);
}

/// Returns the text on one line, cut to `max_chars` characters.
fn snippet(text: &str, max_chars: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max_chars {
        flat
    } else {
        let cut: String = flat.chars().take(max_chars).collect();
        format!("{cut}…")
    }
}
