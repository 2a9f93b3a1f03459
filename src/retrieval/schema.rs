//! The tantivy schema, the tokenizers registered on it and index building.

use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};
use tantivy::{Index, IndexWriter, TantivyDocument};

use super::text::{self, Term};
use crate::corpus::{DocKind, Document, Passage};

pub const WORDS_TOKENIZER: &str = "maxwin_words";
pub const BIGRAMS_TOKENIZER: &str = "maxwin_bigrams";

/// The fields of one indexed passage. Display data stays in memory in
/// [`super::Retriever`], so nothing but the passage number is stored.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    /// Position of the passage in the retriever's passage list (fast field).
    pub passage: Field,
    /// Document title and the passage heading.
    pub title: Field,
    /// The document's scenarios: how sellers describe the situation it answers.
    pub scenarios: Field,
    /// The question of a Q&A card, repeated on each of its passages.
    pub question: Field,
    pub body: Field,
    /// Han character bigrams of the body.
    pub body_bigrams: Field,
    /// Han character bigrams of the title, scenarios and question.
    pub meta_bigrams: Field,
}

pub fn build_schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let text_options = |tokenizer: &str| {
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(tokenizer)
                .set_index_option(IndexRecordOption::WithFreqs),
        )
    };
    let fields = Fields {
        passage: builder.add_u64_field("passage", INDEXED | FAST),
        title: builder.add_text_field("title", text_options(WORDS_TOKENIZER)),
        scenarios: builder.add_text_field("scenarios", text_options(WORDS_TOKENIZER)),
        question: builder.add_text_field("question", text_options(WORDS_TOKENIZER)),
        body: builder.add_text_field("body", text_options(WORDS_TOKENIZER)),
        body_bigrams: builder.add_text_field("body_bigrams", text_options(BIGRAMS_TOKENIZER)),
        meta_bigrams: builder.add_text_field("meta_bigrams", text_options(BIGRAMS_TOKENIZER)),
    };
    (builder.build(), fields)
}

/// Resolves the fields of an index opened from disk.
pub fn fields_of(schema: &Schema) -> tantivy::Result<Fields> {
    Ok(Fields {
        passage: schema.get_field("passage")?,
        title: schema.get_field("title")?,
        scenarios: schema.get_field("scenarios")?,
        question: schema.get_field("question")?,
        body: schema.get_field("body")?,
        body_bigrams: schema.get_field("body_bigrams")?,
        meta_bigrams: schema.get_field("meta_bigrams")?,
    })
}

pub fn register_tokenizers(index: &Index) {
    index
        .tokenizers()
        .register(WORDS_TOKENIZER, AnalyzerTokenizer { bigrams: false });
    index
        .tokenizers()
        .register(BIGRAMS_TOKENIZER, AnalyzerTokenizer { bigrams: true });
}

/// Adapts [`text::analyze`] or [`text::cjk_bigrams`] to tantivy.
#[derive(Clone)]
struct AnalyzerTokenizer {
    bigrams: bool,
}

struct VecTokenStream {
    tokens: Vec<Token>,
    next: usize,
}

impl Tokenizer for AnalyzerTokenizer {
    type TokenStream<'a> = VecTokenStream;

    fn token_stream<'a>(&'a mut self, input: &'a str) -> VecTokenStream {
        let normalized = text::normalize(input);
        let terms: Vec<Term> = if self.bigrams {
            text::cjk_bigrams(&normalized)
        } else {
            text::analyze_normalized(&normalized)
        };
        let tokens = terms
            .into_iter()
            .enumerate()
            .map(|(position, term)| Token {
                offset_from: term.start,
                offset_to: term.end,
                position,
                text: term.text,
                position_length: 1,
            })
            .collect();
        VecTokenStream { tokens, next: 0 }
    }
}

impl TokenStream for VecTokenStream {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

/// Returns the question of a Q&A card: the text after `**问题：**` up to the
/// first `---` line, or an empty string for other documents.
pub fn card_question(document: &Document) -> String {
    if document.kind != DocKind::QaCard {
        return String::new();
    }
    let Some((_, rest)) = document
        .body
        .split_once("**问题：**")
        .or_else(|| document.body.split_once("**Question:**"))
    else {
        return String::new();
    };
    rest.split("\n---").next().unwrap_or("").trim().to_string()
}

/// Adds every passage to a fresh index with one writer thread and commits.
pub fn index_passages(
    index: &Index,
    fields: &Fields,
    documents: &[&Document],
    passages: &[(usize, Passage)],
) -> tantivy::Result<()> {
    const WRITER_MEMORY_BYTES: usize = 50_000_000;
    let mut writer: IndexWriter<TantivyDocument> =
        index.writer_with_num_threads(1, WRITER_MEMORY_BYTES)?;
    let questions: Vec<String> = documents.iter().map(|d| card_question(d)).collect();
    let scenario_texts: Vec<String> = documents.iter().map(|d| d.scenarios.join("\n")).collect();
    for (number, (doc_index, passage)) in passages.iter().enumerate() {
        let document = documents[*doc_index];
        let title = if passage.heading.is_empty() {
            document.title.clone()
        } else {
            format!("{}\n{}", document.title, passage.heading)
        };
        let scenarios = &scenario_texts[*doc_index];
        let question = &questions[*doc_index];
        let mut doc = TantivyDocument::default();
        doc.add_u64(fields.passage, number as u64);
        doc.add_text(fields.title, &title);
        doc.add_text(fields.scenarios, scenarios);
        doc.add_text(fields.question, question);
        doc.add_text(fields.body, &passage.text);
        doc.add_text(fields.body_bigrams, &passage.text);
        doc.add_text(
            fields.meta_bigrams,
            format!("{title}\n{scenarios}\n{question}"),
        );
        writer.add_document(doc)?;
    }
    writer.commit()?;
    writer.wait_merging_threads()?;
    Ok(())
}
