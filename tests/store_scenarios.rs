//! The store contract: every scenario runs against SQLite and PostgreSQL.
//!
//! PostgreSQL scenarios need `TEST_DATABASE_URL`, e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`; each creates and drops its
//! own database. Without the variable they print a notice and pass.

#[path = "support/store.rs"]
mod store_support;

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{Duration as ChronoDuration, NaiveDate, NaiveTime, Utc};
use maxwin_channel::{
    Card, CardOrigin, Feedback, Lang, Platform, Rating, Reply, ReplyKind, SourceRef,
};
use maxwin_coach::store::{ConversationKey, NewSubscription, NewTurn, Store, StoreError, UserRef};
use store_support::TestStore;

/// Instantiates each scenario once per backend, on a multi-threaded runtime so
/// that the concurrency scenarios race for real.
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = super::TestStore::sqlite().await;
                    super::$name(&db).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(db) = super::TestStore::postgres(stringify!($name)).await else {
                        return;
                    };
                    super::$name(&db).await;
                }
            )*
        }
    };
}

scenarios!(
    migrations_rerun_on_reconnect,
    claim_event_once,
    claim_event_concurrent,
    prune_events_by_age,
    upsert_user_keeps_name,
    conversation_concurrent_same_row,
    conversation_keys_never_mix,
    recent_turns_order_and_limit,
    reset_hides_earlier_turns,
    record_turn_odd_text,
    feedback_on_delivered_answer,
    feedback_unknown_message,
    link_delivery_unknown_answer,
    set_lang_persisted,
    ping_succeeds,
    subscription_upsert_and_stop,
    tip_delivery_claimed_once,
);

fn key(chat: &str, thread: Option<&str>, user: Option<&str>) -> ConversationKey {
    ConversationKey {
        platform: Platform::Telegram,
        tenant: "bot-1".into(),
        chat: chat.into(),
        thread: thread.map(str::to_string),
        user: user.map(str::to_string),
    }
}

fn user(id: &str) -> UserRef {
    UserRef {
        platform: Platform::Telegram,
        tenant: "bot-1".into(),
        user_id: id.into(),
        display_name: Some(format!("User {id}")),
    }
}

fn text_turn(conversation_id: i64, user_db_id: i64, question: &str, answer: &str) -> NewTurn {
    NewTurn {
        conversation_id,
        user_db_id,
        user_text: question.into(),
        reply: Reply::Text {
            kind: ReplyKind::Command,
            lang: Lang::En,
            text: answer.into(),
        },
        reply_text: answer.into(),
        retrieved_ids: vec![],
        provider: None,
        model: None,
        prompt_tokens: None,
        completion_tokens: None,
        first_token_ms: None,
        total_ms: 3,
        complete: true,
        inbound_message_id: None,
    }
}

/// Stores one turn in a fresh conversation of chat `chat` and returns the answer id.
async fn answer_in_chat(store: &Arc<dyn Store>, chat: &str) -> i64 {
    let conversation = store.conversation(&key(chat, None, None)).await.unwrap();
    let user_id = store.upsert_user(&user("u1")).await.unwrap();
    store
        .record_turn(&text_turn(conversation.id, user_id, "question", "answer"))
        .await
        .unwrap()
}

fn feedback(chat: &str, message_id: &str, event_id: &str) -> Feedback {
    Feedback {
        platform: Platform::Telegram,
        tenant: "bot-1".into(),
        conversation: chat.into(),
        user: "u1".into(),
        answer_message_id: message_id.into(),
        rating: Some(Rating::Up),
        comment: None,
        event_id: event_id.into(),
        received_at: Utc::now(),
    }
}

async fn migrations_rerun_on_reconnect(db: &TestStore) {
    assert!(db.store.claim_event("before-reconnect").await.unwrap());

    let again = db.reconnect().await;
    let third = db.reconnect().await;

    again.ping().await.unwrap();
    assert!(!again.claim_event("before-reconnect").await.unwrap());
    assert!(!third.claim_event("before-reconnect").await.unwrap());
}

async fn claim_event_once(db: &TestStore) {
    let store = &db.store;

    assert!(store.claim_event("telegram:bot-1:100").await.unwrap());
    assert!(!store.claim_event("telegram:bot-1:100").await.unwrap());
    assert!(store.claim_event("telegram:bot-1:101").await.unwrap());
    assert!(store.claim_event("telegram:bot-2:100").await.unwrap());
}

async fn claim_event_concurrent(db: &TestStore) {
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = db.store.clone();
            tokio::spawn(async move { store.claim_event("slack:T1:race").await.unwrap() })
        })
        .collect();

    let mut winners = 0;
    for task in tasks {
        if task.await.unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}

