//! A small blocking client for a provider's connector: it signs and sends usage and utilization
//! batches and reads the orders placed at the provider. One attempt per call; the error says
//! whether trying the same batch again can help ([`ClientError::is_retryable`]), and a retried
//! batch is safe: the server answers a record it already has `exists` with its first figures.

use ed25519_dalek::SigningKey;
use serde::de::DeserializeOwned;
use suanli_domain::{OrderId, ProviderId};

use crate::batch::{
    SampleResult, UsageAnswer, UsageBatch, UsageInput, UsageRecord, UtilizationAnswer, UtilizationBatch,
    UtilizationInput, UtilizationSample,
};
use crate::signing::{SIGNATURE_HEADER, sign, usage_signing_bytes, utilization_signing_bytes};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused the request (4xx): sending it again changes nothing.
    #[error("{status} {code}: {message}")]
    Refused { status: u16, code: String, message: String },
    /// The server could not take it now (429, 5xx): try again later, after `retry_after_s` when
    /// the server said.
    #[error("{status}: the server cannot take it now ({message})")]
    Unavailable { status: u16, retry_after_s: Option<u64>, message: String },
    /// No answer: the server could not be reached or the connection broke.
    #[error("no answer from the server: {0}")]
    Transport(String),
    /// An answer that is not the documented JSON.
    #[error("an answer that is not the documented JSON: {0}")]
    Malformed(String),
}

impl ClientError {
    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ClientError::Unavailable { .. } | ClientError::Transport(_))
    }
}

/// Calls `call` until it succeeds, fails for good, or has been tried `attempts` times, waiting
/// between tries what the server's Retry-After says or 1 s, 2 s, 4 s … (at most 60 s). `waiting`
/// hears each error that is tried again, with the seconds to wait and the attempt to come.
pub fn retry<T>(
    attempts: u32,
    mut call: impl FnMut() -> Result<T, ClientError>,
    mut waiting: impl FnMut(&ClientError, u64, u32),
) -> Result<T, ClientError> {
    let mut attempt = 1;
    loop {
        match call() {
            Err(error) if error.is_retryable() && attempt < attempts => {
                let wait = match &error {
                    ClientError::Unavailable { retry_after_s: Some(s), .. } => (*s).min(60),
                    _ => (1u64 << (attempt - 1).min(6)).min(60),
                };
                waiting(&error, wait, attempt + 1);
                std::thread::sleep(std::time::Duration::from_secs(wait));
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A connection to a Suanli server as one provider's machine token.
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Client {
    /// `base` is the server's address (`http://127.0.0.1:8640`); `token` a provider's machine
    /// token (`suanli token issue --role provider:prv-N`).
    pub fn new(base: &str, token: &str) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .build()
            .into();
        Client { base: base.trim_end_matches('/').to_owned(), token: token.to_owned(), agent }
    }

    /// Signs `records` with `key` and sends them as `provider`'s usage: one result per record.
    pub fn send_usage(
        &self,
        provider: ProviderId,
        key: &SigningKey,
        records: &[UsageInput],
    ) -> Result<Vec<crate::UsageResult>, ClientError> {
        let batch = UsageBatch { records: records.iter().map(UsageRecord::of).collect() };
        let signature = sign(key, &usage_signing_bytes(provider, records));
        let answer: UsageAnswer = self.post(&format!("/api/v1/providers/{provider}/usage"), &batch, &signature)?;
        Ok(answer.results)
    }

    /// Signs `samples` with `key` and sends them as `provider`'s utilization telemetry.
    pub fn send_utilization(
        &self,
        provider: ProviderId,
        key: &SigningKey,
        samples: &[UtilizationInput],
    ) -> Result<Vec<SampleResult>, ClientError> {
        let batch = UtilizationBatch { samples: samples.iter().map(UtilizationSample::of).collect() };
        let signature = sign(key, &utilization_signing_bytes(provider, samples));
        let answer: UtilizationAnswer =
            self.post(&format!("/api/v1/providers/{provider}/utilization"), &batch, &signature)?;
        Ok(answer.results)
    }

    /// A page of the orders the token may see (a provider's: those placed at it), as the API
    /// answers `GET /api/v1/orders` (`items`, `total`, `limit`, `offset`). `query` is added to
    /// the path as it is (`state=running&limit=100`).
    pub fn orders(&self, query: &str) -> Result<serde_json::Value, ClientError> {
        self.get(&if query.is_empty() { "/api/v1/orders".to_owned() } else { format!("/api/v1/orders?{query}") })
    }

    /// One order as `GET /api/v1/orders/{order}` answers it.
    pub fn order(&self, order: OrderId) -> Result<serde_json::Value, ClientError> {
        self.get(&format!("/api/v1/orders/{order}"))
    }

    /// `POST /api/v1/orders/{order}/{action}` without a body: `start` (the provider, from when
    /// its usage is taken), `complete` or `cancel`. Answers the order.
    pub fn order_action(&self, order: OrderId, action: &str) -> Result<serde_json::Value, ClientError> {
        let response = self
            .agent
            .post(&format!("{}/api/v1/orders/{order}/{action}", self.base))
            .header("authorization", &format!("Bearer {}", self.token))
            .send_empty()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        answer(response)
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let response = self
            .agent
            .get(&format!("{}{path}", self.base))
            .header("authorization", &format!("Bearer {}", self.token))
            .call()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        answer(response)
    }

    fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
        signature: &str,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_string(body).map_err(|e| ClientError::Malformed(e.to_string()))?;
        let response = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("authorization", &format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, signature)
            .send(body)
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        answer(response)
    }
}

/// The body of a 2xx answer as `T`, or the error the server's documented shape
/// (`{"error": {"code", "message"}}`) describes.
fn answer<T: DeserializeOwned>(mut response: ureq::http::Response<ureq::Body>) -> Result<T, ClientError> {
    let status = response.status().as_u16();
    let retry_after_s =
        response.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    let text = response.body_mut().read_to_string().map_err(|e| ClientError::Transport(e.to_string()))?;
    if (200..300).contains(&status) {
        return serde_json::from_str(&text).map_err(|e| ClientError::Malformed(format!("{e}: {text}")));
    }
    let error: Option<(String, String)> = serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| {
        let error = v.get("error")?;
        Some((error.get("code")?.as_str()?.to_owned(), error.get("message")?.as_str()?.to_owned()))
    });
    let (code, message) = error.unwrap_or_else(|| ("unknown".to_owned(), text.clone()));
    if status == 429 || status >= 500 {
        Err(ClientError::Unavailable { status, retry_after_s, message: format!("{code}: {message}") })
    } else {
        Err(ClientError::Refused { status, code, message })
    }
}
