//! Counters for `/metrics`, written in the Prometheus text exposition format.
//!
//! A small registry of atomics: the label sets are small and fixed (platforms,
//! reply kinds, error kinds), so a metrics crate would add weight and no features.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use maxwin_channel::{Platform, ReplyKind};

const PLATFORMS: [Platform; 4] = [
    Platform::Console,
    Platform::Telegram,
    Platform::Slack,
    Platform::Wecom,
];

const REPLY_KINDS: [ReplyKind; 6] = [
    ReplyKind::Card,
    ReplyKind::LibraryCard,
    ReplyKind::OffTopic,
    ReplyKind::Command,
    ReplyKind::Notice,
    ReplyKind::Error,
];

/// Upper bounds, in seconds, of the latency histogram buckets.
const LATENCY_BUCKETS: [f64; 11] = [
    0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0,
];

/// The reason a message was not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreReason {
    /// The tenant or chat is outside the allowlist.
    NotAllowed,
    /// A group message not addressed to the bot.
    NotAddressed,
}

impl IgnoreReason {
    fn index(self) -> usize {
        self as usize
    }

    fn as_str(self) -> &'static str {
        match self {
            IgnoreReason::NotAllowed => "not_allowed",
            IgnoreReason::NotAddressed => "not_addressed",
        }
    }
}

