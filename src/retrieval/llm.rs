//! Retrieval with an LLM: an optional query rewrite and optional passage
//! embeddings, each fused with the BM25 ranking by reciprocal rank fusion.
//!
//! Both are off unless `[retrieval] rewrite` or `[retrieval] embeddings` is
//! true. Any failure of the model (HTTP error, timeout, malformed response) or
//! a passed deadline returns the offline [`Retriever::search`] result instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{info, warn};

use super::embeddings::{self, EmbeddingError, EmbeddingIndex, EmbeddingStats};
use super::{Hit, Retriever, SearchResult, analyze_query, query::MAX_QUERY_CHARS};
use crate::llm::{ChatMessage, ChatRequest, LlmClient, LlmError};

/// Default time budget of [`Retriever::search_with_llm`] in the coach.
// NOTE: a guess at the latency of a short response from a hosted chat model;
// it was tested only against the local mock server.
pub const DEFAULT_LLM_DEADLINE_MS: u64 = 2000;
/// The constant `k` of reciprocal rank fusion, `1 / (k + rank)`. A larger
/// value narrows the gap between the top ranks and the ones below.
const RRF_K: f32 = 60.0;
/// Documents taken from each ranking before fusion.
const FUSION_DEPTH: usize = 30;
const REWRITE_MAX_TOKENS: u32 = 120;
/// Characters of the rewrite that are searched.
const REWRITE_MAX_CHARS: usize = 300;
/// The model's response to a message that is not about selling.
const OFF_TOPIC_MARKER: &str = "OFF_TOPIC";
/// Sales-vocabulary terms a rewrite needs before it can overrule the
/// original message's off-topic flag.
const MIN_REWRITE_SALES_TERMS: usize = 2;
/// Wait before another background embedding build after one failed.
const REBUILD_AFTER_FAILURE: Duration = Duration::from_secs(300);

const REWRITE_PROMPT: &str = "你是B2B销售辅导知识库的检索助手。请把销售人员发来的消息改写成一句规范的中文销售情境描述，\
再列出3到6个关键词，例如：客户失联、价格异议、决策人、竞争对手、招标、回款。\
只输出一行，格式为：情境描述｜关键词1 关键词2 关键词3。\
如果消息与销售、客户或商务无关，只输出 OFF_TOPIC。";

/// Progress of the passage embeddings of one retriever.
#[derive(Debug, Default)]
pub(super) enum EmbeddingState {
    #[default]
    Idle,
    Building,
    Ready(Arc<EmbeddingIndex>),
    Failed(Instant),
}

/// Embedding state shared with the background build task.
pub(super) type EmbeddingSlot = Arc<Mutex<EmbeddingState>>;

fn lock(slot: &EmbeddingSlot) -> MutexGuard<'_, EmbeddingState> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Outcome of one feature in a search.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureStatus {
    /// Turned off in the settings.
    #[default]
    Off,
    /// Its ranking was fused into the result.
    Used,
    /// The rewrite called the message off-topic, so it was not searched.
    OffTopic,
    /// The passage embeddings are still being built.
    NotReady,
    /// It failed or timed out, so the offline result was returned.
    Failed,
}

/// Outcome of each feature in one [`Retriever::search_with_llm_report`] call.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LlmSearchReport {
    pub rewrite: FeatureStatus,
    pub embeddings: FeatureStatus,
    /// Reason the offline result was returned, when a feature failed.
    pub fallback: Option<String>,
    /// Whether the rewrite turned an off-topic message into an on-topic one.
    pub rewrite_cleared_off_topic: bool,
}

#[derive(Debug, thiserror::Error)]
enum EnhanceError {
    #[error("query rewrite failed: {0}")]
    Rewrite(LlmError),
    #[error("query rewrite returned no text")]
    EmptyRewrite,
    #[error("query embedding failed: {0}")]
    Embedding(#[from] EmbeddingError),
}

/// The model's reading of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rewrite {
    Situation(String),
    OffTopic,
}

impl Retriever {
    /// Time budget for [`Retriever::search_with_llm`] (`[retrieval] llm_deadline_ms`).
    pub fn llm_deadline(&self) -> Duration {
        Duration::from_millis(
            self.settings
                .llm_deadline_ms
                .unwrap_or(DEFAULT_LLM_DEADLINE_MS),
        )
    }

    fn rewrite_enabled(&self) -> bool {
        self.settings.rewrite == Some(true)
    }

