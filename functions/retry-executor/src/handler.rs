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

#[cfg(test)]
mod tests {
    //! The handler driven by the payload an EventBridge schedule delivers (its JSON input), read
    //! as the runtime reads it into a `LambdaEvent<RetryJob>`, against the embedded store, the
    //! local scheduler and the Cloud API sandbox.

    use lambda_runtime::{Context, LambdaEvent};
    use shared::domain::lifecycle::{Phase, Slot};
    use shared::domain::rules::Category;
    use shared::domain::verdict::Verdict;
    use shared::store::{NewSend, RecordedError, SendId, Start, TemplateRef};
    use shared::usecase::Tally;

    use capguard_tests::local_ports::SandboxedPorts as Stack;

    use super::*;

    /// What the runtime hands `main`'s service for a schedule whose input is `input`.
    fn invocation(input: &str) -> LambdaEvent<RetryJob> {
        LambdaEvent::new(serde_json::from_str(input).expect("a retry job"), Context::default())
    }

    fn input(send_id: &SendId) -> String {
        format!(r#"{{"send_id": "{send_id}", "attempt": 2, "try": 1, "purpose": "send"}}"#)
    }

    /// A marketing send to India whose first attempt was capped: it waits for attempt 2.
    async fn capped_send(stack: &Stack) -> SendId {
        let store = &stack.deps.store;
        let now = stack.deps.clock.now();
        let send = NewSend {
            idempotency_key: "spring-retry-1".into(),
            recipient: "919812345678".into(),
            phone_number_id: "106540352242922".into(),
            template: TemplateRef { name: "spring_sale".into(), language: "en_US".into(), components: vec![] },
            category: Category::Marketing,
            campaign: Some("spring".into()),
            max_attempts: stack.deps.rules.ladder.max_attempts(),
        };
        let id = store.record_send(&send, Start::ClaimFirst, now).await.unwrap().send.id;
        let capped = RecordedError { code: 131049, title: Some("per-user marketing limit".into()) };
        let verdict = Verdict::Ladder { attempt: 2, due: now };
        let waiting = store.record_failure(&id, Slot::FIRST, &capped, verdict, now).await.unwrap();
        assert!(waiting.is_some_and(|s| matches!(s.life.phase, Phase::Waiting { .. })), "the send waits for attempt 2");
        id
    }

    #[tokio::test]
    async fn a_firing_for_a_waiting_send_sends_its_next_attempt() {
        let stack = Stack::start("retry-executor", 11).await;
        let id = capped_send(&stack).await;
        let event = invocation(&input(&id));
        let (outcome, report) = handle(&stack.deps, &event.payload).await.unwrap();
        assert_eq!(outcome["outcome"], "sent", "{outcome}");
        let wamid = outcome["wamid"].as_str().expect("the sandbox's wamid");
        assert!(wamid.starts_with("wamid."), "{wamid}");
        assert_eq!(report.tally.get("retries_sent_attempt_2"), 1);
        let send = stack.deps.store.get_send(&id).await.unwrap().unwrap();
        let attempt = send.attempt(Slot { attempt: 2, try_no: 1 }).expect("attempt 2 is recorded");
        assert_eq!(attempt.wamid.as_deref(), Some(wamid));
        assert_eq!(stack.sandbox.as_ref().unwrap().stats().accepted, 1);
        stack.stop().await;
    }

    #[tokio::test]
    async fn the_same_firing_again_is_skipped_and_sends_nothing() {
        let stack = Stack::start("retry-executor", 11).await;
        let id = capped_send(&stack).await;
        let event = invocation(&input(&id));
        handle(&stack.deps, &event.payload).await.unwrap();
        let (outcome, report) = handle(&stack.deps, &event.payload).await.unwrap();
        assert_eq!(outcome["outcome"], "skipped", "{outcome}");
        assert_eq!(outcome["why"], "not_due", "{outcome}");
        assert_eq!(report.tally, Tally::default());
        assert_eq!(stack.sandbox.as_ref().unwrap().stats().accepted, 1, "sent once");
        stack.stop().await;
    }

    #[tokio::test]
    async fn a_firing_for_an_unknown_send_is_skipped() {
        let stack = Stack::start("retry-executor", 11).await;
        let unknown = SendId::derive("106540352242922", "never-recorded", "919812345678");
        let (outcome, _) = handle(&stack.deps, &invocation(&input(&unknown)).payload).await.unwrap();
        assert_eq!(outcome["outcome"], "skipped", "{outcome}");
        assert_eq!(outcome["why"], "unknown_send", "{outcome}");
        assert_eq!(stack.sandbox.as_ref().unwrap().stats().accepted, 0);
        stack.stop().await;
    }

    #[test]
    fn a_schedule_input_without_a_purpose_is_a_send_and_a_bad_one_is_refused() {
        let id = SendId::derive("1", "2", "3");
        let job = invocation(&format!(r#"{{"send_id": "{id}", "attempt": 2, "try": 1}}"#)).payload;
        assert_eq!(job, RetryJob::new(id, Slot { attempt: 2, try_no: 1 }));
        assert!(serde_json::from_str::<RetryJob>(r#"{"send_id": "nope", "attempt": 2, "try": 1}"#).is_err());
    }
}
