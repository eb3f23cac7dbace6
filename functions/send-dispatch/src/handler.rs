//! The send dispatch's two doors: `POST /sends` through the HTTP API (IAM-authorized), and the
//! campaign queue. Both carry the same request JSON and end in the same use case.
//!
//! HTTP answers are decided by `shared::usecase::http::sends`. Queue: every message that could
//! not be handled is reported as a batch item failure, so that one bad message neither fails
//! nor repeats its batch (a failed one is redelivered, and sends nothing twice).

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::HeaderValue;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use base64::Engine;
use serde_json::Value;
use shared::cloud::CloudApi;
use shared::schedule::RetryScheduler;
use shared::store::SendStore;
use shared::usecase::dispatch::{DispatchRequest, dispatch};
use shared::usecase::http::{self, Reply};
use shared::usecase::{Deps, Tally};

/// The two kinds of event this function is invoked with.
#[derive(Debug)]
pub enum Invocation {
    Http(Box<ApiGatewayV2httpRequest>),
    Queue(SqsEvent),
}

impl Invocation {
    /// Tells an SQS batch (`Records`) from an HTTP API request (`requestContext.http`).
    pub fn from_event(event: Value) -> Result<Self, String> {
        if event.get("Records").is_some() {
            return serde_json::from_value(event).map(Self::Queue).map_err(|e| format!("not an SQS batch: {e}"));
        }
        if event.pointer("/requestContext/http").is_some() {
            return serde_json::from_value(event)
                .map(|request| Self::Http(Box::new(request)))
                .map_err(|e| format!("not an HTTP API request: {e}"));
        }
        Err("the event is neither an HTTP API request nor an SQS batch".into())
    }
}

/// Answers an HTTP API request.
pub async fn handle_http<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    request: &ApiGatewayV2httpRequest,
) -> (ApiGatewayV2httpResponse, Tally) {
    let reply = match raw_body(request.body.as_deref(), request.is_base64_encoded) {
        Ok(body) => http::sends(deps, &body).await,
        Err(problem) => Reply {
            status: 400,
            content_type: "application/json",
            body: serde_json::json!({ "error": problem }).to_string(),
            tally: Tally::default(),
        },
    };
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = i64::from(reply.status);
    response.headers.insert("content-type", HeaderValue::from_static(reply.content_type));
    response.body = Some(Body::Text(reply.body));
    (response, reply.tally)
}

/// Handles a queue batch, reporting each message that failed.
pub async fn handle_queue<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    batch: &SqsEvent,
) -> (SqsBatchResponse, Tally) {
    let mut response = SqsBatchResponse::default();
    let mut tally = Tally::default();
    for message in &batch.records {
        let id = message.message_id.clone().unwrap_or_default();
        let outcome = match raw_body(message.body.as_deref(), false).and_then(|body| {
            serde_json::from_slice::<DispatchRequest>(&body).map_err(|e| format!("not a send request: {e}"))
        }) {
            Ok(request) => dispatch(deps, &request).await.map_err(|e| e.to_string()),
            Err(problem) => Err(problem),
        };
        match outcome {
            Ok(answer) => tally.merge(answer.tally),
            Err(problem) => {
                tracing::warn!(message_id = %id, %problem, "send request message failed");
                response.add_failure(id);
            }
        }
    }
    (response, tally)
}

fn raw_body(body: Option<&str>, is_base64_encoded: bool) -> Result<Vec<u8>, String> {
    let body = body.ok_or("the request has no body")?;
    if is_base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(body.trim())
            .map_err(|e| format!("the body is not base64: {e}"))
    } else {
        Ok(body.as_bytes().to_vec())
    }
}
