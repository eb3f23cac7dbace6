//! [`SendQueue`] on Amazon SQS: one message per chunk, sent concurrently.

use futures::StreamExt;

use super::{QueueError, SendQueue};
use crate::usecase::dispatch::DispatchRequest;

/// How many chunks are sent to SQS at once.
const PARALLELISM: usize = 8;

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: String) -> Self {
        Self { client, url }
    }

    pub fn client(&self) -> &aws_sdk_sqs::Client {
        &self.client
    }

    /// The queue at `url`, with the credentials and region of the environment; `endpoint` points
    /// the client at an emulator (moto's server, in tests) with test credentials.
    pub async fn connect(url: String, endpoint: Option<&str>) -> Self {
        Self::new(aws_sdk_sqs::Client::new(&crate::aws::sdk_config(endpoint).await), url)
    }

    /// The queue at `url`, reached as `target` says (an operator's `--region` and `--profile`).
    pub async fn connect_to(url: String, target: &crate::aws::AwsTarget) -> Self {
        Self::new(aws_sdk_sqs::Client::new(&crate::aws::load(target).await), url)
    }
}

impl SendQueue for SqsQueue {
    async fn enqueue(&self, chunks: &[DispatchRequest]) -> Result<(), QueueError> {
        let bodies: Vec<String> = chunks
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<_, _>>()
            .map_err(|e| QueueError(e.to_string()))?;
        let sent: Vec<Result<(), QueueError>> = futures::stream::iter(bodies)
            .map(|body| {
                let (client, url) = (self.client.clone(), self.url.clone());
                async move { send(&client, &url, body).await }
            })
            .buffer_unordered(PARALLELISM)
            .collect()
            .await;
        sent.into_iter().collect()
    }
}

async fn send(client: &aws_sdk_sqs::Client, url: &str, body: String) -> Result<(), QueueError> {
    client
        .send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .map_err(|e| QueueError(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
    Ok(())
}
