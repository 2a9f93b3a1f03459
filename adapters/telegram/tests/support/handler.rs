//! A test `Handler`: records what the adapter hands over and answers each message
//! by driving the sink with a scripted reply.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use maxwin_channel::{
    Accepted, Delivered, Feedback, Handler, HandlerError, Inbound, Reply, ReplySink, SinkError,
};
use tokio::sync::mpsc;

/// What the handler does with the sink of each accepted message.
#[derive(Clone)]
pub struct Script {
    pub progress: Vec<String>,
    pub reply: Reply,
}

pub struct TestHandler {
    pub inbound: Mutex<Vec<Inbound>>,
    pub feedback: Mutex<Vec<Feedback>>,
    pub fail_feedback: bool,
    inbound_added: tokio::sync::Notify,
    script: Script,
    delivered_tx: mpsc::UnboundedSender<Result<Delivered, SinkError>>,
    delivered_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Result<Delivered, SinkError>>>,
}

impl TestHandler {
    pub fn new(script: Script) -> Arc<TestHandler> {
        Self::build(script, false)
    }

    pub fn failing_feedback(script: Script) -> Arc<TestHandler> {
        Self::build(script, true)
    }

    fn build(script: Script, fail_feedback: bool) -> Arc<TestHandler> {
        let (delivered_tx, delivered_rx) = mpsc::unbounded_channel();
        Arc::new(TestHandler {
            inbound: Mutex::new(Vec::new()),
            feedback: Mutex::new(Vec::new()),
            fail_feedback,
            inbound_added: tokio::sync::Notify::new(),
            script,
            delivered_tx,
            delivered_rx: tokio::sync::Mutex::new(delivered_rx),
        })
    }

    pub fn inbound(&self) -> Vec<Inbound> {
        self.inbound.lock().unwrap().clone()
    }

    pub fn feedback(&self) -> Vec<Feedback> {
        self.feedback.lock().unwrap().clone()
    }

    /// Waits until the handler has accepted `count` messages.
    pub async fn wait_for_inbound(&self, count: usize) {
        let wait = async {
            loop {
                let added = self.inbound_added.notified();
                if self.inbound().len() >= count {
                    return;
                }
                added.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "expected {count} inbound messages, got {:?}",
                    self.inbound()
                )
            });
    }

    /// Waits for the next answer the handler finished.
    pub async fn next_delivery(&self) -> Result<Delivered, SinkError> {
        let mut rx = self.delivered_rx.lock().await;
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("no answer was delivered within 10 s")
            .expect("delivery channel closed")
    }
}

/// Drives a sink the way the coach does: start, cumulative previews, finish.
pub async fn drive(sink: &mut dyn ReplySink, script: &Script) -> Result<Delivered, SinkError> {
    sink.start().await?;
    for text in &script.progress {
        // The coach ignores preview failures and still finishes.
        let _ = sink.progress(text).await;
    }
    sink.finish(&script.reply).await
}

#[async_trait]
impl Handler for TestHandler {
    async fn accept(
        &self,
        message: Inbound,
        mut sink: Box<dyn ReplySink>,
    ) -> Result<Accepted, HandlerError> {
        self.inbound.lock().unwrap().push(message);
        self.inbound_added.notify_waiters();
        let script = self.script.clone();
        let tx = self.delivered_tx.clone();
        tokio::spawn(async move {
            let result = drive(sink.as_mut(), &script).await;
            let _ = tx.send(result);
        });
        Ok(Accepted::Queued)
    }

    async fn feedback(&self, feedback: Feedback) -> Result<(), HandlerError> {
        self.feedback.lock().unwrap().push(feedback);
        if self.fail_feedback {
            return Err(HandlerError("database is down".to_string()));
        }
        Ok(())
    }
}
