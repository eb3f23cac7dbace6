//! The local stack: the three functions' use cases over a store of your choice (the embedded,
//! file-backed one by default) and the local scheduler, served on localhost with the HTTP API's
//! routes. Timers fire the same retry use case the retry executor Lambda runs, and a periodic
//! sweep (once at start, then every `sweep_interval` of clock time) moves on every send whose
//! timer never came, as the recurring schedule does on AWS.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use shared::budget::{DISPATCH_TIMEOUT, SEND_RESERVE};
use shared::clock::Clock;
use shared::cloud::http::{AccessToken, HttpCloudApi, HttpCloudApiConfig};
use shared::domain::verdict::Rules;
use shared::forward::Forward;
use shared::forward::local::{LocalOutbox, deliver};
use shared::outcome::Publish;
use shared::queue::local::LocalQueue;
use shared::schedule::local::{LocalScheduler, LocalSchedulerHandle};
use shared::schedule::{RetryJob, RetryScheduler, ScheduleError};
use shared::store::SendStore;
use shared::store::embedded::StoreFile;
use shared::usecase::dispatch::dispatch_by;
use shared::usecase::http::WebhookSecrets;
use shared::usecase::retry::retry;
use shared::usecase::sweep::sweep;
use shared::usecase::{Deps, SendSettings, Tally};
use shared::whatsapp::signature::AppSecret;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::routes;

/// The use cases' ports in the local stack.
pub type LocalDeps<S> = Deps<S, LocalTimers, HttpCloudApi>;

/// How often the sweep runs by default, in clock time: EventBridge Scheduler's rate on AWS.
pub const DEFAULT_SWEEP_INTERVAL: TimeDelta = TimeDelta::minutes(5);

/// The shortest wall time between two sweeps, however fast the clock runs.
const MIN_SWEEP_PAUSE: Duration = Duration::from_millis(100);

/// How much wall time one sweep may take before it leaves the rest for the next.
const SWEEP_BUDGET: Duration = Duration::from_secs(30);

/// How long one queued chunk's dispatch starts sends for: send-dispatch's timeout less the
/// reserve for its last send, as on AWS.
const CHUNK_START_WINDOW: Duration = DISPATCH_TIMEOUT.saturating_sub(SEND_RESERVE);

/// How often the queue's worker looks when nothing woke it (a chunk left by a failed dispatch).
const QUEUE_POLL: Duration = Duration::from_secs(5);

/// The local scheduler, which can be told to fail its first few timer creations: fault injection
/// for the end-to-end tests (`capguard serve --fail-timers N`), whose sends must then be found by
/// the sweep.
pub struct LocalTimers {
    pub local: LocalScheduler,
    failures_left: AtomicU32,
}

impl LocalTimers {
    pub fn new(local: LocalScheduler, failures: u32) -> Self {
        Self { local, failures_left: AtomicU32::new(failures) }
    }
}

impl RetryScheduler for LocalTimers {
    async fn schedule(&self, job: &RetryJob, due: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), ScheduleError> {
        let fail = self.failures_left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok();
        if fail {
            return Err(ScheduleError::Unavailable("the timer was not created (--fail-timers)".into()));
        }
        self.local.schedule(job, due, now).await
    }

    async fn cancel(&self, job: &RetryJob) -> Result<(), ScheduleError> {
        self.local.cancel(job).await
    }
}

/// How a local stack is set up.
pub struct StackSettings {
    /// 0 for any free port.
    pub port: u16,
    pub rules: Rules,
    pub sending: SendSettings,
    /// The Graph API's base URL: the sandbox's, or Meta's.
    pub graph_base_url: String,
    pub graph_version: Option<String>,
    pub access_token: String,
    pub app_secret: AppSecret,
    pub verify_token: String,
    pub clock: Arc<dyn Clock>,
    /// How often the sweep runs, in clock time.
    pub sweep_interval: TimeDelta,
    /// Timer creations to fail on purpose (fault injection); 0 in any real use.
    pub fail_timers: u32,
    pub coexistence: Coexistence,
}

