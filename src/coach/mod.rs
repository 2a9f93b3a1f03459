//! The coach turns one message into a reply and stores the turn.
//!
//! The reply is a Q&A card written by the LLM from retrieved passages, a library
//! card when there is no LLM, a short off-topic note, or a command's reply.

pub mod commands;
pub mod lang;
pub mod library;
pub mod parse;
pub mod playbook;
pub mod ports;
pub mod prompt;
pub mod translations;

use std::sync::Arc;
use std::time::Instant;

use maxwin_channel::{
    Card, CardOrigin, Feedback, Inbound, Lang, ProgressStyle, Reply, ReplyKind, ReplySink,
    SinkError, SourceRef, render,
};
use serde::Deserialize;
use tokio::sync::mpsc;
use tracing::{debug, info, instrument, warn};

pub use commands::{Command, parse_command};
use library::{Translations, library_card};
use prompt::{OFF_TOPIC_MARKER, PromptBudget, PromptPassage, PromptTurn};

use crate::corpus::Corpus;
use crate::llm::{Completion, LlmClient, StreamEvent};
use crate::retrieval::{Retriever, SearchResult};
use crate::store::{ConversationKey, NewTurn, Store, UserRef};

/// Settings of the coach, the `[coach]` section of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoachSettings {
    /// The reply language when a message has no letters to tell by: `zh` or `en`.
    pub default_lang: Lang,
    /// How many passages the prompt and the library card draw on.
    pub passages: usize,
    /// How many earlier turns of the conversation the prompt may include.
    pub history_turns: usize,
    /// The model's context window, in tokens; the prompt is trimmed to fit.
    pub context_tokens: usize,
    /// Tokens kept free for the answer.
    pub answer_tokens: usize,
}

impl Default for CoachSettings {
    fn default() -> Self {
        CoachSettings {
            default_lang: Lang::Zh,
            passages: 6,
            history_turns: 8,
            context_tokens: 8192,
            answer_tokens: 2048,
        }
    }
}

/// The result of handling one message, for the router's metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub kind: ReplyKind,
    /// The stored answer's id, when the store was reachable.
    pub answer_id: Option<i64>,
    pub llm_ms: Option<u64>,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
}

/// A failure that kept the reply from reaching the user.
#[derive(Debug, thiserror::Error)]
pub enum CoachError {
    #[error("could not deliver the reply: {0}")]
    Delivery(#[from] SinkError),
}

/// Everything the coach needs, shared across conversations.
pub struct Coach {
    corpus: Arc<Corpus>,
    retriever: Arc<Retriever>,
    llm: Option<LlmClient>,
    store: Arc<dyn Store>,
    translations: Arc<Translations>,
    settings: CoachSettings,
}

/// The answer to a message before it is delivered and stored.
struct Drafted {
    reply: Reply,
    retrieved: Vec<String>,
    completion: Option<Completion>,
}

impl Coach {
    pub fn new(
        corpus: Arc<Corpus>,
        retriever: Arc<Retriever>,
        llm: Option<LlmClient>,
        store: Arc<dyn Store>,
        translations: Arc<Translations>,
        settings: CoachSettings,
    ) -> Self {
        Coach {
            corpus,
            retriever,
            llm,
            store,
            translations,
            settings,
        }
    }

