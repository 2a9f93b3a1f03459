//! Embeddings against a scripted OpenAI-compatible server on 127.0.0.1.

#[path = "support/mock_llm.rs"]
mod mock_llm;

use maxwin_coach::llm::{LlmClient, LlmError, LlmSettings};
use mock_llm::{MockLlm, MockResponse, embeddings_body};

fn settings(server: &MockLlm, batch_size: usize) -> LlmSettings {
    LlmSettings {
        base_url: Some(server.base_url()),
        model: Some("chat-model".to_string()),
        embedding_model: Some("embed-model".to_string()),
        embedding_batch_size: batch_size,
        retry_base_delay_ms: 100,
        ..LlmSettings::default()
    }
}

fn inputs(count: usize) -> Vec<String> {
    (0..count).map(|index| format!("passage {index}")).collect()
}

fn vectors(range: std::ops::Range<usize>) -> Vec<Vec<f32>> {
    range.map(|index| vec![index as f32, 1.0]).collect()
}

#[tokio::test(start_paused = true)]
async fn embeddings_batched_in_order() {
    let server = MockLlm::start(vec![
        MockResponse::json(200, embeddings_body(&vectors(0..2))),
        MockResponse::json(200, embeddings_body(&vectors(2..4))),
        MockResponse::json(200, embeddings_body(&vectors(4..5))),
    ])
    .await;
    let client = LlmClient::new(&settings(&server, 2)).unwrap().unwrap();

    let result = client.embed(&inputs(5)).await.unwrap();

    assert_eq!(result, vectors(0..5));
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].path, "/v1/embeddings");
    assert_eq!(requests[0].json["model"], "embed-model");
    assert_eq!(
        requests[0].json["input"],
        serde_json::json!(["passage 0", "passage 1"])
    );
    assert_eq!(requests[2].json["input"], serde_json::json!(["passage 4"]));
}

#[tokio::test(start_paused = true)]
async fn embeddings_retry_server_error() {
    let server = MockLlm::start(vec![
        MockResponse::error(503, "busy"),
        MockResponse::json(200, embeddings_body(&vectors(0..3))),
    ])
    .await;
    let client = LlmClient::new(&settings(&server, 8)).unwrap().unwrap();

    let result = client.embed(&inputs(3)).await.unwrap();

    assert_eq!(result, vectors(0..3));
    assert_eq!(server.request_count(), 2);
}

#[tokio::test(start_paused = true)]
async fn embeddings_count_mismatch_rejected() {
    let server = MockLlm::start(vec![MockResponse::json(
        200,
        embeddings_body(&vectors(0..1)),
    )])
    .await;
    let client = LlmClient::new(&settings(&server, 8)).unwrap().unwrap();

    let error = client.embed(&inputs(2)).await.unwrap_err();

    assert!(matches!(error, LlmError::InvalidResponse(_)), "{error:?}");
}

#[tokio::test(start_paused = true)]
async fn embeddings_empty_input_sends_nothing() {
    let server = MockLlm::start(vec![]).await;
    let client = LlmClient::new(&settings(&server, 8)).unwrap().unwrap();

    assert!(client.embed(&[]).await.unwrap().is_empty());
    assert_eq!(server.request_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn embeddings_need_a_model() {
    let server = MockLlm::start(vec![]).await;
    let settings = LlmSettings {
        embedding_model: None,
        ..settings(&server, 8)
    };
    let client = LlmClient::new(&settings).unwrap().unwrap();

    let error = client.embed(&inputs(1)).await.unwrap_err();

    assert!(
        matches!(error, LlmError::EmbeddingsNotConfigured),
        "{error:?}"
    );
}
