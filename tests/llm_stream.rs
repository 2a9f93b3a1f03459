//! Chat streaming against a scripted OpenAI-compatible server on 127.0.0.1.
//! Timers run on tokio's paused clock, so backoff and timeouts take no real time.

#[path = "support/mock_llm.rs"]
mod mock_llm;

use std::time::Duration;

use maxwin_channel::Secret;
use maxwin_coach::llm::{
    ChatMessage, ChatRequest, Completion, LlmClient, LlmError, LlmSettings, StreamEvent,
    TimeoutKind,
};
use mock_llm::{
    DONE, MockLlm, MockResponse, chunk, content_chunk, finish_chunk, reasoning_chunk, usage_chunk,
};
use serde_json::json;
use tokio::time::Instant;

fn settings(server: &MockLlm) -> LlmSettings {
    LlmSettings {
        base_url: Some(server.base_url()),
        model: Some("test-model".to_string()),
        api_key: Some(Secret::new("sk-test-key")),
        max_retries: 2,
        retry_base_delay_ms: 100,
        ..LlmSettings::default()
    }
}

fn client(settings: &LlmSettings) -> LlmClient {
    LlmClient::new(settings)
        .unwrap()
        .expect("settings are configured")
}

fn request() -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage::system("You are a sales coach."),
            ChatMessage::user("客户说太贵了"),
        ],
        ..ChatRequest::default()
    }
}

/// Events as the callback saw them, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Delta(String),
    Restart,
}

async fn stream(client: &LlmClient) -> (Result<Completion, LlmError>, Vec<Seen>) {
    let mut seen = Vec::new();
    let result = client
        .chat_stream(&request(), &mut |event| {
            seen.push(match event {
                StreamEvent::Delta(text) => Seen::Delta(text.to_string()),
                StreamEvent::Restart => Seen::Restart,
            })
        })
        .await;
    (result, seen)
}

/// Text a user would see at the end: deltas appended, cleared at each Restart.
fn screen(seen: &[Seen]) -> String {
    let mut text = String::new();
    for event in seen {
        match event {
            Seen::Delta(piece) => text.push_str(piece),
            Seen::Restart => text.clear(),
        }
    }
    text
}

fn restarts(seen: &[Seen]) -> usize {
    seen.iter().filter(|event| **event == Seen::Restart).count()
}

#[tokio::test(start_paused = true)]
async fn deltas_arrive_in_order() {
    let server = MockLlm::start(vec![
        MockResponse::chat_stream(&["Ask ", "about ", "the ", "budget."])
            .in_pieces(7)
            .delay_pieces(Duration::from_millis(5)),
    ])
    .await;

    let (result, seen) = stream(&client(&settings(&server))).await;

    let completion = result.unwrap();
    let deltas: Vec<Seen> = ["Ask ", "about ", "the ", "budget."]
        .iter()
        .map(|text| Seen::Delta(text.to_string()))
        .collect();
    assert_eq!(seen, deltas);
    assert_eq!(completion.text, "Ask about the budget.");
    assert_eq!(completion.finish_reason.as_deref(), Some("stop"));
    assert_eq!(completion.model, "test-model");
    assert_eq!(completion.provider, "127.0.0.1");
}

