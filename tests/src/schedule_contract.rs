//! The schedule port's contract: what every [`RetryScheduler`] adapter does, whatever keeps its
//! timers. `tests/scheduler_eventbridge.rs` runs these checks against EventBridge Scheduler (on
//! moto) and `tests/scheduler_local.rs` against the local scheduler.
//!
//! The port itself cannot say whether a timer is set, so each check also takes a [`TimerProbe`]
//! that asks the adapter's own backend.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use shared::domain::lifecycle::Slot;
use shared::schedule::{RetryJob, RetryScheduler};
use shared::store::SendId;

/// Whether an adapter's backend holds a timer for a job.
pub trait TimerProbe {
    fn is_set(&self, job: &RetryJob) -> impl Future<Output = bool>;
}

/// A job no other test or run has used: the backends may outlive a test run.
pub fn fresh_job() -> RetryJob {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let key = format!(
        "{}-{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap_or_default(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    );
    RetryJob::new(SendId::derive("contract", &key, "15550000000"), Slot { attempt: 2, try_no: 1 })
}

/// A due time no check waits for.
fn tomorrow(now: DateTime<Utc>) -> DateTime<Utc> {
    now + TimeDelta::days(1)
}

/// Setting the same job's timer twice is success, and leaves it set.
pub async fn setting_a_timer_twice_is_success(scheduler: &impl RetryScheduler, probe: &impl TimerProbe) {
    let job = fresh_job();
    let now = Utc::now();
    scheduler.schedule(&job, tomorrow(now), now).await.expect("the first setting");
    scheduler.schedule(&job, tomorrow(now) + TimeDelta::hours(1), now).await.expect("the second setting is success");
    assert!(probe.is_set(&job).await, "the timer is set");
    scheduler.cancel(&job).await.expect("clean-up");
}

/// Cancelling a timer that was never set (or has fired) is success, however often.
pub async fn cancelling_a_missing_timer_is_success(scheduler: &impl RetryScheduler, probe: &impl TimerProbe) {
    let job = fresh_job();
    scheduler.cancel(&job).await.expect("cancelling a timer never set");
    scheduler.cancel(&job).await.expect("cancelling it again");
    assert!(!probe.is_set(&job).await, "no timer appeared");
}

/// A cancelled timer is gone, and the same job's timer can be set again.
pub async fn a_cancelled_timer_can_be_set_again(scheduler: &impl RetryScheduler, probe: &impl TimerProbe) {
    let job = fresh_job();
    let now = Utc::now();
    scheduler.schedule(&job, tomorrow(now), now).await.expect("setting the timer");
    assert!(probe.is_set(&job).await, "the timer is set");
    scheduler.cancel(&job).await.expect("cancelling it");
    assert!(!probe.is_set(&job).await, "the cancelled timer is gone");
    scheduler.schedule(&job, tomorrow(now) + TimeDelta::hours(2), now).await.expect("setting it again");
    assert!(probe.is_set(&job).await, "the timer is set again");
    scheduler.cancel(&job).await.expect("clean-up");
}
