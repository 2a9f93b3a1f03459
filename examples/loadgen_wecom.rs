//! Load test of the WeCom self-built app callback, entirely on 127.0.0.1.
//!
//! Runs the daemon's HTTP server in this process with the WeCom app routes (real
//! signature check and AES decryption, the router's durable dedupe on SQLite in a
//! temporary folder, a real coach), points the WeCom API at a mock that accepts
//! `gettoken` and `message/send`, and posts encrypted, signed text callbacks at
//! `--rate` per second for `--secs` seconds, each with its own MsgId and member.
//!
//! It reports the acknowledgement latency (request sent to status received, which
//! covers parse, verify, decrypt, dedupe claim and enqueue) as p50/p99/max, the
//! status codes, and how many answers reached `message/send` afterwards. All
//! callbacks are encrypted before the timed phase, so the client's own crypto
//! does not compete with the server during it. The exit status is 1 when a
//! callback was not acknowledged with 200 or an answer is missing.
//!
//! Run: `cargo run --release --example loadgen_wecom -- --rate 200 --secs 10`

mod common;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Json;
use axum::extract::State;
use axum::routing::{get, post};
use clap::Parser;
use maxwin_channel::{Handler, Secret};
use maxwin_coach::coach::ports::StoreLedger;
use maxwin_coach::server::{DaemonParts, Metrics, Readiness, Router, serve_with_listener};
use maxwin_wecom::{AppSettings, WecomCrypto};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use common::{QUESTIONS, ms, percentile, proc_status_kb};

const CORP_ID: &str = "wwload0000000001";
const AGENT_ID: i64 = 1_000_002;
const CALLBACK_TOKEN: &str = "LoadTestCallbackToken";
/// A valid 43-character EncodingAESKey made up for this test.
const ENCODING_AES_KEY: &str = "LoadTestEncodingAesKey0123456789abcdefghijk";
const CALLBACK_PATH: &str = "/wecom/app";

#[derive(Parser, Debug)]
#[command(about = "Load test of the WeCom app callback acknowledgement against loopback mocks")]
struct Args {
    /// Callbacks sent per second (1 to 2000).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=2000))]
    rate: u32,
    /// How long callbacks are sent, in seconds (1 to 60).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=60))]
    secs: u64,
    /// How long the mock LLM takes to stream one answer, in milliseconds; 0 runs
    /// the coach without an LLM (library cards).
    #[arg(long, default_value_t = 1000)]
    llm_ms: u64,
    /// Seconds to wait for the answers after the last callback.
    #[arg(long, default_value_t = 60)]
    drain_secs: u64,
}

/// Members who received a `message/send`, with the number of messages each.
#[derive(Default)]
struct MockWecom {
    sends: Mutex<HashMap<String, u32>>,
}

async fn gettoken() -> Json<Value> {
    Json(json!({"errcode": 0, "errmsg": "ok", "access_token": "load-token", "expires_in": 7200}))
}

async fn message_send(State(mock): State<Arc<MockWecom>>, Json(body): Json<Value>) -> Json<Value> {
    let user = body["touser"].as_str().unwrap_or_default().to_string();
    let count = {
        let mut sends = mock.sends.lock().unwrap();
        let entry = sends.entry(user).or_default();
        *entry += 1;
        sends.len()
    };
    Json(json!({"errcode": 0, "errmsg": "ok", "invaliduser": "", "msgid": format!("load-{count}")}))
}

async fn start_mock_wecom() -> (String, Arc<MockWecom>) {
    let mock = Arc::new(MockWecom::default());
    let app = axum::Router::new()
        .route("/cgi-bin/gettoken", get(gettoken))
        .route("/cgi-bin/message/send", post(message_send))
        .with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0 for the mock WeCom API");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .expect("mock WeCom API failed");
    });
    (format!("http://{address}"), mock)
}

/// One signed, encrypted callback ready to post.
struct Callback {
    query: String,
    body: String,
}

fn member(index: usize) -> String {
    format!("member{index:05}")
}

