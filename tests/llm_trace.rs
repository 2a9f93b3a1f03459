//! Tracing output of an LLM call. This test has its own binary because
//! tracing caches per-callsite interest process-wide, so tests on other
//! threads without a subscriber could hide events from a thread-local one.

#[path = "support/mock_llm.rs"]
mod mock_llm;

use maxwin_channel::Secret;
use maxwin_coach::llm::{ChatMessage, ChatRequest, LlmClient, LlmSettings};
use mock_llm::{MockLlm, MockResponse};

/// Collects formatted tracing output for one test.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn trace_has_fields_but_no_secrets() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let server = MockLlm::start(vec![
        MockResponse::error(500, "retry me"),
        MockResponse::chat_stream(&["Visible answer"]),
    ])
    .await;

    let settings = LlmSettings {
        base_url: Some(server.base_url()),
        model: Some("test-model".to_string()),
        api_key: Some(Secret::new("sk-test-key")),
        retry_base_delay_ms: 100,
        ..LlmSettings::default()
    };
    let request = ChatRequest {
        messages: vec![ChatMessage::user("客户说太贵了")],
        ..ChatRequest::default()
    };

    LlmClient::new(&settings)
        .unwrap()
        .unwrap()
        .chat(&request)
        .await
        .unwrap();

    let output = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(output.contains("llm_call"), "{output}");
    assert!(output.contains("model=test-model"), "{output}");
    assert!(output.contains("prompt_tokens=7"), "{output}");
    assert!(output.contains("attempts=2"), "{output}");
    assert!(output.contains("retrying"), "{output}");
    assert!(!output.contains("sk-test-key"), "API key logged: {output}");
    assert!(
        !output.contains("客户说太贵了"),
        "prompt text logged: {output}"
    );
    assert!(
        !output.contains("Visible answer"),
        "answer text logged: {output}"
    );
}
