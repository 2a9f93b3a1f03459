//! The whole `maxwin serve` stack for end-to-end tests: the real coach (committed
//! corpus, in-memory index), a real store, the server's router and daemon, and the
//! Telegram adapter polling a loopback Bot API mock, with a scripted LLM mock.
//!
//! The test binary declares `mock_api`, `mock_llm` and `store` next to this module.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use maxwin_channel::{Handler, Lang, Platform, Secret};
use maxwin_coach::coach::library::Translations;
use maxwin_coach::coach::ports::StoreLedger;
use maxwin_coach::coach::{Coach, CoachSettings, translations};
use maxwin_coach::corpus::Corpus;
use maxwin_coach::llm::{LlmClient, LlmSettings};
use maxwin_coach::retrieval::{RetrievalSettings, Retriever};
use maxwin_coach::server::{
    AdapterLoop, DaemonParts, Metrics, RateLimitSettings, Readiness, Router, RouterSettings,
    ServerSettings, serve_with_listener,
};
use maxwin_coach::store::{ConversationKey, Store, Turn};
use maxwin_telegram::TelegramSettings;
use serde_json::json;
use sqlx::{Connection, PgConnection, SqliteConnection};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::mock_api::{self, BOT_ID, MockApi, TOKEN};
use crate::mock_llm::{MockLlm, MockResponse};
use crate::store::TestStore;

/// The private chat of the test user; Telegram gives a private chat the user's id.
pub const USER_ID: i64 = 42;
pub const PRIVATE_CHAT: i64 = USER_ID;
/// A supergroup; the mock Bot API treats negative chat ids as groups.
pub const GROUP_CHAT: i64 = -100_555;

/// The database backend a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What a scenario changes in the stack.
#[derive(Debug, Clone)]
pub struct Options {
    /// The Telegram adapter's minimum time between sends and edits in one chat.
    pub edit_interval_ms: u64,
    /// The LLM base URL; `None` points at the mock LLM.
    pub llm_base_url: Option<String>,
    pub shutdown_grace_secs: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            edit_interval_ms: 1000,
            llm_base_url: None,
            shutdown_grace_secs: 20,
        }
    }
}

/// The corpus, its index and the English translations, loaded once per test binary.
struct Knowledge {
    corpus: Arc<Corpus>,
    retriever: Arc<Retriever>,
    translations: Arc<Translations>,
}

fn knowledge() -> &'static Knowledge {
    static KNOWLEDGE: OnceLock<Knowledge> = OnceLock::new();
    KNOWLEDGE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
        let (corpus, _warnings) = Corpus::load_dir(&dir).expect("failed to load the corpus");
        let retriever = Retriever::build(&corpus, &RetrievalSettings::default())
            .expect("failed to build the in-memory index");
        Knowledge {
            corpus: Arc::new(corpus),
            retriever: Arc::new(retriever),
            translations: Arc::new(translations::load(&dir)),
        }
    })
}

/// One running daemon with its mocks and database.
pub struct App {
    pub api: MockApi,
    pub llm: MockLlm,
    pub db: TestStore,
    pub router: Router,
    stop: Option<oneshot::Sender<()>>,
    daemon: Option<JoinHandle<anyhow::Result<()>>>,
}

impl App {
    /// Starts the stack with default options; see [`App::start_with`].
    pub async fn start(backend: Backend, test: &str, script: Vec<MockResponse>) -> Option<App> {
        Self::start_with(backend, test, script, Options::default()).await
    }

