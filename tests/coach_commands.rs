//! Reply language and chat commands, through `Coach::handle` with a real store
//! (SQLite, and PostgreSQL when `TEST_DATABASE_URL` is set). Most tests run
//! without an LLM, so the cards are library cards the coach assembles itself.

#[path = "support/coach.rs"]
mod coach;
#[path = "support/mock_llm.rs"]
mod mock_llm;
#[path = "support/store.rs"]
mod store;

use maxwin_channel::card::Labels;
use maxwin_channel::{Card, Inbound, Lang, Reply, ReplyKind, render};
use maxwin_coach::coach::{Coach, conversation_key};
use mock_llm::{MockLlm, MockResponse};
use sqlx::{PgPool, SqlitePool};
use store::TestStore;

use coach::{RecordingSink, direct, group};

/// Generates one test per backend for an `async fn scenario(&TestStore)`.
macro_rules! on_both_backends {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test]
            async fn sqlite() {
                let db = super::TestStore::sqlite().await;
                super::$scenario(&db).await;
            }

            #[tokio::test]
            async fn postgres() {
                let Some(db) = super::TestStore::postgres(stringify!($scenario)).await else {
                    return;
                };
                super::$scenario(&db).await;
            }
        }
    };
}

fn has_han(text: &str) -> bool {
    text.chars().any(|c| ('\u{4E00}'..='\u{9FFF}').contains(&c))
}

async fn ask(coach: &Coach, msg: &Inbound) -> Reply {
    let mut sink = RecordingSink::new();
    coach.handle(msg, &mut sink).await.expect("delivered");
    sink.reply().clone()
}

fn expect_card(reply: Reply) -> Card {
    match reply {
        Reply::Card(card) => card,
        Reply::Text { kind, text, .. } => panic!("expected a card, got {kind:?}: {text}"),
    }
}

fn expect_text(reply: &Reply) -> (ReplyKind, Lang, &str) {
    match reply {
        Reply::Text { kind, lang, text } => (*kind, *lang, text.as_str()),
        Reply::Card(card) => panic!("expected a text reply, got the card {:?}", card.title),
    }
}

/// Asserts that the rendered card carries every section label of `lang` and
/// none of the other language.
fn assert_labels(card: &Card, lang: Lang, message: &str) {
    let rendered = render::to_markdown(card);
    let own = Labels::for_lang(lang);
    let other = Labels::for_lang(match lang {
        Lang::Zh => Lang::En,
        Lang::En => Lang::Zh,
    });
    for label in [own.situation, own.breakthrough, own.actions, own.sources] {
        assert!(
            rendered.contains(label),
            "{message}: label {label:?} missing from\n{rendered}"
        );
    }
    for label in [other.situation, other.actions_now, other.actions_later] {
        assert!(
            !rendered.contains(label),
            "{message}: label {label:?} of the other language in\n{rendered}"
        );
    }
}

/// Counts the rows of `table` in the test database, past any reset.
async fn count_rows(db: &TestStore, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    if db.url.starts_with("sqlite:") {
        let pool = SqlitePool::connect(&db.url).await.expect("open SQLite");
        sqlx::query_scalar(&sql).fetch_one(&pool).await.unwrap()
    } else {
        let pool = PgPool::connect(&db.url).await.expect("open PostgreSQL");
        sqlx::query_scalar(&sql).fetch_one(&pool).await.unwrap()
    }
}

async fn reply_language_follows_message(db: &TestStore) {
    let coach = coach::coach(db.store.clone(), None);
    let cases = [
        ("客户已读不回咋整", Lang::Zh),
        (
            "A prospect went dark after I sent the proposal. How do I re-engage?",
            Lang::En,
        ),
        ("pipeline 看着挺满，但老板说我 forecast 水分太大", Lang::Zh),
    ];

    for (index, (text, lang)) in cases.into_iter().enumerate() {
        let msg = direct(&format!("lang-{index}"), text);
        let card = expect_card(ask(&coach, &msg).await);

        assert_eq!(card.lang, lang, "{text}");
        assert!(
            card.is_complete(),
            "{text}: missing {:?}",
            card.missing_parts()
        );
        assert_labels(&card, lang, text);
        if lang == Lang::En {
            assert!(
                !has_han(&card.situation.diagnosis),
                "{text}: diagnosis is not English: {}",
                card.situation.diagnosis
            );
        }
    }
}
on_both_backends!(reply_language_follows_message);

