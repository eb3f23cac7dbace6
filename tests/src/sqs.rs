//! Queues on moto's server (the one `scripts/test` starts for EventBridge Scheduler also answers
//! the SQS API), for the send queue's tests.

use std::sync::atomic::{AtomicU32, Ordering};

use shared::queue::sqs::SqsQueue;

/// moto's endpoint; a test that needs it fails loudly without it.
pub fn moto_endpoint() -> String {
    std::env::var("CAPGUARD_SCHEDULER_ENDPOINT")
        .unwrap_or_else(|_| panic!("CAPGUARD_SCHEDULER_ENDPOINT is not set: run scripts/test, which starts moto"))
}

/// A new, empty queue on moto: the adapter and a client to look into it.
pub async fn fresh_queue(prefix: &str) -> (SqsQueue, aws_sdk_sqs::Client, String) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let endpoint = moto_endpoint();
    let name = format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let queue = SqsQueue::connect(String::new(), Some(&endpoint)).await;
    let client = queue.client().clone();
    let url = client.create_queue().queue_name(&name).send().await.expect("moto creates the queue").queue_url.unwrap();
    (SqsQueue::new(client.clone(), url.clone()), client, url)
}

/// Every message body waiting in the queue at `url`, received until it answers none.
pub async fn drain(client: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let received = client.receive_message().queue_url(url).max_number_of_messages(10).send().await.unwrap();
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            return bodies;
        }
        for message in messages {
            bodies.extend(message.body);
            if let Some(handle) = message.receipt_handle {
                client.delete_message().queue_url(url).receipt_handle(handle).send().await.unwrap();
            }
        }
    }
}
