//! Decoding of `chat.completion.chunk` events into visible answer text,
//! finish reason and token usage.

use serde::Deserialize;
use serde_json::Value;

use super::error::LlmError;
use super::sse::SseEvent;
use super::think::ThinkFilter;

/// Token counts reported by the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct Usage {
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct ChunkWire {
    #[serde(default)]
    choices: Vec<ChoiceWire>,
    usage: Option<Usage>,
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ChoiceWire {
    #[serde(default)]
    index: u32,
    delta: Option<MessageWire>,
    message: Option<MessageWire>,
    finish_reason: Option<String>,
    // Moonshot reports usage inside the last choice.
    usage: Option<Usage>,
}

/// Only `content` is read: `reasoning_content` (DeepSeek, Qwen) and
/// `reasoning` (Ollama, OpenRouter) are ignored so reasoning never reaches
/// the user.
#[derive(Debug, Deserialize)]
struct MessageWire {
    content: Option<String>,
}

/// Error found while decoding, with whether a retry may help.
#[derive(Debug)]
pub(crate) struct DecodeError {
    pub error: LlmError,
    pub retryable: bool,
}

/// Turns the SSE events of one streamed answer into visible text.
#[derive(Debug, Default)]
pub(crate) struct ChatStreamDecoder {
    filter: ThinkFilter,
    text: String,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    /// The `[DONE]` sentinel arrived.
    pub done: bool,
}

impl ChatStreamDecoder {
    /// Decodes one event and returns the newly visible text (often empty).
    pub fn decode(&mut self, event: &SseEvent) -> Result<String, DecodeError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(String::new());
        }
        if event.event.as_deref() == Some("error") {
            return Err(api_error(
                &serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_string())),
            ));
        }
        if data.is_empty() {
            return Ok(String::new());
        }

        let chunk: ChunkWire = serde_json::from_str(data).map_err(|error| DecodeError {
            error: LlmError::InvalidResponse(format!(
                "stream chunk is not a chat completion chunk: {error}"
            )),
            retryable: false,
        })?;
        if let Some(error) = &chunk.error {
            return Err(api_error(error));
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }

        let mut content = String::new();
        for choice in chunk.choices.into_iter().filter(|choice| choice.index == 0) {
            if let Some(piece) = choice
                .delta
                .or(choice.message)
                .and_then(|message| message.content)
            {
                content.push_str(&piece);
            }
            if choice.finish_reason.is_some() {
                self.finish_reason = choice.finish_reason;
            }
            if choice.usage.is_some() {
                self.usage = choice.usage;
            }
        }
        Ok(self.show(&content))
    }

    /// Flushes text held back by the reasoning filter at the end of the stream.
    pub fn finish(&mut self) -> String {
        let rest = self.filter.finish();
        self.text.push_str(&rest);
        rest
    }

    /// True when the server marked the answer as finished.
    pub fn is_complete(&self) -> bool {
        self.done || self.finish_reason.is_some()
    }

    /// Visible text decoded so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn into_text(self) -> String {
        self.text
    }

    fn show(&mut self, content: &str) -> String {
        if content.is_empty() {
            return String::new();
        }
        let visible = self.filter.push(content);
        self.text.push_str(&visible);
        visible
    }
}

/// Decoded non-streaming `chat.completion` body, for servers that ignore
/// `stream: true` and answer with plain JSON.
pub(crate) fn decode_full_response(body: &str) -> Result<ChatStreamDecoder, DecodeError> {
    let mut decoder = ChatStreamDecoder::default();
    let event = SseEvent {
        event: None,
        data: body.to_string(),
    };
    decoder.decode(&event)?;
    decoder.finish();
    if decoder.finish_reason.is_none() {
        decoder.finish_reason = Some("stop".to_string());
    }
    Ok(decoder)
}

/// Builds the error for an `{"error": …}` object inside a 200 response.
/// Server-side kinds (overload, rate limit, internal error) may be retried.
fn api_error(error: &Value) -> DecodeError {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| error.as_str().map(str::to_string))
        .unwrap_or_else(|| error.to_string());

    let kind = ["type", "code"]
        .iter()
        .filter_map(|key| error.get(*key))
        .map(|value| {
            value
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string())
        })
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    let retryable = [
        "server_error",
        "overloaded",
        "rate_limit",
        "timeout",
        "unavailable",
        "429",
        "500",
        "502",
        "503",
    ]
    .iter()
    .any(|marker| kind.contains(marker));

    let message = if kind.is_empty() {
        message
    } else {
        format!("{message} [{kind}]")
    };
    DecodeError {
        error: LlmError::Api(message),
        retryable,
    }
}

