//! The group webhook robot against the mock API, with paused time.

mod support;

use std::time::Duration;

use maxwin_channel::Secret;
use maxwin_wecom::webhook::{WEBHOOK_PER_MINUTE, WebhookRobot};
use support::start_mock_api;

#[tokio::test(start_paused = true)]
async fn webhook_paces_under_twenty_per_minute() {
    let (base, mock) = start_mock_api().await;
    let robot = WebhookRobot::with_options(&base, Secret::new("robot-key"), WEBHOOK_PER_MINUTE, 0);
    let start = tokio::time::Instant::now();
    for i in 0..25 {
        robot.send_text(&format!("tip {i}")).await.unwrap();
    }
    let calls = mock.calls_to("/cgi-bin/webhook/send");
    assert_eq!(calls.len(), 25);
    assert!(start.elapsed() >= Duration::from_secs(60));
    assert_eq!(calls[0].query["key"], "robot-key");
    assert_eq!(calls[0].body["msgtype"], "text");
}

#[tokio::test]
async fn webhook_markdown_splits_by_bytes() {
    let (base, mock) = start_mock_api().await;
    let robot = WebhookRobot::with_options(&base, Secret::new("k"), WEBHOOK_PER_MINUTE, 0);
    let markdown: String = (0..300)
        .map(|i| format!("**第{i}条** 每日提示\n"))
        .collect();
    assert!(markdown.len() > 4096);
    let parts = robot.send_markdown(&markdown).await.unwrap();
    let calls = mock.calls_to("/cgi-bin/webhook/send");
    assert_eq!(calls.len(), parts);
    assert!(parts >= 2);
    for call in &calls {
        assert_eq!(call.body["msgtype"], "markdown");
        assert!(call.body["markdown"]["content"].as_str().unwrap().len() <= 4096);
    }
}
