//! The library card: a complete coaching card assembled from the corpus alone, for
//! when no LLM is configured or the LLM fails.
//!
//! A matching standard Q&A card is adapted directly (its English version where the
//! user writes English). Otherwise each part is filled from the best-matching
//! situation playbook and the most relevant sentences of the top passages.

use std::collections::HashMap;

use maxwin_channel::{Card, CardOrigin, Labelled, Lang, SourceRef};

use super::lang::is_han;
use super::parse::parse_card;
use super::playbook::{self, GENERIC_SELF_CHECK, GENERIC_SPIN};
use crate::corpus::{Corpus, DocKind};
use crate::retrieval::Hit;

/// How many of the top hits may supply a standard Q&A card to adapt.
const QA_CARD_RANK: usize = 3;
/// A Q&A card below the top hit is adapted only when its score is at least this
/// share of the top score, so a card that merely shares a few words is not used.
const QA_CARD_SCORE_SHARE: f32 = 0.75;

/// Terms a passage sentence must share with the message to be quoted.
const MIN_SHARED_TERMS: usize = 2;

/// English versions of corpus documents, keyed by document id.
pub type Translations = HashMap<String, String>;

/// Assembles a library card for `message` from the retrieval hits.
pub fn library_card(
    message: &str,
    lang: Lang,
    hits: &[Hit],
    corpus: &Corpus,
    translations: &Translations,
) -> Card {
    let top_score = hits.first().map_or(0.0, |hit| hit.score);
    let adapted = hits
        .iter()
        .take(QA_CARD_RANK)
        .filter(|hit| hit.kind == DocKind::QaCard)
        .filter(|hit| hit.score >= top_score * QA_CARD_SCORE_SHARE)
        .find_map(|hit| adapt_qa_card(hit, message, lang, corpus, translations));

    let mut card = match adapted {
        Some(card) => card,
        None => assemble(message, lang, hits),
    };
    card.origin = CardOrigin::Library;
    card.lang = lang;
    fill_missing(&mut card, message, lang, hits);
    card
}

fn adapt_qa_card(
    hit: &Hit,
    message: &str,
    lang: Lang,
    corpus: &Corpus,
    translations: &Translations,
) -> Option<Card> {
    let markdown = match lang {
        Lang::Zh => corpus.get(&hit.doc_id)?.body.clone(),
        Lang::En => translations.get(&hit.doc_id)?.clone(),
    };
    let mut card = parse_card(&markdown, lang);
    card.question = restate(message);
    // The standard card tells one seller's case; say so, so the user does not
    // take its names and figures for their own.
    let case_note = lang.pick(
        "（以下参考知识库中的标准问答案例，其中的人名、产品和数字来自原案例，请对照你的情况使用。）",
        "(This follows a standard Q&A case from the library: its names, products and figures come from that case, so map them to your own situation.)",
    );
    card.situation.diagnosis = format!(
        "{case_note}{}{}",
        lang.pick("", " "),
        card.situation.diagnosis
    );
    card.sources = vec![SourceRef {
        id: hit.doc_id.clone(),
        title: card.title.clone(),
    }];
    Some(card)
}

/// Fills any empty part from the playbooks and passages, and adds sources.
fn fill_missing(card: &mut Card, message: &str, lang: Lang, hits: &[Hit]) {
    if !card.is_complete() {
        fill_empty_parts(card, assemble(message, lang, hits));
    }
    for hit in hits.iter().take(3) {
        if card.sources.len() >= 3 {
            break;
        }
        if !card.sources.iter().any(|s| s.id == hit.doc_id) {
            card.sources.push(SourceRef {
                id: hit.doc_id.clone(),
                title: hit.title.clone(),
            });
        }
    }
}