/// What the stack hands the business's own stack: verified webhook bodies (through the data
/// file's outbox, to an endpoint or a queue) and outcome events.
#[derive(Default)]
pub struct Coexistence {
    pub forward: Option<Arc<dyn Forward>>,
    pub events: Option<Arc<dyn Publish>>,
}

/// How often pending outcome events are flushed.
const EVENTS_FLUSH_EVERY: Duration = Duration::from_millis(200);

/// A running local stack.
pub struct LocalStack<S: SendStore + 'static> {
    deps: Arc<LocalDeps<S>>,
    timers: LocalSchedulerHandle,
    sweeper: (oneshot::Sender<()>, JoinHandle<()>),
    chunker: (oneshot::Sender<()>, JoinHandle<()>),
    forwarder: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    publisher: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
}

/// How often a timer whose retry failed on a store or scheduler error is tried again before
/// the failure is logged and left for the operator.
const FIRE_ATTEMPTS: u32 = 5;

impl<S: SendStore + 'static> LocalStack<S> {
    /// Starts the stack on `store`, keeping its timers and its send queue in `file` (re-arming
    /// any timer it holds).
    pub async fn start(store: S, file: StoreFile, settings: StackSettings) -> anyhow::Result<Self> {
        let local = LocalScheduler::open(file.clone(), settings.clock.clone()).context("opening the timers")?;
        let scheduler = LocalTimers::new(local, settings.fail_timers);
        let token = AccessToken::new(settings.access_token.clone());
        let cloud =
            HttpCloudApiConfig::graph(token, Some(settings.graph_base_url.clone()), settings.graph_version.clone());
        let cloud = HttpCloudApi::new(cloud).context("building the Cloud API client")?;
        let mut deps = Deps::new(store, scheduler, cloud, settings.clock.clone(), settings.rules, settings.sending);
        let Coexistence { forward, events } = settings.coexistence;
        let mut forwarder = None;
        if let Some(target) = forward {
            let outbox = LocalOutbox::new(file.clone()).context("opening the forward outbox")?;
            deps = deps.with_forward(Arc::new(outbox.clone()));
            let (stop, stopped) = oneshot::channel();
            forwarder = Some((stop, tokio::spawn(deliver(outbox, target, stopped))));
        }
        let publishing = events.is_some();
        if let Some(publisher) = events {
            deps = deps.with_outcomes(publisher);
        }
        let deps = Arc::new(deps);
        let publisher = publishing.then(|| start_publisher(Arc::clone(&deps)));

        let firing = Arc::clone(&deps);
        let timers = deps
            .scheduler
            .local
            .start(move |job| {
                let deps = Arc::clone(&firing);
                Box::pin(async move {
                    for attempt in 1..=FIRE_ATTEMPTS {
                        match retry(&deps, &job).await {
                            Ok(report) => {
                                tracing::debug!(schedule = job.schedule_name(), outcome = ?report.outcome, "timer fired");
                                return;
                            }
                            Err(error) if attempt < FIRE_ATTEMPTS => {
                                tracing::warn!(%error, attempt, schedule = job.schedule_name(), "retry failed; trying again");
                                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                            }
                            Err(error) => tracing::error!(%error, schedule = job.schedule_name(), "retry failed"),
                        }
                    }
                })
            })
            .context("starting the timers")?;
        let sweeper = start_sweeper(Arc::clone(&deps), settings.sweep_interval);
        let queue = LocalQueue::new(file).context("opening the send queue")?;
        let chunker = start_chunker(Arc::clone(&deps), queue.clone());

        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, settings.port))
            .await
            .with_context(|| format!("listening on 127.0.0.1:{}", settings.port))?;
        let addr = listener.local_addr()?;
        let secrets = WebhookSecrets { app_secret: settings.app_secret, verify_token: settings.verify_token };
        let app = routes::router(Arc::clone(&deps), Arc::new(secrets), queue);
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Self { deps, timers, sweeper, chunker, forwarder, publisher, addr, stop, server })
    }

    pub fn deps(&self) -> &Arc<LocalDeps<S>> {
        &self.deps
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where Meta (or the sandbox) posts webhooks.
    pub fn webhook_url(&self) -> String {
        format!("http://{}/webhook", self.addr)
    }

    /// Stops serving, sweeping and firing; firings in flight finish first.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.server.await.context("the server task failed")?.context("the server failed")?;
        let (stop_sweeping, sweeper) = self.sweeper;
        let _ = stop_sweeping.send(());
        sweeper.await.context("the sweeper failed")?;
        let (stop_chunking, chunker) = self.chunker;
        let _ = stop_chunking.send(());
        chunker.await.context("the send queue's worker failed")?;
        self.timers.shutdown().await;
        if let Some((stop_forwarding, forwarder)) = self.forwarder {
            let _ = stop_forwarding.send(());
            forwarder.await.context("the forwarder failed")?;
        }
        // Last, so that the events of the work that finished above go out too.
        if let Some((stop_publishing, publisher)) = self.publisher {
            let _ = stop_publishing.send(());
            publisher.await.context("the event publisher failed")?;
        }
        Ok(())
    }
}