    /// Returns true when an LLM is configured.
    pub fn has_llm(&self) -> bool {
        self.llm.is_some()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Answers one message, commands included, and stores the turn.
    ///
    /// A store outage does not stop the answer: the turn is answered without history
    /// and the failure is logged. Only a failure to deliver the reply is an error.
    #[instrument(skip_all, fields(platform = %msg.platform, tenant = %msg.tenant, conversation = %msg.conversation, message_id = %msg.message_id))]
    pub async fn handle(
        &self,
        msg: &Inbound,
        sink: &mut dyn ReplySink,
    ) -> Result<Outcome, CoachError> {
        let key = conversation_key(msg);
        let (conversation_id, lang_override, user_db_id) = self.open_conversation(msg, &key).await;
        let lang =
            lang_override.unwrap_or_else(|| lang::detect(&msg.text, self.settings.default_lang));

        let question = match parse_command(&msg.text) {
            None => msg.text.trim().to_string(),
            Some(Command::Ask(text)) if !text.trim().is_empty() => text.trim().to_string(),
            Some(command) => {
                let reply = self
                    .run_command(command, msg, conversation_id, lang_override)
                    .await;
                sink.finish(&reply).await?;
                return Ok(Outcome {
                    kind: reply.kind(),
                    answer_id: None,
                    llm_ms: None,
                    prompt_tokens: None,
                    completion_tokens: None,
                });
            }
        };
        let lang = lang_override.unwrap_or_else(|| lang::detect(&question, lang));

        if let Err(error) = sink.start().await {
            warn!(error = %error, "could not show the typing status");
        }
        let started = Instant::now();
        let drafted = self
            .draft(
                &question,
                lang,
                conversation_id,
                is_follow_up(msg, &question),
                sink,
            )
            .await;
        let delivered = sink.finish(&drafted.reply).await;
        let total_ms = started.elapsed().as_millis() as u64;

        let answer_id = match (conversation_id, user_db_id) {
            (Some(conversation_id), Some(user_db_id)) => {
                self.record(
                    conversation_id,
                    user_db_id,
                    msg,
                    &question,
                    &drafted,
                    total_ms,
                )
                .await
            }
            _ => None,
        };
        let delivered = delivered?;
        if let Some(answer_id) = answer_id {
            for platform_message_id in &delivered.message_ids {
                if let Err(error) = self
                    .store
                    .link_delivery(answer_id, msg.platform, &msg.tenant, platform_message_id)
                    .await
                {
                    warn!(error = %error, answer_id, "could not link the delivered message to the answer");
                }
            }
        }

        let completion = drafted.completion.as_ref();
        info!(kind = drafted.reply.kind().as_str(), total_ms, "answered");
        Ok(Outcome {
            kind: drafted.reply.kind(),
            answer_id,
            llm_ms: completion.map(|c| c.total_ms),
            prompt_tokens: completion.and_then(|c| c.prompt_tokens),
            completion_tokens: completion.and_then(|c| c.completion_tokens),
        })
    }

    /// Stores a 👍 / 👎 or a comment; returns false when the answer is unknown or
    /// the event was seen before.
    pub async fn feedback(&self, feedback: &Feedback) -> Result<bool, crate::store::StoreError> {
        self.store.record_feedback(feedback).await
    }

    /// Answers one question without a conversation: used by `maxwin ask --json`
    /// and the evaluation. Nothing is stored.
    pub async fn answer_once(
        &self,
        question: &str,
        lang: Option<Lang>,
        sink: &mut dyn ReplySink,
    ) -> Reply {
        let lang = lang.unwrap_or_else(|| lang::detect(question, self.settings.default_lang));
        self.draft(question, lang, None, false, sink).await.reply
    }

    async fn open_conversation(
        &self,
        msg: &Inbound,
        key: &ConversationKey,
    ) -> (Option<i64>, Option<Lang>, Option<i64>) {
        let user = UserRef {
            platform: msg.platform,
            tenant: msg.tenant.clone(),
            user_id: msg.user.clone(),
            display_name: msg.display_name.clone(),
        };
        let user_db_id = match self.store.upsert_user(&user).await {
            Ok(id) => Some(id),
            Err(error) => {
                warn!(error = %error, "store unavailable; answering without history");
                return (None, None, None);
            }
        };
        match self.store.conversation(key).await {
            Ok(conversation) => (Some(conversation.id), conversation.lang, user_db_id),
            Err(error) => {
                warn!(error = %error, "store unavailable; answering without history");
                (None, None, user_db_id)
            }
        }
    }

    async fn run_command(
        &self,
        command: Command,
        msg: &Inbound,
        conversation_id: Option<i64>,
        lang_override: Option<Lang>,
    ) -> Reply {
        // The command word is the same in both languages, so only its argument
        // (a comment, a question) can tell which language the user writes.
        let lang = lang_override.unwrap_or_else(|| {
            lang::detect(command_argument(&msg.text), self.settings.default_lang)
        });
        let text = |zh: &str, en: &str| Reply::Text {
            kind: ReplyKind::Command,
            lang,
            text: lang.pick(zh, en).to_string(),
        };
        let unavailable = || {
            Reply::Text {
            kind: ReplyKind::Error,
            lang,
            text: lang
                .pick(
                    "暂时无法保存设置（数据库不可用），请稍后再试。",
                    "Could not save that right now because the database is unavailable. Please try again in a moment.",
                )
                .to_string(),
        }
        };

        match command {
            Command::Start => Reply::Text {
                kind: ReplyKind::Command,
                lang,
                text: commands::welcome_text(lang),
            },
            Command::Help => Reply::Text {
                kind: ReplyKind::Command,
                lang,
                text: commands::help_text(lang).to_string(),
            },
            Command::Ask(_) => text(
                "请在 /ask 后面写上你的问题，例如：/ask 客户嫌贵怎么回？",
                "Please write your question after /ask, for example: /ask The client says we are too expensive. What do I say?",
            ),
            Command::Reset => match conversation_id {
                Some(id) => match self.store.reset_conversation(id).await {
                    Ok(()) => text(
                        "好的，已清空本对话的上下文。请描述新的情况。",
                        "Done: this conversation's context is cleared. Describe the new situation.",
                    ),
                    Err(error) => {
                        warn!(error = %error, "reset failed");
                        unavailable()
                    }
                },
                None => unavailable(),
            },
            Command::Lang(None) => {
                text("用法：/lang zh 或 /lang en", "Usage: /lang zh or /lang en")
            }
            Command::Lang(Some(new_lang)) => match conversation_id {
                Some(id) => match self.store.set_lang(id, Some(new_lang)).await {
                    Ok(()) => Reply::Text {
                        kind: ReplyKind::Command,
                        lang: new_lang,
                        text: new_lang
                            .pick(
                                "好的，之后我会用中文回答。",
                                "OK, I will answer in English from now on.",
                            )
                            .to_string(),
                    },
                    Err(error) => {
                        warn!(error = %error, "set_lang failed");
                        unavailable()
                    }
                },
                None => unavailable(),
            },
            Command::Feedback(comment) if comment.trim().is_empty() => text(
                "请在 /feedback 后面写上你的意见，例如：/feedback 第二条建议很实用",
                "Please write your comment after /feedback, for example: /feedback The second action was very useful",
            ),
            Command::Feedback(comment) => {
                let feedback = Feedback {
                    platform: msg.platform,
                    tenant: msg.tenant.clone(),
                    conversation: msg.conversation.clone(),
                    user: msg.user.clone(),
                    answer_message_id: String::new(),
                    rating: None,
                    comment: Some(comment),
                    event_id: msg.dedupe_key(),
                    received_at: msg.received_at,
                };
                match self.store.record_feedback(&feedback).await {
                    Ok(_) => text(
                        "谢谢你的反馈，我们会认真看。",
                        "Thank you for the feedback; we read every comment.",
                    ),
                    Err(error) => {
                        warn!(error = %error, "feedback not stored");
                        unavailable()
                    }
                }
            }
            Command::Unknown(_) => text(
                "我不认识这个命令。发送 /help 查看可用的命令。",
                "I don't know that command. Send /help to see what I can do.",
            ),
        }
    }

    /// Retrieves passages and writes the reply, streaming progress into the sink.
    async fn draft(
        &self,
        question: &str,
        lang: Lang,
        conversation_id: Option<i64>,
        follow_up: bool,
        sink: &mut dyn ReplySink,
    ) -> Drafted {
        let mut search: SearchResult = self.search(question).await;
        let mut loaded_history = None;
        if search.off_topic && follow_up && conversation_id.is_some() {
            // A follow-up such as "what else can I ask them?" names no sales topic
            // itself, so it is searched again together with the previous question.
            // A new message that is off-topic stays off-topic.
            let history = self.history(conversation_id).await;
            if !history.is_empty() {
                // Several turns back, because the previous turn may itself have
                // been a follow-up that names no topic.
                let start = history.len().saturating_sub(FOLLOW_UP_CONTEXT_TURNS);
                let mut contextual: Vec<&str> =
                    history[start..].iter().map(|t| t.user.as_str()).collect();
                contextual.push(question);
                let contextual = contextual.join("\n");
                let follow_up = self.search(&contextual).await;
                if !follow_up.off_topic {
                    search = follow_up;
                }
            }
            loaded_history = Some(history);
        }
        let retrieved: Vec<String> = search.hits.iter().map(|h| h.doc_id.clone()).collect();
        if search.off_topic {
            return Drafted {
                reply: off_topic_reply(lang),
                retrieved,
                completion: None,
            };
        }

        let Some(llm) = &self.llm else {
            return Drafted {
                reply: Reply::Card(self.library(question, lang, &search)),
                retrieved,
                completion: None,
            };
        };

        let history = match loaded_history {
            Some(history) => history,
            None => self.history(conversation_id).await,
        };
        let passages: Vec<PromptPassage> = search
            .hits
            .iter()
            .map(|hit| PromptPassage {
                id: hit.doc_id.clone(),
                title: hit.title.clone(),
                text: hit.text.clone(),
            })
            .collect();
        let budget = PromptBudget {
            context_tokens: self.settings.context_tokens,
            reserved_for_answer: self.settings.answer_tokens,
            ..PromptBudget::default()
        };
        let request = prompt::build_request(question, &passages, &history, lang, &budget);

        match stream_into(llm, &request, sink).await {
            Ok(completion) => {
                let reply = self.card_from_completion(question, lang, &search, &completion.text);
                Drafted {
                    reply,
                    retrieved,
                    completion: Some(completion),
                }
            }
            Err(error) => {
                warn!(error = %error, "LLM failed; answering with a library card");
                Drafted {
                    reply: Reply::Card(self.library(question, lang, &search)),
                    retrieved,
                    completion: None,
                }
            }
        }
    }

    /// Searches the corpus, with the LLM's query rewrite and embeddings when they
    /// are configured; those fall back to the offline search on any failure.
    async fn search(&self, query: &str) -> SearchResult {
        match &self.llm {
            Some(llm) => {
                let deadline = self.retriever.llm_deadline();
                self.retriever
                    .search_with_llm(query, self.settings.passages, llm, deadline)
                    .await
            }
            None => self.retriever.search(query, self.settings.passages),
        }
    }

    fn library(&self, question: &str, lang: Lang, search: &SearchResult) -> Card {
        library_card(
            question,
            lang,
            &search.hits,
            &self.corpus,
            &self.translations,
        )
    }

    /// Parses the model's Markdown into a card, keeps only retrieved sources, and
    /// repairs any missing part from the library card of the same passages.
    fn card_from_completion(
        &self,
        question: &str,
        lang: Lang,
        search: &SearchResult,
        text: &str,
    ) -> Reply {
        if text.trim().starts_with(OFF_TOPIC_MARKER) {
            return off_topic_reply(lang);
        }
        let mut card = parse::parse_card(text, lang);
        card.origin = CardOrigin::Tailored;
        card.sources = cited_sources(&card.sources, search);

        let missing = card.missing_parts();
        if !missing.is_empty() {
            debug!(?missing, "repairing the card from the library");
            let library = self.library(question, lang, search);
            library::fill_empty_parts(&mut card, library);
        }
        Reply::Card(card)
    }

    async fn history(&self, conversation_id: Option<i64>) -> Vec<PromptTurn> {
        let Some(id) = conversation_id else {
            return Vec::new();
        };
        match self
            .store
            .recent_turns(id, self.settings.history_turns)
            .await
        {
            Ok(turns) => turns
                .into_iter()
                .filter(|t| matches!(t.reply_kind, ReplyKind::Card | ReplyKind::LibraryCard))
                .map(|t| PromptTurn {
                    user: t.user_text,
                    assistant: t.reply_text,
                })
                .collect(),
            Err(error) => {
                warn!(error = %error, "could not load history");
                Vec::new()
            }
        }
    }

    async fn record(
        &self,
        conversation_id: i64,
        user_db_id: i64,
        msg: &Inbound,
        question: &str,
        drafted: &Drafted,
        total_ms: u64,
    ) -> Option<i64> {
        let completion = drafted.completion.as_ref();
        let reply_text = match &drafted.reply {
            Reply::Card(card) => render::to_markdown(card),
            Reply::Text { text, .. } => text.clone(),
        };
        let turn = NewTurn {
            conversation_id,
            user_db_id,
            user_text: question.to_string(),
            reply: drafted.reply.clone(),
            reply_text,
            retrieved_ids: drafted.retrieved.clone(),
            provider: completion.map(|c| c.provider.clone()),
            model: completion.map(|c| c.model.clone()),
            prompt_tokens: completion.and_then(|c| c.prompt_tokens),
            completion_tokens: completion.and_then(|c| c.completion_tokens),
            first_token_ms: completion.and_then(|c| c.first_token_ms),
            total_ms,
            complete: true,
            inbound_message_id: Some(msg.message_id.clone()),
        };
        match self.store.record_turn(&turn).await {
            Ok(id) => Some(id),
            Err(error) => {
                warn!(error = %error, "could not store the turn");
                None
            }
        }
    }
}

/// How many earlier questions a follow-up is searched together with.
const FOLLOW_UP_CONTEXT_TURNS: usize = 3;

/// Words that make a message read as a continuation of the previous question.
const FOLLOW_UP_CUES: &[&str] = &[
    "还有",
    "那如果",
    "那要是",
    "如果",
    "要是",
    "他",
    "她",
    "对方",
    "别的",
    "其他",
    "再",
    "然后",
    "接下来",
    "怎么办",
    "what if",
    "what else",
    "else",
    "more",
    "another",
    "then",
    "they",
    "them",
    "he ",
    "she ",
    " him",
    " her",
    " it",
];

/// Decides whether a message continues the conversation's previous question: a
/// reply to the bot always does, and in a direct chat a message with a
/// continuation word ("还有别的办法吗", "what if he still says no") does.
fn is_follow_up(msg: &Inbound, question: &str) -> bool {
    if msg.replies_to_bot {
        return true;
    }
    let lower = format!(" {} ", question.to_lowercase());
    msg.is_direct && FOLLOW_UP_CUES.iter().any(|cue| lower.contains(cue))
}

/// Direct chats are scoped to the user; groups to the chat and thread, shared by members.
pub fn conversation_key(msg: &Inbound) -> ConversationKey {
    ConversationKey {
        platform: msg.platform,
        tenant: msg.tenant.clone(),
        chat: msg.conversation.clone(),
        thread: msg.thread.clone(),
        user: msg.is_direct.then(|| msg.user.clone()),
    }
}

/// Returns the text after the command word, or "" when there is none.
fn command_argument(text: &str) -> &str {
    let text = text.trim_start();
    text.find(char::is_whitespace)
        .map_or("", |index| text[index..].trim())
}

fn off_topic_reply(lang: Lang) -> Reply {
    Reply::Text {
        kind: ReplyKind::OffTopic,
        lang,
        text: lang
            .pick(
                "我是销售参谋，专门帮你分析 B2B 销售中的具体局面：客户、报价、谈判、成交、团队和销售职业发展。这个问题超出了我的范围。换一个销售难题问我吧，比如“客户嫌贵怎么回？”",
                "I'm Max-Win-Win Coach, here for concrete B2B sales situations: clients, pricing, negotiation, closing, sales teams and sales careers. That question is outside what I do. Try me with a sales problem, for example: \"The client says we're too expensive. What do I say?\"",
            )
            .to_string(),
    }
}

/// Keeps the sources the model cited that retrieval really returned, with corpus
/// titles; falls back to the top retrieved documents when none survive.
fn cited_sources(cited: &[SourceRef], search: &SearchResult) -> Vec<SourceRef> {
    let mut sources: Vec<SourceRef> = Vec::new();
    for source in cited {
        if let Some(hit) = search.hits.iter().find(|h| h.doc_id == source.id)
            && !sources.iter().any(|s| s.id == hit.doc_id)
        {
            sources.push(SourceRef {
                id: hit.doc_id.clone(),
                title: hit.title.clone(),
            });
        }
    }
    if sources.is_empty() {
        sources = search
            .hits
            .iter()
            .take(3)
            .map(|hit| SourceRef {
                id: hit.doc_id.clone(),
                title: hit.title.clone(),
            })
            .collect();
    }
    sources
}

/// Streams the completion, forwarding the cumulative text to the sink as it grows.
async fn stream_into(
    llm: &LlmClient,
    request: &crate::llm::ChatRequest,
    sink: &mut dyn ReplySink,
) -> Result<Completion, crate::llm::LlmError> {
    let wants_progress = sink.capabilities().progress != ProgressStyle::None;
    let (sender, mut receiver) = mpsc::unbounded_channel::<Option<String>>();
    let completion = async move {
        let mut forward = move |event: StreamEvent<'_>| {
            let update = match event {
                StreamEvent::Delta(text) => Some(text.to_string()),
                StreamEvent::Restart => None,
            };
            let _ = sender.send(update);
        };
        llm.chat_stream(request, &mut forward).await
    };
    let progress = async {
        let mut shown = String::new();
        while let Some(update) = receiver.recv().await {
            apply(&mut shown, update);
            // Coalesce whatever else already arrived into one sink call.
            while let Ok(update) = receiver.try_recv() {
                apply(&mut shown, update);
            }
            if wants_progress && let Err(error) = sink.progress(&shown).await {
                debug!(error = %error, "progress update failed");
            }
        }
    };
    let (result, ()) = tokio::join!(completion, progress);
    result
}

fn apply(shown: &mut String, update: Option<String>) {
    match update {
        Some(delta) => shown.push_str(&delta),
        None => shown.clear(),
    }
}
