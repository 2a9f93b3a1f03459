use std::path::Path;

use super::import::{file_name, is_tip, split_for_test};
use super::*;

const EXPORT: &str = "# HEADER\n\n## SECTION: 01_Methodology_Core\n\n### SOURCE: Chapter_X_ZH.md\n# 第一章：标题\n## 第一节\n\n正文一。\n\n### 小节\n内容二。\n\n## SECTION: 03_General_Intuition\n# 从 murong 提取的销售智慧语料\n\n### 提取记录 1\n\n#以前写的# 这是一条足够长的帖子，用来检查标签行不会被当成标题，而且它以句号结尾，所以能当每日提示。\n\n---\n\n### 提取记录 2\n\n被截断的帖子\n...(Truncated for efficiency)\n\n## SECTION: 05_Classic_Theories\n# 经典理论\n\n理论正文。\n\n## SECTION: 06_Real_Cases\n\n### SOURCE: 001-美丽工厂报价.md\n好的。\n\n**文章标题：【案例】报价单**\n\n正文。\n";

#[test]
fn split_export_finds_every_document() {
    let docs = split_for_test(EXPORT);
    let ids: Vec<&str> = docs.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "Chapter_X_ZH",
            "murong-1",
            "murong-2",
            "05_Classic_Theories",
            "001-美丽工厂报价"
        ]
    );
    assert_eq!(docs[0].1, DocKind::Methodology);
    assert_eq!(docs[1].1, DocKind::Post);
    assert_eq!(docs[3].1, DocKind::Theory);
    assert_eq!(docs[4].1, DocKind::Case);
    assert!(docs[1].2.starts_with("#以前写的#"));
    assert!(
        !docs[1].2.ends_with("---"),
        "post keeps its separator: {:?}",
        docs[1].2
    );
    assert!(docs[2].2.ends_with("...(Truncated for efficiency)"));
    assert_eq!(docs[3].2, "# 经典理论\n\n理论正文。");
}

#[test]
fn tip_rules() {
    let docs = split_for_test(EXPORT);
    assert!(is_tip(DocKind::Post, &docs[1].2));
    assert!(!is_tip(DocKind::Post, &docs[2].2), "truncated post");
    assert!(!is_tip(
        DocKind::Post,
        "# 微博内容 (大订单系列) - 总计 135 条"
    ));
    assert!(!is_tip(DocKind::Post, "太短了。"));
    assert!(!is_tip(
        DocKind::Post,
        "这条帖子在句子中间被平台截断了，所以它没有结尾的标点符号，读起来不完整也不能单独成为一条提示"
    ));
    assert!(!is_tip(DocKind::Methodology, &docs[1].2));
}

#[test]
fn import_writes_files_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export.txt");
    std::fs::write(&export, EXPORT).unwrap();
    let out = dir.path().join("corpus");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("scenarios.toml"),
        "[\"murong-1\"]\nzh = [\"客户已读不回\"]\nen = [\"client ghosted me\"]\n[nope]\nzh = [\"x\"]\n",
    )
    .unwrap();

    let first = import_export(&export, &out).unwrap();
    assert_eq!(first.documents, 5);
    assert_eq!(first.written, 5);
    assert_eq!(first.tips, 1);
    assert_eq!(first.unknown_scenario_ids, ["nope"]);
    let path = out.join("001-美丽工厂报价.md");
    let before = std::fs::read(&path).unwrap();
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();

    let second = import_export(&export, &out).unwrap();
    assert_eq!(second.written, 0);
    assert_eq!(second.unchanged, 5);
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        modified
    );

    let (corpus, warnings) = Corpus::load_dir(&out).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let case = corpus.get("001-美丽工厂报价").unwrap();
    assert_eq!(case.title, "【案例】报价单");
    assert_eq!(
        case.body,
        "好的。\n\n**文章标题：【案例】报价单**\n\n正文。"
    );
    let post = corpus.get("murong-1").unwrap();
    assert!(post.tip);
    assert_eq!(post.scenarios, ["客户已读不回", "client ghosted me"]);
    assert_eq!(corpus.get("Chapter_X_ZH").unwrap().title, "第一章：标题");
    assert_eq!(corpus.get("Chapter_X_ZH").unwrap().lang, Lang::Zh);
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn load_dir_skips_malformed_files_with_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let good = "---\nid: good\nkind: post\nlang: zh\ntitle: \"好\"\ntip: false\n---\n\n正文\n";
    write(dir.path(), "a_good.md", good);
    write(dir.path(), "b_no_front_matter.md", "# 只是标题\n正文\n");
    write(
        dir.path(),
        "c_unknown_kind.md",
        "---\nid: c\nkind: blog\n---\n正文\n",
    );
    write(dir.path(), "d_duplicate.md", good);
    write(dir.path(), "e_unclosed.md", "---\nid: e\nkind: post\n");
    write(
        dir.path(),
        "f_bad_tip.md",
        "---\nid: f\nkind: post\ntip: yes\n---\n正文\n",
    );
    write(
        dir.path(),
        "g_missing_id.md",
        "---\nkind: post\n---\n正文\n",
    );
    write(dir.path(), "notes.txt", "not markdown");
    std::fs::create_dir(dir.path().join("extra")).unwrap();
    write(
        &dir.path().join("extra"),
        "own.md",
        "---\nid: own\nkind: case\n---\n# Own case\n\nText about a deal.\n",
    );

    let (corpus, warnings) = Corpus::load_dir(dir.path()).unwrap();
    let ids: Vec<&str> = corpus.documents.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["good", "own"]);
    let own = corpus.get("own").unwrap();
    assert_eq!(own.title, "Own case");
    assert_eq!(own.lang, Lang::En);

    let found: Vec<(String, usize)> = warnings
        .iter()
        .map(|w| {
            (
                w.path.file_name().unwrap().to_string_lossy().into_owned(),
                w.line,
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("b_no_front_matter.md".to_string(), 1),
            ("c_unknown_kind.md".to_string(), 3),
            ("d_duplicate.md".to_string(), 2),
            ("e_unclosed.md".to_string(), 1),
            ("f_bad_tip.md".to_string(), 4),
            ("g_missing_id.md".to_string(), 1),
        ]
    );
    assert!(warnings[2].message.contains("duplicate id"));
    assert!(warnings[1].message.contains("unknown kind"));
}

