//! Parses a card written in Markdown (by the LLM, or a standard Q&A card of the
//! corpus) into the [`Card`] model.
//!
//! The parser is tolerant: headings may be at any level, in Chinese or English, with
//! or without their emoji and trailing explanations in brackets; bullets may use
//! `*`, `-`, `•` or numbers; labels may be bold or plain. What it cannot find stays
//! empty, and [`Card::missing_parts`] tells the caller what to repair.

use maxwin_channel::{Card, Labelled, Lang, SourceRef};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Preamble,
    Question,
    Situation,
    Breakthrough,
    SelfCheck,
    Outward,
    Actions,
    Now,
    Later,
    Sources,
    Other,
}

/// Parses Markdown into a card in `lang`. Sources are returned as written; the
/// caller keeps only ids that retrieval actually returned.
pub fn parse_card(markdown: &str, lang: Lang) -> Card {
    let mut card = Card {
        lang,
        ..Card::default()
    };
    let mut part = Part::Preamble;
    let mut question_lines: Vec<String> = Vec::new();
    let mut diagnosis_lines: Vec<String> = Vec::new();
    let mut in_diagnosis = false;

    for raw in markdown.lines() {
        let line = raw.trim();
        if line.is_empty() || is_rule(line) {
            in_diagnosis = false;
            if part == Part::Question && !question_lines.is_empty() {
                part = Part::Other;
            }
            continue;
        }

        if let Some((level, heading)) = heading(line) {
            in_diagnosis = false;
            if level == 1 && card.title.is_empty() {
                card.title = clean_title(heading);
                part = Part::Preamble;
                continue;
            }
            part = classify_heading(heading, part);
            if part == Part::Outward {
                card.outward_label = strip_explanation(heading);
            }
            continue;
        }

        if let Some((_, text)) = field(line, &["问题", "Question", "Situation described"]) {
            part = Part::Question;
            if !text.is_empty() {
                question_lines.push(text);
            }
            continue;
        }
        if let Some((_, text)) = field(line, &["局势", "Stage", "阶段"]) {
            card.situation.stage = text.trim_matches(['[', ']', '【', '】']).trim().to_string();
            continue;
        }
        if let Some((_, text)) = field(line, &["诊断", "Diagnosis"]) {
            in_diagnosis = true;
            if !text.is_empty() {
                diagnosis_lines.push(text);
            }
            continue;
        }

        let item = bullet(line);
        match part {
            Part::Question => question_lines.push(item.map_or(line.to_string(), |b| b.text)),
            Part::Situation if in_diagnosis => diagnosis_lines.push(line.to_string()),
            Part::Situation if item.is_none() && card.situation.diagnosis.is_empty() => {
                diagnosis_lines.push(line.to_string())
            }
            Part::SelfCheck | Part::Breakthrough => {
                let text = item.map_or(line.to_string(), |b| join_label(&b));
                push_or_continue_text(&mut card.self_check, raw, text);
            }
            Part::Outward => push_or_continue(&mut card.outward, raw, item, line),
            Part::Now | Part::Actions => push_or_continue(&mut card.actions_now, raw, item, line),
            Part::Later => push_or_continue(&mut card.actions_later, raw, item, line),
            Part::Sources => {
                let text = item.map_or(line.to_string(), |b| join_label(&b));
                if let Some(source) = parse_source(&text) {
                    card.sources.push(source);
                }
            }
            _ => {}
        }
    }

    card.question = question_lines.join(" ").trim().to_string();
    card.situation.diagnosis = diagnosis_lines.join(" ").trim().to_string();
    card
}

fn is_rule(line: &str) -> bool {
    line.len() >= 3 && line.chars().all(|c| c == '-' || c == '*' || c == '_')
}

fn heading(line: &str) -> Option<(usize, &str)> {
    let level = line.chars().take_while(|c| *c == '#').count();
    if level == 0 || level > 6 {
        return None;
    }
    let rest = &line[level..];
    if !rest.starts_with(' ') {
        return None;
    }
    Some((level, rest.trim()))
}

fn classify_heading(heading: &str, current: Part) -> Part {
    let lower = heading.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    if has(&["局势评估", "situation assessment", "assessment"]) {
        Part::Situation
    } else if has(&["自我审视", "ask yourself", "self-check", "self check"]) {
        Part::SelfCheck
    } else if has(&["破局提问", "breakthrough"]) {
        Part::Breakthrough
    } else if has(&["立即行动", "right now", "immediate"]) {
        Part::Now
    } else if has(&["后续策略", "next steps", "follow-up", "follow up", "later"]) {
        Part::Later
    } else if has(&["行动路径", "action plan"]) {
        Part::Actions
    } else if has(&["参考", "sources", "references"]) {
        Part::Sources
    } else if heading.starts_with('💬')
        || matches!(
            current,
            Part::Breakthrough | Part::SelfCheck | Part::Outward
        )
    {
        Part::Outward
    } else {
        Part::Other
    }
}

