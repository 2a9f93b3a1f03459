//! A coach for integration tests: the committed corpus and an in-memory index,
//! a store from [`TestStore`], an optional LLM client aimed at the mock server
//! on 127.0.0.1, and a sink that records every call the coach makes.
//!
//! Include it after `store.rs` and `mock_llm.rs`:
//! `#[path = "support/store.rs"] mod store;` and so on.

// Each test binary includes this file and uses only some of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use maxwin_channel::{
    Card, Delivered, Inbound, Platform, ProgressStyle, Reply, ReplySink, SinkCapabilities,
    SinkError,
};
use maxwin_coach::coach::library::Translations;
use maxwin_coach::coach::{Coach, CoachSettings, translations};
use maxwin_coach::corpus::Corpus;
use maxwin_coach::llm::{LlmClient, LlmSettings};
use maxwin_coach::retrieval::{RetrievalSettings, Retriever};
use maxwin_coach::store::Store;

/// The corpus, its index and the English translations, loaded once per test binary.
pub struct Knowledge {
    pub corpus: Arc<Corpus>,
    pub retriever: Arc<Retriever>,
    pub translations: Arc<Translations>,
}

/// Returns the committed `corpus/` folder of this package.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// Loads the committed corpus and builds its index in memory on first use.
pub fn knowledge() -> &'static Knowledge {
    static KNOWLEDGE: OnceLock<Knowledge> = OnceLock::new();
    KNOWLEDGE.get_or_init(|| {
        let dir = corpus_dir();
        let (corpus, _warnings) = Corpus::load_dir(&dir).expect("failed to load corpus/");
        assert!(!corpus.documents.is_empty(), "corpus/ has no documents");
        let retriever = Retriever::build(&corpus, &RetrievalSettings::default())
            .expect("failed to build the in-memory index");
        Knowledge {
            corpus: Arc::new(corpus),
            retriever: Arc::new(retriever),
            translations: Arc::new(translations::load(&dir)),
        }
    })
}

/// LLM settings aimed at `base_url` with timeouts short enough for tests and
/// no retries, so one scripted response serves one answer.
pub fn llm_settings(base_url: &str) -> LlmSettings {
    LlmSettings {
        base_url: Some(base_url.to_string()),
        model: Some("mock-model".to_string()),
        connect_timeout_secs: 1.0,
        first_token_timeout_secs: 5.0,
        total_timeout_secs: 10.0,
        max_retries: 0,
        retry_base_delay_ms: 1,
        retry_max_delay_secs: 0.01,
        ..LlmSettings::default()
    }
}

/// Creates an LLM client aimed at `base_url`.
pub fn llm_client(base_url: &str) -> LlmClient {
    LlmClient::new(&llm_settings(base_url))
        .expect("valid LLM settings")
        .expect("LLM settings are configured")
}

/// Builds a coach on the shared corpus with default coach settings.
pub fn coach(store: Arc<dyn Store>, llm: Option<LlmClient>) -> Coach {
    let knowledge = knowledge();
    Coach::new(
        knowledge.corpus.clone(),
        knowledge.retriever.clone(),
        llm,
        store,
        knowledge.translations.clone(),
        CoachSettings::default(),
    )
}

/// Returns a loopback address on which nothing listens: the port of a
/// listener that was bound and then dropped.
pub fn closed_loopback_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let address = listener.local_addr().expect("local address");
    drop(listener);
    format!("http://{address}/v1")
}

fn next_message_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    format!("m{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Builds a Telegram message from `user` in a one-to-one chat with the bot.
pub fn direct(user: &str, text: &str) -> Inbound {
    Inbound {
        platform: Platform::Telegram,
        tenant: "bot-1".to_string(),
        conversation: format!("dm-{user}"),
        thread: None,
        user: user.to_string(),
        display_name: Some(format!("Seller {user}")),
        text: text.to_string(),
        is_direct: true,
        mentions_bot: false,
        replies_to_bot: false,
        message_id: next_message_id(),
        received_at: Utc::now(),
    }
}

/// Builds a Telegram message from `user` in the group chat `chat`, addressed to the bot.
pub fn group(chat: &str, user: &str, text: &str) -> Inbound {
    Inbound {
        conversation: chat.to_string(),
        is_direct: false,
        mentions_bot: true,
        ..direct(user, text)
    }
}

/// One call the coach made on a sink.
// A test records a handful of calls, so the unboxed reply costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum SinkCall {
    Start,
    Progress(String),
    Finish(Reply),
}

