//! The whole daemon wired for WeCom, for end-to-end tests.
//!
//! A stack runs the real coach over the committed corpus (index in memory) and
//! a real store (SQLite file or a fresh PostgreSQL database). The router and HTTP
//! server listen on 127.0.0.1:0 with the WeCom routes merged as `maxwin serve`
//! merges them. A mock WeCom API and a mock LLM stand in for the outside world.
//!
//! NOTE: the daemon is assembled here like `src/cli/serve.rs` assembles it, so a
//! change to that wiring must be repeated in `Stack::start_daemon`.
//!
//! The test binary must also include `support/mock_llm.rs` as `mock_llm`,
//! `support/store.rs` as `test_store` and the WeCom adapter's
//! `tests/support/mod.rs` as `wecom_mock`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use maxwin_channel::{Handler, Secret};
use maxwin_coach::app::{self, Knowledge};
use maxwin_coach::coach::library::Translations;
use maxwin_coach::coach::ports::StoreLedger;
use maxwin_coach::coach::{Coach, translations};
use maxwin_coach::config::Settings;
use maxwin_coach::server::{DaemonParts, Metrics, Readiness, Router, serve_with_listener};
use maxwin_wecom::WecomCrypto;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, SqliteConnection};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::mock_llm::{MockLlm, MockResponse};
use crate::test_store::TestStore;
use crate::wecom_mock::{Call, MockState, start_mock_api};

pub const CORP_ID: &str = "wwe2ecorp01";
pub const AGENT_ID: i64 = 1000002;
pub const TOKEN: &str = "e2eCallbackToken";
/// 43 base64 characters that decode to a 32-byte AES key.
pub const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
pub const APP_PATH: &str = "/wecom/app";
pub const BOT_PATH: &str = "/wecom/bot";
pub const BOT_ID: &str = "aibe2e01";
/// The AI robot's display name, stripped from group @-mentions.
pub const BOT_NAME: &str = "销售参谋";

pub const SEND_PATH: &str = "/cgi-bin/message/send";
pub const RESPONSE_URL_PATH: &str = "/cgi-bin/aibot/response";

/// The database a stack runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What the coach's LLM client talks to.
pub enum Llm {
    /// The mock LLM with these scripted responses.
    Scripted(Vec<MockResponse>),
    /// A loopback port with nothing listening, so every request is refused.
    Down,
}

/// One running daemon instance; a restart replaces it and keeps the database.
struct Daemon {
    address: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// A complete stack: database, mocks and one daemon instance.
pub struct Stack {
    pub backend: Backend,
    pub db: TestStore,
    pub llm: MockLlm,
    pub wecom_api: Arc<MockState>,
    pub wecom_base: String,
    /// The self-built app's crypto, as WeCom would use it (receive id = corp id).
    pub app_crypto: WecomCrypto,
    /// The AI robot's crypto (empty receive id).
    pub bot_crypto: WecomCrypto,
    settings: Settings,
    daemon: Option<Daemon>,
    http: reqwest::Client,
}

/// An HTTP response received by the test, with its round-trip time.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
    pub elapsed: Duration,
}

/// Loads the corpus, index and translations once per test binary, because
/// building the index is the slowest step of starting a stack.
fn knowledge() -> &'static (Knowledge, Arc<Translations>) {
    static KNOWLEDGE: OnceLock<(Knowledge, Arc<Translations>)> = OnceLock::new();
    KNOWLEDGE.get_or_init(|| {
        let settings = Settings {
            corpus_dir: corpus_dir(),
            // A folder that cannot be created, so the index is built in memory.
            index_dir: PathBuf::from("/dev/null/maxwin-e2e-index"),
            ..Settings::default()
        };
        let knowledge = app::load_knowledge(&settings).expect("the committed corpus loads");
        let translations = Arc::new(translations::load(&settings.corpus_dir));
        (knowledge, translations)
    })
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// Returns a loopback address where nothing listens.
async fn dead_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

