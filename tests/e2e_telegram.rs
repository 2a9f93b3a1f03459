//! Telegram scenarios of the whole daemon: the real coach, store, router and
//! daemon, the Telegram adapter polling a loopback Bot API mock, and a scripted
//! LLM mock. Every scenario runs on SQLite and on PostgreSQL; the PostgreSQL runs
//! print a notice and pass when `TEST_DATABASE_URL` is unset.

#[path = "support/app.rs"]
mod app;
#[allow(dead_code)]
#[path = "../adapters/telegram/tests/support/mock_api.rs"]
mod mock_api;
#[path = "support/mock_llm.rs"]
mod mock_llm;
#[path = "support/store.rs"]
mod store;

use std::time::Duration;

use app::{
    App, Backend, GROUP_CHAT, Options, PRIVATE_CHAT, button_data, button_texts, card_markdown,
    chat_of, fenced, streamed, text_of,
};
use maxwin_channel::{Lang, ReplyKind};
use mock_api::{BOT_USERNAME, Failure};
use mock_llm::MockResponse;

/// A sales question the retriever finds on-topic.
const QUESTION: &str = "客户说我们的报价比竞品贵30%，要求打折，我该怎么回应？";
const SECOND_QUESTION: &str = "客户一直拖着不签合同，我该怎么推进？";

/// The Bot API's message length limit, in characters.
const MAX_MESSAGE_CHARS: usize = 4096;

/// The smallest gap accepted between two paced calls that should be one second
/// apart, because the mock records arrival times and requests travel at
/// slightly different speeds.
const ONE_SECOND_WITH_JITTER: Duration = Duration::from_millis(950);

/// Builds a short Chinese card answer, streamed in three pieces.
fn short_answer(title: &str) -> MockResponse {
    streamed(
        &card_markdown(Lang::Zh, title, "价格异议往往是价值没讲清楚。"),
        3,
        Duration::from_millis(50),
    )
}

/// Returns the Bot API calls of `method` in `chat`.
fn calls_in(app: &App, method: &str, chat: i64) -> Vec<mock_api::Call> {
    app.api
        .calls_of(&[method])
        .into_iter()
        .filter(|call| chat_of(call) == chat)
        .collect()
}

/// Checks that `html` is Telegram HTML whose tags nest and whose `<` and `&` are escaped.
fn assert_valid_html(html: &str) {
    const TAGS: &[&str] = &[
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "code",
        "pre",
        "a",
        "blockquote",
        "tg-spoiler",
    ];
    let mut open: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(position) = rest.find(['<', '&']) {
        let tail = &rest[position..];
        let context: String = tail.chars().take(20).collect();
        if let Some(after) = tail.strip_prefix('&') {
            let entity_ok = ["lt;", "gt;", "amp;", "quot;"]
                .iter()
                .any(|entity| after.starts_with(entity));
            assert!(entity_ok, "unescaped & at {context:?}");
            rest = after;
            continue;
        }
        let end = tail
            .find('>')
            .unwrap_or_else(|| panic!("unclosed tag at {context:?}"));
        let tag = &tail[1..end];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop().as_deref(), Some(name), "misnested tag in {html}");
        } else {
            let name = tag.split_whitespace().next().unwrap_or_default();
            assert!(TAGS.contains(&name), "tag <{tag}> is not Telegram HTML");
            open.push(name.to_string());
        }
        rest = &tail[end + 1..];
    }
    assert!(open.is_empty(), "tags {open:?} left open in {html}");
}

/// Returns the visible text of Telegram HTML: tags removed, entities decoded.
fn visible_text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for ch in html.chars() {
        match ch {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(ch),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// Asserts that consecutive calls are at least one edit interval apart.
fn assert_paced(calls: &[mock_api::Call]) {
    for pair in calls.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= ONE_SECOND_WITH_JITTER,
            "{} followed {} after only {gap:?}",
            pair[1].method,
            pair[0].method
        );
    }
}

