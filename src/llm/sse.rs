//! Incremental parser for `text/event-stream` bodies (the Server-Sent Events
//! format of the WHATWG HTML standard, section "Server-sent events").
//!
//! Bytes arrive in arbitrary pieces, so the parser buffers raw bytes until a
//! whole line is present. Line terminators are ASCII, so a complete line never
//! ends inside a multi-byte UTF-8 character and decoding happens per line.

/// One dispatched event: the `event:` name (if any) and the `data:` lines
/// joined with `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// Streaming SSE parser. Feed it with [`SseParser::push`] as bytes arrive.
///
/// An event is dispatched at the blank line that ends it. When the body ends
/// in the middle of an event, that event is discarded, as the standard
/// requires, so a cut JSON payload is never handed on.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    data: String,
    has_data: bool,
    event: Option<String>,
    started: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `bytes` and returns the events completed by them, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(bytes);
        if !self.started {
            // A UTF-8 byte order mark may open the stream, so wait until it can be recognised.
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            if self.buffer.len() < BOM.len() && BOM.starts_with(&self.buffer) {
                return Vec::new();
            }
            if self.buffer.starts_with(BOM) {
                self.buffer.drain(..BOM.len());
            }
            self.started = true;
        }

        let mut events = Vec::new();
        let mut consumed = 0;
        while let Some((line_end, next_start)) = find_line_end(&self.buffer[consumed..]) {
            let line = &self.buffer[consumed..consumed + line_end];
            let line = String::from_utf8_lossy(line).into_owned();
            consumed += next_start;
            if let Some(event) = self.process_line(&line) {
                events.push(event);
            }
        }
        self.buffer.drain(..consumed);
        events
    }

    /// Bytes of an unfinished line still waiting for its terminator.
    pub fn pending_bytes(&self) -> usize {
        self.buffer.len()
    }

    fn process_line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }

        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_string()),
            // `id` and `retry` only matter for EventSource reconnection, which
            // an HTTP POST stream cannot use. Unknown fields are ignored.
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        if !self.has_data {
            return None;
        }
        self.has_data = false;
        Some(SseEvent {
            event: event.filter(|name| !name.is_empty()),
            data: std::mem::take(&mut self.data),
        })
    }
}

/// Finds the first line terminator (`\n`, `\r\n` or a lone `\r`) and returns
/// the line length and the offset of the next line. A `\r` at the very end of
/// the buffer is held back because a `\n` may follow in the next read.
fn find_line_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let position = buffer.iter().position(|&b| b == b'\n' || b == b'\r')?;
    if buffer[position] == b'\n' {
        return Some((position, position + 1));
    }
    match buffer.get(position + 1) {
        Some(b'\n') => Some((position, position + 2)),
        Some(_) => Some((position, position + 1)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_event(data: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: data.to_string(),
        }
    }

    fn parse_in_pieces(input: &[u8], piece_len: usize) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for piece in input.chunks(piece_len) {
            events.extend(parser.push(piece));
        }
        events
    }

    #[test]
    fn parses_events_in_one_read() {
        let events = SseParser::new().push(b"data: one\n\ndata: two\n\n");

        assert_eq!(events, vec![data_event("one"), data_event("two")]);
    }

    #[test]
    fn event_split_at_every_byte() {
        let input = "data: {\"a\":1}\n\n: keep-alive\n\nevent: error\ndata: x\n\ndata: [DONE]\n\n";
        let whole = SseParser::new().push(input.as_bytes());
        assert_eq!(whole.len(), 3);

        for split in 0..=input.len() {
            let mut parser = SseParser::new();
            let mut events = parser.push(&input.as_bytes()[..split]);
            events.extend(parser.push(&input.as_bytes()[split..]));
            assert_eq!(events, whole, "split at byte {split}");
        }
        assert_eq!(parse_in_pieces(input.as_bytes(), 1), whole);
    }

    #[test]
    fn multibyte_character_split_across_reads() {
        let input = "data: 销售参谋 🤝 win\n\n".as_bytes();

        for piece_len in 1..=4 {
            let events = parse_in_pieces(input, piece_len);
            assert_eq!(
                events,
                vec![data_event("销售参谋 🤝 win")],
                "pieces of {piece_len} bytes"
            );
        }
        for split in 0..=input.len() {
            let mut parser = SseParser::new();
            let mut events = parser.push(&input[..split]);
            events.extend(parser.push(&input[split..]));
            assert_eq!(
                events,
                vec![data_event("销售参谋 🤝 win")],
                "split at byte {split}"
            );
        }
    }

    #[test]
    fn crlf_and_cr_line_endings() {
        let crlf = b"data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n";
        let cr = b"data: a\rdata: b\r\rdata: c\r\r";
        let expected = vec![data_event("a\nb"), data_event("c")];

        for piece_len in 1..=crlf.len() {
            assert_eq!(
                parse_in_pieces(crlf, piece_len),
                expected,
                "CRLF in pieces of {piece_len}"
            );
        }
        // A lone CR is only known to end a line once the next byte arrives.
        let mut parser = SseParser::new();
        let mut events = parser.push(cr);
        events.extend(parser.push(b"\n"));
        assert_eq!(events, expected);
    }

    #[test]
    fn comments_are_ignored() {
        let events = SseParser::new().push(b": keep-alive\n\n:\n\ndata: x\n: inside an event\n\n");

        assert_eq!(events, vec![data_event("x")]);
    }

    #[test]
    fn multiline_data_joined_with_newline() {
        let events = SseParser::new().push(b"data: {\"a\":\ndata:1}\ndata\n\n");

        assert_eq!(events, vec![data_event("{\"a\":\n1}\n")]);
    }

    #[test]
    fn event_name_and_unknown_fields() {
        let events =
            SseParser::new().push(b"id: 7\nretry: 100\nevent: error\nfoo: bar\ndata: boom\n\n");

        assert_eq!(
            events,
            vec![SseEvent {
                event: Some("error".to_string()),
                data: "boom".to_string(),
            }]
        );
    }

    #[test]
    fn unfinished_event_is_not_dispatched() {
        let mut parser = SseParser::new();

        assert!(parser.push(b"data: {\"cut\": tr").is_empty());
        assert!(parser.push(b"ue}\n").is_empty());
        assert_eq!(parser.pending_bytes(), 0);
    }

    #[test]
    fn byte_order_mark_split_is_skipped() {
        let input = b"\xEF\xBB\xBFdata: x\n\n";

        for piece_len in 1..=input.len() {
            assert_eq!(parse_in_pieces(input, piece_len), vec![data_event("x")]);
        }
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let events = SseParser::new().push(b"data: a\xFFb\n\n");

        assert_eq!(events, vec![data_event("a\u{FFFD}b")]);
    }
}
