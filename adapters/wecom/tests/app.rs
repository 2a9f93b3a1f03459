//! The self-built app against a mock WeCom API on 127.0.0.1.

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use maxwin_channel::{Handler, Secret};
use maxwin_wecom::app::{AppSettings, app_router};
use maxwin_wecom::crypto::WecomCrypto;
use support::{Answer, RecordingHandler, start_mock_api};
use tower::ServiceExt;

const CORP: &str = "wwcorp0001";
const AGENT: i64 = 1000002;
const TOKEN: &str = "QDG6eK";
const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";

fn settings(api_base: &str) -> AppSettings {
    AppSettings {
        api_base: api_base.to_string(),
        corp_id: CORP.into(),
        agent_id: AGENT,
        secret: Secret::new("app-secret"),
        token: Secret::new(TOKEN),
        encoding_aes_key: Secret::new(AES_KEY),
        http_timeout_secs: 0,
        ..AppSettings::default()
    }
}

fn crypto(receive_id: &str) -> WecomCrypto {
    WecomCrypto::new(&Secret::new(TOKEN), &Secret::new(AES_KEY), receive_id).unwrap()
}

fn text_xml(msg_id: &str, user: &str, content: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>\
         <CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>\
         <Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId><AgentID>{AGENT}</AgentID></xml>"
    )
}

