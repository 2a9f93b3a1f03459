//! Errors of the LLM client.

use std::fmt;

/// Time limit that ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// Opening the TCP/TLS connection took longer than `connect_timeout_secs`.
    Connect,
    /// No event of the answer arrived within `first_token_timeout_secs`.
    FirstToken,
    /// The whole call, retries included, took longer than `total_timeout_secs`.
    Total,
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutKind::Connect => "connecting to the LLM API timed out: check llm.base_url or raise llm.connect_timeout_secs",
            TimeoutKind::FirstToken => {
                "the LLM API sent no answer within the first-token timeout: the provider may be overloaded, or raise llm.first_token_timeout_secs"
            }
            TimeoutKind::Total => "the LLM answer did not finish within llm.total_timeout_secs",
        })
    }
}

/// Failure of a chat or embeddings call.
///
/// Messages name the setting to check. `section` is the config section of
/// the provider that failed: `llm` or `llm.fallback`.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("the LLM is not configured: set llm.base_url and llm.model")]
    NotConfigured,

    #[error("embeddings are not configured: set llm.embedding_model")]
    EmbeddingsNotConfigured,

    #[error("invalid LLM settings: {0}")]
    Config(String),

    #[error("{0}")]
    Timeout(TimeoutKind),

    #[error("{}", describe_http_error(*status, message, section))]
    Http {
        status: u16,
        message: String,
        section: &'static str,
    },

    #[error("the LLM API reported an error in its answer: {0}")]
    Api(String),

    #[error(
        "the LLM answer stream ended before the answer was complete ({} characters received): try again",
        partial.chars().count()
    )]
    Incomplete { partial: String },

    #[error(
        "request to the LLM API failed: {0}: check llm.base_url and that the server is running"
    )]
    Transport(String),

    #[error("the LLM API sent an invalid response: {0}")]
    InvalidResponse(String),
}

impl LlmError {
    /// Partial answer text received before the failure, if any.
    pub fn partial_text(&self) -> Option<&str> {
        match self {
            LlmError::Incomplete { partial } if !partial.is_empty() => Some(partial),
            _ => None,
        }
    }
}

fn describe_http_error(status: u16, message: &str, section: &str) -> String {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
        .unwrap_or("");
    let advice = match status {
        401 | 403 => format!("check {section}.api_key"),
        404 => format!("check {section}.base_url and {section}.model"),
        408 => "the server timed out the request, so try again".to_string(),
        413 => "the prompt is too large for this provider; lower llm.context_tokens".to_string(),
        429 => "rate limit or quota exceeded: wait and try again, or raise the provider's limit"
            .to_string(),
        400 | 422 => format!(
            "the server rejected the request; check {section}.model and the request parameters"
        ),
        500..=599 => "the provider has a server-side problem; try again later".to_string(),
        _ => format!("check the [{section}] settings"),
    };
    let detail = if message.is_empty() {
        String::new()
    } else {
        format!(" ({message})")
    };
    format!("LLM API returned {status} {reason}{detail}: {advice}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_401_message_names_the_setting() {
        let error = LlmError::Http {
            status: 401,
            message: "Incorrect API key provided".to_string(),
            section: "llm",
        };

        assert_eq!(
            error.to_string(),
            "LLM API returned 401 Unauthorized (Incorrect API key provided): check llm.api_key"
        );
    }

    #[test]
    fn http_fallback_section_in_message() {
        let error = LlmError::Http {
            status: 404,
            message: String::new(),
            section: "llm.fallback",
        };

        assert_eq!(
            error.to_string(),
            "LLM API returned 404 Not Found: check llm.fallback.base_url and llm.fallback.model"
        );
    }
}
