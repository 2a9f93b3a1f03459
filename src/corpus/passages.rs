//! Splitting documents into passages at their Markdown headings.

use super::{DocKind, Document, Passage};

/// Passages longer than this many characters are split again at blank lines.
const MAX_PASSAGE_CHARS: usize = 1200;

/// Returns the text of an ATX heading line (`## Title`), or `None`.
///
/// A `#` must be followed by a space, so hashtags such as `#以前写的#` in
/// posts are not headings.
pub fn heading_text(line: &str) -> Option<String> {
    let trimmed = line.trim_end();
    let hashes = trimmed.chars().take_while(|&c| c == '#').count();
    if !(1..=6).contains(&hashes) {
        return None;
    }
    let rest = &trimmed[hashes..];
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let text = rest.trim().trim_end_matches('#').trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// Splits a document into passages.
///
/// Posts are one passage. Other documents are cut at every heading outside
/// fenced code. A heading with no text below it is carried into the next
/// passage's heading, and an over-long section is cut again at blank lines.
pub fn split_passages(document: &Document) -> Vec<Passage> {
    let body = document.body.trim();
    let sections = if document.kind == DocKind::Post {
        vec![(String::new(), body.to_string())]
    } else {
        split_at_headings(body)
    };

    let mut passages = Vec::new();
    for (heading, text) in sections {
        for chunk in split_long(&text) {
            passages.push(Passage {
                doc_id: document.id.clone(),
                heading: heading.clone(),
                text: chunk,
                ordinal: passages.len(),
            });
        }
    }
    if passages.is_empty() {
        passages.push(Passage {
            doc_id: document.id.clone(),
            heading: String::new(),
            text: body.to_string(),
            ordinal: 0,
        });
    }
    passages
}

fn split_at_headings(body: &str) -> Vec<(String, String)> {
    let mut sections: Vec<(String, String)> = Vec::new();
    let mut heading = String::new();
    let mut text = String::new();
    let mut in_fence = false;
    for line in body.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        let next_heading = if in_fence { None } else { heading_text(line) };
        match next_heading {
            Some(next) => {
                let has_content = text
                    .lines()
                    .any(|l| heading_text(l).is_none() && !l.trim().is_empty());
                if has_content {
                    sections.push((heading.clone(), text.trim().to_string()));
                    heading = next;
                    text.clear();
                } else if heading.is_empty() {
                    heading = next;
                } else {
                    heading = format!("{heading} / {next}");
                }
                text.push_str(line);
                text.push('\n');
            }
            None => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    if !text.trim().is_empty() {
        sections.push((heading, text.trim().to_string()));
    }
    sections
}

fn split_long(text: &str) -> Vec<String> {
    if text.chars().count() <= MAX_PASSAGE_CHARS {
        return vec![text.to_string()];
    }
    let mut chunks = Vec::new();
    let mut current = String::new();
    for paragraph in text.split("\n\n") {
        let paragraph = paragraph.trim();
        if paragraph.is_empty() {
            continue;
        }
        if !current.is_empty()
            && current.chars().count() + paragraph.chars().count() > MAX_PASSAGE_CHARS
        {
            chunks.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push_str("\n\n");
        }
        current.push_str(paragraph);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}
