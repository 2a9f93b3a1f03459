//! English versions of corpus documents, kept in `corpus/translations/<id>.en.md`,
//! which the library card uses to answer English speakers from Chinese Q&A cards.

use std::path::Path;

use tracing::warn;

use super::library::Translations;

/// Loads every `<id>.en.md` file under `dir/translations`, keyed by id, with any
/// front matter removed. A missing folder gives an empty map.
pub fn load(corpus_dir: &Path) -> Translations {
    let mut translations = Translations::new();
    let dir = corpus_dir.join(crate::corpus::TRANSLATIONS_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return translations;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(id) = name.strip_suffix(".en.md") else {
            continue;
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                translations.insert(id.to_string(), strip_front_matter(&text).to_string());
            }
            Err(error) => {
                warn!(path = %path.display(), error = %error, "could not read translation")
            }
        }
    }
    translations
}

fn strip_front_matter(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("---\n") else {
        return text;
    };
    match rest.find("\n---\n") {
        Some(end) => &rest[end + 5..],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_front_matter_removes_header() {
        assert_eq!(
            strip_front_matter("---\nid: x\n---\n# Title\n"),
            "# Title\n"
        );
        assert_eq!(strip_front_matter("# No header\n"), "# No header\n");
    }
}
