//! Test doubles for the server tests: a responder, an event ledger and a reply sink
//! that record what the router did with them.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use maxwin_channel::{
    Accepted, Delivered, Feedback, Handler, HandlerError, Inbound, Lang, Platform, Reply,
    ReplyKind, ReplySink, SinkCapabilities, SinkError,
};
use maxwin_coach::server::{
    EventLedger, LedgerError, Metrics, Responder, ResponderError, ResponseInfo, Router,
    RouterSettings,
};
use tokio::sync::mpsc;

/// A responder that answers after `delay` and records calls and overlaps.
///
/// A message whose text contains `FAIL` makes it return an error, `PANIC` makes
/// it panic, and `HANG` makes it wait for an hour.
#[derive(Default)]
pub struct FakeResponder {
    pub delay: Duration,
    /// Message ids in the order `respond` was called.
    pub calls: Mutex<Vec<String>>,
    active: Mutex<HashMap<String, usize>>,
    /// Set when two answers ran at once in one conversation.
    pub overlap: AtomicBool,
    running: AtomicUsize,
    /// The maximum number of answers running at once, across conversations.
    pub max_running: AtomicUsize,
    pub feedback: Mutex<Vec<Feedback>>,
}

impl FakeResponder {
    pub fn with_delay(delay: Duration) -> Self {
        FakeResponder {
            delay,
            ..Default::default()
        }
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

fn conversation_of(msg: &Inbound) -> String {
    format!("{}:{}:{:?}", msg.tenant, msg.conversation, msg.thread)
}

#[async_trait]
impl Responder for FakeResponder {
    async fn respond(
        &self,
        msg: &Inbound,
        sink: &mut dyn ReplySink,
    ) -> Result<ResponseInfo, ResponderError> {
        self.calls.lock().unwrap().push(msg.message_id.clone());
        let conversation = conversation_of(msg);
        {
            let mut active = self.active.lock().unwrap();
            let count = active.entry(conversation.clone()).or_default();
            *count += 1;
            if *count > 1 {
                self.overlap.store(true, Ordering::SeqCst);
            }
        }
        let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(running, Ordering::SeqCst);

        sink.start().await?;
        tokio::time::sleep(self.delay).await;
        if msg.text.contains("HANG") {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }

        *self.active.lock().unwrap().get_mut(&conversation).unwrap() -= 1;
        self.running.fetch_sub(1, Ordering::SeqCst);

        if msg.text.contains("PANIC") {
            panic!("responder panic requested by the test");
        }
        if msg.text.contains("FAIL") {
            let cause: Box<dyn std::error::Error + Send + Sync> =
                "connection refused by llm.internal:8443".into();
            return Err(ResponderError::Llm(cause));
        }
        sink.progress("…").await?;
        sink.finish(&Reply::Text {
            kind: ReplyKind::Command,
            lang: Lang::En,
            text: format!("answer to {}", msg.message_id),
        })
        .await?;
        Ok(ResponseInfo {
            kind: ReplyKind::Command,
            llm_ms: Some(1200),
            prompt_tokens: Some(100),
            completion_tokens: Some(20),
        })
    }

    async fn feedback(&self, fb: &Feedback) -> Result<bool, ResponderError> {
        self.feedback.lock().unwrap().push(fb.clone());
        Ok(true)
    }
}

/// An in-memory ledger that can be switched to fail like a database outage.
#[derive(Default)]
pub struct FakeLedger {
    seen: Mutex<HashSet<String>>,
    pub down: AtomicBool,
}

impl FakeLedger {
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), LedgerError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(LedgerError::new("connection to the database refused"));
        }
        Ok(())
    }
}

#[async_trait]
impl EventLedger for FakeLedger {
    async fn claim_event(&self, key: &str) -> Result<bool, LedgerError> {
        self.check()?;
        Ok(self.seen.lock().unwrap().insert(key.to_owned()))
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        self.check()
    }
}

/// A delivered reply: the id of the message it answers, and the reply.
#[derive(Debug, Clone)]
pub struct Sent {
    pub message_id: String,
    pub reply: Reply,
}

/// A sink that forwards each final reply to a channel.
pub struct FakeSink {
    message_id: String,
    started: bool,
    replies: mpsc::UnboundedSender<Sent>,
}

