//! The terminal's reply sink: streams the draft as it arrives and prints the final
//! reply as plain text, Markdown or JSON.

use std::io::Write;
use std::time::Duration;

use async_trait::async_trait;
use maxwin_channel::{
    Delivered, LengthUnit, ProgressStyle, Reply, ReplySink, SinkCapabilities, SinkError, render,
};

/// The format of the printed reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum OutputFormat {
    #[default]
    Text,
    Markdown,
    Json,
}

/// Writes the live draft to `live` (when set) and the final reply to `out`.
pub struct ConsoleSink<O: Write + Send, L: Write + Send> {
    out: O,
    live: Option<L>,
    format: OutputFormat,
    shown: usize,
}

impl<O: Write + Send, L: Write + Send> ConsoleSink<O, L> {
    pub fn new(out: O, live: Option<L>, format: OutputFormat) -> Self {
        ConsoleSink {
            out,
            live,
            format,
            shown: 0,
        }
    }

    pub fn into_output(self) -> O {
        self.out
    }
}

/// Renders a reply the way the terminal prints it.
pub fn render_reply(reply: &Reply, format: OutputFormat) -> String {
    match (reply, format) {
        (_, OutputFormat::Json) => {
            let mut json = serde_json::to_string_pretty(reply).unwrap_or_default();
            json.push('\n');
            json
        }
        (Reply::Card(card), OutputFormat::Text) => render::to_text(card),
        (Reply::Card(card), OutputFormat::Markdown) => render::to_markdown(card),
        (Reply::Text { text, .. }, _) => format!("{text}\n"),
    }
}

fn io_error(error: std::io::Error) -> SinkError {
    SinkError::Transport(error.to_string())
}

#[async_trait]
impl<O: Write + Send, L: Write + Send> ReplySink for ConsoleSink<O, L> {
    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities {
            progress: if self.live.is_some() {
                ProgressStyle::Push {
                    min_interval: Duration::ZERO,
                }
            } else {
                ProgressStyle::None
            },
            max_progress_len: None,
            unit: LengthUnit::Chars,
        }
    }

    async fn start(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn progress(&mut self, text: &str) -> Result<(), SinkError> {
        let Some(live) = self.live.as_mut() else {
            return Ok(());
        };
        // A shorter text means the LLM client restarted the answer after a failure.
        if text.len() < self.shown || !text.is_char_boundary(self.shown) {
            writeln!(live, "\n…").map_err(io_error)?;
            self.shown = 0;
        }
        live.write_all(&text.as_bytes()[self.shown..])
            .map_err(io_error)?;
        live.flush().map_err(io_error)?;
        self.shown = text.len();
        Ok(())
    }

    async fn finish(&mut self, reply: &Reply) -> Result<Delivered, SinkError> {
        if self.shown > 0
            && let Some(live) = self.live.as_mut()
        {
            writeln!(live, "\n").map_err(io_error)?;
        }
        self.shown = 0;
        self.out
            .write_all(render_reply(reply, self.format).as_bytes())
            .map_err(io_error)?;
        self.out.flush().map_err(io_error)?;
        Ok(Delivered::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maxwin_channel::{Lang, ReplyKind};

    #[tokio::test]
    async fn console_streams_deltas_and_restarts() {
        let mut sink = ConsoleSink::new(Vec::new(), Some(Vec::new()), OutputFormat::Text);
        sink.progress("Hel").await.unwrap();
        sink.progress("Hello").await.unwrap();
        sink.progress("Hi").await.unwrap();
        let live = String::from_utf8(sink.live.take().unwrap()).unwrap();
        assert_eq!(live, "Hello\n…\nHi");
    }

    #[tokio::test]
    async fn console_prints_text_reply() {
        let mut sink = ConsoleSink::new(Vec::new(), None::<Vec<u8>>, OutputFormat::Text);
        let reply = Reply::Text {
            kind: ReplyKind::OffTopic,
            lang: Lang::En,
            text: "Only sales questions.".into(),
        };
        sink.finish(&reply).await.unwrap();
        assert_eq!(
            String::from_utf8(sink.into_output()).unwrap(),
            "Only sales questions.\n"
        );
    }
}
