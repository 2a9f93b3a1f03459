//! Load test of the daemon with Telegram long polling, entirely on 127.0.0.1.
//!
//! Starts a mock Bot API and a mock LLM that streams a card over `--llm-ms`, runs
//! the real daemon in this process (router, Telegram polling adapter, coach with
//! SQLite in a temporary folder, per-user rate limit off), injects one message in
//! each of `--chats` private chats through `getUpdates`, and reports:
//!
//! - messages per second from the first injection to the last final answer;
//! - p50/p99 from an update's delivery (the `getUpdates` response that carried it)
//!   to the chat's first visible progress (`sendChatAction` or the first message);
//! - peak RSS of this process (daemon and both mocks together);
//! - whether every chat got exactly one final answer (the message with the card's
//!   buttons). The exit status is 1 when one did not.
//!
//! The mock serves at most 100 updates per `getUpdates`, like the Bot API, and
//! keeps each update until a later call's offset confirms it.
//!
//! Run: `cargo run --release --example loadgen_telegram -- --chats 1000`

mod common;

use std::collections::{HashMap, VecDeque};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Json;
use axum::extract::{Path, State};
use axum::routing::post;
use clap::Parser;
use maxwin_channel::{Handler, Secret};
use maxwin_coach::coach::ports::StoreLedger;
use maxwin_coach::server::{
    AdapterLoop, DaemonParts, Metrics, Readiness, Router, serve_with_listener,
};
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};

use common::{QUESTIONS, ms, percentile, proc_status_kb};

const TOKEN: &str = "123456:LOAD-TEST-TOKEN";
const BOT_ID: i64 = 123_456;
/// The maximum number of updates the Bot API returns per `getUpdates`.
const MAX_UPDATES_PER_POLL: usize = 100;
/// The first private chat id; chat `i` has id `FIRST_CHAT + i` and one user of the same id.
const FIRST_CHAT: i64 = 1_000_000;

#[derive(Parser, Debug)]
#[command(about = "Load test of the daemon's Telegram polling path against loopback mocks")]
struct Args {
    /// Private chats, one message each (1 to 10000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    chats: u32,
    /// Updates injected per second; 0 injects them all at once.
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// How long the mock LLM takes to stream one answer, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    llm_ms: u64,
    /// The run stops and fails after this many seconds.
    #[arg(long, default_value_t = 180)]
    timeout_secs: u64,
}

/// The timestamps and final-card count the mock recorded for one chat.
#[derive(Default, Clone)]
struct ChatRecord {
    delivered: Option<Instant>,
    first_progress: Option<Instant>,
    finals: u32,
    last_final: Option<Instant>,
}

#[derive(Default)]
struct BotState {
    /// Updates not yet confirmed by an offset, in id order.
    pending: VecDeque<(i64, Value)>,
    chats: HashMap<i64, ChatRecord>,
    chats_answered: usize,
    next_message_id: i64,
    unexpected_methods: Vec<String>,
}

#[derive(Clone)]
struct MockBot {
    state: Arc<Mutex<BotState>>,
    update_ready: Arc<Notify>,
    answered: Arc<Notify>,
}

impl MockBot {
    fn push(&self, update_id: i64, update: Value) {
        self.state
            .lock()
            .unwrap()
            .pending
            .push_back((update_id, update));
        self.update_ready.notify_waiters();
    }

    /// Drops confirmed updates and returns up to `limit` of the rest, marking
    /// their chats delivered; waits up to `timeout` when there are none.
    async fn take(&self, offset: i64, limit: usize, timeout: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.update_ready.notified();
            {
                let mut state = self.state.lock().unwrap();
                while state.pending.front().is_some_and(|(id, _)| *id < offset) {
                    state.pending.pop_front();
                }
                if !state.pending.is_empty() {
                    let now = Instant::now();
                    let batch: Vec<Value> = state
                        .pending
                        .iter()
                        .take(limit)
                        .map(|(_, update)| update.clone())
                        .collect();
                    for update in &batch {
                        let chat = update["message"]["chat"]["id"].as_i64().unwrap_or(0);
                        let record = state.chats.entry(chat).or_default();
                        record.delivered.get_or_insert(now);
                    }
                    return batch;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Vec::new();
            }
        }
    }