#[tokio::test(start_paused = true)]
async fn request_has_openai_shape() {
    let server = MockLlm::start(vec![MockResponse::chat_stream(&["ok"])]).await;
    let settings = LlmSettings {
        temperature: Some(0.3),
        max_tokens: Some(512),
        ..settings(&server)
    };

    client(&settings).chat(&request()).await.unwrap();

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.header("authorization"), Some("Bearer sk-test-key"));
    assert_eq!(sent.json["model"], "test-model");
    assert_eq!(sent.json["stream"], true);
    assert_eq!(
        sent.json["stream_options"],
        json!({ "include_usage": true })
    );
    assert_eq!(sent.json["max_tokens"], 512);
    assert!((sent.json["temperature"].as_f64().unwrap() - 0.3).abs() < 1e-6);
    assert_eq!(
        sent.json["messages"],
        json!([
            { "role": "system", "content": "You are a sales coach." },
            { "role": "user", "content": "客户说太贵了" },
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn event_split_across_reads() {
    let server = MockLlm::start(vec![
        MockResponse::chat_stream(&["Split ", "into ", "single bytes"])
            .in_pieces(1)
            .delay_pieces(Duration::from_millis(1)),
    ])
    .await;

    let (result, seen) = stream(&client(&settings(&server))).await;

    assert_eq!(result.unwrap().text, "Split into single bytes");
    assert_eq!(screen(&seen), "Split into single bytes");
}

#[tokio::test(start_paused = true)]
async fn multibyte_split_across_reads() {
    let text = "先确认预算🤝再谈价格";
    for piece_len in [1, 2, 5] {
        let server = MockLlm::start(vec![
            MockResponse::chat_stream(&["先确认预算🤝", "再谈价格"])
                .in_pieces(piece_len)
                .delay_pieces(Duration::from_millis(1)),
        ])
        .await;

        let (result, seen) = stream(&client(&settings(&server))).await;

        assert_eq!(result.unwrap().text, text, "pieces of {piece_len} bytes");
        assert_eq!(screen(&seen), text, "pieces of {piece_len} bytes");
    }
}

#[tokio::test(start_paused = true)]
async fn crlf_line_endings_and_comments() {
    let body = format!(
        ": keep-alive\r\n\r\n{}{}",
        content_chunk("CRLF ok"),
        finish_chunk("stop")
    )
    .replace("\n\n", "\r\n\r\n");
    let server = MockLlm::start(vec![MockResponse::sse(body).in_pieces(3)]).await;

    let (result, _) = stream(&client(&settings(&server))).await;

    assert_eq!(result.unwrap().text, "CRLF ok");
}

#[tokio::test(start_paused = true)]
async fn no_done_with_finish_reason_completes() {
    let body = format!("{}{}", content_chunk("Complete"), finish_chunk("length"));
    let server = MockLlm::start(vec![MockResponse::sse(body)]).await;

    let (result, _) = stream(&client(&settings(&server))).await;

    let completion = result.unwrap();
    assert_eq!(completion.text, "Complete");
    assert_eq!(completion.finish_reason.as_deref(), Some("length"));
}

#[tokio::test(start_paused = true)]
async fn no_done_without_finish_reason_incomplete() {
    let body = format!("{}{}", content_chunk("Half an "), content_chunk("answer"));
    let server = MockLlm::start(vec![MockResponse::sse(body)]).await;
    let settings = LlmSettings {
        max_retries: 0,
        ..settings(&server)
    };

    let (result, seen) = stream(&client(&settings)).await;

    match result {
        Err(LlmError::Incomplete { partial }) => assert_eq!(partial, "Half an answer"),
        other => panic!("expected Incomplete, got {other:?}"),
    }
    assert_eq!(screen(&seen), "Half an answer");
}

#[tokio::test(start_paused = true)]
async fn error_object_inside_200_stream() {
    let body = format!(
        "{}data: {}\n\n",
        content_chunk("Start"),
        json!({ "error": { "message": "content blocked by policy", "type": "invalid_request_error" } })
    );
    let server = MockLlm::start(vec![MockResponse::sse(body)]).await;

    let (result, _) = stream(&client(&settings(&server))).await;

    match result {
        Err(LlmError::Api(message)) => {
            assert!(message.contains("content blocked by policy"), "{message}")
        }
        other => panic!("expected Api error, got {other:?}"),
    }
    assert_eq!(
        server.request_count(),
        1,
        "a rejected request is not retried"
    );
}

#[tokio::test(start_paused = true)]
async fn early_connection_drop_keeps_partial() {
    let server = MockLlm::start(vec![
        MockResponse::chat_stream(&["Cut ", "here", " never seen"])
            .cut_after_text("here")
            .in_pieces(16),
    ])
    .await;
    let settings = LlmSettings {
        max_retries: 0,
        ..settings(&server)
    };

    let (result, seen) = stream(&client(&settings)).await;

    // The cut falls inside the JSON of the "here" chunk, so only "Cut " was a whole event.
    match result {
        Err(LlmError::Incomplete { partial }) => assert_eq!(partial, "Cut "),
        other => panic!("expected Incomplete, got {other:?}"),
    }
    assert_eq!(screen(&seen), "Cut ");
}

#[tokio::test(start_paused = true)]
async fn rate_limit_retry_after_honoured() {
    let server = MockLlm::start(vec![
        MockResponse::error(429, "Rate limit reached").header("retry-after", "7"),
        MockResponse::chat_stream(&["after the wait"]),
    ])
    .await;
    let started = Instant::now();

    let (result, seen) = stream(&client(&settings(&server))).await;

    assert_eq!(result.unwrap().text, "after the wait");
    assert!(
        started.elapsed() >= Duration::from_secs(7),
        "waited {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(server.request_count(), 2);
    assert_eq!(restarts(&seen), 0);
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_max_delay_not_retried() {
    let server = MockLlm::start(vec![
        MockResponse::error(429, "quota").header("retry-after", "3600"),
        MockResponse::chat_stream(&["unused"]),
    ])
    .await;

    let (result, _) = stream(&client(&settings(&server))).await;

    assert!(
        matches!(result, Err(LlmError::Http { status: 429, .. })),
        "{result:?}"
    );
    assert_eq!(server.request_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn server_error_then_success_no_duplicate() {
    let server = MockLlm::start(vec![
        MockResponse::error(500, "internal error"),
        MockResponse::error(503, "overloaded"),
        MockResponse::chat_stream(&["One ", "answer"]),
    ])
    .await;

    let (result, seen) = stream(&client(&settings(&server))).await;

    assert_eq!(result.unwrap().text, "One answer");
    assert_eq!(
        seen,
        vec![Seen::Delta("One ".into()), Seen::Delta("answer".into())]
    );
    assert_eq!(server.request_count(), 3);
}

#[tokio::test(start_paused = true)]
async fn mid_stream_failure_restarts_cleanly() {
    let server = MockLlm::start(vec![
        MockResponse::chat_stream(&["Draft ", "text", " lost"])
            .cut_after_event_containing("\"text\""),
        MockResponse::chat_stream(&["Final ", "answer"]).in_pieces(5),
    ])
    .await;

    let (result, seen) = stream(&client(&settings(&server))).await;

    let completion = result.unwrap();
    assert_eq!(completion.text, "Final answer");
    assert_eq!(restarts(&seen), 1);
    let restart_at = seen
        .iter()
        .position(|event| *event == Seen::Restart)
        .unwrap();
    assert_eq!(screen(&seen[..restart_at]), "Draft text");
    assert_eq!(screen(&seen), "Final answer");
    assert_eq!(server.request_count(), 2);
}

#[tokio::test(start_paused = true)]
async fn unauthorized_not_retried() {
    let server = MockLlm::start(vec![
        MockResponse::error(401, "Incorrect API key provided"),
        MockResponse::chat_stream(&["unused"]),
    ])
    .await;

    let (result, _) = stream(&client(&settings(&server))).await;

    let error = result.unwrap_err();
    assert!(
        matches!(error, LlmError::Http { status: 401, .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "LLM API returned 401 Unauthorized (Incorrect API key provided): check llm.api_key"
    );
    assert_eq!(server.request_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn retries_exhausted_then_fallback() {
    let primary = MockLlm::start(vec![
        MockResponse::chat_stream(&["Primary ", "partial"]).cut_after_text("partial"),
        MockResponse::error(502, "bad gateway"),
    ])
    .await;
    let fallback = MockLlm::start(vec![MockResponse::chat_stream(&["From ", "fallback"])]).await;
    let settings = LlmSettings {
        max_retries: 1,
        fallback: Some(Box::new(LlmSettings {
            name: Some("local-ollama".to_string()),
            base_url: Some(format!("http://{}", fallback.address())),
            model: Some("qwen3:8b".to_string()),
            ..LlmSettings::default()
        })),
        ..settings(&primary)
    };

    let (result, seen) = stream(&client(&settings)).await;

    let completion = result.unwrap();
    assert_eq!(completion.text, "From fallback");
    assert_eq!(completion.provider, "local-ollama");
    assert_eq!(completion.model, "qwen3:8b");
    assert_eq!(primary.request_count(), 2);
    assert_eq!(fallback.request_count(), 1);
    assert_eq!(screen(&seen), "From fallback");
    assert_eq!(
        restarts(&seen),
        1,
        "the primary's partial text is dropped once"
    );
    let fallback_request = &fallback.requests()[0];
    assert_eq!(fallback_request.path, "/v1/chat/completions");
    assert_eq!(
        fallback_request.header("authorization"),
        None,
        "no key configured for the fallback"
    );
}

#[tokio::test(start_paused = true)]
async fn both_providers_fail_returns_error() {
    let primary = MockLlm::start(vec![MockResponse::error(500, "down")]).await;
    let fallback = MockLlm::start(vec![MockResponse::error(503, "also down")]).await;
    let settings = LlmSettings {
        max_retries: 0,
        fallback: Some(Box::new(LlmSettings {
            max_retries: 0,
            ..settings(&fallback)
        })),
        ..settings(&primary)
    };

    let (result, _) = stream(&client(&settings)).await;

    assert!(
        matches!(result, Err(LlmError::Http { status: 503, .. })),
        "{result:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn first_token_timeout() {
    let server = MockLlm::start(vec![
        MockResponse::chat_stream(&["late"]).delay_headers(Duration::from_secs(30)),
    ])
    .await;
    let settings = LlmSettings {
        max_retries: 0,
        first_token_timeout_secs: 5.0,
        ..settings(&server)
    };
    let started = Instant::now();

    let (result, _) = stream(&client(&settings)).await;

    assert!(
        matches!(result, Err(LlmError::Timeout(TimeoutKind::FirstToken))),
        "{result:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(6),
        "waited {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn keep_alive_not_first_token() {
    let body = format!(
        "{}{}{}",
        ": keep-alive\n\n".repeat(20),
        content_chunk("late"),
        finish_chunk("stop")
    );
    let server = MockLlm::start(vec![
        MockResponse::sse(body)
            .in_pieces(14)
            .delay_pieces(Duration::from_secs(1)),
    ])
    .await;
    let settings = LlmSettings {
        max_retries: 0,
        first_token_timeout_secs: 5.0,
        ..settings(&server)
    };

    let (result, _) = stream(&client(&settings)).await;

    assert!(
        matches!(result, Err(LlmError::Timeout(TimeoutKind::FirstToken))),
        "{result:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn first_token_timeout_retried_then_success() {
    let server = MockLlm::start(vec![
        MockResponse::chat_stream(&["late"]).delay_headers(Duration::from_secs(30)),
        MockResponse::chat_stream(&["on time"]),
    ])
    .await;
    let settings = LlmSettings {
        first_token_timeout_secs: 5.0,
        ..settings(&server)
    };

    let (result, _) = stream(&client(&settings)).await;

    assert_eq!(result.unwrap().text, "on time");
    assert_eq!(server.request_count(), 2);
}

#[tokio::test(start_paused = true)]
async fn total_timeout_while_streaming() {
    let pieces: Vec<String> = (0..20).map(|index| format!("part{index} ")).collect();
    let pieces: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let server = MockLlm::start(vec![
        MockResponse::chat_stream(&pieces)
            .in_pieces(64)
            .delay_pieces(Duration::from_secs(1)),
    ])
    .await;
    let settings = LlmSettings {
        first_token_timeout_secs: 5.0,
        total_timeout_secs: 8.0,
        ..settings(&server)
    };
    let started = Instant::now();

    let (result, seen) = stream(&client(&settings)).await;

    assert!(
        matches!(result, Err(LlmError::Timeout(TimeoutKind::Total))),
        "{result:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(8) && waited < Duration::from_secs(9),
        "waited {waited:?}"
    );
    assert_eq!(server.request_count(), 1, "no retry after the deadline");
    assert!(screen(&seen).starts_with("part0 "));
}

#[tokio::test(start_paused = true)]
async fn stalled_stream_hits_total_timeout() {
    let server = MockLlm::start(vec![
        MockResponse::sse(content_chunk("stuck")).stall_at_end(),
    ])
    .await;
    let settings = LlmSettings {
        total_timeout_secs: 3.0,
        ..settings(&server)
    };

    let (result, _) = stream(&client(&settings)).await;

    assert!(
        matches!(result, Err(LlmError::Timeout(TimeoutKind::Total))),
        "{result:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn stall_after_finish_completes() {
    let body = format!("{}{}", content_chunk("Done"), finish_chunk("stop"));
    let server = MockLlm::start(vec![MockResponse::sse(body).stall_at_end()]).await;
    let started = Instant::now();

    let (result, _) = stream(&client(&settings(&server))).await;

    assert_eq!(result.unwrap().text, "Done");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn reasoning_never_shown() {
    let body = [
        reasoning_chunk("The user wants a discount; "),
        reasoning_chunk("I should refuse."),
        content_chunk("<thi"),
        content_chunk("nk>private plan</th"),
        content_chunk("ink>\n\n"),
        content_chunk("Hold the price, "),
        chunk(
            json!({ "reasoning": "Ollama style", "content": "add value." }),
            None,
        ),
        finish_chunk("stop"),
        DONE.to_string(),
    ]
    .concat();
    let server = MockLlm::start(vec![MockResponse::sse(body).in_pieces(9)]).await;

    let (result, seen) = stream(&client(&settings(&server))).await;

    let completion = result.unwrap();
    assert_eq!(completion.text, "Hold the price, add value.");
    assert_eq!(screen(&seen), "Hold the price, add value.");
    for event in &seen {
        if let Seen::Delta(text) = event {
            assert!(
                !text.contains("think") && !text.contains("plan") && !text.contains("refuse"),
                "leaked {text:?}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn usage_and_latency_recorded() {
    let body = format!(
        "{}{}{}{}",
        content_chunk("Counted"),
        finish_chunk("stop"),
        usage_chunk(42, 9),
        DONE
    );
    let server = MockLlm::start(vec![
        MockResponse::sse(body)
            .delay_headers(Duration::from_millis(300))
            .in_pieces(40)
            .delay_pieces(Duration::from_millis(100)),
    ])
    .await;

    let (result, _) = stream(&client(&settings(&server))).await;

    let completion = result.unwrap();
    assert_eq!(completion.prompt_tokens, Some(42));
    assert_eq!(completion.completion_tokens, Some(9));
    let first_token_ms = completion.first_token_ms.unwrap();
    assert!(
        (300..2000).contains(&first_token_ms),
        "first token after {first_token_ms} ms"
    );
    assert!(
        completion.total_ms > first_token_ms,
        "total {} ms",
        completion.total_ms
    );
}

#[tokio::test(start_paused = true)]
async fn stream_options_rejected_then_dropped() {
    let server = MockLlm::start(vec![
        MockResponse::error(
            400,
            "Unrecognized request argument supplied: stream_options",
        ),
        MockResponse::chat_stream(&["works"]),
        MockResponse::chat_stream(&["again"]),
    ])
    .await;
    let client = client(&LlmSettings {
        max_retries: 0,
        ..settings(&server)
    });

    let first = client.chat(&request()).await.unwrap();
    let second = client.chat(&request()).await.unwrap();

    assert_eq!(first.text, "works");
    assert_eq!(second.text, "again");
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests[0].json.get("stream_options").is_some());
    assert!(requests[1].json.get("stream_options").is_none());
    assert!(requests[2].json.get("stream_options").is_none());
}

#[tokio::test(start_paused = true)]
async fn plain_json_answer_accepted() {
    let answer = json!({
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": "Not streamed" }, "finish_reason": "stop" }],
        "usage": { "prompt_tokens": 5, "completion_tokens": 2 },
    });
    let server = MockLlm::start(vec![MockResponse::json(200, answer)]).await;

    let (result, seen) = stream(&client(&settings(&server))).await;

    let completion = result.unwrap();
    assert_eq!(completion.text, "Not streamed");
    assert_eq!(completion.prompt_tokens, Some(5));
    assert_eq!(seen, vec![Seen::Delta("Not streamed".into())]);
}

#[tokio::test(start_paused = true)]
async fn connection_refused_is_transport_error() {
    let address = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let settings = LlmSettings {
        base_url: Some(format!("http://{address}")),
        model: Some("test-model".to_string()),
        max_retries: 1,
        retry_base_delay_ms: 10,
        ..LlmSettings::default()
    };

    let (result, _) = stream(&client(&settings)).await;

    let error = result.unwrap_err();
    assert!(matches!(error, LlmError::Transport(_)), "{error:?}");
    assert!(error.to_string().contains("check llm.base_url"), "{error}");
}

#[test]
fn unconfigured_settings_give_no_client() {
    assert!(LlmClient::new(&LlmSettings::default()).unwrap().is_none());
}

#[test]
fn chat_stream_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let client = LlmClient::new(&LlmSettings {
        base_url: Some("http://127.0.0.1:9".to_string()),
        model: Some("m".to_string()),
        ..LlmSettings::default()
    })
    .unwrap()
    .unwrap();
    let request = request();
    let mut on_event = |_: StreamEvent<'_>| {};

    let future = client.chat_stream(&request, &mut on_event);

    assert_send(&future);
}