/// Strips the `[Max-Win-Win Q&A] #002：` prefix of corpus cards and stray markup.
fn clean_title(heading: &str) -> String {
    let mut title = heading.trim();
    if let Some(rest) = title.strip_prefix("[Max-Win-Win Q&A]") {
        title = rest.trim();
        if title.starts_with('#') {
            let end = title
                .find(['：', ':'])
                .map(|i| i + title[i..].chars().next().map_or(1, char::len_utf8))
                .unwrap_or(0);
            title = title[end..].trim();
        }
    }
    title.trim_matches('*').trim().to_string()
}

/// Removes an explanation in brackets after a heading: `💬 客户提问（你可以直接问客户的问题）`.
fn strip_explanation(heading: &str) -> String {
    let cut = heading.find(['（', '(']).unwrap_or(heading.len());
    heading[..cut].trim().to_string()
}

/// Matches `**Label：** text`, `**Label:** text`, `Label：text` for one of `names`.
fn field(line: &str, names: &[&str]) -> Option<(String, String)> {
    let body = strip_bullet_marker(line);
    let (label, text) = split_label(body)?;
    let matched = names.iter().any(|n| label.eq_ignore_ascii_case(n));
    matched.then_some((label, text))
}

#[derive(Debug)]
struct Bullet {
    label: Option<String>,
    text: String,
}

fn strip_bullet_marker(line: &str) -> &str {
    let line = line.trim_start();
    for marker in ["* ", "- ", "• ", "+ ", "·"] {
        if let Some(rest) = line.strip_prefix(marker) {
            return rest.trim_start();
        }
    }
    let digits = line.chars().take_while(|c| c.is_ascii_digit()).count();
    if digits > 0 {
        let rest = &line[digits..];
        if let Some(rest) = rest.strip_prefix(". ").or_else(|| rest.strip_prefix("、")) {
            return rest.trim_start();
        }
    }
    line
}

fn bullet(line: &str) -> Option<Bullet> {
    let body = strip_bullet_marker(line);
    if body.len() == line.trim_start().len() {
        return None;
    }
    Some(match split_label(body) {
        Some((label, text)) => Bullet {
            label: Some(label),
            text,
        },
        None => Bullet {
            label: None,
            text: body.trim_matches('*').trim().to_string(),
        },
    })
}

/// Splits a bold label from its text: `**停止轰炸：** 立即…` → (`停止轰炸`, `立即…`).
/// A plain `Label: text` counts only when the label is short.
fn split_label(body: &str) -> Option<(String, String)> {
    if let Some(rest) = body.strip_prefix("**") {
        let close = rest.find("**")?;
        let inside = &rest[..close];
        let after = rest[close + 2..].trim_start();
        let inside_trimmed = inside.trim_end_matches(['：', ':', ' ']);
        if inside_trimmed.len() < inside.len() {
            return Some((inside_trimmed.trim().to_string(), after.to_string()));
        }
        let after = after.strip_prefix(['：', ':'])?;
        return Some((inside.trim().to_string(), after.trim().to_string()));
    }
    let index = body.find(['：', ':'])?;
    let label = body[..index].trim();
    if label.is_empty() || label.chars().count() > 12 || label.contains(' ') && label.len() > 24 {
        return None;
    }
    let after = &body[index..];
    let sep_len = after.chars().next().map_or(1, char::len_utf8);
    Some((label.to_string(), after[sep_len..].trim().to_string()))
}

fn join_label(bullet: &Bullet) -> String {
    match &bullet.label {
        Some(label) => format!("{label}：{}", bullet.text),
        None => bullet.text.clone(),
    }
}

fn is_continuation(raw: &str) -> bool {
    raw.starts_with("  ") || raw.starts_with('\t')
}

fn push_or_continue(items: &mut Vec<Labelled>, raw: &str, item: Option<Bullet>, line: &str) {
    match item {
        Some(b) if !is_continuation(raw) || items.is_empty() => {
            items.push(Labelled::new(b.label.unwrap_or_default(), b.text))
        }
        Some(b) => items.push(Labelled::new(b.label.unwrap_or_default(), b.text)),
        None => match items.last_mut() {
            Some(last) => {
                last.text.push(' ');
                last.text.push_str(line);
            }
            None => items.push(Labelled::new("", line)),
        },
    }
}

fn push_or_continue_text(items: &mut Vec<String>, raw: &str, text: String) {
    let is_bullet = bullet(raw.trim()).is_some();
    match items.last_mut() {
        Some(last) if !is_bullet && is_continuation(raw) => {
            last.push(' ');
            last.push_str(&text);
        }
        _ => items.push(text),
    }
}