    fn embeddings_enabled(&self) -> bool {
        self.settings.embeddings == Some(true)
    }

    /// Embeds every passage, reusing the cache in the index folder, and
    /// turns on vector search for [`Retriever::search_with_llm`].
    ///
    /// An in-memory retriever without [`Retriever::set_embeddings_cache`] embeds
    /// every passage each time.
    pub async fn prepare_embeddings(
        &self,
        llm: &LlmClient,
    ) -> Result<EmbeddingStats, EmbeddingError> {
        *lock(&self.embeddings) = EmbeddingState::Building;
        let built = embeddings::build_index(
            llm,
            &self.embedding_inputs(),
            self.embeddings_cache.as_deref(),
        )
        .await;
        store_build(&self.embeddings, built)
    }

    fn embedding_inputs(&self) -> Vec<String> {
        self.passages
            .iter()
            .map(|passage| {
                let title = &self.docs[passage.doc].title;
                embeddings::embedding_input(title, &passage.heading, &passage.text)
            })
            .collect()
    }

    /// Returns the ready embedding index, or starts building it in the
    /// background and returns `None`.
    fn embedding_index(&self, llm: &LlmClient) -> Option<Arc<EmbeddingIndex>> {
        let mut state = lock(&self.embeddings);
        match &*state {
            EmbeddingState::Ready(index) => return Some(index.clone()),
            EmbeddingState::Building => return None,
            EmbeddingState::Failed(at) if at.elapsed() < REBUILD_AFTER_FAILURE => return None,
            EmbeddingState::Idle | EmbeddingState::Failed(_) => {}
        }
        *state = EmbeddingState::Building;
        drop(state);

        let slot = self.embeddings.clone();
        let inputs = self.embedding_inputs();
        let cache = self.embeddings_cache.clone();
        let llm = llm.clone();
        tokio::spawn(async move {
            let built = embeddings::build_index(&llm, &inputs, cache.as_deref()).await;
            let _ = store_build(&slot, built);
        });
        None
    }

    /// Searches like [`Retriever::search`], adding the LLM rewrite and the
    /// vector ranking when they are turned on. Returns the offline result
    /// when they are off, when either fails, or when `deadline` passes.
    pub async fn search_with_llm(
        &self,
        query: &str,
        k: usize,
        llm: &LlmClient,
        deadline: Duration,
    ) -> SearchResult {
        self.search_with_llm_report(query, k, llm, deadline).await.0
    }

    /// [`Retriever::search_with_llm`] that also reports which features ran.
    pub async fn search_with_llm_report(
        &self,
        query: &str,
        k: usize,
        llm: &LlmClient,
        deadline: Duration,
    ) -> (SearchResult, LlmSearchReport) {
        let offline = self.search(query, k);
        let mut report = LlmSearchReport::default();
        let rewrite = self.rewrite_enabled();
        let index = if self.embeddings_enabled() {
            let index = self.embedding_index(llm);
            if index.is_none() {
                report.embeddings = FeatureStatus::NotReady;
            }
            index
        } else {
            None
        };
        if !rewrite && index.is_none() {
            return (offline, report);
        }

        let work = self.fuse_with_llm(query, k, llm, rewrite, index.as_deref(), &offline);
        match tokio::time::timeout(deadline, work).await {
            Ok(Ok((result, enhanced))) => (result, enhanced.merged_into(report)),
            Ok(Err(error)) => {
                warn!(%error, "LLM retrieval failed; using the offline result");
                report.fallback = Some(error.to_string());
                (offline, failed(report, rewrite, index.is_some()))
            }
            Err(_) => {
                let deadline_ms = deadline.as_millis() as u64;
                warn!(
                    deadline_ms,
                    "LLM retrieval timed out; using the offline result"
                );
                report.fallback = Some(format!("timed out after {deadline_ms} ms"));
                (offline, failed(report, rewrite, index.is_some()))
            }
        }
    }

