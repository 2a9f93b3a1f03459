//! Test doubles: a mock WeCom API on 127.0.0.1 and a recording handler.

#![allow(dead_code)]

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use maxwin_channel::{
    Accepted, Feedback, Handler, HandlerError, Inbound, Lang, Reply, ReplyKind, ReplySink,
};

/// One request the mock API received.
#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    pub query: std::collections::HashMap<String, String>,
    pub body: Value,
}

#[derive(Default)]
pub struct MockState {
    pub calls: Mutex<Vec<Call>>,
    /// Errcodes returned by the next `message/send` calls, in order (0 = success).
    pub send_errcodes: Mutex<VecDeque<i64>>,
    /// Errcodes returned by the next `gettoken` calls.
    pub token_errcodes: Mutex<VecDeque<i64>>,
    pub token_counter: Mutex<u32>,
    pub token_expires_in: Mutex<u64>,
    /// Delay before `gettoken` answers, so concurrent callers overlap.
    pub token_delay: Mutex<Duration>,
    /// Tokens that `message/send` reports as expired (42001).
    pub expired_tokens: Mutex<HashSet<String>>,
}

impl MockState {
    pub fn calls_to(&self, path: &str) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|call| call.path == path)
            .cloned()
            .collect()
    }

    fn record(&self, path: &str, query: std::collections::HashMap<String, String>, body: Value) {
        self.calls.lock().unwrap().push(Call {
            path: path.to_string(),
            query,
            body,
        });
    }
}

type Params = Query<std::collections::HashMap<String, String>>;

async fn gettoken(State(state): State<Arc<MockState>>, Query(query): Params) -> Json<Value> {
    state.record("/cgi-bin/gettoken", query, Value::Null);
    let delay = *state.token_delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(code) = state.token_errcodes.lock().unwrap().pop_front()
        && code != 0
    {
        return Json(json!({"errcode": code, "errmsg": "mock error"}));
    }
    let number = {
        let mut counter = state.token_counter.lock().unwrap();
        *counter += 1;
        *counter
    };
    let expires_in = match *state.token_expires_in.lock().unwrap() {
        0 => 7200,
        value => value,
    };
    Json(
        json!({"errcode": 0, "errmsg": "ok", "access_token": format!("token-{number}"), "expires_in": expires_in}),
    )
}

async fn message_send(
    State(state): State<Arc<MockState>>,
    Query(query): Params,
    Json(body): Json<Value>,
) -> Json<Value> {
    let token = query.get("access_token").cloned().unwrap_or_default();
    state.record("/cgi-bin/message/send", query, body);
    if state.expired_tokens.lock().unwrap().contains(&token) {
        return Json(json!({"errcode": 42001, "errmsg": "access_token expired"}));
    }
    if let Some(code) = state.send_errcodes.lock().unwrap().pop_front()
        && code != 0
    {
        return Json(json!({"errcode": code, "errmsg": "mock error"}));
    }
    let count = state.calls_to("/cgi-bin/message/send").len();
    Json(json!({"errcode": 0, "errmsg": "ok", "invaliduser": "", "msgid": format!("msg-{count}")}))
}

async fn webhook_send(
    State(state): State<Arc<MockState>>,
    Query(query): Params,
    Json(body): Json<Value>,
) -> Json<Value> {
    state.record("/cgi-bin/webhook/send", query, body);
    Json(json!({"errcode": 0, "errmsg": "ok"}))
}

async fn aibot_response(
    State(state): State<Arc<MockState>>,
    Query(query): Params,
    Json(body): Json<Value>,
) -> Json<Value> {
    state.record("/cgi-bin/aibot/response", query, body);
    Json(json!({"errcode": 0, "errmsg": "ok"}))
}

/// Starts the mock API on 127.0.0.1 and returns its base URL.
pub async fn start_mock_api() -> (String, Arc<MockState>) {
    let state = Arc::new(MockState::default());
    let app = Router::new()
        .route("/cgi-bin/gettoken", get(gettoken))
        .route("/cgi-bin/message/send", post(message_send))
        .route("/cgi-bin/webhook/send", post(webhook_send))
        .route("/cgi-bin/aibot/response", post(aibot_response))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{address}"), state)
}

/// What the recording handler answers with.
#[derive(Clone)]
pub enum Answer {
    Text(String),
    Card(Box<maxwin_channel::Card>),
    /// Progress steps (cumulative texts), then the final text.
    Streamed(Vec<String>, String),
}

/// The outcome of one `finish`: the delivered message ids or the error text.
pub type FinishResult = Result<Vec<String>, String>;

/// A handler that dedupes like the core (by dedupe key), records every accept and
/// answers each new message after `delay`.
pub struct RecordingHandler {
    pub accepted: Mutex<Vec<Inbound>>,
    pub feedback: Mutex<Vec<Feedback>>,
    seen: Mutex<HashSet<String>>,
    pub delay: Duration,
    pub answer: Answer,
    pub finished: Arc<tokio::sync::Notify>,
    pub results: Arc<Mutex<Vec<FinishResult>>>,
}

impl RecordingHandler {
    pub fn new(delay: Duration, answer: Answer) -> Arc<Self> {
        Arc::new(RecordingHandler {
            accepted: Mutex::new(Vec::new()),
            feedback: Mutex::new(Vec::new()),
            seen: Mutex::new(HashSet::new()),
            delay,
            answer,
            finished: Arc::new(tokio::sync::Notify::new()),
            results: Arc::new(Mutex::new(Vec::new())),
        })
    }
}

#[async_trait]
impl Handler for RecordingHandler {
    async fn accept(
        &self,
        message: Inbound,
        mut sink: Box<dyn ReplySink>,
    ) -> Result<Accepted, HandlerError> {
        self.accepted.lock().unwrap().push(message.clone());
        if !self.seen.lock().unwrap().insert(message.dedupe_key()) {
            return Ok(Accepted::Duplicate);
        }
        let delay = self.delay;
        let answer = self.answer.clone();
        let results = self.results.clone();
        let finished = self.finished.clone();
        tokio::spawn(async move {
            let _ = sink.start().await;
            let reply = match answer {
                Answer::Text(text) => text_reply(text),
                Answer::Card(card) => Reply::Card(*card),
                Answer::Streamed(steps, last) => {
                    let pause = delay / (steps.len() as u32 + 1);
                    for step in steps {
                        tokio::time::sleep(pause).await;
                        let _ = sink.progress(&step).await;
                    }
                    text_reply(last)
                }
            };
            tokio::time::sleep(delay).await;
            let result = sink
                .finish(&reply)
                .await
                .map(|delivered| delivered.message_ids)
                .map_err(|error| error.to_string());
            results.lock().unwrap().push(result);
            finished.notify_one();
        });
        Ok(Accepted::Queued)
    }

    async fn feedback(&self, feedback: Feedback) -> Result<(), HandlerError> {
        self.feedback.lock().unwrap().push(feedback);
        Ok(())
    }
}

pub fn text_reply(text: String) -> Reply {
    Reply::Text {
        kind: ReplyKind::Command,
        lang: Lang::Zh,
        text,
    }
}