/// Fills each empty part of `card` with the same part of `other`.
pub fn fill_empty_parts(card: &mut Card, other: Card) {
    if card.title.trim().is_empty() {
        card.title = other.title;
    }
    if card.question.trim().is_empty() {
        card.question = other.question;
    }
    if card.situation.stage.trim().is_empty() {
        card.situation.stage = other.situation.stage;
    }
    if card.situation.diagnosis.trim().is_empty() {
        card.situation.diagnosis = other.situation.diagnosis;
    }
    if card.self_check.iter().all(|q| q.trim().is_empty()) {
        card.self_check = other.self_check;
    }
    if card.outward.iter().all(|q| q.text.trim().is_empty()) {
        card.outward_label = other.outward_label;
        card.outward = other.outward;
    }
    if card.actions_now.iter().all(|a| a.text.trim().is_empty()) {
        card.actions_now = other.actions_now;
    }
    if card.actions_later.iter().all(|a| a.text.trim().is_empty()) {
        card.actions_later = other.actions_later;
    }
    if card.sources.is_empty() {
        card.sources = other.sources;
    }
}

/// Shortens the user's message to a one-paragraph restatement.
fn restate(message: &str) -> String {
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    truncate(&message, 160)
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max_chars).collect();
    out.push('…');
    out
}

/// Shortens English text at a word boundary.
fn truncate_words(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let cut: String = text.chars().take(max_chars).collect();
    let end = cut.rfind(' ').unwrap_or(cut.len());
    format!("{}…", cut[..end].trim_end_matches([',', ';', ':']))
}

fn assemble(message: &str, lang: Lang, hits: &[Hit]) -> Card {
    let playbook = playbook::matching(message);
    let pick = |pair: (&str, &str)| lang.pick(pair.0, pair.1).to_string();
    let short = match lang {
        Lang::Zh => truncate(message.trim(), 24),
        Lang::En => truncate_words(message.trim(), 48),
    };

    let title = match lang {
        Lang::Zh => format!("应对思路：{short}"),
        Lang::En => format!("How to approach: {short}"),
    };
    let stage = playbook.map_or_else(
        || lang.pick("知识储备", "Knowledge building").to_string(),
        |p| pick(p.stage),
    );

    let mut self_check: Vec<String> = playbook
        .map(|p| p.self_check.iter().map(|q| pick(*q)).collect())
        .unwrap_or_default();
    for question in GENERIC_SELF_CHECK {
        if self_check.len() >= 3 {
            break;
        }
        self_check.push(pick(*question));
    }

    let outward = GENERIC_SPIN
        .iter()
        .take(3)
        .map(|(zl, zt, el, et)| Labelled::new(lang.pick(zl, el), lang.pick(zt, et)))
        .collect();

    let insights = insights(message, lang, hits);
    let diagnosis = diagnosis(lang, playbook.is_some(), &insights);

    let mut actions_now = Vec::new();
    if let Some(p) = playbook {
        let (zl, zt, el, et) = p.action_now;
        actions_now.push(Labelled::new(lang.pick(zl, el), lang.pick(zt, et)));
    }
    if let Some((title, sentence)) = insights.get(1).or(insights.first()) {
        let label = lang.pick("借鉴经验", "Borrow from the library");
        let text = match lang {
            Lang::Zh => format!("参考《{title}》：{sentence}"),
            Lang::En => format!("See \"{title}\": {sentence}"),
        };
        actions_now.push(Labelled::new(label, text));
    }
    if actions_now.is_empty() {
        actions_now.push(Labelled::new(
            lang.pick("先澄清", "Clarify first"),
            lang.pick(
                "用上面的问题先把客户的真实顾虑和决策链问清楚，再决定下一步，不要急于给方案或让步。",
                "Use the questions above to learn the client's real concern and buying group before proposing or conceding anything.",
            ),
        ));
    }

    let actions_later = match playbook {
        Some(p) => {
            let (zl, zt, el, et) = p.action_later;
            vec![Labelled::new(lang.pick(zl, el), lang.pick(zt, et))]
        }
        None => vec![Labelled::new(
            lang.pick("复盘与跟进", "Review and follow up"),
            lang.pick(
                "48 小时内整理客户的回答，标出缺失的决策角色和未量化的价值，据此安排下一次有明确目的的沟通。",
                "Within 48 hours, write down the client's answers, mark the buying roles you have not met and the value you have not quantified, and plan the next conversation around them.",
            ),
        )],
    };

    Card {
        lang,
        origin: CardOrigin::Library,
        title,
        question: restate(message),
        situation: maxwin_channel::Situation { stage, diagnosis },
        self_check,
        outward_label: String::new(),
        outward,
        actions_now,
        actions_later,
        sources: Vec::new(),
    }
}

