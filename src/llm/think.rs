//! Streaming filter that removes `<think>…</think>` reasoning blocks from
//! model output. Open-weight reasoning models (DeepSeek-R1 and Qwen3 served by
//! Ollama, vLLM or llama.cpp) often put their reasoning in the content itself.

const OPEN_TAG: &str = "<think>";
const CLOSE_TAG: &str = "</think>";

/// Removes reasoning blocks from text that arrives in pieces.
///
/// A tag may be split across pieces at any byte, so a trailing fragment that
/// could start a tag is held back until the next piece decides it. Leading
/// whitespace of the visible answer is dropped too, because models usually put
/// blank lines after `</think>`. An unclosed block hides everything after its
/// opening tag.
#[derive(Debug, Default)]
pub struct ThinkFilter {
    pending: String,
    in_block: bool,
    started: bool,
}

impl ThinkFilter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Filters the next piece and returns the text that is safe to show now.
    pub fn push(&mut self, piece: &str) -> String {
        self.pending.push_str(piece);
        let mut visible = String::new();

        loop {
            let tag = if self.in_block { CLOSE_TAG } else { OPEN_TAG };
            if let Some(position) = self.pending.find(tag) {
                if !self.in_block {
                    visible.push_str(&self.pending[..position]);
                }
                self.pending.drain(..position + tag.len());
                self.in_block = !self.in_block;
                continue;
            }

            let keep = partial_tag_suffix_len(&self.pending, tag);
            let release = self.pending.len() - keep;
            if !self.in_block {
                visible.push_str(&self.pending[..release]);
            }
            self.pending.drain(..release);
            break;
        }

        self.trim_leading(visible)
    }

    /// Ends the stream and returns any held-back text that turned out not to
    /// be a tag.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        if self.in_block {
            return String::new();
        }
        self.trim_leading(rest)
    }

    fn trim_leading(&mut self, text: String) -> String {
        if self.started {
            return text;
        }
        let trimmed = text.trim_start();
        if trimmed.is_empty() {
            return String::new();
        }
        self.started = true;
        trimmed.to_string()
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `tag`.
fn partial_tag_suffix_len(text: &str, tag: &str) -> usize {
    (1..tag.len())
        .rev()
        .find(|&len| {
            text.len() >= len
                && text.is_char_boundary(text.len() - len)
                && tag.starts_with(&text[text.len() - len..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter_in_pieces(pieces: &[&str]) -> String {
        let mut filter = ThinkFilter::new();
        let mut output = String::new();
        for piece in pieces {
            output.push_str(&filter.push(piece));
        }
        output.push_str(&filter.finish());
        output
    }

    #[test]
    fn text_without_tags_passes_through() {
        assert_eq!(
            filter_in_pieces(&["Ask about ", "budget < 5k", " first."]),
            "Ask about budget < 5k first."
        );
    }

    #[test]
    fn block_removed_in_one_piece() {
        assert_eq!(
            filter_in_pieces(&["<think>plan the reply</think>\n\nAnswer: 先问预算。"]),
            "Answer: 先问预算。"
        );
    }

    #[test]
    fn tags_split_at_every_position() {
        let input =
            "<think>内部推理 with <b> and </thin></think>\n\nVisible 答案 <thinker> </think> end";
        let expected = "Visible 答案 <thinker> </think> end";

        for first in 0..=input.len() {
            if !input.is_char_boundary(first) {
                continue;
            }
            assert_eq!(
                filter_in_pieces(&[&input[..first], &input[first..]]),
                expected,
                "split at {first}"
            );
            for second in first..=input.len() {
                if !input.is_char_boundary(second) {
                    continue;
                }
                let pieces = [&input[..first], &input[first..second], &input[second..]];
                assert_eq!(
                    filter_in_pieces(&pieces),
                    expected,
                    "split at {first} and {second}"
                );
            }
        }
    }

    #[test]
    fn one_character_pieces() {
        let input = "Before <think>hidden</think>after";
        let pieces: Vec<String> = input.chars().map(String::from).collect();
        let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();

        assert_eq!(filter_in_pieces(&pieces), "Before after");
    }

    #[test]
    fn held_back_fragment_released_when_not_a_tag() {
        let mut filter = ThinkFilter::new();

        assert_eq!(filter.push("Price <thi"), "Price ");
        assert_eq!(filter.push("s>"), "<this>");
        assert_eq!(filter.push(" deal <th"), " deal ");
        assert_eq!(filter.finish(), "<th");
    }

    #[test]
    fn unclosed_block_hides_the_rest() {
        assert_eq!(
            filter_in_pieces(&["<think>still reasoning", " when cut"]),
            ""
        );
    }

    #[test]
    fn several_blocks_removed() {
        assert_eq!(
            filter_in_pieces(&["<think>a</think>One ", "<think>b</think>two"]),
            "One two"
        );
    }
}