#[async_trait]
impl ReplySink for FakeSink {
    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities::default()
    }

    async fn start(&mut self) -> Result<(), SinkError> {
        assert!(!self.started, "start called twice");
        self.started = true;
        Ok(())
    }

    async fn progress(&mut self, _text: &str) -> Result<(), SinkError> {
        Ok(())
    }

    async fn finish(&mut self, reply: &Reply) -> Result<Delivered, SinkError> {
        let sent = Sent {
            message_id: self.message_id.clone(),
            reply: reply.clone(),
        };
        self.replies
            .send(sent)
            .expect("test dropped the reply channel");
        Ok(Delivered {
            message_ids: vec![format!("reply-{}", self.message_id)],
        })
    }
}

/// A router wired to the fakes, with the channel its replies arrive on.
pub struct Harness {
    pub router: Router,
    pub responder: Arc<FakeResponder>,
    pub ledger: Arc<FakeLedger>,
    pub metrics: Arc<Metrics>,
    tx: mpsc::UnboundedSender<Sent>,
    rx: mpsc::UnboundedReceiver<Sent>,
}

impl Harness {
    pub fn new(responder: FakeResponder, settings: RouterSettings) -> Self {
        let responder = Arc::new(responder);
        let ledger = Arc::new(FakeLedger::default());
        let metrics = Arc::new(Metrics::new());
        let router = Router::new(
            Arc::clone(&responder) as Arc<dyn Responder>,
            Arc::clone(&ledger) as Arc<dyn EventLedger>,
            Arc::clone(&metrics),
            &settings,
        );
        let (tx, rx) = mpsc::unbounded_channel();
        Harness {
            router,
            responder,
            ledger,
            metrics,
            tx,
            rx,
        }
    }

    pub fn sink(&self, message_id: &str) -> Box<dyn ReplySink> {
        Box::new(FakeSink {
            message_id: message_id.to_owned(),
            started: false,
            replies: self.tx.clone(),
        })
    }

    pub async fn send(&self, message: Inbound) -> Result<Accepted, HandlerError> {
        let sink = self.sink(&message.message_id);
        self.router.accept(message, sink).await
    }

    /// Waits for the next delivered reply; paused time skips the wait.
    pub async fn next_reply(&mut self) -> Sent {
        tokio::time::timeout(Duration::from_secs(24 * 3600), self.rx.recv())
            .await
            .expect("no reply within a day of test time")
            .expect("reply channel closed")
    }

    /// Lets spawned tasks run, then returns the replies delivered so far.
    pub async fn drain_replies(&mut self) -> Vec<Sent> {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let mut sent = Vec::new();
        while let Ok(reply) = self.rx.try_recv() {
            sent.push(reply);
        }
        sent
    }
}

/// Builds a direct message from user `u1` in Telegram bot `B1`.
pub fn direct(message_id: &str, text: &str) -> Inbound {
    Inbound {
        platform: Platform::Telegram,
        tenant: "B1".into(),
        conversation: "u1".into(),
        thread: None,
        user: "u1".into(),
        display_name: Some("Li Lei".into()),
        text: text.into(),
        is_direct: true,
        mentions_bot: false,
        replies_to_bot: false,
        message_id: message_id.into(),
        received_at: Utc::now(),
    }
}

/// Builds a group message in Slack team `T1`, channel `C1`, not addressed to the bot.
pub fn group(message_id: &str, text: &str) -> Inbound {
    Inbound {
        platform: Platform::Slack,
        tenant: "T1".into(),
        conversation: "C1".into(),
        thread: None,
        user: "U1".into(),
        display_name: None,
        text: text.into(),
        is_direct: false,
        mentions_bot: false,
        replies_to_bot: false,
        message_id: message_id.into(),
        received_at: Utc::now(),
    }
}

/// Returns the text of a text reply, failing the test on a card.
pub fn text_of(reply: &Reply) -> (ReplyKind, Lang, String) {
    match reply {
        Reply::Text { kind, lang, text } => (*kind, *lang, text.clone()),
        Reply::Card(_) => panic!("expected a text reply, got a card"),
    }
}
