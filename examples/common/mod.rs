//! Parts shared by the load tools: a streaming mock LLM on 127.0.0.1, the
//! daemon's settings for a run in a temporary folder, percentiles and peak RSS.

#![allow(dead_code)]

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use axum::routing::post;
use maxwin_coach::config::Settings;
use maxwin_coach::corpus::{Corpus, DocKind};
use maxwin_coach::llm::LlmSettings;
use maxwin_coach::server::{RateLimitSettings, ServerSettings};
use serde_json::json;

/// The questions the load tools send, in turn: Chinese and English sales situations.
pub const QUESTIONS: [&str; 6] = [
    "客户说我们的报价比竞争对手贵了百分之二十，我该怎么回应？",
    "The client says our quote is too expensive compared with the competitor. What do I say?",
    "采购一直拖着不签合同，说要再比较几家供应商，怎么推进？",
    "How do I get a meeting with the decision maker when my contact keeps blocking me?",
    "老客户突然说今年预算砍了一半，订单可能要减少，怎么办？",
    "The prospect went silent after our demo last week. How should I follow up?",
];

/// The number of content pieces the mock LLM streams per answer.
const LLM_PIECES: usize = 20;

/// Returns the project folder, which contains `corpus/`.
pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Returns the body of the first Q&A card in the corpus: the mock LLM streams it
/// as its answer, so the coach parses a card of realistic size and shape.
pub fn sample_card(corpus_dir: &Path) -> String {
    let (corpus, _warnings) = Corpus::load_dir(corpus_dir).expect("the corpus loads");
    corpus
        .documents
        .iter()
        .find(|doc| doc.kind == DocKind::QaCard)
        .map(|doc| doc.body.clone())
        .expect("the corpus has a Q&A card")
}

/// Starts an OpenAI-compatible mock on 127.0.0.1 that streams `card` in
/// `LLM_PIECES` pieces spread evenly over `duration`, and returns its base URL.
pub async fn start_mock_llm(card: String, duration: Duration) -> String {
    let pieces: Vec<String> = split_chars(&card, LLM_PIECES);
    let pause = duration / LLM_PIECES as u32;
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move || {
            let pieces = pieces.clone();
            async move { stream_answer(pieces, pause) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0 for the mock LLM");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .expect("mock LLM server failed");
    });
    format!("http://{address}/v1")
}

fn stream_answer(pieces: Vec<String>, pause: Duration) -> Response {
    let mut frames = vec![sse_chunk(json!({"role": "assistant", "content": ""}), None)];
    frames.extend(
        pieces
            .iter()
            .map(|piece| sse_chunk(json!({ "content": piece }), None)),
    );
    frames.push(sse_chunk(json!({}), Some("stop")));
    frames.push("data: [DONE]\n\n".to_string());

    // The role chunk goes out at once, and each content piece after a pause.
    let stream = futures::stream::unfold(
        (frames.into_iter(), 0usize),
        move |(mut frames, sent)| async move {
            let frame = frames.next()?;
            if sent > 0 && sent <= LLM_PIECES {
                tokio::time::sleep(pause).await;
            }
            Some((
                Ok::<Bytes, Infallible>(Bytes::from(frame)),
                (frames, sent + 1),
            ))
        },
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .expect("static response parts are valid")
}

fn sse_chunk(delta: serde_json::Value, finish_reason: Option<&str>) -> String {
    let data = json!({
        "id": "chatcmpl-load",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "mock-model",
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish_reason }],
    });
    format!("data: {data}\n\n")
}

/// Splits `text` into `count` pieces of about equal length, at character boundaries.
fn split_chars(text: &str, count: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(count).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// Builds settings for a daemon that keeps its index and SQLite database in
/// `work_dir`, uses the LLM at `llm_url` (none when `None`) and has no per-user
/// rate limit, so the load is not throttled.
pub fn daemon_settings(work_dir: &Path, llm_url: Option<String>) -> Settings {
    let mut settings = Settings {
        corpus_dir: project_dir().join("corpus"),
        index_dir: work_dir.join("index"),
        database_url: format!("sqlite://{}", work_dir.join("bench.db").display()),
        ..Settings::default()
    };
    if let Some(url) = llm_url {
        settings.llm = LlmSettings {
            base_url: Some(url),
            model: Some("mock-model".to_string()),
            ..LlmSettings::default()
        };
    }
    settings.server = ServerSettings {
        bind: "127.0.0.1:0".parse().expect("valid address"),
        shutdown_grace_secs: 10,
        ..ServerSettings::default()
    };
    settings.server.router.rate_limit = RateLimitSettings {
        per_minute: 0,
        burst: 0,
    };
    settings
}

/// Returns the `p`-th percentile (0–100) of sorted values by the nearest-rank method.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Formats a duration in milliseconds with one decimal.
pub fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

/// Reads a `kB` field such as `VmHWM` (peak resident set size) from /proc/self/status.
pub fn proc_status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}
