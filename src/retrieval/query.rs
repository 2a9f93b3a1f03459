//! Turning user text into a tantivy query without the query parser.
//!
//! The text is analysed with the index's own analyser, expanded with the
//! bilingual sales vocabulary, and each term becomes a boosted `TermQuery`
//! in one `BooleanQuery` of `Should` clauses, so no input can be a syntax error.

use std::collections::HashSet;
use std::sync::LazyLock;

use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};

use super::schema::Fields;
use super::text::{self, Term};
use crate::corpus::is_cjk;

/// Text beyond this many characters is ignored, which bounds query cost.
pub const MAX_QUERY_CHARS: usize = 2000;
const MAX_WORD_TERMS: usize = 96;
const MAX_BIGRAM_TERMS: usize = 160;

/// Bilingual sales vocabulary: a seller's word or phrase, then the corpus
/// words it stands for.
const VOCABULARY: &str = include_str!("vocabulary.tsv");
/// Words that mark a message as being about selling.
const SALES_TERMS: &str = include_str!("sales_terms.txt");

/// One vocabulary entry: the key as analysed terms and its expansion terms.
struct Entry {
    /// Normalised key, matched as a substring when it contains Han characters.
    key: String,
    /// Stemmed words of a Latin-script key, matched as a contiguous run.
    key_words: Vec<String>,
    expansion: Vec<String>,
}

fn parse_key(key: &str) -> (String, Vec<String>) {
    let normalized = text::normalize(key.trim());
    let words = if normalized.chars().any(is_cjk) {
        Vec::new()
    } else {
        latin_words(&normalized)
    };
    (normalized, words)
}

/// Splits normalised Latin-script text into stemmed words, stop words included,
/// so that phrases like `went dark` keep their shape.
fn latin_words(normalized: &str) -> Vec<String> {
    normalized
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && !w.chars().any(is_cjk))
        .map(text::stem)
        .collect()
}

static ENTRIES: LazyLock<Vec<Entry>> = LazyLock::new(|| {
    VOCABULARY
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let (key, expansion) = line.split_once('\t')?;
            let (key, key_words) = parse_key(key);
            let expansion = text::analyze(expansion)
                .into_iter()
                .map(|t| t.text)
                .collect();
            Some(Entry {
                key,
                key_words,
                expansion,
            })
        })
        .collect()
});

static SALES: LazyLock<Vec<(String, Vec<String>)>> = LazyLock::new(|| {
    SALES_TERMS
        .split(['\n', ','])
        .map(str::trim)
        .filter(|term| !term.is_empty() && !term.starts_with('#'))
        .map(parse_key)
        .collect()
});

fn contains_run(haystack: &[String], needle: &[String]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

fn key_matches(key: &str, key_words: &[String], normalized: &str, words: &[String]) -> bool {
    if key_words.is_empty() {
        !key.is_empty() && normalized.contains(key)
    } else {
        contains_run(words, key_words)
    }
}

/// The analysed form of one message.
#[derive(Debug, Clone, Default)]
pub struct AnalyzedQuery {
    pub words: Vec<String>,
    pub expansions: Vec<String>,
    pub bigrams: Vec<String>,
    /// Number of sales-vocabulary terms found, the off-topic signal.
    pub sales_terms: usize,
}

impl AnalyzedQuery {
    pub fn is_empty(&self) -> bool {
        self.words.is_empty() && self.expansions.is_empty() && self.bigrams.is_empty()
    }
}

fn push_unique(out: &mut Vec<String>, seen: &mut HashSet<String>, term: String, max: usize) {
    if out.len() < max && seen.insert(term.clone()) {
        out.push(term);
    }
}

/// Analyses a message: words, vocabulary expansions, bigrams, sales signal.
pub fn analyze_query(raw: &str, use_vocabulary: bool) -> AnalyzedQuery {
    let cut: String = raw.chars().take(MAX_QUERY_CHARS).collect();
    let normalized = text::normalize(&cut);
    let latin = latin_words(&normalized);

    let mut seen = HashSet::new();
    let mut words = Vec::new();
    for Term { text, .. } in text::analyze_normalized(&normalized) {
        push_unique(&mut words, &mut seen, text, MAX_WORD_TERMS);
    }
    let mut expansions = Vec::new();
    if use_vocabulary {
        for entry in ENTRIES.iter() {
            if key_matches(&entry.key, &entry.key_words, &normalized, &latin) {
                for term in &entry.expansion {
                    push_unique(&mut expansions, &mut seen, term.clone(), MAX_WORD_TERMS);
                }
            }
        }
    }
    let mut bigram_seen = HashSet::new();
    let mut bigrams = Vec::new();
    for Term { text, .. } in text::cjk_bigrams(&normalized) {
        if text.chars().count() == 2 || !text::is_stop_word(&text) {
            push_unique(&mut bigrams, &mut bigram_seen, text, MAX_BIGRAM_TERMS);
        }
    }
    let sales_terms = SALES
        .iter()
        .filter(|(key, key_words)| key_matches(key, key_words, &normalized, &latin))
        .count();
    AnalyzedQuery {
        words,
        expansions,
        bigrams,
        sales_terms,
    }
}

/// Field weights of the query; see `docs/retrieval.md` for how they were measured.
#[derive(Debug, Clone, Copy)]
pub struct Weights {
    pub title: f32,
    pub scenarios: f32,
    pub question: f32,
    pub body: f32,
    pub body_bigrams: f32,
    pub meta_bigrams: f32,
    /// Factor on every clause of a vocabulary expansion term.
    pub expansion: f32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            title: 1.5,
            scenarios: 2.0,
            question: 1.5,
            body: 1.0,
            body_bigrams: 0.3,
            meta_bigrams: 0.6,
            expansion: 0.6,
        }
    }
}

