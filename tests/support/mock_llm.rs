//! Scripted OpenAI-compatible server on 127.0.0.1 for tests.
//!
//! Each request gets the next scripted [`MockResponse`]: a status, headers and
//! a body sent in pieces, with optional delays (tokio time, so paused-time
//! tests run instantly), an abrupt connection drop or a stall. Every request
//! is recorded for assertions. When the script is used up the server returns
//! 500 with the body `mock_llm: no scripted response left`.
//!
//! ```ignore
//! let server = MockLlm::start(vec![MockResponse::chat_stream(&["Hel", "lo"])]).await;
//! let settings = LlmSettings { base_url: Some(server.base_url()), .. };
//! ```
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

/// A running mock server. It stops when dropped.
pub struct MockLlm {
    address: SocketAddr,
    state: Arc<Mutex<MockState>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct MockState {
    script: VecDeque<MockResponse>,
    requests: Vec<RecordedRequest>,
}

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    /// Body parsed as JSON, or `Value::Null` when it is not JSON.
    pub json: Value,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// Scripted answer to one request.
#[derive(Debug, Clone)]
pub struct MockResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    piece_len: Option<usize>,
    header_delay: Duration,
    piece_delay: Duration,
    cut_after: Option<usize>,
    stall_at_end: bool,
}

impl MockResponse {
    /// 200 response with `content-type: text/event-stream` and this exact body.
    pub fn sse(body: impl Into<String>) -> Self {
        MockResponse {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: body.into().into_bytes(),
            piece_len: None,
            header_delay: Duration::ZERO,
            piece_delay: Duration::ZERO,
            cut_after: None,
            stall_at_end: false,
        }
    }

    /// Builds a well-formed streamed answer: a role chunk, one content chunk per
    /// piece, a `stop` chunk, a usage chunk (7 prompt, 3 completion tokens)
    /// and `[DONE]`.
    pub fn chat_stream(pieces: &[&str]) -> Self {
        let mut body = chunk(json!({ "role": "assistant", "content": "" }), None);
        for piece in pieces {
            body.push_str(&content_chunk(piece));
        }
        body.push_str(&finish_chunk("stop"));
        body.push_str(&usage_chunk(7, 3));
        body.push_str(DONE);
        Self::sse(body)
    }

    /// Response with `content-type: application/json`.
    pub fn json(status: u16, value: Value) -> Self {
        MockResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
            ..Self::sse("")
        }
    }

    /// Error response with an OpenAI-style `{"error": {"message": …}}` body.
    pub fn error(status: u16, message: &str) -> Self {
        Self::json(
            status,
            json!({ "error": { "message": message, "type": "test_error" } }),
        )
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sends the body in pieces of `len` bytes, each its own write.
    pub fn in_pieces(mut self, len: usize) -> Self {
        self.piece_len = Some(len.max(1));
        self
    }

    /// Waits before sending the status line and headers.
    pub fn delay_headers(mut self, delay: Duration) -> Self {
        self.header_delay = delay;
        self
    }

    /// Waits before each body piece.
    pub fn delay_pieces(mut self, delay: Duration) -> Self {
        self.piece_delay = delay;
        self
    }

    /// Drops the connection abruptly after `bytes` body bytes.
    pub fn cut_after(mut self, bytes: usize) -> Self {
        self.cut_after = Some(bytes);
        self
    }

    /// Drops the connection abruptly right after the text `marker` in the body.
    pub fn cut_after_text(self, marker: &str) -> Self {
        let body = String::from_utf8_lossy(&self.body).into_owned();
        let position = body.find(marker).expect("marker is in the body") + marker.len();
        self.cut_after(position)
    }

    /// Drops the connection abruptly after the whole SSE event that contains
    /// `marker`, so that event is delivered and the next one is not.
    pub fn cut_after_event_containing(self, marker: &str) -> Self {
        let body = String::from_utf8_lossy(&self.body).into_owned();
        let start = body.find(marker).expect("marker is in the body");
        let end = body[start..]
            .find("\n\n")
            .expect("event ends with a blank line")
            + start
            + 2;
        self.cut_after(end)
    }

    /// Keeps the connection open after the body without ending the response.
    pub fn stall_at_end(mut self) -> Self {
        self.stall_at_end = true;
        self
    }

    fn pieces(&self) -> Vec<Bytes> {
        let end = self
            .cut_after
            .unwrap_or(self.body.len())
            .min(self.body.len());
        let body = &self.body[..end];
        match self.piece_len {
            Some(len) => body.chunks(len).map(Bytes::copy_from_slice).collect(),
            None => vec![Bytes::copy_from_slice(body)],
        }
    }
}