    /// Starts the stack on a fresh database. Returns `None`, after printing a
    /// notice, for PostgreSQL when `TEST_DATABASE_URL` is unset.
    pub async fn start_with(
        backend: Backend,
        test: &str,
        script: Vec<MockResponse>,
        options: Options,
    ) -> Option<App> {
        let db = match backend {
            Backend::Sqlite => TestStore::sqlite().await,
            Backend::Postgres => TestStore::postgres(test).await?,
        };
        let api = MockApi::start().await;
        let llm = MockLlm::start(script).await;
        let knowledge = tokio::task::spawn_blocking(knowledge)
            .await
            .expect("loading the corpus panicked");

        let llm_settings = LlmSettings {
            base_url: Some(options.llm_base_url.clone().unwrap_or(llm.base_url())),
            model: Some("mock-model".into()),
            connect_timeout_secs: 2.0,
            first_token_timeout_secs: 10.0,
            total_timeout_secs: 30.0,
            max_retries: 1,
            retry_base_delay_ms: 10,
            retry_max_delay_secs: 0.1,
            ..LlmSettings::default()
        };
        let client = LlmClient::new(&llm_settings).expect("invalid LLM settings");
        let coach = Coach::new(
            knowledge.corpus.clone(),
            knowledge.retriever.clone(),
            client,
            db.store.clone(),
            knowledge.translations.clone(),
            CoachSettings::default(),
        );

        let router_settings = RouterSettings {
            // Scenarios send several messages from one user within seconds.
            rate_limit: RateLimitSettings {
                per_minute: 0,
                burst: 0,
            },
            answer_timeout_secs: 60,
            ..RouterSettings::default()
        };
        let router = Router::new(
            Arc::new(coach),
            Arc::new(StoreLedger(db.store.clone())),
            Arc::new(Metrics::new()),
            &router_settings,
        );
        let readiness = Arc::new(Readiness::new());
        readiness.set_index_ready(true);
        let handler: Arc<dyn Handler> = Arc::new(router.clone());

        let telegram = TelegramSettings {
            enabled: true,
            bot_token: Some(Secret::new(TOKEN)),
            api_url: Some(api.url()),
            edit_interval_ms: options.edit_interval_ms,
            poll_timeout_secs: 1,
            ..TelegramSettings::default()
        };
        let parts = DaemonParts::new(router.clone(), readiness).with_loop(AdapterLoop::new(
            "telegram",
            move |token| async move {
                maxwin_telegram::run_polling(telegram, handler, token.cancelled_owned())
                    .await
                    .map_err(anyhow::Error::from)
            },
        ));

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = ServerSettings {
            bind: listener.local_addr().unwrap(),
            shutdown_grace_secs: options.shutdown_grace_secs,
            router: router_settings,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let daemon = tokio::spawn(serve_with_listener(listener, parts, server, async {
            let _ = stopped.await;
        }));

        let app = App {
            api,
            llm,
            db,
            router,
            stop: Some(stop),
            daemon: Some(daemon),
        };
        // The adapter is ready once it polls for updates.
        app.api.wait_for("getUpdates", 1).await;
        Some(app)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.db.store
    }

    /// Sends the shutdown signal and returns the daemon's result.
    pub async fn shutdown(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let daemon = self.daemon.take().expect("the daemon was already stopped");
        tokio::time::timeout(Duration::from_secs(30), daemon)
            .await
            .expect("the daemon did not stop within 30 s")
            .expect("the daemon task panicked")
    }

    /// Delivers a text message from the test user.
    pub fn send_text(&self, update_id: i64, chat: i64, message_id: i64, text: &str) {
        self.api.push_update(mock_api::message_update(
            update_id,
            chat,
            message_id,
            text,
            json!([]),
        ));
    }

    /// Delivers a message that starts with a `@mention` of `username`.
    pub fn send_mention(
        &self,
        update_id: i64,
        chat: i64,
        message_id: i64,
        username: &str,
        text: &str,
    ) {
        let mention = format!("@{username}");
        let full = format!("{mention} {text}");
        let entities =
            json!([{"type": "mention", "offset": 0, "length": mock_api::utf16_len(&mention)}]);
        self.api.push_update(mock_api::message_update(
            update_id, chat, message_id, &full, entities,
        ));
    }

    /// Delivers a message that starts with a bot command such as `/ask@CoachBot`.
    pub fn send_command(&self, update_id: i64, chat: i64, message_id: i64, text: &str) {
        let command = text.split_whitespace().next().unwrap_or(text);
        let entities =
            json!([{"type": "bot_command", "offset": 0, "length": mock_api::utf16_len(command)}]);
        self.api.push_update(mock_api::message_update(
            update_id, chat, message_id, text, entities,
        ));
    }

    /// Delivers a message in forum topic `thread` of a group, with an optional
    /// leading `@mention` of `username`.
    pub fn send_in_topic(
        &self,
        update_id: i64,
        chat: i64,
        message_id: i64,
        thread: i64,
        mention: Option<&str>,
        text: &str,
    ) {
        let (full, entities) = match mention {
            Some(username) => {
                let mention = format!("@{username}");
                let entities = json!([{"type": "mention", "offset": 0, "length": mock_api::utf16_len(&mention)}]);
                (format!("{mention} {text}"), entities)
            }
            None => (text.to_string(), json!([])),
        };
        let mut update = mock_api::message_update(update_id, chat, message_id, &full, entities);
        update["message"]["message_thread_id"] = json!(thread);
        update["message"]["is_topic_message"] = json!(true);
        self.api.push_update(update);
    }

    /// Delivers a message that replies to the bot's message `parent_id`.
    pub fn send_reply_to_bot(
        &self,
        update_id: i64,
        chat: i64,
        message_id: i64,
        parent_id: i64,
        text: &str,
    ) {
        let mut update = mock_api::message_update(update_id, chat, message_id, text, json!([]));
        update["message"]["reply_to_message"] = json!({
            "message_id": parent_id,
            "date": 1_700_000_000,
            "chat": mock_api::chat_json(chat),
            "from": {"id": BOT_ID, "is_bot": true, "first_name": "Coach", "username": mock_api::BOT_USERNAME},
            "text": "earlier answer",
        });
        self.api.push_update(update);
    }

    /// Presses the inline button with `data` under the bot's message `message_id`.
    pub fn press_button(
        &self,
        update_id: i64,
        chat: i64,
        message_id: i64,
        callback_id: &str,
        data: &str,
    ) {
        self.api.push_update(json!({
            "update_id": update_id,
            "callback_query": {
                "id": callback_id,
                "from": mock_api::user_json(USER_ID),
                "chat_instance": "e2e",
                "data": data,
                "message": {
                    "message_id": message_id,
                    "date": 1_700_000_000,
                    "chat": mock_api::chat_json(chat),
                    "from": {"id": BOT_ID, "is_bot": true, "first_name": "Coach", "username": mock_api::BOT_USERNAME},
                    "text": "card",
                }
            }
        }));
    }

    /// Returns the messages and edits the bot sent to `chat`, in order.
    pub fn outgoing(&self, chat: i64) -> Vec<mock_api::Call> {
        self.api
            .calls_of(&["sendMessage", "editMessageText"])
            .into_iter()
            .filter(|call| chat_of(call) == chat)
            .collect()
    }

    /// Returns the calls to `chat` that carry a card's feedback keyboard.
    pub fn cards(&self, chat: i64) -> Vec<mock_api::Call> {
        self.outgoing(chat)
            .into_iter()
            .filter(|call| call.body.get("reply_markup").is_some())
            .collect()
    }

    /// Waits until `count` cards have reached `chat`.
    pub async fn wait_for_cards(&self, chat: i64, count: usize) -> Vec<mock_api::Call> {
        self.wait_until(|| self.cards(chat).len() >= count, "cards")
            .await;
        self.cards(chat)
    }

    /// Waits until a message or edit in `chat` contains `needle`.
    pub async fn wait_for_text(&self, chat: i64, needle: &str) -> mock_api::Call {
        self.wait_until(
            || {
                self.outgoing(chat)
                    .iter()
                    .any(|call| text_of(call).contains(needle))
            },
            needle,
        )
        .await;
        self.outgoing(chat)
            .into_iter()
            .find(|call| text_of(call).contains(needle))
            .unwrap()
    }

    async fn wait_until(&self, mut done: impl FnMut() -> bool, what: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; Bot API calls: {:#?}",
                self.api.calls()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Returns the turns stored for the conversation of `chat` (private chats
    /// belong to the test user), oldest first.
    pub async fn turns(&self, chat: i64) -> Vec<Turn> {
        let key = ConversationKey {
            platform: Platform::Telegram,
            tenant: BOT_ID.to_string(),
            chat: chat.to_string(),
            thread: None,
            user: (chat > 0).then(|| USER_ID.to_string()),
        };
        let conversation = self.store().conversation(&key).await.unwrap();
        self.store()
            .recent_turns(conversation.id, 100)
            .await
            .unwrap()
    }

    /// Returns the stored answers as (answer id, question), oldest first.
    pub async fn answers(&self) -> Vec<(i64, String)> {
        let sql = "SELECT id, user_text FROM messages ORDER BY id";
        match self.connection().await {
            Db::Sqlite(mut c) => sqlx::query_as(sql).fetch_all(&mut c).await.unwrap(),
            Db::Postgres(mut c) => sqlx::query_as(sql).fetch_all(&mut c).await.unwrap(),
        }
    }

    /// Waits until `count` answers are stored. The coach stores a turn after the
    /// reply reached the platform, so a card can arrive before its turn is stored.
    pub async fn wait_for_answers(&self, count: usize) -> Vec<(i64, String)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let answers = self.answers().await;
            if answers.len() >= count {
                return answers;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {count} stored answers, found {}",
                answers.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `count` platform messages are linked to answer `answer_id`; the
    /// coach links them after it stores the turn.
    pub async fn wait_for_deliveries(&self, answer_id: i64, count: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let deliveries = self.deliveries(answer_id).await;
            if deliveries.len() >= count {
                return deliveries;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {count} deliveries of answer {answer_id}, found {deliveries:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Returns the platform message ids linked to answer `answer_id`.
    pub async fn deliveries(&self, answer_id: i64) -> Vec<String> {
        let sql = "SELECT platform_message_id FROM deliveries WHERE answer_id = $1 ORDER BY id";
        let rows: Vec<(String,)> = match self.connection().await {
            Db::Sqlite(mut c) => sqlx::query_as(sql)
                .bind(answer_id)
                .fetch_all(&mut c)
                .await
                .unwrap(),
            Db::Postgres(mut c) => sqlx::query_as(sql)
                .bind(answer_id)
                .fetch_all(&mut c)
                .await
                .unwrap(),
        };
        rows.into_iter().map(|(id,)| id).collect()
    }

    /// Returns the stored feedback as (answer id, rating, user id, event id).
    pub async fn feedback(&self) -> Vec<(i64, Option<String>, String, String)> {
        let sql = "SELECT answer_id, rating, platform_user_id, event_id FROM feedback ORDER BY id";
        match self.connection().await {
            Db::Sqlite(mut c) => sqlx::query_as(sql).fetch_all(&mut c).await.unwrap(),
            Db::Postgres(mut c) => sqlx::query_as(sql).fetch_all(&mut c).await.unwrap(),
        }
    }

    async fn connection(&self) -> Db {
        if self.db.url.starts_with("sqlite:") {
            Db::Sqlite(SqliteConnection::connect(&self.db.url).await.unwrap())
        } else {
            Db::Postgres(PgConnection::connect(&self.db.url).await.unwrap())
        }
    }

    /// Returns the last user message of each chat request the mock LLM received.
    pub fn llm_questions(&self) -> Vec<String> {
        self.llm
            .requests()
            .iter()
            .filter(|request| request.path.ends_with("/chat/completions"))
            .map(|request| {
                let messages = request.json["messages"].as_array().unwrap();
                messages.last().unwrap()["content"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            daemon.abort();
        }
    }
}

enum Db {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

pub fn chat_of(call: &mock_api::Call) -> i64 {
    let id = &call.body["chat_id"];
    id.as_i64()
        .or_else(|| id.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_default()
}

pub fn text_of(call: &mock_api::Call) -> &str {
    call.body["text"].as_str().unwrap_or_default()
}

/// Returns the seller's message as the prompt fences it.
pub fn fenced(question: &str) -> String {
    format!("<<<\n{question}\n>>>")
}

/// Returns the texts of a card keyboard's buttons, row by row.
pub fn button_texts(call: &mock_api::Call) -> Vec<Vec<String>> {
    let rows = call.body["reply_markup"]["inline_keyboard"]
        .as_array()
        .expect("the call has no inline keyboard");
    rows.iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|button| button["text"].as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

/// Returns the `callback_data` of the button with `text`.
pub fn button_data(call: &mock_api::Call, text: &str) -> String {
    let rows = call.body["reply_markup"]["inline_keyboard"]
        .as_array()
        .expect("the call has no inline keyboard");
    rows.iter()
        .flat_map(|row| row.as_array().unwrap().iter())
        .find(|button| button["text"] == text)
        .and_then(|button| button["callback_data"].as_str())
        .unwrap_or_else(|| panic!("no button {text:?}"))
        .to_string()
}

/// Writes a card in the model's Markdown format, in `lang`, with `diagnosis` as its diagnosis.
pub fn card_markdown(lang: Lang, title: &str, diagnosis: &str) -> String {
    match lang {
        Lang::Zh => format!(
            "# {title}\n\n**问题：** 客户说我们比竞品贵 30%，要求打折。\n\n\
## 📊 战略局势评估\n* **局势：** [高风险]\n* **诊断：** {diagnosis}\n\n\
## ❓ 关键破局提问\n### 🔍 自我审视\n* 我见过经济决策者吗？\n* 客户比较的是哪个方案？\n\n\
### 💬 客户提问\n* **澄清：** 您说的贵，是和哪个方案比？\n* **影响：** 如果项目延期，损失有多大？\n\n\
## 🚀 建议行动路径\n### 立即行动\n* **暂停让步：** 先不要申请折扣。\n\n\
### 后续策略\n* **48 小时后：** 若无回复，约技术负责人演示。\n"
        ),
        Lang::En => format!(
            "# {title}\n\n**Question:** The client says we are 30% more expensive and wants a discount.\n\n\
## 📊 Situation assessment\n* **Stage:** [High risk]\n* **Diagnosis:** {diagnosis}\n\n\
## ❓ Breakthrough questions\n### 🔍 Ask yourself\n* Have I met the economic buyer?\n* Which offer is the client comparing us with?\n\n\
### 💬 Ask the client\n* **Clarify:** More expensive compared with which offer?\n* **Impact:** What does a delay cost you?\n\n\
## 🚀 Action plan\n### Right now\n* **Hold the discount:** Do not ask for a discount yet.\n\n\
### Next steps\n* **After 48 hours:** Without a reply, book a demo with the technical lead.\n"
        ),
    }
}

/// Splits `text` into about `count` pieces at character boundaries.
pub fn pieces(text: &str, count: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(count.max(1)).max(1);
    chars
        .chunks(size)
        .map(|chunk| chunk.iter().collect())
        .collect()
}

/// Builds a streamed answer: `text` in `count` content chunks, with the response
/// body sent in about `count` writes `delay` apart.
pub fn streamed(text: &str, count: usize, delay: Duration) -> MockResponse {
    let mut body = crate::mock_llm::chunk(json!({"role": "assistant", "content": ""}), None);
    for part in pieces(text, count) {
        body.push_str(&crate::mock_llm::content_chunk(&part));
    }
    body.push_str(&crate::mock_llm::finish_chunk("stop"));
    body.push_str(&crate::mock_llm::usage_chunk(7, 3));
    body.push_str(crate::mock_llm::DONE);
    let write_len = body.len().div_ceil(count.max(1));
    MockResponse::sse(body)
        .in_pieces(write_len)
        .delay_pieces(delay)
}
