//! Router behaviour: addressing rules, allowlist, dedupe, rate limit, ordering
//! and error replies, against in-memory fakes of the coach and the store.

#[path = "support/server.rs"]
mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use maxwin_channel::{Accepted, Feedback, Handler, Lang, Platform, Rating, ReplyKind};
use maxwin_coach::server::{RateLimitSettings, RouterSettings};
use support::{FakeResponder, Harness, direct, group, text_of};

fn open_settings() -> RouterSettings {
    RouterSettings {
        rate_limit: RateLimitSettings {
            per_minute: 0,
            burst: 1,
        },
        ..RouterSettings::default()
    }
}

#[tokio::test(start_paused = true)]
async fn direct_message_answered() {
    let mut harness = Harness::new(FakeResponder::default(), open_settings());

    let accepted = harness.send(direct("m1", "客户嫌贵怎么办")).await.unwrap();
    let sent = harness.next_reply().await;

    assert_eq!(accepted, Accepted::Queued);
    assert_eq!(sent.message_id, "m1");
    assert_eq!(text_of(&sent.reply).2, "answer to m1");
    assert_eq!(harness.responder.calls(), ["m1"]);
}

#[tokio::test(start_paused = true)]
async fn group_message_without_mention_ignored() {
    let mut harness = Harness::new(FakeResponder::default(), open_settings());

    let accepted = harness.send(group("m1", "lunch at noon?")).await.unwrap();

    assert_eq!(accepted, Accepted::Ignored);
    assert!(harness.drain_replies().await.is_empty());
    assert!(harness.responder.calls().is_empty());
    assert!(
        harness
            .metrics
            .render()
            .contains("maxwin_ignored_total{reason=\"not_addressed\"} 1\n")
    );
}

#[tokio::test(start_paused = true)]
async fn group_mention_reply_and_command_answered() {
    let mut harness = Harness::new(FakeResponder::default(), open_settings());
    let mut mention = group("m1", "how do I handle this objection?");
    mention.mentions_bot = true;
    let mut reply = group("m2", "and what if they say no?");
    reply.replies_to_bot = true;
    let command = group("m3", "/help");
    let other_bot_command = group("m4", "/start@other_bot");

    assert_eq!(harness.send(mention).await.unwrap(), Accepted::Queued);
    assert_eq!(harness.send(reply).await.unwrap(), Accepted::Queued);
    assert_eq!(harness.send(command).await.unwrap(), Accepted::Queued);
    assert_eq!(
        harness.send(other_bot_command).await.unwrap(),
        Accepted::Ignored
    );

    let answered: Vec<String> = [
        harness.next_reply().await,
        harness.next_reply().await,
        harness.next_reply().await,
    ]
    .into_iter()
    .map(|sent| sent.message_id)
    .collect();
    assert_eq!(answered, ["m1", "m2", "m3"]);
    assert_eq!(harness.responder.calls(), ["m1", "m2", "m3"]);
}

#[tokio::test(start_paused = true)]
async fn joined_thread_answered_without_mention() {
    let mut harness = Harness::new(FakeResponder::default(), open_settings());
    let in_thread = |id: &str, thread: &str| {
        let mut message = group(id, "follow-up question");
        message.thread = Some(thread.to_owned());
        message
    };
    let mut first = in_thread("m1", "t1");
    first.mentions_bot = true;

    assert_eq!(harness.send(first).await.unwrap(), Accepted::Queued);
    harness.next_reply().await;

    assert_eq!(
        harness.send(in_thread("m2", "t1")).await.unwrap(),
        Accepted::Queued
    );
    assert_eq!(harness.next_reply().await.message_id, "m2");

    // Other threads, and the channel outside any thread, still need a mention.
    assert_eq!(
        harness.send(in_thread("m3", "t2")).await.unwrap(),
        Accepted::Ignored
    );
    assert_eq!(
        harness
            .send(group("m4", "follow-up question"))
            .await
            .unwrap(),
        Accepted::Ignored
    );
    assert_eq!(harness.responder.calls(), ["m1", "m2"]);
}

#[tokio::test(start_paused = true)]
async fn joined_thread_forgotten_after_ttl() {
    let settings = RouterSettings {
        joined_thread_ttl_secs: 3600,
        ..open_settings()
    };
    let mut harness = Harness::new(FakeResponder::default(), settings);
    let mut first = group("m1", "question");
    first.thread = Some("t1".into());
    first.mentions_bot = true;
    let mut later = group("m2", "question");
    later.thread = Some("t1".into());

    harness.send(first).await.unwrap();
    harness.next_reply().await;
    tokio::time::advance(Duration::from_secs(3601)).await;

    assert_eq!(harness.send(later).await.unwrap(), Accepted::Ignored);
}

