//! The schedule port: one timer per retry, fired at its due time.
//!
//! [`RetryScheduler`] is the trait; [`eventbridge`] implements it with EventBridge Scheduler
//! one-time schedules on AWS, [`local`] with timers kept in the embedded store for the local stack.
//! A timer is named from its send and slot ([`RetryJob::schedule_name`]), so creating it twice is a
//! no-op and cancelling it needs nothing but the job.

pub mod eventbridge;
pub mod local;

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::lifecycle::Slot;
use crate::domain::send::SendId;

/// What a retry timer carries: the send and the slot to send. This is the JSON input an
/// EventBridge schedule hands the retry executor, and what the local scheduler fires.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RetryJob {
    pub send_id: SendId,
    pub attempt: u32,
    #[serde(rename = "try")]
    pub try_no: u32,
    #[serde(default)]
    pub purpose: JobPurpose,
}

/// Why a timer fires.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobPurpose {
    /// Send the slot.
    #[default]
    Send,
    /// Look at a slot whose send call's outcome was unknown, and settle it if no webhook did.
    Settle,
}

impl RetryJob {
    pub fn new(send_id: SendId, slot: Slot) -> Self {
        Self { send_id, attempt: slot.attempt, try_no: slot.try_no, purpose: JobPurpose::Send }
    }

    /// The timer that settles `slot` if its outcome is still unknown when it fires.
    pub fn settle(send_id: SendId, slot: Slot) -> Self {
        Self { purpose: JobPurpose::Settle, ..Self::new(send_id, slot) }
    }

    pub fn slot(&self) -> Slot {
        Slot { attempt: self.attempt, try_no: self.try_no }
    }

    /// `cg-<send id>-a<attempt>-t<try>` (`-s` added for a settle timer): at most 64 characters
    /// of `[0-9a-z-]`. A slot is never scheduled twice for the same purpose, so a name is never
    /// reused while its timer could still be firing.
    pub fn schedule_name(&self) -> String {
        let suffix = match self.purpose {
            JobPurpose::Send => "",
            JobPurpose::Settle => "-s",
        };
        format!("cg-{}-a{}-t{}{suffix}", self.send_id, self.attempt, self.try_no)
    }
}

/// Why a timer could not be set or cancelled.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("the scheduler is throttling requests: {0}")]
    Throttled(String),
    #[error("the scheduler is unavailable: {0}")]
    Unavailable(String),
    #[error("the scheduler refused the schedule: {0}")]
    Refused(String),
}

/// The schedule port.
pub trait RetryScheduler: Send + Sync {
    /// Sets the timer for `job` at `due`. A timer of the same job that already exists is
    /// success; a due time already past fires as soon as the scheduler can.
    fn schedule(
        &self,
        job: &RetryJob,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), ScheduleError>> + Send;

    /// Removes the timer for `job`; one that does not exist (fired, or never set) is success.
    fn cancel(&self, job: &RetryJob) -> impl Future<Output = Result<(), ScheduleError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_names_its_schedule_within_the_limits() {
        let job = RetryJob::new(SendId::derive("1", "2", "3"), Slot { attempt: 4, try_no: 12 });
        let name = job.schedule_name();
        assert!(name.len() <= 64, "{name}");
        assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'), "{name}");
        assert!(name.ends_with("-a4-t12"));
        let settle = RetryJob::settle(job.send_id.clone(), job.slot()).schedule_name();
        assert_eq!(settle, format!("{name}-s"));
        assert!(settle.len() <= 64);
    }

    #[test]
    fn the_job_is_the_schedules_json_input() {
        let job = RetryJob::new(SendId::derive("1", "2", "3"), Slot { attempt: 2, try_no: 1 });
        let json = serde_json::to_value(&job).unwrap();
        assert_eq!(json["attempt"], 2);
        assert_eq!(json["try"], 1);
        assert_eq!(json["purpose"], "send");
        assert_eq!(serde_json::from_value::<RetryJob>(json).unwrap(), job);
    }
}
