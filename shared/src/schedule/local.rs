//! The local scheduler: the schedule port for the local stack (`capguard serve`, `capguard demo`),
//! doing in process what EventBridge Scheduler does on AWS.
//!
//! Each timer is a row of a redb table in the file it is given ([`StoreFile`]: the embedded
//! store's, or a file of its own beside DynamoDB), written through the store's writer, so that
//! setting or removing a timer is a step in the store's group commits and durable when answered
//! (a commit of its own would hold the file's one write lock through an `fdatasync` while the
//! store's writes wait: docs/performance.md). So a restart re-arms every pending timer, and fires
//! at once those that fell due while the process was down. One loop sleeps until the earliest due
//! time: it reads the time from a [`Clock`] and waits [`Clock::wall_time_for`] on the wall, so
//! with a scaled clock a 12 h retry fires in seconds. It fires each due timer on a task of its own
//! through the callback it was started with (the retry entry point the Lambda uses too), and
//! removes the row only once that callback has returned. A crash mid-fire therefore fires the
//! timer again on restart: delivery is at-least-once, as with EventBridge, and the retry use case
//! tolerates a second firing.
//!
//! One scheduler serves one database: two started on the same file would both fire its timers.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot};
use tokio::task::{JoinError, JoinHandle, JoinSet};

use super::{RetryJob, RetryScheduler, ScheduleError};
use crate::clock::Clock;
use crate::store::StoreError;
use crate::store::embedded::StoreFile;

/// Schedule name → the timer, as JSON.
const TIMERS: TableDefinition<&str, &[u8]> = TableDefinition::new("schedule_timers");

/// What the fire callback returns: the retry, running.
pub type FireFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

type Fire = Arc<dyn Fn(RetryJob) -> FireFuture + Send + Sync>;

/// The timers waiting to fire, keyed by due time, then schedule name and arm: in due order, and
/// two settings of one job never collide.
type Armed = BTreeMap<(DateTime<Utc>, String, u64), RetryJob>;

/// A timer that has not fired yet (or is firing now), for the operator's views.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingTimer {
    pub job: RetryJob,
    pub due: DateTime<Utc>,
}

/// A timer as stored. `arm` tells this setting of the timer from a later one of the same job
/// (set again after a cancel), so that finishing one firing never removes the next.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredTimer {
    job: RetryJob,
    due: DateTime<Utc>,
    arm: u64,
}

