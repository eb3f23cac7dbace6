//! One batch of the forward queue: each body posted once, all at once (ten posts of up to
//! `POST_TIMEOUT` each then end within the function's timeout, so a slow receiver never gets a
//! batch's bodies again because the invocation ran out); those that failed are reported, so SQS
//! offers them again after their visibility timeout and, after the queue's `maxReceiveCount`,
//! moves them to the forward dead-letter queue (which raises an alarm).

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use shared::forward::Forward;
use shared::usecase::Tally;

/// Posts each body of `batch`; the answer names the messages to offer again.
pub async fn handle(forward: &impl Forward, batch: &SqsEvent) -> (SqsBatchResponse, Tally) {
    let posts = batch.records.iter().map(|message| async move {
        (message, forward.forward(message.body.as_deref().unwrap_or_default().as_bytes()).await)
    });
    let mut response = SqsBatchResponse::default();
    let mut tally = Tally::default();
    for (message, posted) in futures::future::join_all(posts).await {
        let id = message.message_id.clone().unwrap_or_default();
        match posted {
            Ok(()) => tally.add("bodies_forwarded"),
            Err(error) => {
                tracing::warn!(message_id = %id, %error, "a webhook body was not forwarded; SQS offers it again");
                tally.add("forwards_failed");
                response.add_failure(id);
            }
        }
    }
    (response, tally)
}

#[cfg(test)]
mod tests {
    //! The handler against a receiver on a real socket that answers as it is told, checking each
    //! post's signature with the forwarding secret.

    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use shared::forward::http::HttpForward;
    use shared::forward::{DELIVERY_HEADER, delivery_id};
    use shared::whatsapp::signature::{AppSecret, SIGNATURE_HEADER, verify};

    use super::*;

    const SECRET: &str = "the-forwarding-secret";

    #[derive(Default)]
    struct Receiver {
        /// Bodies taken (their signature and delivery id checked).
        taken: Mutex<Vec<Vec<u8>>>,
        /// Bodies to answer 503 to.
        refuse: Mutex<Vec<Vec<u8>>>,
    }

    async fn receive(State(receiver): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        if verify(&AppSecret::new(SECRET), header(SIGNATURE_HEADER).as_deref(), &body).is_err()
            || header(DELIVERY_HEADER) != Some(delivery_id(&body))
        {
            return StatusCode::UNAUTHORIZED;
        }
        if receiver.refuse.lock().unwrap().contains(&body.to_vec()) {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        receiver.taken.lock().unwrap().push(body.to_vec());
        StatusCode::OK
    }

    async fn receiver() -> (Arc<Receiver>, String) {
        let receiver = Arc::new(Receiver::default());
        let app = axum::Router::new().route("/inbox", axum::routing::post(receive)).with_state(Arc::clone(&receiver));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/inbox", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn batch(bodies: &[&str]) -> SqsEvent {
        let records: Vec<serde_json::Value> = bodies
            .iter()
            .enumerate()
            .map(
                |(n, body)| serde_json::json!({ "messageId": format!("m{n}"), "body": body, "eventSource": "aws:sqs" }),
            )
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records })).expect("an SQS event")
    }

    #[tokio::test]
    async fn each_body_is_posted_signed_and_a_refused_one_is_reported_for_another_try() {
        let (receiver, url) = receiver().await;
        let taken = r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[]}]}"#;
        let refused = r#"{"object":"whatsapp_business_account","entry":[{"id":"caf\u00e9","changes":[]}]}"#;
        receiver.refuse.lock().unwrap().push(refused.as_bytes().to_vec());
        let forward = HttpForward::new(url, AppSecret::new(SECRET)).unwrap();

        let (response, tally) = handle(&forward, &batch(&[taken, refused])).await;
        assert_eq!(*receiver.taken.lock().unwrap(), [taken.as_bytes().to_vec()], "byte for byte");
        let failed: Vec<String> = response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
        assert_eq!(failed, ["m1"]);
        assert_eq!((tally.get("bodies_forwarded"), tally.get("forwards_failed")), (1, 1));

        receiver.refuse.lock().unwrap().clear();
        let (response, _) = handle(&forward, &batch(&[refused])).await;
        assert!(response.batch_item_failures.is_empty(), "taken once the receiver is back");
        assert_eq!(receiver.taken.lock().unwrap()[1], refused.as_bytes());
    }
}