/// Reads `QA_002_… · title`, `QA_002_… 《title》` or a bare id.
fn parse_source(text: &str) -> Option<SourceRef> {
    let text = text.trim().trim_matches('`');
    let id_end = text
        .find(|c: char| {
            c.is_whitespace()
                || matches!(c, '·' | '《' | '（' | '(' | '：' | ':' | '`' | '，' | ',')
        })
        .unwrap_or(text.len());
    let id = text[..id_end].trim_matches(['`', '[', ']']).to_string();
    if id.is_empty() {
        return None;
    }
    let title = text[id_end..]
        .trim_start_matches(|c: char| {
            c.is_whitespace() || matches!(c, '·' | '`' | '：' | ':' | '-' | '—')
        })
        .trim_matches(['《', '》', '(', ')', '（', '）', ' '])
        .to_string();
    Some(SourceRef { id, title })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS_CARD: &str = "# [Max-Win-Win Q&A] #002：如何处理客户的价格顾虑与折扣请求

**问题：**
我正在卖一套 CRM 系统给一家制造业客户。我该怎么回复？

---

## 📊 战略局势评估

*   **局势：** [高风险]
*   **诊断：** 客户已进入价格谈判阶段。

---

## ❓ 关键破局提问

### 🔍 自我审视（你需要先想清楚的问题）

*   你是否量化过价值？
*   竞品具体是哪家？

### 💬 客户提问（你可以直接问客户的问题）

*   **澄清顾虑：** 老板更核心的顾虑是什么？
*   **锚定价值：** 这些能力是否不可或缺？

---

## 🚀 建议行动路径

### 立即行动
*   **微信回复：** 采用认可-澄清-价值引导的话术。

### 后续策略
*   **坚守价格线：** 坚决不主动提折扣。
";

    #[test]
    fn parse_corpus_card_fills_every_part_but_sources() {
        let card = parse_card(CORPUS_CARD, Lang::Zh);
        assert_eq!(card.title, "如何处理客户的价格顾虑与折扣请求");
        assert_eq!(
            card.question,
            "我正在卖一套 CRM 系统给一家制造业客户。我该怎么回复？"
        );
        assert_eq!(card.situation.stage, "高风险");
        assert_eq!(card.situation.diagnosis, "客户已进入价格谈判阶段。");
        assert_eq!(
            card.self_check,
            vec!["你是否量化过价值？", "竞品具体是哪家？"]
        );
        assert_eq!(card.outward_label, "💬 客户提问");
        assert_eq!(card.outward.len(), 2);
        assert_eq!(card.outward[0].label, "澄清顾虑");
        assert_eq!(card.outward[0].text, "老板更核心的顾虑是什么？");
        assert_eq!(card.actions_now[0].label, "微信回复");
        assert_eq!(card.actions_later[0].label, "坚守价格线");
        assert_eq!(card.missing_parts(), vec!["sources"]);
    }

    #[test]
    fn parse_english_card_with_sources() {
        let text = "# Re-engaging a silent prospect

**Question:** The prospect went silent after our proposal.

## 📊 Situation assessment
- **Stage:** [High risk]
- **Diagnosis:** Silence after a proposal usually means
  the proposal missed the real pain.

## ❓ Breakthrough questions
### 🔍 Ask yourself
1. Did the proposal speak to his own KPI?
2. Who else is involved?
### 💬 Ask the client
- **Offer a way back:** Did the team find it too complex?

## 🚀 Action plan
### Right now
- **Stop chasing:** No more daily calls.
### Next steps
- **Flank:** If there is no reply in 48 hours, reach out through another channel.

## Sources
- QA_001_Reactivating_Silent_Client_ZH · How to re-engage a silent client
- `dadingdan-17`
";
        let card = parse_card(text, Lang::En);
        assert!(card.is_complete(), "missing: {:?}", card.missing_parts());
        assert_eq!(card.situation.stage, "High risk");
        assert_eq!(
            card.situation.diagnosis,
            "Silence after a proposal usually means the proposal missed the real pain."
        );
        assert_eq!(card.self_check.len(), 2);
        assert_eq!(card.outward_label, "💬 Ask the client");
        assert_eq!(card.sources[0].id, "QA_001_Reactivating_Silent_Client_ZH");
        assert_eq!(card.sources[0].title, "How to re-engage a silent client");
        assert_eq!(card.sources[1].id, "dadingdan-17");
    }

    #[test]
    fn parse_garbage_gives_empty_card() {
        let card = parse_card("just some words\nwith no structure", Lang::Zh);
        assert!(card.title.is_empty());
        assert!(card.outward.is_empty());
    }

    #[test]
    fn parse_truncated_card_reports_missing_parts() {
        let cut = &CORPUS_CARD[..CORPUS_CARD.find("## 🚀").unwrap()];
        let card = parse_card(cut, Lang::Zh);
        assert!(card.missing_parts().contains(&"actions_now"));
        assert!(card.missing_parts().contains(&"actions_later"));
    }
}
