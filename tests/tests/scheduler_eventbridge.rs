//! The EventBridge Scheduler adapter against a real HTTP peer, moto's server: what it asks the
//! service to store for a retry, its idempotent paths, and the schedule port's contract.
//!
//! scripts/test starts moto and exports `CAPGUARD_SCHEDULER_ENDPOINT`. moto stores schedules but
//! never fires them, so these tests check the requests; the retry executor is tested by calling
//! it with the schedule's input.

use aws_sdk_scheduler::Client;
use aws_sdk_scheduler::error::DisplayErrorContext;
use aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput;
use aws_sdk_scheduler::types::{ActionAfterCompletion, FlexibleTimeWindowMode, ScheduleState};
use capguard_tests::schedule_contract::{self, TimerProbe, fresh_job};
use chrono::{DateTime, TimeDelta, Utc};
use shared::schedule::eventbridge::{EventBridgeScheduler, EventBridgeSettings, TargetRetryPolicy, sdk_client};
use shared::schedule::{RetryJob, RetryScheduler};

const TARGET_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:capguard-retry-executor";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/capguard-scheduler";
const DEAD_LETTER_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:capguard-retry-dlq";

/// The adapter on moto, with a schedule group of its own, and a client to look at what it stored.
struct Moto {
    client: Client,
    scheduler: EventBridgeScheduler,
}

impl Moto {
    async fn new() -> Self {
        let endpoint = std::env::var("CAPGUARD_SCHEDULER_ENDPOINT")
            .unwrap_or_else(|_| panic!("CAPGUARD_SCHEDULER_ENDPOINT is not set: run scripts/test, which starts moto"));
        let client = sdk_client(Some(&endpoint)).await;
        // moto answers a schedule in a missing group with a 500, so each test makes its own.
        let group = format!("capguard-test-{}", fresh_job().send_id);
        client.create_schedule_group().name(&group).send().await.unwrap_or_else(|e| {
            panic!("creating the schedule group on moto at {endpoint}: {}", DisplayErrorContext(&e))
        });
        let settings = EventBridgeSettings {
            group_name: group,
            target_arn: TARGET_ARN.to_owned(),
            role_arn: ROLE_ARN.to_owned(),
            dead_letter_arn: DEAD_LETTER_ARN.to_owned(),
            retry_policy: TargetRetryPolicy::new(3_600, 3).unwrap(),
        };
        Self { scheduler: EventBridgeScheduler::new(client.clone(), settings), client }
    }

    /// What moto holds for `job`, or `None` when it answers "not found".
    async fn stored(&self, job: &RetryJob) -> Option<GetScheduleOutput> {
        let got = self
            .client
            .get_schedule()
            .name(job.schedule_name())
            .group_name(&self.scheduler.settings().group_name)
            .send()
            .await;
        match got {
            Ok(schedule) => Some(schedule),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => None,
            Err(e) => panic!("GetSchedule: {}", DisplayErrorContext(&e)),
        }
    }

    async fn expression(&self, job: &RetryJob) -> String {
        let stored = self.stored(job).await.expect("the schedule exists");
        stored.schedule_expression().expect("an expression").to_owned()
    }
}

impl TimerProbe for Moto {
    async fn is_set(&self, job: &RetryJob) -> bool {
        self.stored(job).await.is_some()
    }
}

/// The current time in whole seconds, as `at()` expressions carry no fraction.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap()
}

fn at(time: DateTime<Utc>) -> String {
    time.format("at(%Y-%m-%dT%H:%M:%S)").to_string()
}

