//! The [`Handler`] that adapters call for every message: it decides whether and
//! when the [`Responder`] answers.
//!
//! For each message, in this order: the allowlist, the addressing rules (always
//! in direct chats; in groups only when mentioned, replied to, given a command,
//! or in a thread the bot joined), the durable dedupe claim, the per-user rate
//! limit, and the per-conversation queue that keeps answers in order.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use maxwin_channel::{
    Accepted, Delivered, Feedback, Handler, HandlerError, Inbound, Lang, Platform, Reply,
    ReplyKind, ReplySink, SinkCapabilities, SinkError,
};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span, debug, error, info, info_span, warn};

use super::lang::detect_lang;
use super::metrics::{IgnoreReason, Metrics};
use super::notice;
use super::queue::{ConversationQueues, Enqueued};
use super::rate_limit::{Decision, RateLimiter};
use super::settings::RouterSettings;
use super::threads::{ConversationKey, JoinedThreads};
use super::{EventLedger, Responder};

/// The router shared by all adapters; cloning is cheap and shares the state.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    responder: Arc<dyn Responder>,
    ledger: Arc<dyn EventLedger>,
    metrics: Arc<Metrics>,
    allowed_tenants: Vec<String>,
    allowed_chats: Vec<String>,
    answer_timeout: Duration,
    limiter: RateLimiter<(Platform, String, String)>,
    threads: JoinedThreads,
    queues: ConversationQueues<ConversationKey, Job>,
    tasks: TaskTracker,
    closed: AtomicBool,
}

/// One accepted message waiting for its answer.
struct Job {
    message: Inbound,
    sink: Box<dyn ReplySink>,
    lang: Lang,
    span: Span,
}

impl Router {
    pub fn new(
        responder: Arc<dyn Responder>,
        ledger: Arc<dyn EventLedger>,
        metrics: Arc<Metrics>,
        settings: &RouterSettings,
    ) -> Self {
        let inner = Inner {
            responder,
            ledger,
            metrics,
            allowed_tenants: settings.allowed_tenants.clone(),
            allowed_chats: settings.allowed_chats.clone(),
            answer_timeout: Duration::from_secs(settings.answer_timeout_secs),
            limiter: RateLimiter::new(settings.rate_limit),
            threads: JoinedThreads::new(
                settings.joined_threads_capacity,
                Duration::from_secs(settings.joined_thread_ttl_secs),
            ),
            queues: ConversationQueues::new(settings.max_queued_per_conversation),
            tasks: TaskTracker::new(),
            closed: AtomicBool::new(false),
        };
        Router {
            inner: Arc::new(inner),
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    pub fn ledger(&self) -> &Arc<dyn EventLedger> {
        &self.inner.ledger
    }

    /// Returns the number of answer and notice tasks still running.
    pub fn tasks_running(&self) -> usize {
        self.inner.tasks.len()
    }

    /// Stops taking messages and waits up to `grace` for the answers already
    /// accepted, queued ones included; returns false when some did not finish.
    ///
    /// Messages handed to [`Handler::accept`] afterwards get an error, so the
    /// adapter lets the platform deliver them again later.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.tasks.close();
        tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_ok()
    }
}

#[async_trait]
impl Handler for Router {
    async fn accept(
        &self,
        message: Inbound,
        sink: Box<dyn ReplySink>,
    ) -> Result<Accepted, HandlerError> {
        let span = info_span!(
            "message",
            platform = %message.platform,
            tenant = %message.tenant,
            conversation = %message.conversation,
            thread = message.thread.as_deref(),
            user = %message.user,
            message_id = %message.message_id,
        );
        self.inner
            .accept(message, sink, span.clone())
            .instrument(span)
            .await
    }

