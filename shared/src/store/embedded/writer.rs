//! Group commit: one writer thread runs the store's write operations, as many as are waiting, in
//! one redb write transaction, and answers each caller only once that transaction is committed.
//!
//! A durable commit (its `fdatasync` and the page allocator's work) costs about as much for one
//! operation as for hundreds, and redb runs one write transaction at a time anyway; so under load
//! the operations that queued up while one group committed share the next commit. Each caller
//! keeps the guarantee it had with a transaction of its own: its operation ran alone (one after
//! the other, in the order they were queued), and when it is answered its change is durable. An
//! operation that fails is answered with its error and left out: the group's transaction is
//! dropped and the others run again, in a fresh one, without it (operations are `FnMut` so that
//! they can be run again; they read the store as they find it).

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;

use chrono::{DateTime, TimeDelta, Utc};
use redb::{Database, WriteTransaction};

use super::{CLOCK, CLOCK_KEY, after, encode, latest_write};
use crate::store::StoreError;

/// The most operations one transaction takes: enough to share a commit widely, few enough that
/// the first caller of a group is not kept waiting long behind the others.
const MOST_PER_GROUP: usize = 256;

/// An open write transaction, as one operation sees it: the store's time as of this operation,
/// and a way to say that the operation changed something.
pub(super) struct Write<'a> {
    pub tx: &'a WriteTransaction,
    pub now: DateTime<Utc>,
    pub retention: TimeDelta,
    kept: Cell<bool>,
}

impl Write<'_> {
    pub fn expires_at(&self) -> DateTime<Utc> {
        after(self.now, self.retention)
    }

    /// Says that this operation changed the store: its time becomes the store's latest write.
    /// An operation that writes nothing does not call it, and leaves the store's time as it was.
    pub fn keep(&self) {
        self.kept.set(true);
    }
}

