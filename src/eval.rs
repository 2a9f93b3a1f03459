//! Offline retrieval evaluation over a JSONL file of labelled messages.
//!
//! Each line contains `qid`, `text`, `relevant` (document ids, best first; empty
//! for off-topic messages) and optionally `lang`, `also`, `expect`, `note`.
//! A message is a hit at k when a relevant document, or one with identical
//! text, is among the first k distinct documents returned.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::corpus::Corpus;
use crate::llm::LlmClient;
use crate::retrieval::{FeatureStatus, Retriever, SearchResult, text::normalize};

/// One labelled message.
#[derive(Debug, Clone, Deserialize)]
pub struct EvalCase {
    pub qid: String,
    #[serde(default)]
    pub lang: Option<String>,
    pub text: String,
    #[serde(default)]
    pub relevant: Vec<String>,
    #[serde(default)]
    pub also: Vec<String>,
    #[serde(default)]
    pub expect: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

impl EvalCase {
    /// Returns whether the message is labelled as outside sales coaching.
    pub fn is_off_topic(&self) -> bool {
        self.expect.as_deref() == Some("off_topic") || self.relevant.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("failed to read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid JSON at {path}:{line}: {source}")]
    Json {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

/// Reads a JSONL file of cases, skipping blank lines.
pub fn load_cases(path: &Path) -> Result<Vec<EvalCase>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line).map_err(|source| EvalError::Json {
                path: path.to_path_buf(),
                line: index + 1,
                source,
            })
        })
        .collect()
}

/// Maps each document id to a class id shared by documents with identical
/// normalised text, so that duplicates count for one another.
pub fn equivalence_classes(corpus: &Corpus) -> HashMap<String, usize> {
    let mut by_text: HashMap<String, usize> = HashMap::new();
    let mut classes = HashMap::new();
    for document in &corpus.documents {
        let key = normalize(document.body.trim());
        let next = by_text.len();
        let class = *by_text.entry(key).or_insert(next);
        classes.insert(document.id.clone(), class);
    }
    classes
}

/// A message whose relevant documents were not in the first k.
#[derive(Debug, Clone, Serialize)]
pub struct Miss {
    pub qid: String,
    pub expected: Vec<String>,
    pub returned: Vec<String>,
    /// 1-based rank of the first relevant document within the top 10, if any.
    pub rank: Option<usize>,
}

/// Query latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub runs: usize,
}

/// The scores of one evaluation run.
#[derive(Debug, Clone, Serialize)]
pub struct RetrievalReport {
    pub file: String,
    pub k: usize,
    pub messages: usize,
    pub on_topic: usize,
    pub off_topic: usize,
    pub hit_at_k: f64,
    #[serde(rename = "recall@1")]
    pub recall_at_1: f64,
    #[serde(rename = "recall@3")]
    pub recall_at_3: f64,
    #[serde(rename = "recall@5")]
    pub recall_at_5: f64,
    #[serde(rename = "recall@10")]
    pub recall_at_10: f64,
    #[serde(rename = "mrr@10")]
    pub mrr_at_10: f64,
    /// Share of messages flagged off-topic that are labelled off-topic.
    pub off_topic_precision: f64,
    /// Share of off-topic messages that were flagged.
    pub off_topic_recall: f64,
    /// Share of on-topic messages wrongly flagged off-topic.
    pub on_topic_flagged_off_topic: f64,
    pub latency: Latency,
    /// Misses at k, on-topic messages only.
    pub misses: Vec<Miss>,
    /// Off-topic messages not flagged, and on-topic ones flagged.
    pub off_topic_errors: Vec<String>,
}

fn share(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        1.0
    } else {
        part as f64 / whole as f64
    }
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Results are scored to this depth (recall@10, MRR@10).
const DEPTH: usize = 10;

/// Runs every case against `retriever` and scores the results. Each query
/// runs `timing_rounds` times (at least once) for the latency figures.
pub fn evaluate(
    retriever: &Retriever,
    corpus: &Corpus,
    cases: &[EvalCase],
    k: usize,
    file: &str,
    timing_rounds: usize,
) -> RetrievalReport {
    let mut timings = Vec::new();
    let mut results = Vec::with_capacity(cases.len());
    for case in cases {
        let mut result = None;
        for _ in 0..timing_rounds.max(1) {
            let started = Instant::now();
            let found = retriever.search(&case.text, DEPTH.max(k));
            timings.push(started.elapsed().as_secs_f64() * 1000.0);
            result = Some(found);
        }
        results.push(result.expect("searched at least once"));
    }
    score(corpus, cases, &results, timings, k, file)
}

