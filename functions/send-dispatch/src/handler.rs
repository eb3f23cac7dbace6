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
use lambda_runtime::Diagnostic;
use std::time::Duration;

use serde_json::Value;
use shared::budget::SEND_RESERVE;
use shared::cloud::CloudApi;
use shared::queue::SendQueue;
use shared::schedule::RetryScheduler;
use shared::store::SendStore;
use shared::usecase::dispatch::{DispatchRequest, dispatch_by};
use shared::usecase::http::{self, Reply};
use shared::usecase::{Deps, Tally};
use shared::whatsapp::signature::raw_body;
use tokio::time::Instant;

/// The two kinds of event this function is invoked with.
#[derive(Debug)]
pub enum Invocation {
    Http(Box<ApiGatewayV2httpRequest>),
    Queue(SqsEvent),
}

/// An event this function does not take.
#[derive(Debug, thiserror::Error)]
pub enum UnknownEvent {
    #[error("not an SQS batch: {0}")]
    NotABatch(serde_json::Error),
    #[error("not an HTTP API request: {0}")]
    NotARequest(serde_json::Error),
    #[error("the event is neither an HTTP API request nor an SQS batch")]
    Neither,
}

/// Why an invocation failed (Lambda retries it, then hands it to the failure destination).
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    #[error(transparent)]
    UnknownEvent(#[from] UnknownEvent),
    #[error("the answer could not be serialised: {0}")]
    Answer(#[source] serde_json::Error),
}

/// What Lambda records of a failed invocation: the error's kind as its type.
impl From<InvocationError> for Diagnostic {
    fn from(error: InvocationError) -> Self {
        let kind = match &error {
            InvocationError::UnknownEvent(_) => "UnknownEvent",
            InvocationError::Answer(_) => "AnswerNotSerialised",
        };
        Diagnostic { error_type: kind.to_owned(), error_message: error.to_string() }
    }
}

impl Invocation {
    /// Tells an SQS batch (`Records`) from an HTTP API request (`requestContext.http`).
    pub fn from_event(event: Value) -> Result<Self, UnknownEvent> {
        if event.get("Records").is_some() {
            return serde_json::from_value(event).map(Self::Queue).map_err(UnknownEvent::NotABatch);
        }
        if event.pointer("/requestContext/http").is_some() {
            return serde_json::from_value(event)
                .map(|request| Self::Http(Box::new(request)))
                .map_err(UnknownEvent::NotARequest);
        }
        Err(UnknownEvent::Neither)
    }
}

/// Answers an HTTP API request.
pub async fn handle_http<S: SendStore, R: RetryScheduler, C: CloudApi, Q: SendQueue>(
    deps: &Deps<S, R, C>,
    queue: &Q,
    request: &ApiGatewayV2httpRequest,
) -> (ApiGatewayV2httpResponse, Tally) {
    let received = Instant::now();
    let body = match request.body.as_deref() {
        None => Err("the request has no body".to_owned()),
        Some(body) => raw_body(body, request.is_base64_encoded).map_err(|e| e.to_string()),
    };
    let reply = match body {
        Ok(body) => http::sends(deps, queue, &body, received).await,
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
    time_left: Duration,
) -> (SqsBatchResponse, Tally) {
    // Sends start only while the last one can still end before the invocation does; the
    // recipients left are recorded and handed to their timers ([`shared::budget`]).
    let start_by = Instant::now() + time_left.saturating_sub(SEND_RESERVE);
    let mut response = SqsBatchResponse::default();
    let mut tally = Tally::default();
    for message in &batch.records {
        let id = message.message_id.clone().unwrap_or_default();
        let request = message.body.as_deref().ok_or_else(|| "the message has no body".to_owned());
        let outcome = match request.and_then(|body| DispatchRequest::parse(body.as_bytes()).map_err(|e| e.to_string()))
        {
            Ok(request) => dispatch_by(deps, &request, Some(start_by)).await.map_err(|e| e.to_string()),
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

#[cfg(test)]
mod tests {
    //! The handler driven by the events Lambda delivers (`tests/fixtures/events`): the HTTP API's
    //! `POST /sends` and the campaign queue's SQS batch, read as `main` reads them (a JSON value,
    //! then [`Invocation::from_event`]), against the embedded store, the local scheduler and the
    //! Cloud API sandbox.

    use lambda_runtime::{Context, LambdaEvent};
    use serde_json::json;
    use shared::store::SendId;

    use capguard_tests::local_ports::SandboxedPorts as Stack;
    use capguard_tests::moto::{drain, fresh_queue};

    use super::*;
    use shared::store::prelude::*;

    const BUSINESS_NUMBER: &str = "106540352242922";
    /// The SQS fixture's malformed message.
    const MALFORMED_MESSAGE_ID: &str = "2e1424d4-f796-459a-8184-9c92662be6da";

    fn event(name: &str) -> Value {
        let dir = capguard_tests::webhook_fixtures_dir();
        let path = dir.parent().expect("the fixtures folder").join("events").join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        // What the runtime hands `main`'s service: the payload as a JSON value.
        let event: LambdaEvent<Value> =
            LambdaEvent::new(serde_json::from_str(&text).expect("the event fixture is JSON"), Context::default());
        event.payload
    }

    fn http_request(event: Value) -> ApiGatewayV2httpRequest {
        match Invocation::from_event(event).expect("an event this function takes") {
            Invocation::Http(request) => *request,
            Invocation::Queue(batch) => panic!("an HTTP API request, not {batch:?}"),
        }
    }

    fn json_body(response: &ApiGatewayV2httpResponse) -> Value {
        match &response.body {
            Some(Body::Text(text)) => serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}")),
            other => panic!("a JSON text body, not {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_sends_event_sends_to_india_and_refuses_the_us() {
        let stack = Stack::start("send-dispatch", 7).await;
        let (queue, ..) = fresh_queue("sends").await;
        let request = http_request(event("http_api_sends_post.json"));
        let (response, tally) = handle_http(&stack.deps, &queue, &request).await;
        let body = json_body(&response);
        assert_eq!(response.status_code, 200, "{body}");
        assert_eq!(response.headers["content-type"], "application/json");
        let results = body["results"].as_array().expect("one result per recipient");
        assert_eq!(results.len(), 2, "{body}");
        let india = &results[0];
        assert_eq!((&india["outcome"], &india["to"]), (&json!("accepted"), &json!("+919812345678")), "{body}");
        assert!(india["wamid"].as_str().is_some_and(|w| w.starts_with("wamid.")), "{body}");
        let us = &results[1];
        assert_eq!(
            (&us["outcome"], &us["to"], &us["reason"]),
            (&json!("refused"), &json!("+16505551234"), &json!("marketing_paused_region")),
            "{body}"
        );
        assert_eq!((tally.get("sends"), tally.get("suppressed_marketing_paused_region")), (1, 1));
        assert_eq!(stack.sandbox.as_ref().unwrap().stats().accepted, 1, "the US recipient was never sent to");
        stack.stop().await;
    }

    #[tokio::test]
    async fn the_same_sends_event_again_sends_nothing_twice() {
        let stack = Stack::start("send-dispatch", 7).await;
        let (queue, ..) = fresh_queue("sends").await;
        let request = http_request(event("http_api_sends_post.json"));
        handle_http(&stack.deps, &queue, &request).await;
        let (response, _) = handle_http(&stack.deps, &queue, &request).await;
        let body = json_body(&response);
        assert_eq!(response.status_code, 200, "{body}");
        let outcomes: Vec<&Value> = body["results"].as_array().unwrap().iter().map(|r| &r["outcome"]).collect();
        assert_eq!(outcomes, [&json!("duplicate"), &json!("duplicate")]);
        assert_eq!(stack.sandbox.as_ref().unwrap().stats().accepted, 1);
        stack.stop().await;
    }

    #[tokio::test]
    async fn a_sends_body_that_is_not_json_is_a_bad_request() {
        let stack = Stack::start("send-dispatch", 7).await;
        let mut plain = event("http_api_sends_post.json");
        plain["body"] = "recipients: everyone".into();
        plain["isBase64Encoded"] = false.into();
        let mut not_base64 = event("http_api_sends_post.json");
        not_base64["body"] = "%%% not base64 %%%".into();
        let (queue, ..) = fresh_queue("sends").await;
        for event in [plain, not_base64] {
            let (response, tally) = handle_http(&stack.deps, &queue, &http_request(event)).await;
            let body = json_body(&response);
            assert_eq!(response.status_code, 400, "{body}");
            assert!(body["error"].is_string(), "{body}");
            assert_eq!(tally, Tally::default());
        }
        assert_eq!(stack.sandbox.as_ref().unwrap().stats().accepted, 0);
        stack.stop().await;
    }

    /// A request over the synchronous limit is answered 202 at once and lands on the queue in
    /// chunks; each chunk, taken as the queue's event source delivers it, sends its recipients.
    #[tokio::test]
    async fn a_large_sends_request_is_queued_in_chunks_and_each_chunk_sends() {
        let stack = Stack::start("send-dispatch", 7).await;
        let (queue, client, url) = fresh_queue("sends").await;
        let recipients: Vec<Value> = (0..1_100).map(|n| json!({ "to": format!("+4474{n:08}") })).collect();
        let body = json!({ "phone_number_id": BUSINESS_NUMBER, "template": { "name": "spring_sale", "language": "en_US" },
            "category": "marketing", "campaign": "big", "idempotency_key": "big-1", "recipients": recipients });
        let mut request = event("http_api_sends_post.json");
        request["body"] = body.to_string().into();
        request["isBase64Encoded"] = false.into();
        let (response, tally) = handle_http(&stack.deps, &queue, &http_request(request)).await;
        let answer = json_body(&response);
        assert_eq!(response.status_code, 202, "{answer}");
        assert_eq!(
            (&answer["recipients"], &answer["chunks"], &answer["idempotency_key"]),
            (&json!(1_100), &json!(2), &json!("big-1"))
        );
        assert_eq!((tally.get("requests_queued"), tally.get("sends")), (1, 0), "nothing sent before the answer");

        let chunks = drain(&client, &url).await;
        assert_eq!(chunks.len(), 2);
        let records: Vec<Value> = chunks
            .iter()
            .enumerate()
            .map(|(n, body)| json!({ "messageId": format!("chunk-{n}"), "body": body, "eventSource": "aws:sqs" }))
            .collect();
        let batch: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();
        let (response, tally) = handle_queue(&stack.deps, &batch, Duration::from_secs(120)).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!((tally.get("accepted_requests"), tally.get("sends")), (1_100, 1_100), "each recipient sent once");
        assert_eq!(stack.sandbox.as_ref().unwrap().stats().accepted, 1_100);
        stack.stop().await;
    }

    #[tokio::test]
    async fn the_queue_batch_reports_only_the_malformed_message() {
        let stack = Stack::start("send-dispatch", 7).await;
        let batch = match Invocation::from_event(event("sqs_send_batch.json")).expect("an SQS batch") {
            Invocation::Queue(batch) => batch,
            Invocation::Http(request) => panic!("an SQS batch, not {request:?}"),
        };
        let (response, tally) = handle_queue(&stack.deps, &batch, Duration::from_secs(120)).await;
        let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        assert_eq!(failed, [MALFORMED_MESSAGE_ID]);
        assert_eq!(tally.get("sends"), 1);
        let valid = SendId::derive(BUSINESS_NUMBER, "spring-2026-queue-1", "447400123456");
        let send = stack.deps.store.get_send(&valid).await.unwrap().expect("the valid message's send is recorded");
        assert_eq!(send.campaign.as_deref(), Some("spring"));
        assert!(send.attempts[0].wamid.is_some(), "{send:?}");
        // What `main` answers the runtime, which SQS reads as partial batch failure.
        let answer = serde_json::to_value(&response).unwrap();
        assert_eq!(answer, json!({ "batchItemFailures": [{ "itemIdentifier": MALFORMED_MESSAGE_ID }] }));
        stack.stop().await;
    }

    #[test]
    fn an_event_that_is_neither_a_request_nor_a_batch_is_an_error() {
        for event in [
            json!({ "send_id": "0123456789abcdef0123456789abcdef", "attempt": 2, "try": 1 }),
            json!({ "Records": "not a list" }),
            json!({ "requestContext": { "http": "not an object" } }),
        ] {
            assert!(Invocation::from_event(event.clone()).is_err(), "{event}");
        }
    }

    #[test]
    fn lambda_records_a_failed_invocation_by_its_kind() {
        let error = InvocationError::from(Invocation::from_event(json!({})).unwrap_err());
        let diagnostic = Diagnostic::from(error);
        assert_eq!(diagnostic.error_type, "UnknownEvent");
        assert_eq!(diagnostic.error_message, "the event is neither an HTTP API request nor an SQS batch");
    }
}