/// Builds a signed POST callback carrying `inner`, sealed for `receive_id`.
fn callback(inner: &str, receive_id: &str, good_signature: bool) -> Request<Body> {
    let crypto = crypto(receive_id);
    let encrypt = crypto.encrypt(inner);
    let mut signature = crypto.sign("1700000000", "nonce1", &encrypt);
    if !good_signature {
        signature = "0".repeat(40);
    }
    let body = format!(
        "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><AgentID><![CDATA[{AGENT}]]></AgentID><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    );
    Request::post(format!(
        "/wecom/app?msg_signature={signature}&timestamp=1700000000&nonce=nonce1"
    ))
    .body(Body::from(body))
    .unwrap()
}

async fn send(router: &Router, request: Request<Body>) -> (StatusCode, String) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn setup(
    delay: Duration,
    answer: Answer,
) -> (Router, Arc<RecordingHandler>, Arc<support::MockState>) {
    let (base, mock) = start_mock_api().await;
    let handler = RecordingHandler::new(delay, answer);
    let router = app_router(&settings(&base), handler.clone() as Arc<dyn Handler>).unwrap();
    (router, handler, mock)
}

async fn wait_answers(handler: &RecordingHandler, count: usize) {
    for _ in 0..200 {
        if handler.results.lock().unwrap().len() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("expected {count} answers");
}

#[tokio::test]
async fn url_verification_returns_bare_plaintext() {
    let (router, _, _) = setup(Duration::ZERO, Answer::Text("x".into())).await;
    let crypto = crypto(CORP);
    // Find an echostr with '+' so the test covers percent-decoding.
    let (echostr, plain) = (0..200)
        .map(|i| {
            let plain = format!("echo-{i}");
            (crypto.encrypt(&plain), plain)
        })
        .find(|(echo, _)| echo.contains('+'))
        .unwrap();
    let signature = crypto.sign("1700000000", "n", &echostr);
    let encoded = echostr
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let request = Request::get(format!(
        "/wecom/app?msg_signature={signature}&timestamp=1700000000&nonce=n&echostr={encoded}"
    ))
    .body(Body::empty())
    .unwrap();
    assert_eq!(
        send(&router, request).await,
        (StatusCode::OK, plain.clone())
    );

    // A raw, unencoded '+' is a literal '+' of the base64 text.
    let request = Request::get(format!(
        "/wecom/app?msg_signature={signature}&timestamp=1700000000&nonce=n&echostr={echostr}"
    ))
    .body(Body::empty())
    .unwrap();
    assert_eq!(send(&router, request).await, (StatusCode::OK, plain));
}

#[tokio::test]
async fn url_verification_with_wrong_signature_is_rejected() {
    let (router, _, _) = setup(Duration::ZERO, Answer::Text("x".into())).await;
    let echostr = crypto(CORP).encrypt("hello");
    let request = Request::get(format!(
        "/wecom/app?msg_signature={}&timestamp=1&nonce=n&echostr={}",
        "a".repeat(40),
        echostr.replace('+', "%2B")
    ))
    .body(Body::empty())
    .unwrap();
    assert_eq!(send(&router, request).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test(start_paused = true)]
async fn redelivered_message_during_slow_answer_sends_once() {
    let (router, handler, mock) = setup(Duration::from_secs(20), Answer::Text("回答".into())).await;
    let xml = text_xml("7300000000000000001", "zhangsan", "客户说太贵");
    for _ in 0..3 {
        let started = tokio::time::Instant::now();
        let (status, body) = send(&router, callback(&xml, CORP, true)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "");
        assert!(started.elapsed() < Duration::from_secs(1));
        // Let the answer task start its clock before time moves.
        tokio::task::yield_now().await;
        // WeCom redelivers after its 5-second deadline.
        tokio::time::advance(Duration::from_secs(5)).await;
    }
    assert_eq!(handler.accepted.lock().unwrap().len(), 3);
    assert!(mock.calls_to("/cgi-bin/message/send").is_empty());
    tokio::time::advance(Duration::from_secs(10)).await;
    tokio::time::resume();
    wait_answers(&handler, 1).await;
    let sends = mock.calls_to("/cgi-bin/message/send");
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].body["touser"], "zhangsan");
    assert_eq!(sends[0].body["agentid"], AGENT);
    assert_eq!(sends[0].body["text"]["content"], "回答");
    let inbound = handler.accepted.lock().unwrap()[0].clone();
    assert_eq!(inbound.tenant, format!("{CORP}:{AGENT}"));
    assert_eq!(inbound.message_id, "7300000000000000001");
    assert!(inbound.is_direct);
}

#[tokio::test]
async fn two_msgids_same_second_get_two_answers() {
    let (router, handler, mock) = setup(Duration::ZERO, Answer::Text("ok".into())).await;
    let first = send(
        &router,
        callback(&text_xml("1", "lisi", "第一条"), CORP, true),
    )
    .await;
    let second = send(
        &router,
        callback(&text_xml("2", "lisi", "第二条"), CORP, true),
    )
    .await;
    assert_eq!(first.0, StatusCode::OK);
    assert_eq!(second.0, StatusCode::OK);
    wait_answers(&handler, 2).await;
    assert_eq!(mock.calls_to("/cgi-bin/message/send").len(), 2);
}

#[tokio::test]
async fn ignored_callbacks_are_acknowledged() {
    let (router, handler, _) = setup(Duration::ZERO, Answer::Text("ok".into())).await;
    let event = format!(
        "<xml><ToUserName>{CORP}</ToUserName><FromUserName>zhangsan</FromUserName><CreateTime>1</CreateTime>\
         <MsgType>event</MsgType><Event>enter_agent</Event><AgentID>{AGENT}</AgentID></xml>"
    );
    let empty = text_xml("5", "zhangsan", "");
    let image = format!(
        "<xml><FromUserName>zhangsan</FromUserName><MsgType>image</MsgType><MsgId>6</MsgId><AgentID>{AGENT}</AgentID></xml>"
    );
    let no_msgid = format!(
        "<xml><FromUserName>zhangsan</FromUserName><MsgType>text</MsgType><Content>hi</Content><AgentID>{AGENT}</AgentID></xml>"
    );
    for inner in [event, empty, image, no_msgid, "<xml><unclosed>".to_string()] {
        let (status, body) = send(&router, callback(&inner, CORP, true)).await;
        assert_eq!(status, StatusCode::OK, "inner {inner}");
        assert_eq!(body, "");
    }
    assert!(handler.accepted.lock().unwrap().is_empty());
}

#[tokio::test]
async fn forged_callbacks_are_rejected() {
    let (router, handler, _) = setup(Duration::ZERO, Answer::Text("ok".into())).await;
    let xml = text_xml("9", "zhangsan", "hi");
    assert_eq!(
        send(&router, callback(&xml, CORP, false)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&router, callback(&xml, "wwother", true)).await.0,
        StatusCode::FORBIDDEN
    );
    let malformed = Request::post("/wecom/app?msg_signature=00&timestamp=1&nonce=2")
        .body(Body::from("<xml><Encrypt>"))
        .unwrap();
    assert_eq!(send(&router, malformed).await.0, StatusCode::BAD_REQUEST);
    assert!(handler.accepted.lock().unwrap().is_empty());
}

#[tokio::test]
async fn long_chinese_answer_is_split_losslessly() {
    let answer: String = (0..100).map(|i| format!("第{i}行：客户价值。\n")).collect();
    assert!(answer.len() > 2048);
    let (router, handler, mock) = setup(Duration::ZERO, Answer::Text(answer.clone())).await;
    send(
        &router,
        callback(&text_xml("11", "wangwu", "长回答"), CORP, true),
    )
    .await;
    wait_answers(&handler, 1).await;
    let sends = mock.calls_to("/cgi-bin/message/send");
    assert!(sends.len() >= 2);
    let mut joined = String::new();
    for call in &sends {
        let content = call.body["text"]["content"].as_str().unwrap();
        assert!(content.len() <= 2048, "part of {} bytes", content.len());
        joined.push_str(content);
        joined.push('\n');
    }
    assert_eq!(joined, answer);
}

#[tokio::test]
async fn expired_token_is_refetched_once() {
    let (router, handler, mock) = setup(Duration::ZERO, Answer::Text("ok".into())).await;
    mock.expired_tokens.lock().unwrap().insert("token-1".into());
    send(
        &router,
        callback(&text_xml("21", "zhaoliu", "hi"), CORP, true),
    )
    .await;
    wait_answers(&handler, 1).await;
    assert!(handler.results.lock().unwrap()[0].is_ok());
    assert_eq!(mock.calls_to("/cgi-bin/gettoken").len(), 2);
    let sends = mock.calls_to("/cgi-bin/message/send");
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[1].query["access_token"], "token-2");
}