    async fn fuse_with_llm(
        &self,
        query: &str,
        k: usize,
        llm: &LlmClient,
        rewrite: bool,
        index: Option<&EmbeddingIndex>,
        offline: &SearchResult,
    ) -> Result<(SearchResult, LlmSearchReport), EnhanceError> {
        let rewrite_call = async {
            if rewrite {
                rewrite_query(llm, query).await.map(Some)
            } else {
                Ok(None)
            }
        };
        let embed_call = async {
            match index {
                Some(index) => query_ranking(llm, index, query)
                    .await
                    .map(Some)
                    .map_err(EnhanceError::from),
                None => Ok(None),
            }
        };
        let (rewritten, passage_ranking) = tokio::try_join!(rewrite_call, embed_call)?;

        let depth = FUSION_DEPTH.max(k);
        let mut report = LlmSearchReport::default();
        let mut lists = vec![self.ranked(query, depth).0];
        let mut off_topic = offline.off_topic;

        match &rewritten {
            Some(Rewrite::Situation(text)) => {
                report.rewrite = FeatureStatus::Used;
                let (hits, sales_terms) = self.ranked(text, depth);
                if offline.off_topic && sales_terms >= MIN_REWRITE_SALES_TERMS && !hits.is_empty() {
                    off_topic = false;
                    report.rewrite_cleared_off_topic = true;
                }
                lists.push(hits);
            }
            Some(Rewrite::OffTopic) => report.rewrite = FeatureStatus::OffTopic,
            None => {}
        }
        if let Some(ranking) = passage_ranking {
            report.embeddings = FeatureStatus::Used;
            lists.push(self.collapse_passages(&ranking, depth));
        }

        let hits = fuse(&lists, k);
        let off_topic = off_topic || hits.is_empty();
        Ok((SearchResult { hits, off_topic }, report))
    }

    /// BM25 hits of `text` to `depth` documents, with its sales-term count.
    fn ranked(&self, text: &str, depth: usize) -> (Vec<Hit>, usize) {
        let analyzed = analyze_query(text, self.settings.vocabulary != Some(false));
        let hits = self.run(&analyzed, depth).unwrap_or_else(|error| {
            tracing::error!(%error, "search failed");
            Vec::new()
        });
        (hits, analyzed.sales_terms)
    }

    /// Turns passages ranked by cosine into the best `depth` documents.
    fn collapse_passages(&self, ranking: &[(usize, f32)], depth: usize) -> Vec<Hit> {
        let mut seen = std::collections::HashSet::new();
        let mut hits = Vec::new();
        for &(number, score) in ranking {
            if hits.len() == depth {
                break;
            }
            let Some(passage) = self.passages.get(number) else {
                continue;
            };
            if !seen.insert(passage.doc) {
                continue;
            }
            let doc = &self.docs[passage.doc];
            hits.push(Hit {
                doc_id: doc.id.clone(),
                title: doc.title.clone(),
                kind: doc.kind,
                lang: doc.lang,
                score,
                heading: passage.heading.clone(),
                text: passage.text.clone(),
            });
        }
        hits
    }
}

impl LlmSearchReport {
    /// Keeps `base`'s statuses for features that did not run.
    fn merged_into(self, base: LlmSearchReport) -> LlmSearchReport {
        LlmSearchReport {
            rewrite: pick(self.rewrite, base.rewrite),
            embeddings: pick(self.embeddings, base.embeddings),
            fallback: None,
            rewrite_cleared_off_topic: self.rewrite_cleared_off_topic,
        }
    }
}

fn pick(ran: FeatureStatus, before: FeatureStatus) -> FeatureStatus {
    if ran == FeatureStatus::Off {
        before
    } else {
        ran
    }
}

fn failed(mut report: LlmSearchReport, rewrite: bool, embeddings: bool) -> LlmSearchReport {
    if rewrite {
        report.rewrite = FeatureStatus::Failed;
    }
    if embeddings {
        report.embeddings = FeatureStatus::Failed;
    }
    report
}

/// Stores the outcome of an embedding build in the shared state.
fn store_build(
    slot: &EmbeddingSlot,
    built: Result<(EmbeddingIndex, EmbeddingStats), EmbeddingError>,
) -> Result<EmbeddingStats, EmbeddingError> {
    match built {
        Ok((index, stats)) => {
            info!(
                model = index.model(),
                passages = stats.passages,
                embedded = stats.embedded,
                reused = stats.reused,
                "passage embeddings ready"
            );
            *lock(slot) = EmbeddingState::Ready(Arc::new(index));
            Ok(stats)
        }
        Err(error) => {
            warn!(%error, "building passage embeddings failed; searching without them");
            *lock(slot) = EmbeddingState::Failed(Instant::now());
            Err(error)
        }
    }
}

async fn rewrite_query(llm: &LlmClient, query: &str) -> Result<Rewrite, EnhanceError> {
    let message: String = query.chars().take(MAX_QUERY_CHARS).collect();
    let request = ChatRequest {
        messages: vec![
            ChatMessage::system(REWRITE_PROMPT),
            ChatMessage::user(message),
        ],
        temperature: Some(0.0),
        max_tokens: Some(REWRITE_MAX_TOKENS),
    };
    let completion = llm.chat(&request).await.map_err(EnhanceError::Rewrite)?;
    parse_rewrite(&completion.text)
}

