//! moto's server, which `scripts/test` starts: fresh queues (SQS) and schedule groups
//! (EventBridge Scheduler) for the tests of the adapters and of the deployed functions.

use std::sync::atomic::{AtomicU32, Ordering};

use shared::queue::sqs::SqsQueue;
use shared::schedule::eventbridge::{EventBridgeScheduler, EventBridgeSettings, TargetRetryPolicy, sdk_client};

/// moto's endpoint; a test that needs it fails loudly without it.
pub fn moto_endpoint() -> String {
    std::env::var("CAPGUARD_SCHEDULER_ENDPOINT")
        .unwrap_or_else(|_| panic!("CAPGUARD_SCHEDULER_ENDPOINT is not set: run scripts/test, which starts moto"))
}

/// A name no other test of any process uses on the same moto.
pub fn fresh_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A new schedule group on moto (moto answers a schedule in a missing group with a 500), and the
/// scheduler adapter on it, targeting `target_arn` as template.yaml's settings do.
pub async fn fresh_scheduler(prefix: &str, target_arn: &str) -> EventBridgeScheduler {
    let client = sdk_client(Some(&moto_endpoint())).await;
    let group = fresh_name(prefix);
    client.create_schedule_group().name(&group).send().await.expect("moto creates the schedule group");
    let settings = EventBridgeSettings {
        group_name: group,
        target_arn: target_arn.to_owned(),
        role_arn: "arn:aws:iam::123456789012:role/capguard-scheduler".to_owned(),
        dead_letter_arn: "arn:aws:sqs:us-east-1:123456789012:capguard-retry-dlq".to_owned(),
        retry_policy: TargetRetryPolicy::new(3_600, 3).expect("a valid retry policy"),
    };
    EventBridgeScheduler::new(client, settings)
}

/// A new, empty queue on moto: the adapter and a client to look into it.
pub async fn fresh_queue(prefix: &str) -> (SqsQueue, aws_sdk_sqs::Client, String) {
    let endpoint = moto_endpoint();
    let name = fresh_name(prefix);
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