/// How often one LLM feature ended in each [`FeatureStatus`] over a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FeatureCounts {
    pub off: usize,
    pub used: usize,
    pub off_topic: usize,
    pub not_ready: usize,
    pub failed: usize,
}

impl FeatureCounts {
    fn add(&mut self, status: FeatureStatus) {
        let slot = match status {
            FeatureStatus::Off => &mut self.off,
            FeatureStatus::Used => &mut self.used,
            FeatureStatus::OffTopic => &mut self.off_topic,
            FeatureStatus::NotReady => &mut self.not_ready,
            FeatureStatus::Failed => &mut self.failed,
        };
        *slot += 1;
    }
}

/// Counts of LLM feature outcomes over one [`evaluate_with_llm`] run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LlmRunSummary {
    pub rewrite: FeatureCounts,
    pub embeddings: FeatureCounts,
    /// Messages that got the offline result because a feature failed.
    pub fallbacks: usize,
    /// Messages the rewrite turned from off-topic to on-topic.
    pub rewrite_cleared_off_topic: usize,
}

/// Runs every case once through [`Retriever::search_with_llm_report`] and
/// scores the results; the latency figures include the model calls.
pub async fn evaluate_with_llm(
    retriever: &Retriever,
    corpus: &Corpus,
    cases: &[EvalCase],
    k: usize,
    file: &str,
    llm: &LlmClient,
    deadline: Duration,
) -> (RetrievalReport, LlmRunSummary) {
    let mut timings = Vec::new();
    let mut results = Vec::with_capacity(cases.len());
    let mut summary = LlmRunSummary::default();
    for case in cases {
        let started = Instant::now();
        let (found, report) = retriever
            .search_with_llm_report(&case.text, DEPTH.max(k), llm, deadline)
            .await;
        timings.push(started.elapsed().as_secs_f64() * 1000.0);
        summary.rewrite.add(report.rewrite);
        summary.embeddings.add(report.embeddings);
        summary.fallbacks += usize::from(report.fallback.is_some());
        summary.rewrite_cleared_off_topic += usize::from(report.rewrite_cleared_off_topic);
        results.push(found);
    }
    (score(corpus, cases, &results, timings, k, file), summary)
}