async fn private_chat_streams_card(backend: Backend, test: &str) {
    let answer = card_markdown(
        Lang::Zh,
        "客户嫌贵，先别降价",
        "价格异议往往是价值没讲清楚。",
    );
    let script = vec![streamed(&answer, 6, Duration::from_millis(400))];
    let Some(mut app) = App::start(backend, test, script).await else {
        return;
    };

    app.send_text(1, PRIVATE_CHAT, 10, QUESTION);
    app.wait_for_cards(PRIVATE_CHAT, 1).await;
    let answers = app.wait_for_answers(1).await;

    let actions = calls_in(&app, "sendChatAction", PRIVATE_CHAT);
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].body["action"], "typing");
    let outgoing = app.outgoing(PRIVATE_CHAT);
    assert!(
        actions[0].at <= outgoing[0].at,
        "typing comes before the first message"
    );

    let sends = calls_in(&app, "sendMessage", PRIVATE_CHAT);
    assert_eq!(sends.len(), 1, "the answer is one message: {sends:#?}");
    let preview = &outgoing[0];
    assert_eq!(preview.method, "sendMessage");
    assert!(
        preview.body.get("parse_mode").is_none(),
        "previews are plain text"
    );
    assert!(preview.body.get("reply_markup").is_none());

    let (last, edits) = outgoing[1..]
        .split_last()
        .expect("the preview was never edited");
    assert!(!edits.is_empty(), "no streamed edit before the card");
    let preview_id = 501;
    for edit in edits {
        assert_eq!(edit.method, "editMessageText");
        assert_eq!(edit.body["message_id"], preview_id);
        assert!(edit.body.get("parse_mode").is_none());
    }
    let streamed_lengths: Vec<usize> = edits.iter().map(|e| text_of(e).len()).collect();
    assert!(
        streamed_lengths.windows(2).all(|w| w[0] < w[1]),
        "each edit shows more of the answer: {streamed_lengths:?}"
    );

    assert_eq!(last.method, "editMessageText");
    assert_eq!(last.body["message_id"], preview_id);
    assert_eq!(last.body["parse_mode"], "HTML");
    let card = text_of(last);
    assert!(card.starts_with("<b>客户嫌贵，先别降价</b>"), "{card}");
    assert!(card.contains("您说的贵，是和哪个方案比？"), "{card}");
    assert_valid_html(card);
    assert_eq!(
        button_texts(last),
        [vec!["👍", "👎"], vec!["更多提问"]],
        "feedback buttons"
    );

    let turns = app.turns(PRIVATE_CHAT).await;
    assert_eq!(turns.len(), 1);
    assert_eq!(turns[0].user_text, QUESTION);
    assert_eq!(turns[0].user_id, "42");
    assert_eq!(turns[0].reply_kind, ReplyKind::Card);
    assert!(turns[0].reply_text.contains("客户嫌贵，先别降价"));
    assert_eq!(
        app.wait_for_deliveries(answers[0].0, 1).await,
        [format!("{PRIVATE_CHAT}:{preview_id}")]
    );

    app.shutdown().await.unwrap();
}

async fn group_mention_is_stripped(backend: Backend, test: &str) {
    let Some(mut app) = App::start(backend, test, vec![short_answer("群里的问题")]).await
    else {
        return;
    };

    app.send_mention(1, GROUP_CHAT, 20, BOT_USERNAME, QUESTION);
    let cards = app.wait_for_cards(GROUP_CHAT, 1).await;
    app.wait_for_answers(1).await;

    assert!(text_of(&cards[0]).starts_with("<b>群里的问题</b>"));
    let first = &app.outgoing(GROUP_CHAT)[0];
    assert_eq!(
        first.body["reply_parameters"]["message_id"], 20,
        "in groups the answer quotes the question"
    );
    let prompts = app.llm_questions();
    assert_eq!(prompts.len(), 1);
    assert!(prompts[0].contains(&fenced(QUESTION)), "{}", prompts[0]);
    assert!(!prompts[0].contains(BOT_USERNAME), "{}", prompts[0]);
    assert_eq!(app.turns(GROUP_CHAT).await[0].user_text, QUESTION);

    app.shutdown().await.unwrap();
}

