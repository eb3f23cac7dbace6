//! The webhook endpoint on API Gateway's HTTP API: `GET /webhook` answers Meta's verification
//! handshake, `POST /webhook` checks the signature over the raw body and hands the batch to the
//! intake use case (`shared::usecase::http` decides the answers).

use lambda_http::http::Method;
use lambda_http::{Body, Request, RequestExt, Response};
use shared::cloud::CloudApi;
use shared::schedule::RetryScheduler;
use shared::store::SendStore;
use shared::usecase::http::{self, Reply, WebhookSecrets};
use shared::usecase::{Deps, Tally};
use shared::whatsapp::handshake::HandshakeQuery;
use shared::whatsapp::signature::SIGNATURE_HEADER;

/// Answers one request, and what the intake counted.
pub async fn handle<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    secrets: &WebhookSecrets,
    request: Request,
) -> (Response<Body>, Tally) {
    let reply = match *request.method() {
        Method::GET => {
            let params = request.query_string_parameters();
            http::handshake(HandshakeQuery::from_pairs(params.iter()), &secrets.verify_token)
        }
        Method::POST => {
            // lambda_http has already undone API Gateway's base64: these are the bytes Meta signed.
            let signature = request.headers().get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
            http::webhook(deps, &secrets.app_secret, signature, request.body().as_ref()).await
        }
        _ => {
            Reply { status: 405, content_type: "text/plain", body: "GET or POST only".into(), tally: Tally::default() }
        }
    };
    let response = Response::builder()
        .status(reply.status)
        .header("content-type", reply.content_type)
        .body(Body::from(reply.body))
        .expect("a valid status and a static header make a valid response");
    (response, reply.tally)
}

#[cfg(test)]
mod tests {
    //! The handler driven by the HTTP API events API Gateway delivers (`tests/fixtures/events`),
    //! read the way the runtime reads them, against the embedded store and local scheduler.

    use std::sync::Arc;

    use base64::Engine;
    use capguard_tests::faults::{Faults, FaultyStore};
    use chrono::{DateTime, TimeDelta};
    use futures::future::BoxFuture;
    use lambda_http::request::from_str;
    use serde_json::{Value, json};
    use shared::clock::SystemClock;
    use shared::cloud::http::{AccessToken, HttpCloudApi, HttpCloudApiConfig};
    use shared::domain::verdict::Rules;
    use shared::forward::{Forward, ForwardError};
    use shared::schedule::local::LocalScheduler;
    use shared::store::embedded::EmbeddedStore;
    use shared::usecase::SendSettings;
    use shared::whatsapp::signature::{AppSecret, sign};

    use super::*;
    use shared::store::prelude::*;

    const APP_SECRET: &str = "test_app_secret";
    const VERIFY_TOKEN: &str = "meatyhamhock";
    /// The sender of `meta-docs__inbound_text`.
    const INBOUND_SENDER: &str = "16505551234";

    fn secrets() -> WebhookSecrets {
        WebhookSecrets { app_secret: AppSecret::new(APP_SECRET), verify_token: VERIFY_TOKEN.to_owned() }
    }

    fn event(name: &str) -> Value {
        let dir = capguard_tests::webhook_fixtures_dir();
        let path = dir.parent().expect("the fixtures folder").join("events").join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_json::from_str(&text).expect("the event fixture is JSON")
    }

    /// What the runtime hands the handler for this event.
    fn request(event: &Value) -> Request {
        from_str(&event.to_string()).expect("an HTTP API event")
    }

    /// The POST fixture with `body` in place of its own, base64-encoded and signed as Meta would.
    fn signed_post(body: &[u8]) -> Value {
        let mut event = event("http_api_webhook_post.json");
        event["body"] = base64::engine::general_purpose::STANDARD.encode(body).into();
        event["headers"]["x-hub-signature-256"] = sign(&AppSecret::new(APP_SECRET), body).into();
        event
    }

    fn body_text(response: &Response<Body>) -> String {
        String::from_utf8(response.body().as_ref().to_vec()).expect("a text body")
    }

    /// A redb file in the temp folder, removed when dropped.
    struct TempFile(tempfile::TempPath);

    impl TempFile {
        fn new() -> Self {
            let file = tempfile::Builder::new().prefix("capguard-webhook-intake-").suffix(".redb").tempfile();
            Self(file.expect("a temporary file").into_temp_path())
        }
    }

    /// The Cloud API is never called by the intake; an address nothing listens on proves it.
    fn unused_cloud() -> HttpCloudApi {
        let config = HttpCloudApiConfig::new(AccessToken::new("unused")).with_base_url("http://127.0.0.1:9");
        HttpCloudApi::new(config).expect("an HTTP client")
    }

