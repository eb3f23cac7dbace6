use std::time::Instant;

use chrono::TimeDelta;
use tokio::sync::mpsc;

use super::*;
use crate::clock::ScaledClock;
use crate::domain::lifecycle::Slot;
use crate::domain::send::SendId;

/// One hour of clock time in 200 ms of wall time.
const SCALE: f64 = 18_000.0;
const PATIENCE: Duration = Duration::from_secs(10);

/// A redb file of its own for one test, removed afterwards.
struct TempDb(tempfile::TempPath);

impl TempDb {
    fn new(test: &str) -> Self {
        let prefix = format!("capguard-local-scheduler-{test}-");
        Self(tempfile::Builder::new().prefix(&prefix).suffix(".redb").tempfile().unwrap().into_temp_path())
    }

    fn open(&self) -> StoreFile {
        StoreFile::open(&self.0).unwrap()
    }
}

type Fired = mpsc::UnboundedReceiver<(RetryJob, DateTime<Utc>)>;

/// A fire callback that reports each job with the clock's time when it fired.
fn recorder(clock: Arc<dyn Clock>) -> (impl Fn(RetryJob) -> FireFuture + Send + Sync + 'static, Fired) {
    let (tx, rx) = mpsc::unbounded_channel();
    let fire = move |job: RetryJob| -> FireFuture {
        let (tx, clock) = (tx.clone(), clock.clone());
        Box::pin(async move {
            let _ = tx.send((job, clock.now()));
        })
    };
    (fire, rx)
}

async fn next(fired: &mut Fired) -> (RetryJob, DateTime<Utc>) {
    tokio::time::timeout(PATIENCE, fired.recv()).await.expect("a timer fires in time").expect("the loop runs")
}

fn job(n: u32) -> RetryJob {
    RetryJob::new(SendId::derive("local", &n.to_string(), "15550000000"), Slot { attempt: 2, try_no: 1 })
}

fn origin() -> DateTime<Utc> {
    DateTime::from_timestamp(1_790_000_000, 0).unwrap()
}

fn scaled(origin: DateTime<Utc>, scale: f64) -> Arc<ScaledClock> {
    Arc::new(ScaledClock::new(origin, scale))
}

#[tokio::test]
async fn timers_fire_in_due_order_at_their_scaled_due_times() {
    let file = TempDb::new("order");
    let clock = scaled(origin(), SCALE);
    let scheduler = LocalScheduler::open(file.open(), clock.clone()).unwrap();
    let timers = [
        (job(1), origin() + TimeDelta::hours(3)),
        (job(2), origin() + TimeDelta::hours(1)),
        (job(3), origin() + TimeDelta::hours(2)),
    ];
    for (job, due) in &timers {
        scheduler.schedule(job, *due, clock.now()).await.unwrap();
    }
    let (fire, mut fired) = recorder(clock.clone());
    let wall = Instant::now();
    let handle = scheduler.start(fire).unwrap();

    for (job, due) in [&timers[1], &timers[2], &timers[0]] {
        let (got, at) = next(&mut fired).await;
        assert_eq!(&got, job);
        assert!(at >= *due, "fired at {at}, before its due time {due}");
    }
    // Three hours of clock time went by in about 600 ms.
    assert!(wall.elapsed() < Duration::from_secs(5), "{:?}", wall.elapsed());
    handle.shutdown().await;
    assert_eq!(scheduler.pending().await.unwrap(), [], "a fired timer is removed");
}