    async fn feedback(&self, feedback: Feedback) -> Result<(), HandlerError> {
        let span = info_span!(
            "feedback",
            platform = %feedback.platform,
            tenant = %feedback.tenant,
            conversation = %feedback.conversation,
            event_id = %feedback.event_id,
        );
        self.inner.feedback(feedback).instrument(span).await
    }
}

impl Inner {
    async fn accept(
        self: &Arc<Self>,
        message: Inbound,
        sink: Box<dyn ReplySink>,
        span: Span,
    ) -> Result<Accepted, HandlerError> {
        self.metrics.message_in(message.platform);
        if self.closed.load(Ordering::SeqCst) {
            return Err(HandlerError("the daemon is shutting down".into()));
        }

        if !self.is_allowed(message.platform, &message.tenant, &message.conversation) {
            debug!("ignored: tenant or chat not in the allowlist");
            self.metrics.ignored(IgnoreReason::NotAllowed);
            return Ok(Accepted::Ignored);
        }
        let key = ConversationKey::of(&message);
        if !self.is_addressed(&message, &key) {
            debug!("ignored: group message not addressed to the bot");
            self.metrics.ignored(IgnoreReason::NotAddressed);
            return Ok(Accepted::Ignored);
        }

        match self.ledger.claim_event(&message.dedupe_key()).await {
            Ok(true) => {}
            Ok(false) => {
                debug!("dropped a duplicate delivery");
                self.metrics.duplicate();
                return Ok(Accepted::Duplicate);
            }
            Err(e) => {
                warn!(error = %e, cause = ?std::error::Error::source(&e), "could not claim the message in the event ledger");
                self.metrics.error("ledger");
                return Err(HandlerError(
                    "could not record the message; deliver it again later".into(),
                ));
            }
        }

        let lang = detect_lang(&message.text);
        let user = (
            message.platform,
            message.tenant.clone(),
            message.user.clone(),
        );
        match self.limiter.check(user) {
            Decision::Allowed => {}
            Decision::LimitedNotify => {
                info!("user over the rate limit; sending a notice");
                self.metrics.rate_limited();
                self.spawn_notice(message.platform, sink, notice::rate_limited(lang), span);
                return Ok(Accepted::Queued);
            }
            Decision::LimitedSilent => {
                debug!("user over the rate limit; already notified");
                self.metrics.rate_limited();
                return Ok(Accepted::Ignored);
            }
        }

        if !message.is_direct {
            self.threads.join(&key);
        }
        let platform = message.platform;
        let job = Job {
            message,
            sink,
            lang,
            span,
        };
        match self.queues.enqueue(&key, job) {
            Enqueued::Start(job) => {
                self.tasks.spawn(Arc::clone(self).run_worker(key, job));
            }
            Enqueued::Waiting { ahead } => {
                debug!(ahead, "queued behind the answer in progress");
                self.metrics.add_queued(1);
            }
            Enqueued::Full(job) => {
                info!("conversation queue full; sending a notice");
                self.metrics.queue_full();
                self.spawn_notice(platform, job.sink, notice::queue_full(job.lang), job.span);
            }
        }
        Ok(Accepted::Queued)
    }

    async fn feedback(&self, feedback: Feedback) -> Result<(), HandlerError> {
        if !self.is_allowed(feedback.platform, &feedback.tenant, &feedback.conversation) {
            debug!("ignored feedback: tenant or chat not in the allowlist");
            return Ok(());
        }

        match self.responder.feedback(&feedback).await {
            Ok(recorded) => {
                debug!(recorded, "feedback processed");
                self.metrics.feedback(recorded);
                Ok(())
            }
            Err(e) => {
                warn!(error = %e, cause = ?std::error::Error::source(&e), "could not store feedback");
                self.metrics.error(e.kind());
                Err(HandlerError("could not store the feedback".into()))
            }
        }
    }

    /// Returns true when both allowlists are empty or contain this tenant and chat.
    fn is_allowed(&self, platform: Platform, tenant: &str, conversation: &str) -> bool {
        allowlist_contains(&self.allowed_tenants, platform, tenant)
            && allowlist_contains(&self.allowed_chats, platform, conversation)
    }

    fn is_addressed(&self, message: &Inbound, key: &ConversationKey) -> bool {
        message.is_direct
            || message.mentions_bot
            || message.replies_to_bot
            || is_own_command(&message.text)
            || self.threads.contains(key)
    }

    /// Answers the first job, then the conversation's waiting jobs in order.
    async fn run_worker(self: Arc<Self>, key: ConversationKey, first: Job) {
        let mut job = first;
        loop {
            let span = job.span.clone();
            self.answer(job).instrument(span).await;
            match self.queues.next(&key) {
                Some(next) => {
                    self.metrics.add_queued(-1);
                    job = next;
                }
                None => break,
            }
        }
    }

    async fn answer(&self, job: Job) {
        let started = Instant::now();
        let platform = job.message.platform;
        let mut sink = TrackedSink::new(job.sink);
        self.metrics.add_in_flight(1);

        let respond = self.responder.respond(&job.message, &mut sink);
        let outcome = AssertUnwindSafe(tokio::time::timeout(self.answer_timeout, respond))
            .catch_unwind()
            .await;
        self.metrics.add_in_flight(-1);
        let elapsed_ms = millis(started.elapsed());
        self.metrics.observe_answer(elapsed_ms);
        if sink.delivered {
            self.metrics.message_out(platform);
        }

        match outcome {
            Ok(Ok(Ok(info))) => {
                info!(kind = info.kind.as_str(), elapsed_ms, "answered");
                self.metrics.answer(info.kind);
                if let Some(llm_ms) = info.llm_ms {
                    self.metrics
                        .observe_llm(llm_ms, info.prompt_tokens, info.completion_tokens);
                }
                if !sink.finished {
                    warn!("the responder returned without sending a reply");
                    self.metrics.error("no_reply");
                }
                return;
            }
            Ok(Ok(Err(e))) => {
                warn!(error = %e, cause = ?std::error::Error::source(&e), "answer failed");
                self.metrics.error(e.kind());
            }
            Ok(Err(_)) => {
                warn!(
                    timeout_secs = self.answer_timeout.as_secs(),
                    "answer timed out"
                );
                self.metrics.error("timeout");
            }
            Err(_) => {
                error!("the responder panicked");
                self.metrics.error("panic");
            }
        }

        if sink.finished {
            return;
        }
        self.metrics.answer(ReplyKind::Error);
        if sink
            .deliver(&notice::answer_failed(job.lang), &self.metrics)
            .await
        {
            self.metrics.message_out(platform);
        }
    }