/// Parses the model's one-line response. An empty response is malformed.
fn parse_rewrite(answer: &str) -> Result<Rewrite, EnhanceError> {
    let trimmed = answer
        .trim()
        .trim_matches(|c: char| c == '"' || c == '`' || c == '“' || c == '”')
        .trim();
    if trimmed.is_empty() {
        return Err(EnhanceError::EmptyRewrite);
    }
    if trimmed.to_ascii_uppercase().starts_with(OFF_TOPIC_MARKER) {
        return Ok(Rewrite::OffTopic);
    }
    Ok(Rewrite::Situation(
        trimmed.chars().take(REWRITE_MAX_CHARS).collect(),
    ))
}

async fn query_ranking(
    llm: &LlmClient,
    index: &EmbeddingIndex,
    query: &str,
) -> Result<Vec<(usize, f32)>, EmbeddingError> {
    let input: String = query.chars().take(MAX_QUERY_CHARS).collect();
    let mut vectors = llm.embed(&[input]).await?;
    let vector = vectors.pop().ok_or(EmbeddingError::EmptyVector)?;
    index.rank(&vector)
}

/// Reciprocal rank fusion: each document scores the sum of `1 / (RRF_K + rank)`
/// over the rankings it appears in (rank from 1). A document keeps the passage
/// of the first ranking that lists it, and its score becomes the fused score.
fn fuse(lists: &[Vec<Hit>], k: usize) -> Vec<Hit> {
    let mut fused: Vec<(Hit, f32)> = Vec::new();
    let mut position: HashMap<String, usize> = HashMap::new();
    for list in lists {
        for (rank, hit) in list.iter().enumerate() {
            let gain = 1.0 / (RRF_K + rank as f32 + 1.0);
            match position.get(&hit.doc_id) {
                Some(&slot) => fused[slot].1 += gain,
                None => {
                    position.insert(hit.doc_id.clone(), fused.len());
                    fused.push((hit.clone(), gain));
                }
            }
        }
    }
    // A stable sort keeps ties in the order of the first ranking.
    fused.sort_by(|a, b| b.1.total_cmp(&a.1));
    fused
        .into_iter()
        .take(k)
        .map(|(mut hit, score)| {
            hit.score = score;
            hit
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::{DocKind, Lang};

    fn hit(id: &str) -> Hit {
        Hit {
            doc_id: id.into(),
            title: id.into(),
            kind: DocKind::Post,
            lang: Lang::Zh,
            score: 1.0,
            heading: String::new(),
            text: String::new(),
        }
    }

    fn ids(hits: &[Hit]) -> Vec<&str> {
        hits.iter().map(|h| h.doc_id.as_str()).collect()
    }

    #[test]
    fn fuse_rewards_agreement() {
        let first = vec![hit("a"), hit("b"), hit("c")];
        let second = vec![hit("c"), hit("d")];
        let fused = fuse(&[first, second], 10);
        assert_eq!(ids(&fused), ["c", "a", "b", "d"]);
        assert!((fused[0].score - (1.0 / 63.0 + 1.0 / 61.0)).abs() < 1e-6);
    }

    #[test]
    fn fuse_cuts_to_k() {
        let fused = fuse(&[vec![hit("a"), hit("b"), hit("c")]], 2);
        assert_eq!(ids(&fused), ["a", "b"]);
    }

    #[test]
    fn parse_rewrite_cases() {
        assert_eq!(
            parse_rewrite("  “客户失联｜失联 激活”\n").unwrap(),
            Rewrite::Situation("客户失联｜失联 激活".into())
        );
        assert_eq!(parse_rewrite("OFF_TOPIC").unwrap(), Rewrite::OffTopic);
        assert_eq!(parse_rewrite("off_topic.").unwrap(), Rewrite::OffTopic);
        assert!(matches!(
            parse_rewrite(" \n``"),
            Err(EnhanceError::EmptyRewrite)
        ));
        let long = "价".repeat(1000);
        match parse_rewrite(&long).unwrap() {
            Rewrite::Situation(text) => assert_eq!(text.chars().count(), REWRITE_MAX_CHARS),
            other => panic!("expected a situation, got {other:?}"),
        }
    }
}