fn build_callback(crypto: &WecomCrypto, index: usize) -> Callback {
    let text = QUESTIONS[index % QUESTIONS.len()];
    let inner = format!(
        "<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName>\
         <FromUserName><![CDATA[{user}]]></FromUserName>\
         <CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>\
         <Content><![CDATA[{text}]]></Content><MsgId>{msg_id}</MsgId>\
         <AgentID>{AGENT_ID}</AgentID></xml>",
        user = member(index),
        msg_id = 7_000_000_000_000_000_000u64 + index as u64,
    );
    let encrypt = crypto.encrypt(&inner);
    let timestamp = "1700000000";
    let nonce = format!("nonce{index}");
    let signature = crypto.sign(timestamp, &nonce, &encrypt);
    Callback {
        query: format!("msg_signature={signature}&timestamp={timestamp}&nonce={nonce}"),
        body: format!(
            "<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName>\
             <Encrypt><![CDATA[{encrypt}]]></Encrypt><AgentID><![CDATA[{AGENT_ID}]]></AgentID></xml>"
        ),
    }
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
    let (api_base, mock) = start_mock_wecom().await;
    let llm_url = if args.llm_ms > 0 {
        let card = common::sample_card(&common::project_dir().join("corpus"));
        Some(common::start_mock_llm(card, Duration::from_millis(args.llm_ms)).await)
    } else {
        None
    };

    let mut settings = common::daemon_settings(work_dir.path(), llm_url);
    settings.wecom.app = Some(AppSettings {
        api_base,
        corp_id: CORP_ID.to_string(),
        agent_id: AGENT_ID,
        secret: Secret::new("load-test-app-secret"),
        token: Secret::new(CALLBACK_TOKEN),
        encoding_aes_key: Secret::new(ENCODING_AES_KEY),
        path: CALLBACK_PATH.to_string(),
        ..AppSettings::default()
    });

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
    let routes = maxwin_wecom::router(&settings.wecom, handler)?;
    let parts = DaemonParts::new(router, readiness).with_routes(routes);
    let listener = tokio::net::TcpListener::bind(settings.server.bind).await?;
    let url = format!("http://{}{CALLBACK_PATH}", listener.local_addr()?);
    let (stop, stopped) = oneshot::channel::<()>();
    let daemon = tokio::spawn(serve_with_listener(
        listener,
        parts,
        settings.server.clone(),
        async {
            let _ = stopped.await;
        },
    ));

    let total = (u64::from(args.rate) * args.secs) as usize;
    let crypto = WecomCrypto::new(
        &Secret::new(CALLBACK_TOKEN),
        &Secret::new(ENCODING_AES_KEY),
        CORP_ID,
    )?;
    let callbacks: Vec<Callback> = (0..total).map(|i| build_callback(&crypto, i)).collect();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;

    eprintln!(
        "posting {total} callbacks at {} per second to {url}",
        args.rate
    );
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate)));
    let mut requests = tokio::task::JoinSet::new();
    for callback in callbacks {
        ticker.tick().await;
        let request = client
            .post(format!("{url}?{}", callback.query))
            .header("content-type", "text/xml")
            .body(callback.body);
        requests.spawn(async move {
            let sent = Instant::now();
            let status = request
                .send()
                .await
                .map(|response| response.status().as_u16());
            (sent.elapsed(), status)
        });
    }
    let send_span = started.elapsed();

    let mut latencies = Vec::with_capacity(total);
    let mut statuses: HashMap<String, usize> = HashMap::new();
    while let Some(joined) = requests.join_next().await {
        let (latency, status) = joined.context("a request task panicked")?;
        let label = match status {
            Ok(code) => code.to_string(),
            Err(error) => format!("transport error: {error}"),
        };
        *statuses.entry(label).or_default() += 1;
        latencies.push(latency);
    }
    latencies.sort();

    // Wait for the answers, then stop the daemon.
    let drain_deadline = Instant::now() + Duration::from_secs(args.drain_secs);
    while mock.sends.lock().unwrap().len() < total && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answers_span = started.elapsed();
    let _ = stop.send(());
    daemon.await.context("the daemon task panicked")??;

    let answered = mock.sends.lock().unwrap().len();
    let acked = statuses.get("200").copied().unwrap_or(0);
    println!(
        "callbacks: {total} in {:.2} s ({:.1} per second offered)",
        send_span.as_secs_f64(),
        total as f64 / send_span.as_secs_f64()
    );
    println!("statuses: {statuses:?}");
    println!(
        "ack latency: p50 {}, p99 {}, max {}",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!(
        "members answered through message/send: {answered} of {total} ({:.1} s after the first callback)",
        answers_span.as_secs_f64()
    );
    println!(
        "peak RSS (VmHWM, daemon, mocks and client): {} MB",
        proc_status_kb("VmHWM").unwrap_or(0) / 1024
    );
    let rendered = metrics.render();
    let counters = rendered.lines().filter(|line| {
        line.starts_with("maxwin_answers_total{") || line.starts_with("maxwin_errors_total{")
    });
    for line in counters {
        println!("daemon metric: {line}");
    }

    let passed = acked == total && answered == total;
    println!("result: {}", if passed { "PASS" } else { "FAIL" });
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