/// Why the local scheduler could not read or write its timers.
#[derive(Debug, thiserror::Error)]
pub enum TimerStoreError {
    #[error("the timer table failed: {0}")]
    Database(#[from] redb::Error),
    #[error("the timer table could not be written: {0}")]
    Write(#[from] StoreError),
    #[error("a timer could not be encoded or decoded: {0}")]
    Codec(#[from] serde_json::Error),
    #[error("the timer table's worker thread failed: {0}")]
    Worker(#[from] JoinError),
    #[error("the local scheduler is already running")]
    AlreadyRunning,
}

impl From<TimerStoreError> for ScheduleError {
    fn from(error: TimerStoreError) -> Self {
        ScheduleError::Unavailable(error.to_string())
    }
}

fn db_error(error: impl Into<redb::Error>) -> TimerStoreError {
    TimerStoreError::Database(error.into())
}

/// The schedule port on timers kept in redb. Clones share the same timers and loop.
#[derive(Clone)]
pub struct LocalScheduler {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalScheduler").field("armed", &self.inner.armed().len()).finish_non_exhaustive()
    }
}

struct Inner {
    file: StoreFile,
    clock: Arc<dyn Clock>,
    /// The timers waiting for their due time, in due order. A timer leaves when it starts firing;
    /// the table keeps it until it has fired.
    armed: Mutex<Armed>,
    next_arm: AtomicU64,
    /// Wakes the loop when a timer is set earlier than the one it sleeps for.
    wake: Notify,
    running: AtomicBool,
}

impl LocalScheduler {
    /// Opens the timer table in `file`, creating it on first use, and arms every timer it holds.
    /// Timers can be set and cancelled at once; they fire once [`start`](Self::start) is called.
    pub fn open(file: StoreFile, clock: Arc<dyn Clock>) -> Result<Self, TimerStoreError> {
        create_table(file.database())?;
        let stored = load_timers(file.database())?;
        let next_arm = stored.iter().map(|timer| timer.arm + 1).max().unwrap_or(0);
        let armed = stored.into_iter().map(|timer| ((timer.due, timer.job.schedule_name(), timer.arm), timer.job));
        Ok(Self {
            inner: Arc::new(Inner {
                file,
                clock,
                armed: Mutex::new(armed.collect()),
                next_arm: AtomicU64::new(next_arm),
                wake: Notify::new(),
                running: AtomicBool::new(false),
            }),
        })
    }

    /// Starts the loop that fires the timers through `fire`. The callback is given at start, not
    /// at open, because the retry use case it runs usually needs this scheduler itself.
    pub fn start<F>(&self, fire: F) -> Result<LocalSchedulerHandle, TimerStoreError>
    where
        F: Fn(RetryJob) -> FireFuture + Send + Sync + 'static,
    {
        if self.inner.running.swap(true, Ordering::AcqRel) {
            return Err(TimerStoreError::AlreadyRunning);
        }
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(self.inner.clone(), Arc::new(fire), stopped));
        Ok(LocalSchedulerHandle { stop, task })
    }

    /// Every timer not yet fired, firing ones included, by due time.
    pub async fn pending(&self) -> Result<Vec<PendingTimer>, TimerStoreError> {
        let mut timers = self.inner.blocking(load_timers).await?;
        timers.sort_by_cached_key(|timer| (timer.due, timer.job.schedule_name()));
        Ok(timers.into_iter().map(|timer| PendingTimer { job: timer.job, due: timer.due }).collect())
    }
}

impl RetryScheduler for LocalScheduler {
    /// The loop reads the time from its own clock, so `now` is not needed: a due time already
    /// past fires at once.
    async fn schedule(&self, job: &RetryJob, due: DateTime<Utc>, _now: DateTime<Utc>) -> Result<(), ScheduleError> {
        let timer = StoredTimer { job: job.clone(), due, arm: self.inner.next_arm.fetch_add(1, Ordering::Relaxed) };
        let inserted = self.inner.file.write({
            let timer = timer.clone();
            move |tx| insert_if_absent(tx, &timer)
        });
        if inserted.await.map_err(TimerStoreError::from)? {
            self.inner.arm(timer);
        }
        Ok(())
    }

    async fn cancel(&self, job: &RetryJob) -> Result<(), ScheduleError> {
        let name = job.schedule_name();
        if let Some(timer) =
            self.inner.file.write(move |tx| remove_timer(tx, &name, None)).await.map_err(TimerStoreError::from)?
        {
            self.inner.disarm(&timer);
        }
        Ok(())
    }
}

/// The running loop of a [`LocalScheduler`]. Dropping it stops the loop too, without waiting.
#[derive(Debug)]
pub struct LocalSchedulerHandle {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl LocalSchedulerHandle {
    /// Stops the loop and waits for the firings in flight to finish, so that their timers are
    /// removed. No timer fires after this returns.
    pub async fn shutdown(self) {
        // The send fails only when the loop has already ended, which is what is asked.
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the local scheduler's loop failed");
        }
    }
}

impl Inner {
    fn armed(&self) -> MutexGuard<'_, Armed> {
        // No code path panics while holding the lock, so the map is whole even if poisoned.
        self.armed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn arm(&self, timer: StoredTimer) {
        let key = (timer.due, timer.job.schedule_name(), timer.arm);
        let mut armed = self.armed();
        armed.insert(key.clone(), timer.job);
        if armed.first_key_value().is_some_and(|(first, _)| *first == key) {
            self.wake.notify_one();
        }
    }

    fn disarm(&self, timer: &StoredTimer) {
        self.armed().remove(&(timer.due, timer.job.schedule_name(), timer.arm));
    }

    /// Takes the timers due by `now` out of the armed set; returns them and the next due time.
    fn take_due(&self, now: DateTime<Utc>) -> (Vec<StoredTimer>, Option<DateTime<Utc>>) {
        let mut armed = self.armed();
        let mut due = Vec::new();
        while let Some(entry) = armed.first_entry() {
            if entry.key().0 > now {
                return (due, Some(entry.key().0));
            }
            let ((at, _, arm), job) = entry.remove_entry();
            due.push(StoredTimer { job, due: at, arm });
        }
        (due, None)
    }

    /// Reads the timer table on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, TimerStoreError> + Send + 'static,
    ) -> Result<T, TimerStoreError> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || work(file.database())).await?
    }
}