/// A sink that records every call and shows progress as a push platform would.
#[derive(Debug)]
pub struct RecordingSink {
    pub calls: Vec<SinkCall>,
    progress: ProgressStyle,
}

impl RecordingSink {
    /// Creates a sink that accepts progress updates without throttling.
    pub fn new() -> Self {
        RecordingSink {
            calls: Vec::new(),
            progress: ProgressStyle::Push {
                min_interval: Duration::ZERO,
            },
        }
    }

    /// Creates a sink that declares no preview, like a terminal in `--json` mode.
    pub fn without_progress() -> Self {
        RecordingSink {
            calls: Vec::new(),
            progress: ProgressStyle::None,
        }
    }

    /// Returns the progress texts in the order they were shown.
    pub fn progress_texts(&self) -> Vec<String> {
        self.calls
            .iter()
            .filter_map(|call| match call {
                SinkCall::Progress(text) => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    /// Returns the final reply. Panics unless `finish` was called exactly once, last.
    pub fn reply(&self) -> &Reply {
        let finishes = self
            .calls
            .iter()
            .filter(|call| matches!(call, SinkCall::Finish(_)))
            .count();
        assert_eq!(finishes, 1, "finish must be called exactly once");
        match self.calls.last() {
            Some(SinkCall::Finish(reply)) => reply,
            other => panic!("the last sink call is not finish: {other:?}"),
        }
    }

    /// Returns the final card. Panics when the reply is text.
    pub fn card(&self) -> &Card {
        match self.reply() {
            Reply::Card(card) => card,
            Reply::Text { kind, text, .. } => {
                panic!("expected a card, got a {kind:?} text: {text}")
            }
        }
    }
}

#[async_trait]
impl ReplySink for RecordingSink {
    fn capabilities(&self) -> SinkCapabilities {
        SinkCapabilities {
            progress: self.progress,
            ..SinkCapabilities::default()
        }
    }

    async fn start(&mut self) -> Result<(), SinkError> {
        self.calls.push(SinkCall::Start);
        Ok(())
    }

    async fn progress(&mut self, text: &str) -> Result<(), SinkError> {
        self.calls.push(SinkCall::Progress(text.to_string()));
        Ok(())
    }

    async fn finish(&mut self, reply: &Reply) -> Result<Delivered, SinkError> {
        self.calls.push(SinkCall::Finish(reply.clone()));
        Ok(Delivered {
            message_ids: vec![format!("delivered-{}", self.calls.len())],
        })
    }
}

/// Returns a well-formed Chinese card in the format the system prompt asks for,
/// citing `sources` (id and title as the model would write them).
pub fn zh_card_markdown(sources: &[(&str, &str)]) -> String {
    let mut text = String::from(
        "# 报价高于竞品三成时守住价值\n\n\
**问题：** 客户说我们比竞品贵 30%，老板批不下来，销售在考虑申请折扣。\n\n\
## 📊 战略局势评估\n\
* **局势：** [高风险]\n\
* **诊断：** 采购在用竞品价格压价，真正拍板的老板还没听到我们的价值；现在让步只会把谈判拉回纯价格比较。\n\n\
## ❓ 关键破局提问\n\
### 🔍 自我审视\n\
* 我是否把方案的价值量化成了老板关心的数字？\n\
* 竞品报价的范围和我们真的一样吗？\n\n\
### 💬 客户提问\n\
* **澄清顾虑：** 除了价格，老板最担心的是什么？\n\
* **放大影响：** 如果上线延期半年，生产上会损失多少？\n\
* **确认价值：** 如果这些损失能避免，这个差价还算贵吗？\n\n\
## 🚀 建议行动路径\n\
### 立即行动\n\
* **暂不降价：** 先约老板做一次 30 分钟的价值复盘，不主动提折扣。\n\n\
### 后续策略\n\
* **交换条件：** 如果 48 小时后仍要求让步，只用付款条件或合同年限来交换。\n\n\
## 参考\n",
    );
    for (id, title) in sources {
        text.push_str(&format!("* {id} · {title}\n"));
    }
    text
}

/// Splits `text` into `count` pieces of about equal length, at character boundaries.
pub fn split_text(text: &str, count: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(count.max(1)).max(1);
    chars
        .chunks(size)
        .map(|piece| piece.iter().collect())
        .collect()
}
