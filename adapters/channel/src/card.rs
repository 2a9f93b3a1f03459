//! The Q&A card: the structured coaching answer every platform renders.

use serde::{Deserialize, Serialize};

/// The language of a reply. The bot answers in Simplified Chinese or English.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    Zh,
    En,
}

impl Lang {
    /// Returns the BCP 47 code, `zh` or `en`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// Parses `zh`, `en` and their common spellings (`cn`, `zh-CN`, `中文`, `english`, …).
    pub fn parse(value: &str) -> Option<Lang> {
        let value = value.trim().to_ascii_lowercase();
        match value.as_str() {
            "zh" | "cn" | "zh-cn" | "zh_cn" | "zh-hans" | "chinese" | "中文" | "汉语" | "简体" => {
                Some(Lang::Zh)
            }
            "en" | "en-us" | "en_us" | "en-gb" | "english" | "英文" | "英语" => Some(Lang::En),
            _ => None,
        }
    }

    /// Picks the Chinese or the English string.
    pub fn pick<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }
}

/// Where a card's content came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CardOrigin {
    /// Written by the LLM for this situation, grounded in retrieved passages.
    #[default]
    Tailored,
    /// Assembled from the corpus without an LLM; marked as such to the user.
    Library,
}

/// The stage tag and diagnosis of the situation assessment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Situation {
    /// A short stage tag such as `高风险`, `推进中` or `High risk`.
    pub stage: String,
    /// One paragraph that explains what is going on and why it matters.
    pub diagnosis: String,
}

/// A question or action with a short bold label, e.g. `澄清顾虑` or `Stop chasing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Labelled {
    pub label: String,
    pub text: String,
}

impl Labelled {
    pub fn new(label: impl Into<String>, text: impl Into<String>) -> Self {
        Labelled {
            label: label.into(),
            text: text.into(),
        }
    }
}

/// A corpus document that the card cites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SourceRef {
    /// The stable corpus id, e.g. `QA_002_Handling_Price_Objections_ZH` or `dadingdan-17`.
    pub id: String,
    pub title: String,
}

/// A coaching answer in the shape of the corpus's standard Q&A cards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Card {
    pub lang: Lang,
    pub origin: CardOrigin,
    /// One line naming the situation.
    pub title: String,
    /// The user's situation restated in one or two sentences.
    pub question: String,
    pub situation: Situation,
    /// Questions the seller must answer for themselves first.
    pub self_check: Vec<String>,
    /// The heading of the outward questions, which varies with the situation:
    /// `客户提问`, `向上沟通问题`, `面试实战问题`, `Ask the client`, …
    pub outward_label: String,
    /// Questions to put to the other side, word for word, in SPIN order.
    pub outward: Vec<Labelled>,
    pub actions_now: Vec<Labelled>,
    pub actions_later: Vec<Labelled>,
    pub sources: Vec<SourceRef>,
}

impl Card {
    /// Lists the parts that are missing or empty, by their English field name.
    ///
    /// A card is complete when this is empty; the coach repairs the listed parts
    /// before a user sees the card.
    pub fn missing_parts(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.title.trim().is_empty() {
            missing.push("title");
        }
        if self.question.trim().is_empty() {
            missing.push("question");
        }
        if self.situation.stage.trim().is_empty() {
            missing.push("stage");
        }
        if self.situation.diagnosis.trim().is_empty() {
            missing.push("diagnosis");
        }
        if !self.self_check.iter().any(|q| !q.trim().is_empty()) {
            missing.push("self_check");
        }
        if !self.outward.iter().any(|q| !q.text.trim().is_empty()) {
            missing.push("outward");
        }
        if !self.actions_now.iter().any(|a| !a.text.trim().is_empty()) {
            missing.push("actions_now");
        }
        if !self.actions_later.iter().any(|a| !a.text.trim().is_empty()) {
            missing.push("actions_later");
        }
        if self.sources.is_empty() {
            missing.push("sources");
        }
        missing
    }

    /// Returns true when every part of the card has content.
    pub fn is_complete(&self) -> bool {
        self.missing_parts().is_empty()
    }

    /// Returns the label set for this card's language.
    pub fn labels(&self) -> &'static Labels {
        Labels::for_lang(self.lang)
    }

    /// Returns the heading of the outward questions, falling back to the default label.
    pub fn outward_heading(&self) -> &str {
        let label = self.outward_label.trim();
        if label.is_empty() {
            self.labels().outward_default
        } else {
            label
        }
    }
}

/// The fixed section labels of a card in one language.
#[derive(Debug)]
pub struct Labels {
    pub question: &'static str,
    pub situation: &'static str,
    pub stage: &'static str,
    pub diagnosis: &'static str,
    pub breakthrough: &'static str,
    pub self_check: &'static str,
    pub outward_default: &'static str,
    pub actions: &'static str,
    pub actions_now: &'static str,
    pub actions_later: &'static str,
    pub sources: &'static str,
    /// The notice shown on a card assembled from the corpus without an LLM.
    pub library_notice: &'static str,
}

const ZH_LABELS: Labels = Labels {
    question: "问题",
    situation: "📊 战略局势评估",
    stage: "局势",
    diagnosis: "诊断",
    breakthrough: "❓ 关键破局提问",
    self_check: "🔍 自我审视",
    outward_default: "💬 客户提问",
    actions: "🚀 建议行动路径",
    actions_now: "立即行动",
    actions_later: "后续策略",
    sources: "参考",
    library_notice: "📚 资料库回答：以下内容由知识库中最相关的材料整理而成，不是针对你情况的定制分析。",
};

const EN_LABELS: Labels = Labels {
    question: "Question",
    situation: "📊 Situation assessment",
    stage: "Stage",
    diagnosis: "Diagnosis",
    breakthrough: "❓ Breakthrough questions",
    self_check: "🔍 Ask yourself",
    outward_default: "💬 Ask the client",
    actions: "🚀 Action plan",
    actions_now: "Right now",
    actions_later: "Next steps",
    sources: "Sources",
    library_notice: "📚 Library answer: assembled from the closest material in the knowledge base, not an analysis tailored to your situation.",
};

impl Labels {
    pub fn for_lang(lang: Lang) -> &'static Labels {
        match lang {
            Lang::Zh => &ZH_LABELS,
            Lang::En => &EN_LABELS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lang_parse_accepts_common_spellings() {
        assert_eq!(Lang::parse("zh"), Some(Lang::Zh));
        assert_eq!(Lang::parse(" ZH-CN "), Some(Lang::Zh));
        assert_eq!(Lang::parse("中文"), Some(Lang::Zh));
        assert_eq!(Lang::parse("English"), Some(Lang::En));
        assert_eq!(Lang::parse("fr"), None);
    }

    #[test]
    fn empty_card_lists_every_part_missing() {
        let card = Card::default();
        assert_eq!(
            card.missing_parts(),
            vec![
                "title",
                "question",
                "stage",
                "diagnosis",
                "self_check",
                "outward",
                "actions_now",
                "actions_later",
                "sources"
            ]
        );
    }

    #[test]
    fn outward_heading_falls_back_to_default() {
        let mut card = Card {
            lang: Lang::En,
            ..Card::default()
        };
        assert_eq!(card.outward_heading(), "💬 Ask the client");
        card.outward_label = "💬 Ask your boss".into();
        assert_eq!(card.outward_heading(), "💬 Ask your boss");
    }
}