/// Extracts `error.message` from an error response body, or a short prefix of
/// the raw body when it is not the usual JSON.
pub(crate) fn error_body_message(body: &str) -> String {
    const MAX_CHARS: usize = 300;
    if let Ok(value) = serde_json::from_str::<Value>(body) {
        let error = value.get("error").unwrap_or(&value);
        if let Some(message) = error
            .get("message")
            .and_then(Value::as_str)
            .or_else(|| error.as_str())
        {
            return message.chars().take(MAX_CHARS).collect();
        }
    }
    body.trim().chars().take(MAX_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(text: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: text.to_string(),
        }
    }

    #[test]
    fn content_deltas_and_finish_reason() {
        let mut decoder = ChatStreamDecoder::default();

        let first = decoder.decode(&data(
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
        ));
        let second = decoder.decode(&data(
            r#"{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#,
        ));
        let third = decoder.decode(&data(
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        ));

        assert_eq!(first.unwrap(), "");
        assert_eq!(second.unwrap(), "Hi");
        assert_eq!(third.unwrap(), "");
        assert_eq!(decoder.finish_reason.as_deref(), Some("stop"));
        assert!(decoder.is_complete());
        assert_eq!(decoder.text(), "Hi");
    }

    #[test]
    fn reasoning_fields_are_dropped() {
        let mut decoder = ChatStreamDecoder::default();

        let reasoning = decoder.decode(&data(
            r#"{"choices":[{"delta":{"reasoning_content":"secret plan"}}]}"#,
        ));
        let ollama = decoder.decode(&data(
            r#"{"choices":[{"delta":{"reasoning":"more plan","content":null}}]}"#,
        ));
        let answer = decoder.decode(&data(r#"{"choices":[{"delta":{"content":"Answer"}}]}"#));

        assert_eq!(reasoning.unwrap(), "");
        assert_eq!(ollama.unwrap(), "");
        assert_eq!(answer.unwrap(), "Answer");
    }

    #[test]
    fn usage_in_final_chunk_or_choice() {
        let mut openai = ChatStreamDecoder::default();
        openai
            .decode(&data(r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#))
            .unwrap();
        let mut moonshot = ChatStreamDecoder::default();
        moonshot
            .decode(&data(r#"{"choices":[{"delta":{},"finish_reason":"stop","usage":{"prompt_tokens":5,"completion_tokens":2}}]}"#))
            .unwrap();

        assert_eq!(
            openai.usage,
            Some(Usage {
                prompt_tokens: Some(12),
                completion_tokens: Some(3)
            })
        );
        assert_eq!(
            moonshot.usage,
            Some(Usage {
                prompt_tokens: Some(5),
                completion_tokens: Some(2)
            })
        );
    }

    #[test]
    fn done_sentinel_completes() {
        let mut decoder = ChatStreamDecoder::default();

        decoder.decode(&data("[DONE]")).unwrap();

        assert!(decoder.is_complete());
    }

    #[test]
    fn error_object_in_stream() {
        let mut decoder = ChatStreamDecoder::default();

        let rejected = decoder.decode(&data(
            r#"{"error":{"message":"content filtered","type":"invalid_request_error"}}"#,
        ));
        let overloaded = decoder.decode(&data(
            r#"{"error":{"message":"busy","type":"server_error"}}"#,
        ));
        let named = decoder.decode(&SseEvent {
            event: Some("error".to_string()),
            data: "upstream closed".to_string(),
        });

        let rejected = rejected.unwrap_err();
        assert!(
            matches!(&rejected.error, LlmError::Api(message) if message.contains("content filtered"))
        );
        assert!(!rejected.retryable);
        assert!(overloaded.unwrap_err().retryable);
        assert!(
            matches!(named.unwrap_err().error, LlmError::Api(message) if message == "upstream closed")
        );
    }

    #[test]
    fn malformed_chunk_is_invalid_response() {
        let mut decoder = ChatStreamDecoder::default();

        let error = decoder.decode(&data("{not json")).unwrap_err();

        assert!(matches!(error.error, LlmError::InvalidResponse(_)));
    }

    #[test]
    fn think_block_removed_from_content() {
        let mut decoder = ChatStreamDecoder::default();
        let mut shown = String::new();
        for piece in ["<thi", "nk>plan</th", "ink>\n\nOK"] {
            let event =
                data(&serde_json::json!({"choices":[{"delta":{"content":piece}}]}).to_string());
            shown.push_str(&decoder.decode(&event).unwrap());
        }
        shown.push_str(&decoder.finish());

        assert_eq!(shown, "OK");
        assert_eq!(decoder.text(), "OK");
    }

    #[test]
    fn full_response_body_decoded() {
        let body = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"<think>x</think>Hello","reasoning_content":"y"},"finish_reason":"stop"}],"usage":{"prompt_tokens":4,"completion_tokens":1}}"#;

        let decoder = decode_full_response(body).unwrap();

        assert_eq!(decoder.text(), "Hello");
        assert_eq!(decoder.finish_reason.as_deref(), Some("stop"));
        assert_eq!(decoder.usage.unwrap().prompt_tokens, Some(4));
    }

    #[test]
    fn error_body_message_extracted() {
        assert_eq!(
            error_body_message(r#"{"error":{"message":"Invalid key","type":"auth"}}"#),
            "Invalid key"
        );
        assert_eq!(error_body_message("upstream timeout\n"), "upstream timeout");
    }
}