async fn group_message_not_addressed_is_ignored(backend: Backend, test: &str) {
    let Some(mut app) = App::start(backend, test, vec![short_answer("点名的问题")]).await
    else {
        return;
    };

    app.send_text(1, GROUP_CHAT, 30, QUESTION);
    // Updates are handled in order, so the addressed message's answer proves the
    // first message was handled before it.
    app.send_mention(2, GROUP_CHAT, 31, BOT_USERNAME, SECOND_QUESTION);
    app.wait_for_cards(GROUP_CHAT, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let replies_to_first: Vec<_> = app
        .outgoing(GROUP_CHAT)
        .into_iter()
        .filter(|call| call.body["reply_parameters"]["message_id"] == 30)
        .collect();
    assert!(replies_to_first.is_empty(), "{replies_to_first:#?}");
    assert_eq!(calls_in(&app, "sendMessage", GROUP_CHAT).len(), 1);
    assert_eq!(calls_in(&app, "sendChatAction", GROUP_CHAT).len(), 1);
    let prompts = app.llm_questions();
    assert_eq!(prompts.len(), 1);
    assert!(prompts[0].contains(&fenced(SECOND_QUESTION)));
    let turns = app.turns(GROUP_CHAT).await;
    assert_eq!(turns.len(), 1);
    assert_eq!(turns[0].user_text, SECOND_QUESTION);

    app.shutdown().await.unwrap();
}

async fn reply_to_bot_is_answered(backend: Backend, test: &str) {
    let Some(mut app) = App::start(backend, test, vec![short_answer("追问")]).await else {
        return;
    };

    app.send_reply_to_bot(1, GROUP_CHAT, 40, 400, QUESTION);
    let cards = app.wait_for_cards(GROUP_CHAT, 1).await;

    assert!(text_of(&cards[0]).starts_with("<b>追问</b>"));
    let prompts = app.llm_questions();
    assert_eq!(prompts.len(), 1);
    assert!(prompts[0].contains(&fenced(QUESTION)));

    app.shutdown().await.unwrap();
}

async fn ask_command_for_other_bot_is_ignored(backend: Backend, test: &str) {
    let Some(mut app) = App::start(backend, test, vec![short_answer("命令提问")]).await else {
        return;
    };

    app.send_command(
        1,
        GROUP_CHAT,
        50,
        &format!("/ask@otherbot {SECOND_QUESTION}"),
    );
    app.send_command(
        2,
        GROUP_CHAT,
        51,
        &format!("/ask@{BOT_USERNAME} {QUESTION}"),
    );
    let cards = app.wait_for_cards(GROUP_CHAT, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert!(text_of(&cards[0]).starts_with("<b>命令提问</b>"));
    assert_eq!(calls_in(&app, "sendMessage", GROUP_CHAT).len(), 1);
    assert_eq!(
        app.outgoing(GROUP_CHAT)[0].body["reply_parameters"]["message_id"],
        51
    );
    let prompts = app.llm_questions();
    assert_eq!(
        prompts.len(),
        1,
        "only the command for this bot is answered"
    );
    assert!(prompts[0].contains(&fenced(QUESTION)), "{}", prompts[0]);
    let turns = app.turns(GROUP_CHAT).await;
    assert_eq!(turns.len(), 1);
    assert_eq!(turns[0].user_text, QUESTION);

    app.shutdown().await.unwrap();
}

async fn repeated_update_is_answered_once(backend: Backend, test: &str) {
    let script = vec![short_answer("第一个回答"), short_answer("第二个回答")];
    let Some(mut app) = App::start(backend, test, script).await else {
        return;
    };

    app.send_text(1, PRIVATE_CHAT, 60, QUESTION);
    app.send_text(1, PRIVATE_CHAT, 60, QUESTION);
    // The same message under a new update id, as after an adapter restart.
    app.send_text(2, PRIVATE_CHAT, 60, QUESTION);
    app.send_text(3, PRIVATE_CHAT, 61, SECOND_QUESTION);
    app.wait_for_cards(PRIVATE_CHAT, 2).await;
    app.wait_for_answers(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(app.cards(PRIVATE_CHAT).len(), 2);
    let prompts = app.llm_questions();
    assert_eq!(prompts.len(), 2);
    assert!(prompts[0].contains(&fenced(QUESTION)));
    assert!(prompts[1].contains(&fenced(SECOND_QUESTION)));
    let questions: Vec<String> = app.answers().await.into_iter().map(|(_, q)| q).collect();
    assert_eq!(questions, [QUESTION, SECOND_QUESTION]);

    app.shutdown().await.unwrap();
}

async fn long_card_is_split_and_escaped(backend: Backend, test: &str) {
    let diagnosis = "客户说 <底价> & 折扣都要谈，".repeat(300);
    let answer = card_markdown(Lang::Zh, "长答案 <A&B>", &diagnosis);
    let script = vec![streamed(&answer, 8, Duration::from_millis(100))];
    let Some(mut app) = App::start(backend, test, script).await else {
        return;
    };

    app.send_text(1, PRIVATE_CHAT, 70, QUESTION);
    app.wait_for_cards(PRIVATE_CHAT, 1).await;
    let answers = app.wait_for_answers(1).await;

    let outgoing = app.outgoing(PRIVATE_CHAT);
    for call in &outgoing {
        let chars = text_of(call).chars().count();
        assert!(
            chars <= MAX_MESSAGE_CHARS,
            "{} has {chars} characters",
            call.method
        );
    }
    let finals: Vec<_> = outgoing
        .iter()
        .filter(|call| call.body["parse_mode"] == "HTML")
        .collect();
    assert!(
        finals.len() >= 2,
        "the card is split: {} messages",
        finals.len()
    );
    for (index, call) in finals.iter().enumerate() {
        let html = text_of(call);
        assert_valid_html(html);
        let has_keyboard = call.body.get("reply_markup").is_some();
        assert_eq!(
            has_keyboard,
            index == finals.len() - 1,
            "buttons only under the last part"
        );
    }
    assert!(text_of(finals[0]).starts_with("<b>长答案 &lt;A&amp;B&gt;</b>"));
    assert_eq!(
        finals[0].method, "editMessageText",
        "the first part replaces the preview"
    );
    let first_id = finals[0].body["message_id"].as_i64().unwrap();
    let thumbs_up = button_data(finals[finals.len() - 1], "👍");
    assert_eq!(
        thumbs_up,
        format!("up:zh:{first_id}"),
        "buttons name the first part"
    );

    let visible: String = finals
        .iter()
        .map(|call| visible_text(text_of(call)))
        .collect();
    let squeeze = |text: &str| text.split_whitespace().collect::<String>();
    assert!(
        squeeze(&visible).contains(&squeeze(&diagnosis)),
        "the whole diagnosis reaches the user"
    );
    assert_eq!(
        app.wait_for_deliveries(answers[0].0, finals.len())
            .await
            .len(),
        finals.len()
    );

    app.shutdown().await.unwrap();
}

async fn retry_after_is_honoured(backend: Backend, test: &str) {
    let answer = card_markdown(Lang::Zh, "限流之后", "价格异议往往是价值没讲清楚。");
    let script = vec![streamed(&answer, 6, Duration::from_millis(300))];
    let Some(mut app) = App::start(backend, test, script).await else {
        return;
    };
    app.api.fail_next("sendMessage", Failure::RetryAfter(1));
    app.api.fail_next("editMessageText", Failure::RetryAfter(1));

    app.send_text(1, PRIVATE_CHAT, 80, QUESTION);
    let cards = app.wait_for_cards(PRIVATE_CHAT, 1).await;
    app.wait_for_answers(1).await;

    assert!(text_of(&cards[0]).starts_with("<b>限流之后</b>"));
    let outgoing = app.outgoing(PRIVATE_CHAT);
    let limited = [
        outgoing.iter().position(|c| c.method == "sendMessage"),
        outgoing.iter().position(|c| c.method == "editMessageText"),
    ];
    for index in limited.into_iter().flatten() {
        if let Some(next) = outgoing.get(index + 1) {
            let waited = next.at.duration_since(outgoing[index].at);
            assert!(
                waited >= ONE_SECOND_WITH_JITTER,
                "{} came {waited:?} after a 429 with retry_after 1",
                next.method
            );
        }
    }
    assert_eq!(app.turns(PRIVATE_CHAT).await.len(), 1);

    app.shutdown().await.unwrap();
}

async fn feedback_button_is_stored(backend: Backend, test: &str) {
    let Some(mut app) = App::start(backend, test, vec![short_answer("请评价")]).await else {
        return;
    };

    app.send_text(1, PRIVATE_CHAT, 90, QUESTION);
    let cards = app.wait_for_cards(PRIVATE_CHAT, 1).await;
    let card_id = cards[0].body["message_id"].as_i64().unwrap();
    let answers = app.wait_for_answers(1).await;
    assert_eq!(answers.len(), 1);
    let answer_id = answers[0].0;
    assert_eq!(
        app.wait_for_deliveries(answer_id, 1).await,
        [format!("{PRIVATE_CHAT}:{card_id}")]
    );

    app.press_button(
        2,
        PRIVATE_CHAT,
        card_id,
        "cb-1",
        &button_data(&cards[0], "👍"),
    );
    app.api.wait_for("answerCallbackQuery", 1).await;
    let answered = app.api.calls_of(&["answerCallbackQuery"]);
    assert_eq!(answered[0].body["callback_query_id"], "cb-1");
    assert_eq!(answered[0].body["text"], "已记录，谢谢反馈");
    assert_eq!(
        app.feedback().await,
        [(
            answer_id,
            Some("up".to_string()),
            "42".to_string(),
            "cb-1".to_string()
        )]
    );

    app.press_button(
        3,
        PRIVATE_CHAT,
        card_id,
        "cb-2",
        &button_data(&cards[0], "👎"),
    );
    app.api.wait_for("answerCallbackQuery", 2).await;
    let ratings: Vec<_> = app
        .feedback()
        .await
        .into_iter()
        .map(|(answer, rating, _, _)| (answer, rating))
        .collect();
    assert_eq!(
        ratings,
        [
            (answer_id, Some("up".to_string())),
            (answer_id, Some("down".to_string()))
        ]
    );

    app.shutdown().await.unwrap();
}

async fn reset_and_lang_take_effect(backend: Backend, test: &str) {
    let script = vec![
        short_answer("第一问"),
        short_answer("第二问"),
        streamed(
            &card_markdown(
                Lang::En,
                "Hold the price",
                "Price objections hide unclear value.",
            ),
            3,
            Duration::from_millis(50),
        ),
    ];
    let Some(mut app) = App::start(backend, test, script).await else {
        return;
    };

    app.send_text(1, PRIVATE_CHAT, 100, QUESTION);
    app.wait_for_cards(PRIVATE_CHAT, 1).await;
    app.send_text(2, PRIVATE_CHAT, 101, SECOND_QUESTION);
    app.wait_for_cards(PRIVATE_CHAT, 2).await;
    let requests = app.llm.requests();
    let history = requests[1].json["messages"].to_string();
    assert!(
        history.contains(QUESTION),
        "the second prompt carries the first turn"
    );

    app.send_command(3, PRIVATE_CHAT, 102, "/reset");
    let reset = app
        .wait_for_text(PRIVATE_CHAT, "已清空本对话的上下文")
        .await;
    assert!(reset.body.get("reply_markup").is_none());
    app.send_command(4, PRIVATE_CHAT, 103, "/lang en");
    app.wait_for_text(PRIVATE_CHAT, "OK, I will answer in English from now on.")
        .await;

    app.send_text(5, PRIVATE_CHAT, 104, QUESTION);
    let cards = app.wait_for_cards(PRIVATE_CHAT, 3).await;
    app.wait_for_answers(3).await;

    let requests = app.llm.requests();
    assert_eq!(requests.len(), 3, "commands do not call the LLM");
    let messages = requests[2].json["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "no history after /reset: {messages:#?}");
    let prompt = messages[1]["content"].as_str().unwrap();
    assert!(prompt.ends_with("Reply language: en."), "{prompt}");
    assert!(text_of(&cards[2]).starts_with("<b>Hold the price</b>"));
    assert_eq!(
        button_texts(&cards[2]),
        [vec!["👍", "👎"], vec!["More questions"]]
    );
    assert_eq!(
        app.turns(PRIVATE_CHAT).await.len(),
        1,
        "turns since the reset"
    );

    app.shutdown().await.unwrap();
}

async fn llm_errors_give_library_card(backend: Backend, test: &str) {
    let script = vec![
        MockResponse::error(500, "upstream failed"),
        MockResponse::error(500, "upstream failed"),
    ];
    let Some(mut app) = App::start(backend, test, script).await else {
        return;
    };

    app.send_text(1, PRIVATE_CHAT, 110, QUESTION);
    let cards = app.wait_for_cards(PRIVATE_CHAT, 1).await;
    app.wait_for_answers(1).await;

    assert!(app.llm.request_count() >= 1);
    let card = text_of(&cards[0]);
    assert!(card.contains("📚 资料库回答"), "{card}");
    assert_valid_html(card);
    assert_eq!(
        button_texts(&cards[0]),
        [vec!["👍", "👎"], vec!["更多提问"]]
    );
    let turns = app.turns(PRIVATE_CHAT).await;
    assert_eq!(turns.len(), 1);
    assert_eq!(turns[0].reply_kind, ReplyKind::LibraryCard);

    app.shutdown().await.unwrap();
}

async fn llm_unreachable_gives_library_card(backend: Backend, test: &str) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let options = Options {
        llm_base_url: Some(format!("http://{address}/v1")),
        ..Options::default()
    };
    let Some(mut app) = App::start_with(backend, test, Vec::new(), options).await else {
        return;
    };

    app.send_text(1, PRIVATE_CHAT, 120, QUESTION);
    let cards = app.wait_for_cards(PRIVATE_CHAT, 1).await;
    app.wait_for_answers(1).await;

    assert!(text_of(&cards[0]).contains("📚 资料库回答"));
    assert_eq!(
        app.turns(PRIVATE_CHAT).await[0].reply_kind,
        ReplyKind::LibraryCard
    );

    app.shutdown().await.unwrap();
}

async fn private_fact_stays_out_of_group_prompt(backend: Backend, test: &str) {
    let script = vec![short_answer("私聊"), short_answer("群聊")];
    let Some(mut app) = App::start(backend, test, script).await else {
        return;
    };
    let secret = "星河重工的采购总监私下告诉我预算是三百八十万";
    let private_question = format!("{secret}，但客户说我们的报价比竞品贵，怎么谈？");

    app.send_text(1, PRIVATE_CHAT, 130, &private_question);
    app.wait_for_cards(PRIVATE_CHAT, 1).await;
    app.send_mention(2, GROUP_CHAT, 131, BOT_USERNAME, QUESTION);
    app.wait_for_cards(GROUP_CHAT, 1).await;

    let requests = app.llm.requests();
    assert_eq!(requests.len(), 2);
    let private_request = requests[0].json.to_string();
    let group_request = requests[1].json.to_string();
    assert!(
        private_request.contains(secret),
        "the private prompt has the fact"
    );
    assert!(app.llm_questions()[1].contains(&fenced(QUESTION)));
    assert!(
        !group_request.contains("星河重工"),
        "the group prompt leaks the private fact: {group_request}"
    );
    assert!(!group_request.contains("三百八十万"));

    app.shutdown().await.unwrap();
}

async fn shutdown_finishes_answer_in_flight(backend: Backend, test: &str) {
    let answer = card_markdown(Lang::Zh, "关机前的回答", "价格异议往往是价值没讲清楚。");
    let script = vec![streamed(&answer, 8, Duration::from_millis(300))];
    let Some(mut app) = App::start(backend, test, script).await else {
        return;
    };

    app.send_text(1, PRIVATE_CHAT, 140, QUESTION);
    app.api.wait_for("sendMessage", 1).await;
    assert!(
        app.cards(PRIVATE_CHAT).is_empty(),
        "the answer is still streaming"
    );
    app.shutdown().await.expect("the daemon stops cleanly");

    let cards = app.cards(PRIVATE_CHAT);
    assert_eq!(cards.len(), 1, "the answer in flight was finished");
    assert!(text_of(&cards[0]).starts_with("<b>关机前的回答</b>"));
    assert_eq!(app.turns(PRIVATE_CHAT).await.len(), 1);
    assert_eq!(app.router.tasks_running(), 0);
}

async fn edits_are_paced_per_chat(backend: Backend, test: &str) {
    let answer = card_markdown(Lang::Zh, "节奏", "价格异议往往是价值没讲清楚。");
    let script = vec![
        streamed(&answer, 24, Duration::from_millis(125)),
        streamed(&answer, 24, Duration::from_millis(125)),
    ];
    let Some(mut app) = App::start(backend, test, script).await else {
        return;
    };

    app.send_text(1, PRIVATE_CHAT, 150, QUESTION);
    app.send_mention(2, GROUP_CHAT, 151, BOT_USERNAME, QUESTION);
    app.wait_for_cards(PRIVATE_CHAT, 1).await;
    app.wait_for_cards(GROUP_CHAT, 1).await;

    for chat in [PRIVATE_CHAT, GROUP_CHAT] {
        let outgoing = app.outgoing(chat);
        let edits = outgoing
            .iter()
            .filter(|call| call.method == "editMessageText")
            .count();
        assert!(
            edits >= 2,
            "chat {chat} had {edits} edits; the stream is too short"
        );
        assert_paced(&outgoing);
    }
    // The limit is per chat: the two chats' previews start close together.
    let first_private = &app.outgoing(PRIVATE_CHAT)[0];
    let first_group = &app.outgoing(GROUP_CHAT)[0];
    let apart = if first_private.at > first_group.at {
        first_private.at - first_group.at
    } else {
        first_group.at - first_private.at
    };
    assert!(
        apart < ONE_SECOND_WITH_JITTER,
        "chats were paced together: {apart:?}"
    );

    app.shutdown().await.unwrap();
}

async fn more_questions_button_asks_follow_up(backend: Backend, test: &str) {
    let script = vec![short_answer("第一问"), short_answer("更多可以问的")];
    let Some(mut app) = App::start(backend, test, script).await else {
        return;
    };

    app.send_text(1, PRIVATE_CHAT, 160, QUESTION);
    let cards = app.wait_for_cards(PRIVATE_CHAT, 1).await;
    app.wait_for_answers(1).await;
    let card_id = cards[0].body["message_id"].as_i64().unwrap();
    let more = button_data(&cards[0], "更多提问");
    app.press_button(2, PRIVATE_CHAT, card_id, "cb-more", &more);
    app.api.wait_for("answerCallbackQuery", 1).await;
    let cards = app.wait_for_cards(PRIVATE_CHAT, 2).await;
    app.wait_for_answers(2).await;

    let answered = &app.api.calls_of(&["answerCallbackQuery"])[0];
    assert_eq!(answered.body["callback_query_id"], "cb-more");
    assert!(answered.body.get("text").is_none(), "{:?}", answered.body);
    assert!(text_of(&cards[1]).starts_with("<b>更多可以问的</b>"));
    let follow_up_start = app
        .outgoing(PRIVATE_CHAT)
        .into_iter()
        .filter(|call| call.method == "sendMessage")
        .nth(1)
        .expect("the follow-up is a new message");
    assert_eq!(
        follow_up_start.body["reply_parameters"]["message_id"], card_id,
        "the follow-up replies to the card"
    );
    let requests = app.llm.requests();
    let follow_up = requests[1].json["messages"].to_string();
    assert!(
        follow_up.contains("再给我几个可以直接问对方的问题"),
        "{follow_up}"
    );
    assert!(
        follow_up.contains(QUESTION),
        "the follow-up prompt has the first turn"
    );
    let turns = app.turns(PRIVATE_CHAT).await;
    assert_eq!(turns.len(), 2);

    app.shutdown().await.unwrap();
}

async fn forum_topic_is_joined_after_mention(backend: Backend, test: &str) {
    let script = vec![short_answer("话题里的回答"), short_answer("话题里的追问")];
    let Some(mut app) = App::start(backend, test, script).await else {
        return;
    };
    let topic = 7;

    app.send_in_topic(1, GROUP_CHAT, 170, topic, Some(BOT_USERNAME), QUESTION);
    app.wait_for_cards(GROUP_CHAT, 1).await;
    // Outside the topic the bot still needs to be addressed; inside it the bot
    // has joined the discussion and answers without a mention.
    app.send_text(2, GROUP_CHAT, 171, QUESTION);
    app.send_in_topic(3, GROUP_CHAT, 172, topic, None, SECOND_QUESTION);
    let cards = app.wait_for_cards(GROUP_CHAT, 2).await;
    app.wait_for_answers(2).await;

    assert!(text_of(&cards[1]).starts_with("<b>话题里的追问</b>"));
    for call in app.api.calls_of(&["sendChatAction", "sendMessage"]) {
        assert_eq!(call.body["message_thread_id"], topic, "{call:?}");
    }
    let prompts = app.llm_questions();
    assert_eq!(prompts.len(), 2);
    assert!(prompts[1].contains(&fenced(SECOND_QUESTION)));
    let questions: Vec<String> = app.answers().await.into_iter().map(|(_, q)| q).collect();
    assert_eq!(questions, [QUESTION, SECOND_QUESTION]);

    app.shutdown().await.unwrap();
}

/// Generates one test per scenario and backend, e.g. `sqlite::feedback_button_is_stored`.
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite, stringify!($name)).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Postgres, stringify!($name)).await;
                }
            )*
        }
    };
}

scenarios!(
    private_chat_streams_card,
    group_mention_is_stripped,
    group_message_not_addressed_is_ignored,
    reply_to_bot_is_answered,
    ask_command_for_other_bot_is_ignored,
    repeated_update_is_answered_once,
    long_card_is_split_and_escaped,
    retry_after_is_honoured,
    feedback_button_is_stored,
    reset_and_lang_take_effect,
    llm_errors_give_library_card,
    llm_unreachable_gives_library_card,
    private_fact_stays_out_of_group_prompt,
    shutdown_finishes_answer_in_flight,
    edits_are_paced_per_chat,
    more_questions_button_asks_follow_up,
    forum_topic_is_joined_after_mention,
);
