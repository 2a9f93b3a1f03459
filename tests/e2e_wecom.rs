//! WeCom scenarios through the whole daemon: callbacks over HTTP into the real
//! router, coach and store, answers out to a mock WeCom API, a mock LLM behind.
//!
//! Every scenario runs twice: on SQLite (module `sqlite`) and on a fresh
//! PostgreSQL database from `TEST_DATABASE_URL` (module `postgres`, skipped
//! with a notice when the variable is unset).
//!
//! The stack talks over real loopback sockets, so these tests use real time:
//! tokio's paused clock would jump ahead whenever the runtime waits on a socket
//! and fire the HTTP and database timeouts early.

#[path = "support/mock_llm.rs"]
mod mock_llm;
#[path = "support/store.rs"]
mod test_store;
#[path = "support/wecom_app.rs"]
mod wecom_app;
#[path = "../adapters/wecom/tests/support/mod.rs"]
mod wecom_mock;

use std::time::Duration;

use maxwin_channel::Secret;
use maxwin_wecom::WecomCrypto;
use serde_json::json;

use mock_llm::MockResponse;
use wecom_app::{
    AES_KEY, AGENT_ID, APP_PATH, BOT_ID, BOT_NAME, BOT_PATH, Backend, Llm, Stack, TOKEN, app_text,
    bot_text, card_answer, signed_query, streamed, wait_until,
};

/// How long the mock LLM waits before it responds in the redelivery scenario.
/// WeCom redelivers after 5 s, but a few seconds are enough for three deliveries
/// to overlap one answer in progress, and they keep the suite fast.
const LLM_DELAY: Duration = Duration::from_secs(3);
/// How long a test waits to be sure that nothing more is sent.
const QUIET: Duration = Duration::from_millis(500);

/// The max acknowledgement time. WeCom waits 5 s, and the suite requires 1 s.
const ACK_LIMIT: Duration = Duration::from_secs(1);

