//! Retrieval with the LLM query rewrite and passage embeddings, against the
//! scripted OpenAI-compatible server on 127.0.0.1.

#[path = "support/mock_llm.rs"]
mod mock_llm;

use std::path::Path;
use std::time::Duration;

use maxwin_coach::corpus::{Corpus, DocKind, Document, Lang};
use maxwin_coach::llm::{LlmClient, LlmSettings};
use maxwin_coach::retrieval::{
    EMBEDDINGS_FILE, FeatureStatus, RetrievalSettings, Retriever, SearchResult,
};
use mock_llm::{MockLlm, MockResponse, embeddings_body};

const TARGET: &str = "reactivate-silent";
/// On topic (it names a customer), but shares no word with the target.
const MESSAGE: &str = "那家客户杳无音信，我该怎么办";
/// A restatement that names the target's terms and none of the distractors'.
const REWRITE: &str = "对方失联后如何重新激活｜失联 激活 沉默";
const DEADLINE: Duration = Duration::from_secs(10);

fn post(id: &str, title: &str, body: &str) -> Document {
    Document {
        id: id.into(),
        kind: DocKind::Post,
        lang: Lang::Zh,
        title: title.into(),
        tip: false,
        body: body.into(),
        path: format!("{id}.md").into(),
        scenarios: vec![],
    }
}

/// Documents that share no word with the message or the rewrite.
const FILLERS: usize = 30;
/// The target, the seven distractors that follow it, then the fillers.
const FIRST_FILLER: usize = 8;

/// Builds the target first, then seven distractors about customers that share the
/// message's word `客户`, then unrelated fillers. Each document is one
/// passage, so passage n is document n.
fn corpus() -> Corpus {
    let mut documents = vec![
        post(
            TARGET,
            "激活失联的对方",
            "对方失联以后，不要连续追问。先送一条有用的行业消息，再提一个容易回复的小问题。失联 激活 沉默",
        ),
        post("price", "客户嫌贵", "客户嫌贵时先讲价值，不要急着打折。"),
        post("visit", "拜访客户", "拜访客户前先研究客户的年报。"),
        post("process", "客户流程", "客户的采购流程要问清楚。"),
        post("email", "客户邮件", "给客户写邮件要简短。"),
        post(
            "chain",
            "大客户",
            "大客户的决策链很长，客户内部要找到支持者。",
        ),
        post("complaint", "客户投诉", "客户投诉要当天回应客户。"),
        post(
            "renewal",
            "老客户",
            "老客户续约要提前三个月准备，客户才安心。",
        ),
    ];
    for number in 0..FILLERS {
        let id = format!("filler-{number}");
        documents.push(post(
            &id,
            "园艺笔记",
            &format!("园艺笔记第{number}篇：春天给月季修枝。"),
        ));
    }
    Corpus { documents }
}

fn settings(rewrite: bool, embeddings: bool) -> RetrievalSettings {
    RetrievalSettings {
        rewrite: Some(rewrite),
        embeddings: Some(embeddings),
        ..RetrievalSettings::default()
    }
}

fn client(server: &MockLlm) -> LlmClient {
    let settings = LlmSettings {
        base_url: Some(server.base_url()),
        model: Some("chat-model".into()),
        embedding_model: Some("embed-model".into()),
        embedding_batch_size: 64,
        max_retries: 0,
        ..LlmSettings::default()
    };
    LlmClient::new(&settings).unwrap().unwrap()
}

fn ids(result: &SearchResult) -> Vec<&str> {
    result.hits.iter().map(|hit| hit.doc_id.as_str()).collect()
}

/// One-hot vectors, so passage n is closest to the query `unit(n, dimension)`.
fn unit(position: usize, dimension: usize) -> Vec<f32> {
    let mut vector = vec![0.0; dimension];
    vector[position] = 1.0;
    vector
}

/// Passage vectors as a real model might place them for [`MESSAGE`] = `unit(0)`:
/// the target closest, the fillers loosely related (cosine 0.45) and the
/// distractors unrelated, so only the target and fillers are in the vector top 30.
fn passage_vectors(count: usize) -> Vec<Vec<f32>> {
    (0..count)
        .map(|n| {
            let mut vector = unit(n, count);
            if n >= FIRST_FILLER {
                vector[0] = 0.5;
            }
            vector
        })
        .collect()
}