#[tokio::test]
async fn a_retry_is_stored_as_a_one_time_utc_schedule_invoking_the_retry_executor() {
    let moto = Moto::new().await;
    let job = fresh_job();
    let now = now();
    let due = now + TimeDelta::hours(12);
    moto.scheduler.schedule(&job, due, now).await.unwrap();

    let stored = moto.stored(&job).await.expect("the schedule exists");
    assert_eq!(stored.name(), Some(job.schedule_name().as_str()));
    assert_eq!(stored.group_name(), Some(moto.scheduler.settings().group_name.as_str()));
    assert_eq!(stored.schedule_expression(), Some(at(due).as_str()));
    assert_eq!(stored.schedule_expression_timezone(), Some("UTC"));
    assert_eq!(stored.flexible_time_window().map(|w| w.mode()), Some(&FlexibleTimeWindowMode::Off));
    assert_eq!(stored.action_after_completion(), Some(&ActionAfterCompletion::Delete));
    assert_eq!(stored.state(), Some(&ScheduleState::Enabled));

    let target = stored.target().expect("a target");
    assert_eq!(target.arn(), TARGET_ARN);
    assert_eq!(target.role_arn(), ROLE_ARN);
    let input: serde_json::Value = serde_json::from_str(target.input().expect("an input")).unwrap();
    assert_eq!(input, serde_json::to_value(&job).unwrap());
    assert_eq!(serde_json::from_value::<RetryJob>(input).unwrap(), job);
    let retry = target.retry_policy().expect("a retry policy");
    assert_eq!(retry.maximum_event_age_in_seconds(), Some(3_600));
    assert_eq!(retry.maximum_retry_attempts(), Some(3));
    assert_eq!(target.dead_letter_config().and_then(|d| d.arn()), Some(DEAD_LETTER_ARN));
}

#[tokio::test]
async fn creating_a_schedule_that_exists_is_success_and_keeps_the_first() {
    let moto = Moto::new().await;
    let job = fresh_job();
    let now = now();
    let first = now + TimeDelta::hours(12);
    moto.scheduler.schedule(&job, first, now).await.unwrap();

    // moto answers ConflictException, as the service does for a name in use.
    moto.scheduler.schedule(&job, now + TimeDelta::hours(24), now).await.expect("a duplicate create is success");
    assert_eq!(moto.expression(&job).await, at(first));
}

#[tokio::test]
async fn cancelling_twice_is_success_and_the_schedule_is_gone() {
    let moto = Moto::new().await;
    let job = fresh_job();
    let now = now();
    moto.scheduler.schedule(&job, now + TimeDelta::hours(12), now).await.unwrap();

    moto.scheduler.cancel(&job).await.expect("the first cancel deletes the schedule");
    moto.scheduler.cancel(&job).await.expect("a cancel of a missing schedule is success");
    let got = moto
        .client
        .get_schedule()
        .name(job.schedule_name())
        .group_name(&moto.scheduler.settings().group_name)
        .send()
        .await;
    let err = got.expect_err("the schedule is gone");
    assert!(err.into_service_error().is_resource_not_found_exception());
}

#[tokio::test]
async fn a_due_time_past_or_within_a_minute_is_set_a_minute_ahead() {
    let moto = Moto::new().await;
    let now = now();
    let (overdue, imminent) = (fresh_job(), fresh_job());
    moto.scheduler.schedule(&overdue, now - TimeDelta::hours(1), now).await.unwrap();
    moto.scheduler.schedule(&imminent, now + TimeDelta::seconds(30), now).await.unwrap();

    let a_minute_ahead = at(now + TimeDelta::minutes(1));
    assert_eq!(moto.expression(&overdue).await, a_minute_ahead);
    assert_eq!(moto.expression(&imminent).await, a_minute_ahead);
}

#[tokio::test]
async fn contract_setting_a_timer_twice_is_success() {
    let moto = Moto::new().await;
    schedule_contract::setting_a_timer_twice_is_success(&moto.scheduler, &moto).await;
}

#[tokio::test]
async fn contract_cancelling_a_missing_timer_is_success() {
    let moto = Moto::new().await;
    schedule_contract::cancelling_a_missing_timer_is_success(&moto.scheduler, &moto).await;
}

#[tokio::test]
async fn contract_a_cancelled_timer_can_be_set_again() {
    let moto = Moto::new().await;
    schedule_contract::a_cancelled_timer_can_be_set_again(&moto.scheduler, &moto).await;
}