const PRICE_QUESTION: &str = "客户说我们的报价比竞品高，要求打八折，我该怎么回复？";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn without_whitespace(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

fn send_content(call: &wecom_mock::Call) -> String {
    let msgtype = call.body["msgtype"].as_str().unwrap();
    call.body[msgtype]["content"].as_str().unwrap().to_string()
}

/// Waits until the coach has stored `count` answers, so every part of them was sent.
async fn wait_for_answers(stack: &Stack, count: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while stack.count("SELECT COUNT(*) FROM messages").await < count {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {count} stored answers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn redelivered_msgid_answered_once(backend: Backend) {
    let script = vec![
        MockResponse::chat_stream(&[&card_answer("重复投递只答一次", "先确认预算范围。")])
            .delay_headers(LLM_DELAY),
    ];
    let Some(stack) = Stack::start(backend, "redelivered_msgid", Llm::Scripted(script)).await
    else {
        return;
    };
    let xml = app_text("zhangsan", "7310000000000000001", now(), PRICE_QUESTION);

    for delivery in 1..=3 {
        let answered = stack.post_app(&xml).await;
        assert_eq!(answered.status, 200, "delivery {delivery} acknowledged");
        assert_eq!(answered.body, "", "delivery {delivery} has an empty body");
        assert!(
            answered.elapsed < ACK_LIMIT,
            "delivery {delivery} took {:?}",
            answered.elapsed
        );
    }
    assert!(
        stack.sends().is_empty(),
        "all deliveries arrived while the LLM was still writing"
    );

    let sends = stack.wait_for_sends(1).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(stack.sends().len(), 1, "exactly one answer was sent");
    assert_eq!(sends[0].body["touser"], "zhangsan");
    assert_eq!(sends[0].body["agentid"], AGENT_ID);
    assert_eq!(sends[0].body["msgtype"], "markdown");
    assert!(send_content(&sends[0]).contains("重复投递只答一次"));
    assert_eq!(stack.llm.request_count(), 1);
    assert_eq!(stack.processed_events().await, 1);
    stack.shutdown().await;
}

async fn redelivery_after_restart_ignored(backend: Backend) {
    let script = vec![MockResponse::chat_stream(&[&card_answer(
        "重启之前的回答",
        "先确认预算范围。",
    )])];
    let Some(mut stack) =
        Stack::start(backend, "redelivery_after_restart", Llm::Scripted(script)).await
    else {
        return;
    };
    let xml = app_text("lisi", "7310000000000000002", now(), PRICE_QUESTION);

    assert_eq!(stack.post_app(&xml).await.status, 200);
    stack.wait_for_sends(1).await;
    stack.restart().await;

    let answered = stack.post_app(&xml).await;
    assert_eq!(answered.status, 200);
    assert_eq!(answered.body, "");
    tokio::time::sleep(QUIET * 2).await;
    assert_eq!(stack.sends().len(), 1, "no second answer after the restart");
    assert_eq!(stack.llm.request_count(), 1);
    assert_eq!(stack.processed_events().await, 1);
    stack.shutdown().await;
}

async fn two_msgids_same_second_both_answered(backend: Backend) {
    let script = vec![
        MockResponse::chat_stream(&[&card_answer("第一条的回答", "先确认预算范围。")]),
        MockResponse::chat_stream(&[&card_answer("第二条的回答", "再约决策人见面。")]),
    ];
    let Some(stack) = Stack::start(backend, "two_msgids", Llm::Scripted(script)).await else {
        return;
    };
    let second = now();

    for (msg_id, text) in [
        ("7310000000000000011", PRICE_QUESTION),
        (
            "7310000000000000012",
            "客户又说预算只有五十万，我该怎么谈？",
        ),
    ] {
        let answered = stack
            .post_app(&app_text("wangwu", msg_id, second, text))
            .await;
        assert_eq!(answered.status, 200);
    }

    let sends = stack.wait_for_sends(2).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(stack.sends().len(), 2);
    let contents: Vec<String> = sends.iter().map(send_content).collect();
    assert_eq!(
        contents
            .iter()
            .filter(|c| c.contains("第一条的回答"))
            .count(),
        1
    );
    assert_eq!(
        contents
            .iter()
            .filter(|c| c.contains("第二条的回答"))
            .count(),
        1
    );
    assert_eq!(stack.llm.request_count(), 2);
    assert_eq!(stack.processed_events().await, 2);
    stack.shutdown().await;
}

async fn unanswerable_callbacks_acknowledged(backend: Backend) {
    let Some(stack) = Stack::start(backend, "unanswerable", Llm::Scripted(Vec::new())).await else {
        return;
    };
    let created = now();
    let cases = [
        (
            "event without MsgId",
            format!(
                "<xml><ToUserName><![CDATA[ww]]></ToUserName><FromUserName><![CDATA[zhaoliu]]></FromUserName><CreateTime>{created}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[enter_agent]]></Event><EventKey><![CDATA[]]></EventKey><AgentID>{AGENT_ID}</AgentID></xml>"
            ),
        ),
        (
            "empty Content",
            app_text("zhaoliu", "7310000000000000021", created, ""),
        ),
        (
            "blank Content",
            app_text("zhaoliu", "7310000000000000022", created, "  \n "),
        ),
        (
            "text without MsgId",
            format!(
                "<xml><FromUserName><![CDATA[zhaoliu]]></FromUserName><CreateTime>{created}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[客户嫌贵]]></Content><AgentID>{AGENT_ID}</AgentID></xml>"
            ),
        ),
        (
            "malformed XML",
            "<xml><MsgType><![CDATA[text]]></MsgType><Content>客户嫌贵".to_string(),
        ),
        ("not XML at all", "客户嫌贵怎么办".to_string()),
    ];

    for (case, xml) in &cases {
        let answered = stack.post_app(xml).await;
        assert_eq!(answered.status, 200, "{case}: acknowledged");
        assert_eq!(answered.body, "", "{case}: empty body");
    }

    tokio::time::sleep(QUIET).await;
    assert!(stack.sends().is_empty(), "nothing was answered");
    assert_eq!(stack.llm.request_count(), 0);
    assert_eq!(stack.processed_events().await, 0);
    stack.shutdown().await;
}

async fn forged_callbacks_rejected(backend: Backend) {
    let Some(stack) = Stack::start(backend, "forged", Llm::Scripted(Vec::new())).await else {
        return;
    };
    let xml = app_text("sunqi", "7310000000000000031", now(), PRICE_QUESTION);

    // Signed with another token: the signature does not match.
    let forger = WecomCrypto::new(&Secret::new("otherToken"), &Secret::new(AES_KEY), "")
        .expect("valid forger crypto");
    let encrypt = stack.app_crypto.encrypt(&xml);
    let body = format!("<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>");
    let answered = stack
        .post_raw(APP_PATH, &signed_query(&forger, &encrypt), body)
        .await;
    assert_eq!(answered.status, 401, "wrong signature");

    // Properly signed and encrypted, but for another corp.
    let other_corp = WecomCrypto::new(&Secret::new(TOKEN), &Secret::new(AES_KEY), "wwothercorp")
        .expect("valid crypto");
    let answered = stack.post_app_with(&other_corp, &xml).await;
    assert_eq!(answered.status, 403, "wrong receive id");

    // The AI robot route checks the signature too.
    let payload = bot_text(&stack, "sunqi", "bot-forged-1", None, PRICE_QUESTION);
    let encrypt = stack.bot_crypto.encrypt(&payload.to_string());
    let answered = stack
        .post_raw(
            BOT_PATH,
            &signed_query(&forger, &encrypt),
            json!({ "encrypt": encrypt }).to_string(),
        )
        .await;
    assert_eq!(answered.status, 401, "wrong AI robot signature");

    tokio::time::sleep(QUIET).await;
    assert!(stack.sends().is_empty());
    assert_eq!(stack.llm.request_count(), 0);
    assert_eq!(stack.processed_events().await, 0);
    stack.shutdown().await;
}

async fn long_chinese_answer_split(backend: Backend) {
    // About 2,700 bytes in one line, so it must be cut inside a line.
    let long_action: String = (1..=60)
        .map(|n| format!("第{n}步先复述客户的顾虑再给出案例。"))
        .collect();
    let answer = card_answer("长回答的诊断", &long_action);
    assert!(answer.len() > 3_000, "the answer is {} bytes", answer.len());
    let script = vec![MockResponse::chat_stream(&[&answer])];
    let Some(stack) = Stack::start(backend, "long_answer", Llm::Scripted(script)).await else {
        return;
    };

    let answered = stack
        .post_app(&app_text(
            "zhouba",
            "7310000000000000041",
            now(),
            PRICE_QUESTION,
        ))
        .await;
    assert_eq!(answered.status, 200);
    wait_for_answers(&stack, 1).await;

    let sends = stack.sends();
    assert!(sends.len() >= 2, "split into {} messages", sends.len());
    for call in &sends {
        assert_eq!(call.body["msgtype"], "markdown");
        let content = send_content(call);
        assert!(content.len() <= 2048, "a part has {} bytes", content.len());
        assert!(
            !content.contains('\u{FFFD}'),
            "a part has a broken character"
        );
    }
    let joined = without_whitespace(&sends.iter().map(send_content).collect::<String>());
    for expected in [
        "长回答的诊断",
        long_action.as_str(),
        "约采购负责人和使用部门一起开一次短会。",
        "用分期付款代替直接降价。",
        "您最担心的是总价，还是付款节奏？",
    ] {
        assert!(
            joined.contains(&without_whitespace(expected)),
            "the parts lost {expected:?}"
        );
    }
    stack.shutdown().await;
}

async fn private_fact_stays_out_of_group(backend: Backend) {
    let script = (1..=3)
        .map(|n| {
            MockResponse::chat_stream(&[&card_answer(&format!("第{n}次回答"), "先确认预算。")])
        })
        .collect();
    let Some(stack) = Stack::start(backend, "private_fact", Llm::Scripted(script)).await else {
        return;
    };
    let fact = "华为的底价是八十三万";
    let messages = [
        (
            None,
            format!("我们给{fact}，客户嫌贵要打八折，我该怎么回复？"),
        ),
        (None, "客户还是嫌贵，下一轮报价怎么谈？".to_string()),
        (
            Some("wrgroupe2e01"),
            format!("@{BOT_NAME} 客户嫌贵要打八折，我该怎么回复？"),
        ),
    ];

    for (n, (chat, text)) in messages.iter().enumerate() {
        let msg_id = format!("bot-private-{n}");
        let payload = bot_text(&stack, "qianjiu", &msg_id, *chat, text);
        let (answered, reply) = stack.post_bot(&payload).await;
        assert_eq!(answered.status, 200);
        let reply = reply.expect("a message gets a stream reply");
        let stream_id = reply["stream"]["id"].as_str().unwrap().to_string();
        let polled = stack.poll_stream(&stream_id, "qianjiu").await;
        assert!(
            polled
                .last()
                .unwrap()
                .0
                .contains(&format!("第{}次回答", n + 1))
        );
    }

    let requests = stack.llm.requests();
    assert_eq!(requests.len(), 3);
    let single_follow_up = requests[1].json.to_string();
    assert!(
        single_follow_up.contains(fact),
        "the single chat's history reaches the LLM"
    );
    let group = requests[2].json.to_string();
    assert!(
        !group.contains(fact),
        "the private fact leaked into the group answer"
    );
    assert!(
        !group.contains(&format!("@{BOT_NAME}")),
        "the @-mention is stripped"
    );
    stack.shutdown().await;
}

async fn bot_stream_refreshes_to_finish(backend: Backend) {
    let answer = card_answer("流式回答的诊断", "先确认预算范围。");
    let script = vec![streamed(&answer, Duration::from_millis(150))];
    let Some(stack) = Stack::start(backend, "bot_stream", Llm::Scripted(script)).await else {
        return;
    };

    let payload = bot_text(&stack, "wushi", "bot-stream-1", None, PRICE_QUESTION);
    let (answered, reply) = stack.post_bot(&payload).await;
    assert_eq!(answered.status, 200);
    assert!(answered.elapsed < ACK_LIMIT);
    let reply = reply.expect("a message gets a stream reply");
    assert_eq!(reply["msgtype"], "stream");
    assert_eq!(reply["stream"]["finish"], false);
    let stream_id = reply["stream"]["id"].as_str().unwrap().to_string();

    let polled = stack.poll_stream(&stream_id, "wushi").await;
    let (last, rest) = polled.split_last().unwrap();
    assert!(last.1, "the last refresh finishes the stream");
    assert!(rest.iter().all(|(_, finished)| !finished));
    assert!(last.0.contains("流式回答的诊断"));
    assert!(last.0.len() <= 20_480);
    let partial: Vec<&String> = rest
        .iter()
        .map(|(content, _)| content)
        .filter(|content| !content.is_empty())
        .collect();
    assert!(
        !partial.is_empty(),
        "some refresh showed the answer in progress"
    );
    for pair in partial.windows(2) {
        assert!(
            pair[1].starts_with(pair[0].as_str()),
            "stream content is cumulative"
        );
    }
    assert!(stack.sends().is_empty());
    assert!(stack.follow_ups().is_empty());
    stack.shutdown().await;
}

async fn bot_answer_over_stream_cap_continues(backend: Backend) {
    // About 27,000 bytes in one line.
    let long_action: String = (1..=600)
        .map(|n| format!("第{n}步复述顾虑并给案例。"))
        .collect();
    let answer = card_answer("超长回答的诊断", &long_action);
    assert!(answer.len() > 20_480);
    let script = vec![streamed(&answer, Duration::from_millis(20))];
    let Some(stack) = Stack::start(backend, "bot_stream_cap", Llm::Scripted(script)).await else {
        return;
    };

    let payload = bot_text(&stack, "zhengshiyi", "bot-cap-1", None, PRICE_QUESTION);
    let (answered, reply) = stack.post_bot(&payload).await;
    assert_eq!(answered.status, 200);
    let stream_id = reply.unwrap()["stream"]["id"].as_str().unwrap().to_string();
    let polled = stack.poll_stream(&stream_id, "zhengshiyi").await;
    for (content, _) in &polled {
        assert!(
            content.len() <= 20_480,
            "a refresh has {} bytes",
            content.len()
        );
    }

    wait_until("the response_url follow-up", || {
        !stack.follow_ups().is_empty()
    })
    .await;
    let follow_ups = stack.follow_ups();
    assert_eq!(follow_ups.len(), 1);
    assert_eq!(follow_ups[0].query["response_code"], "bot-cap-1");
    assert_eq!(follow_ups[0].body["msgtype"], "markdown");
    let follow_up = follow_ups[0].body["markdown"]["content"].as_str().unwrap();
    assert!(follow_up.len() <= 20_480);

    let streamed_part = &polled.last().unwrap().0;
    let note = streamed_part
        .rfind("\n\n……")
        .expect("the stream says the answer continues");
    let joined = without_whitespace(&format!("{}{follow_up}", &streamed_part[..note]));
    assert!(joined.contains("超长回答的诊断"));
    assert!(
        joined.contains(&without_whitespace(&long_action)),
        "the follow-up continues the answer without a gap"
    );
    stack.shutdown().await;
}

async fn feedback_stored_against_answer(backend: Backend) {
    let script = vec![MockResponse::chat_stream(&[&card_answer(
        "会被点赞的回答",
        "先确认预算范围。",
    )])];
    let Some(stack) = Stack::start(backend, "feedback", Llm::Scripted(script)).await else {
        return;
    };

    let payload = bot_text(&stack, "fengshier", "bot-feedback-1", None, PRICE_QUESTION);
    let (_, reply) = stack.post_bot(&payload).await;
    let stream_id = reply.unwrap()["stream"]["id"].as_str().unwrap().to_string();
    stack.poll_stream(&stream_id, "fengshier").await;
    // The delivery is linked right after the stream finishes; a person clicks later.
    let linked =
        format!("SELECT COUNT(*) FROM deliveries WHERE platform_message_id = '{stream_id}'");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while stack.count(&linked).await < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "delivery never linked"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let event = json!({
        "msgid": "bot-feedback-event-1",
        "aibotid": BOT_ID,
        "chattype": "single",
        "from": { "userid": "fengshier" },
        "msgtype": "event",
        "event": {
            "eventtype": "feedback_event",
            "feedback_event": { "id": stream_id, "type": 1 },
        },
    });
    for delivery in 1..=2 {
        let (answered, reply) = stack.post_bot(&event).await;
        assert_eq!(answered.status, 200, "feedback delivery {delivery}");
        assert!(reply.is_none());
    }

    let feedback = stack
        .rows("SELECT rating, CAST(answer_id AS TEXT) FROM feedback")
        .await;
    let answers = stack
        .rows("SELECT inbound_message_id, CAST(id AS TEXT) FROM messages")
        .await;
    assert_eq!(feedback.len(), 1, "one 👍 stored once");
    assert_eq!(feedback[0].0, "up");
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].0, "bot-feedback-1");
    assert_eq!(feedback[0].1, answers[0].1, "the 👍 points at the answer");
    stack.shutdown().await;
}

async fn llm_down_sends_library_card(backend: Backend) {
    let Some(stack) = Stack::start(backend, "llm_down", Llm::Down).await else {
        return;
    };

    let answered = stack
        .post_app(&app_text(
            "chenshisan",
            "7310000000000000051",
            now(),
            PRICE_QUESTION,
        ))
        .await;
    assert_eq!(answered.status, 200);
    wait_for_answers(&stack, 1).await;

    let sends = stack.sends();
    assert!(!sends.is_empty());
    assert!(sends.iter().all(|call| call.body["msgtype"] == "markdown"));
    assert!(
        send_content(&sends[0]).contains("📚 资料库回答"),
        "the first part carries the library notice"
    );
    let stored = stack
        .rows("SELECT reply_kind, inbound_message_id FROM messages")
        .await;
    assert_eq!(
        stored,
        vec![(
            "library_card".to_string(),
            "7310000000000000051".to_string()
        )]
    );
    stack.shutdown().await;
}

async fn url_verification_returns_plaintext(backend: Backend) {
    let Some(stack) = Stack::start(backend, "url_verification", Llm::Scripted(Vec::new())).await
    else {
        return;
    };

    for (path, crypto, plain) in [
        (APP_PATH, &stack.app_crypto, "4528398119286043547"),
        (BOT_PATH, &stack.bot_crypto, "8811762409315738301"),
    ] {
        let echostr = crypto.encrypt(plain);
        let mut query = signed_query(crypto, &echostr);
        query.push(("echostr", echostr));
        let answered = stack.get(path, &query).await;
        assert_eq!(answered.status, 200, "{path}");
        assert_eq!(answered.body, plain, "{path} returns the bare plaintext");
        assert!(answered.elapsed < ACK_LIMIT);

        query[0].1 = "0".repeat(40);
        assert_eq!(stack.get(path, &query).await.status, 401, "{path}");
    }
    stack.shutdown().await;
}

/// Generates one test per scenario and backend, in modules `sqlite` and `postgres`.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::Backend::Postgres).await;
                }
            )*
        }
    };
}

on_both_backends!(
    redelivered_msgid_answered_once,
    redelivery_after_restart_ignored,
    two_msgids_same_second_both_answered,
    unanswerable_callbacks_acknowledged,
    forged_callbacks_rejected,
    long_chinese_answer_split,
    private_fact_stays_out_of_group,
    bot_stream_refreshes_to_finish,
    bot_answer_over_stream_cap_continues,
    feedback_stored_against_answer,
    llm_down_sends_library_card,
    url_verification_returns_plaintext,
);
