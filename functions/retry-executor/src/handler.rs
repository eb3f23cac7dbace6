//! The retry executor's two invocations, both from EventBridge Scheduler: a retry schedule's JSON
//! input (`{"send_id", "attempt", "try", "purpose"}`), which drives its send on, and the recurring
//! sweep's (`{"sweep": {}}`), which drives on every send whose prompt never came. An error makes
//! the invocation fail, so that Lambda retries it and then hands it to the on-failure queue; the
//! sweep finds whatever a failed invocation left.

use std::time::Duration;

use lambda_runtime::Diagnostic;
use serde::Serialize;
use serde_json::Value;
use shared::cloud::CloudApi;
use shared::schedule::{RetryJob, RetryScheduler};
use shared::store::SendStore;
use shared::usecase::retry::{RetryOutcome, Skip, retry};
use shared::usecase::sending::SlotOutcome;
use shared::usecase::sweep::sweep;
use shared::usecase::{Deps, Tally, UseCaseError};

/// What an invocation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    Retry(RetryJob),
    Sweep,
}

/// Why an invocation could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    #[error("the input is neither a retry job nor a sweep: {0}")]
    BadInput(String),
    #[error(transparent)]
    UseCase(#[from] UseCaseError),
}

/// What Lambda records of a failed invocation: the error's kind as its type, so that a failure
/// queue or a log reader can tell bad input from a store or scheduler that failed.
impl From<InvocationError> for Diagnostic {
    fn from(error: InvocationError) -> Self {
        let kind = match &error {
            InvocationError::BadInput(_) => "BadInput",
            InvocationError::UseCase(_) => "UseCaseFailed",
        };
        Diagnostic { error_type: kind.to_owned(), error_message: error.to_string() }
    }
}

impl Invocation {
    /// Reads the payload: `{"sweep": …}` is the sweep, anything else must be a retry job.
    pub fn from_payload(payload: Value) -> Result<Self, InvocationError> {
        if payload.get("sweep").is_some() {
            return Ok(Self::Sweep);
        }
        serde_json::from_value(payload).map(Self::Retry).map_err(|e| InvocationError::BadInput(e.to_string()))
    }
}

/// The invocation's answer, as the function returns it (`{"outcome": …}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Answer {
    Sent { wamid: String },
    Failed { code: i64 },
    Pending,
    Skipped { why: Skip },
    Held,
    Morning,
    Settled,
    Awaiting,
    Swept { listed: usize, moved: usize, failed: usize, left: usize },
}

impl From<&RetryOutcome> for Answer {
    fn from(outcome: &RetryOutcome) -> Self {
        match outcome {
            RetryOutcome::Sent(SlotOutcome::Accepted { wamid }) => Self::Sent { wamid: wamid.clone() },
            RetryOutcome::Sent(SlotOutcome::Failed { error, .. }) => Self::Failed { code: error.code },
            RetryOutcome::Sent(SlotOutcome::Unknown) => Self::Pending,
            RetryOutcome::Skipped(why) => Self::Skipped { why: *why },
            RetryOutcome::Held => Self::Held,
            RetryOutcome::Morning => Self::Morning,
            RetryOutcome::Settled => Self::Settled,
            RetryOutcome::Awaiting => Self::Awaiting,
        }
    }
}

/// How long before the invocation's deadline a sweep stops starting new sends, so that none is
/// claimed and then cut off: the longest one send can take and the writes after it
/// ([`shared::budget`]).
pub const SWEEP_MARGIN: Duration = shared::budget::SEND_RESERVE;

/// Handles one invocation; `time_left` is what remains of it. Returns the answer and what was
/// counted.
pub async fn handle<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    invocation: &Invocation,
    time_left: Duration,
) -> Result<(Answer, Tally), InvocationError> {
    match invocation {
        Invocation::Retry(job) => {
            let report = retry(deps, job).await?;
            Ok((Answer::from(&report.outcome), report.tally))
        }
        Invocation::Sweep => {
            let report = sweep(deps, time_left.saturating_sub(SWEEP_MARGIN)).await?;
            let answer =
                Answer::Swept { listed: report.listed, moved: report.moved, failed: report.failed, left: report.left };
            Ok((answer, report.tally))
        }
    }
}

#[cfg(test)]
mod tests {
    //! The handler driven by the payload an EventBridge schedule delivers (its JSON input), read
    //! as the runtime reads it into a `LambdaEvent<RetryJob>`, against the embedded store, the
    //! local scheduler and the Cloud API sandbox.

    use chrono::TimeDelta;
    use lambda_runtime::{Context, LambdaEvent};
    use shared::domain::lifecycle::{Phase, Slot};
    use shared::domain::rules::Category;
    use shared::domain::verdict::Verdict;
    use shared::store::{NewSend, RecordedError, SendId, Start, StoreError, TemplateRef};

    use capguard_tests::local_ports::SandboxedPorts as Stack;

    use super::*;
    use shared::store::prelude::*;

    /// What `main` makes of the payload the runtime hands it for a schedule whose input is
    /// `input`.
    fn invocation(input: &str) -> Invocation {
        let event: LambdaEvent<Value> =
            LambdaEvent::new(serde_json::from_str(input).expect("JSON"), Context::default());
        Invocation::from_payload(event.payload).expect("an invocation")
    }

    /// Handles `invocation` and gives the answer as the function returns it, in JSON.
    async fn handled<S: SendStore, R: RetryScheduler, C: CloudApi>(
        deps: &Deps<S, R, C>,
        invocation: &Invocation,
        time_left: Duration,
    ) -> Result<(Value, Tally), InvocationError> {
        let (answer, tally) = handle(deps, invocation, time_left).await?;
        Ok((serde_json::to_value(answer).expect("an answer is JSON"), tally))
    }

