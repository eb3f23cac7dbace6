//! The retry executor: the JSON input of a retry schedule (`{"send_id", "attempt", "try",
//! "purpose"}`) is the invocation's payload. An error makes the invocation fail, so that
//! EventBridge Scheduler retries it and, in the end, dead-letters it: nothing is lost.

use serde_json::{Value, json};
use shared::cloud::CloudApi;
use shared::schedule::{RetryJob, RetryScheduler};
use shared::store::SendStore;
use shared::usecase::retry::{RetryOutcome, RetryReport, retry};
use shared::usecase::sending::SlotOutcome;
use shared::usecase::{Deps, UseCaseError};

/// Handles one firing and describes what it did.
pub async fn handle<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    job: &RetryJob,
) -> Result<(Value, RetryReport), UseCaseError> {
    let report = retry(deps, job).await?;
    let outcome = match &report.outcome {
        RetryOutcome::Sent(SlotOutcome::Accepted { wamid }) => json!({ "outcome": "sent", "wamid": wamid }),
        RetryOutcome::Sent(SlotOutcome::Failed { error, .. }) => json!({ "outcome": "failed", "code": error.code }),
        RetryOutcome::Sent(SlotOutcome::Unknown) => json!({ "outcome": "pending" }),
        RetryOutcome::Skipped(why) => json!({ "outcome": "skipped", "why": why }),
        RetryOutcome::Held => json!({ "outcome": "held" }),
        RetryOutcome::Settled => json!({ "outcome": "settled" }),
    };
    Ok((outcome, report))
}
