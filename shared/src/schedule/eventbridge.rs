//! The EventBridge Scheduler adapter of the schedule port: one one-time schedule per retry.
//!
//! Each [`RetryJob`] becomes an `at(...)` schedule in UTC, named by [`RetryJob::schedule_name`] in
//! the stack's schedule group. Its target is the retry executor Lambda, whose payload is the job's
//! JSON; the target's retry policy bounds how long the service keeps trying to invoke it, and an
//! invocation it gives up on lands in the dead-letter queue. The service deletes the schedule once
//! it has run (`ActionAfterCompletion: DELETE`), so nothing is left to clean up.
//!
//! Both calls are safe to repeat: creating a schedule whose name exists is success (the first one
//! stands), and so is deleting one that does not exist (it fired, or was never set).

use std::fmt::Debug;

use aws_sdk_scheduler::Client;
use aws_sdk_scheduler::error::{DisplayErrorContext, SdkError};
use aws_sdk_scheduler::operation::create_schedule::CreateScheduleError;
use aws_sdk_scheduler::operation::delete_schedule::DeleteScheduleError;
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, DeadLetterConfig, FlexibleTimeWindow, FlexibleTimeWindowMode, RetryPolicy, ScheduleState,
    Target,
};
use chrono::{DateTime, TimeDelta, Utc};
use sha2::{Digest, Sha256};

use super::{RetryJob, RetryScheduler, ScheduleError};

/// How far ahead the earliest `at()` time is set. EventBridge Scheduler refuses a one-time
/// schedule in the past, and one due within seconds may already be past when the request lands.
const MIN_LEAD: TimeDelta = TimeDelta::minutes(1);

/// Where the schedules go and what they invoke: the resources of the SAM template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventBridgeSettings {
    /// The schedule group that holds capguard's retry schedules.
    pub group_name: String,
    /// The retry executor Lambda.
    pub target_arn: String,
    /// The role EventBridge Scheduler assumes to invoke the target and write to the queue.
    pub role_arn: String,
    /// The SQS queue that receives an invocation the service gave up on.
    pub dead_letter_arn: String,
    pub retry_policy: TargetRetryPolicy,
}

/// How long and how often EventBridge Scheduler retries invoking the target, within the
/// service's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetRetryPolicy {
    max_event_age_seconds: u32,
    max_retry_attempts: u32,
}

/// A retry policy outside the service's limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRetryPolicy {
    #[error("the maximum event age must be 60 to 86400 seconds, not {0}")]
    EventAge(u32),
    #[error("the maximum retry attempts must be 0 to 185, not {0}")]
    RetryAttempts(u32),
}

impl TargetRetryPolicy {
    pub const EVENT_AGE_SECONDS: std::ops::RangeInclusive<u32> = 60..=86_400;
    pub const RETRY_ATTEMPTS: std::ops::RangeInclusive<u32> = 0..=185;

    pub fn new(max_event_age_seconds: u32, max_retry_attempts: u32) -> Result<Self, InvalidRetryPolicy> {
        if !Self::EVENT_AGE_SECONDS.contains(&max_event_age_seconds) {
            return Err(InvalidRetryPolicy::EventAge(max_event_age_seconds));
        }
        if !Self::RETRY_ATTEMPTS.contains(&max_retry_attempts) {
            return Err(InvalidRetryPolicy::RetryAttempts(max_retry_attempts));
        }
        Ok(Self { max_event_age_seconds, max_retry_attempts })
    }

    pub fn max_event_age_seconds(&self) -> u32 {
        self.max_event_age_seconds
    }

    pub fn max_retry_attempts(&self) -> u32 {
        self.max_retry_attempts
    }

    fn to_sdk(self) -> RetryPolicy {
        // Both values are within the ranges checked above, far below i32::MAX.
        RetryPolicy::builder()
            .maximum_event_age_in_seconds(self.max_event_age_seconds as i32)
            .maximum_retry_attempts(self.max_retry_attempts as i32)
            .build()
    }
}

impl Default for TargetRetryPolicy {
    /// The service's own defaults: keep trying for a day, up to 185 times.
    fn default() -> Self {
        Self { max_event_age_seconds: 86_400, max_retry_attempts: 185 }
    }
}

/// Builds an EventBridge Scheduler client. Without an endpoint it is configured from the
/// environment as any AWS client is; with one (an emulator such as moto) it talks to that
/// endpoint with static dummy credentials in `us-east-1`, so that no AWS account is needed.
pub async fn sdk_client(endpoint: Option<&str>) -> Client {
    Client::new(&crate::aws::sdk_config(endpoint).await)
}