    /// The ports on a temporary embedded store, with `store` wrapping the embedded one.
    fn deps_with<S: SendStore>(
        file: &TempFile,
        store: impl FnOnce(EmbeddedStore) -> S,
    ) -> Deps<S, LocalScheduler, HttpCloudApi> {
        let embedded = EmbeddedStore::open(&file.0, TimeDelta::days(90)).expect("the embedded store opens");
        let clock = Arc::new(SystemClock);
        let scheduler = LocalScheduler::open(embedded.file(), clock.clone()).expect("the timer table");
        // The wall's clock: quiet hours off, so that a cap's retry is placed alike at any hour.
        let mut rules = Rules::default();
        rules.policy.quiet_hours = None;
        Deps::new(store(embedded), scheduler, unused_cloud(), clock, rules, SendSettings::default())
    }

    #[tokio::test]
    async fn a_signed_post_event_is_taken_and_its_inbound_message_stored() {
        let file = TempFile::new();
        let deps = deps_with(&file, |store| store);
        let (response, tally) = handle(&deps, &secrets(), request(&event("http_api_webhook_post.json"))).await;
        assert_eq!(response.status(), 200, "{}", body_text(&response));
        assert_eq!(tally.get("inbound"), 1);
        let recipient = deps.store.get_recipient(INBOUND_SENDER).await.unwrap();
        assert_eq!(recipient.last_inbound_at, DateTime::from_timestamp(1_749_416_383, 0));
    }

    #[tokio::test]
    async fn a_post_event_without_a_valid_signature_is_refused_and_nothing_stored() {
        let file = TempFile::new();
        let deps = deps_with(&file, |store| store);
        let mut unsigned = event("http_api_webhook_post.json");
        unsigned["headers"].as_object_mut().unwrap().remove("x-hub-signature-256").expect("the fixture is signed");
        let mut wrong = event("http_api_webhook_post.json");
        wrong["headers"]["x-hub-signature-256"] = sign(&AppSecret::new("another_secret"), b"{}").into();
        for event in [unsigned, wrong] {
            let (response, tally) = handle(&deps, &secrets(), request(&event)).await;
            assert_eq!(response.status(), 401, "{}", body_text(&response));
            assert_eq!(tally.get("webhooks_unauthorized"), 1, "counted for the alarm: {tally:?}");
            assert_eq!(tally.counters().count(), 1, "and nothing else: {tally:?}");
        }
        assert_eq!(deps.store.get_recipient(INBOUND_SENDER).await.unwrap().last_inbound_at, None);
    }

    #[tokio::test]
    async fn a_signed_body_that_is_not_a_webhook_is_a_bad_request() {
        let file = TempFile::new();
        let deps = deps_with(&file, |store| store);
        for body in [&b"hello"[..], br#"{"object":"page","entry":[]}"#] {
            let (response, _) = handle(&deps, &secrets(), request(&signed_post(body))).await;
            assert_eq!(response.status(), 400, "{}", body_text(&response));
        }
    }

    #[tokio::test]
    async fn the_handshake_event_is_answered_with_the_bare_challenge() {
        let file = TempFile::new();
        let deps = deps_with(&file, |store| store);
        let (response, _) = handle(&deps, &secrets(), request(&event("http_api_webhook_get.json"))).await;
        assert_eq!(response.status(), 200);
        assert_eq!(body_text(&response), "1158201444");
    }

    #[tokio::test]
    async fn a_handshake_with_the_wrong_verify_token_is_forbidden() {
        let file = TempFile::new();
        let deps = deps_with(&file, |store| store);
        let mut event = event("http_api_webhook_get.json");
        event["queryStringParameters"]["hub.verify_token"] = "guessed".into();
        event["rawQueryString"] = "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=guessed".into();
        let (response, _) = handle(&deps, &secrets(), request(&event)).await;
        assert_eq!(response.status(), 403);
        assert_ne!(body_text(&response), "1158201444");
    }