async fn prune_events_by_age(db: &TestStore) {
    let store = &db.store;
    store.claim_event("old").await.unwrap();

    let removed = store
        .prune_events(Utc::now() - ChronoDuration::hours(1))
        .await
        .unwrap();
    assert_eq!(removed, 0);

    let removed = store
        .prune_events(Utc::now() + ChronoDuration::seconds(1))
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert!(store.claim_event("old").await.unwrap());
}

async fn upsert_user_keeps_name(db: &TestStore) {
    let store = &db.store;
    let first = store.upsert_user(&user("u7")).await.unwrap();

    let nameless = UserRef {
        display_name: None,
        ..user("u7")
    };
    let second = store.upsert_user(&nameless).await.unwrap();
    assert_eq!(first, second);

    let conversation = store.conversation(&key("c", None, None)).await.unwrap();
    store
        .record_turn(&text_turn(conversation.id, first, "q", "a"))
        .await
        .unwrap();
    let turns = store.recent_turns(conversation.id, 10).await.unwrap();
    assert_eq!(turns[0].user_id, "u7");
    assert_eq!(turns[0].display_name.as_deref(), Some("User u7"));

    let renamed = UserRef {
        display_name: Some("Renamed".into()),
        ..user("u7")
    };
    assert_eq!(store.upsert_user(&renamed).await.unwrap(), first);
    let turns = store.recent_turns(conversation.id, 10).await.unwrap();
    assert_eq!(turns[0].display_name.as_deref(), Some("Renamed"));

    let other_tenant = UserRef {
        tenant: "bot-2".into(),
        ..user("u7")
    };
    assert_ne!(store.upsert_user(&other_tenant).await.unwrap(), first);
}

async fn conversation_concurrent_same_row(db: &TestStore) {
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = db.store.clone();
            tokio::spawn(async move {
                store
                    .conversation(&key("group-9", Some("topic-1"), None))
                    .await
                    .unwrap()
                    .id
            })
        })
        .collect();

    let mut ids = HashSet::new();
    for task in tasks {
        ids.insert(task.await.unwrap());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
}

async fn conversation_keys_never_mix(db: &TestStore) {
    let store = &db.store;
    let keys = [
        key("chat-1", None, None),
        key("chat-1", Some("thread-a"), None),
        key("chat-1", Some("thread-b"), None),
        key("chat-1", None, Some("u1")),
        key("chat-1", Some("thread-a"), Some("u1")),
        key("chat-2", None, None),
        key("u1", None, Some("u1")),
        ConversationKey {
            tenant: "bot-2".into(),
            ..key("chat-1", None, None)
        },
        ConversationKey {
            platform: Platform::Slack,
            ..key("chat-1", None, None)
        },
    ];

    let mut ids = HashSet::new();
    for key in &keys {
        let id = store.conversation(key).await.unwrap().id;
        assert!(ids.insert(id), "{key:?} shares id {id} with another key");
    }

    for key in &keys {
        let id = store.conversation(key).await.unwrap().id;
        assert!(ids.contains(&id), "{key:?} got a new id on the second call");
    }

    let absent = store
        .conversation(&key("chat-1", None, None))
        .await
        .unwrap();
    let empty = store
        .conversation(&key("chat-1", Some(""), Some("")))
        .await
        .unwrap();
    assert_eq!(absent.id, empty.id);
}

async fn recent_turns_order_and_limit(db: &TestStore) {
    let store = &db.store;
    let conversation = store.conversation(&key("c", None, None)).await.unwrap();
    let other = store.conversation(&key("other", None, None)).await.unwrap();
    let user_id = store.upsert_user(&user("u1")).await.unwrap();

    for i in 0..5 {
        store
            .record_turn(&text_turn(
                conversation.id,
                user_id,
                &format!("q{i}"),
                &format!("a{i}"),
            ))
            .await
            .unwrap();
    }
    store
        .record_turn(&text_turn(other.id, user_id, "elsewhere", "elsewhere"))
        .await
        .unwrap();

    let turns = store.recent_turns(conversation.id, 3).await.unwrap();
    let questions: Vec<_> = turns.iter().map(|t| t.user_text.as_str()).collect();
    assert_eq!(questions, ["q2", "q3", "q4"]);
    assert_eq!(turns[2].reply_text, "a4");
    assert_eq!(turns[2].reply_kind, ReplyKind::Command);
    assert!(turns[0].created_at <= turns[2].created_at);
    assert!((Utc::now() - turns[2].created_at).num_seconds().abs() < 60);

    let all = store.recent_turns(conversation.id, 100).await.unwrap();
    assert_eq!(all.len(), 5);

    let none = store.recent_turns(conversation.id, 0).await.unwrap();
    assert!(none.is_empty());
}