#[test]
fn load_dir_rejects_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    assert!(matches!(
        Corpus::load_dir(&missing),
        Err(CorpusError::NotADirectory(_))
    ));
}

#[test]
fn passages_split_at_headings() {
    let document = Document {
        id: "d".into(),
        kind: DocKind::Methodology,
        lang: Lang::Zh,
        title: "T".into(),
        tip: false,
        body: "前言。\n# 第一章\n## 第一节\n\n正文一。\n\n### 小节\n内容二。\n```\n# not a heading\n```\n".into(),
        path: "d.md".into(),
        scenarios: vec![],
    };
    let passages = split_passages(&document);
    let headings: Vec<&str> = passages.iter().map(|p| p.heading.as_str()).collect();
    assert_eq!(headings, ["", "第一章 / 第一节", "小节"]);
    assert!(passages[2].text.contains("# not a heading"));
    assert_eq!(passages[1].ordinal, 1);
    assert!(passages.iter().all(|p| p.doc_id == "d"));
}

#[test]
fn post_is_one_passage_despite_hashtags() {
    let document = Document {
        id: "murong-3".into(),
        kind: DocKind::Post,
        lang: Lang::Zh,
        title: "T".into(),
        tip: false,
        body: "#碎片化的一天# 早上四点起床。\n# 标题也不拆\n后文。".into(),
        path: "m.md".into(),
        scenarios: vec![],
    };
    assert_eq!(split_passages(&document).len(), 1);
}

#[test]
fn file_names_are_safe() {
    assert_eq!(file_name("003-1"), Path::new("003-1.md"));
    assert_eq!(
        file_name("Case_老王上海滩破局_ZH"),
        Path::new("Case_老王上海滩破局_ZH.md")
    );
    assert_eq!(file_name("../etc/passwd"), Path::new("_.._etc_passwd.md"));
    assert_eq!(file_name("a b:c"), Path::new("a_b_c.md"));
}

#[test]
fn detect_lang_by_cjk_share() {
    assert_eq!(detect_lang("客户说我们太贵了 CRM"), Lang::Zh);
    assert_eq!(detect_lang("The client went dark"), Lang::En);
}

#[test]
fn committed_corpus_loads_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let (corpus, warnings) = Corpus::load_dir(&dir).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(corpus.documents.len() >= 871);
    for id in [
        "001-美丽工厂报价",
        "003-1",
        "Case_老王上海滩破局_ZH",
        "dadingdan-1",
        "murong-714",
        "05_Classic_Theories",
    ] {
        assert!(corpus.get(id).is_some(), "missing {id}");
    }
    let posts = corpus
        .documents
        .iter()
        .filter(|d| d.kind == DocKind::Post)
        .count();
    assert_eq!(posts, 833);
    assert!(!corpus.get("dadingdan-1").unwrap().tip);
    assert!(!corpus.get("murong-714").unwrap().tip);
    assert_eq!(
        corpus.get("Case_Cooling_Coating_EN").unwrap().lang,
        Lang::En
    );
}