#[tokio::test]
async fn a_cancelled_timer_does_not_fire() {
    let file = TempDb::new("cancel");
    let clock = scaled(origin(), SCALE);
    let scheduler = LocalScheduler::open(file.open(), clock.clone()).unwrap();
    let (fire, mut fired) = recorder(clock.clone());
    let handle = scheduler.start(fire).unwrap();
    // Ten hours are two seconds of wall time: the cancel comes long before, however busy the
    // machine (at one hour, a loaded machine once let the timer fire first).
    scheduler.schedule(&job(1), origin() + TimeDelta::hours(10), clock.now()).await.unwrap();
    scheduler.schedule(&job(2), origin() + TimeDelta::hours(11), clock.now()).await.unwrap();
    scheduler.cancel(&job(1)).await.unwrap();

    assert_eq!(next(&mut fired).await.0, job(2));
    handle.shutdown().await;
    assert!(fired.try_recv().is_err(), "the cancelled timer fired");
}

#[tokio::test]
async fn a_timer_set_earlier_than_the_loops_sleep_fires_first() {
    let file = TempDb::new("earlier");
    let clock = scaled(origin(), SCALE);
    let scheduler = LocalScheduler::open(file.open(), clock.clone()).unwrap();
    scheduler.schedule(&job(1), origin() + TimeDelta::hours(12), clock.now()).await.unwrap();
    let (fire, mut fired) = recorder(clock.clone());
    let handle = scheduler.start(fire).unwrap();
    // Let the loop go to sleep for the 12 h timer (2.4 s of wall time).
    tokio::time::sleep(Duration::from_millis(50)).await;

    scheduler.schedule(&job(2), clock.now() + TimeDelta::hours(1), clock.now()).await.unwrap();
    let (first, at) = next(&mut fired).await;
    assert_eq!(first, job(2));
    assert!(at < origin() + TimeDelta::hours(6), "the earlier timer waited for the later one: {at}");
    assert_eq!(next(&mut fired).await.0, job(1));
    handle.shutdown().await;
}

#[tokio::test]
async fn a_restart_rearms_pending_timers_and_fires_overdue_ones_at_once() {
    let file = TempDb::new("restart");
    {
        // Before the restart the clock stands almost still: nothing falls due.
        let clock = scaled(origin(), 1.0);
        let scheduler = LocalScheduler::open(file.open(), clock.clone()).unwrap();
        let (fire, _fired) = recorder(clock.clone());
        let handle = scheduler.start(fire).unwrap();
        scheduler.schedule(&job(1), origin() + TimeDelta::hours(1), clock.now()).await.unwrap();
        scheduler.schedule(&job(2), origin() + TimeDelta::hours(4), clock.now()).await.unwrap();
        handle.shutdown().await;
    }

    // Two hours later: the first timer fell due while the process was down.
    let restarted = origin() + TimeDelta::hours(2);
    let clock = scaled(restarted, SCALE);
    let scheduler = LocalScheduler::open(file.open(), clock.clone()).unwrap();
    let pending = scheduler.pending().await.unwrap();
    assert_eq!(
        pending,
        [
            PendingTimer { job: job(1), due: origin() + TimeDelta::hours(1) },
            PendingTimer { job: job(2), due: origin() + TimeDelta::hours(4) },
        ]
    );
    let (fire, mut fired) = recorder(clock.clone());
    let handle = scheduler.start(fire).unwrap();
    let (overdue, at) = next(&mut fired).await;
    assert_eq!(overdue, job(1));
    assert!(at < restarted + TimeDelta::hours(1), "the overdue timer waited: {at}");
    let (pending, at) = next(&mut fired).await;
    assert_eq!(pending, job(2));
    assert!(at >= origin() + TimeDelta::hours(4));
    handle.shutdown().await;
    assert_eq!(scheduler.pending().await.unwrap(), []);
}