fn clause(field: Field, term: &str, boost: f32) -> (Occur, Box<dyn Query>) {
    let term_query = TermQuery::new(
        tantivy::Term::from_field_text(field, term),
        IndexRecordOption::WithFreqs,
    );
    (
        Occur::Should,
        Box::new(BoostQuery::new(Box::new(term_query), boost)),
    )
}

/// Builds the boolean query; `None` when the message has no searchable term.
pub fn build_query(
    query: &AnalyzedQuery,
    fields: &Fields,
    weights: &Weights,
) -> Option<BooleanQuery> {
    let mut clauses = Vec::new();
    let word_fields = [
        (fields.title, weights.title),
        (fields.scenarios, weights.scenarios),
        (fields.question, weights.question),
        (fields.body, weights.body),
    ];
    for (terms, factor) in [(&query.words, 1.0), (&query.expansions, weights.expansion)] {
        for term in terms {
            for (field, weight) in word_fields {
                if weight > 0.0 {
                    clauses.push(clause(field, term, weight * factor));
                }
            }
        }
    }
    for term in &query.bigrams {
        if weights.body_bigrams > 0.0 {
            clauses.push(clause(fields.body_bigrams, term, weights.body_bigrams));
        }
        if weights.meta_bigrams > 0.0 {
            clauses.push(clause(fields.meta_bigrams, term, weights.meta_bigrams));
        }
    }
    (!clauses.is_empty()).then(|| BooleanQuery::new(clauses))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_and_sales_files_parse() {
        assert!(ENTRIES.len() > 50);
        assert!(
            ENTRIES.iter().all(|entry| !entry.expansion.is_empty()),
            "an entry expands to nothing"
        );
        assert!(SALES.len() > 50);
    }

    #[test]
    fn english_phrase_expands_to_chinese() {
        let query = analyze_query("The prospect went dark after my proposal", true);
        assert!(
            query.expansions.iter().any(|t| t.chars().any(is_cjk)),
            "{query:?}"
        );
        assert!(query.sales_terms > 0);
    }

    #[test]
    fn off_topic_text_has_no_sales_terms() {
        assert_eq!(
            analyze_query("明天杭州下雨吗，要带伞不", true).sales_terms,
            0
        );
        assert!(analyze_query("客户嫌贵怎么回", true).sales_terms > 0);
    }

    #[test]
    fn very_long_text_is_capped() {
        let long = "客户说价格太贵了我们要不要打折 ".repeat(2000);
        let query = analyze_query(&long, true);
        assert!(query.words.len() <= MAX_WORD_TERMS);
        assert!(query.bigrams.len() <= MAX_BIGRAM_TERMS);
    }
}