#[tokio::test]
async fn busy_errcode_is_retried() {
    let (router, handler, mock) = setup(Duration::ZERO, Answer::Text("ok".into())).await;
    mock.send_errcodes.lock().unwrap().extend([-1, -1]);
    send(
        &router,
        callback(&text_xml("31", "zhaoliu", "hi"), CORP, true),
    )
    .await;
    wait_answers(&handler, 1).await;
    assert!(handler.results.lock().unwrap()[0].is_ok());
    assert_eq!(mock.calls_to("/cgi-bin/message/send").len(), 3);
}

#[tokio::test]
async fn concurrent_sends_fetch_one_token() {
    let (base, mock) = start_mock_api().await;
    *mock.token_delay.lock().unwrap() = Duration::from_millis(200);
    let api = Arc::new(maxwin_wecom::api::AppApi::new(
        &base,
        CORP,
        AGENT,
        &Secret::new("s"),
        0,
    ));
    let mut tasks = Vec::new();
    for i in 0..10 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            api.send(
                &format!("user{i}"),
                "text",
                serde_json::json!({"content": "hi"}),
            )
            .await
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap().is_ok());
    }
    assert_eq!(mock.calls_to("/cgi-bin/gettoken").len(), 1);
    assert_eq!(mock.calls_to("/cgi-bin/message/send").len(), 10);
}

#[tokio::test(start_paused = true)]
async fn many_parts_are_paced_per_member() {
    let answer: String = (0..30)
        .map(|i| format!("{i:02}{}\n", "销".repeat(600)))
        .collect();
    let (router, handler, mock) = setup(Duration::ZERO, Answer::Text(answer)).await;
    let start = tokio::time::Instant::now();
    send(
        &router,
        callback(&text_xml("41", "qianqi", "hi"), CORP, true),
    )
    .await;
    for _ in 0..100_000 {
        if !handler.results.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(handler.results.lock().unwrap()[0].is_ok());
    assert_eq!(mock.calls_to("/cgi-bin/message/send").len(), 30);
    // 28 per minute by default: the last two parts wait for the next minute.
    assert!(start.elapsed() >= Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn token_refreshed_before_expiry() {
    let (base, mock) = start_mock_api().await;
    *mock.token_expires_in.lock().unwrap() = 400;
    let cache = maxwin_wecom::api::AccessTokenCache::new(
        maxwin_wecom::api::http_client(0),
        &base,
        CORP,
        &Secret::new("s"),
    );
    assert_eq!(cache.get().await.unwrap(), "token-1");
    tokio::time::advance(Duration::from_secs(90)).await;
    assert_eq!(cache.get().await.unwrap(), "token-1");
    // 400 s lifetime minus the 300 s margin: refreshed after 100 s.
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(cache.get().await.unwrap(), "token-2");
    assert_eq!(mock.calls_to("/cgi-bin/gettoken").len(), 2);
}
