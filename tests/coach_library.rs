//! The coach without an LLM: library cards for the development evaluation set
//! and the reference questions, and answers while the database is down.

#[path = "support/coach.rs"]
mod coach;
#[path = "support/mock_llm.rs"]
mod mock_llm;
#[path = "support/store.rs"]
mod store;

use std::path::Path;

use maxwin_channel::{Card, CardOrigin, Lang, Reply, ReplyKind};
use maxwin_coach::coach::{Coach, lang};
use maxwin_coach::store::sqlite::SqliteStore;
use maxwin_coach::store::{ConnectOptions, Store};
use serde::Deserialize;
use sqlx::{Connection, Executor, PgConnection};
use store::TestStore;

use coach::{RecordingSink, direct};

const PRICE_QUESTION: &str = "客户说我们报价比竞品贵了30%，老板批不下来，我要不要申请折扣？";
const SILENT_QUESTION: &str = "The prospect went silent after our proposal. What now?";

fn has_han(text: &str) -> bool {
    text.chars().any(|c| ('\u{4E00}'..='\u{9FFF}').contains(&c))
}

async fn offline_coach() -> (Coach, TestStore) {
    let db = TestStore::sqlite().await;
    (coach::coach(db.store.clone(), None), db)
}

async fn answer(coach: &Coach, question: &str) -> Reply {
    let mut sink = RecordingSink::without_progress();
    let reply = coach.answer_once(question, None, &mut sink).await;
    assert!(
        sink.calls.is_empty(),
        "answer_once must leave delivery to the caller"
    );
    reply
}

#[derive(Debug, Deserialize)]
struct EvalMessage {
    qid: String,
    lang: String,
    text: String,
    #[serde(default)]
    relevant: Vec<String>,
    #[serde(default)]
    expect: Option<String>,
}

/// Returns what is wrong with a reply to an on-topic message, if anything.
fn check_on_topic(reply: &Reply, expected: Lang) -> Option<String> {
    let card = match reply {
        Reply::Card(card) => card,
        Reply::Text { kind, .. } => return Some(format!("got a {kind:?} text, not a card")),
    };
    let mut problems = Vec::new();
    if card.origin != CardOrigin::Library {
        problems.push(format!("origin {:?}", card.origin));
    }
    if !card.is_complete() {
        problems.push(format!("missing {:?}", card.missing_parts()));
    }
    if card.lang != expected {
        problems.push(format!("lang {:?}, expected {expected:?}", card.lang));
    }
    if expected == Lang::En && has_han(&card.situation.diagnosis) {
        problems.push("Chinese diagnosis in an English card".to_string());
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

#[tokio::test]
async fn eval_set_gets_library_answers() {
    // The evaluation set sits next to the checkout: beside the main checkout,
    // or two levels up from a worktree in a folder of worktrees.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        manifest.join("../shared/eval/retrieval-dev.jsonl"),
        manifest.join("../../shared/eval/retrieval-dev.jsonl"),
    ];
    let Some(text) = candidates
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
    else {
        eprintln!(
            "skipped `eval_set_gets_library_answers`: {} is absent",
            candidates[0].display()
        );
        return;
    };
    let messages: Vec<EvalMessage> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("valid eval line"))
        .collect();
    assert!(
        messages.len() >= 40,
        "eval set has {} lines",
        messages.len()
    );
    let (coach, _db) = offline_coach().await;

    let mut failures = Vec::new();
    let mut off_topic_seen = 0;
    for message in &messages {
        let reply = answer(&coach, &message.text).await;
        let detected = lang::detect(&message.text, Lang::Zh);
        match message.lang.as_str() {
            "zh" => assert_eq!(detected, Lang::Zh, "{}", message.qid),
            "en" => assert_eq!(detected, Lang::En, "{}", message.qid),
            _ => {}
        }

        let problem = if message.expect.as_deref() == Some("off_topic") {
            off_topic_seen += 1;
            match &reply {
                Reply::Text {
                    kind: ReplyKind::OffTopic,
                    lang,
                    ..
                } if *lang == detected => None,
                other => Some(format!(
                    "expected the off-topic reply in {detected:?}, got {:?} in {:?}",
                    other.kind(),
                    other.lang()
                )),
            }
        } else {
            assert!(
                !message.relevant.is_empty(),
                "{} has no labels",
                message.qid
            );
            check_on_topic(&reply, detected)
        };
        if let Some(problem) = problem {
            failures.push(format!("{} {:?}: {problem}", message.qid, message.text));
        }
    }

    assert_eq!(off_topic_seen, 3, "the set has three off-topic messages");
    assert!(
        failures.is_empty(),
        "{} of {} messages failed:\n{}",
        failures.len(),
        messages.len(),
        failures.join("\n")
    );
}