#[tokio::test]
async fn a_timer_whose_firing_did_not_finish_fires_again_on_restart() {
    let file = TempDb::new("crash");
    let opened = file.open();
    let clock = scaled(origin(), SCALE);
    let scheduler = LocalScheduler::open(opened.clone(), clock.clone()).unwrap();
    scheduler.schedule(&job(1), origin() + TimeDelta::minutes(30), clock.now()).await.unwrap();
    let (started, mut crashed) = mpsc::unbounded_channel();
    let handle = scheduler
        .start(move |job| -> FireFuture {
            let _ = started.send(job);
            Box::pin(async { panic!("simulated crash while firing") })
        })
        .unwrap();
    tokio::time::timeout(PATIENCE, crashed.recv()).await.unwrap().unwrap();
    handle.shutdown().await;
    assert_eq!(scheduler.pending().await.unwrap().len(), 1, "the timer stays until its firing finishes");
    drop(scheduler);

    let scheduler = LocalScheduler::open(opened, clock.clone()).unwrap();
    let (fire, mut fired) = recorder(clock.clone());
    let handle = scheduler.start(fire).unwrap();
    assert_eq!(next(&mut fired).await.0, job(1));
    handle.shutdown().await;
    assert_eq!(scheduler.pending().await.unwrap(), []);
}

#[tokio::test]
async fn setting_a_timer_twice_keeps_the_first_and_fires_once() {
    let file = TempDb::new("twice");
    let clock = scaled(origin(), SCALE);
    let scheduler = LocalScheduler::open(file.open(), clock.clone()).unwrap();
    let due = origin() + TimeDelta::hours(1);
    scheduler.schedule(&job(1), due, clock.now()).await.unwrap();
    scheduler.schedule(&job(1), origin() + TimeDelta::minutes(30), clock.now()).await.unwrap();
    scheduler.schedule(&job(2), origin() + TimeDelta::hours(2), clock.now()).await.unwrap();
    assert_eq!(scheduler.pending().await.unwrap()[0], PendingTimer { job: job(1), due });
    assert_eq!(scheduler.pending().await.unwrap().len(), 2);

    let (fire, mut fired) = recorder(clock.clone());
    let handle = scheduler.start(fire).unwrap();
    let (first, at) = next(&mut fired).await;
    assert_eq!(first, job(1));
    assert!(at >= due, "the second setting moved the timer earlier: {at}");
    assert_eq!(next(&mut fired).await.0, job(2));
    handle.shutdown().await;
    assert!(fired.try_recv().is_err(), "a timer fired twice");
}

#[tokio::test]
async fn shutdown_lets_firings_in_flight_finish_and_fires_nothing_more() {
    let file = TempDb::new("shutdown");
    let clock = scaled(origin(), SCALE);
    let scheduler = LocalScheduler::open(file.open(), clock.clone()).unwrap();
    scheduler.schedule(&job(1), origin() + TimeDelta::hours(1), clock.now()).await.unwrap();
    scheduler.schedule(&job(2), origin() + TimeDelta::hours(3), clock.now()).await.unwrap();
    let (events, mut seen) = mpsc::unbounded_channel();
    let handle = scheduler
        .start(move |job| -> FireFuture {
            let events = events.clone();
            Box::pin(async move {
                let _ = events.send(("started", job.clone()));
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _ = events.send(("finished", job));
            })
        })
        .unwrap();
    assert_eq!(tokio::time::timeout(PATIENCE, seen.recv()).await.unwrap(), Some(("started", job(1))));

    handle.shutdown().await;
    assert_eq!(seen.try_recv().ok(), Some(("finished", job(1))));
    assert_eq!(scheduler.pending().await.unwrap(), [PendingTimer { job: job(2), due: origin() + TimeDelta::hours(3) }]);
    // Well past the second timer's due time.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(seen.try_recv().is_err(), "a timer fired after shutdown");
}

#[tokio::test]
async fn a_second_start_is_refused_until_shutdown() {
    let file = TempDb::new("start");
    let clock = scaled(origin(), SCALE);
    let scheduler = LocalScheduler::open(file.open(), clock.clone()).unwrap();
    let handle = scheduler.start(recorder(clock.clone()).0).unwrap();
    assert!(matches!(scheduler.start(recorder(clock.clone()).0), Err(TimerStoreError::AlreadyRunning)));
    handle.shutdown().await;
    scheduler.start(recorder(clock.clone()).0).unwrap().shutdown().await;
}
