//! The AI robot long connection against a mock WebSocket server on 127.0.0.1.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use maxwin_channel::{Handler, Secret};
use maxwin_wecom::bot::{BotMode, BotSettings};
use maxwin_wecom::longconn;
use serde_json::{Value, json};
use support::{Answer, RecordingHandler};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

fn settings(url: String) -> BotSettings {
    BotSettings {
        mode: BotMode::LongConnection,
        bot_id: "bot-1".into(),
        secret: Secret::new("bot-secret"),
        ws_url: url,
        names: vec!["销售参谋".into()],
        ..BotSettings::default()
    }
}

fn callback_frame(msgid: &str) -> String {
    json!({
        "cmd": "aibot_msg_callback",
        "headers": {"req_id": format!("req-{msgid}")},
        "body": {
            "msgid": msgid, "aibotid": "aib1", "chatid": "wrgroup1", "chattype": "group",
            "from": {"userid": "lisi"}, "msgtype": "text",
            "text": {"content": "＠销售参谋 客户要求降价"},
        },
    })
    .to_string()
}

/// Serves `connections` WebSocket sessions. Each one acknowledges the subscribe
/// frame, then either drops the socket (when `drop_first` and it is the first)
/// or sends one callback and forwards every later frame to the test.
async fn mock_server(
    connections: usize,
    drop_first: bool,
) -> (String, mpsc::UnboundedReceiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let (frames, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for index in 0..connections {
            let (stream, _) = listener.accept().await.unwrap();
            let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
            let Some(Ok(Message::Text(text))) = socket.next().await else {
                continue;
            };
            let subscribe: Value = serde_json::from_str(text.as_str()).unwrap();
            frames.send(subscribe.clone()).unwrap();
            let ack = json!({"headers": subscribe["headers"], "errcode": 0, "errmsg": "ok"});
            socket.send(Message::text(ack.to_string())).await.unwrap();
            if drop_first && index == 0 {
                drop(socket);
                continue;
            }
            socket
                .send(Message::text(callback_frame("m1")))
                .await
                .unwrap();
            while let Some(Ok(message)) = socket.next().await {
                if let Message::Text(text) = message {
                    frames
                        .send(serde_json::from_str(text.as_str()).unwrap())
                        .unwrap();
                }
            }
        }
    });
    (url, received)
}

/// Returns the frames of one answer, up to and including the one with `finish: true`.
async fn answer_frames(received: &mut mpsc::UnboundedReceiver<Value>) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let frame = next_respond(received).await;
        let finished = frame["body"]["stream"]["finish"] == true;
        frames.push(frame);
        if finished {
            return frames;
        }
    }
}

async fn next_respond(received: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), received.recv())
            .await
            .expect("frame within 10 s")
            .expect("server running");
        if frame["cmd"] == "aibot_respond_msg" {
            return frame;
        }
    }
}

#[tokio::test]
async fn long_connection_streams_answer() {
    let (url, mut received) = mock_server(1, false).await;
    let handler = RecordingHandler::new(
        Duration::from_secs(2),
        Answer::Streamed(
            vec!["先".into(), "先别降价".into()],
            "先别降价，先问预算。".into(),
        ),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let client = tokio::spawn(longconn::run(
        settings(url),
        handler.clone() as Arc<dyn Handler>,
        async {
            let _ = stopped.await;
        },
    ));

    let subscribe = received.recv().await.unwrap();
    assert_eq!(subscribe["cmd"], "aibot_subscribe");
    assert_eq!(subscribe["body"]["bot_id"], "bot-1");
    assert_eq!(subscribe["body"]["secret"], "bot-secret");

    let frames = answer_frames(&mut received).await;
    let contents: Vec<&str> = frames
        .iter()
        .map(|frame| frame["body"]["stream"]["content"].as_str().unwrap())
        .collect();
    assert!(contents.contains(&"先别降价"), "contents {contents:?}");
    let stream_id = frames[0]["body"]["stream"]["id"].clone();
    for frame in &frames {
        assert_eq!(frame["headers"]["req_id"], "req-m1");
        assert_eq!(frame["body"]["stream"]["id"], stream_id);
    }
    assert_eq!(
        frames.last().unwrap()["body"]["stream"]["content"],
        "先别降价，先问预算。"
    );

    let inbound = handler.accepted.lock().unwrap()[0].clone();
    assert_eq!(inbound.text, "客户要求降价");
    assert_eq!(inbound.conversation, "wrgroup1");

    stop.send(()).unwrap();
    assert!(client.await.unwrap().is_ok());
}

#[tokio::test]
async fn long_connection_reconnects_after_drop() {
    let (url, mut received) = mock_server(2, true).await;
    let handler = RecordingHandler::new(Duration::ZERO, Answer::Text("好".into()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let client = tokio::spawn(longconn::run(
        settings(url),
        handler.clone() as Arc<dyn Handler>,
        async {
            let _ = stopped.await;
        },
    ));
    assert_eq!(received.recv().await.unwrap()["cmd"], "aibot_subscribe");
    // The first socket is dropped; the client subscribes again after its backoff.
    let second = tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second["cmd"], "aibot_subscribe");
    let frames = answer_frames(&mut received).await;
    assert_eq!(frames.last().unwrap()["body"]["stream"]["content"], "好");
    stop.send(()).unwrap();
    assert!(client.await.unwrap().is_ok());
}
