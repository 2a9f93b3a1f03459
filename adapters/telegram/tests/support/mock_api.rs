//! A loopback Bot API server for tests: answers the methods the adapter calls in
//! the Bot API's JSON shapes, records every call, and fails calls on request.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::Notify;

pub const BOT_ID: i64 = 777_000;
pub const BOT_USERNAME: &str = "CoachBot";
pub const TOKEN: &str = "777000:TEST-TOKEN";

/// The exact description teloxide maps to `ApiError::MessageNotModified`.
pub const NOT_MODIFIED: &str = "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message";

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub body: Value,
    pub at: Instant,
}

/// A failure that the next call of a method receives.
#[derive(Debug, Clone)]
pub enum Failure {
    RetryAfter(u32),
    BadRequest(String),
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    updates: VecDeque<Value>,
    failures: HashMap<String, VecDeque<Failure>>,
    next_message_id: i64,
}

#[derive(Clone)]
pub struct MockApi {
    inner: Arc<Mutex<Inner>>,
    update_ready: Arc<Notify>,
    call_made: Arc<Notify>,
    pub addr: SocketAddr,
}

impl MockApi {
    pub async fn start() -> MockApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mock = MockApi {
            inner: Arc::new(Mutex::new(Inner {
                next_message_id: 500,
                ..Inner::default()
            })),
            update_ready: Arc::new(Notify::new()),
            call_made: Arc::new(Notify::new()),
            addr,
        };
        let app = Router::new()
            .route("/{bot}/{method}", post(answer))
            .with_state(mock.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        mock
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn push_update(&self, update: Value) {
        self.inner.lock().unwrap().updates.push_back(update);
        self.update_ready.notify_waiters();
    }

    pub fn fail_next(&self, method: &str, failure: Failure) {
        self.inner
            .lock()
            .unwrap()
            .failures
            .entry(method.to_string())
            .or_default()
            .push_back(failure);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// Returns the recorded calls of the given methods, in order.
    pub fn calls_of(&self, methods: &[&str]) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|call| methods.contains(&call.method.as_str()))
            .collect()
    }

    /// Waits until a call of `method` has been recorded `count` times.
    pub async fn wait_for(&self, method: &str, count: usize) {
        let wait = async {
            loop {
                let notified = self.call_made.notified();
                if self.calls_of(&[method]).len() >= count {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("no {count} calls of {method}; calls: {:?}", self.calls()));
    }

    fn record(&self, method: &str, body: Value) -> Option<Failure> {
        let mut inner = self.inner.lock().unwrap();
        inner.calls.push(Call {
            method: method.to_string(),
            body,
            at: Instant::now(),
        });
        let failure = inner.failures.get_mut(method).and_then(VecDeque::pop_front);
        drop(inner);
        self.call_made.notify_waiters();
        failure
    }

    fn next_message_id(&self) -> i64 {
        let mut inner = self.inner.lock().unwrap();
        inner.next_message_id += 1;
        inner.next_message_id
    }

    async fn take_updates(&self, timeout_secs: u64) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout_secs);
        loop {
            let notified = self.update_ready.notified();
            {
                let mut inner = self.inner.lock().unwrap();
                if !inner.updates.is_empty() {
                    return inner.updates.drain(..).collect();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Vec::new();
            }
        }
    }
}

async fn answer(
    State(mock): State<MockApi>,
    Path((bot, method)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    assert_eq!(
        bot,
        format!("bot{TOKEN}"),
        "request carried the wrong token"
    );
    // Bot API method names are case-insensitive and teloxide capitalises them
    // (`SendMessage`); record them in the documented spelling (`sendMessage`).
    let mut chars = method.chars();
    let method: String = chars
        .next()
        .map(|first| first.to_ascii_lowercase())
        .into_iter()
        .chain(chars)
        .collect();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Some(failure) = mock.record(&method, body.clone()) {
        return match failure {
            Failure::RetryAfter(secs) => (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({
                    "ok": false,
                    "error_code": 429,
                    "description": format!("Too Many Requests: retry after {secs}"),
                    "parameters": {"retry_after": secs}
                })),
            ),
            Failure::BadRequest(description) => (
                StatusCode::BAD_REQUEST,
                Json(json!({"ok": false, "error_code": 400, "description": description})),
            ),
        };
    }

    let result = match method.as_str() {
        "getMe" => json!({
            "id": BOT_ID, "is_bot": true, "first_name": "Coach", "username": BOT_USERNAME,
            "can_join_groups": true, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "can_connect_to_business": false,
            "has_main_web_app": false
        }),
        "getUpdates" => {
            let timeout = body["timeout"].as_u64().unwrap_or(0);
            Value::Array(mock.take_updates(timeout).await)
        }
        "sendMessage" => {
            let id = mock.next_message_id();
            sent_message(&body, id)
        }
        "editMessageText" => {
            let id = as_i64(&body["message_id"]);
            sent_message(&body, id)
        }
        "sendChatAction" | "answerCallbackQuery" | "setWebhook" | "deleteWebhook" => json!(true),
        other => panic!("the mock does not implement {other}"),
    };
    (StatusCode::OK, Json(json!({"ok": true, "result": result})))
}

fn sent_message(body: &Value, id: i64) -> Value {
    let chat_id = as_i64(&body["chat_id"]);
    let mut message = json!({
        "message_id": id,
        "date": 1_700_000_000,
        "chat": chat_json(chat_id),
        "from": {"id": BOT_ID, "is_bot": true, "first_name": "Coach", "username": BOT_USERNAME},
        "text": body["text"].as_str().unwrap_or_default(),
    });
    if let Some(markup) = body.get("reply_markup") {
        message["reply_markup"] = markup.clone();
    }
    message
}

/// Reads an id that teloxide may send as a JSON number or string.
fn as_i64(value: &Value) -> i64 {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not an id: {value}"))
}

/// Builds a chat object: positive ids are private chats, negative ids supergroups.
pub fn chat_json(chat_id: i64) -> Value {
    if chat_id > 0 {
        json!({"id": chat_id, "type": "private", "first_name": "Li", "last_name": "Lei"})
    } else {
        json!({"id": chat_id, "type": "supergroup", "title": "Deals", "is_forum": true})
    }
}

/// Builds a user object for a human sender.
pub fn user_json(user_id: i64) -> Value {
    json!({"id": user_id, "is_bot": false, "first_name": "Li", "last_name": "Lei", "username": "lilei"})
}

/// Builds a text message update; `entities` are Bot API entity objects.
pub fn message_update(
    update_id: i64,
    chat_id: i64,
    message_id: i64,
    text: &str,
    entities: Value,
) -> Value {
    json!({
        "update_id": update_id,
        "message": {
            "message_id": message_id,
            "date": 1_700_000_000,
            "chat": chat_json(chat_id),
            "from": user_json(42),
            "text": text,
            "entities": entities,
        }
    })
}

/// Returns the length of `text` in UTF-16 code units, the unit of entity offsets.
pub fn utf16_len(text: &str) -> i64 {
    text.encode_utf16().count() as i64
}
