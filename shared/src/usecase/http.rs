//! The use cases' HTTP face: the status and body each outcome answers with. The Lambda handlers
//! and `capguard serve` translate their own request and response types to and from these, so
//! both answer Meta and callers the same way.

use serde_json::json;

use super::dispatch::{DispatchRequest, UseCaseOrRequestError, dispatch};
use super::intake::{IntakeError, intake};
use super::{Deps, Tally};
use crate::cloud::CloudApi;
use crate::schedule::RetryScheduler;
use crate::store::SendStore;
use crate::whatsapp::handshake::HandshakeQuery;
use crate::whatsapp::signature::{self, AppSecret};

/// The largest request body taken: Meta documents webhook payloads of up to 3 MB (see
/// docs/architecture.md), and a large send request is of the same order.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// What the use case counted, for metrics.
    pub tally: Tally,
}

impl Reply {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Self { status, content_type: "text/plain; charset=utf-8", body: body.into(), tally: Tally::default() }
    }

    fn json(status: u16, body: serde_json::Value) -> Self {
        Self { status, content_type: "application/json", body: body.to_string(), tally: Tally::default() }
    }
}

/// `GET /webhook`: the bare challenge for a matching subscribe, 403 for anything else.
pub fn handshake(query: HandshakeQuery, verify_token: &str) -> Reply {
    match query.answer(verify_token) {
        Ok(challenge) => Reply::text(200, challenge),
        Err(refusal) => {
            tracing::warn!(%refusal, "webhook handshake refused");
            Reply::text(403, "verification refused")
        }
    }
}

/// `POST /webhook`: 200 once the batch is durable; 401 for a missing or wrong signature (nothing
/// stored); 400 for a body that is not a webhook; 500 when storage or scheduling failed, so that
/// Meta redelivers. `body` must be the raw bytes as Meta sent them.
pub async fn webhook<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    app_secret: &AppSecret,
    signature_header: Option<&str>,
    body: &[u8],
) -> Reply {
    if let Err(refusal) = signature::verify(app_secret, signature_header, body) {
        tracing::warn!(%refusal, "webhook signature refused");
        return Reply::text(401, refusal.to_string());
    }
    match intake(deps, body).await {
        Ok(report) => {
            tracing::info!(events = report.events, "webhook batch taken");
            Reply { tally: report.tally, ..Reply::text(200, "ok") }
        }
        Err(IntakeError::NotAWebhook(e)) => {
            tracing::warn!(error = %e, "not a webhook");
            Reply::text(400, e.to_string())
        }
        Err(IntakeError::Failed(e)) => {
            tracing::error!(error = %e, "webhook batch not taken; Meta will redeliver");
            Reply::text(500, "not stored; redeliver")
        }
    }
}

/// `POST /sends`: 200 with one result per recipient; 400 for a body that is not a send request;
/// 503 when a port failed part-way (the same request again completes it, sending nothing twice).
pub async fn sends<S: SendStore, R: RetryScheduler, C: CloudApi>(deps: &Deps<S, R, C>, body: &[u8]) -> Reply {
    let request: DispatchRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => return Reply::json(400, json!({ "error": format!("the body is not a send request: {e}") })),
    };
    match dispatch(deps, &request).await {
        Ok(answer) => {
            let body = serde_json::to_value(&answer).unwrap_or_else(|e| json!({ "error": e.to_string() }));
            Reply { tally: answer.tally, ..Reply::json(200, body) }
        }
        Err(UseCaseOrRequestError::Request(e)) => Reply::json(400, json!({ "error": e.to_string() })),
        Err(UseCaseOrRequestError::UseCase(e)) => {
            tracing::error!(error = %e, "dispatch stopped part-way; the same request again completes it");
            Reply::json(503, json!({ "error": e.to_string(), "retry": true }))
        }
    }
}
