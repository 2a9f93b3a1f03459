//! Import of the original single-file export into one Markdown file per document.
//!
//! The export is a sequence of `## SECTION: NAME` blocks. Inside a section a
//! document is either a `### SOURCE: NAME.md` block (id `NAME`), a
//! `### 提取记录 N` post under a `# 从 AUTHOR 提取…` line (id `AUTHOR-N`), or, for
//! `05_Classic_Theories`, the whole section (id = the section name).
//! Hand-written `scenarios` live in `scenarios.toml` in the output folder and are
//! merged into the front matter, so re-running the import keeps them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::frontmatter::quote;
use super::{CorpusError, DocKind, Lang, derive_title, detect_lang, io_error};

/// Name of the hand-maintained scenarios file inside the corpus folder.
pub const SCENARIOS_FILE: &str = "scenarios.toml";

/// Counts of one import run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub documents: usize,
    /// Files created or changed.
    pub written: usize,
    /// Files already identical to the import, left untouched.
    pub unchanged: usize,
    pub tips: usize,
    /// Ids in `scenarios.toml` that match no imported document.
    pub unknown_scenario_ids: Vec<String>,
}

/// One document cut out of the export, before rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawDocument<'a> {
    id: String,
    kind: DocKind,
    body: &'a str,
    line: usize,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioEntry {
    #[serde(default)]
    zh: Vec<String>,
    #[serde(default)]
    en: Vec<String>,
}

/// Imports `export` into `out_dir`, writing `<id>.md` per document and leaving
/// byte-identical files untouched. Files in `out_dir` that the export does not
/// produce (an operator's own documents) are kept.
pub fn import_export(export: &Path, out_dir: &Path) -> Result<ImportReport, CorpusError> {
    let text = std::fs::read_to_string(export).map_err(io_error(export))?;
    let documents = split_export(&text).map_err(|(line, message)| CorpusError::InvalidExport {
        path: export.to_path_buf(),
        line,
        message,
    })?;
    std::fs::create_dir_all(out_dir).map_err(io_error(out_dir))?;
    let mut scenarios = load_scenarios(&out_dir.join(SCENARIOS_FILE))?;

    let mut report = ImportReport {
        documents: documents.len(),
        ..ImportReport::default()
    };
    for document in &documents {
        let entry = scenarios.remove(&document.id).unwrap_or_default();
        let lines: Vec<String> = entry.zh.into_iter().chain(entry.en).collect();
        let tip = is_tip(document.kind, document.body);
        report.tips += usize::from(tip);
        let rendered = render(document, tip, &lines);
        let path = out_dir.join(file_name(&document.id));
        if std::fs::read(&path).is_ok_and(|existing| existing == rendered.as_bytes()) {
            report.unchanged += 1;
            continue;
        }
        std::fs::write(&path, rendered).map_err(io_error(&path))?;
        report.written += 1;
    }
    report.unknown_scenario_ids = scenarios.into_keys().collect();
    Ok(report)
}

/// Returns a file name for an id: characters other than letters, digits, `-`,
/// `_` and `.` become `_`, and a leading `.` is replaced so the file is not hidden.
pub fn file_name(id: &str) -> PathBuf {
    let mut name: String = id
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.starts_with('.') || name.is_empty() {
        name.insert(0, '_');
    }
    PathBuf::from(format!("{name}.md"))
}

fn load_scenarios(path: &Path) -> Result<BTreeMap<String, ScenarioEntry>, CorpusError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(error) => return Err(io_error(path)(error)),
    };
    toml::from_str(&text).map_err(|error| CorpusError::InvalidScenarios {
        path: path.to_path_buf(),
        message: error.to_string(),
    })
}

fn section_kind(section: &str) -> Option<DocKind> {
    match section {
        "01_Methodology_Core" => Some(DocKind::Methodology),
        "02_Naval_Wisdom" => Some(DocKind::Wisdom),
        "04_Standard_QA" => Some(DocKind::QaCard),
        "05_Classic_Theories" => Some(DocKind::Theory),
        "06_Real_Cases" => Some(DocKind::Case),
        _ if section.starts_with("03_") => Some(DocKind::Post),
        _ => None,
    }
}

/// Where the document being read started: its id, kind, first body byte and line.
struct Open {
    id: String,
    kind: DocKind,
    start: usize,
    line: usize,
}