/// Scores `results` (one per case, in case order) against the labels.
fn score(
    corpus: &Corpus,
    cases: &[EvalCase],
    results: &[SearchResult],
    mut timings: Vec<f64>,
    k: usize,
    file: &str,
) -> RetrievalReport {
    let classes = equivalence_classes(corpus);
    let class_of = |id: &str| classes.get(id).copied();

    let mut hits_at = [0usize; 4];
    let mut hits_at_k = 0;
    let mut reciprocal_sum = 0.0;
    let (mut on_topic, mut off_topic) = (0, 0);
    let (mut flagged, mut flagged_correct, mut on_topic_flagged) = (0, 0, 0);
    let mut misses = Vec::new();
    let mut off_topic_errors = Vec::new();

    for (case, result) in cases.iter().zip(results) {
        if result.off_topic {
            flagged += 1;
        }
        if case.is_off_topic() {
            off_topic += 1;
            if result.off_topic {
                flagged_correct += 1;
            } else {
                off_topic_errors.push(format!("{}: off-topic message not flagged", case.qid));
            }
            continue;
        }
        on_topic += 1;
        if result.off_topic {
            on_topic_flagged += 1;
            off_topic_errors.push(format!("{}: on-topic message flagged off-topic", case.qid));
        }
        let wanted: HashSet<usize> = case.relevant.iter().filter_map(|id| class_of(id)).collect();
        let wanted_ids: HashSet<&str> = case.relevant.iter().map(String::as_str).collect();
        let returned: Vec<String> = result.hits.iter().map(|hit| hit.doc_id.clone()).collect();
        let rank = returned.iter().take(DEPTH).position(|id| {
            wanted_ids.contains(id.as_str())
                || class_of(id).is_some_and(|class| wanted.contains(&class))
        });
        for (slot, cutoff) in [1, 3, 5, 10].into_iter().enumerate() {
            if rank.is_some_and(|r| r < cutoff) {
                hits_at[slot] += 1;
            }
        }
        if let Some(r) = rank {
            reciprocal_sum += 1.0 / (r as f64 + 1.0);
        }
        if rank.is_some_and(|r| r < k) {
            hits_at_k += 1;
        } else {
            misses.push(Miss {
                qid: case.qid.clone(),
                expected: case.relevant.clone(),
                returned: returned.into_iter().take(k.max(1)).collect(),
                rank: rank.map(|r| r + 1),
            });
        }
    }

    timings.sort_by(f64::total_cmp);
    RetrievalReport {
        file: file.to_string(),
        k,
        messages: cases.len(),
        on_topic,
        off_topic,
        hit_at_k: share(hits_at_k, on_topic),
        recall_at_1: share(hits_at[0], on_topic),
        recall_at_3: share(hits_at[1], on_topic),
        recall_at_5: share(hits_at[2], on_topic),
        recall_at_10: share(hits_at[3], on_topic),
        mrr_at_10: if on_topic == 0 {
            0.0
        } else {
            reciprocal_sum / on_topic as f64
        },
        off_topic_precision: share(flagged_correct, flagged),
        off_topic_recall: share(flagged_correct, off_topic),
        on_topic_flagged_off_topic: if on_topic == 0 {
            0.0
        } else {
            on_topic_flagged as f64 / on_topic as f64
        },
        latency: Latency {
            p50_ms: percentile(&timings, 0.50),
            p99_ms: percentile(&timings, 0.99),
            max_ms: timings.last().copied().unwrap_or(0.0),
            runs: timings.len(),
        },
        misses,
        off_topic_errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::{DocKind, Document, Lang};
    use crate::retrieval::RetrievalSettings;

    fn doc(id: &str, body: &str) -> Document {
        Document {
            id: id.into(),
            kind: DocKind::Post,
            lang: Lang::Zh,
            title: id.into(),
            tip: false,
            body: body.into(),
            path: format!("{id}.md").into(),
            scenarios: vec![],
        }
    }

    fn case(qid: &str, text: &str, relevant: &[&str]) -> EvalCase {
        EvalCase {
            qid: qid.into(),
            lang: None,
            text: text.into(),
            relevant: relevant.iter().map(|s| s.to_string()).collect(),
            also: vec![],
            expect: relevant.is_empty().then(|| "off_topic".to_string()),
            note: None,
        }
    }

    #[test]
    fn evaluate_scores_hits_duplicates_and_off_topic() {
        let corpus = Corpus {
            documents: vec![
                doc("a-1", "客户嫌贵的时候先讲价值，不要急着打折。"),
                doc("b-7", "客户嫌贵的时候先讲价值，不要急着打折。"),
                doc("c-1", "饭局上给客户老板敬酒要注意顺序。"),
            ],
        };
        let retriever = Retriever::build(&corpus, &RetrievalSettings::default()).unwrap();
        let cases = [
            case("q1", "客户嫌贵", &["b-7"]),
            case("q2", "跟客户吃饭敬酒", &["c-1"]),
            case("q3", "客户嫌贵", &["missing-doc"]),
            case("q4", "明天下雨吗", &[]),
        ];
        let report = evaluate(&retriever, &corpus, &cases, 5, "test", 1);
        assert_eq!(report.on_topic, 3);
        assert_eq!(report.off_topic, 1);
        assert!((report.recall_at_5 - 2.0 / 3.0).abs() < 1e-9, "{report:?}");
        assert_eq!(report.misses.len(), 1);
        assert_eq!(report.misses[0].qid, "q3");
        assert_eq!(report.off_topic_recall, 1.0);
        assert_eq!(report.on_topic_flagged_off_topic, 0.0);
        assert_eq!(report.latency.runs, 4);
    }

    #[test]
    fn load_cases_reports_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cases.jsonl");
        std::fs::write(
            &path,
            "{\"qid\":\"a\",\"text\":\"x\",\"relevant\":[]}\n\nnot json\n",
        )
        .unwrap();
        match load_cases(&path) {
            Err(EvalError::Json { line, .. }) => assert_eq!(line, 3),
            other => panic!("expected a JSON error, got {other:?}"),
        }
    }
}