/// The schedule port on EventBridge Scheduler.
#[derive(Debug, Clone)]
pub struct EventBridgeScheduler {
    client: Client,
    settings: EventBridgeSettings,
}

impl EventBridgeScheduler {
    pub fn new(client: Client, settings: EventBridgeSettings) -> Self {
        Self { client, settings }
    }

    /// Connects to EventBridge Scheduler, or to the emulator at `endpoint` (see [`sdk_client`]).
    pub async fn connect(settings: EventBridgeSettings, endpoint: Option<&str>) -> Self {
        Self::new(sdk_client(endpoint).await, settings)
    }

    pub fn settings(&self) -> &EventBridgeSettings {
        &self.settings
    }

    fn target(&self, job: &RetryJob) -> Result<Target, ScheduleError> {
        let input =
            serde_json::to_string(job).map_err(|e| ScheduleError::Refused(format!("retry job to JSON: {e}")))?;
        Target::builder()
            .arn(&self.settings.target_arn)
            .role_arn(&self.settings.role_arn)
            .input(input)
            .retry_policy(self.settings.retry_policy.to_sdk())
            .dead_letter_config(DeadLetterConfig::builder().arn(&self.settings.dead_letter_arn).build())
            .build()
            .map_err(|e| ScheduleError::Refused(format!("schedule target: {e}")))
    }
}

impl RetryScheduler for EventBridgeScheduler {
    async fn schedule(&self, job: &RetryJob, due: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), ScheduleError> {
        let name = job.schedule_name();
        let expression = at_expression(due, now);
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|e| ScheduleError::Refused(format!("flexible time window: {e}")))?;
        let created = self
            .client
            .create_schedule()
            .name(&name)
            .group_name(&self.settings.group_name)
            .client_token(client_token(&name, &expression))
            .schedule_expression(&expression)
            .schedule_expression_timezone("UTC")
            .flexible_time_window(window)
            .action_after_completion(ActionAfterCompletion::Delete)
            .state(ScheduleState::Enabled)
            .target(self.target(job)?)
            .send()
            .await;
        match created {
            Ok(_) => {
                tracing::debug!(schedule = %name, %expression, "retry scheduled");
                Ok(())
            }
            // The name is the job: a schedule of that name is this timer, set by an earlier call.
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conflict_exception()) => {
                tracing::debug!(schedule = %name, "retry already scheduled");
                Ok(())
            }
            Err(e) => Err(port_error(e)),
        }
    }

    async fn cancel(&self, job: &RetryJob) -> Result<(), ScheduleError> {
        let name = job.schedule_name();
        let deleted = self.client.delete_schedule().name(&name).group_name(&self.settings.group_name).send().await;
        match deleted {
            Ok(_) => {
                tracing::debug!(schedule = %name, "retry cancelled");
                Ok(())
            }
            // Already fired (and deleted by the service) or never set: either way it is gone.
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => Ok(()),
            Err(e) => Err(port_error(e)),
        }
    }
}

/// The one-time schedule expression for `due`, at least [`MIN_LEAD`] after `now`. Seconds are
/// rounded up, so that the retry never runs before its due time.
fn at_expression(due: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let at = due.max(now + MIN_LEAD);
    let seconds = at.timestamp() + i64::from(at.timestamp_subsec_nanos() > 0);
    let at = DateTime::from_timestamp(seconds, 0).unwrap_or(at);
    at.format("at(%Y-%m-%dT%H:%M:%S)").to_string()
}

/// The idempotency token of a create: derived from the name and the time asked for, so that an
/// SDK retry of the same request is recognised, while setting the timer again for another time
/// after a cancel is not taken for a replay of the first create. 64 hex digits, the service's
/// maximum length.
fn client_token(name: &str, expression: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(name.as_bytes());
    hash.update([0]);
    hash.update(expression.as_bytes());
    hex::encode(hash.finalize())
}

/// The causes of a failed call that the port tells apart, as each operation's error names them.
trait ServiceFailure {
    fn is_throttling(&self) -> bool;
    fn is_validation(&self) -> bool;
}

impl ServiceFailure for CreateScheduleError {
    fn is_throttling(&self) -> bool {
        self.is_throttling_exception()
    }

    fn is_validation(&self) -> bool {
        self.is_validation_exception()
    }
}

impl ServiceFailure for DeleteScheduleError {
    fn is_throttling(&self) -> bool {
        self.is_throttling_exception()
    }

    fn is_validation(&self) -> bool {
        self.is_validation_exception()
    }
}