/// The daemon's counters, shared by the router and the HTTP endpoint.
#[derive(Debug, Default)]
pub struct Metrics {
    messages_in: [AtomicU64; 4],
    messages_out: [AtomicU64; 4],
    answers: [AtomicU64; 6],
    duplicates: AtomicU64,
    ignored: [AtomicU64; 2],
    rate_limited: AtomicU64,
    queue_full: AtomicU64,
    feedback_recorded: AtomicU64,
    feedback_unmatched: AtomicU64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    in_flight: AtomicI64,
    queued: AtomicI64,
    llm_latency: Histogram,
    answer_latency: Histogram,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn message_in(&self, platform: Platform) {
        self.messages_in[platform_index(platform)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one reply delivered to the platform.
    pub fn message_out(&self, platform: Platform) {
        self.messages_out[platform_index(platform)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one answered message by the kind of its reply.
    pub fn answer(&self, kind: ReplyKind) {
        self.answers[kind_index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    pub fn ignored(&self, reason: IgnoreReason) {
        self.ignored[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    pub fn queue_full(&self) {
        self.queue_full.fetch_add(1, Ordering::Relaxed);
    }

    pub fn feedback(&self, recorded: bool) {
        let counter = if recorded {
            &self.feedback_recorded
        } else {
            &self.feedback_unmatched
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one error under a short label such as `ledger`, `llm` or `sink`.
    pub fn error(&self, kind: &'static str) {
        let mut errors = self.errors.lock().expect("metrics lock poisoned");
        *errors.entry(kind).or_default() += 1;
    }

    pub fn add_in_flight(&self, delta: i64) {
        self.in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    pub fn add_queued(&self, delta: i64) {
        self.queued.fetch_add(delta, Ordering::Relaxed);
    }

    pub fn observe_llm(
        &self,
        millis: u64,
        prompt_tokens: Option<u32>,
        completion_tokens: Option<u32>,
    ) {
        self.llm_latency.observe_millis(millis);
        if let Some(tokens) = prompt_tokens {
            self.prompt_tokens
                .fetch_add(u64::from(tokens), Ordering::Relaxed);
        }
        if let Some(tokens) = completion_tokens {
            self.completion_tokens
                .fetch_add(u64::from(tokens), Ordering::Relaxed);
        }
    }

    pub fn observe_answer(&self, millis: u64) {
        self.answer_latency.observe_millis(millis);
    }

    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Renders every metric in the Prometheus text format, version 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);

        header(
            &mut out,
            "maxwin_messages_in_total",
            "counter",
            "Messages received from the platforms.",
        );
        for platform in PLATFORMS {
            let value = load(&self.messages_in[platform_index(platform)]);
            let _ = writeln!(
                out,
                "maxwin_messages_in_total{{platform=\"{platform}\"}} {value}"
            );
        }

        header(
            &mut out,
            "maxwin_messages_out_total",
            "counter",
            "Replies delivered to the platforms.",
        );
        for platform in PLATFORMS {
            let value = load(&self.messages_out[platform_index(platform)]);
            let _ = writeln!(
                out,
                "maxwin_messages_out_total{{platform=\"{platform}\"}} {value}"
            );
        }

        header(
            &mut out,
            "maxwin_answers_total",
            "counter",
            "Answered messages by reply kind.",
        );
        for kind in REPLY_KINDS {
            let value = load(&self.answers[kind_index(kind)]);
            let _ = writeln!(
                out,
                "maxwin_answers_total{{kind=\"{}\"}} {value}",
                kind.as_str()
            );
        }

        header(
            &mut out,
            "maxwin_duplicates_total",
            "counter",
            "Redelivered platform messages that were dropped.",
        );
        let _ = writeln!(out, "maxwin_duplicates_total {}", load(&self.duplicates));

        header(
            &mut out,
            "maxwin_ignored_total",
            "counter",
            "Messages not answered, by reason.",
        );
        for reason in [IgnoreReason::NotAllowed, IgnoreReason::NotAddressed] {
            let value = load(&self.ignored[reason.index()]);
            let _ = writeln!(
                out,
                "maxwin_ignored_total{{reason=\"{}\"}} {value}",
                reason.as_str()
            );
        }

        header(
            &mut out,
            "maxwin_rate_limited_total",
            "counter",
            "Messages over a user's rate limit.",
        );
        let _ = writeln!(
            out,
            "maxwin_rate_limited_total {}",
            load(&self.rate_limited)
        );

        header(
            &mut out,
            "maxwin_queue_full_total",
            "counter",
            "Messages rejected because their conversation queue was full.",
        );
        let _ = writeln!(out, "maxwin_queue_full_total {}", load(&self.queue_full));

        header(
            &mut out,
            "maxwin_feedback_total",
            "counter",
            "Feedback events by result.",
        );
        let _ = writeln!(
            out,
            "maxwin_feedback_total{{result=\"recorded\"}} {}",
            load(&self.feedback_recorded)
        );
        let _ = writeln!(
            out,
            "maxwin_feedback_total{{result=\"unmatched\"}} {}",
            load(&self.feedback_unmatched)
        );

        header(
            &mut out,
            "maxwin_errors_total",
            "counter",
            "Errors by kind.",
        );
        for (kind, value) in self.errors.lock().expect("metrics lock poisoned").iter() {
            let _ = writeln!(out, "maxwin_errors_total{{kind=\"{kind}\"}} {value}");
        }

        header(
            &mut out,
            "maxwin_answers_in_flight",
            "gauge",
            "Answers being written now.",
        );
        let _ = writeln!(
            out,
            "maxwin_answers_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );

        header(
            &mut out,
            "maxwin_answers_queued",
            "gauge",
            "Messages waiting behind an answer in their conversation.",
        );
        let _ = writeln!(
            out,
            "maxwin_answers_queued {}",
            self.queued.load(Ordering::Relaxed)
        );

        header(
            &mut out,
            "maxwin_llm_duration_seconds",
            "histogram",
            "LLM time per answer.",
        );
        self.llm_latency
            .render(&mut out, "maxwin_llm_duration_seconds");

        header(
            &mut out,
            "maxwin_answer_duration_seconds",
            "histogram",
            "Time from the start of an answer to its end.",
        );
        self.answer_latency
            .render(&mut out, "maxwin_answer_duration_seconds");

        header(
            &mut out,
            "maxwin_llm_prompt_tokens_total",
            "counter",
            "Prompt tokens reported by the LLM.",
        );
        let _ = writeln!(
            out,
            "maxwin_llm_prompt_tokens_total {}",
            load(&self.prompt_tokens)
        );

        header(
            &mut out,
            "maxwin_llm_completion_tokens_total",
            "counter",
            "Completion tokens reported by the LLM.",
        );
        let _ = writeln!(
            out,
            "maxwin_llm_completion_tokens_total {}",
            load(&self.completion_tokens)
        );

        out
    }
}

/// A cumulative histogram over [`LATENCY_BUCKETS`].
#[derive(Debug, Default)]
struct Histogram {
    /// Observations at or below each bound (not yet cumulative).
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_millis: AtomicU64,
}

impl Histogram {
    fn observe_millis(&self, millis: u64) {
        let seconds = millis as f64 / 1000.0;
        if let Some(index) = LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[index].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_millis.fetch_add(millis, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str) {
        let mut cumulative = 0;
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            cumulative += load(bucket);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = load(&self.count);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", load(&self.sum_millis) as f64 / 1000.0);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

fn platform_index(platform: Platform) -> usize {
    match platform {
        Platform::Console => 0,
        Platform::Telegram => 1,
        Platform::Slack => 2,
        Platform::Wecom => 3,
    }
}

fn kind_index(kind: ReplyKind) -> usize {
    match kind {
        ReplyKind::Card => 0,
        ReplyKind::LibraryCard => 1,
        ReplyKind::OffTopic => 2,
        ReplyKind::Command => 3,
        ReplyKind::Notice => 4,
        ReplyKind::Error => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_labelled_counters() {
        let metrics = Metrics::new();
        metrics.message_in(Platform::Telegram);
        metrics.message_in(Platform::Telegram);
        metrics.message_out(Platform::Wecom);
        metrics.answer(ReplyKind::LibraryCard);
        metrics.ignored(IgnoreReason::NotAddressed);
        metrics.error("ledger");
        metrics.error("ledger");
        metrics.add_in_flight(1);

        let text = metrics.render();

        assert!(text.contains("maxwin_messages_in_total{platform=\"telegram\"} 2\n"));
        assert!(text.contains("maxwin_messages_in_total{platform=\"slack\"} 0\n"));
        assert!(text.contains("maxwin_messages_out_total{platform=\"wecom\"} 1\n"));
        assert!(text.contains("maxwin_answers_total{kind=\"library_card\"} 1\n"));
        assert!(text.contains("maxwin_ignored_total{reason=\"not_addressed\"} 1\n"));
        assert!(text.contains("maxwin_errors_total{kind=\"ledger\"} 2\n"));
        assert!(text.contains("maxwin_answers_in_flight 1\n"));
        assert!(text.contains("# TYPE maxwin_llm_duration_seconds histogram\n"));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let metrics = Metrics::new();
        metrics.observe_llm(300, Some(1000), Some(200));
        metrics.observe_llm(1500, None, Some(50));
        metrics.observe_llm(900_000, Some(10), None);

        let text = metrics.render();

        assert!(text.contains("maxwin_llm_duration_seconds_bucket{le=\"0.25\"} 0\n"));
        assert!(text.contains("maxwin_llm_duration_seconds_bucket{le=\"0.5\"} 1\n"));
        assert!(text.contains("maxwin_llm_duration_seconds_bucket{le=\"2\"} 2\n"));
        assert!(text.contains("maxwin_llm_duration_seconds_bucket{le=\"300\"} 2\n"));
        assert!(text.contains("maxwin_llm_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("maxwin_llm_duration_seconds_sum 901.8\n"));
        assert!(text.contains("maxwin_llm_duration_seconds_count 3\n"));
        assert!(text.contains("maxwin_llm_prompt_tokens_total 1010\n"));
        assert!(text.contains("maxwin_llm_completion_tokens_total 250\n"));
    }
}
