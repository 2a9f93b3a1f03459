//! The Max-Win-Win knowledge base: Markdown documents with front matter in `corpus/`.
//!
//! [`import_export`] turns the original single-file export into one file per
//! document; [`Corpus::load_dir`] reads those files plus any an operator adds.

mod frontmatter;
mod import;
mod passages;

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

pub use maxwin_channel::Lang;
use serde::{Deserialize, Serialize};

pub use import::{ImportReport, import_export};
pub use passages::split_passages;

use frontmatter::{FieldValue, Parsed};

/// What a document is, which decides how it is indexed and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocKind {
    Methodology,
    Wisdom,
    Post,
    QaCard,
    Theory,
    Case,
}

impl DocKind {
    pub const ALL: [DocKind; 6] = [
        DocKind::Methodology,
        DocKind::Wisdom,
        DocKind::Post,
        DocKind::QaCard,
        DocKind::Theory,
        DocKind::Case,
    ];

    /// Returns the front-matter spelling (`qa_card`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Methodology => "methodology",
            DocKind::Wisdom => "wisdom",
            DocKind::Post => "post",
            DocKind::QaCard => "qa_card",
            DocKind::Theory => "theory",
            DocKind::Case => "case",
        }
    }

    /// Parses the front-matter spelling.
    pub fn parse(value: &str) -> Option<DocKind> {
        DocKind::ALL.into_iter().find(|kind| kind.as_str() == value)
    }
}

impl fmt::Display for DocKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One corpus document as loaded from its file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Document {
    pub id: String,
    pub kind: DocKind,
    pub lang: Lang,
    pub title: String,
    /// Whether the text can stand alone as a daily tip.
    pub tip: bool,
    /// Markdown without the front matter, trimmed.
    pub body: String,
    pub path: PathBuf,
    /// How a seller would describe the situations this document covers.
    pub scenarios: Vec<String>,
}

/// A retrievable piece of a document: the text under one heading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Passage {
    pub doc_id: String,
    /// The heading the text sits under; empty for text before the first heading.
    pub heading: String,
    pub text: String,
    /// Position of the passage within its document, from 0.
    pub ordinal: usize,
}

/// A file that was skipped while loading, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusWarning {
    pub path: PathBuf,
    /// 1-based line of the problem.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for CorpusWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

/// Errors that stop a whole corpus operation.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("failed to read or write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corpus directory {0} does not exist or is not a directory")]
    NotADirectory(PathBuf),
    #[error("invalid export {path} at line {line}: {message}")]
    InvalidExport {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("invalid scenarios file {path}: {message}")]
    InvalidScenarios { path: PathBuf, message: String },
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CorpusError + '_ {
    move |source| CorpusError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The loaded knowledge base.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    pub documents: Vec<Document>,
}

impl Corpus {
    /// Loads every `*.md` file under `dir` (subfolders included, hidden entries and
    /// the `translations` folder skipped) in path order. A malformed file or a repeated id becomes a
    /// warning and the file is skipped; only an unreadable directory fails.
    pub fn load_dir(dir: &Path) -> Result<(Corpus, Vec<CorpusWarning>), CorpusError> {
        if !dir.is_dir() {
            return Err(CorpusError::NotADirectory(dir.to_path_buf()));
        }
        let mut paths = Vec::new();
        collect_markdown(dir, &mut paths)?;
        paths.sort();

        let mut documents = Vec::with_capacity(paths.len());
        let mut warnings = Vec::new();
        let mut seen = HashSet::new();
        for path in paths {
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(error) => {
                    warnings.push(CorpusWarning {
                        path,
                        line: 1,
                        message: format!("unreadable file: {error}"),
                    });
                    continue;
                }
            };
            match parse_document(&text, &path) {
                Ok((document, id_line)) => {
                    if seen.insert(document.id.clone()) {
                        documents.push(document);
                    } else {
                        warnings.push(CorpusWarning {
                            path,
                            line: id_line,
                            message: format!(
                                "duplicate id `{}`: an earlier file already uses it",
                                document.id
                            ),
                        });
                    }
                }
                Err((line, message)) => warnings.push(CorpusWarning {
                    path,
                    line,
                    message,
                }),
            }
        }
        for warning in &warnings {
            tracing::warn!(path = %warning.path.display(), line = warning.line, "skipped corpus file: {}", warning.message);
        }
        Ok((Corpus { documents }, warnings))
    }

    /// Finds a document by id.
    pub fn get(&self, id: &str) -> Option<&Document> {
        self.documents.iter().find(|document| document.id == id)
    }

    /// Splits every document at its headings, in document order.
    pub fn passages(&self) -> Vec<Passage> {
        self.documents.iter().flat_map(split_passages).collect()
    }
}

/// The folder under the corpus that holds `<id>.en.md` translations for the library card.
pub const TRANSLATIONS_DIR: &str = "translations";

