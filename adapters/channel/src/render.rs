//! Turns a card into sections and lines that every renderer shares, plus the plain
//! text and Markdown renderings and a splitter that keeps section boundaries.
//!
//! Platform renderers (Telegram HTML, WeCom markdown, Slack Block Kit) walk
//! [`sections`] and format each [`Line`] in their own markup, so every platform shows
//! the same parts in the same order and can split long cards between sections.

use crate::card::{Card, CardOrigin, Labels};
use crate::sink::LengthUnit;

/// One line of a rendered card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// The card title.
    Title(String),
    /// A heading; level 1 for the card's main parts, 2 for sub-parts.
    Heading { level: u8, text: String },
    /// A notice set apart from the content (the library-answer marker).
    Notice(String),
    /// A labelled field such as `问题：…` or `局势：[高风险]`.
    Field { label: String, text: String },
    /// A bullet, with an optional bold label.
    Bullet { label: Option<String>, text: String },
    /// A plain paragraph.
    Paragraph(String),
}

/// A group of lines that stays together when a card is split into messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    pub lines: Vec<Line>,
}

/// Lays out a card as sections, in the order of the corpus's standard Q&A cards.
pub fn sections(card: &Card) -> Vec<Section> {
    let labels: &Labels = card.labels();
    let mut out = Vec::new();

    let mut head = Section::default();
    head.lines.push(Line::Title(card.title.trim().to_string()));
    if card.origin == CardOrigin::Library {
        head.lines
            .push(Line::Notice(labels.library_notice.to_string()));
    }
    head.lines.push(Line::Field {
        label: labels.question.to_string(),
        text: card.question.trim().to_string(),
    });
    out.push(head);

    out.push(Section {
        lines: vec![
            Line::Heading {
                level: 1,
                text: labels.situation.to_string(),
            },
            Line::Field {
                label: labels.stage.to_string(),
                text: format!("[{}]", card.situation.stage.trim().trim_matches(['[', ']'])),
            },
            Line::Field {
                label: labels.diagnosis.to_string(),
                text: card.situation.diagnosis.trim().to_string(),
            },
        ],
    });

    let mut self_check = Section {
        lines: vec![
            Line::Heading {
                level: 1,
                text: labels.breakthrough.to_string(),
            },
            Line::Heading {
                level: 2,
                text: labels.self_check.to_string(),
            },
        ],
    };
    self_check
        .lines
        .extend(card.self_check.iter().map(|q| Line::Bullet {
            label: None,
            text: q.trim().to_string(),
        }));
    out.push(self_check);

    let mut outward = Section {
        lines: vec![Line::Heading {
            level: 2,
            text: card.outward_heading().to_string(),
        }],
    };
    outward
        .lines
        .extend(card.outward.iter().map(labelled_bullet));
    out.push(outward);

    let mut now = Section {
        lines: vec![
            Line::Heading {
                level: 1,
                text: labels.actions.to_string(),
            },
            Line::Heading {
                level: 2,
                text: labels.actions_now.to_string(),
            },
        ],
    };
    now.lines
        .extend(card.actions_now.iter().map(labelled_bullet));
    out.push(now);

    let mut later = Section {
        lines: vec![Line::Heading {
            level: 2,
            text: labels.actions_later.to_string(),
        }],
    };
    later
        .lines
        .extend(card.actions_later.iter().map(labelled_bullet));
    out.push(later);

    let mut sources = Section {
        lines: vec![Line::Heading {
            level: 2,
            text: labels.sources.to_string(),
        }],
    };
    sources
        .lines
        .extend(card.sources.iter().map(|s| Line::Bullet {
            label: None,
            text: if s.title.trim().is_empty() {
                s.id.clone()
            } else {
                format!("{} · {}", s.id, s.title.trim())
            },
        }));
    out.push(sources);

    out
}

fn labelled_bullet(item: &crate::card::Labelled) -> Line {
    let label = item.label.trim();
    Line::Bullet {
        label: (!label.is_empty()).then(|| label.to_string()),
        text: item.text.trim().to_string(),
    }
}

/// Returns the separator between a field label and its text in the card's language.
fn colon(card: &Card) -> &'static str {
    card.lang.pick("：", ": ")
}

/// Renders one section as plain text for a terminal.
pub fn section_to_text(card: &Card, section: &Section) -> String {
    let colon = colon(card);
    let mut out = String::new();
    for line in &section.lines {
        match line {
            Line::Title(text) => out.push_str(&format!("【{text}】\n")),
            Line::Heading { level: 1, text } => out.push_str(&format!("\n{text}\n")),
            Line::Heading { text, .. } => out.push_str(&format!("{text}\n")),
            Line::Notice(text) => out.push_str(&format!("{text}\n")),
            Line::Field { label, text } => out.push_str(&format!("{label}{colon}{text}\n")),
            Line::Bullet {
                label: Some(label),
                text,
            } => out.push_str(&format!("  • {label}{colon}{text}\n")),
            Line::Bullet { label: None, text } => out.push_str(&format!("  • {text}\n")),
            Line::Paragraph(text) => out.push_str(&format!("{text}\n")),
        }
    }
    out
}

/// Renders a whole card as plain text for a terminal.
pub fn to_text(card: &Card) -> String {
    sections(card)
        .iter()
        .map(|s| section_to_text(card, s))
        .collect::<Vec<_>>()
        .join("")
}

