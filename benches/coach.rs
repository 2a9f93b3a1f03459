//! CPU cost of the coach's steps that need no LLM, on the real corpus in `corpus/`.
//!
//! - `library_card/{zh,en}`: retrieval plus the library card for one question,
//!   the whole answer when no LLM is configured.
//! - `retriever_build`: the in-memory index of the whole corpus.
//! - `retrieval_search/{zh,en}`: one search.
//! - `wecom_open_parse`: verify, decrypt and parse one signed WeCom app callback.
//!
//! Run with `cargo bench --bench coach`; results and the machine they were measured
//! on are in docs/benchmarks.md. Sample counts are kept small so the whole run
//! takes a few minutes.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use maxwin_channel::{Lang, Secret};
use maxwin_coach::coach::library::library_card;
use maxwin_coach::coach::translations;
use maxwin_coach::corpus::Corpus;
use maxwin_coach::retrieval::{RetrievalSettings, Retriever};
use maxwin_wecom::WecomCrypto;
use maxwin_wecom::xml::{parse_envelope, parse_message};

/// Passages the coach requests by default (`[coach] passages`).
const PASSAGES: usize = 6;

const ZH_QUESTION: &str = "客户说我们的报价比竞争对手贵了百分之二十，采购一直压价，我该怎么回应？";
const EN_QUESTION: &str = "The client says our quote is 20% higher than the competitor and procurement keeps pushing the price down. How should I respond?";

fn load_corpus() -> Arc<Corpus> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let (corpus, _warnings) = Corpus::load_dir(&dir).expect("the corpus folder loads");
    assert!(!corpus.documents.is_empty(), "the corpus has documents");
    Arc::new(corpus)
}

fn bench_coach(c: &mut Criterion) {
    let corpus = load_corpus();
    let settings = RetrievalSettings::default();
    let retriever = Retriever::build(&corpus, &settings).expect("the index builds");
    let translations = translations::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));

    let mut group = c.benchmark_group("library_card");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(5));
    for (name, question, lang) in [("zh", ZH_QUESTION, Lang::Zh), ("en", EN_QUESTION, Lang::En)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let search = retriever.search(black_box(question), PASSAGES);
                library_card(question, lang, &search.hits, &corpus, &translations)
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("retrieval_search");
    group
        .sample_size(50)
        .measurement_time(Duration::from_secs(5));
    for (name, question) in [("zh", ZH_QUESTION), ("en", EN_QUESTION)] {
        group.bench_function(name, |b| {
            b.iter(|| retriever.search(black_box(question), PASSAGES))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("retriever_build");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15));
    group.bench_function("whole_corpus", |b| {
        b.iter(|| Retriever::build(black_box(&corpus), &settings).expect("the index builds"))
    });
    group.finish();
}

fn bench_wecom(c: &mut Criterion) {
    let crypto = WecomCrypto::new(
        &Secret::new("bench-token"),
        &Secret::new("LoadTestEncodingAesKey0123456789abcdefghijk"),
        "ww-bench-corp",
    )
    .expect("the EncodingAESKey is 43 valid characters");
    let inner = "<xml><ToUserName><![CDATA[ww-bench-corp]]></ToUserName>\
        <FromUserName><![CDATA[member-1]]></FromUserName><CreateTime>1700000000</CreateTime>\
        <MsgType><![CDATA[text]]></MsgType><Content><![CDATA[客户说我们太贵了，怎么回？]]></Content>\
        <MsgId>7000000000000000001</MsgId><AgentID>1000002</AgentID></xml>";
    let encrypt = crypto.encrypt(inner);
    let (timestamp, nonce) = ("1700000000", "bench-nonce");
    let signature = crypto.sign(timestamp, nonce, &encrypt);
    let body = format!(
        "<xml><ToUserName><![CDATA[ww-bench-corp]]></ToUserName>\
         <Encrypt><![CDATA[{encrypt}]]></Encrypt><AgentID><![CDATA[1000002]]></AgentID></xml>"
    );

    let mut group = c.benchmark_group("wecom");
    group
        .sample_size(50)
        .measurement_time(Duration::from_secs(3));
    group.bench_function("open_parse", |b| {
        b.iter(|| {
            let envelope = parse_envelope(black_box(&body)).expect("the envelope parses");
            let plain = crypto
                .open(&signature, timestamp, nonce, &envelope.encrypt)
                .expect("the callback verifies");
            parse_message(&plain).expect("the message parses")
        })
    });
    group.finish();
}

criterion_group!(benches, bench_coach, bench_wecom);
criterion_main!(benches);