async fn ready_retriever(server: &MockLlm, dir: &Path, settings: &RetrievalSettings) -> Retriever {
    let retriever = Retriever::open_or_build(&corpus(), dir, settings).unwrap();
    let count = retriever.passage_count();
    server.push(MockResponse::json(
        200,
        embeddings_body(&passage_vectors(count)),
    ));
    retriever.prepare_embeddings(&client(server)).await.unwrap();
    retriever
}

#[test]
fn offline_search_misses_target() {
    let retriever = Retriever::build(&corpus(), &RetrievalSettings::default()).unwrap();
    let offline = retriever.search(MESSAGE, 5);
    assert!(!ids(&offline).contains(&TARGET), "{:?}", ids(&offline));
    assert!(!offline.off_topic);
}

#[tokio::test]
async fn rewrite_fused_finds_target() {
    let server = MockLlm::start(vec![MockResponse::chat_stream(&[REWRITE])]).await;
    let retriever = Retriever::build(&corpus(), &settings(true, false)).unwrap();

    let (result, report) = retriever
        .search_with_llm_report(MESSAGE, 5, &client(&server), DEADLINE)
        .await;

    assert!(ids(&result).contains(&TARGET), "{:?}", ids(&result));
    assert!(!result.off_topic);
    assert_eq!(report.rewrite, FeatureStatus::Used);
    assert_eq!(report.embeddings, FeatureStatus::Off);
    assert_eq!(report.fallback, None);
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/v1/chat/completions");
    assert_eq!(requests[0].json["max_tokens"], 120);
    assert_eq!(requests[0].json["messages"][1]["content"], MESSAGE);
}

#[tokio::test]
async fn rewrite_clears_off_topic_only_for_sales() {
    let message = "老王那边杳无音信，怎么办";
    let server = MockLlm::start(vec![
        MockResponse::chat_stream(&["客户失联后如何跟进｜客户失联 激活 跟进"]),
        MockResponse::chat_stream(&["OFF_TOPIC"]),
    ])
    .await;
    let retriever = Retriever::build(&corpus(), &settings(true, false)).unwrap();
    let llm = client(&server);
    assert!(retriever.search(message, 5).off_topic);

    let (cleared, report) = retriever
        .search_with_llm_report(message, 5, &llm, DEADLINE)
        .await;
    assert!(!cleared.off_topic);
    assert!(report.rewrite_cleared_off_topic);
    assert!(ids(&cleared).contains(&TARGET), "{:?}", ids(&cleared));

    let (kept, report) = retriever
        .search_with_llm_report("明天天气怎么样", 5, &llm, DEADLINE)
        .await;
    assert!(kept.off_topic);
    assert_eq!(report.rewrite, FeatureStatus::OffTopic);
    assert!(!report.rewrite_cleared_off_topic);
}