#[tokio::test(start_paused = true)]
async fn allowlist_blocks_other_tenants_and_chats() {
    let settings = RouterSettings {
        allowed_tenants: vec!["telegram:B1".into(), "T1".into()],
        allowed_chats: vec!["u1".into(), "slack:C1".into()],
        ..open_settings()
    };
    let mut harness = Harness::new(FakeResponder::default(), settings);
    let mut other_tenant = direct("m2", "hello");
    other_tenant.tenant = "B2".into();
    let mut other_chat = direct("m3", "hello");
    other_chat.conversation = "u9".into();
    let mut allowed_group = group("m4", "hello");
    allowed_group.mentions_bot = true;
    let mut other_platform = allowed_group.clone();
    other_platform.platform = Platform::Wecom;
    other_platform.message_id = "m5".into();

    assert_eq!(
        harness.send(direct("m1", "hello")).await.unwrap(),
        Accepted::Queued
    );
    assert_eq!(harness.send(other_tenant).await.unwrap(), Accepted::Ignored);
    assert_eq!(harness.send(other_chat).await.unwrap(), Accepted::Ignored);
    assert_eq!(harness.send(allowed_group).await.unwrap(), Accepted::Queued);
    // `slack:C1` allows channel C1 on Slack only.
    assert_eq!(
        harness.send(other_platform).await.unwrap(),
        Accepted::Ignored
    );

    harness.next_reply().await;
    harness.next_reply().await;
    assert_eq!(harness.responder.calls(), ["m1", "m4"]);
    assert!(
        harness
            .metrics
            .render()
            .contains("maxwin_ignored_total{reason=\"not_allowed\"} 3\n")
    );
}

#[tokio::test(start_paused = true)]
async fn duplicate_delivery_responds_once() {
    let mut harness = Harness::new(FakeResponder::default(), open_settings());

    let first = harness.send(direct("m1", "hello")).await.unwrap();
    let second = harness.send(direct("m1", "hello")).await.unwrap();
    harness.next_reply().await;
    let third = harness.send(direct("m1", "hello")).await.unwrap();

    assert_eq!(first, Accepted::Queued);
    assert_eq!(second, Accepted::Duplicate);
    assert_eq!(third, Accepted::Duplicate);
    assert!(harness.drain_replies().await.is_empty());
    assert_eq!(harness.responder.calls(), ["m1"]);
    assert!(
        harness
            .metrics
            .render()
            .contains("maxwin_duplicates_total 2\n")
    );
}

#[tokio::test(start_paused = true)]
async fn rate_limit_sends_one_notice_then_refills() {
    let settings = RouterSettings {
        rate_limit: RateLimitSettings {
            per_minute: 6,
            burst: 3,
        },
        ..RouterSettings::default()
    };
    let mut harness = Harness::new(FakeResponder::default(), settings);

    let mut results = Vec::new();
    for i in 0..6 {
        results.push(
            harness
                .send(direct(&format!("m{i}"), "客户说太贵了"))
                .await
                .unwrap(),
        );
    }
    let mut replies = Vec::new();
    for _ in 0..4 {
        replies.push(harness.next_reply().await);
    }

    assert_eq!(
        results,
        [
            Accepted::Queued,
            Accepted::Queued,
            Accepted::Queued,
            Accepted::Queued,
            Accepted::Ignored,
            Accepted::Ignored,
        ]
    );
    let notices: Vec<_> = replies
        .iter()
        .filter(|sent| sent.reply.kind() == ReplyKind::Notice)
        .collect();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].message_id, "m3");
    let (_, lang, text) = text_of(&notices[0].reply);
    assert_eq!(lang, Lang::Zh);
    assert!(text.contains("稍等"), "notice: {text}");
    assert!(harness.drain_replies().await.is_empty());
    assert_eq!(harness.responder.calls(), ["m0", "m1", "m2"]);

    // One token returns every 10 seconds at 6 per minute.
    tokio::time::advance(Duration::from_secs(10)).await;
    let accepted = harness.send(direct("m6", "price again")).await.unwrap();
    assert_eq!(accepted, Accepted::Queued);
    assert_eq!(harness.next_reply().await.message_id, "m6");

    let over = harness.send(direct("m7", "and again")).await.unwrap();
    let notice = harness.next_reply().await;
    assert_eq!(over, Accepted::Queued);
    assert_eq!(notice.reply.kind(), ReplyKind::Notice);
    assert_eq!(notice.reply.lang(), Lang::En);
    assert!(
        harness
            .metrics
            .render()
            .contains("maxwin_rate_limited_total 4\n")
    );
}

