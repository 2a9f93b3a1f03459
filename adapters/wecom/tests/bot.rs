//! The AI robot in callback mode: streams, refreshes, caps, mentions, feedback.

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use maxwin_channel::{Handler, Rating, Secret};
use maxwin_wecom::bot::{BotSettings, bot_router_with_store};
use maxwin_wecom::crypto::WecomCrypto;
use serde_json::{Value, json};
use support::{Answer, RecordingHandler, start_mock_api};
use tower::ServiceExt;

const TOKEN: &str = "QDG6eK";
const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";

fn crypto() -> WecomCrypto {
    WecomCrypto::new(&Secret::new(TOKEN), &Secret::new(AES_KEY), "").unwrap()
}

fn settings() -> BotSettings {
    BotSettings {
        token: Secret::new(TOKEN),
        encoding_aes_key: Secret::new(AES_KEY),
        names: vec!["销售参谋".into()],
        http_timeout_secs: 0,
        ..BotSettings::default()
    }
}

async fn post(router: &Router, payload: &Value) -> (StatusCode, Option<Value>) {
    let crypto = crypto();
    let encrypt = crypto.encrypt(&payload.to_string());
    let signature = crypto.sign("1700000000", "n1", &encrypt);
    let request = Request::post(format!(
        "/wecom/bot?msg_signature={signature}&timestamp=1700000000&nonce=n1"
    ))
    .body(Body::from(json!({ "encrypt": encrypt }).to_string()))
    .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    if bytes.is_empty() {
        return (status, None);
    }
    let envelope: Value = serde_json::from_slice(&bytes).unwrap();
    let encrypt = envelope["encrypt"].as_str().unwrap();
    let timestamp = envelope["timestamp"].as_u64().unwrap().to_string();
    assert_eq!(envelope["nonce"], "n1");
    let inner = crypto
        .open(
            envelope["msgsignature"].as_str().unwrap(),
            &timestamp,
            "n1",
            encrypt,
        )
        .unwrap();
    (status, Some(serde_json::from_str(&inner).unwrap()))
}

fn text_message(msgid: &str, chattype: &str, content: &str, response_url: &str) -> Value {
    json!({
        "msgid": msgid, "aibotid": "aib1", "chatid": "wrgroup1", "chattype": chattype,
        "from": {"userid": "lisi"}, "response_url": response_url,
        "msgtype": "text", "text": {"content": content},
    })
}

fn refresh(stream_id: &str) -> Value {
    json!({"msgid": "r", "aibotid": "aib1", "chattype": "single", "from": {"userid": "lisi"},
           "msgtype": "stream", "stream": {"id": stream_id}})
}