async fn lang_command_overrides_detection(db: &TestStore) {
    let coach = coach::coach(db.store.clone(), None);

    let reply = ask(&coach, &direct("kim", "/lang en")).await;
    let (kind, lang, text) = expect_text(&reply);
    assert_eq!(kind, ReplyKind::Command);
    assert_eq!(lang, Lang::En);
    assert!(!has_han(text), "confirmation is not English: {text}");

    let card = expect_card(ask(&coach, &direct("kim", "客户嫌贵怎么回")).await);
    assert_eq!(card.lang, Lang::En);
    assert!(card.is_complete(), "missing {:?}", card.missing_parts());
    assert_labels(&card, Lang::En, "after /lang en");
    assert!(
        !has_han(&card.situation.diagnosis),
        "diagnosis is not English: {}",
        card.situation.diagnosis
    );

    // The setting belongs to kim's private chat, not to other conversations.
    let card = expect_card(ask(&coach, &group("G", "kim", "客户嫌贵怎么回")).await);
    assert_eq!(card.lang, Lang::Zh);

    let reply = ask(&coach, &direct("kim", "/lang zh")).await;
    assert_eq!(reply.lang(), Lang::Zh);
    let card = expect_card(ask(&coach, &direct("kim", SILENT_EN)).await);
    assert_eq!(
        card.lang,
        Lang::Zh,
        "/lang zh answers English text in Chinese"
    );
}
on_both_backends!(lang_command_overrides_detection);

const SILENT_EN: &str = "The prospect went silent after our proposal. What now?";

async fn lang_override_reaches_prompt(db: &TestStore) {
    let mock = MockLlm::start(vec![MockResponse::chat_stream(&["[[OFF_TOPIC]]"])]).await;
    let coach = coach::coach(db.store.clone(), Some(coach::llm_client(&mock.base_url())));

    ask(&coach, &direct("lee", "/lang en")).await;
    let reply = ask(
        &coach,
        &direct("lee", "客户说我们比竞品贵三成，要不要打折？"),
    )
    .await;

    assert_eq!(reply.lang(), Lang::En);
    let requests = mock.requests();
    assert_eq!(requests.len(), 1, "commands do not call the LLM");
    let messages = requests[0].json["messages"].as_array().unwrap();
    let system = messages[0]["content"].as_str().unwrap();
    let user = messages.last().unwrap()["content"].as_str().unwrap();
    assert!(system.contains("Write the whole card in English"));
    assert!(
        user.ends_with("Reply language: en."),
        "user message: {user}"
    );
}
on_both_backends!(lang_override_reaches_prompt);

async fn reset_hides_history_keeps_rows(db: &TestStore) {
    let coach = coach::coach(db.store.clone(), None);
    let first = direct("mia", "客户已读不回咋整");
    ask(&coach, &first).await;
    ask(&coach, &direct("mia", "客户嫌贵怎么回")).await;
    let conversation = db
        .store
        .conversation(&conversation_key(&first))
        .await
        .unwrap();
    assert_eq!(
        db.store
            .recent_turns(conversation.id, 10)
            .await
            .unwrap()
            .len(),
        2
    );

    let reply = ask(&coach, &direct("mia", "/reset")).await;
    let (kind, lang, _) = expect_text(&reply);
    assert_eq!(kind, ReplyKind::Command);
    assert_eq!(lang, Lang::Zh);

    let turns = db.store.recent_turns(conversation.id, 10).await.unwrap();
    assert!(turns.is_empty(), "turns after /reset: {turns:?}");
    assert_eq!(count_rows(db, "messages").await, 2, "rows are kept");

    ask(&coach, &direct("mia", "客户说要再考虑一下")).await;
    let turns = db.store.recent_turns(conversation.id, 10).await.unwrap();
    assert_eq!(turns.len(), 1, "history restarts after /reset");
    assert_eq!(turns[0].user_text, "客户说要再考虑一下");
}
on_both_backends!(reset_hides_history_keeps_rows);