#[tokio::test(start_paused = true)]
async fn rate_limit_applies_per_user() {
    let settings = RouterSettings {
        rate_limit: RateLimitSettings {
            per_minute: 1,
            burst: 1,
        },
        ..RouterSettings::default()
    };
    let harness = Harness::new(FakeResponder::default(), settings);
    let mut other_user = direct("m2", "hello");
    other_user.user = "u2".into();
    other_user.conversation = "u2".into();

    assert_eq!(
        harness.send(direct("m1", "hello")).await.unwrap(),
        Accepted::Queued
    );
    assert_eq!(harness.send(other_user).await.unwrap(), Accepted::Queued);
}

#[tokio::test(start_paused = true)]
async fn conversation_answers_in_order_without_overlap() {
    let responder = FakeResponder::with_delay(Duration::from_secs(5));
    let mut harness = Harness::new(responder, open_settings());

    for i in 0..4 {
        let accepted = harness
            .send(direct(&format!("m{i}"), "hello"))
            .await
            .unwrap();
        assert_eq!(accepted, Accepted::Queued);
    }
    let started = tokio::time::Instant::now();
    let mut order = Vec::new();
    for _ in 0..4 {
        order.push(harness.next_reply().await.message_id);
    }

    assert_eq!(order, ["m0", "m1", "m2", "m3"]);
    assert_eq!(harness.responder.calls(), ["m0", "m1", "m2", "m3"]);
    assert!(!harness.responder.overlap.load(Ordering::SeqCst));
    assert_eq!(started.elapsed(), Duration::from_secs(20));
}

