//! Passage retrieval over the corpus with tantivy.
//!
//! Documents are split into passages at their headings and indexed with a
//! custom analyser (NFKC, lowercase, Traditional to Simplified, jieba
//! search-mode words, English stems, Han bigrams). A message is analysed the
//! same way and expanded with a bilingual sales vocabulary. It then runs as a
//! boolean query of boosted term queries, and one document's passages collapse
//! to its best.

mod embeddings;
mod llm;
mod query;
mod schema;
mod simplify;
pub mod text;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::columnar::Column;
use tantivy::directory::MmapDirectory;
use tantivy::{Index, Searcher};

use crate::corpus::{Corpus, DocKind, Lang};
pub use embeddings::{EMBEDDINGS_FILE, EmbeddingError, EmbeddingStats};
pub use llm::{DEFAULT_LLM_DEADLINE_MS, FeatureStatus, LlmSearchReport};
pub use query::{AnalyzedQuery, MAX_QUERY_CHARS, Weights, analyze_query};
use schema::Fields;

/// Retrieval settings, the `[retrieval]` section of the config file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrievalSettings {
    /// Passages fetched before collapsing to documents (default 64).
    pub candidates: Option<usize>,
    /// Expand messages with the bilingual sales vocabulary (default true).
    pub vocabulary: Option<bool>,
    /// Index the documents' `scenarios` (default true).
    pub scenarios: Option<bool>,
    /// Match Han character bigrams (default true).
    pub bigrams: Option<bool>,
    /// Weight title, scenarios and card question above the body (default true).
    pub field_boosts: Option<bool>,
    /// With an LLM configured, also search the model's restatement of the
    /// message and fuse both rankings (default false).
    pub rewrite: Option<bool>,
    /// With an LLM and `llm.embedding_model` configured, fuse a cosine
    /// ranking of passage embeddings with BM25 (default false).
    pub embeddings: Option<bool>,
    /// Time budget of the rewrite and the query embedding, in milliseconds,
    /// after which the offline result is used (default 2000).
    pub llm_deadline_ms: Option<u64>,
}

const DEFAULT_CANDIDATES: usize = 64;

impl RetrievalSettings {
    fn candidates(&self) -> usize {
        self.candidates.unwrap_or(DEFAULT_CANDIDATES).max(1)
    }

    fn weights(&self) -> Weights {
        let mut weights = Weights::default();
        if self.field_boosts == Some(false) {
            weights.title = weights.body;
            weights.scenarios = weights.body;
            weights.question = weights.body;
            weights.meta_bigrams = weights.body_bigrams;
        }
        if self.scenarios == Some(false) {
            weights.scenarios = 0.0;
        }
        if self.bigrams == Some(false) {
            weights.body_bigrams = 0.0;
            weights.meta_bigrams = 0.0;
        }
        weights
    }
}

/// Errors while building or opening an index.
#[derive(Debug, thiserror::Error)]
pub enum RetrievalError {
    #[error("search index error: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("failed to open index directory {path}: {message}")]
    OpenDirectory { path: PathBuf, message: String },
    #[error("failed to read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "index directory {0} contains files that do not belong to a maxwin index; choose an empty or dedicated folder"
    )]
    ForeignDirectory(PathBuf),
}

/// One retrieved document with its best passage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    pub doc_id: String,
    pub title: String,
    pub kind: DocKind,
    pub lang: Lang,
    pub score: f32,
    pub heading: String,
    /// The full text of the best passage.
    pub text: String,
}

/// The result of one search.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SearchResult {
    /// Documents, best first, one per document.
    pub hits: Vec<Hit>,
    /// Whether the message looks outside sales coaching.
    pub off_topic: bool,
}

struct DocEntry {
    id: String,
    title: String,
    kind: DocKind,
    lang: Lang,
}

struct PassageEntry {
    doc: usize,
    heading: String,
    text: String,
}

/// A searchable index of the corpus. `Send + Sync`; share it in an `Arc`.
pub struct Retriever {
    searcher: Searcher,
    fields: Fields,
    /// The `passage` fast field of each segment, by segment ordinal.
    passage_columns: Vec<Column<u64>>,
    docs: Vec<DocEntry>,
    passages: Vec<PassageEntry>,
    weights: Weights,
    settings: RetrievalSettings,
    /// Passage embeddings for [`Retriever::search_with_llm`].
    embeddings: llm::EmbeddingSlot,
    /// File caching the passage embeddings, in the index folder when there is one.
    embeddings_cache: Option<PathBuf>,
}

/// Name of the file holding the corpus fingerprint inside an index folder.
const FINGERPRINT_FILE: &str = "maxwin-fingerprint";
/// Bumped whenever the schema or the analyser changes what is indexed.
const INDEX_FORMAT: &str = "maxwin-index-v1";