/// The `[DONE]` sentinel frame.
pub const DONE: &str = "data: [DONE]\n\n";

/// Formats an SSE frame with a `chat.completion.chunk` carrying `delta`.
pub fn chunk(delta: Value, finish_reason: Option<&str>) -> String {
    let data = json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "mock-model",
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish_reason }],
    });
    format!("data: {data}\n\n")
}

pub fn content_chunk(text: &str) -> String {
    chunk(json!({ "content": text }), None)
}

pub fn reasoning_chunk(text: &str) -> String {
    chunk(json!({ "reasoning_content": text }), None)
}

pub fn finish_chunk(reason: &str) -> String {
    chunk(json!({}), Some(reason))
}

/// Formats the final usage chunk that `stream_options.include_usage` requests.
pub fn usage_chunk(prompt_tokens: u32, completion_tokens: u32) -> String {
    let data = json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    });
    format!("data: {data}\n\n")
}

/// Builds an `/embeddings` response body. `vectors` are listed in reverse order
/// (with correct `index` fields) to check that clients sort by index.
pub fn embeddings_body(vectors: &[Vec<f32>]) -> Value {
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .rev()
        .map(
            |(index, vector)| json!({ "object": "embedding", "index": index, "embedding": vector }),
        )
        .collect();
    json!({ "object": "list", "data": data, "model": "mock-embed", "usage": { "prompt_tokens": 1, "total_tokens": 1 } })
}

impl MockLlm {
    /// Starts the server on 127.0.0.1 with an OS-assigned port.
    pub async fn start(script: Vec<MockResponse>) -> MockLlm {
        let state = Arc::new(Mutex::new(MockState {
            script: script.into(),
            requests: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("local address");
        let app = Router::new().fallback(respond).with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("mock LLM server failed");
        });
        MockLlm {
            address,
            state,
            task,
        }
    }

    /// Base URL with the `/v1` path, as a provider would document it.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Appends a response to the script.
    pub fn push(&self, response: MockResponse) {
        self.state.lock().unwrap().script.push_back(response);
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }

    /// Scripted responses not yet used.
    pub fn remaining(&self) -> usize {
        self.state.lock().unwrap().script.len()
    }
}

impl Drop for MockLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn respond(
    State(state): State<Arc<Mutex<MockState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let scripted = {
        let mut state = state.lock().unwrap();
        state.requests.push(RecordedRequest {
            method,
            path: uri.path().to_string(),
            headers,
            json: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        state.script.pop_front()
    };
    let Some(scripted) = scripted else {
        return Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::from("mock_llm: no scripted response left"))
            .unwrap();
    };

    tokio::time::sleep(scripted.header_delay).await;

    let pieces = scripted.pieces();
    let piece_delay = scripted.piece_delay;
    let cut = scripted.cut_after.is_some();
    let stall = scripted.stall_at_end;
    let body_stream = futures::stream::unfold(
        (pieces.into_iter(), false),
        move |(mut pieces, finished)| async move {
            if finished {
                return None;
            }
            if let Some(piece) = pieces.next() {
                tokio::time::sleep(piece_delay).await;
                return Some((Ok::<Bytes, std::io::Error>(piece), (pieces, false)));
            }
            if stall {
                std::future::pending::<()>().await;
            }
            if cut {
                // Hyper drops unflushed body bytes when the body stream fails, so
                // wait once to let the pieces reach the socket before the error.
                tokio::time::sleep(Duration::from_millis(1)).await;
                // An error from the body stream makes hyper close the connection without the final chunk.
                return Some((
                    Err(std::io::Error::other("mock_llm: connection cut")),
                    (pieces, true),
                ));
            }
            None
        },
    );

    let mut response = Response::builder().status(scripted.status);
    for (name, value) in &scripted.headers {
        response = response.header(name, value);
    }
    response.body(Body::from_stream(body_stream)).unwrap()
}