    /// Records a call that the user sees in `chat`; `is_final` marks the card's last message.
    fn saw(&self, chat: i64, is_final: bool) {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap();
        let record = state.chats.entry(chat).or_default();
        record.first_progress.get_or_insert(now);
        if is_final {
            record.finals += 1;
            record.last_final = Some(now);
            if record.finals == 1 {
                state.chats_answered += 1;
                drop(state);
                self.answered.notify_waiters();
            }
        }
    }

    fn next_message_id(&self) -> i64 {
        let mut state = self.state.lock().unwrap();
        state.next_message_id += 1;
        state.next_message_id
    }
}

async fn bot_api(
    State(mock): State<MockBot>,
    Path((_bot, method)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Json<Value> {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // teloxide capitalises method names (`SendMessage`); the Bot API ignores case.
    let method = method.to_ascii_lowercase();
    let chat = read_id(&body["chat_id"]);
    let result = match method.as_str() {
        "getme" => json!({
            "id": BOT_ID, "is_bot": true, "first_name": "Coach", "username": "LoadCoachBot",
            "can_join_groups": true, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "can_connect_to_business": false,
            "has_main_web_app": false
        }),
        "deletewebhook" | "answercallbackquery" => json!(true),
        "getupdates" => {
            let offset = read_id(&body["offset"]);
            let limit = body["limit"]
                .as_u64()
                .map_or(MAX_UPDATES_PER_POLL, |l| l as usize)
                .clamp(1, MAX_UPDATES_PER_POLL);
            let timeout = Duration::from_secs(body["timeout"].as_u64().unwrap_or(0));
            Value::Array(mock.take(offset, limit, timeout).await)
        }
        "sendchataction" => {
            mock.saw(chat, false);
            json!(true)
        }
        "sendmessage" | "editmessagetext" => {
            mock.saw(chat, body.get("reply_markup").is_some());
            let id = match method.as_str() {
                "sendmessage" => mock.next_message_id(),
                _ => read_id(&body["message_id"]),
            };
            json!({
                "message_id": id,
                "date": 1_700_000_000,
                "chat": private_chat(chat),
                "from": {"id": BOT_ID, "is_bot": true, "first_name": "Coach"},
                "text": body["text"].as_str().unwrap_or_default(),
            })
        }
        other => {
            mock.state
                .lock()
                .unwrap()
                .unexpected_methods
                .push(other.to_string());
            return Json(
                json!({"ok": false, "error_code": 400, "description": "Bad Request: method not mocked"}),
            );
        }
    };
    Json(json!({"ok": true, "result": result}))
}

/// Prints the daemon's answer and error counters, which show whether answers
/// came from the LLM (`card`) or fell back to the library.
fn print_answer_metrics(metrics: &Metrics) {
    let rendered = metrics.render();
    let counters = rendered.lines().filter(|line| {
        line.starts_with("maxwin_answers_total{") || line.starts_with("maxwin_errors_total{")
    });
    for line in counters {
        println!("daemon metric: {line}");
    }
}

/// Reads an id that teloxide may send as a JSON number or string; 0 when absent.
fn read_id(value: &Value) -> i64 {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

fn private_chat(id: i64) -> Value {
    json!({"id": id, "type": "private", "first_name": "Load", "last_name": format!("User{id}")})
}

fn message_update(index: u32) -> (i64, Value) {
    let update_id = i64::from(index) + 1;
    let chat = FIRST_CHAT + i64::from(index);
    let update = json!({
        "update_id": update_id,
        "message": {
            "message_id": 1,
            "date": 1_700_000_000,
            "chat": private_chat(chat),
            "from": {"id": chat, "is_bot": false, "first_name": "Load", "language_code": "zh-hans"},
            "text": QUESTIONS[index as usize % QUESTIONS.len()],
        }
    });
    (update_id, update)
}

async fn start_mock_bot() -> (String, MockBot) {
    let mock = MockBot {
        state: Arc::new(Mutex::new(BotState {
            next_message_id: 100,
            ..BotState::default()
        })),
        update_ready: Arc::new(Notify::new()),
        answered: Arc::new(Notify::new()),
    };
    let app = axum::Router::new()
        .route("/{bot}/{method}", post(bot_api))
        .with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0 for the mock Bot API");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .expect("mock Bot API failed");
    });
    (format!("http://{address}/"), mock)
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    let work_dir = tempfile::tempdir().context("could not create a temporary folder")?;
    let (bot_url, mock) = start_mock_bot().await;
    let card = common::sample_card(&common::project_dir().join("corpus"));
    let llm_url = common::start_mock_llm(card, Duration::from_millis(args.llm_ms)).await;

    let mut settings = common::daemon_settings(work_dir.path(), Some(llm_url));
    settings.telegram.enabled = true;
    settings.telegram.bot_token = Some(Secret::new(TOKEN));
    settings.telegram.api_url = Some(bot_url);

    let (coach, _knowledge) = maxwin_coach::app::build_coach(&settings).await?;
    let ledger = Arc::new(StoreLedger(coach.store().clone()));
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::new());
    readiness.set_index_ready(true);
    let router = Router::new(
        Arc::new(coach),
        ledger,
        metrics.clone(),
        &settings.server.router,
    );
    let handler: Arc<dyn Handler> = Arc::new(router.clone());
    let telegram = settings.telegram.clone();
    let parts = DaemonParts::new(router, readiness).with_loop(AdapterLoop::new(
        "telegram",
        move |token| async move {
            maxwin_telegram::run_polling(telegram, handler, token.cancelled_owned())
                .await
                .map_err(anyhow::Error::from)
        },
    ));
    let listener = tokio::net::TcpListener::bind(settings.server.bind).await?;
    let (stop, stopped) = oneshot::channel::<()>();
    let daemon = tokio::spawn(serve_with_listener(
        listener,
        parts,
        settings.server.clone(),
        async {
            let _ = stopped.await;
        },
    ));

    eprintln!(
        "injecting {} updates ({}), mock LLM answer time {} ms",
        args.chats,
        match args.rate {
            0 => "all at once".to_string(),
            rate => format!("{rate} per second"),
        },
        args.llm_ms
    );
    let started = Instant::now();
    let injector = {
        let mock = mock.clone();
        let (chats, rate) = (args.chats, args.rate);
        tokio::spawn(async move {
            let mut ticker = (rate > 0)
                .then(|| tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate))));
            for index in 0..chats {
                if let Some(ticker) = ticker.as_mut() {
                    ticker.tick().await;
                }
                let (update_id, update) = message_update(index);
                mock.push(update_id, update);
            }
        })
    };

    let expected = args.chats as usize;
    let all_answered = async {
        loop {
            let notified = mock.answered.notified();
            if mock.state.lock().unwrap().chats_answered >= expected {
                return;
            }
            notified.await;
        }
    };
    let finished_in_time =
        tokio::time::timeout(Duration::from_secs(args.timeout_secs), all_answered)
            .await
            .is_ok();
    let elapsed = started.elapsed();
    injector.abort();
    // A short quiet period in which a duplicate answer would still show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop.send(());
    daemon.await.context("the daemon task panicked")??;

    let state = mock.state.lock().unwrap();
    let records: Vec<&ChatRecord> = state.chats.values().collect();
    let mut first_progress: Vec<Duration> = records
        .iter()
        .filter_map(|r| Some(r.first_progress?.saturating_duration_since(r.delivered?)))
        .collect();
    first_progress.sort();
    let answered = records.iter().filter(|r| r.finals >= 1).count();
    let duplicated = records.iter().filter(|r| r.finals > 1).count();
    let last_final = records.iter().filter_map(|r| r.last_final).max();
    let span = last_final.map_or(elapsed, |last| last.saturating_duration_since(started));

    println!("chats: {expected}");
    println!(
        "answered: {answered}, missing: {}, answered more than once: {duplicated}",
        expected - answered
    );
    println!(
        "throughput: {:.1} messages/s ({} answers in {:.2} s)",
        answered as f64 / span.as_secs_f64(),
        answered,
        span.as_secs_f64()
    );
    println!(
        "first progress after delivery: p50 {}, p99 {}, max {} ({} chats)",
        ms(percentile(&first_progress, 50.0)),
        ms(percentile(&first_progress, 99.0)),
        ms(first_progress.last().copied().unwrap_or_default()),
        first_progress.len()
    );
    println!(
        "peak RSS (VmHWM, daemon and mocks): {} MB",
        proc_status_kb("VmHWM").unwrap_or(0) / 1024
    );
    if !state.unexpected_methods.is_empty() {
        println!(
            "unmocked Bot API methods called: {:?}",
            state.unexpected_methods
        );
    }
    print_answer_metrics(&metrics);

    let passed = finished_in_time && answered == expected && duplicated == 0;
    println!("result: {}", if passed { "PASS" } else { "FAIL" });
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