    /// Sends a router notice in its own tracked task, outside the conversation queue,
    /// so that it arrives at once.
    fn spawn_notice(&self, platform: Platform, sink: Box<dyn ReplySink>, reply: Reply, span: Span) {
        self.metrics.answer(reply.kind());
        let metrics = Arc::clone(&self.metrics);
        let task = async move {
            let mut sink = TrackedSink::new(sink);
            if sink.deliver(&reply, &metrics).await {
                metrics.message_out(platform);
            }
        };
        self.tasks.spawn(task.instrument(span));
    }
}

/// Returns true when `id` is allowed: the list is empty, or contains `id` or `platform:id`.
fn allowlist_contains(list: &[String], platform: Platform, id: &str) -> bool {
    list.is_empty()
        || list.iter().any(|entry| {
            entry == id
                || entry
                    .strip_prefix(platform.as_str())
                    .and_then(|rest| rest.strip_prefix(':'))
                    == Some(id)
        })
}

/// Returns true for a command meant for this bot.
///
/// Adapters strip this bot's `@name` from commands, so a command word that still
/// carries an `@` is addressed to another bot in the same group.
fn is_own_command(text: &str) -> bool {
    let Some(command) = text.trim_start().strip_prefix('/') else {
        return false;
    };
    let word = command.split(char::is_whitespace).next().unwrap_or("");
    !word.is_empty() && !word.contains('@')
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A sink wrapper that records what the responder did, so the router can tell
/// whether the user already got a reply.
struct TrackedSink {
    inner: Box<dyn ReplySink>,
    started: bool,
    finished: bool,
    delivered: bool,
}

impl TrackedSink {
    fn new(inner: Box<dyn ReplySink>) -> Self {
        TrackedSink {
            inner,
            started: false,
            finished: false,
            delivered: false,
        }
    }

    /// Sends one reply of the router's own; returns true when the platform took it.
    async fn deliver(&mut self, reply: &Reply, metrics: &Metrics) -> bool {
        if !self.started
            && let Err(e) = self.start().await
        {
            debug!(error = %e, "could not show the typing status");
        }
        match self.finish(reply).await {
            Ok(_) => true,
            Err(e) => {
                warn!(error = %e, kind = reply.kind().as_str(), "could not deliver a reply");
                metrics.error("sink");
                false
            }
        }
    }
}

#[async_trait]
impl ReplySink for TrackedSink {
    fn capabilities(&self) -> SinkCapabilities {
        self.inner.capabilities()
    }

    async fn start(&mut self) -> Result<(), SinkError> {
        self.started = true;
        self.inner.start().await
    }

    async fn progress(&mut self, text: &str) -> Result<(), SinkError> {
        self.inner.progress(text).await
    }

    async fn finish(&mut self, reply: &Reply) -> Result<Delivered, SinkError> {
        self.finished = true;
        let result = self.inner.finish(reply).await;
        self.delivered = result.is_ok();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_matches_bare_and_prefixed_ids() {
        let list = vec!["slack:T1".to_owned(), "T2".to_owned()];

        assert!(allowlist_contains(&[], Platform::Slack, "anything"));
        assert!(allowlist_contains(&list, Platform::Slack, "T1"));
        assert!(!allowlist_contains(&list, Platform::Wecom, "T1"));
        assert!(allowlist_contains(&list, Platform::Wecom, "T2"));
        assert!(!allowlist_contains(&list, Platform::Slack, "T3"));
    }

    #[test]
    fn own_command_detection() {
        assert!(is_own_command("/help"));
        assert!(is_own_command("  /ask 客户压价怎么办"));
        assert!(is_own_command("/重置"));
        assert!(!is_own_command("/start@other_bot"));
        assert!(!is_own_command("/"));
        assert!(!is_own_command("/ hello"));
        assert!(!is_own_command("hello /help"));
        assert!(!is_own_command(""));
    }
}
