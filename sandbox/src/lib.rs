//! The Cloud API sandbox: a local stand-in for graph.facebook.com that behaves like WhatsApp,
//! caps included. `capguard demo`, `capguard sandbox` and the end-to-end tests send through it.
//!
//! It serves the template send endpoints on 127.0.0.1 (`graph`), answers with wamids, and then
//! posts **signed** status webhooks to a callback URL, byte for byte as Meta would
//! (`webhooks`): `sent`, `delivered`, `read`, or `failed` with 131049 when the recipient's
//! cross-business marketing budget is spent (`budget`), always for US numbers, 131050 for
//! recipients who stopped marketing, 131026 for numbers not on WhatsApp. Sends past the
//! throughput or pair limits are refused at once (`limits`). The recipients are a seeded
//! [`Population`] of kinds; what becomes of each message is decided by `world` from the seed,
//! so a run repeats exactly given the same sends in the same order. Time is a
//! [`ScaledClock`](shared::clock::ScaledClock): a 12 h wait passes in seconds when it runs fast.
//!
//! ```no_run
//! # async fn run() -> Result<(), sandbox::SandboxError> {
//! use sandbox::{Sandbox, SandboxConfig};
//! use shared::clock::ScaledClock;
//!
//! let clock = ScaledClock::new(chrono::Utc::now(), 3_600.0);
//! let mut config = SandboxConfig::new(42, clock);
//! config.callback_url = Some("http://127.0.0.1:3000/webhook".into());
//! let sandbox = Sandbox::start(config).await?;
//! let campaign = sandbox.population().campaign(300);
//! // … send to `sandbox.base_url()` with the access token, then:
//! println!("{:?}", sandbox.stats());
//! sandbox.shutdown().await
//! # }
//! ```
//!
//! The budget model and every default are described in docs/sandbox.md.

mod budget;
pub mod config;
mod graph;
mod limits;
pub mod population;
pub mod scenario;
mod stats;
mod webhooks;
mod world;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use shared::clock::Clock;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

pub use config::{CapModel, SandboxConfig, ScriptedOutcome};
pub use population::{Population, Recipient, RecipientKind};
pub use scenario::{AccountEvent, Scenario, TemplateStatus};
pub use stats::Stats;
pub use world::Reply;

use crate::stats::Posted;
use crate::webhooks::{Poster, Scheduled};
use crate::world::World;

/// What can go wrong running the sandbox or asking it to act.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error("cannot build the webhook client: {0}")]
    HttpClient(String),
    #[error("no callback URL is set, so no webhook can be posted")]
    NoCallbackUrl,
    #[error("the receiver did not take the webhook in {attempts} tries; last: {last_problem}")]
    WebhookNotTaken { attempts: usize, last_problem: String },
    #[error("{0} was never sent a template, so there is no button to tap")]
    NothingToAnswer(String),
    #[error("the sandbox's server failed: {0}")]
    Server(String),
}

/// Starts sandboxes.
#[derive(Debug)]
pub struct Sandbox;

impl Sandbox {
    /// Listens on 127.0.0.1 (the configured port, or a free one) and serves until
    /// [`SandboxHandle::shutdown`].
    pub async fn start(config: SandboxConfig) -> Result<SandboxHandle, SandboxError> {
        let port = config.port;
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .map_err(|source| SandboxError::Bind { port, source })?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Bind { port, source })?;
        let stats = Arc::new(Mutex::new(Stats::default()));
        let poster = Poster::new(&config, stats.clone())?;
        let population = Population::new(&config);
        let origin = config.clock.now();
        let config = Arc::new(config);
        let state = Arc::new(SandboxState {
            world: Mutex::new(World::new(config.clone(), population.clone(), origin)),
            config,
            poster,
            stats,
            tasks: Mutex::new(JoinSet::new()),
            origin,
            scenario_started: AtomicBool::new(false),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let app = graph::router(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    // A dropped sender stops the server too.
                    let _ = stopped.await;
                })
                .await
        });
        if state.config.callback_url.is_some() {
            state.play_scenario();
        }
        Ok(SandboxHandle { addr, population, state, stop, server })
    }
}

