//! Renders replies as Telegram messages: HTML cards split at section boundaries and
//! plain-text chunks, each within the Bot API's 4096-character limit.

use maxwin_channel::render::{self, Line, Section};
use maxwin_channel::{Card, LengthUnit};

/// The Bot API's limit for `sendMessage` and `editMessageText` text, in characters
/// after entity parsing.
pub const MAX_MESSAGE_CHARS: usize = 4096;

/// One message's worth of a reply, in HTML and as the same visible text without markup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Telegram HTML, or `None` for a reply that is plain text only.
    pub html: Option<String>,
    /// The visible text: what the HTML shows after entity parsing.
    pub plain: String,
    /// The well-formed pieces the chunk was packed from, for splitting it further.
    pieces: Vec<Piece>,
}

/// A well-formed fragment: tags opened in `html` are closed in it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Piece {
    html: String,
    plain: String,
}

impl Piece {
    fn len(&self) -> usize {
        // Escapes and tags only add characters, so the raw HTML is never shorter
        // than the visible text; checking it covers both limits.
        render::measure(&self.html, LengthUnit::Chars)
            .max(render::measure(&self.plain, LengthUnit::Chars))
    }
}

/// Escapes `&`, `<` and `>` for a Telegram HTML text node.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(ch),
        }
    }
    out
}

/// Renders a card as HTML chunks of at most `max` characters. Chunks break between
/// sections where possible, else between lines, and never inside a tag, an entity or a character.
pub fn card_chunks(card: &Card, max: usize) -> Vec<Chunk> {
    let colon = card.lang.pick("：", ": ");
    let sections = render::sections(card);
    let mut pieces = Vec::new();
    for section in &sections {
        let whole = render_section(section, colon);
        if whole.len() <= max {
            pieces.push(whole);
            continue;
        }
        for line in &section.lines {
            pieces.extend(fit_piece(render_line(line, colon), max));
        }
    }
    pack(pieces, max)
}

/// Splits plain text into chunks of at most `max` characters, at line breaks where possible.
pub fn text_chunks(text: &str, max: usize) -> Vec<Chunk> {
    render::pack_chunks(&[text.trim()], max, LengthUnit::Chars)
        .into_iter()
        .filter(|chunk| !chunk.trim().is_empty())
        .map(|chunk| Chunk {
            html: None,
            plain: chunk.clone(),
            pieces: vec![Piece {
                html: escape(&chunk),
                plain: chunk,
            }],
        })
        .collect()
}

/// Splits a chunk that Telegram rejected as too long into chunks of at most `max`.
///
/// Returns the chunk unchanged in a one-element list when it already fits and has a
/// single piece that cannot be split further within `max`.
pub fn split_chunk(chunk: &Chunk, max: usize) -> Vec<Chunk> {
    let html_mode = chunk.html.is_some();
    let pieces: Vec<Piece> = chunk
        .pieces
        .iter()
        .flat_map(|piece| {
            if piece.len() <= max {
                vec![piece.clone()]
            } else {
                piece
                    .plain
                    .split_inclusive('\n')
                    .flat_map(|line| fit_piece(plain_piece(line), max))
                    .collect()
            }
        })
        .collect();
    let mut out = pack(pieces, max);
    if !html_mode {
        for chunk in &mut out {
            chunk.html = None;
        }
    }
    out
}

/// Truncates preview text to the message limit, at a character boundary.
pub fn truncate_preview(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((byte, _)) => &text[..byte],
        None => text,
    }
}

fn render_section(section: &Section, colon: &str) -> Piece {
    let mut html = String::new();
    let mut plain = String::new();
    for line in &section.lines {
        let piece = render_line(line, colon);
        html.push_str(&piece.html);
        plain.push_str(&piece.plain);
    }
    Piece { html, plain }
}

fn render_line(line: &Line, colon: &str) -> Piece {
    let (html, plain) = match line {
        Line::Title(text) => (format!("<b>{}</b>\n", escape(text)), format!("{text}\n")),
        Line::Heading { level: 1, text } => (
            format!("\n<b>{}</b>\n", escape(text)),
            format!("\n{text}\n"),
        ),
        Line::Heading { text, .. } => (
            format!("<b><i>{}</i></b>\n", escape(text)),
            format!("{text}\n"),
        ),
        Line::Notice(text) => (
            format!("<blockquote>{}</blockquote>\n", escape(text)),
            format!("{text}\n"),
        ),
        Line::Field { label, text } => (
            format!("<b>{}{colon}</b>{}\n", escape(label), escape(text)),
            format!("{label}{colon}{text}\n"),
        ),
        Line::Bullet {
            label: Some(label),
            text,
        } => (
            format!("• <b>{}{colon}</b>{}\n", escape(label), escape(text)),
            format!("• {label}{colon}{text}\n"),
        ),
        Line::Bullet { label: None, text } => {
            (format!("• {}\n", escape(text)), format!("• {text}\n"))
        }
        Line::Paragraph(text) => (format!("{}\n", escape(text)), format!("{text}\n")),
    };
    Piece { html, plain }
}

fn plain_piece(text: &str) -> Piece {
    Piece {
        html: escape(text),
        plain: text.to_string(),
    }
}

/// Returns the piece itself when it fits, else its visible text cut into escaped
/// pieces that fit. The cut drops the line's bold label markup, never its text.
fn fit_piece(piece: Piece, max: usize) -> Vec<Piece> {
    if piece.len() <= max {
        return vec![piece];
    }
    let mut out = Vec::new();
    let mut current = Piece {
        html: String::new(),
        plain: String::new(),
    };
    let mut current_len = 0;
    for ch in piece.plain.chars() {
        let escaped = escape(ch.encode_utf8(&mut [0; 4]));
        let width = escaped.chars().count();
        if current_len + width > max && !current.plain.is_empty() {
            out.push(std::mem::replace(
                &mut current,
                Piece {
                    html: String::new(),
                    plain: String::new(),
                },
            ));
            current_len = 0;
        }
        current.html.push_str(&escaped);
        current.plain.push(ch);
        current_len += width;
    }
    if !current.plain.is_empty() {
        out.push(current);
    }
    out
}

/// Packs pieces in order into as few chunks as fit `max`, dropping blank chunks.
fn pack(pieces: Vec<Piece>, max: usize) -> Vec<Chunk> {
    let mut chunks: Vec<Vec<Piece>> = Vec::new();
    let mut current: Vec<Piece> = Vec::new();
    let mut current_len = 0;
    for piece in pieces {
        let len = piece.len();
        if !current.is_empty() && current_len + len > max {
            chunks.push(std::mem::take(&mut current));
            current_len = 0;
        }
        current_len += len;
        current.push(piece);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
        .into_iter()
        .map(|pieces| Chunk {
            html: Some(pieces.iter().map(|p| p.html.as_str()).collect()),
            plain: pieces.iter().map(|p| p.plain.as_str()).collect(),
            pieces,
        })
        .filter(|chunk| !chunk.plain.trim().is_empty())
        .collect()
}