/// Cuts the export into documents. Errors carry a 1-based line.
fn split_export(text: &str) -> Result<Vec<RawDocument<'_>>, (usize, String)> {
    let mut documents = Vec::new();
    let mut open: Option<Open> = None;
    let mut section: Option<(String, DocKind)> = None;
    let mut author: Option<String> = None;
    let mut offset = 0;

    for (index, line) in text.split_inclusive('\n').enumerate() {
        let line_number = index + 1;
        let line_start = offset;
        offset += line.len();
        let content = line.trim_end();

        if let Some(name) = content.strip_prefix("## SECTION:") {
            close(text, &mut open, line_start, &mut documents);
            let name = name.trim().to_string();
            let kind = section_kind(&name)
                .ok_or_else(|| (line_number, format!("unknown section `{name}`")))?;
            author = None;
            if kind == DocKind::Theory {
                open = Some(Open {
                    id: name.clone(),
                    kind,
                    start: offset,
                    line: line_number,
                });
            }
            section = Some((name, kind));
            continue;
        }
        let Some((_, kind)) = &section else {
            continue;
        };
        let kind = *kind;
        if let Some(name) = content.strip_prefix("### SOURCE:") {
            close(text, &mut open, line_start, &mut documents);
            let name = name.trim();
            let id = name.strip_suffix(".md").unwrap_or(name).trim().to_string();
            if id.is_empty() {
                return Err((line_number, "empty SOURCE name".to_string()));
            }
            open = Some(Open {
                id,
                kind,
                start: offset,
                line: line_number,
            });
            continue;
        }
        if kind != DocKind::Post {
            continue;
        }
        if let Some(rest) = content.strip_prefix("# 从 ")
            && open.is_none()
        {
            let name = rest.split_whitespace().next().unwrap_or("");
            if name.is_empty() {
                return Err((line_number, "author line without a name".to_string()));
            }
            author = Some(name.to_string());
            continue;
        }
        if let Some(number) = content.strip_prefix("### 提取记录") {
            close(text, &mut open, line_start, &mut documents);
            let number: u32 = number
                .trim()
                .parse()
                .map_err(|_| (line_number, format!("invalid post number in {content:?}")))?;
            let author = author.as_deref().ok_or_else(|| {
                (
                    line_number,
                    "post before any `# 从 AUTHOR 提取` line".to_string(),
                )
            })?;
            open = Some(Open {
                id: format!("{author}-{number}"),
                kind,
                start: offset,
                line: line_number,
            });
        }
    }
    close(text, &mut open, text.len(), &mut documents);

    let mut seen = std::collections::HashSet::new();
    for document in &documents {
        if !seen.insert(document.id.as_str()) {
            return Err((
                document.line,
                format!("duplicate document id `{}`", document.id),
            ));
        }
    }
    Ok(documents)
}

fn close<'a>(
    text: &'a str,
    open: &mut Option<Open>,
    end: usize,
    documents: &mut Vec<RawDocument<'a>>,
) {
    if let Some(doc) = open.take() {
        documents.push(RawDocument {
            id: doc.id,
            kind: doc.kind,
            body: clean_body(&text[doc.start..end], doc.kind),
            line: doc.line,
        });
    }
}

/// Trims a body; a post also loses the `---` line that separates it from the next one.
fn clean_body(body: &str, kind: DocKind) -> &str {
    let mut body = body.trim();
    if kind == DocKind::Post
        && let Some(stripped) = body.strip_suffix("---")
    {
        body = stripped.trim();
    }
    body
}

/// Decides whether a document can stand alone as a daily tip.
///
/// Only posts qualify: between 40 and 400 characters, ending a sentence,
/// without a heading (such as the collection header), a repost chain (`//@`)
/// or a truncation marker.
pub fn is_tip(kind: DocKind, body: &str) -> bool {
    const MIN_CHARS: usize = 40;
    const MAX_CHARS: usize = 400;
    if kind != DocKind::Post {
        return false;
    }
    let chars = body.chars().count();
    let ends_sentence = body.chars().next_back().is_some_and(|c| {
        matches!(
            c,
            '。' | '！' | '？' | '!' | '?' | '.' | '”' | '」' | '）' | ')'
        )
    });
    (MIN_CHARS..=MAX_CHARS).contains(&chars)
        && ends_sentence
        && !body
            .lines()
            .any(|line| super::passages::heading_text(line).is_some())
        && !body.contains("//@")
        && !body.contains("Truncated")
        && !body.ends_with("...")
}

fn lang_for(id: &str, body: &str) -> Lang {
    if id.ends_with("_ZH") {
        Lang::Zh
    } else if id.ends_with("_EN") {
        Lang::En
    } else {
        detect_lang(body)
    }
}

fn render(document: &RawDocument<'_>, tip: bool, scenarios: &[String]) -> String {
    let lang = lang_for(&document.id, document.body);
    let title = derive_title(document.body, document.kind);
    let mut out = String::with_capacity(document.body.len() + 256);
    out.push_str("---\n");
    out.push_str(&format!("id: {}\n", quote(&document.id)));
    out.push_str(&format!("kind: {}\n", document.kind.as_str()));
    out.push_str(&format!("lang: {}\n", lang.code()));
    out.push_str(&format!("title: {}\n", quote(&title)));
    out.push_str(&format!("tip: {tip}\n"));
    if !scenarios.is_empty() {
        out.push_str("scenarios:\n");
        for scenario in scenarios {
            out.push_str(&format!("  - {}\n", quote(scenario)));
        }
    }
    out.push_str("---\n\n");
    out.push_str(document.body);
    out.push('\n');
    out
}

#[cfg(test)]
pub(super) fn split_for_test(text: &str) -> Vec<(String, DocKind, String)> {
    split_export(text)
        .unwrap()
        .into_iter()
        .map(|doc| (doc.id, doc.kind, doc.body.to_string()))
        .collect()
}