async fn reset_hides_earlier_turns(db: &TestStore) {
    let store = &db.store;
    let conversation = store.conversation(&key("c", None, None)).await.unwrap();
    assert_eq!(conversation.reset_at, None);
    let user_id = store.upsert_user(&user("u1")).await.unwrap();

    store
        .record_turn(&text_turn(conversation.id, user_id, "before", "a"))
        .await
        .unwrap();
    store.reset_conversation(conversation.id).await.unwrap();
    assert!(
        store
            .recent_turns(conversation.id, 10)
            .await
            .unwrap()
            .is_empty()
    );

    store
        .record_turn(&text_turn(conversation.id, user_id, "after", "b"))
        .await
        .unwrap();
    let turns = store.recent_turns(conversation.id, 10).await.unwrap();
    let questions: Vec<_> = turns.iter().map(|t| t.user_text.as_str()).collect();
    assert_eq!(questions, ["after"]);

    let reloaded = store.conversation(&key("c", None, None)).await.unwrap();
    assert!(reloaded.reset_at.is_some());

    let missing = store.reset_conversation(i64::MAX).await;
    assert!(
        matches!(missing, Err(StoreError::ConversationNotFound(_))),
        "{missing:?}"
    );
}

async fn record_turn_odd_text(db: &TestStore) {
    let store = &db.store;
    let conversation = store
        .conversation(&key("c\0hat", Some("t\0"), None))
        .await
        .unwrap();
    let user_id = store
        .upsert_user(&UserRef {
            display_name: Some("名字\0\u{202E}".into()),
            ..user("u\0")
        })
        .await
        .unwrap();

    let odd = "nul\0here \u{FFFE}\u{FFFF} rtl\u{200F}\u{202E}mark 😀👍🏽 销售参谋 e\u{301}";
    let big = "长".repeat(35_000); // 105,000 bytes of UTF-8
    let card = Card {
        lang: Lang::Zh,
        origin: CardOrigin::Tailored,
        title: "标题\0".into(),
        question: odd.into(),
        self_check: vec!["自查\0".into()],
        sources: vec![SourceRef {
            id: "QA_001\0".into(),
            title: "来源".into(),
        }],
        ..Card::default()
    };

    let mut turn = text_turn(conversation.id, user_id, odd, &big);
    turn.reply = Reply::Card(card);
    turn.retrieved_ids = vec!["doc\0one".into(), "dadingdan-17".into()];
    turn.provider = Some("local\0".into());
    turn.model = Some("model-😀".into());
    turn.prompt_tokens = Some(u32::MAX);
    turn.completion_tokens = Some(0);
    turn.first_token_ms = Some(u64::MAX);
    turn.complete = false;
    turn.inbound_message_id = Some("m\0".into());
    store.record_turn(&turn).await.unwrap();

    let mut big_question = text_turn(conversation.id, user_id, &big, odd);
    big_question.reply = Reply::Text {
        kind: ReplyKind::Error,
        lang: Lang::Zh,
        text: odd.into(),
    };
    store.record_turn(&big_question).await.unwrap();

    let turns = store.recent_turns(conversation.id, 10).await.unwrap();
    assert_eq!(turns.len(), 2);
    let cleaned = odd.replace('\0', "\u{FFFD}");
    assert_eq!(turns[0].user_text, cleaned);
    assert_eq!(turns[0].reply_text, big);
    assert_eq!(turns[0].reply_kind, ReplyKind::Card);
    assert_eq!(turns[0].user_id, "u\u{FFFD}");
    assert_eq!(
        turns[0].display_name.as_deref(),
        Some("名字\u{FFFD}\u{202E}")
    );
    assert_eq!(turns[1].user_text, big);
    assert_eq!(turns[1].reply_text, cleaned);
    assert_eq!(turns[1].reply_kind, ReplyKind::Error);
}

