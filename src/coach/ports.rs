//! Connects the coach and the store to the daemon's router.

use std::sync::Arc;

use async_trait::async_trait;
use maxwin_channel::{Feedback, Inbound, ReplySink};

use super::{Coach, CoachError};
use crate::server::{EventLedger, LedgerError, Responder, ResponderError, ResponseInfo};
use crate::store::Store;

#[async_trait]
impl Responder for Coach {
    async fn respond(
        &self,
        msg: &Inbound,
        sink: &mut dyn ReplySink,
    ) -> Result<ResponseInfo, ResponderError> {
        match self.handle(msg, sink).await {
            Ok(outcome) => Ok(ResponseInfo {
                kind: outcome.kind,
                llm_ms: outcome.llm_ms,
                prompt_tokens: outcome.prompt_tokens,
                completion_tokens: outcome.completion_tokens,
            }),
            Err(CoachError::Delivery(error)) => Err(ResponderError::Sink(error)),
        }
    }

    async fn feedback(&self, fb: &Feedback) -> Result<bool, ResponderError> {
        Coach::feedback(self, fb)
            .await
            .map_err(|e| ResponderError::Storage(Box::new(e)))
    }
}

/// The store as the router's dedupe ledger.
pub struct StoreLedger(pub Arc<dyn Store>);

#[async_trait]
impl EventLedger for StoreLedger {
    async fn claim_event(&self, key: &str) -> Result<bool, LedgerError> {
        self.0.claim_event(key).await.map_err(LedgerError::new)
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        self.0.ping().await.map_err(LedgerError::new)
    }
}
