//! `POST {base_url}/embeddings`, batched, with the chat retry policy.

use serde::Deserialize;
use serde_json::json;
use tokio::time::{Instant, sleep, timeout_at};
use tracing::{Instrument, info_span, warn};

use super::client::{Failure, LlmClient, Provider, Retry, transport_failure};
use super::error::{LlmError, TimeoutKind};

#[derive(Debug, Deserialize)]
struct EmbeddingResponse {
    data: Vec<EmbeddingWire>,
}

#[derive(Debug, Deserialize)]
struct EmbeddingWire {
    index: usize,
    embedding: Vec<f32>,
}

impl LlmClient {
    /// Returns one embedding vector per input, in input order, using
    /// `llm.embedding_model` on the primary provider.
    ///
    /// Inputs are sent in batches of `llm.embedding_batch_size`. The fallback
    /// provider is never used, because vectors of different models cannot be
    /// compared with each other.
    pub async fn embed(&self, inputs: &[String]) -> Result<Vec<Vec<f32>>, LlmError> {
        let provider = self.primary();
        let Some(model) = provider.config.embedding_model.as_deref() else {
            return Err(LlmError::EmbeddingsNotConfigured);
        };
        let span = info_span!(
            "llm_embed",
            provider = %provider.config.name,
            model = %model,
            inputs = inputs.len()
        );

        async {
            let mut vectors = Vec::with_capacity(inputs.len());
            for batch in inputs.chunks(provider.config.embedding_batch_size) {
                vectors.extend(provider.embed_batch(model, batch).await?);
            }
            Ok(vectors)
        }
        .instrument(span)
        .await
    }
}

impl Provider {
    async fn embed_batch(&self, model: &str, batch: &[String]) -> Result<Vec<Vec<f32>>, LlmError> {
        let deadline = Instant::now() + self.config.total_timeout;
        let mut retries = 0;

        loop {
            let failure = match self.embed_attempt(model, batch, deadline).await {
                Ok(vectors) => return Ok(vectors),
                Err(failure) => failure,
            };
            let Some(delay) = self.retry_delay(&failure, retries, deadline) else {
                warn!(error = %failure.error, "LLM embeddings request failed");
                return Err(failure.error);
            };
            warn!(
                delay_ms = delay.as_millis() as u64,
                error = %failure.error,
                "LLM embeddings request failed; retrying"
            );
            sleep(delay).await;
            if failure.retry == Retry::Backoff {
                retries += 1;
            }
        }
    }

    async fn embed_attempt(
        &self,
        model: &str,
        batch: &[String],
        deadline: Instant,
    ) -> Result<Vec<Vec<f32>>, Failure> {
        let body = json!({ "model": model, "input": batch });
        let response = match timeout_at(
            deadline,
            self.post(&self.config.embeddings_url, &body).send(),
        )
        .await
        {
            Err(_) => return Err(timeout_failure()),
            Ok(Err(error)) => return Err(transport_failure(error)),
            Ok(Ok(response)) => response,
        };
        if !response.status().is_success() {
            return Err(self.status_failure(response, false, deadline).await);
        }

        let bytes = match timeout_at(deadline, response.bytes()).await {
            Err(_) => return Err(timeout_failure()),
            Ok(Err(error)) => return Err(transport_failure(error)),
            Ok(Ok(bytes)) => bytes,
        };
        let mut parsed: EmbeddingResponse =
            serde_json::from_slice(&bytes).map_err(|error| Failure {
                error: LlmError::InvalidResponse(format!(
                    "embeddings response is not valid: {error}"
                )),
                retry: Retry::Never,
                retry_after: None,
            })?;

        parsed.data.sort_by_key(|item| item.index);
        let in_order = parsed
            .data
            .iter()
            .enumerate()
            .all(|(position, item)| item.index == position);
        if parsed.data.len() != batch.len() || !in_order {
            return Err(Failure {
                error: LlmError::InvalidResponse(format!(
                    "embeddings response has {} vectors for {} inputs",
                    parsed.data.len(),
                    batch.len()
                )),
                retry: Retry::Never,
                retry_after: None,
            });
        }
        Ok(parsed.data.into_iter().map(|item| item.embedding).collect())
    }
}

fn timeout_failure() -> Failure {
    Failure {
        error: LlmError::Timeout(TimeoutKind::Total),
        retry: Retry::Never,
        retry_after: None,
    }
}