#[tokio::test(start_paused = true)]
async fn stream_refreshes_through_to_finish() {
    let handler = RecordingHandler::new(
        Duration::from_secs(9),
        Answer::Streamed(
            vec!["客户".into(), "客户价值".into()],
            "客户价值优先。".into(),
        ),
    );
    let (router, _) =
        bot_router_with_store(&settings(), handler.clone() as Arc<dyn Handler>).unwrap();
    let (status, reply) = post(
        &router,
        &text_message("m1", "group", "@销售参谋 客户压价", ""),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let reply = reply.unwrap();
    assert_eq!(reply["msgtype"], "stream");
    assert_eq!(reply["stream"]["finish"], false);
    let stream_id = reply["stream"]["id"].as_str().unwrap().to_string();

    let inbound = handler.accepted.lock().unwrap()[0].clone();
    assert_eq!(inbound.text, "客户压价");
    assert_eq!(inbound.conversation, "wrgroup1");
    assert!(!inbound.is_direct);

    let mut seen = Vec::new();
    for _ in 0..30 {
        tokio::time::advance(Duration::from_secs(1)).await;
        let (_, body) = post(&router, &refresh(&stream_id)).await;
        let body = body.unwrap();
        seen.push(body["stream"]["content"].as_str().unwrap().to_string());
        if body["stream"]["finish"] == true {
            assert_eq!(body["stream"]["feedback"]["id"], stream_id.as_str());
            break;
        }
    }
    assert!(seen.contains(&"客户价值".to_string()));
    assert_eq!(seen.last().unwrap(), "客户价值优先。");
}

#[tokio::test]
async fn unknown_stream_refresh_finishes() {
    let handler = RecordingHandler::new(Duration::ZERO, Answer::Text("x".into()));
    let (router, _) = bot_router_with_store(&settings(), handler as Arc<dyn Handler>).unwrap();
    let (_, body) = post(&router, &refresh("nope")).await;
    assert_eq!(body.unwrap()["stream"]["finish"], true);
}

#[tokio::test]
async fn answer_over_stream_cap_continues_via_response_url() {
    let (base, mock) = start_mock_api().await;
    let long: String = (0..600)
        .map(|i| format!("第{i}段：先确认客户的真实顾虑。\n"))
        .collect();
    assert!(long.len() > 20480);
    let handler = RecordingHandler::new(Duration::ZERO, Answer::Text(long.clone()));
    let (router, store) =
        bot_router_with_store(&settings(), handler.clone() as Arc<dyn Handler>).unwrap();
    let url = format!("{base}/cgi-bin/aibot/response?response_code=abc");
    let (_, reply) = post(&router, &text_message("m2", "single", "长回答", &url)).await;
    let stream_id = reply.unwrap()["stream"]["id"].as_str().unwrap().to_string();
    for _ in 0..200 {
        if !handler.results.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let state = store.get(&stream_id).unwrap();
    assert!(state.finished);
    assert!(state.content.len() <= 20480);
    let calls = mock.calls_to("/cgi-bin/aibot/response");
    assert_eq!(calls.len(), 1);
    let rest = calls[0].body["markdown"]["content"].as_str().unwrap();
    assert!(rest.len() <= 20480);
    let shown_lines = state
        .content
        .lines()
        .filter(|l| l.starts_with('第'))
        .count();
    let rest_lines = rest.lines().filter(|l| l.starts_with('第')).count();
    assert_eq!(shown_lines + rest_lines, 600);
}

#[tokio::test]
async fn redelivered_message_reuses_stream() {
    let handler = RecordingHandler::new(Duration::from_secs(3600), Answer::Text("x".into()));
    let (router, _) =
        bot_router_with_store(&settings(), handler.clone() as Arc<dyn Handler>).unwrap();
    let message = text_message("m3", "single", "你好", "");
    let (_, first) = post(&router, &message).await;
    let (_, second) = post(&router, &message).await;
    assert_eq!(
        first.unwrap()["stream"]["id"],
        second.unwrap()["stream"]["id"]
    );
    let accepted = handler.accepted.lock().unwrap();
    assert_eq!(accepted.len(), 2);
    assert!(accepted[0].is_direct);
    assert_eq!(accepted[0].conversation, "lisi");
}

#[tokio::test]
async fn feedback_event_reaches_handler() {
    let handler = RecordingHandler::new(Duration::ZERO, Answer::Text("x".into()));
    let (router, _) =
        bot_router_with_store(&settings(), handler.clone() as Arc<dyn Handler>).unwrap();
    let event = json!({"msgid": "e1", "aibotid": "aib1", "chattype": "single", "from": {"userid": "lisi"},
        "msgtype": "event", "event": {"eventtype": "feedback_event", "feedback_event": {"id": "s1", "type": 2}}});
    let (status, body) = post(&router, &event).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_none());
    let feedback = handler.feedback.lock().unwrap();
    assert_eq!(feedback.len(), 1);
    assert_eq!(feedback[0].answer_message_id, "s1");
    assert_eq!(feedback[0].rating, Some(Rating::Down));
}

#[tokio::test(start_paused = true)]
async fn stream_closes_before_window_and_follows_up() {
    let (base, mock) = start_mock_api().await;
    let handler = RecordingHandler::new(
        Duration::from_secs(7 * 60),
        Answer::Text("迟到的完整回答".into()),
    );
    let (router, _) =
        bot_router_with_store(&settings(), handler.clone() as Arc<dyn Handler>).unwrap();
    let url = format!("{base}/cgi-bin/aibot/response?response_code=late");
    let (_, reply) = post(&router, &text_message("m5", "single", "慢问题", &url)).await;
    let stream_id = reply.unwrap()["stream"]["id"].as_str().unwrap().to_string();
    // Let the answer task start its clock before time moves.
    tokio::task::yield_now().await;

    tokio::time::advance(Duration::from_secs(5 * 60)).await;
    let (_, body) = post(&router, &refresh(&stream_id)).await;
    assert_eq!(body.unwrap()["stream"]["finish"], false);

    tokio::time::advance(Duration::from_secs(31)).await;
    let (_, body) = post(&router, &refresh(&stream_id)).await;
    let body = body.unwrap();
    assert_eq!(body["stream"]["finish"], true);
    assert!(
        body["stream"]["content"]
            .as_str()
            .unwrap()
            .contains("下一条")
    );

    tokio::time::advance(Duration::from_secs(2 * 60)).await;
    tokio::time::resume();
    for _ in 0..200 {
        if !handler.results.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(handler.results.lock().unwrap()[0].is_ok());
    let calls = mock.calls_to("/cgi-bin/aibot/response");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].body["markdown"]["content"], "迟到的完整回答");
}

#[tokio::test]
async fn group_command_after_mention() {
    let handler = RecordingHandler::new(Duration::from_secs(3600), Answer::Text("x".into()));
    let (router, _) =
        bot_router_with_store(&settings(), handler.clone() as Arc<dyn Handler>).unwrap();
    post(
        &router,
        &text_message("m6", "group", "@张三 ＠销售参谋 /reset", ""),
    )
    .await;
    post(&router, &text_message("m7", "single", "/reset", "")).await;
    let accepted = handler.accepted.lock().unwrap();
    assert_eq!(accepted[0].text, "/reset");
    assert_eq!(accepted[1].text, "/reset");
    assert_eq!(accepted[0].conversation, "wrgroup1");
    assert_eq!(accepted[1].conversation, "lisi");
    assert!(accepted[0].mentions_bot);
}