async fn run(inner: Arc<Inner>, fire: Fire, mut stop: oneshot::Receiver<()>) {
    let mut firing = JoinSet::new();
    loop {
        let now = inner.clock.now();
        let (due, next) = inner.take_due(now);
        for timer in due {
            firing.spawn(fire_timer(inner.clone(), fire.clone(), timer));
        }
        let nap = next.map(|next| inner.clock.wall_time_for(next - now));
        tokio::select! {
            _ = &mut stop => break,
            () = inner.wake.notified() => {}
            () = sleep_for(nap) => {}
            Some(done) = firing.join_next(), if !firing.is_empty() => report(done),
        }
    }
    while let Some(done) = firing.join_next().await {
        report(done);
    }
    inner.running.store(false, Ordering::Release);
}

async fn sleep_for(nap: Option<Duration>) {
    match nap {
        Some(nap) => tokio::time::sleep(nap).await,
        None => std::future::pending().await,
    }
}

fn report(done: Result<(), JoinError>) {
    if let Err(error) = done {
        tracing::error!(%error, "a retry firing did not finish; its timer stays and fires again on restart");
    }
}

async fn fire_timer(inner: Arc<Inner>, fire: Fire, timer: StoredTimer) {
    let StoredTimer { job, due, arm } = timer;
    let name = job.schedule_name();
    // A cancel may have removed the timer since the loop took it.
    let still_set = inner.blocking({
        let name = name.clone();
        move |db| is_stored(db, &name, arm)
    });
    match still_set.await {
        Ok(true) => {}
        Ok(false) => return,
        // Firing anyway risks only the firing of a cancelled timer, which the retry ignores.
        Err(error) => tracing::warn!(schedule = %name, %error, "could not check the timer before firing it"),
    }
    tracing::debug!(schedule = %name, %due, "firing retry");
    fire(job).await;
    if let Err(error) = inner.file.write(move |tx| remove_timer(tx, &name, Some(arm))).await {
        tracing::error!(%error, "a fired timer could not be removed; it fires again on restart");
    }
}

fn create_table(db: &Database) -> Result<(), TimerStoreError> {
    let txn = db.begin_write().map_err(db_error)?;
    txn.open_table(TIMERS).map_err(db_error)?;
    txn.commit().map_err(db_error)
}

fn load_timers(db: &Database) -> Result<Vec<StoredTimer>, TimerStoreError> {
    let txn = db.begin_read().map_err(db_error)?;
    let table = txn.open_table(TIMERS).map_err(db_error)?;
    let mut timers = Vec::new();
    for entry in table.iter().map_err(db_error)? {
        let (_, value) = entry.map_err(db_error)?;
        timers.push(serde_json::from_slice(value.value())?);
    }
    Ok(timers)
}

fn is_stored(db: &Database, name: &str, arm: u64) -> Result<bool, TimerStoreError> {
    let txn = db.begin_read().map_err(db_error)?;
    let table = txn.open_table(TIMERS).map_err(db_error)?;
    let Some(value) = table.get(name).map_err(db_error)? else {
        return Ok(false);
    };
    Ok(serde_json::from_slice::<StoredTimer>(value.value())?.arm == arm)
}

/// Stores `timer` unless a timer of the same job is stored; true when it was stored.
fn insert_if_absent(tx: &WriteTransaction, timer: &StoredTimer) -> Result<bool, StoreError> {
    let name = timer.job.schedule_name();
    let mut table = tx.open_table(TIMERS)?;
    if table.get(name.as_str())?.is_some() {
        return Ok(false);
    }
    let value = serde_json::to_vec(timer).map_err(|e| StoreError::Corrupt(format!("cannot encode a timer: {e}")))?;
    table.insert(name.as_str(), value.as_slice())?;
    Ok(true)
}

/// Removes the timer named `name`, only if it is of arm `only_arm` when one is given; returns
/// the timer removed.
fn remove_timer(tx: &WriteTransaction, name: &str, only_arm: Option<u64>) -> Result<Option<StoredTimer>, StoreError> {
    let mut table = tx.open_table(TIMERS)?;
    let stored: StoredTimer = match table.get(name)? {
        Some(value) => serde_json::from_slice(value.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        None => return Ok(None),
    };
    if only_arm.is_some_and(|arm| arm != stored.arm) {
        return Ok(None);
    }
    table.remove(name)?;
    Ok(Some(stored))
}

#[cfg(test)]
mod tests;
