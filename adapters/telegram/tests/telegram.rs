//! End-to-end tests of the Telegram adapter against a loopback Bot API mock.

mod support;

use std::sync::Arc;
use std::time::Duration;

use maxwin_channel::{
    Card, CardOrigin, Labelled, Lang, Platform, Rating, Reply, ReplyKind, ReplySink, Situation,
    SourceRef,
};
use maxwin_telegram::{
    TelegramClient, TelegramMode, TelegramSettings, html, run_polling, webhook_router,
};
use serde_json::{Value, json};
use support::handler::{Script, TestHandler, drive};
use support::mock_api::{
    BOT_ID, BOT_USERNAME, Failure, MockApi, NOT_MODIFIED, TOKEN, chat_json, message_update,
    user_json, utf16_len,
};
use tokio::sync::oneshot;

fn settings(mock: &MockApi) -> TelegramSettings {
    TelegramSettings {
        enabled: true,
        bot_token: Some(maxwin_channel::Secret::new(TOKEN)),
        api_url: Some(mock.url()),
        edit_interval_ms: 0,
        poll_timeout_secs: 1,
        ..TelegramSettings::default()
    }
}

fn sample_card(lang: Lang) -> Card {
    Card {
        lang,
        origin: CardOrigin::Tailored,
        title: "客户嫌贵 <30%> & 要折扣".into(),
        question: "客户说我们比竞品贵 30%，要不要申请折扣？".into(),
        situation: Situation {
            stage: "高风险".into(),
            diagnosis: "价格异议往往是价值没讲清楚 & 决策链不明。".into(),
        },
        self_check: vec!["我是否见过经济决策者？".into()],
        outward_label: String::new(),
        outward: vec![Labelled::new("澄清顾虑", "您说的贵，是和哪个方案比较？")],
        actions_now: vec![Labelled::new("暂停让步", "先不要申请折扣。")],
        actions_later: vec![Labelled::new("48 小时后", "若无回复，约技术负责人演示。")],
        sources: vec![SourceRef {
            id: "QA_002_Handling_Price_Objections_ZH".into(),
            title: "价格异议".into(),
        }],
    }
}

fn card_script(progress: &[&str]) -> Script {
    Script {
        progress: progress.iter().map(|s| s.to_string()).collect(),
        reply: Reply::Card(sample_card(Lang::Zh)),
    }
}

/// Runs the polling loop until the returned sender is dropped or fired.
fn spawn_polling(
    mock: &MockApi,
    handler: Arc<TestHandler>,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let settings = settings(mock);
    let task = tokio::spawn(async move {
        run_polling(settings, handler, async {
            let _ = stop_rx.await;
        })
        .await
        .expect("polling failed");
    });
    (stop_tx, task)
}

async fn wait_for_inbound(handler: &TestHandler, count: usize) {
    handler.wait_for_inbound(count).await;
}

fn group_update(update_id: i64, message_id: i64, text: &str, entities: Value) -> Value {
    message_update(update_id, -100_555, message_id, text, entities)
}