/// A running sandbox.
#[derive(Debug)]
pub struct SandboxHandle {
    addr: SocketAddr,
    population: Population,
    state: Arc<SandboxState>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
}

impl SandboxHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What a Cloud API client takes as its base URL (the version goes after it).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The simulated recipients: their kinds, and campaigns of them.
    pub fn population(&self) -> &Population {
        &self.population
    }

    /// Points webhooks at `url` from now on, including those already scheduled. The first URL
    /// set starts the scenario (its events already due are played at once).
    pub fn set_callback_url(&self, url: impl Into<String>) {
        self.state.poster.set_callback_url(Some(url.into()));
        self.state.play_scenario();
    }

    /// The recipient `number` writes to the business now (which opens a customer-service
    /// window); the inbound webhook is posted before this returns. Returns its wamid.
    pub async fn reply(&self, number: &str, reply: Reply) -> Result<String, SandboxError> {
        let now = self.state.config.clock.now();
        let (wamid, change) = self.state.world().inbound(now, number, &reply)?;
        self.state.poster.post(change, Posted::Inbound).await?;
        Ok(wamid)
    }

    /// The recipient presses Stop on marketing from the business: the `user_preferences`
    /// webhook is posted before this returns, and marketing sends fail with 131050 until a
    /// [`SandboxHandle::press_resume`].
    pub async fn press_stop(&self, number: &str) -> Result<(), SandboxError> {
        self.press(number, true).await
    }

    /// The recipient presses Resume: marketing is delivered again.
    pub async fn press_resume(&self, number: &str) -> Result<(), SandboxError> {
        self.press(number, false).await
    }

    async fn press(&self, number: &str, stop: bool) -> Result<(), SandboxError> {
        let now = self.state.config.clock.now();
        let change = self.state.world().preference(now, number, stop);
        self.state.poster.post(change, Posted::Preference).await
    }

    /// Meta changes the portfolio's messaging limit (`None`: unlimited): sends past the new one
    /// are refused from now on, and the `business_capability_update` webhook is posted before
    /// this returns.
    pub async fn change_messaging_limit(&self, limit: Option<u32>) -> Result<(), SandboxError> {
        self.state.apply(&AccountEvent::MessagingLimit(limit)).await
    }

    /// Meta flags the business number's quality as low (`true`, a RED rating) or lifts the flag
    /// (`false`, GREEN again): the `phone_number_quality_update` webhook is posted before this
    /// returns. The sandbox's own delivery does not change with it.
    pub async fn flag_quality(&self, flagged: bool) -> Result<(), SandboxError> {
        self.state.apply(&AccountEvent::Quality { flagged }).await
    }

    /// Meta changes template `name`'s status: a paused template's sends are refused with 132015
    /// and a disabled one's with 132016 until it is usable again, and the
    /// `message_template_status_update` webhook is posted before this returns.
    pub async fn change_template_status(
        &self,
        name: &str,
        language: &str,
        status: TemplateStatus,
    ) -> Result<(), SandboxError> {
        let (name, language) = (name.to_owned(), language.to_owned());
        self.state.apply(&AccountEvent::TemplateStatus { name, language, status }).await
    }

    /// Meta rescores template `name` (`GREEN`, `YELLOW`, `RED`) from its last score: the
    /// `message_template_quality_update` webhook is posted before this returns.
    pub async fn change_template_quality(&self, name: &str, language: &str, score: &str) -> Result<(), SandboxError> {
        let (name, language, score) = (name.to_owned(), language.to_owned(), score.to_owned());
        self.state.apply(&AccountEvent::TemplateQuality { name, language, score }).await
    }

    /// Meta paces template `name` from now on, answering its sends `held_for_quality_assessment`
    /// and holding each message `hold` (simulated time) before it goes out; `None` stops.
    pub async fn pace_template(&self, name: &str, hold: Option<chrono::TimeDelta>) -> Result<(), SandboxError> {
        self.state.apply(&AccountEvent::Pace { name: name.to_owned(), hold }).await
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    /// Stops serving and drops the webhooks still to come.
    pub async fn shutdown(self) -> Result<(), SandboxError> {
        let mut tasks = std::mem::take(&mut *self.state.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        tasks.shutdown().await;
        self.state.poster.stop();
        // The server may have stopped already, in which case there is no one to tell.
        let _ = self.stop.send(());
        match self.server.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(SandboxError::Server(error.to_string())),
            Err(error) => Err(SandboxError::Server(error.to_string())),
        }
    }
}