fn diagnosis(lang: Lang, matched: bool, insights: &[(String, String)]) -> String {
    let opening = match (lang, matched) {
        (Lang::Zh, true) => {
            "这是 B2B 销售中常见的局面，关键是先弄清真实的信号和决策链，而不是急于回应表面的要求。"
        }
        (Lang::Zh, false) => {
            "知识库中没有与此完全对应的标准问答，以下思路结合了通用的顾问式销售原则和最接近的经验。"
        }
        (Lang::En, true) => {
            "This is a common B2B situation: first read the real signal and the buying group, rather than reacting to the surface request."
        }
        (Lang::En, false) => {
            "The library has no standard Q&A card for exactly this, so this card applies general consultative-selling principles. The closest material is listed under Sources (mostly in Chinese)."
        }
    };
    let mut text = opening.to_string();
    if let Some((title, sentence)) = insights.first() {
        match lang {
            Lang::Zh => text.push_str(&format!("《{title}》中提到：“{sentence}”")),
            Lang::En => text.push_str(&format!(" From \"{title}\": \"{sentence}\"")),
        }
    }
    text
}

/// Picks the most relevant sentence of each top passage, preferring passages in
/// the reply language. Returns (document title, sentence) pairs.
fn insights(message: &str, lang: Lang, hits: &[Hit]) -> Vec<(String, String)> {
    let terms = query_terms(message);
    let mut ranked: Vec<&Hit> = hits.iter().take(5).collect();
    ranked.sort_by_key(|hit| hit.lang != lang);
    ranked
        .into_iter()
        .filter(|hit| hit.lang == lang || lang == Lang::Zh)
        .filter_map(|hit| {
            best_sentence(&hit.text, &hit.title, &terms).map(|s| (hit.title.clone(), s))
        })
        .take(2)
        .collect()
}

/// Splits a message into matching units: Han bigrams and lowercase Latin words.
fn query_terms(message: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let han: Vec<char> = message.chars().filter(|c| is_han(*c)).collect();
    for pair in han.windows(2) {
        terms.push(pair.iter().collect());
    }
    for word in message.split(|c: char| !c.is_alphanumeric()) {
        if word.len() > 3 && word.is_ascii() {
            terms.push(word.to_lowercase());
        }
    }
    terms
}

fn strip_markup(text: &str) -> String {
    text.replace("**", "")
        .trim_start_matches(['#', '>', '*', '-', ' ', '•'])
        .trim()
        .to_string()
}

/// Picks the sentence of `text` that shares the most terms with the message; it
/// must share at least two and must not merely repeat the title.
fn best_sentence(text: &str, title: &str, terms: &[String]) -> Option<String> {
    let title = strip_markup(title);
    let title = title.trim_end_matches(['。', '！', '？', '.', '!', '?', '；', ';']);
    let sentences = text
        .split(['。', '！', '？', '!', '?', '；', '\n'])
        .map(strip_markup)
        .filter(|s| {
            let n = s.chars().count();
            (12..=140).contains(&n) && !s.starts_with('[') && !s.ends_with('：') && s != title
        });
    let mut best: Option<(usize, String)> = None;
    for sentence in sentences {
        let lower = sentence.to_lowercase();
        let score = terms.iter().filter(|t| lower.contains(t.as_str())).count();
        if score >= MIN_SHARED_TERMS && best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, sentence));
        }
    }
    best.map(|(_, sentence)| {
        let end = if sentence.is_ascii() { "." } else { "。" };
        format!("{sentence}{end}")
    })
}