fn collect_markdown(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), CorpusError> {
    let entries = std::fs::read_dir(dir).map_err(io_error(dir))?;
    for entry in entries {
        let entry = entry.map_err(io_error(dir))?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let file_type = entry.file_type().map_err(io_error(&path))?;
        if file_type.is_dir() {
            // English versions of documents live there; they are not documents of their own.
            if entry.file_name() == TRANSLATIONS_DIR {
                continue;
            }
            collect_markdown(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "md") {
            out.push(path);
        }
    }
    Ok(())
}

/// Parses one file; on error returns the 1-based line and a message.
fn parse_document(text: &str, path: &Path) -> Result<(Document, usize), (usize, String)> {
    let Parsed { fields, body } =
        frontmatter::parse(text).map_err(|error| (error.line, error.message))?;
    let scalar = |key: &str| -> Result<(String, usize), (usize, String)> {
        match fields.get(key) {
            Some(field) => match &field.value {
                FieldValue::Scalar(value) if !value.trim().is_empty() => {
                    Ok((value.trim().to_string(), field.line))
                }
                FieldValue::Scalar(_) => Err((field.line, format!("empty `{key}`"))),
                FieldValue::List(_) => Err((field.line, format!("`{key}` must be a single value"))),
            },
            None => Err((1, format!("missing `{key}` in the front matter"))),
        }
    };
    let (id, id_line) = scalar("id")?;
    let (kind_text, kind_line) = scalar("kind")?;
    let kind = DocKind::parse(&kind_text).ok_or_else(|| {
        (
            kind_line,
            format!(
                "unknown kind `{kind_text}`; expected one of methodology, wisdom, post, qa_card, theory, case"
            ),
        )
    })?;
    let lang = match fields.get("lang") {
        None => detect_lang(body),
        Some(_) => {
            let (value, line) = scalar("lang")?;
            Lang::parse(&value)
                .ok_or_else(|| (line, format!("unknown lang `{value}`; expected zh or en")))?
        }
    };
    let title = match fields.get("title") {
        None => derive_title(body, kind),
        Some(_) => scalar("title")?.0,
    };
    let tip = match fields.get("tip") {
        None => false,
        Some(_) => {
            let (value, line) = scalar("tip")?;
            match value.as_str() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err((
                        line,
                        format!("`tip` must be true or false, found `{value}`"),
                    ));
                }
            }
        }
    };
    let scenarios = match fields.get("scenarios") {
        None => Vec::new(),
        Some(field) => match &field.value {
            FieldValue::List(items) => items.clone(),
            FieldValue::Scalar(value) => vec![value.clone()],
        },
    };
    Ok((
        Document {
            id,
            kind,
            lang,
            title,
            tip,
            body: body.to_string(),
            path: path.to_path_buf(),
            scenarios,
        },
        id_line,
    ))
}

/// Returns `true` for Han ideographs: CJK Unified Ideographs, extension A and
/// the compatibility block.
pub fn is_cjk(c: char) -> bool {
    matches!(c, '\u{4e00}'..='\u{9fff}' | '\u{3400}'..='\u{4dbf}' | '\u{f900}'..='\u{faff}')
}

/// Guesses the language of a text from its share of CJK characters: Chinese
/// when Han characters are at least a fifth of the letters, so that mostly
/// Chinese text with English terms or quotes counts as Chinese.
pub fn detect_lang(text: &str) -> Lang {
    let (mut cjk, mut latin) = (0usize, 0usize);
    for c in text.chars() {
        if is_cjk(c) {
            cjk += 1;
        } else if c.is_ascii_alphabetic() {
            latin += 1;
        }
    }
    let mostly_latin = cjk * 5 < cjk + latin;
    if latin > 0 && mostly_latin {
        Lang::En
    } else {
        Lang::Zh
    }
}

/// Derives a title: the first ATX heading, else an `标题：` line, else the first sentence.
pub fn derive_title(body: &str, kind: DocKind) -> String {
    if kind != DocKind::Post || body.trim_start().starts_with('#') {
        if let Some(heading) = body.lines().find_map(passages::heading_text) {
            return clean_inline(&heading);
        }
        if let Some(line) = body.lines().find(|line| line.contains("标题：")) {
            let after = line
                .split_once("标题：")
                .map(|(_, rest)| rest)
                .unwrap_or(line);
            let cleaned = clean_inline(after);
            if !cleaned.is_empty() {
                return cleaned;
            }
        }
    }
    first_sentence(body)
}

/// Returns the first sentence of `text`, cut to 40 characters with an ellipsis.
pub fn first_sentence(text: &str) -> String {
    const MAX_CHARS: usize = 40;
    let line = text
        .lines()
        .map(|line| clean_inline(strip_hashtags(line)))
        .find(|line| !line.is_empty())
        .unwrap_or_default();
    let mut sentence = String::new();
    for c in line.chars() {
        sentence.push(c);
        if matches!(c, '。' | '！' | '？' | '!' | '?' | '；')
            || (c == '.' && !sentence.ends_with(".."))
        {
            break;
        }
    }
    let sentence = sentence.trim().to_string();
    if sentence.chars().count() > MAX_CHARS {
        let cut: String = sentence.chars().take(MAX_CHARS).collect();
        format!("{}…", cut.trim_end())
    } else {
        sentence
    }
}

/// Removes leading Weibo-style hashtags (`#以前写的# `) from a line.
fn strip_hashtags(mut line: &str) -> &str {
    loop {
        let trimmed = line.trim_start();
        let Some(rest) = trimmed.strip_prefix('#') else {
            return trimmed;
        };
        match rest.find('#') {
            Some(end) if end > 0 && !rest[..end].contains(char::is_whitespace) => {
                line = &rest[end + 1..]
            }
            _ => return trimmed,
        }
    }
}

/// Removes Markdown emphasis markers and surrounding whitespace from one line.
fn clean_inline(line: &str) -> String {
    let line = line.trim().trim_start_matches('#').trim();
    line.replace("**", "").replace("__", "").trim().to_string()
}

#[cfg(test)]
mod tests;