/// Sends each command in a fresh conversation and checks the reply's kind and language.
async fn commands_answer_in_language(db: &TestStore) {
    let coach = coach::coach(db.store.clone(), None);
    let cases = [
        ("/help", Lang::Zh),
        ("/start", Lang::Zh),
        ("/foo", Lang::Zh),
        ("/ask", Lang::Zh),
        ("/ask   ", Lang::Zh),
        ("/feedback 很有用", Lang::Zh),
        ("/feedback", Lang::Zh),
        ("/lang", Lang::Zh),
        ("/feedback The second action was really useful", Lang::En),
    ];
    for (index, (text, lang)) in cases.into_iter().enumerate() {
        let reply = ask(&coach, &direct(&format!("cmd-{index}"), text)).await;
        let (kind, reply_lang, body) = expect_text(&reply);
        assert_eq!(kind, ReplyKind::Command, "{text}");
        assert_eq!(reply_lang, lang, "{text}");
        assert_eq!(has_han(body), lang == Lang::Zh, "{text}: {body}");
    }

    // After /lang en every command answers in English.
    ask(&coach, &direct("cmd-en", "/lang en")).await;
    for text in ["/help", "/start", "/foo", "/ask", "/feedback 很有用"] {
        let reply = ask(&coach, &direct("cmd-en", text)).await;
        let (kind, reply_lang, body) = expect_text(&reply);
        assert_eq!(kind, ReplyKind::Command, "{text}");
        assert_eq!(reply_lang, Lang::En, "{text}");
        // The help text names the bot in Chinese too; the rest must be English.
        let without_name = body.replace("销售参谋", "");
        assert!(!has_han(&without_name), "{text}: {body}");
    }

    let help = ask(&coach, &direct("cmd-help", "/help")).await;
    let (_, _, body) = expect_text(&help);
    for command in ["/ask", "/reset", "/lang", "/feedback", "/help"] {
        assert!(body.contains(command), "/help does not list {command}");
    }

    // /ask with a question is a question, not a command.
    let reply = ask(&coach, &direct("cmd-ask", "/ask 客户嫌贵怎么回")).await;
    assert_eq!(reply.kind(), ReplyKind::LibraryCard);
}
on_both_backends!(commands_answer_in_language);

async fn feedback_comment_is_stored(db: &TestStore) {
    let coach = coach::coach(db.store.clone(), None);
    ask(&coach, &direct("nina", "客户嫌贵怎么回")).await;

    let reply = ask(&coach, &direct("nina", "/feedback 很有用")).await;

    assert_eq!(reply.kind(), ReplyKind::Command);
    assert_eq!(
        count_rows(db, "feedback").await,
        1,
        "the coach thanks the user, so the comment must be stored"
    );
}

on_both_backends!(feedback_comment_is_stored);

/// A new off-topic message after a sales question is not read as a follow-up:
/// only a reply to the bot's card borrows the previous question's topic.
async fn off_topic_after_sales_question(db: &TestStore) {
    let coach = coach::coach(db.store.clone(), None);
    let first = ask(&coach, &direct("omar", "客户嫌贵怎么回")).await;
    assert_eq!(first.kind(), ReplyKind::LibraryCard);

    let weather = ask(&coach, &direct("omar", "明天杭州下雨吗，要带伞不")).await;
    assert_eq!(expect_text(&weather).0, ReplyKind::OffTopic);

    let mut follow_up = direct("omar", "还有别的说法吗？");
    follow_up.replies_to_bot = true;
    let reply = ask(&coach, &follow_up).await;
    assert_eq!(reply.kind(), ReplyKind::LibraryCard);

    // In a direct chat a continuation word is enough, as in `maxwin chat`.
    let reply = ask(&coach, &direct("omar", "那如果他还是不回呢")).await;
    assert_eq!(reply.kind(), ReplyKind::LibraryCard);
    let reply = ask(&coach, &direct("omar", "What if they still say no?")).await;
    assert_eq!(reply.kind(), ReplyKind::LibraryCard);
}

on_both_backends!(off_topic_after_sales_question);
