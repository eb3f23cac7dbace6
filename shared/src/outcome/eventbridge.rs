//! [`Publish`] on Amazon EventBridge: `PutEvents` on a bus (the account's `default` unless one is
//! named), at most ten entries a call, in order. Entries a call refuses (`FailedEntryCount`) and
//! every entry after a call that failed are handed back for the next flush.

use aws_sdk_eventbridge::primitives::DateTime as AwsDateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use futures::future::BoxFuture;

use super::{Outcome, Publish, PublishError, SOURCE, Unpublished};

/// EventBridge takes at most ten entries per `PutEvents`.
const ENTRIES_PER_CALL: usize = 10;

/// The bus the template's `EventBusName` defaults to.
pub const DEFAULT_BUS: &str = "default";

#[derive(Debug, Clone)]
pub struct EventBridgePublisher {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBridgePublisher {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: String) -> Self {
        Self { client, bus }
    }

    /// The bus named `bus`, with the environment's credentials and region; `endpoint` points the
    /// client at an emulator (moto's server, in tests).
    pub async fn connect(bus: String, endpoint: Option<&str>) -> Self {
        Self::new(aws_sdk_eventbridge::Client::new(&crate::aws::sdk_config(endpoint).await), bus)
    }

    fn entry(&self, outcome: &Outcome) -> Result<PutEventsRequestEntry, serde_json::Error> {
        Ok(PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(outcome.kind.detail_type())
            .detail(serde_json::to_string(outcome)?)
            .time(AwsDateTime::from_secs(outcome.at.timestamp()))
            .build())
    }

    /// Puts one call's worth; returns the outcomes EventBridge did not take.
    async fn put(&self, chunk: &[Outcome]) -> Result<(), Unpublished> {
        let refused = |error: String| Unpublished { left: chunk.to_vec(), error: PublishError(error) };
        let entries = chunk.iter().map(|o| self.entry(o)).collect::<Result<Vec<_>, _>>();
        let entries = entries.map_err(|e| refused(e.to_string()))?;
        let answer = self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| refused(crate::aws::readable(&e)))?;
        if answer.failed_entry_count() == 0 {
            return Ok(());
        }
        // The answer's entries line up with the request's: those with an error code were not put.
        let mut error = String::new();
        let left = chunk
            .iter()
            .zip(answer.entries())
            .filter(|(_, entry)| entry.error_code().is_some())
            .map(|(outcome, entry)| {
                error = format!(
                    "{}: {}",
                    entry.error_code().unwrap_or_default(),
                    entry.error_message().unwrap_or_default()
                );
                outcome.clone()
            })
            .collect();
        Err(Unpublished { left, error: PublishError(error) })
    }
}

impl Publish for EventBridgePublisher {
    fn publish<'a>(&'a self, batch: &'a [Outcome]) -> BoxFuture<'a, Result<(), Unpublished>> {
        Box::pin(async move {
            let chunks: Vec<&[Outcome]> = batch.chunks(ENTRIES_PER_CALL).collect();
            for (index, chunk) in chunks.iter().enumerate() {
                if let Err(mut unpublished) = self.put(chunk).await {
                    unpublished.left.extend(chunks[index + 1..].iter().flat_map(|c| c.iter().cloned()));
                    return Err(unpublished);
                }
            }
            Ok(())
        })
    }
}