#[tokio::test]
async fn rewrite_server_error_falls_back() {
    let server = MockLlm::start(vec![MockResponse::error(500, "boom")]).await;
    let retriever = Retriever::build(&corpus(), &settings(true, false)).unwrap();

    let (result, report) = retriever
        .search_with_llm_report(MESSAGE, 5, &client(&server), DEADLINE)
        .await;

    assert_eq!(result, retriever.search(MESSAGE, 5));
    assert_eq!(report.rewrite, FeatureStatus::Failed);
    assert!(report.fallback.is_some());
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn rewrite_empty_answer_falls_back() {
    let server = MockLlm::start(vec![MockResponse::chat_stream(&["  "])]).await;
    let retriever = Retriever::build(&corpus(), &settings(true, false)).unwrap();

    let result = retriever
        .search_with_llm(MESSAGE, 5, &client(&server), DEADLINE)
        .await;

    assert_eq!(result, retriever.search(MESSAGE, 5));
}

#[tokio::test(start_paused = true)]
async fn rewrite_timeout_falls_back_at_deadline() {
    let server = MockLlm::start(vec![
        MockResponse::chat_stream(&[REWRITE]).delay_headers(Duration::from_secs(30)),
    ])
    .await;
    let retriever = Retriever::build(&corpus(), &settings(true, false)).unwrap();
    let deadline = Duration::from_millis(800);

    let started = tokio::time::Instant::now();
    let (result, report) = retriever
        .search_with_llm_report(MESSAGE, 5, &client(&server), deadline)
        .await;

    assert!(started.elapsed() <= deadline + Duration::from_millis(50));
    assert_eq!(result, retriever.search(MESSAGE, 5));
    assert_eq!(report.rewrite, FeatureStatus::Failed);
    assert_eq!(report.fallback.as_deref(), Some("timed out after 800 ms"));
}

#[tokio::test]
async fn embeddings_fused_find_target() {
    let dir = tempfile::tempdir().unwrap();
    let server = MockLlm::start(vec![]).await;
    let retriever = ready_retriever(&server, dir.path(), &settings(false, true)).await;
    let count = retriever.passage_count();
    server.push(MockResponse::json(200, embeddings_body(&[unit(0, count)])));

    let (result, report) = retriever
        .search_with_llm_report(MESSAGE, 5, &client(&server), DEADLINE)
        .await;

    assert!(ids(&result).contains(&TARGET), "{:?}", ids(&result));
    assert_eq!(report.embeddings, FeatureStatus::Used);
    assert_eq!(report.rewrite, FeatureStatus::Off);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].path, "/v1/embeddings");
    assert_eq!(requests[1].json["input"], serde_json::json!([MESSAGE]));
}

#[tokio::test]
async fn embeddings_cache_reused_and_updated() {
    let dir = tempfile::tempdir().unwrap();
    let first = MockLlm::start(vec![]).await;
    let retriever =
        Retriever::open_or_build(&corpus(), dir.path(), &settings(false, true)).unwrap();
    let count = retriever.passage_count();
    first.push(MockResponse::json(
        200,
        embeddings_body(&passage_vectors(count)),
    ));
    let stats = retriever.prepare_embeddings(&client(&first)).await.unwrap();
    assert_eq!((stats.embedded, stats.reused), (count, 0));
    assert_eq!(first.request_count(), 1);
    assert!(dir.path().join(EMBEDDINGS_FILE).exists());

    let second = MockLlm::start(vec![]).await;
    let reopened = Retriever::open_or_build(&corpus(), dir.path(), &settings(false, true)).unwrap();
    let stats = reopened.prepare_embeddings(&client(&second)).await.unwrap();
    assert_eq!((stats.embedded, stats.reused), (0, count));
    assert_eq!(second.request_count(), 0);

    let mut changed = corpus();
    changed.documents[3].body = "客户的采购流程和付款条件都要问清楚。".into();
    let third = MockLlm::start(vec![MockResponse::json(
        200,
        embeddings_body(&[unit(3, count)]),
    )])
    .await;
    let rebuilt = Retriever::open_or_build(&changed, dir.path(), &settings(false, true)).unwrap();
    let stats = rebuilt.prepare_embeddings(&client(&third)).await.unwrap();
    assert_eq!((stats.embedded, stats.reused), (1, count - 1));
    let requests = third.requests();
    assert_eq!(requests.len(), 1);
    let inputs = requests[0].json["input"].as_array().unwrap().clone();
    assert_eq!(inputs.len(), 1);
    assert!(
        inputs[0].as_str().unwrap().contains("付款条件"),
        "{inputs:?}"
    );

    let fourth = MockLlm::start(vec![]).await;
    let again = Retriever::open_or_build(&changed, dir.path(), &settings(false, true)).unwrap();
    let stats = again.prepare_embeddings(&client(&fourth)).await.unwrap();
    assert_eq!(stats.embedded, 0);
    assert_eq!(fourth.request_count(), 0);
}

#[tokio::test]
async fn embeddings_query_error_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = MockLlm::start(vec![]).await;
    let retriever = ready_retriever(&server, dir.path(), &settings(false, true)).await;
    server.push(MockResponse::error(500, "boom"));

    let (result, report) = retriever
        .search_with_llm_report(MESSAGE, 5, &client(&server), DEADLINE)
        .await;

    assert_eq!(result, retriever.search(MESSAGE, 5));
    assert_eq!(report.embeddings, FeatureStatus::Failed);
    assert!(report.fallback.is_some());
}

