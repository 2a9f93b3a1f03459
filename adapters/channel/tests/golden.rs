//! Golden-file tests for the plain text and Markdown renderings of a card.
//!
//! Run with `UPDATE_GOLDEN=1` to rewrite the files after an intended change, then
//! review the diff.

use std::path::PathBuf;

use maxwin_channel::render::{to_markdown, to_text};
use maxwin_channel::{Card, CardOrigin, Labelled, Lang, Situation, SourceRef};

fn zh_card() -> Card {
    Card {
        lang: Lang::Zh,
        origin: CardOrigin::Tailored,
        title: "价格异议：比竞品贵 30%，老板批不下来".into(),
        question: "客户的 IT 经理认可功能，但说我们比竞品贵 30%，老板批不下来。要不要申请折扣？"
            .into(),
        situation: Situation {
            stage: "高风险".into(),
            diagnosis:
                "这是典型的价格烟雾弹：价值没有传递到老板层面，此时让步等于承认产品只值这个价。"
                    .into(),
        },
        self_check: vec![
            "你是否把价值量化成老板看得懂的数字？".into(),
            "竞品具体是哪家？差异对客户意味着什么？".into(),
        ],
        outward_label: String::new(),
        outward: vec![
            Labelled::new("澄清顾虑", "老板更在意的是投资回报不清，还是预算上限？"),
            Labelled::new(
                "提议升级",
                "能否安排 15 分钟，由我向老板展示三年 TCO 对比？",
            ),
        ],
        actions_now: vec![Labelled::new("微信回复", "先认可，再澄清，不主动提折扣。")],
        actions_later: vec![Labelled::new(
            "坚守价格线",
            "如果 48 小时内没有约到老板，请 IT 经理转交一页价值摘要。",
        )],
        sources: vec![SourceRef {
            id: "QA_002_Handling_Price_Objections_ZH".into(),
            title: "如何处理客户的价格顾虑与折扣请求".into(),
        }],
    }
}

fn en_library_card() -> Card {
    Card {
        lang: Lang::En,
        origin: CardOrigin::Library,
        title: "Re-engaging a prospect who went silent".into(),
        question: "The prospect went silent after our proposal. What now?".into(),
        situation: Situation {
            stage: "[High risk]".into(),
            diagnosis: "Silence after a proposal usually means it missed the contact's own goals."
                .into(),
        },
        self_check: vec!["Did the proposal speak to his KPI?".into()],
        outward_label: "💬 Ask the client".into(),
        outward: vec![Labelled::new(
            "Offer a way back",
            "Did the team find the proposal too complex, or not enough?",
        )],
        actions_now: vec![Labelled::new(
            "Stop chasing",
            "No more daily calls & messages.",
        )],
        actions_later: vec![Labelled::new(
            "Set a stop-loss",
            "If there is no reply within 48 hours, try one other channel.",
        )],
        sources: vec![SourceRef {
            id: "QA_001_Reactivating_Silent_Client_ZH".into(),
            title: String::new(),
        }],
    }
}

fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run with UPDATE_GOLDEN=1",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "rendering differs from {}",
        path.display()
    );
}

#[test]
fn zh_card_text() {
    check("zh_card.txt", &to_text(&zh_card()));
}

#[test]
fn zh_card_markdown() {
    check("zh_card.md", &to_markdown(&zh_card()));
}

#[test]
fn en_library_card_text() {
    check("en_library_card.txt", &to_text(&en_library_card()));
}

#[test]
fn en_library_card_markdown() {
    check("en_library_card.md", &to_markdown(&en_library_card()));
}

#[test]
fn card_json_round_trip() {
    let card = zh_card();
    let json = serde_json::to_string(&card).unwrap();
    let back: Card = serde_json::from_str(&json).unwrap();
    assert_eq!(back, card);
    assert!(json.contains("\"lang\":\"zh\""));
    assert!(json.contains("\"origin\":\"tailored\""));
}
