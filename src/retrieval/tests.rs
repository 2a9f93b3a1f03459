use std::path::Path;

use super::*;
use crate::corpus::{Corpus, Document};

fn document(id: &str, kind: DocKind, title: &str, body: &str, scenarios: &[&str]) -> Document {
    Document {
        id: id.into(),
        kind,
        lang: crate::corpus::detect_lang(body),
        title: title.into(),
        tip: false,
        body: body.into(),
        path: format!("{id}.md").into(),
        scenarios: scenarios.iter().map(|s| s.to_string()).collect(),
    }
}

fn small_corpus() -> Corpus {
    Corpus {
        documents: vec![
            document(
                "price",
                DocKind::QaCard,
                "如何处理客户的价格顾虑与折扣请求",
                "# 价格\n\n**问题：**\n客户说我们报价太高，比竞品贵。\n\n---\n\n## 诊断\n\n不要急着打折，先证明价值。\n\n## 行动\n\n用投资回报说明价格。",
                &["客户嫌贵", "the client says we are too expensive"],
            ),
            document(
                "silent",
                DocKind::QaCard,
                "如何激活失联的潜在客户",
                "# 失联\n\n**问题：**\n客户突然不回微信。\n\n---\n\n## 行动\n\n停止轰炸，提供新价值。",
                &["客户已读不回", "the prospect ghosted me"],
            ),
            document(
                "dinner",
                DocKind::Post,
                "饭桌上的细节",
                "跟客户老板吃饭，敬酒和点菜都有讲究。",
                &[],
            ),
        ],
    }
}

fn ids(result: &SearchResult) -> Vec<&str> {
    result.hits.iter().map(|hit| hit.doc_id.as_str()).collect()
}

#[test]
fn retriever_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Retriever>();
}

#[test]
fn search_finds_best_document_once() {
    let retriever = Retriever::build(&small_corpus(), &RetrievalSettings::default()).unwrap();
    let result = retriever.search("客户嫌我们价格贵，要不要打折", 5);
    assert_eq!(ids(&result)[0], "price");
    assert!(!result.off_topic);
    let unique: std::collections::HashSet<_> = ids(&result).into_iter().collect();
    assert_eq!(unique.len(), result.hits.len(), "a document appears twice");
    let hit = &result.hits[0];
    assert_eq!(hit.kind, DocKind::QaCard);
    assert_eq!(hit.title, "如何处理客户的价格顾虑与折扣请求");
    assert!(!hit.text.is_empty());
    assert!(hit.score > 0.0);
}

#[test]
fn english_query_reaches_chinese_document() {
    let retriever = Retriever::build(&small_corpus(), &RetrievalSettings::default()).unwrap();
    let result = retriever.search("My client went dark, how do I follow up?", 3);
    assert_eq!(ids(&result).first(), Some(&"silent"));
}

#[test]
fn traditional_and_full_width_queries_match() {
    let retriever = Retriever::build(&small_corpus(), &RetrievalSettings::default()).unwrap();
    let result = retriever.search("客戶嫌貴，要不要打折？！", 3);
    assert_eq!(ids(&result).first(), Some(&"price"));
}

#[test]
fn hard_inputs_never_fail() {
    let retriever = Retriever::build(&small_corpus(), &RetrievalSettings::default()).unwrap();
    let long = "客户说价格太贵了，".repeat(5000);
    let cases = [
        "",
        "   ",
        "title:价格 AND body:(折扣)",
        "[客户] {嫌贵} (打折)",
        "-客户 -价格",
        "\"客户嫌贵\" 'quoted'",
        "！？。，、；：“”（）……——",
        "的 了 吗 the and of",
        "😀🙏🔥 客户 😡",
        "*?~^:\\/",
        "NOT OR AND",
        long.as_str(),
    ];

    for text in cases {
        let result = retriever.search(text, 5);
        assert!(result.hits.len() <= 5, "too many hits for {text:?}");
    }

    assert!(retriever.search("", 5).hits.is_empty());
    assert!(retriever.search("", 5).off_topic);
    assert!(retriever.search("的 了 吗 the and of", 5).hits.is_empty());
    assert!(retriever.search("！？。，、；", 5).off_topic);

    assert_eq!(
        ids(&retriever.search("title:价格 AND body:(折扣)", 5)).first(),
        Some(&"price")
    );
    assert_eq!(
        ids(&retriever.search("-客户 -嫌贵", 5)).first(),
        Some(&"price")
    );
    assert_eq!(
        ids(&retriever.search("😀🙏 客户已读不回 😡", 5)).first(),
        Some(&"silent")
    );
    assert_eq!(ids(&retriever.search(&long, 5)).first(), Some(&"price"));
    assert!(retriever.search("客户嫌贵", 0).hits.is_empty());
}

#[test]
fn off_topic_messages_are_flagged() {
    let retriever = Retriever::build(&small_corpus(), &RetrievalSettings::default()).unwrap();
    assert!(retriever.search("明天杭州下雨吗，要带伞不", 5).off_topic);
    assert!(
        retriever
            .search("help me fix this SQL group by query", 5)
            .off_topic
    );
    assert!(!retriever.search("客户嫌贵怎么回", 5).off_topic);
}

fn write_corpus(dir: &Path, body: &str) {
    let text = format!("---\nid: only\nkind: post\n---\n\n{body}\n");
    std::fs::write(dir.join("only.md"), text).unwrap();
}

#[test]
fn open_or_build_reuses_and_rebuilds() {
    let root = tempfile::tempdir().unwrap();
    let corpus_dir = root.path().join("corpus");
    let index_dir = root.path().join("index");
    std::fs::create_dir(&corpus_dir).unwrap();
    write_corpus(&corpus_dir, "客户嫌贵的时候先讲价值。");
    let settings = RetrievalSettings::default();

    let (corpus, _) = Corpus::load_dir(&corpus_dir).unwrap();
    let first = Retriever::open_or_build(&corpus, &index_dir, &settings).unwrap();
    assert_eq!(ids(&first.search("嫌贵", 5)), ["only"]);
    let fingerprint = std::fs::read_to_string(index_dir.join(FINGERPRINT_FILE)).unwrap();
    drop(first);

    let reopened = Retriever::open_or_build(&corpus, &index_dir, &settings).unwrap();
    assert_eq!(ids(&reopened.search("嫌贵", 5)), ["only"]);
    drop(reopened);

    write_corpus(&corpus_dir, "客户已读不回的时候换个渠道。");
    let (changed, _) = Corpus::load_dir(&corpus_dir).unwrap();
    let rebuilt = Retriever::open_or_build(&changed, &index_dir, &settings).unwrap();
    assert_ne!(
        std::fs::read_to_string(index_dir.join(FINGERPRINT_FILE)).unwrap(),
        fingerprint
    );
    assert!(rebuilt.search("嫌贵", 5).hits.is_empty());
    assert_eq!(ids(&rebuilt.search("已读不回", 5)), ["only"]);
}

#[test]
fn open_or_build_rejects_foreign_directory() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("important.txt"), "keep me").unwrap();
    let result =
        Retriever::open_or_build(&small_corpus(), root.path(), &RetrievalSettings::default());
    assert!(matches!(result, Err(RetrievalError::ForeignDirectory(_))));
    assert!(root.path().join("important.txt").exists());
}