#[tokio::test]
async fn private_message_streams_then_sends_card() {
    let mock = MockApi::start().await;
    let handler = TestHandler::new(card_script(&["客户", "客户说贵", "客户说贵，先别降价"]));
    let (stop, task) = spawn_polling(&mock, handler.clone());

    mock.push_update(message_update(
        1,
        42,
        10,
        "客户说我们比竞品贵 30%",
        json!([]),
    ));
    let delivered = handler.next_delivery().await.expect("delivery failed");

    let inbound = handler.inbound();
    assert_eq!(inbound.len(), 1);
    let msg = &inbound[0];
    assert_eq!(msg.platform, Platform::Telegram);
    assert_eq!(msg.tenant, BOT_ID.to_string());
    assert_eq!(msg.conversation, "42");
    assert_eq!(msg.thread, None);
    assert_eq!(msg.user, "42");
    assert_eq!(msg.display_name.as_deref(), Some("Li Lei"));
    assert_eq!(msg.text, "客户说我们比竞品贵 30%");
    assert!(msg.is_direct);
    assert!(!msg.mentions_bot);
    assert!(!msg.replies_to_bot);
    assert_eq!(msg.message_id, "42:10");
    assert_eq!(msg.dedupe_key(), format!("telegram:{BOT_ID}:42:10"));

    let calls = mock.calls_of(&["sendChatAction", "sendMessage", "editMessageText"]);
    let methods: Vec<&str> = calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(
        methods,
        [
            "sendChatAction",
            "sendMessage",
            "editMessageText",
            "editMessageText",
            "editMessageText"
        ]
    );
    assert_eq!(calls[0].body["action"], "typing");
    assert_eq!(calls[1].body["text"], "客户");
    assert!(
        calls[1].body.get("parse_mode").is_none(),
        "previews are plain text"
    );
    assert_eq!(calls[3].body["text"], "客户说贵，先别降价");

    let last = &calls[4].body;
    assert_eq!(last["parse_mode"], "HTML");
    let text = last["text"].as_str().unwrap();
    assert!(
        text.starts_with("<b>客户嫌贵 &lt;30%&gt; &amp; 要折扣</b>"),
        "{text}"
    );
    let keyboard = last["reply_markup"]["inline_keyboard"].as_array().unwrap();
    assert_eq!(keyboard[0][0]["text"], "👍");
    assert_eq!(keyboard[0][1]["text"], "👎");
    assert_eq!(keyboard[1][0]["text"], "更多提问");
    let preview_id = last["message_id"].as_i64().unwrap();
    assert_eq!(delivered.message_ids, vec![format!("42:{preview_id}")]);

    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn group_mentions_are_stripped() {
    let mock = MockApi::start().await;
    let handler = TestHandler::new(card_script(&[]));
    let (stop, task) = spawn_polling(&mock, handler.clone());

    let leading = format!("@{BOT_USERNAME} 客户压价怎么办");
    mock.push_update(group_update(
        1,
        11,
        &leading,
        json!([{"type": "mention", "offset": 0, "length": 9}]),
    ));
    let middle = "请问 @coachbot 客户压价怎么办";
    mock.push_update(group_update(
        2,
        12,
        middle,
        json!([{"type": "mention", "offset": utf16_len("请问 "), "length": 9}]),
    ));
    let bot_user = json!({"id": BOT_ID, "is_bot": true, "first_name": "Coach"});
    mock.push_update(group_update(
        3,
        13,
        "Coach 😀 help me",
        json!([{"type": "text_mention", "offset": 0, "length": 5, "user": bot_user}]),
    ));
    wait_for_inbound(&handler, 3).await;

    let inbound = handler.inbound();
    assert_eq!(inbound[0].text, "客户压价怎么办");
    assert_eq!(inbound[1].text, "请问 客户压价怎么办");
    assert_eq!(inbound[2].text, "😀 help me");
    for msg in &inbound {
        assert!(msg.mentions_bot, "{msg:?}");
        assert!(!msg.is_direct);
        assert_eq!(msg.conversation, "-100555");
    }

    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn group_message_not_addressed_is_handed_over() {
    let mock = MockApi::start().await;
    let handler = TestHandler::new(card_script(&[]));
    let (stop, task) = spawn_polling(&mock, handler.clone());

    // A mention of another user is not a mention of the bot.
    mock.push_update(group_update(
        1,
        20,
        "@someone 大家好",
        json!([{"type": "mention", "offset": 0, "length": 8}]),
    ));
    wait_for_inbound(&handler, 1).await;

    let msg = &handler.inbound()[0];
    assert_eq!(msg.text, "@someone 大家好");
    assert!(!msg.mentions_bot);
    assert!(!msg.replies_to_bot);
    assert!(!msg.is_direct);

    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn reply_to_bot_is_flagged() {
    let mock = MockApi::start().await;
    let handler = TestHandler::new(card_script(&[]));
    let (stop, task) = spawn_polling(&mock, handler.clone());

    let mut update = group_update(1, 30, "那如果客户还是不同意呢？", json!([]));
    update["message"]["reply_to_message"] = json!({
        "message_id": 29,
        "date": 1_700_000_000,
        "chat": chat_json(-100_555),
        "from": {"id": BOT_ID, "is_bot": true, "first_name": "Coach", "username": BOT_USERNAME},
        "text": "上一张卡片",
    });
    mock.push_update(update);
    let mut to_user = group_update(2, 31, "同意", json!([]));
    to_user["message"]["reply_to_message"] = json!({
        "message_id": 28,
        "date": 1_700_000_000,
        "chat": chat_json(-100_555),
        "from": user_json(43),
        "text": "我们周五见",
    });
    mock.push_update(to_user);
    wait_for_inbound(&handler, 2).await;

    let inbound = handler.inbound();
    assert!(inbound[0].replies_to_bot);
    assert!(!inbound[0].mentions_bot);
    assert!(!inbound[1].replies_to_bot);

    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn commands_for_this_bot_only() {
    let mock = MockApi::start().await;
    let handler = TestHandler::new(card_script(&[]));
    let (stop, task) = spawn_polling(&mock, handler.clone());

    mock.push_update(group_update(
        1,
        40,
        "/ask@OtherBot 价格",
        json!([{"type": "bot_command", "offset": 0, "length": 13}]),
    ));
    mock.push_update(group_update(
        2,
        41,
        "/ask@coachbot 价格",
        json!([{"type": "bot_command", "offset": 0, "length": 13}]),
    ));
    mock.push_update(group_update(
        3,
        42,
        "/help",
        json!([{"type": "bot_command", "offset": 0, "length": 5}]),
    ));
    wait_for_inbound(&handler, 2).await;

    let inbound = handler.inbound();
    assert_eq!(
        inbound.len(),
        2,
        "the command for another bot is dropped: {inbound:?}"
    );
    assert_eq!(inbound[0].text, "/ask 价格");
    assert!(inbound[0].mentions_bot);
    assert_eq!(inbound[0].message_id, "-100555:41");
    assert_eq!(inbound[1].text, "/help");
    assert!(!inbound[1].mentions_bot);

    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn repeated_update_is_accepted_once() {
    let mock = MockApi::start().await;
    let handler = TestHandler::new(card_script(&[]));
    let (stop, task) = spawn_polling(&mock, handler.clone());

    let update = message_update(7, 42, 70, "你好", json!([]));
    mock.push_update(update.clone());
    mock.push_update(update);
    mock.push_update(message_update(8, 42, 71, "marker", json!([])));
    wait_for_inbound(&handler, 2).await;

    let texts: Vec<String> = handler.inbound().into_iter().map(|m| m.text).collect();
    assert_eq!(texts, ["你好", "marker"]);

    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn bot_messages_are_ignored() {
    let mock = MockApi::start().await;
    let handler = TestHandler::new(card_script(&[]));
    let (stop, task) = spawn_polling(&mock, handler.clone());

    let mut from_bot = message_update(1, -100_555, 50, "I am a bot", json!([]));
    from_bot["message"]["from"] = json!({"id": 999, "is_bot": true, "first_name": "Other"});
    mock.push_update(from_bot);
    mock.push_update(message_update(2, 42, 51, "marker", json!([])));
    wait_for_inbound(&handler, 1).await;

    let texts: Vec<String> = handler.inbound().into_iter().map(|m| m.text).collect();
    assert_eq!(texts, ["marker"]);

    stop.send(()).unwrap();
    task.await.unwrap();
}

fn long_card() -> Card {
    let mut card = sample_card(Lang::En);
    card.outward = (0..60)
        .map(|i| {
            Labelled::new(
                format!("Q{i} <tag>"),
                format!(
                    "Ask whether budget & timing < 3 months fit, case {i}: {}",
                    "x".repeat(40)
                ),
            )
        })
        .collect();
    card.situation.diagnosis = format!("{} & <end>", "销".repeat(5000));
    card
}

/// Checks that `chunk` is Telegram HTML with only the tags and entities the renderer
/// uses, properly nested, and that it shows exactly `plain`.
fn assert_valid_html(chunk: &str, plain: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut visible = String::new();
    let mut rest = chunk;
    while let Some(ch) = rest.chars().next() {
        if ch == '<' {
            let end = rest.find('>').expect("unterminated tag");
            let tag = &rest[1..end];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(
                    stack.pop().as_deref(),
                    Some(name),
                    "misnested tag in {chunk}"
                );
            } else {
                assert!(
                    ["b", "i", "blockquote"].contains(&tag),
                    "unexpected tag <{tag}>"
                );
                stack.push(tag.to_string());
            }
            rest = &rest[end + 1..];
        } else if ch == '&' {
            let end = rest.find(';').expect("unterminated entity");
            visible.push(match &rest[..=end] {
                "&lt;" => '<',
                "&gt;" => '>',
                "&amp;" => '&',
                other => panic!("unexpected entity {other}"),
            });
            rest = &rest[end + 1..];
        } else {
            assert_ne!(ch, '>', "unescaped > in {chunk}");
            visible.push(ch);
            rest = &rest[ch.len_utf8()..];
        }
    }
    assert!(stack.is_empty(), "unclosed tags {stack:?}");
    assert_eq!(visible, plain);
}

#[test]
fn long_card_splits_into_valid_chunks() {
    let card = long_card();
    let chunks = html::card_chunks(&card, html::MAX_MESSAGE_CHARS);
    assert!(
        chunks.len() >= 3,
        "expected several chunks, got {}",
        chunks.len()
    );
    let mut shown = String::new();
    for chunk in &chunks {
        let markup = chunk.html.as_deref().unwrap();
        assert!(markup.chars().count() <= 4096, "raw HTML too long");
        assert!(chunk.plain.chars().count() <= 4096, "visible text too long");
        assert_valid_html(markup, &chunk.plain);
        shown.push_str(&chunk.plain);
    }
    assert!(shown.contains("Q59 <tag>: Ask whether budget & timing < 3 months fit, case 59"));
    assert!(shown.contains("销 & <end>"));
    assert_eq!(
        shown.matches('销').count(),
        5000,
        "no character is lost at a split"
    );
}

#[test]
fn short_card_is_one_chunk_with_markup() {
    let chunks = html::card_chunks(&sample_card(Lang::Zh), html::MAX_MESSAGE_CHARS);
    assert_eq!(chunks.len(), 1);
    let markup = chunks[0].html.as_deref().unwrap();
    assert_valid_html(markup, &chunks[0].plain);
    assert!(markup.contains("<b>问题：</b>客户说我们比竞品贵 30%"));
    assert!(markup.contains("• <b>澄清顾虑：</b>您说的贵"));
    assert!(markup.contains("<b><i>🔍 自我审视</i></b>"));
}

#[test]
fn library_card_shows_notice_in_blockquote() {
    let mut card = sample_card(Lang::En);
    card.origin = CardOrigin::Library;
    let chunks = html::card_chunks(&card, html::MAX_MESSAGE_CHARS);
    assert!(
        chunks[0]
            .html
            .as_deref()
            .unwrap()
            .contains("<blockquote>📚 Library answer")
    );
}

#[tokio::test]
async fn long_card_goes_out_in_several_messages() {
    let mock = MockApi::start().await;
    let client = TelegramClient::new(&settings(&mock)).unwrap();
    let mut sink = client.sink(42, None, None);
    let script = Script {
        progress: vec!["thinking".into()],
        reply: Reply::Card(long_card()),
    };
    let delivered = drive(&mut sink, &script).await.unwrap();

    let calls = mock.calls_of(&["sendMessage", "editMessageText"]);
    let expected = html::card_chunks(&long_card(), html::MAX_MESSAGE_CHARS);
    // The preview, then the first chunk as an edit, then one message per further chunk.
    assert_eq!(calls.len(), expected.len() + 1);
    assert_eq!(calls[1].method, "editMessageText");
    assert!(calls[2..].iter().all(|c| c.method == "sendMessage"));
    for (call, chunk) in calls[1..].iter().zip(&expected) {
        assert_eq!(call.body["text"].as_str(), chunk.html.as_deref());
    }
    let first_id = calls[1].body["message_id"].as_i64().unwrap();
    let last = &calls.last().unwrap().body;
    assert_eq!(
        last["reply_markup"]["inline_keyboard"][0][0]["callback_data"],
        format!("up:en:{first_id}")
    );
    assert_eq!(
        last["reply_markup"]["inline_keyboard"][1][0]["text"],
        "More questions"
    );
    assert!(
        calls[1..calls.len() - 1]
            .iter()
            .all(|c| c.body.get("reply_markup").is_none())
    );
    assert_eq!(delivered.message_ids.len(), expected.len());
    assert_eq!(delivered.message_ids[0], format!("42:{first_id}"));
}

#[tokio::test]
async fn rate_limit_during_streaming_is_honoured() {
    let mock = MockApi::start().await;
    let client = TelegramClient::new(&settings(&mock)).unwrap();
    let mut sink = client.sink(42, None, None);
    mock.fail_next("editMessageText", Failure::RetryAfter(1));

    sink.start().await.unwrap();
    sink.progress("a").await.unwrap();
    sink.progress("ab").await.unwrap();
    sink.progress("abc").await.unwrap();
    let delivered = sink
        .finish(&Reply::Text {
            kind: ReplyKind::Command,
            lang: Lang::En,
            text: "done".into(),
        })
        .await
        .unwrap();

    let edits = mock.calls_of(&["editMessageText"]);
    assert_eq!(
        edits.len(),
        2,
        "the rate-limited edit, then the final edit: {edits:?}"
    );
    assert_eq!(edits[0].body["text"], "ab");
    assert_eq!(edits[1].body["text"], "done");
    let waited = edits[1].at.duration_since(edits[0].at);
    assert!(
        waited >= Duration::from_secs(1),
        "next call came after {waited:?}"
    );
    assert_eq!(mock.calls_of(&["sendMessage"]).len(), 1);
    assert_eq!(delivered.message_ids.len(), 1);
}

#[tokio::test]
async fn rate_limit_on_send_is_retried() {
    let mock = MockApi::start().await;
    let client = TelegramClient::new(&settings(&mock)).unwrap();
    let mut sink = client.sink(42, None, None);
    mock.fail_next("sendMessage", Failure::RetryAfter(1));

    let reply = Reply::Card(sample_card(Lang::Zh));
    let delivered = sink.finish(&reply).await.unwrap();

    let sends = mock.calls_of(&["sendMessage"]);
    assert_eq!(sends.len(), 2);
    assert!(sends[1].at.duration_since(sends[0].at) >= Duration::from_secs(1));
    assert_eq!(delivered.message_ids.len(), 1);
}

#[tokio::test]
async fn previews_are_throttled_per_chat() {
    let mock = MockApi::start().await;
    let mut settings = settings(&mock);
    settings.edit_interval_ms = 300;
    let client = TelegramClient::new(&settings).unwrap();
    let mut sink = client.sink(42, None, None);

    for text in ["a", "ab", "abc", "abcd"] {
        sink.progress(text).await.unwrap();
    }
    let reply = Reply::Text {
        kind: ReplyKind::Command,
        lang: Lang::En,
        text: "final".into(),
    };
    sink.finish(&reply).await.unwrap();

    let calls = mock.calls_of(&["sendMessage", "editMessageText"]);
    let methods: Vec<&str> = calls.iter().map(|c| c.method.as_str()).collect();
    assert_eq!(
        methods,
        ["sendMessage", "editMessageText"],
        "previews inside the interval are skipped"
    );
    assert_eq!(calls[1].body["text"], "final");
    assert!(calls[1].at.duration_since(calls[0].at) >= Duration::from_millis(300));
}

#[tokio::test]
async fn not_modified_edit_counts_as_delivered() {
    let mock = MockApi::start().await;
    let client = TelegramClient::new(&settings(&mock)).unwrap();
    let mut sink = client.sink(42, None, None);
    mock.fail_next("editMessageText", Failure::BadRequest(NOT_MODIFIED.into()));

    sink.progress("final answer").await.unwrap();
    let reply = Reply::Text {
        kind: ReplyKind::OffTopic,
        lang: Lang::En,
        text: "final answer".into(),
    };
    let delivered = sink.finish(&reply).await.unwrap();

    let sends = mock.calls_of(&["sendMessage"]);
    assert_eq!(
        sends.len(),
        1,
        "no second message after a not-modified edit"
    );
    let preview_id = mock.calls_of(&["editMessageText"])[0].body["message_id"]
        .as_i64()
        .unwrap();
    assert_eq!(delivered.message_ids, vec![format!("42:{preview_id}")]);
}

#[tokio::test]
async fn rejected_markup_is_resent_as_plain_text() {
    let mock = MockApi::start().await;
    let client = TelegramClient::new(&settings(&mock)).unwrap();
    let mut sink = client.sink(42, None, None);
    mock.fail_next(
        "sendMessage",
        Failure::BadRequest(
            "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 3"
                .into(),
        ),
    );

    let card = sample_card(Lang::Zh);
    let delivered = sink.finish(&Reply::Card(card.clone())).await.unwrap();

    let sends = mock.calls_of(&["sendMessage"]);
    assert_eq!(sends.len(), 2);
    assert_eq!(sends[0].body["parse_mode"], "HTML");
    assert!(sends[1].body.get("parse_mode").is_none());
    let plain = &html::card_chunks(&card, html::MAX_MESSAGE_CHARS)[0].plain;
    assert_eq!(sends[1].body["text"].as_str(), Some(plain.as_str()));
    assert!(
        sends[1].body["text"]
            .as_str()
            .unwrap()
            .contains("客户嫌贵 <30%> & 要折扣")
    );
    assert!(
        sends[1].body.get("reply_markup").is_some(),
        "buttons survive the fallback"
    );
    assert_eq!(delivered.message_ids.len(), 1);
}

#[tokio::test]
async fn too_long_message_is_split_further() {
    let mock = MockApi::start().await;
    let client = TelegramClient::new(&settings(&mock)).unwrap();
    let mut sink = client.sink(42, None, None);
    mock.fail_next(
        "sendMessage",
        Failure::BadRequest("Bad Request: message is too long".into()),
    );

    let card = sample_card(Lang::Zh);
    let delivered = sink.finish(&Reply::Card(card.clone())).await.unwrap();

    let sends = mock.calls_of(&["sendMessage"]);
    assert!(
        sends.len() >= 3,
        "rejected send, then at least two smaller ones: {}",
        sends.len()
    );
    let rejected = sends[0].body["text"].as_str().unwrap().chars().count();
    let mut shown = String::new();
    for send in &sends[1..] {
        let text = send.body["text"].as_str().unwrap();
        assert!(text.chars().count() < rejected);
        shown.push_str(text);
    }
    assert_eq!(
        shown,
        sends[0].body["text"].as_str().unwrap(),
        "nothing is lost in the split"
    );
    assert_eq!(delivered.message_ids.len(), sends.len() - 1);
}

fn callback_update(update_id: i64, data: &str, message_id: i64) -> Value {
    json!({
        "update_id": update_id,
        "callback_query": {
            "id": format!("cb-{update_id}"),
            "from": user_json(42),
            "chat_instance": "ci",
            "data": data,
            "message": {
                "message_id": message_id,
                "date": 1_700_000_000,
                "chat": chat_json(42),
                "from": {"id": BOT_ID, "is_bot": true, "first_name": "Coach", "username": BOT_USERNAME},
                "text": "card",
            }
        }
    })
}

#[tokio::test]
async fn feedback_buttons_reach_the_handler() {
    let mock = MockApi::start().await;
    let handler = TestHandler::new(card_script(&[]));
    let (stop, task) = spawn_polling(&mock, handler.clone());

    mock.push_update(callback_update(1, "up:zh:501", 503));
    mock.push_update(callback_update(2, "down:en:", 504));
    mock.wait_for("answerCallbackQuery", 2).await;

    let feedback = handler.feedback();
    assert_eq!(feedback.len(), 2);
    assert_eq!(feedback[0].rating, Some(Rating::Up));
    assert_eq!(feedback[0].answer_message_id, "42:501");
    assert_eq!(feedback[0].event_id, "cb-1");
    assert_eq!(feedback[0].tenant, BOT_ID.to_string());
    assert_eq!(feedback[0].user, "42");
    assert_eq!(feedback[1].rating, Some(Rating::Down));
    assert_eq!(
        feedback[1].answer_message_id, "42:504",
        "an empty id means the pressed message"
    );

    let answers = mock.calls_of(&["answerCallbackQuery"]);
    assert_eq!(answers[0].body["callback_query_id"], "cb-1");
    assert_eq!(answers[0].body["text"], "已记录，谢谢反馈");
    assert_eq!(answers[1].body["text"], "Thanks for the feedback");

    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn callback_is_answered_when_handler_fails() {
    let mock = MockApi::start().await;
    let handler = TestHandler::failing_feedback(card_script(&[]));
    let (stop, task) = spawn_polling(&mock, handler.clone());

    mock.push_update(callback_update(1, "up:en:501", 503));
    mock.push_update(callback_update(2, "garbage", 503));
    mock.wait_for("answerCallbackQuery", 2).await;

    let answers = mock.calls_of(&["answerCallbackQuery"]);
    assert_eq!(
        answers[0].body["text"],
        "That did not go through, please try again later"
    );
    assert_eq!(answers[1].body["callback_query_id"], "cb-2");

    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn more_questions_button_asks_a_follow_up() {
    let mock = MockApi::start().await;
    let handler = TestHandler::new(card_script(&[]));
    let (stop, task) = spawn_polling(&mock, handler.clone());

    mock.push_update(callback_update(1, "more:en:501", 503));
    wait_for_inbound(&handler, 1).await;
    handler.next_delivery().await.unwrap();

    let msg = &handler.inbound()[0];
    assert!(msg.text.starts_with("/ask "), "{}", msg.text);
    assert!(msg.text.contains("more questions"));
    assert!(msg.replies_to_bot);
    assert!(msg.is_direct);
    assert_eq!(msg.message_id, "42:callback:cb-1");
    assert_eq!(mock.calls_of(&["answerCallbackQuery"]).len(), 1);
    let reply = &mock.calls_of(&["sendMessage"])[0].body;
    assert_eq!(
        reply["reply_parameters"]["message_id"], 503,
        "the answer quotes the card"
    );

    stop.send(()).unwrap();
    task.await.unwrap();
}

async fn serve_webhook(mock: &MockApi, handler: Arc<TestHandler>) -> String {
    let mut settings = settings(mock);
    settings.mode = TelegramMode::Webhook;
    settings.webhook_url = Some("https://bot.example.com".into());
    settings.secret_token = Some(maxwin_channel::Secret::new("s3cret-Token_1"));
    let router = webhook_router(&settings, handler).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{addr}/telegram/webhook")
}

#[tokio::test]
async fn webhook_checks_secret_token() {
    let mock = MockApi::start().await;
    let handler = TestHandler::new(card_script(&[]));
    let url = serve_webhook(&mock, handler.clone()).await;
    let http = reqwest::Client::new();
    let update = message_update(5, 42, 90, "webhook hello", json!([]));

    let missing = http.post(&url).json(&update).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let wrong = http
        .post(&url)
        .header("X-Telegram-Bot-Api-Secret-Token", "s3cret-Token_2")
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(
        handler.inbound().is_empty(),
        "nothing is processed without the secret"
    );
    assert!(
        mock.calls().is_empty(),
        "no Bot API call before authentication"
    );

    for _ in 0..2 {
        let right = http
            .post(&url)
            .header("X-Telegram-Bot-Api-Secret-Token", "s3cret-Token_1")
            .json(&update)
            .send()
            .await
            .unwrap();
        assert_eq!(right.status(), 200);
    }
    let inbound = handler.inbound();
    assert_eq!(inbound.len(), 1, "a redelivered update is accepted once");
    assert_eq!(inbound[0].text, "webhook hello");
    handler.next_delivery().await.unwrap();
}

#[test]
fn webhook_router_requires_secret() {
    let settings = TelegramSettings {
        bot_token: Some(maxwin_channel::Secret::new(TOKEN)),
        mode: TelegramMode::Webhook,
        ..TelegramSettings::default()
    };
    let handler = TestHandler::new(card_script(&[]));
    assert!(webhook_router(&settings, handler).is_err());
}
