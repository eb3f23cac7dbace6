//! The use cases' HTTP face: the status and body each outcome answers with. The Lambda handlers
//! and `capguard serve` translate their own request and response types to and from these, so
//! both answer Meta and callers the same way.

use serde_json::json;

use tokio::time::Instant;

use super::dispatch::{DispatchRequest, UseCaseOrRequestError, dispatch_by};
use super::intake::{IntakeError, intake};
use super::{Deps, Tally};
use crate::budget::{SYNC_RECIPIENTS, SYNC_START_WINDOW};
use crate::cloud::CloudApi;
use crate::forward::ForwardError;
use crate::queue::{SendQueue, chunks};
use crate::schedule::RetryScheduler;
use crate::store::SendStore;
use crate::whatsapp::handshake::HandshakeQuery;
use crate::whatsapp::signature::{self, AppSecret};

/// The largest request body taken: Meta documents webhook payloads of up to 3 MB (see
/// docs/architecture.md), and a large send request is of the same order.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// What the webhook endpoint checks requests against: the app secret that signs Meta's posts, and
/// the token Meta's verification handshake presents.
pub struct WebhookSecrets {
    pub app_secret: AppSecret,
    pub verify_token: String,
}

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
/// Meta redelivers. `body` must be the raw bytes as Meta sent them. A verified body is forwarded
/// first, when forwarding is on (the business's stack hears of it whatever capguard makes of it):
/// 503 when it could not be, so that Meta redelivers.
pub async fn webhook<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    app_secret: &AppSecret,
    signature_header: Option<&str>,
    body: &[u8],
) -> Reply {
    if let Err(refusal) = signature::verify(app_secret, signature_header, body) {
        tracing::warn!(%refusal, "webhook signature refused");
        let mut tally = Tally::default();
        tally.add("webhooks_unauthorized");
        return Reply { tally, ..Reply::text(401, refusal.to_string()) };
    }
    let mut tally = Tally::default();
    if let Some(forward) = &deps.forward {
        match forward.forward(body).await {
            Ok(()) => tally.add("webhooks_forwarded"),
            // Never: counted for its alarm, and capguard's own work goes on.
            Err(refusal @ ForwardError::Refused(_)) => {
                tracing::error!(%refusal, "a verified webhook body was not forwarded");
                tally.add("forwards_refused");
            }
            // Not yet: Meta's redelivery brings the body back.
            Err(error @ ForwardError::Failed(_)) => {
                tracing::error!(%error, "a verified webhook body could not be forwarded; Meta will redeliver");
                tally.add("forwards_failed");
                return Reply { tally, ..Reply::text(503, "not forwarded; redeliver") };
            }
        }
    }
    match intake(deps, body).await {
        Ok(report) => {
            tracing::info!(events = report.events, "webhook batch taken");
            tally.merge(report.tally);
            Reply { tally, ..Reply::text(200, "ok") }
        }
        Err(IntakeError::NotAWebhook(e)) => {
            tracing::warn!(error = %e, "not a webhook");
            Reply { tally, ..Reply::text(400, e.to_string()) }
        }
        Err(IntakeError::Failed(e)) => {
            tracing::error!(error = %e, "webhook batch not taken; Meta will redeliver");
            tally.add("intake_failed");
            Reply { tally, ..Reply::text(500, "not stored; redeliver") }
        }
    }
}

/// `POST /sends`: up to [`SYNC_RECIPIENTS`] recipients, 200 with one result per recipient, every
/// send started within [`crate::budget::SYNC_START_WINDOW`] of `received` (the rest go to their
/// timers, answered `queued`); a larger request is cut into chunks, queued, and answered 202 with
/// its campaign, idempotency key and counts. 400 for a body that is not a send request; 503 when
/// a port failed part-way (the same request again completes it, sending nothing twice).
pub async fn sends<S: SendStore, R: RetryScheduler, C: CloudApi, Q: SendQueue>(
    deps: &Deps<S, R, C>,
    queue: &Q,
    body: &[u8],
    received: Instant,
) -> Reply {
    let request = match DispatchRequest::parse(body) {
        Ok(request) => request,
        Err(e) => return Reply::json(400, json!({ "error": e.to_string() })),
    };
    if request.recipients.len() > SYNC_RECIPIENTS {
        return enqueue(queue, &request).await;
    }
    match dispatch_by(deps, &request, Some(received + SYNC_START_WINDOW)).await {
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

/// A large request: checked whole, cut into chunks and queued.
async fn enqueue<Q: SendQueue>(queue: &Q, request: &DispatchRequest) -> Reply {
    let problems = request.problems();
    if !problems.is_empty() {
        return Reply::json(400, json!({ "error": format!("the send request is invalid: {}", problems.join("; ")) }));
    }
    let chunks = chunks(request);
    match queue.enqueue(&chunks).await {
        Ok(()) => {
            let mut tally = Tally::default();
            tally.add("requests_queued");
            let body = json!({
                "status": "accepted",
                "campaign": request.campaign,
                "idempotency_key": request.idempotency_key,
                "recipients": request.recipients.len(),
                "chunks": chunks.len(),
            });
            Reply { tally, ..Reply::json(202, body) }
        }
        Err(e) => {
            tracing::error!(error = %e, "a large send request was not queued; the same request again queues it");
            Reply::json(503, json!({ "error": e.to_string(), "retry": true }))
        }
    }
}