/// Sweeps at once (what a restart left behind), then every `interval` of clock time.
/// Dispatches the queued chunks of large send requests, oldest first, one at a time: what the
/// send queue's event source does on AWS. A chunk leaves the queue once its dispatch ran, so a
/// crash part-way dispatches it again after a restart (sending nothing twice).
fn start_chunker<S: SendStore + 'static>(
    deps: Arc<LocalDeps<S>>,
    queue: LocalQueue,
) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            if stopped.try_recv().is_ok() {
                return;
            }
            match queue.oldest().await {
                Ok(Some((position, chunk))) => {
                    let started = tokio::time::Instant::now();
                    match dispatch_by(&deps, &chunk, Some(started + CHUNK_START_WINDOW)).await {
                        Ok(answer) => {
                            tracing::info!(recipients = answer.results.len(), "a queued chunk was dispatched");
                            if let Err(error) = queue.done(position).await {
                                tracing::error!(%error, "a dispatched chunk could not leave the queue");
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, "a queued chunk failed part-way; trying it again");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                    continue;
                }
                Ok(None) => {}
                Err(error) => tracing::error!(%error, "the send queue could not be read"),
            }
            tokio::select! {
                _ = &mut stopped => return,
                () = queue.wait() => {}
                () = tokio::time::sleep(QUEUE_POLL) => {}
            }
        }
    });
    (stop, task)
}

/// Flushes the use cases' outcome events every [`EVENTS_FLUSH_EVERY`], and once more when stopped.
fn start_publisher<S: SendStore + 'static>(deps: Arc<LocalDeps<S>>) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            let last = tokio::select! {
                _ = &mut stopped => true,
                () = tokio::time::sleep(EVENTS_FLUSH_EVERY) => false,
            };
            let mut tally = Tally::default();
            deps.outcomes.flush(&mut tally).await;
            if last {
                return;
            }
        }
    });
    (stop, task)
}

fn start_sweeper<S: SendStore + 'static>(
    deps: Arc<LocalDeps<S>>,
    interval: TimeDelta,
) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            match sweep(&deps, SWEEP_BUDGET).await {
                // Lost prompts and failures are worth a warning; undelivered messages looked at
                // again are the sweep's ordinary work.
                Ok(report) if report.tally.get("prompts_lost") > 0 || report.failed > 0 => {
                    tracing::warn!(moved = report.moved, failed = report.failed, left = report.left, "sweep");
                }
                Ok(report) if report.moved > 0 => tracing::debug!(moved = report.moved, left = report.left, "sweep"),
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "the sweep could not list overdue sends"),
            }
            let pause = deps.clock.wall_time_for(interval).max(MIN_SWEEP_PAUSE);
            tokio::select! {
                _ = &mut stopped => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    });
    (stop, task)
}