#[tokio::test]
async fn embeddings_wrong_dimension_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = MockLlm::start(vec![]).await;
    let retriever = ready_retriever(&server, dir.path(), &settings(false, true)).await;
    server.push(MockResponse::json(200, embeddings_body(&[vec![1.0, 0.0]])));

    let result = retriever
        .search_with_llm(MESSAGE, 5, &client(&server), DEADLINE)
        .await;

    assert_eq!(result, retriever.search(MESSAGE, 5));
}

#[tokio::test]
async fn embeddings_build_error_searches_offline() {
    let server = MockLlm::start(vec![MockResponse::error(500, "boom")]).await;
    let retriever = Retriever::build(&corpus(), &settings(false, true)).unwrap();
    let llm = client(&server);

    assert!(retriever.prepare_embeddings(&llm).await.is_err());
    let (result, report) = retriever
        .search_with_llm_report(MESSAGE, 5, &llm, DEADLINE)
        .await;

    assert_eq!(result, retriever.search(MESSAGE, 5));
    assert_eq!(report.embeddings, FeatureStatus::NotReady);
    // A failed build is not retried on every search.
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn features_off_send_no_request() {
    let server = MockLlm::start(vec![MockResponse::chat_stream(&[REWRITE])]).await;
    let retriever = Retriever::build(&corpus(), &RetrievalSettings::default()).unwrap();

    let (result, report) = retriever
        .search_with_llm_report(MESSAGE, 5, &client(&server), DEADLINE)
        .await;

    assert_eq!(result, retriever.search(MESSAGE, 5));
    assert_eq!(report.rewrite, FeatureStatus::Off);
    assert_eq!(report.embeddings, FeatureStatus::Off);
    assert_eq!(server.request_count(), 0);
}

#[tokio::test]
async fn eval_counts_feature_runs() {
    let server = MockLlm::start(vec![
        MockResponse::chat_stream(&[REWRITE]),
        MockResponse::error(500, "boom"),
    ])
    .await;
    let corpus = corpus();
    let retriever = Retriever::build(&corpus, &settings(true, false)).unwrap();
    let case = |qid: &str| maxwin_coach::eval::EvalCase {
        qid: qid.into(),
        lang: None,
        text: MESSAGE.into(),
        relevant: vec![TARGET.into()],
        also: vec![],
        expect: None,
        note: None,
    };
    let cases = [case("fused"), case("fell-back")];

    let (report, summary) = maxwin_coach::eval::evaluate_with_llm(
        &retriever,
        &corpus,
        &cases,
        5,
        "test",
        &client(&server),
        DEADLINE,
    )
    .await;

    assert_eq!(summary.rewrite.used, 1);
    assert_eq!(summary.rewrite.failed, 1);
    assert_eq!(summary.embeddings.off, 2);
    assert_eq!(summary.fallbacks, 1);
    assert!((report.recall_at_5 - 0.5).abs() < 1e-9, "{report:?}");
    assert_eq!(report.misses.len(), 1);
    assert_eq!(report.misses[0].qid, "fell-back");
}

#[tokio::test(start_paused = true)]
async fn embeddings_built_in_background() {
    let server = MockLlm::start(vec![]).await;
    let retriever = Retriever::build(&corpus(), &settings(false, true)).unwrap();
    let count = retriever.passage_count();
    server.push(MockResponse::json(
        200,
        embeddings_body(&passage_vectors(count)),
    ));
    server.push(MockResponse::json(200, embeddings_body(&[unit(0, count)])));
    let llm = client(&server);

    let (first, report) = retriever
        .search_with_llm_report(MESSAGE, 5, &llm, DEADLINE)
        .await;
    assert_eq!(first, retriever.search(MESSAGE, 5));
    assert_eq!(report.embeddings, FeatureStatus::NotReady);

    let mut ready = None;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let (result, report) = retriever
            .search_with_llm_report(MESSAGE, 5, &llm, DEADLINE)
            .await;
        if report.embeddings != FeatureStatus::NotReady {
            ready = Some((result, report));
            break;
        }
    }
    let (result, report) = ready.expect("the background build finished");
    assert_eq!(report.embeddings, FeatureStatus::Used);
    assert!(ids(&result).contains(&TARGET), "{:?}", ids(&result));
    assert_eq!(server.request_count(), 2);
}