impl Retriever {
    /// Builds an in-memory index of `corpus`.
    pub fn build(
        corpus: &Corpus,
        settings: &RetrievalSettings,
    ) -> Result<Retriever, RetrievalError> {
        let (schema, fields) = schema::build_schema();
        let index = Index::create_in_ram(schema);
        Self::fill(index, fields, corpus, settings)
    }

    /// Opens the index in `index_dir` when it was built from the same corpus,
    /// or rebuilds it there. A folder that contains other files is rejected.
    pub fn open_or_build(
        corpus: &Corpus,
        index_dir: &Path,
        settings: &RetrievalSettings,
    ) -> Result<Retriever, RetrievalError> {
        let fingerprint = fingerprint(corpus, settings);
        let fingerprint_path = index_dir.join(FINGERPRINT_FILE);
        if std::fs::read_to_string(&fingerprint_path).is_ok_and(|stored| stored == fingerprint) {
            match Self::open_existing(corpus, index_dir, settings) {
                Ok(retriever) => return Ok(retriever),
                Err(error) => {
                    tracing::warn!(path = %index_dir.display(), %error, "rebuilding unreadable index");
                }
            }
        }
        tracing::info!(path = %index_dir.display(), "building search index");
        prepare_index_dir(index_dir)?;
        let (schema, fields) = schema::build_schema();
        let directory =
            MmapDirectory::open(index_dir).map_err(|error| RetrievalError::OpenDirectory {
                path: index_dir.to_path_buf(),
                message: error.to_string(),
            })?;
        let index = Index::create(directory, schema, tantivy::IndexSettings::default())?;
        let mut retriever = Self::fill(index, fields, corpus, settings)?;
        retriever.embeddings_cache = Some(index_dir.join(EMBEDDINGS_FILE));
        std::fs::write(&fingerprint_path, &fingerprint).map_err(|source| RetrievalError::Io {
            path: fingerprint_path,
            source,
        })?;
        Ok(retriever)
    }

    fn open_existing(
        corpus: &Corpus,
        index_dir: &Path,
        settings: &RetrievalSettings,
    ) -> Result<Retriever, RetrievalError> {
        let index = Index::open_in_dir(index_dir)?;
        schema::register_tokenizers(&index);
        let fields = schema::fields_of(&index.schema())?;
        let (docs, passages) = collect(corpus);
        let searcher = index.reader()?.searcher();
        if searcher.num_docs() != passages.len() as u64 {
            return Err(RetrievalError::Index(tantivy::TantivyError::InternalError(
                format!(
                    "index holds {} passages, corpus has {}",
                    searcher.num_docs(),
                    passages.len()
                ),
            )));
        }
        let mut retriever = Self::assemble(searcher, fields, docs, passages, settings)?;
        retriever.embeddings_cache = Some(index_dir.join(EMBEDDINGS_FILE));
        Ok(retriever)
    }

    fn fill(
        index: Index,
        fields: Fields,
        corpus: &Corpus,
        settings: &RetrievalSettings,
    ) -> Result<Retriever, RetrievalError> {
        schema::register_tokenizers(&index);
        let documents: Vec<_> = corpus
            .documents
            .iter()
            .map(|document| {
                if settings.scenarios == Some(false) {
                    let mut copy = document.clone();
                    copy.scenarios.clear();
                    std::borrow::Cow::Owned(copy)
                } else {
                    std::borrow::Cow::Borrowed(document)
                }
            })
            .collect();
        let refs: Vec<_> = documents.iter().map(|d| d.as_ref()).collect();
        let numbered: Vec<_> = corpus
            .documents
            .iter()
            .enumerate()
            .flat_map(|(index, document)| {
                crate::corpus::split_passages(document)
                    .into_iter()
                    .map(move |passage| (index, passage))
            })
            .collect();
        schema::index_passages(&index, &fields, &refs, &numbered)?;
        let (docs, passages) = collect(corpus);
        let searcher = index.reader()?.searcher();
        Self::assemble(searcher, fields, docs, passages, settings)
    }