async fn feedback_on_delivered_answer(db: &TestStore) {
    let store = &db.store;
    let answer_id = answer_in_chat(store, "chat-1").await;
    store
        .link_delivery(answer_id, Platform::Telegram, "bot-1", "42")
        .await
        .unwrap();
    store
        .link_delivery(answer_id, Platform::Telegram, "bot-1", "42")
        .await
        .unwrap();
    store
        .link_delivery(answer_id, Platform::Telegram, "bot-1", "43")
        .await
        .unwrap();

    assert!(
        store
            .record_feedback(&feedback("chat-1", "42", "press-1"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_feedback(&feedback("chat-1", "42", "press-1"))
            .await
            .unwrap()
    );

    let comment = Feedback {
        rating: None,
        comment: Some("太长了\0".into()),
        ..feedback("chat-1", "43", "press-2")
    };
    assert!(store.record_feedback(&comment).await.unwrap());
}

async fn feedback_unknown_message(db: &TestStore) {
    let store = &db.store;
    let answer_id = answer_in_chat(store, "chat-1").await;
    store
        .link_delivery(answer_id, Platform::Telegram, "bot-1", "42")
        .await
        .unwrap();

    assert!(
        !store
            .record_feedback(&feedback("chat-1", "999", "p1"))
            .await
            .unwrap()
    );

    // Telegram numbers messages per chat, so message 42 in another chat is a
    // different message.
    assert!(
        !store
            .record_feedback(&feedback("chat-2", "42", "p2"))
            .await
            .unwrap()
    );

    let other_tenant = Feedback {
        tenant: "bot-2".into(),
        ..feedback("chat-1", "42", "p3")
    };
    assert!(!store.record_feedback(&other_tenant).await.unwrap());
}

async fn link_delivery_unknown_answer(db: &TestStore) {
    let result = db
        .store
        .link_delivery(i64::MAX, Platform::Telegram, "bot-1", "42")
        .await;
    assert!(
        matches!(result, Err(StoreError::AnswerNotFound(_))),
        "{result:?}"
    );
}

async fn set_lang_persisted(db: &TestStore) {
    let conversation = db.store.conversation(&key("c", None, None)).await.unwrap();
    assert_eq!(conversation.lang, None);

    db.store
        .set_lang(conversation.id, Some(Lang::En))
        .await
        .unwrap();
    let reopened = db.reconnect().await;
    let reloaded = reopened.conversation(&key("c", None, None)).await.unwrap();
    assert_eq!(reloaded.id, conversation.id);
    assert_eq!(reloaded.lang, Some(Lang::En));

    reopened.set_lang(conversation.id, None).await.unwrap();
    let cleared = db.store.conversation(&key("c", None, None)).await.unwrap();
    assert_eq!(cleared.lang, None);

    let missing = db.store.set_lang(i64::MAX, Some(Lang::Zh)).await;
    assert!(
        matches!(missing, Err(StoreError::ConversationNotFound(_))),
        "{missing:?}"
    );
}

async fn ping_succeeds(db: &TestStore) {
    db.store.ping().await.unwrap();
}

fn subscription(chat: &str, user: Option<&str>, hour: u32) -> NewSubscription {
    NewSubscription {
        key: key(chat, None, user),
        local_time: NaiveTime::from_hms_opt(hour, 30, 0).unwrap(),
        time_zone: "Asia/Shanghai".into(),
        lang: Lang::Zh,
    }
}

async fn subscription_upsert_and_stop(db: &TestStore) {
    let store = &db.store;
    let first = store
        .upsert_subscription(&subscription("group-1", None, 9))
        .await
        .unwrap();
    assert!(first.active);
    assert_eq!(first.key, key("group-1", None, None));
    assert_eq!(first.local_time, NaiveTime::from_hms_opt(9, 30, 0).unwrap());
    assert_eq!(first.time_zone, "Asia/Shanghai");

    let direct = store
        .upsert_subscription(&subscription("u1", Some("u1"), 8))
        .await
        .unwrap();
    assert_ne!(direct.id, first.id);
    assert_eq!(direct.key.user.as_deref(), Some("u1"));

    let changed = NewSubscription {
        time_zone: "Europe/Berlin".into(),
        lang: Lang::En,
        ..subscription("group-1", None, 18)
    };
    let updated = store.upsert_subscription(&changed).await.unwrap();
    assert_eq!(updated.id, first.id);
    assert_eq!(
        updated.local_time,
        NaiveTime::from_hms_opt(18, 30, 0).unwrap()
    );
    assert_eq!(updated.time_zone, "Europe/Berlin");
    assert_eq!(updated.lang, Lang::En);

    store
        .set_subscription_active(first.id, false)
        .await
        .unwrap();
    let active = store.active_subscriptions().await.unwrap();
    let ids: Vec<_> = active.iter().map(|s| s.id).collect();
    assert_eq!(ids, [direct.id]);

    let restarted = store.upsert_subscription(&changed).await.unwrap();
    assert!(restarted.active);
    assert_eq!(store.active_subscriptions().await.unwrap().len(), 2);

    let missing = store.set_subscription_active(i64::MAX, true).await;
    assert!(
        matches!(missing, Err(StoreError::SubscriptionNotFound(_))),
        "{missing:?}"
    );
}

async fn tip_delivery_claimed_once(db: &TestStore) {
    let sub = db
        .store
        .upsert_subscription(&subscription("group-1", None, 9))
        .await
        .unwrap();
    let day = NaiveDate::from_ymd_opt(2025, 3, 1).unwrap();

    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = db.store.clone();
            tokio::spawn(async move {
                store
                    .claim_tip_delivery(sub.id, day, "tip-1")
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        if task.await.unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);

    let next_day = day.succ_opt().unwrap();
    assert!(
        db.store
            .claim_tip_delivery(sub.id, next_day, "tip-2")
            .await
            .unwrap()
    );
    assert!(
        !db.store
            .claim_tip_delivery(sub.id, next_day, "tip-3")
            .await
            .unwrap()
    );
}
