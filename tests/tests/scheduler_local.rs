//! The schedule port's contract, run against the local scheduler on a redb file of its own.

use std::sync::Arc;

use capguard_tests::schedule_contract::{self, TimerProbe};
use shared::clock::SystemClock;
use shared::schedule::RetryJob;
use shared::schedule::local::{FireFuture, LocalScheduler, LocalSchedulerHandle};
use shared::store::embedded::StoreFile;

/// A started local scheduler on a temporary redb file, removed when dropped.
struct Local {
    scheduler: LocalScheduler,
    handle: Option<LocalSchedulerHandle>,
    _file: tempfile::TempPath,
}

impl Local {
    fn start(test: &str) -> Self {
        let prefix = format!("capguard-scheduler-local-{test}-");
        let file = tempfile::Builder::new().prefix(&prefix).suffix(".redb").tempfile().expect("a temporary file");
        let file = file.into_temp_path();
        let opened = StoreFile::open(&file).expect("a redb file in the temp folder");
        let scheduler = LocalScheduler::open(opened, Arc::new(SystemClock)).expect("the timer table");
        // The contract's timers are due a day ahead, so none fires while a check runs.
        let handle = scheduler
            .start(|job| -> FireFuture {
                Box::pin(async move { panic!("{} fired during the contract", job.schedule_name()) })
            })
            .expect("the loop starts");
        Self { scheduler, handle: Some(handle), _file: file }
    }

    async fn stop(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await;
        }
    }
}

impl TimerProbe for Local {
    async fn is_set(&self, job: &RetryJob) -> bool {
        let pending = self.scheduler.pending().await.expect("the timers can be listed");
        pending.iter().any(|timer| &timer.job == job)
    }
}

#[tokio::test]
async fn contract_setting_a_timer_twice_is_success() {
    let local = Local::start("twice");
    schedule_contract::setting_a_timer_twice_is_success(&local.scheduler, &local).await;
    local.stop().await;
}

#[tokio::test]
async fn contract_cancelling_a_missing_timer_is_success() {
    let local = Local::start("missing");
    schedule_contract::cancelling_a_missing_timer_is_success(&local.scheduler, &local).await;
    local.stop().await;
}

#[tokio::test]
async fn contract_a_cancelled_timer_can_be_set_again() {
    let local = Local::start("again");
    schedule_contract::a_cancelled_timer_can_be_set_again(&local.scheduler, &local).await;
    local.stop().await;
}