/// Maps an SDK failure to the port's error.
fn port_error<E, R>(err: SdkError<E, R>) -> ScheduleError
where
    E: ServiceFailure + std::error::Error + Send + Sync + 'static,
    R: Debug + Send + Sync + 'static,
{
    let detail = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::ServiceError(failure) if failure.err().is_throttling() => ScheduleError::Throttled(detail),
        SdkError::ServiceError(failure) if failure.err().is_validation() => ScheduleError::Refused(detail),
        // The request could not even be built: sending it again would not help.
        SdkError::ConstructionFailure(_) => ScheduleError::Refused(detail),
        _ => ScheduleError::Unavailable(detail),
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_scheduler::types::error::{
        InternalServerException, ResourceNotFoundException, ThrottlingException, ValidationException,
    };

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_future_due_time_is_its_own_at_expression_in_utc() {
        let now = at("2026-11-22T10:00:00Z");
        assert_eq!(at_expression(at("2026-11-22T22:00:00Z"), now), "at(2026-11-22T22:00:00)");
        assert_eq!(at_expression(at("2026-11-23T09:30:00+02:00"), now), "at(2026-11-23T07:30:00)");
    }

    #[test]
    fn a_fraction_of_a_second_rounds_up_so_the_retry_is_never_early() {
        let now = at("2026-11-22T10:00:00Z");
        assert_eq!(at_expression(at("2026-11-22T22:00:00.001Z"), now), "at(2026-11-22T22:00:01)");
    }

    #[test]
    fn a_due_time_past_or_within_a_minute_is_set_a_minute_ahead() {
        let now = at("2026-11-22T10:00:00.250Z");
        for due in [at("2026-11-21T10:00:00Z"), now, at("2026-11-22T10:00:30Z")] {
            assert_eq!(at_expression(due, now), "at(2026-11-22T10:01:01)", "{due}");
        }
    }

    #[test]
    fn the_client_token_is_deterministic_and_within_the_limits() {
        let token = client_token("cg-x-a2-t1", "at(2026-11-22T22:00:00)");
        assert_eq!(token, client_token("cg-x-a2-t1", "at(2026-11-22T22:00:00)"));
        assert_ne!(token, client_token("cg-x-a2-t1", "at(2026-11-23T22:00:00)"));
        assert_ne!(token, client_token("cg-x-a3-t1", "at(2026-11-22T22:00:00)"));
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn the_retry_policy_stays_within_the_service_limits() {
        assert!(TargetRetryPolicy::new(60, 0).is_ok());
        assert!(TargetRetryPolicy::new(86_400, 185).is_ok());
        assert_eq!(TargetRetryPolicy::new(59, 3), Err(InvalidRetryPolicy::EventAge(59)));
        assert_eq!(TargetRetryPolicy::new(86_401, 3), Err(InvalidRetryPolicy::EventAge(86_401)));
        assert_eq!(TargetRetryPolicy::new(3_600, 186), Err(InvalidRetryPolicy::RetryAttempts(186)));
        assert_eq!(TargetRetryPolicy::default(), TargetRetryPolicy::new(86_400, 185).unwrap());
    }

    #[test]
    fn throttling_validation_and_other_failures_map_to_the_port_errors() {
        let throttled = CreateScheduleError::ThrottlingException(
            ThrottlingException::builder().message("slow down").build().unwrap(),
        );
        let invalid = CreateScheduleError::ValidationException(
            ValidationException::builder().message("bad at()").build().unwrap(),
        );
        let internal = DeleteScheduleError::InternalServerException(
            InternalServerException::builder().message("oops").build().unwrap(),
        );
        let missing_group = CreateScheduleError::ResourceNotFoundException(
            ResourceNotFoundException::builder().message("no such group").build().unwrap(),
        );
        assert!(matches!(port_error(SdkError::service_error(throttled, ())), ScheduleError::Throttled(_)));
        assert!(matches!(port_error(SdkError::service_error(invalid, ())), ScheduleError::Refused(_)));
        assert!(matches!(port_error(SdkError::service_error(internal, ())), ScheduleError::Unavailable(_)));
        assert!(matches!(port_error(SdkError::service_error(missing_group, ())), ScheduleError::Unavailable(_)));
        let timeout = SdkError::<CreateScheduleError, ()>::timeout_error("no answer");
        assert!(matches!(port_error(timeout), ScheduleError::Unavailable(_)));
        let unbuildable = SdkError::<CreateScheduleError, ()>::construction_failure("no name");
        assert!(matches!(port_error(unbuildable), ScheduleError::Refused(_)));
    }
}