impl Stack {
    /// Starts a stack, or returns `None` (with a printed notice) for PostgreSQL
    /// when `TEST_DATABASE_URL` is unset.
    pub async fn start(backend: Backend, test: &str, llm: Llm) -> Option<Stack> {
        let db = match backend {
            Backend::Sqlite => TestStore::sqlite().await,
            Backend::Postgres => TestStore::postgres(test).await?,
        };
        let (script, llm_down) = match llm {
            Llm::Scripted(script) => (script, false),
            Llm::Down => (Vec::new(), true),
        };
        let mock_llm = MockLlm::start(script).await;
        let llm_base = if llm_down {
            format!("http://{}/v1", dead_address().await)
        } else {
            mock_llm.base_url()
        };
        let (wecom_base, wecom_api) = start_mock_api().await;

        let config = format!(
            r#"
corpus_dir = "{corpus}"
database_url = "{database}"

[llm]
base_url = "{llm_base}"
model = "mock-model"
api_key = "test-key"
max_retries = 0
connect_timeout_secs = 5.0
first_token_timeout_secs = 30.0
total_timeout_secs = 60.0

[server]
bind = "127.0.0.1:0"
shutdown_grace_secs = 5

[wecom.app]
api_base = "{wecom_base}"
corp_id = "{CORP_ID}"
agent_id = {AGENT_ID}
secret = "app-secret"
token = "{TOKEN}"
encoding_aes_key = "{AES_KEY}"
path = "{APP_PATH}"

[wecom.bot]
mode = "callback"
path = "{BOT_PATH}"
token = "{TOKEN}"
encoding_aes_key = "{AES_KEY}"
names = ["{BOT_NAME}"]
"#,
            corpus = corpus_dir().display(),
            database = db.url,
        );
        let settings =
            Settings::from_sources(&config, None, &[]).expect("the test settings are valid");

        let token = Secret::new(TOKEN);
        let key = Secret::new(AES_KEY);
        let mut stack = Stack {
            backend,
            db,
            llm: mock_llm,
            wecom_api,
            wecom_base,
            app_crypto: WecomCrypto::new(&token, &key, CORP_ID).unwrap(),
            bot_crypto: WecomCrypto::new(&token, &key, "").unwrap(),
            settings,
            daemon: None,
            http: reqwest::Client::new(),
        };
        let store = stack.db.store.clone();
        stack.daemon = Some(stack.start_daemon(store).await);
        Some(stack)
    }

    /// Builds the coach, router and HTTP server like `maxwin serve` and starts
    /// them on a fresh loopback port.
    async fn start_daemon(&self, store: Arc<dyn maxwin_coach::store::Store>) -> Daemon {
        let (knowledge, translations) = knowledge();
        let llm = app::llm_client(&self.settings).expect("the LLM settings are valid");
        let coach = Coach::new(
            knowledge.corpus.clone(),
            knowledge.retriever.clone(),
            llm,
            store.clone(),
            translations.clone(),
            self.settings.coach.clone(),
        );
        let ledger = Arc::new(StoreLedger(store));
        let metrics = Arc::new(Metrics::new());
        let readiness = Arc::new(Readiness::new());
        readiness.set_index_ready(true);
        let router = Router::new(
            Arc::new(coach),
            ledger,
            metrics,
            &self.settings.server.router,
        );
        let handler: Arc<dyn Handler> = Arc::new(router.clone());
        let routes = maxwin_wecom::router(&self.settings.wecom, handler)
            .expect("the WeCom settings are valid");
        let parts = DaemonParts::new(router, readiness).with_routes(routes);

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_with_listener(
            listener,
            parts,
            self.settings.server.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        Daemon {
            address,
            stop,
            task,
        }
    }

    /// Stops the daemon (draining answers in flight) and starts a new instance on
    /// the same database, with a new store connection, router and stream memory.
    pub async fn restart(&mut self) {
        self.stop_daemon().await;
        let store = self.db.reconnect().await;
        self.daemon = Some(self.start_daemon(store).await);
    }

    async fn stop_daemon(&mut self) {
        let daemon = self.daemon.take().expect("the daemon is running");
        let _ = daemon.stop.send(());
        daemon
            .task
            .await
            .expect("the daemon task did not panic")
            .expect("the daemon stopped cleanly");
    }

    pub fn url(&self, path: &str) -> String {
        let daemon = self.daemon.as_ref().expect("the daemon is running");
        format!("http://{}{path}", daemon.address)
    }

    /// Returns a response URL for the AI robot that points at the mock API.
    pub fn response_url(&self, code: &str) -> String {
        format!(
            "{}{RESPONSE_URL_PATH}?response_code={code}",
            self.wecom_base
        )
    }

    /// Sends a request and measures the round-trip time.
    async fn send(&self, request: reqwest::RequestBuilder) -> HttpResponse {
        let started = Instant::now();
        let response = request.send().await.expect("the daemon answers HTTP");
        let status = response.status().as_u16();
        let body = response.text().await.expect("the response has a body");
        HttpResponse {
            status,
            body,
            elapsed: started.elapsed(),
        }
    }

    /// POSTs a raw body to `path` with these query pairs.
    pub async fn post_raw(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: String,
    ) -> HttpResponse {
        self.send(self.http.post(self.url(path)).query(query).body(body))
            .await
    }

    /// GETs `path` with these query pairs.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> HttpResponse {
        self.send(self.http.get(self.url(path)).query(query)).await
    }