/// What the request handlers and the handle share.
#[derive(Debug)]
struct SandboxState {
    config: Arc<SandboxConfig>,
    world: Mutex<World>,
    poster: Poster,
    stats: Arc<Mutex<Stats>>,
    tasks: Mutex<JoinSet<()>>,
    /// When the sandbox started: the scenario's times count from it.
    origin: chrono::DateTime<chrono::Utc>,
    /// Whether the scenario has been started.
    scenario_started: AtomicBool,
}

impl SandboxState {
    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stats(&self) -> Stats {
        let peak = self.world().counted_peak();
        Stats { messaging_limit_peak: peak, ..self.stats.lock().unwrap_or_else(PoisonError::into_inner).clone() }
    }

    /// Does what Meta does for `event`, and posts its webhook (if it has one) before returning.
    async fn apply(&self, event: &AccountEvent) -> Result<(), SandboxError> {
        let change = {
            let mut world = self.world();
            match event {
                AccountEvent::MessagingLimit(limit) => Some(world.change_messaging_limit(*limit)),
                AccountEvent::Quality { flagged } => Some(world.quality_change(*flagged)),
                AccountEvent::TemplateStatus { name, language, status } => {
                    let (event, title) = status.meta_event();
                    Some(world.template_status(name, language, event, title))
                }
                AccountEvent::TemplateQuality { name, language, score } => {
                    let previous = world.template_score(name, language);
                    Some(world.template_quality(name, language, &previous, score))
                }
                AccountEvent::Pace { name, hold } => {
                    world.pace_template(name, *hold);
                    None
                }
            }
        };
        self.count(|stats| stats.account_events += 1);
        match change {
            Some(change) => self.poster.post(change, Posted::Account).await,
            None => Ok(()),
        }
    }

    /// Plays the configured scenario's events, each when it falls due after the sandbox's start;
    /// only once.
    fn play_scenario(self: &Arc<Self>) {
        if self.config.scenario.is_empty() || self.scenario_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let origin = self.origin;
        let state = self.clone();
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner).spawn(async move {
            for timed in state.config.scenario.events() {
                let clock = &state.config.clock;
                tokio::time::sleep(clock.wall_time_for(origin + timed.after - clock.now())).await;
                // A webhook the receiver never took is counted by the poster; the scenario goes on,
                // as Meta's account changes would.
                if let Err(problem) = state.apply(&timed.event).await {
                    tracing::warn!(event = %timed.event, %problem, "an account event's webhook was not taken");
                }
            }
        });
    }

    fn count(&self, update: impl FnOnce(&mut Stats)) {
        update(&mut self.stats.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Posts one message's webhooks in order, each when it falls due.
    fn post_in_background(self: &Arc<Self>, webhooks: Vec<Scheduled>) {
        let state = self.clone();
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        while tasks.try_join_next().is_some() {}
        self.count(|stats| stats.messages_in_flight += 1);
        tasks.spawn(async move {
            for webhook in webhooks {
                // A webhook the receiver never took is counted by the poster; the next one of
                // the message still goes out, as Meta's would.
                state.poster.post_when_due(webhook).await;
            }
            state.count(|stats| stats.messages_in_flight -= 1);
        });
    }
}
