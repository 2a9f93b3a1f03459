//! Benchmarks of corpus import, index build and retrieval, on the committed
//! corpus and on a synthetic corpus 100 times its size.
//!
//! Run with `cargo bench -p maxwin-coach --bench retrieval`. The import bench
//! needs the original export; set `MAXWIN_EXPORT` to its path (it is skipped
//! otherwise). Besides criterion's timings, the 100x part prints index size,
//! build time and query latency percentiles to standard error.

use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use maxwin_coach::corpus::{Corpus, Document, import_export};
use maxwin_coach::retrieval::{RetrievalSettings, Retriever};

/// Sample messages in the style sellers write, Chinese, English and mixed.
const QUERIES: &[&str] = &[
    "客户说我们比竞品贵了三成，要不要申请折扣",
    "方案发过去一周客户就不回微信了",
    "对接人一直拦着不让我见他们老板",
    "The prospect went silent after our demo, how do I follow up?",
    "pipeline 很满但是没有一个签单的",
    "第一次跟客户老板吃饭要注意什么",
    "竞争对手免费给客户用半年，我们怎么打",
    "Our platform went down during the client's launch, how do we apologise?",
    "老板不愿意给这个大客户投入资源",
    "客户暗示要回扣怎么处理",
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn load_corpus() -> Corpus {
    Corpus::load_dir(&corpus_dir())
        .expect("the committed corpus loads")
        .0
}

/// Builds a corpus `factor` times larger: copy `n` of each document gets a
/// new id and its sentences rotated by `n`, so copies differ but keep the
/// vocabulary and length of the original.
fn synthetic_corpus(base: &Corpus, factor: usize) -> Corpus {
    let mut documents = Vec::with_capacity(base.documents.len() * factor);
    for copy in 0..factor {
        for document in &base.documents {
            let sentences: Vec<&str> = document.body.split_inclusive('。').collect();
            let shift = copy % sentences.len().max(1);
            let body: String = sentences[shift..]
                .iter()
                .chain(&sentences[..shift])
                .copied()
                .collect();
            documents.push(Document {
                id: format!("{}~{copy}", document.id),
                body,
                ..document.clone()
            });
        }
    }
    Corpus { documents }
}

fn percentiles(mut millis: Vec<f64>) -> (f64, f64) {
    millis.sort_by(f64::total_cmp);
    let at = |fraction: f64| {
        let rank = ((millis.len() as f64 * fraction).ceil() as usize).clamp(1, millis.len());
        millis[rank - 1]
    };
    (at(0.5), at(0.99))
}

fn query_latency(retriever: &Retriever, rounds: usize) -> (f64, f64) {
    let mut millis = Vec::new();
    for _ in 0..rounds {
        for query in QUERIES {
            let started = Instant::now();
            std::hint::black_box(retriever.search(query, 5));
            millis.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    percentiles(millis)
}

fn directory_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| entry.metadata().ok())
                .map(|meta| meta.len())
                .sum()
        })
        .unwrap_or(0)
}

fn bench_import(c: &mut Criterion) {
    let Some(export) = std::env::var_os("MAXWIN_EXPORT").map(PathBuf::from) else {
        eprintln!("import bench skipped: set MAXWIN_EXPORT to the export file");
        return;
    };
    let out = tempfile::tempdir().expect("temporary folder");
    c.bench_function("import_first_run", |b| {
        b.iter(|| {
            for entry in std::fs::read_dir(out.path()).unwrap() {
                std::fs::remove_file(entry.unwrap().path()).unwrap();
            }
            import_export(&export, out.path()).unwrap()
        })
    });
    c.bench_function("import_unchanged", |b| {
        b.iter(|| import_export(&export, out.path()).unwrap())
    });
}

fn bench_corpus(c: &mut Criterion) {
    let corpus = load_corpus();
    let settings = RetrievalSettings::default();
    // Warm the analyser's dictionaries so the build bench measures indexing.
    Retriever::build(
        &Corpus {
            documents: corpus.documents[..1].to_vec(),
        },
        &settings,
    )
    .unwrap();

    c.bench_function("load_corpus_dir", |b| b.iter(load_corpus));
    let mut group = c.benchmark_group("index");
    group.sample_size(10);
    group.bench_function("build_in_ram", |b| {
        b.iter(|| Retriever::build(&corpus, &settings).unwrap())
    });
    group.finish();

    let retriever = Retriever::build(&corpus, &settings).unwrap();
    c.bench_function("search_one_message", |b| {
        b.iter(|| retriever.search(QUERIES[0], 5))
    });
    c.bench_function("search_ten_messages", |b| {
        b.iter(|| {
            for query in QUERIES {
                std::hint::black_box(retriever.search(query, 5));
            }
        })
    });
    let (p50, p99) = query_latency(&retriever, 50);
    eprintln!(
        "corpus x1: {} passages, query p50 {p50:.3} ms, p99 {p99:.3} ms",
        retriever.passage_count()
    );
}

fn bench_synthetic(c: &mut Criterion) {
    const FACTOR: usize = 100;
    let corpus = synthetic_corpus(&load_corpus(), FACTOR);
    let dir = tempfile::tempdir().expect("temporary folder");
    let index_dir = dir.path().join("index");
    let started = Instant::now();
    let retriever =
        Retriever::open_or_build(&corpus, &index_dir, &RetrievalSettings::default()).unwrap();
    let build = started.elapsed();
    let (p50, p99) = query_latency(&retriever, 10);
    eprintln!(
        "corpus x{FACTOR}: {} documents, {} passages, on-disk build {:.2} s, index {:.1} MiB, query p50 {p50:.3} ms, p99 {p99:.3} ms",
        corpus.documents.len(),
        retriever.passage_count(),
        build.as_secs_f64(),
        directory_size(&index_dir) as f64 / (1024.0 * 1024.0),
    );
    c.bench_function("search_one_message_x100", |b| {
        b.iter(|| retriever.search(QUERIES[0], 5))
    });
}

criterion_group!(benches, bench_import, bench_corpus, bench_synthetic);
criterion_main!(benches);