/// One caller's operation, waiting for the writer.
trait Pending: Send {
    /// When the caller made it.
    fn at(&self) -> DateTime<Utc>;
    /// Runs the operation in the group's transaction (again, if its first group failed).
    fn run(&mut self, w: &Write<'_>) -> Result<(), StoreError>;
    /// Answers the caller: the operation's result if its group committed, or the error.
    fn answer(self: Box<Self>, committed: Result<(), StoreError>);
}

struct Operation<F, T> {
    at: DateTime<Utc>,
    op: F,
    result: Option<T>,
    caller: tokio::sync::oneshot::Sender<Result<T, StoreError>>,
}

impl<F, T> Pending for Operation<F, T>
where
    F: FnMut(&Write<'_>) -> Result<T, StoreError> + Send,
    T: Send,
{
    fn at(&self) -> DateTime<Utc> {
        self.at
    }

    fn run(&mut self, w: &Write<'_>) -> Result<(), StoreError> {
        let op = &mut self.op;
        let result = catch_unwind(AssertUnwindSafe(|| op(w)))
            .map_err(|_| StoreError::Unavailable("a store operation panicked; nothing of it was written".into()))?;
        self.result = Some(result?);
        Ok(())
    }

    fn answer(self: Box<Self>, committed: Result<(), StoreError>) {
        let Self { result, caller, .. } = *self;
        let answer = committed.and_then(|()| {
            result.ok_or_else(|| StoreError::Unavailable("a store operation was committed without running".into()))
        });
        // A caller that stopped waiting (a dropped request) no longer needs the answer; what it
        // asked for is done all the same.
        let _ = caller.send(answer);
    }
}

/// The writer thread, and the queue to it. Dropping it lets the thread finish the operations it
/// has and waits for it, so that the database file is closed when the store is.
pub(super) struct Writer {
    /// Taken only when the writer is dropped, which ends the thread's loop.
    queue: Option<Sender<Box<dyn Pending>>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn start(db: Arc<Database>, retention: TimeDelta) -> Result<Self, StoreError> {
        let (queue, operations) = std::sync::mpsc::channel::<Box<dyn Pending>>();
        let thread = std::thread::Builder::new()
            .name("capguard-store-writer".into())
            .spawn(move || write_groups(&db, retention, &operations))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the store's writer: {e}")))?;
        Ok(Self { queue: Some(queue), thread: Some(thread) })
    }

    /// Queues `op`, made at `at`, and waits until the group it ran in is committed.
    pub async fn write<T: Send + 'static>(
        &self,
        at: DateTime<Utc>,
        op: impl FnMut(&Write<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (caller, answer) = tokio::sync::oneshot::channel();
        let pending: Box<dyn Pending> = Box::new(Operation { at, op, result: None, caller });
        let queued = self.queue.as_ref().is_some_and(|queue| queue.send(pending).is_ok());
        if !queued {
            return Err(StoreError::Unavailable("the store's writer has stopped".into()));
        }
        answer.await.map_err(|_| StoreError::Unavailable("the store's writer stopped before answering".into()))?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer's loop: waits for an operation, takes every other one queued by then, and commits
/// them as one group; until every sender is gone.
fn write_groups(db: &Database, retention: TimeDelta, operations: &Receiver<Box<dyn Pending>>) {
    while let Ok(first) = operations.recv() {
        let mut group = vec![first];
        while group.len() < MOST_PER_GROUP {
            match operations.try_recv() {
                Ok(next) => group.push(next),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        // A panic in redb itself (beginning or committing the transaction) fails this group's
        // callers, whose answers are dropped unsent, not the writer.
        if catch_unwind(AssertUnwindSafe(|| commit_group(db, retention, group))).is_err() {
            tracing::error!("the store's writer failed a group of writes; their callers were told");
        }
    }
}

/// Runs `group` in one transaction and answers each operation; an operation that fails is
/// answered with its error, and the rest run again without it.
fn commit_group(db: &Database, retention: TimeDelta, mut group: Vec<Box<dyn Pending>>) {
    while !group.is_empty() {
        match run_group(db, retention, &mut group) {
            Ok(tx) => {
                let committed = tx.commit().map_err(StoreError::from);
                for pending in group.drain(..) {
                    pending.answer(committed.clone());
                }
            }
            Err(GroupFailed::Operation(index, error)) => group.remove(index).answer(Err(error)),
            Err(GroupFailed::Transaction(error)) => {
                for pending in group.drain(..) {
                    pending.answer(Err(error.clone()));
                }
            }
        }
    }
}

enum GroupFailed {
    /// The operation at this index failed: the transaction is dropped.
    Operation(usize, StoreError),
    /// The transaction itself could not be begun or its clock kept.
    Transaction(StoreError),
}

/// Runs every operation of `group` in a new transaction, each at the store's time as the ones
/// before it left it, and returns the transaction to commit.
fn run_group(
    db: &Database,
    retention: TimeDelta,
    group: &mut [Box<dyn Pending>],
) -> Result<WriteTransaction, GroupFailed> {
    let tx = db.begin_write().map_err(|e| GroupFailed::Transaction(e.into()))?;
    let mut latest = latest_write(&tx.open_table(CLOCK).map_err(|e| GroupFailed::Transaction(e.into()))?)
        .map_err(GroupFailed::Transaction)?;
    for (index, pending) in group.iter_mut().enumerate() {
        // Webhooks report times in the past: the store's time never goes back.
        let w = Write { tx: &tx, now: latest.max(pending.at()), retention, kept: Cell::new(false) };
        pending.run(&w).map_err(|error| GroupFailed::Operation(index, error))?;
        if w.kept.get() {
            latest = w.now;
        }
    }
    let keep_clock = || -> Result<(), StoreError> {
        tx.open_table(CLOCK)?.insert(CLOCK_KEY, encode(&latest)?.as_slice())?;
        Ok(())
    };
    keep_clock().map_err(GroupFailed::Transaction)?;
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use std::pin::Pin;

    use redb::{ReadableDatabase, TableDefinition};

    use super::*;

    const NOTES: TableDefinition<&str, u32> = TableDefinition::new("test.notes");

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).unwrap()
    }

    fn database() -> (tempfile::TempDir, Arc<Database>) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("writer.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(CLOCK).unwrap();
        tx.open_table(NOTES).unwrap();
        tx.commit().unwrap();
        (dir, Arc::new(db))
    }

    fn note(w: &Write<'_>, key: &str, value: u32) -> Result<(), StoreError> {
        w.tx.open_table(NOTES)?.insert(key, value)?;
        w.keep();
        Ok(())
    }

    fn read(db: &Database, key: &str) -> Option<u32> {
        let tx = db.begin_read().unwrap();
        tx.open_table(NOTES).unwrap().get(key).unwrap().map(|value| value.value())
    }

    /// Holds the writer in a group of its own, once it has started on it, until `release` is
    /// sent: what is queued meanwhile forms the next group.
    async fn gate(
        writer: &Writer,
    ) -> (std::sync::mpsc::Sender<()>, Pin<Box<impl Future<Output = Result<(), StoreError>>>>) {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let held = Mutex::new(held);
        let (entered, started) = tokio::sync::oneshot::channel::<()>();
        let mut entered = Some(entered);
        let mut gated = Box::pin(writer.write(t0(), move |_| {
            entered.take().map(|entered| entered.send(()));
            held.lock().unwrap().recv().ok();
            Ok(())
        }));
        assert!(futures::poll!(&mut gated).is_pending());
        started.await.expect("the writer starts on the gate");
        (release, gated)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_write_is_answered_once_durable_and_a_failing_one_leaves_its_group_untouched() {
        let (_dir, db) = database();
        let writer = Writer::start(Arc::clone(&db), TimeDelta::days(1)).unwrap();
        let (release, gated) = gate(&writer).await;
        // Queued, in this order, while the writer is held: one group.
        let runs = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&runs);
        let mut before = Box::pin(writer.write(t0(), move |w| {
            counted.fetch_add(1, Ordering::SeqCst);
            note(w, "before", 1)
        }));
        assert!(futures::poll!(&mut before).is_pending());
        let mut failing = Box::pin(writer.write(t0(), |w| {
            note(w, "failing", 2)?;
            Err::<(), _>(StoreError::Corrupt("a record that does not decode".into()))
        }));
        assert!(futures::poll!(&mut failing).is_pending());
        let mut after = Box::pin(writer.write(t0(), |w| note(w, "after", 3)));
        assert!(futures::poll!(&mut after).is_pending());
        release.send(()).unwrap();

        gated.await.unwrap();
        before.await.unwrap();
        after.await.unwrap();
        assert!(matches!(failing.await, Err(StoreError::Corrupt(_))));
        assert_eq!((read(&db, "before"), read(&db, "after")), (Some(1), Some(3)), "answered once committed");
        assert_eq!(read(&db, "failing"), None, "nothing of the failed write is kept");
        assert_eq!(runs.load(Ordering::SeqCst), 2, "the write grouped with the failed one ran again, in a new group");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_that_panics_is_an_error_and_the_writer_goes_on() {
        let (_dir, db) = database();
        let writer = Writer::start(Arc::clone(&db), TimeDelta::days(1)).unwrap();
        let (release, gated) = gate(&writer).await;
        let mut panicking = Box::pin(
            writer.write(t0(), |w| -> Result<(), StoreError> { note(w, "panicking", 1).map(|()| panic!("a bug")) }),
        );
        assert!(futures::poll!(&mut panicking).is_pending());
        let mut beside = Box::pin(writer.write(t0(), |w| note(w, "beside", 2)));
        assert!(futures::poll!(&mut beside).is_pending());
        release.send(()).unwrap();
        gated.await.unwrap();
        assert!(matches!(panicking.await, Err(StoreError::Unavailable(_))));
        beside.await.unwrap();
        writer.write(t0(), |w| note(w, "later", 3)).await.unwrap();
        assert_eq!((read(&db, "panicking"), read(&db, "beside"), read(&db, "later")), (None, Some(2), Some(3)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_neighbours_write_shares_the_group_commit_and_leaves_the_store_time_alone() {
        let (_dir, db) = database();
        let writer = Arc::new(Writer::start(Arc::clone(&db), TimeDelta::days(1)).unwrap());
        let file = super::super::StoreFile { db: Arc::clone(&db), writer: Arc::clone(&writer) };
        writer.write(t0(), |w| note(w, "store", 1)).await.unwrap();
        let (release, gated) = gate(&writer).await;
        // A timer set while the writer is held, then a store write that fails in the same group.
        let runs = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&runs);
        let mut timer = Box::pin(file.write(move |tx| {
            counted.fetch_add(1, Ordering::SeqCst);
            tx.open_table(NOTES)?.insert("timer", 7)?;
            Ok(())
        }));
        assert!(futures::poll!(&mut timer).is_pending());
        let mut failing =
            Box::pin(writer.write(t0(), |_| Err::<(), _>(StoreError::Corrupt("a record that does not decode".into()))));
        assert!(futures::poll!(&mut failing).is_pending());
        release.send(()).unwrap();

        gated.await.unwrap();
        timer.await.unwrap();
        assert!(matches!(failing.await, Err(StoreError::Corrupt(_))));
        assert_eq!(read(&db, "timer"), Some(7), "answered once committed");
        assert_eq!(runs.load(Ordering::SeqCst), 2, "run again without the failed write");
        let earlier = t0() - TimeDelta::hours(1);
        assert_eq!(writer.write(earlier, |w| Ok(w.now)).await.unwrap(), t0(), "the store's time is where it was");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_store_time_moves_only_with_writes_that_changed_something() {
        let (_dir, db) = database();
        let writer = Writer::start(Arc::clone(&db), TimeDelta::days(1)).unwrap();
        let later = t0() + TimeDelta::hours(1);
        let seen = writer.write(t0(), |w| note(w, "first", 1).map(|()| w.now)).await.unwrap();
        assert_eq!(seen, t0());
        // A write that changes nothing (a refused transition) leaves the store's time alone.
        assert_eq!(writer.write(later, |w| Ok(w.now)).await.unwrap(), later, "it runs at its own time");
        assert_eq!(writer.write(t0(), |w| Ok(w.now)).await.unwrap(), t0(), "and did not move the store's");
        // One that changes something does; an older one then runs at the store's time.
        writer.write(later, |w| note(w, "second", 2)).await.unwrap();
        assert_eq!(writer.write(t0(), |w| Ok(w.now)).await.unwrap(), later);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_writer_closes_the_database_file() {
        let (dir, db) = database();
        let writer = Writer::start(db, TimeDelta::days(1)).unwrap();
        writer.write(t0(), |w| note(w, "kept", 7)).await.unwrap();
        drop(writer);
        let reopened = Database::create(dir.path().join("writer.redb")).expect("no other handle is open");
        assert_eq!(read(&reopened, "kept"), Some(7));
    }
}