#[tokio::test(start_paused = true)]
async fn different_conversations_run_concurrently() {
    let responder = FakeResponder::with_delay(Duration::from_secs(5));
    let mut harness = Harness::new(responder, open_settings());
    let mut other = direct("m2", "hello");
    other.conversation = "u2".into();
    other.user = "u2".into();
    let mut thread = group("m3", "hello");
    thread.mentions_bot = true;
    thread.thread = Some("t1".into());
    let mut other_thread = thread.clone();
    other_thread.message_id = "m4".into();
    other_thread.thread = Some("t2".into());

    let started = tokio::time::Instant::now();
    for message in [direct("m1", "hello"), other, thread, other_thread] {
        harness.send(message).await.unwrap();
    }
    for _ in 0..4 {
        harness.next_reply().await;
    }

    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_eq!(harness.responder.max_running.load(Ordering::SeqCst), 4);
    assert!(!harness.responder.overlap.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn full_queue_sends_notice() {
    let settings = RouterSettings {
        max_queued_per_conversation: 1,
        ..open_settings()
    };
    let responder = FakeResponder::with_delay(Duration::from_secs(5));
    let mut harness = Harness::new(responder, settings);

    for (id, text) in [("m1", "one"), ("m2", "two"), ("m3", "three")] {
        assert_eq!(
            harness.send(direct(id, text)).await.unwrap(),
            Accepted::Queued
        );
    }
    let first = harness.next_reply().await;

    assert_eq!(first.message_id, "m3");
    let (kind, lang, _) = text_of(&first.reply);
    assert_eq!(kind, ReplyKind::Notice);
    assert_eq!(lang, Lang::En);
    assert_eq!(harness.next_reply().await.message_id, "m1");
    assert_eq!(harness.next_reply().await.message_id, "m2");
    assert_eq!(harness.responder.calls(), ["m1", "m2"]);
    assert!(
        harness
            .metrics
            .render()
            .contains("maxwin_queue_full_total 1\n")
    );
}

#[tokio::test(start_paused = true)]
async fn respond_error_sends_apology() {
    let mut harness = Harness::new(FakeResponder::default(), open_settings());
    let mut other = direct("m2", "FAIL please help with the renewal");
    other.conversation = "u2".into();

    harness
        .send(direct("m1", "FAIL 客户要求降价"))
        .await
        .unwrap();
    let zh = harness.next_reply().await;
    harness.send(other).await.unwrap();
    let en = harness.next_reply().await;

    let (kind, lang, text) = text_of(&zh.reply);
    assert_eq!(kind, ReplyKind::Error);
    assert_eq!(lang, Lang::Zh);
    assert!(text.contains("再试"), "apology: {text}");
    let (kind, lang, text) = text_of(&en.reply);
    assert_eq!(kind, ReplyKind::Error);
    assert_eq!(lang, Lang::En);
    assert!(text.contains("try again"), "apology: {text}");
    assert!(
        !text.contains("llm.internal"),
        "apology leaks the cause: {text}"
    );
    assert!(harness.drain_replies().await.is_empty());
    let metrics = harness.metrics.render();
    assert!(metrics.contains("maxwin_errors_total{kind=\"llm\"} 2\n"));
    assert!(metrics.contains("maxwin_answers_total{kind=\"error\"} 2\n"));
}

#[tokio::test(start_paused = true)]
async fn respond_panic_sends_apology_and_keeps_queue() {
    let mut harness = Harness::new(FakeResponder::default(), open_settings());

    harness.send(direct("m1", "PANIC now")).await.unwrap();
    harness.send(direct("m2", "next question")).await.unwrap();
    let apology = harness.next_reply().await;
    let next = harness.next_reply().await;

    assert_eq!(apology.message_id, "m1");
    assert_eq!(apology.reply.kind(), ReplyKind::Error);
    assert_eq!(next.message_id, "m2");
    assert_eq!(next.reply.kind(), ReplyKind::Command);
    assert!(
        harness
            .metrics
            .render()
            .contains("maxwin_errors_total{kind=\"panic\"} 1\n")
    );
}

#[tokio::test(start_paused = true)]
async fn respond_timeout_sends_apology() {
    let settings = RouterSettings {
        answer_timeout_secs: 30,
        ..open_settings()
    };
    let mut harness = Harness::new(FakeResponder::default(), settings);

    let started = tokio::time::Instant::now();
    harness.send(direct("m1", "HANG 请帮我看看")).await.unwrap();
    let apology = harness.next_reply().await;

    assert_eq!(started.elapsed(), Duration::from_secs(30));
    assert_eq!(apology.reply.kind(), ReplyKind::Error);
    assert_eq!(apology.reply.lang(), Lang::Zh);
}

#[tokio::test(start_paused = true)]
async fn ledger_down_returns_error_and_does_not_answer() {
    let mut harness = Harness::new(FakeResponder::default(), open_settings());
    harness.ledger.set_down(true);

    let result = harness.send(direct("m1", "hello")).await;

    assert!(result.is_err());
    assert!(harness.drain_replies().await.is_empty());
    assert!(harness.responder.calls().is_empty());
    assert!(
        harness
            .metrics
            .render()
            .contains("maxwin_errors_total{kind=\"ledger\"} 1\n")
    );

    // The platform redelivers after the outage, and the message is answered once.
    harness.ledger.set_down(false);
    assert_eq!(
        harness.send(direct("m1", "hello")).await.unwrap(),
        Accepted::Queued
    );
    assert_eq!(harness.next_reply().await.message_id, "m1");
}

#[tokio::test(start_paused = true)]
async fn metrics_count_messages_and_llm_usage() {
    let mut harness = Harness::new(FakeResponder::default(), open_settings());

    harness.send(direct("m1", "hello")).await.unwrap();
    harness.next_reply().await;
    harness.send(group("m2", "not for the bot")).await.unwrap();
    harness.drain_replies().await;
    let metrics = harness.metrics.render();

    assert!(metrics.contains("maxwin_messages_in_total{platform=\"telegram\"} 1\n"));
    assert!(metrics.contains("maxwin_messages_in_total{platform=\"slack\"} 1\n"));
    assert!(metrics.contains("maxwin_messages_out_total{platform=\"telegram\"} 1\n"));
    assert!(metrics.contains("maxwin_answers_total{kind=\"command\"} 1\n"));
    assert!(metrics.contains("maxwin_llm_duration_seconds_bucket{le=\"2\"} 1\n"));
    assert!(metrics.contains("maxwin_llm_prompt_tokens_total 100\n"));
    assert!(metrics.contains("maxwin_llm_completion_tokens_total 20\n"));
    assert!(metrics.contains("maxwin_answers_in_flight 0\n"));
}

#[tokio::test(start_paused = true)]
async fn feedback_reaches_responder_within_allowlist() {
    let settings = RouterSettings {
        allowed_tenants: vec!["B1".into()],
        ..open_settings()
    };
    let harness = Harness::new(FakeResponder::default(), settings);
    let feedback = Feedback {
        platform: Platform::Telegram,
        tenant: "B1".into(),
        conversation: "u1".into(),
        user: "u1".into(),
        answer_message_id: "reply-m1".into(),
        rating: Some(Rating::Up),
        comment: None,
        event_id: "cb1".into(),
        received_at: Utc::now(),
    };
    let mut blocked = feedback.clone();
    blocked.tenant = "B2".into();

    harness.router.feedback(feedback.clone()).await.unwrap();
    harness.router.feedback(blocked).await.unwrap();

    assert_eq!(*harness.responder.feedback.lock().unwrap(), [feedback]);
    assert!(
        harness
            .metrics
            .render()
            .contains("maxwin_feedback_total{result=\"recorded\"} 1\n")
    );
}

#[tokio::test(start_paused = true)]
async fn accept_after_shutdown_returns_error() {
    let harness = Harness::new(FakeResponder::default(), open_settings());

    assert!(harness.router.shutdown(Duration::from_secs(1)).await);
    let result = harness.send(direct("m1", "hello")).await;

    assert!(result.is_err());
    assert!(harness.responder.calls().is_empty());
}