    /// Encrypts and signs an app callback with `crypto`, then POSTs it.
    pub async fn post_app_with(&self, crypto: &WecomCrypto, inner_xml: &str) -> HttpResponse {
        let encrypt = crypto.encrypt(inner_xml);
        let body = format!(
            "<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><AgentID><![CDATA[{AGENT_ID}]]></AgentID><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        );
        let query = signed_query(crypto, &encrypt);
        self.post_raw(APP_PATH, &query, body).await
    }

    /// Encrypts and signs an app callback as WeCom does, then POSTs it.
    pub async fn post_app(&self, inner_xml: &str) -> HttpResponse {
        self.post_app_with(&self.app_crypto, inner_xml).await
    }

    /// Encrypts and signs an AI robot callback, POSTs it and decrypts the reply;
    /// the reply is `None` for an empty body.
    pub async fn post_bot(&self, payload: &Value) -> (HttpResponse, Option<Value>) {
        let encrypt = self.bot_crypto.encrypt(&payload.to_string());
        let query = signed_query(&self.bot_crypto, &encrypt);
        let answered = self
            .post_raw(BOT_PATH, &query, json!({ "encrypt": encrypt }).to_string())
            .await;
        if answered.body.is_empty() {
            return (answered, None);
        }
        let envelope: Value = serde_json::from_str(&answered.body).expect("the reply is JSON");
        let encrypt = envelope["encrypt"]
            .as_str()
            .expect("the reply is encrypted");
        let timestamp = envelope["timestamp"].to_string();
        let nonce = envelope["nonce"].as_str().unwrap();
        assert_eq!(
            envelope["msgsignature"].as_str().unwrap(),
            self.bot_crypto.sign(&timestamp, nonce, encrypt),
            "the reply signature is valid"
        );
        let plain = self
            .bot_crypto
            .decrypt(encrypt)
            .expect("the reply decrypts");
        let reply = serde_json::from_str(&plain).expect("the decrypted reply is JSON");
        (answered, Some(reply))
    }

    /// Polls the AI robot with refresh callbacks every 100 ms until the stream
    /// finishes; returns every reply's `(content, finish)`.
    pub async fn poll_stream(&self, stream_id: &str, user: &str) -> Vec<(String, bool)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            let refresh = json!({
                "msgid": format!("refresh-{}", rand::random::<u64>()),
                "aibotid": BOT_ID,
                "chattype": "single",
                "from": { "userid": user },
                "msgtype": "stream",
                "stream": { "id": stream_id },
            });
            let (answered, reply) = self.post_bot(&refresh).await;
            assert_eq!(answered.status, 200, "refresh callback accepted");
            let reply = reply.expect("a refresh gets a stream reply");
            assert_eq!(reply["stream"]["id"], stream_id);
            let content = reply["stream"]["content"].as_str().unwrap().to_string();
            let finished = reply["stream"]["finish"].as_bool().unwrap();
            seen.push((content, finished));
            if finished {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "stream {stream_id} did not finish within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Returns the `message/send` calls the mock WeCom API received.
    pub fn sends(&self) -> Vec<Call> {
        self.wecom_api.calls_to(SEND_PATH)
    }

    /// Returns the `response_url` calls the mock WeCom API received.
    pub fn follow_ups(&self) -> Vec<Call> {
        self.wecom_api.calls_to(RESPONSE_URL_PATH)
    }

    /// Waits up to 30 s until `message/send` was called at least `count` times.
    pub async fn wait_for_sends(&self, count: usize) -> Vec<Call> {
        wait_until("message/send calls", || self.sends().len() >= count).await;
        self.sends()
    }

    /// Counts the dedupe keys stored in `processed_events`.
    pub async fn processed_events(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM processed_events").await
    }

    /// Runs a `SELECT COUNT(*)` query on the stack's database.
    pub async fn count(&self, sql: &str) -> i64 {
        match self.backend {
            Backend::Sqlite => {
                let mut connection = SqliteConnection::connect(&self.db.url).await.unwrap();
                sqlx::query_scalar(sql)
                    .fetch_one(&mut connection)
                    .await
                    .unwrap()
            }
            Backend::Postgres => {
                let mut connection = PgConnection::connect(&self.db.url).await.unwrap();
                sqlx::query_scalar(sql)
                    .fetch_one(&mut connection)
                    .await
                    .unwrap()
            }
        }
    }

    /// Runs a query that returns rows of two text-convertible columns.
    pub async fn rows(&self, sql: &str) -> Vec<(String, String)> {
        match self.backend {
            Backend::Sqlite => {
                let mut connection = SqliteConnection::connect(&self.db.url).await.unwrap();
                sqlx::query_as(sql)
                    .fetch_all(&mut connection)
                    .await
                    .unwrap()
            }
            Backend::Postgres => {
                let mut connection = PgConnection::connect(&self.db.url).await.unwrap();
                sqlx::query_as(sql)
                    .fetch_all(&mut connection)
                    .await
                    .unwrap()
            }
        }
    }

    /// Stops the daemon; the database is dropped with the stack.
    pub async fn shutdown(mut self) {
        self.stop_daemon().await;
    }
}

/// Builds the query of a signed callback: `msg_signature`, `timestamp`, `nonce`.
pub fn signed_query(crypto: &WecomCrypto, encrypt: &str) -> Vec<(&'static str, String)> {
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let nonce = format!("{:x}", rand::random::<u32>());
    vec![
        ("msg_signature", crypto.sign(&timestamp, &nonce, encrypt)),
        ("timestamp", timestamp),
        ("nonce", nonce),
    ]
}

/// Polls `done` every 20 ms for up to 30 s and panics with `what` when it stays false.
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Builds the decrypted XML of an app text message.
pub fn app_text(user: &str, msg_id: &str, create_time: i64, content: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName><CreateTime>{create_time}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId><AgentID>{AGENT_ID}</AgentID></xml>"
    )
}

/// Builds an AI robot text message; `chat` is `Some(chat id)` for a group.
pub fn bot_text(stack: &Stack, user: &str, msg_id: &str, chat: Option<&str>, text: &str) -> Value {
    let mut payload = json!({
        "msgid": msg_id,
        "aibotid": BOT_ID,
        "chattype": if chat.is_some() { "group" } else { "single" },
        "from": { "userid": user },
        "response_url": stack.response_url(msg_id),
        "msgtype": "text",
        "text": { "content": text },
    });
    if let Some(chat) = chat {
        payload["chatid"] = json!(chat);
    }
    payload
}

/// Builds a Chinese Q&A card as the LLM writes it, with `marker` in the diagnosis
/// and `extra` as one more immediate action.
pub fn card_answer(marker: &str, extra: &str) -> String {
    format!(
        "# 报价被压价时如何守住价值\n\n\
**问题：**\n客户说我们的报价比竞品高，要求打折。\n\n---\n\n\
## 📊 战略局势评估\n\n\
*   **局势：** [中风险]\n\
*   **诊断：** {marker}\n\n---\n\n\
## ❓ 关键破局提问\n\n\
### 🔍 自我审视（你需要先想清楚的问题）\n\n\
*   你是否量化过方案给客户带来的价值？\n\n\
### 💬 客户提问（你可以直接问客户的问题）\n\n\
*   **澄清顾虑：** 您最担心的是总价，还是付款节奏？\n\n---\n\n\
## 🚀 建议行动路径\n\n\
### 立即行动\n\
*   **确认决策人：** 约采购负责人和使用部门一起开一次短会。\n\
*   **补充说明：** {extra}\n\n\
### 后续策略\n\
*   **坚守价格线：** 用分期付款代替直接降价。\n"
    )
}

/// Returns a streamed LLM response with `text` in content chunks of 40
/// characters, its body written in about eight pieces `delay` apart.
pub fn streamed(text: &str, delay: Duration) -> MockResponse {
    let chars: Vec<char> = text.chars().collect();
    let chunks: Vec<String> = chars
        .chunks(40)
        .map(|chunk| chunk.iter().collect())
        .collect();
    let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
    MockResponse::chat_stream(&chunks)
        .in_pieces(text.len() / 3 + 64)
        .delay_pieces(delay)
}