    fn assemble(
        searcher: Searcher,
        fields: Fields,
        docs: Vec<DocEntry>,
        passages: Vec<PassageEntry>,
        settings: &RetrievalSettings,
    ) -> Result<Retriever, RetrievalError> {
        let passage_columns = searcher
            .segment_readers()
            .iter()
            .map(|reader| reader.fast_fields().u64("passage"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Retriever {
            searcher,
            fields,
            passage_columns,
            docs,
            passages,
            weights: settings.weights(),
            settings: settings.clone(),
            embeddings: llm::EmbeddingSlot::default(),
            embeddings_cache: None,
        })
    }

    /// Sets the file that caches passage embeddings. [`Retriever::open_or_build`]
    /// uses `embeddings.bin` in the index folder; [`Retriever::build`] sets none.
    pub fn set_embeddings_cache(&mut self, path: Option<PathBuf>) {
        self.embeddings_cache = path;
    }

    /// Number of indexed passages.
    pub fn passage_count(&self) -> usize {
        self.passages.len()
    }

    /// Finds the `k` documents that best fit `query`. Never fails: any text,
    /// including empty, punctuation-only or very long text, gives a result,
    /// and an index read error is logged and gives no hits.
    pub fn search(&self, query: &str, k: usize) -> SearchResult {
        let analyzed = analyze_query(query, self.settings.vocabulary != Some(false));
        let hits = if k == 0 {
            Vec::new()
        } else {
            match self.run(&analyzed, k) {
                Ok(hits) => hits,
                Err(error) => {
                    tracing::error!(%error, "search failed");
                    Vec::new()
                }
            }
        };
        let off_topic = hits.is_empty() || analyzed.sales_terms == 0;
        SearchResult { hits, off_topic }
    }

    fn run(&self, analyzed: &AnalyzedQuery, k: usize) -> tantivy::Result<Vec<Hit>> {
        let Some(query) = query::build_query(analyzed, &self.fields, &self.weights) else {
            return Ok(Vec::new());
        };
        let limit = self.settings.candidates().max(k * 4);
        let top = self
            .searcher
            .search(&query, &TopDocs::with_limit(limit).order_by_score())?;

        let mut best: HashMap<usize, (f32, usize)> = HashMap::new();
        let mut order = Vec::new();
        for (score, address) in top {
            let Some(column) = self.passage_columns.get(address.segment_ord as usize) else {
                continue;
            };
            let Some(number) = column.first(address.doc_id) else {
                continue;
            };
            let Some(passage) = self.passages.get(number as usize) else {
                continue;
            };
            if let std::collections::hash_map::Entry::Vacant(slot) = best.entry(passage.doc) {
                slot.insert((score, number as usize));
                order.push(passage.doc);
            }
        }
        Ok(order
            .into_iter()
            .take(k)
            .map(|doc| {
                let (score, number) = best[&doc];
                let entry = &self.docs[doc];
                let passage = &self.passages[number];
                Hit {
                    doc_id: entry.id.clone(),
                    title: entry.title.clone(),
                    kind: entry.kind,
                    lang: entry.lang,
                    score,
                    heading: passage.heading.clone(),
                    text: passage.text.clone(),
                }
            })
            .collect())
    }
}

fn collect(corpus: &Corpus) -> (Vec<DocEntry>, Vec<PassageEntry>) {
    let mut docs = Vec::with_capacity(corpus.documents.len());
    let mut passages = Vec::new();
    for (index, document) in corpus.documents.iter().enumerate() {
        docs.push(DocEntry {
            id: document.id.clone(),
            title: document.title.clone(),
            kind: document.kind,
            lang: document.lang,
        });
        for passage in crate::corpus::split_passages(document) {
            passages.push(PassageEntry {
                doc: index,
                heading: passage.heading,
                text: passage.text,
            });
        }
    }
    (docs, passages)
}

/// FNV-1a over everything that decides the index content.
fn fingerprint(corpus: &Corpus, settings: &RetrievalSettings) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &byte in bytes.iter().chain(&[0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    feed(INDEX_FORMAT.as_bytes());
    for data in text::analyzer_data() {
        feed(data.as_bytes());
    }
    feed(&[u8::from(settings.scenarios != Some(false))]);
    for document in &corpus.documents {
        feed(document.id.as_bytes());
        feed(document.kind.as_str().as_bytes());
        feed(document.lang.code().as_bytes());
        feed(document.title.as_bytes());
        for scenario in &document.scenarios {
            feed(scenario.as_bytes());
        }
        feed(document.body.as_bytes());
    }
    format!("{INDEX_FORMAT} {:016x} {}", hash, corpus.documents.len())
}

/// Empties `dir` for a rebuild, refusing a folder with files of another program.
fn prepare_index_dir(dir: &Path) -> Result<(), RetrievalError> {
    let io = |source| RetrievalError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    if entries.is_empty() {
        return Ok(());
    }
    let ours = dir.join("meta.json").exists()
        || dir.join(FINGERPRINT_FILE).exists()
        || dir.join(EMBEDDINGS_FILE).exists();
    if !ours {
        return Err(RetrievalError::ForeignDirectory(dir.to_path_buf()));
    }
    for entry in entries {
        let path = entry.path();
        // The embedding cache is keyed by passage text, so it stays valid
        // across rebuilds and only changed passages are embedded again.
        if entry.file_name() == EMBEDDINGS_FILE {
            continue;
        }
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|source| RetrievalError::Io { path, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