/// Renders one section as CommonMark.
pub fn section_to_markdown(card: &Card, section: &Section) -> String {
    // CommonMark ends bold only when `**` follows a non-space, so the colon goes
    // inside the bold span without its trailing space.
    let colon = card.lang.pick("：", ":");
    let mut out = String::new();
    for line in &section.lines {
        match line {
            Line::Title(text) => out.push_str(&format!("# {text}\n\n")),
            Line::Heading { level: 1, text } => out.push_str(&format!("## {text}\n\n")),
            Line::Heading { text, .. } => out.push_str(&format!("### {text}\n\n")),
            Line::Notice(text) => out.push_str(&format!("> {text}\n\n")),
            Line::Field { label, text } => out.push_str(&format!("**{label}{colon}** {text}\n\n")),
            Line::Bullet {
                label: Some(label),
                text,
            } => out.push_str(&format!("* **{label}{colon}** {text}\n")),
            Line::Bullet { label: None, text } => out.push_str(&format!("* {text}\n")),
            Line::Paragraph(text) => out.push_str(&format!("{text}\n\n")),
        }
    }
    if !out.ends_with("\n\n") {
        out.push('\n');
    }
    out
}

/// Renders a whole card as CommonMark.
pub fn to_markdown(card: &Card) -> String {
    let text: String = sections(card)
        .iter()
        .map(|s| section_to_markdown(card, s))
        .collect();
    format!("{}\n", text.trim_end())
}

/// Measures `text` in a platform's length unit.
pub fn measure(text: &str, unit: LengthUnit) -> usize {
    match unit {
        LengthUnit::Bytes => text.len(),
        LengthUnit::Chars => text.chars().count(),
        LengthUnit::Utf16 => text.encode_utf16().count(),
    }
}

/// Packs rendered parts into as few chunks as possible, each at most `max` long in `unit`.
///
/// Parts are kept whole where they fit, so a card splits only between sections. A
/// part longer than `max` is split at line breaks, and a line longer than `max` at
/// character boundaries, so no chunk ever ends inside a UTF-8 character. Renderers
/// whose markup must not be cut (HTML tags) should pass parts that are single
/// well-formed lines when a section is too long. Empty input gives no chunks.
///
/// # Panics
///
/// Panics if `max` is smaller than the longest character in `unit` (4 bytes, 2 UTF-16
/// units, 1 char), because then no split can make progress.
pub fn pack_chunks<S: AsRef<str>>(parts: &[S], max: usize, unit: LengthUnit) -> Vec<String> {
    let min = match unit {
        LengthUnit::Bytes => 4,
        LengthUnit::Utf16 => 2,
        LengthUnit::Chars => 1,
    };
    assert!(max >= min, "chunk limit {max} is too small for {unit:?}");

    let mut pieces: Vec<String> = Vec::new();
    for part in parts {
        let part = part.as_ref();
        if measure(part, unit) <= max {
            pieces.push(part.to_string());
            continue;
        }
        for line in part.split_inclusive('\n') {
            if measure(line, unit) <= max {
                pieces.push(line.to_string());
            } else {
                pieces.extend(split_hard(line, max, unit));
            }
        }
    }

    let mut chunks: Vec<String> = Vec::new();
    let mut current = String::new();
    for piece in pieces {
        let joined = measure(&current, unit) + measure(&piece, unit);
        if !current.is_empty() && joined > max {
            chunks.push(std::mem::take(&mut current));
        }
        current.push_str(&piece);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Splits a single line at character boundaries into pieces of at most `max`.
fn split_hard(line: &str, max: usize, unit: LengthUnit) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut len = 0;
    for ch in line.chars() {
        let width = match unit {
            LengthUnit::Bytes => ch.len_utf8(),
            LengthUnit::Chars => 1,
            LengthUnit::Utf16 => ch.len_utf16(),
        };
        if len + width > max {
            out.push(std::mem::take(&mut current));
            len = 0;
        }
        current.push(ch);
        len += width;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_keeps_sections_whole_when_they_fit() {
        let parts = ["aaaa\n", "bbbb\n", "cccc\n"];
        let chunks = pack_chunks(&parts, 10, LengthUnit::Chars);
        assert_eq!(chunks, vec!["aaaa\nbbbb\n", "cccc\n"]);
    }

    #[test]
    fn pack_splits_long_section_at_lines() {
        let parts = ["line one\nline two\n"];
        let chunks = pack_chunks(&parts, 9, LengthUnit::Chars);
        assert_eq!(chunks, vec!["line one\n", "line two\n"]);
    }

    #[test]
    fn pack_bytes_never_cuts_a_character() {
        let text = "销".repeat(10);
        let chunks = pack_chunks(&[text.as_str()], 7, LengthUnit::Bytes);
        assert!(chunks.iter().all(|c| c.len() <= 7));
        assert_eq!(chunks.concat(), text);
        assert_eq!(chunks.len(), 5);
    }

    #[test]
    fn pack_utf16_counts_surrogate_pairs() {
        let text = "😀😀😀";
        let chunks = pack_chunks(&[text], 4, LengthUnit::Utf16);
        assert_eq!(chunks, vec!["😀😀", "😀"]);
    }

    #[test]
    fn pack_empty_input_gives_no_chunks() {
        let parts: [&str; 0] = [];
        assert!(pack_chunks(&parts, 10, LengthUnit::Chars).is_empty());
    }
}