    #[tokio::test]
    async fn a_signed_batch_of_two_and_a_half_megabytes_is_taken() {
        let file = TempFile::new();
        let deps = deps_with(&file, |store| store);
        // Meta's largest payloads reach 3 MB; these are statuses for messages another app sent,
        // padded with a field Meta might add.
        let statuses: Vec<Value> = (0..100)
            .map(|i| {
                json!({ "id": format!("wamid.elsewhere-{i}"), "status": "delivered", "timestamp": "1749416383",
                        "recipient_id": INBOUND_SENDER, "note": "x".repeat(25_000) })
            })
            .collect();
        let body = json!({ "object": "whatsapp_business_account", "entry": [{ "id": "102290129340398", "changes": [{
            "field": "messages", "value": { "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550783881", "phone_number_id": "106540352242922" },
            "statuses": statuses } }] }] })
        .to_string();
        assert!(body.len() > 2_500_000, "{} bytes", body.len());
        let (response, tally) = handle(&deps, &secrets(), request(&signed_post(body.as_bytes()))).await;
        assert_eq!(response.status(), 200, "{}", body_text(&response));
        assert_eq!(tally.get("statuses_parked"), 100, "each waits for a link that is not there");
    }

    #[tokio::test]
    async fn a_store_failure_answers_500_so_that_meta_redelivers() {
        let file = TempFile::new();
        let deps = deps_with(&file, |store| FaultyStore::new(store, Faults::down()));
        let (response, tally) = handle(&deps, &secrets(), request(&event("http_api_webhook_post.json"))).await;
        assert_eq!(response.status(), 500, "{}", body_text(&response));
        assert_eq!(tally.get("intake_failed"), 1, "counted for the alarm: {tally:?}");
    }

    /// A forward target that answers as it is told and keeps what it took.
    struct Target {
        answer: fn() -> Result<(), ForwardError>,
        took: std::sync::Mutex<Vec<Vec<u8>>>,
    }

    impl Forward for Target {
        fn forward<'a>(&'a self, body: &'a [u8]) -> BoxFuture<'a, Result<(), ForwardError>> {
            self.took.lock().unwrap().push(body.to_vec());
            Box::pin(async move { (self.answer)() })
        }
    }

    fn target(answer: fn() -> Result<(), ForwardError>) -> Arc<Target> {
        Arc::new(Target { answer, took: std::sync::Mutex::default() })
    }

    #[tokio::test]
    async fn a_verified_body_is_forwarded_as_received_before_it_is_taken() {
        let file = TempFile::new();
        let forward = target(|| Ok(()));
        let deps = deps_with(&file, |store| store).with_forward(forward.clone());
        let (response, tally) = handle(&deps, &secrets(), request(&event("http_api_webhook_post.json"))).await;
        assert_eq!(response.status(), 200, "{}", body_text(&response));
        assert_eq!((tally.get("webhooks_forwarded"), tally.get("inbound")), (1, 1), "{tally:?}");
        assert_eq!(*forward.took.lock().unwrap(), [capguard_tests::webhook_fixture("meta-docs__inbound_text")]);

        let mut wrong = event("http_api_webhook_post.json");
        wrong["headers"]["x-hub-signature-256"] = sign(&AppSecret::new("another_secret"), b"{}").into();
        let (response, _) = handle(&deps, &secrets(), request(&wrong)).await;
        assert_eq!(response.status(), 401);
        assert_eq!(forward.took.lock().unwrap().len(), 1, "an unverified body is not forwarded");
    }

    #[tokio::test]
    async fn a_body_that_could_not_be_forwarded_answers_503_and_stores_nothing_so_that_meta_redelivers() {
        let file = TempFile::new();
        let forward = target(|| Err(ForwardError::Failed("the queue is unreachable".into())));
        let deps = deps_with(&file, |store| store).with_forward(forward);
        let (response, tally) = handle(&deps, &secrets(), request(&event("http_api_webhook_post.json"))).await;
        assert_eq!(response.status(), 503, "{}", body_text(&response));
        assert_eq!((tally.get("forwards_failed"), tally.get("inbound")), (1, 0), "{tally:?}");
        assert_eq!(deps.store.get_recipient(INBOUND_SENDER).await.unwrap().last_inbound_at, None);
    }

    #[tokio::test]
    async fn a_body_that_can_never_be_forwarded_is_counted_and_taken_all_the_same() {
        let file = TempFile::new();
        let forward = target(|| Err(ForwardError::Refused("over SQS's limit".into())));
        let deps = deps_with(&file, |store| store).with_forward(forward);
        let (response, tally) = handle(&deps, &secrets(), request(&event("http_api_webhook_post.json"))).await;
        assert_eq!(response.status(), 200, "{}", body_text(&response));
        assert_eq!((tally.get("forwards_refused"), tally.get("inbound")), (1, 1), "{tally:?}");
    }

    #[tokio::test]
    async fn a_method_other_than_get_or_post_is_not_allowed() {
        let file = TempFile::new();
        let deps = deps_with(&file, |store| store);
        let mut event = event("http_api_webhook_get.json");
        event["requestContext"]["http"]["method"] = "DELETE".into();
        let (response, _) = handle(&deps, &secrets(), request(&event)).await;
        assert_eq!(response.status(), 405);
    }

    #[test]
    fn the_fixture_body_is_the_inbound_text_webhook_byte_for_byte() {
        let event = event("http_api_webhook_post.json");
        let body = base64::engine::general_purpose::STANDARD.decode(event["body"].as_str().unwrap()).unwrap();
        assert_eq!(body, capguard_tests::webhook_fixture("meta-docs__inbound_text"));
        assert_eq!(event["headers"]["x-hub-signature-256"], json!(sign(&AppSecret::new(APP_SECRET), &body)));
    }
}