fn expect_card(reply: Reply) -> Card {
    match reply {
        Reply::Card(card) => card,
        Reply::Text { kind, text, .. } => panic!("expected a card, got {kind:?}: {text}"),
    }
}

#[tokio::test]
async fn price_question_cites_price_card() {
    let (coach, _db) = offline_coach().await;

    let card = expect_card(answer(&coach, PRICE_QUESTION).await);

    assert_eq!(card.origin, CardOrigin::Library);
    assert_eq!(card.lang, Lang::Zh);
    assert!(card.is_complete(), "missing {:?}", card.missing_parts());
    let ids: Vec<&str> = card.sources.iter().map(|s| s.id.as_str()).collect();
    assert!(
        ids.contains(&"QA_002_Handling_Price_Objections_ZH"),
        "sources: {ids:?}"
    );
    assert!(has_han(&card.situation.diagnosis));
    assert!(card.self_check.len() >= 2);
}

#[tokio::test]
async fn silent_prospect_gets_english_card() {
    let (coach, _db) = offline_coach().await;

    let card = expect_card(answer(&coach, SILENT_QUESTION).await);

    assert_eq!(card.origin, CardOrigin::Library);
    assert_eq!(card.lang, Lang::En);
    assert!(card.is_complete(), "missing {:?}", card.missing_parts());
    assert!(
        !has_han(&card.situation.diagnosis),
        "diagnosis: {}",
        card.situation.diagnosis
    );
    assert!(!card.situation.diagnosis.trim().is_empty());
    let rendered = maxwin_channel::render::to_markdown(&card);
    let labels = maxwin_channel::card::Labels::for_lang(Lang::En);
    for label in [labels.situation, labels.actions_now, labels.actions_later] {
        assert!(rendered.contains(label), "{label:?} missing:\n{rendered}");
    }
    for part in card
        .self_check
        .iter()
        .chain(card.actions_now.iter().map(|a| &a.text))
    {
        assert!(!has_han(part), "Chinese text in an English card: {part}");
    }
}

/// Asserts that `store` (already unavailable) still lets the coach answer.
async fn assert_answers_without_store(store: std::sync::Arc<dyn Store>) {
    let coach = coach::coach(store, None);

    let mut sink = RecordingSink::new();
    let outcome = coach
        .handle(&direct("olga", PRICE_QUESTION), &mut sink)
        .await
        .expect("the reply is delivered while the store is down");
    let card = sink.card();
    assert_eq!(card.origin, CardOrigin::Library);
    assert!(card.is_complete(), "missing {:?}", card.missing_parts());
    assert_eq!(outcome.kind, ReplyKind::LibraryCard);
    assert_eq!(outcome.answer_id, None);

    // Commands that need the store explain the failure in the user's language;
    // `/lang en` already asks for English.
    for (text, lang) in [("/reset", Lang::Zh), ("/lang en", Lang::En)] {
        let mut sink = RecordingSink::new();
        coach
            .handle(&direct("olga", text), &mut sink)
            .await
            .expect("delivered");
        let Reply::Text {
            kind,
            lang: reply_lang,
            text: body,
        } = sink.reply()
        else {
            panic!("{text}: expected a text reply");
        };
        assert_eq!(*kind, ReplyKind::Error, "{text}");
        assert_eq!(*reply_lang, lang, "{text}");
        assert_eq!(has_han(body), lang == Lang::Zh, "{text}: {body}");
    }
}

#[tokio::test]
async fn sqlite_outage_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("coach.db").display());
    let store = SqliteStore::connect(&url, ConnectOptions::default())
        .await
        .expect("open SQLite");
    // A closed pool fails every query, as a database that went away does.
    store.pool().close().await;
    drop(dir);

    assert_answers_without_store(std::sync::Arc::new(store)).await;
}

#[tokio::test]
async fn postgres_outage_still_answers() {
    let Some(db) = TestStore::postgres("postgres_outage_still_answers").await else {
        return;
    };
    let admin_url = std::env::var(store::TEST_DATABASE_URL).unwrap();
    let name = url::Url::parse(&db.url)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_string();
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    admin
        .execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str())
        .await
        .expect("drop the test database under the store");
    admin.close().await.ok();

    assert_answers_without_store(db.store.clone()).await;
}
