//! Builds the shared parts of the application from settings: corpus, index, LLM
//! client, store and coach.

use std::sync::Arc;

use anyhow::Context;
use tracing::{info, warn};

use crate::coach::{Coach, translations};
use crate::config::Settings;
use crate::corpus::Corpus;
use crate::llm::LlmClient;
use crate::retrieval::Retriever;
use crate::store::{self, Store};

/// The loaded knowledge base and its index.
pub struct Knowledge {
    pub corpus: Arc<Corpus>,
    pub retriever: Arc<Retriever>,
}

/// Loads the corpus (skipping malformed files with a warning) and opens or builds
/// the index.
pub fn load_knowledge(settings: &Settings) -> anyhow::Result<Knowledge> {
    let (corpus, warnings) = Corpus::load_dir(&settings.corpus_dir).with_context(|| {
        format!(
            "could not load the corpus from {} (run the command from the project folder, or set corpus_dir)",
            settings.corpus_dir.display()
        )
    })?;
    // The loader has already logged each warning with its path and line.
    let _ = warnings;
    if corpus.documents.is_empty() {
        anyhow::bail!(
            "the corpus folder {} has no documents; run `maxwin corpus import <export.txt>` first",
            settings.corpus_dir.display()
        );
    }
    let retriever = Retriever::open_or_build(&corpus, &settings.index_dir, &settings.retrieval)
        .or_else(|error| {
            warn!(error = %error, index_dir = %settings.index_dir.display(), "could not use the index folder; building the index in memory");
            Retriever::build(&corpus, &settings.retrieval)
        })
        .context("could not build the search index")?;
    info!(documents = corpus.documents.len(), "corpus loaded");
    Ok(Knowledge {
        corpus: Arc::new(corpus),
        retriever: Arc::new(retriever),
    })
}

/// Creates the LLM client, or `None` when no LLM is configured.
pub fn llm_client(settings: &Settings) -> anyhow::Result<Option<LlmClient>> {
    let client = LlmClient::new(&settings.llm).context("invalid [llm] settings")?;
    if client.is_none() {
        info!("no LLM configured; answers are library cards from the corpus");
    }
    Ok(client)
}

/// Connects to the database named in the settings and runs its migrations.
pub async fn connect_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    store::connect(&settings.database_url)
        .await
        .with_context(|| {
            format!(
                "could not open the database at {}",
                redact_url(&settings.database_url)
            )
        })
}

/// Builds the coach from its parts.
pub async fn build_coach(settings: &Settings) -> anyhow::Result<(Coach, Knowledge)> {
    let knowledge = load_knowledge(settings)?;
    let llm = llm_client(settings)?;
    let store = connect_store(settings).await?;
    let translations = Arc::new(translations::load(&settings.corpus_dir));
    let coach = Coach::new(
        knowledge.corpus.clone(),
        knowledge.retriever.clone(),
        llm,
        store,
        translations,
        settings.coach.clone(),
    );
    Ok((coach, knowledge))
}

/// Hides the password of a database URL for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_hides_password() {
        assert_eq!(
            redact_url("postgres://bot:hunter2@db:5432/maxwin"),
            "postgres://bot:***@db:5432/maxwin"
        );
        assert_eq!(
            redact_url("sqlite://data/maxwin.db"),
            "sqlite://data/maxwin.db"
        );
    }
}