    /// A fresh invocation of the function, which has 90 s (template.yaml).
    const TIME_LEFT: Duration = Duration::from_secs(90);

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
            retry_until: None,
            utc_offset_minutes: None,
            tier: None,
            opt_in_source: None,
            held_for_limit: false,
        };
        let id = store.record_send(&send, Start::Due(now), now).await.unwrap().send.id;
        store.claim(&id, Slot::FIRST, now, now + TimeDelta::minutes(15)).await.unwrap().expect("claims");
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
        let (outcome, tally) = handled(&stack.deps, &invocation(&input(&id)), TIME_LEFT).await.unwrap();
        assert_eq!(outcome["outcome"], "sent", "{outcome}");
        let wamid = outcome["wamid"].as_str().expect("the sandbox's wamid");
        assert!(wamid.starts_with("wamid."), "{wamid}");
        assert_eq!(tally.get("retries_sent_attempt_2"), 1);
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
        handled(&stack.deps, &event, TIME_LEFT).await.unwrap();
        let (outcome, tally) = handled(&stack.deps, &event, TIME_LEFT).await.unwrap();
        assert_eq!(outcome["outcome"], "skipped", "{outcome}");
        assert_eq!(outcome["why"], "not_due", "{outcome}");
        assert_eq!(tally, Tally::default());
        assert_eq!(stack.sandbox.as_ref().unwrap().stats().accepted, 1, "sent once");
        stack.stop().await;
    }

    #[tokio::test]
    async fn a_firing_for_an_unknown_send_is_skipped() {
        let stack = Stack::start("retry-executor", 11).await;
        let unknown = SendId::derive("106540352242922", "never-recorded", "919812345678");
        let (outcome, _) = handled(&stack.deps, &invocation(&input(&unknown)), TIME_LEFT).await.unwrap();
        assert_eq!(outcome["outcome"], "skipped", "{outcome}");
        assert_eq!(outcome["why"], "unknown_send", "{outcome}");
        assert_eq!(stack.sandbox.as_ref().unwrap().stats().accepted, 0);
        stack.stop().await;
    }

    #[tokio::test]
    async fn the_sweep_sends_a_waiting_send_whose_timer_never_fired() {
        let mut stack = Stack::start("retry-executor", 11).await;
        let id = capped_send(&stack).await;
        // Past the grace the sweep leaves a timer to fire first; no timer was ever set.
        stack.deps.sending.sweep_grace = TimeDelta::milliseconds(10);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (outcome, tally) = handled(&stack.deps, &invocation(r#"{"sweep": {}}"#), TIME_LEFT).await.unwrap();
        assert_eq!((outcome["outcome"].as_str(), outcome["moved"].as_u64()), (Some("swept"), Some(1)), "{outcome}");
        assert_eq!((tally.get("swept_waiting"), tally.get("sends")), (1, 1));
        let send = stack.deps.store.get_send(&id).await.unwrap().unwrap();
        assert!(send.attempt(Slot { attempt: 2, try_no: 1 }).and_then(|a| a.wamid.as_ref()).is_some(), "{send:?}");
        let (again, _) = handled(&stack.deps, &invocation(r#"{"sweep": {}}"#), TIME_LEFT).await.unwrap();
        assert_eq!(again["moved"], 0, "nothing is overdue any more: {again}");
        assert_eq!(stack.sandbox.as_ref().unwrap().stats().accepted, 1);
        stack.stop().await;
    }

    #[tokio::test]
    async fn a_sweep_with_no_time_left_starts_no_send() {
        let mut stack = Stack::start("retry-executor", 11).await;
        capped_send(&stack).await;
        stack.deps.sending.sweep_grace = TimeDelta::milliseconds(10);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (outcome, _) = handled(&stack.deps, &invocation(r#"{"sweep": {}}"#), SWEEP_MARGIN).await.unwrap();
        assert_eq!((outcome["moved"].as_u64(), outcome["left"].as_u64()), (Some(0), Some(1)), "{outcome}");
        assert_eq!(stack.sandbox.as_ref().unwrap().stats().accepted, 0, "nothing is claimed to be cut off");
        stack.stop().await;
    }

    #[test]
    fn a_schedule_input_without_a_purpose_is_a_send_and_a_bad_one_is_refused() {
        let id = SendId::derive("1", "2", "3");
        let job = invocation(&format!(r#"{{"send_id": "{id}", "attempt": 2, "try": 1}}"#));
        assert_eq!(job, Invocation::Retry(RetryJob::new(id, Slot { attempt: 2, try_no: 1 })));
        let bad = serde_json::json!({"send_id": "nope", "attempt": 2, "try": 1});
        assert!(matches!(Invocation::from_payload(bad), Err(InvocationError::BadInput(_))));
    }

    #[test]
    fn lambda_records_a_failed_invocation_by_its_kind() {
        let error = Invocation::from_payload(serde_json::json!({"attempt": 2})).unwrap_err();
        let diagnostic = Diagnostic::from(error);
        assert_eq!(diagnostic.error_type, "BadInput");
        assert!(diagnostic.error_message.starts_with("the input is neither a retry job nor a sweep"), "{diagnostic:?}");
        let failed = Diagnostic::from(InvocationError::UseCase(UseCaseError::Store(StoreError::Throttled(
            "ProvisionedThroughputExceeded".into(),
        ))));
        assert_eq!(failed.error_type, "UseCaseFailed");
    }
}
