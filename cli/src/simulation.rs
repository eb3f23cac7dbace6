//! One marketing campaign played through the sandbox and the local stack with time compressed,
//! until every send has finished: what `capguard demo` shows and `capguard lab` compares.
//!
//! A simulation may give its recipients a history first: utility campaigns to the same
//! population, days before, each played through its own sandbox and stack on the same store, so
//! that capguard learns from their webhooks who reads and who writes back (the engagement tiers)
//! as it would in production.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use sandbox::{CapModel, Recipient, Sandbox, SandboxConfig, SandboxHandle, Scenario};
use shared::clock::{Clock, ScaledClock};
use shared::domain::consent::OptIn;
use shared::domain::limit::MessagingLimit;
use shared::domain::rules::Category;
use shared::domain::verdict::Rules;
use shared::report::Funnel;
use shared::store::DEFAULT_RETENTION;
use shared::store::embedded::EmbeddedStore;
use shared::store::{Listings as _, SendRecord};
use shared::usecase::SendSettings;
use shared::usecase::dispatch::{DispatchRequest, RecipientSpec, TemplateName, dispatch};
use shared::whatsapp::send::{Component, Parameter};

use crate::local::{DEFAULT_SWEEP_INTERVAL, LocalStack, StackSettings};
use crate::views::campaign_sends;

/// How often the campaign is looked at, and how often the progress is told (wall time).
const POLL: Duration = Duration::from_millis(100);
const TICK: Duration = Duration::from_secs(1);

/// The time scale of a simulation's warm-up: a wall second is a simulated minute.
pub const WARM_UP_SCALE: f64 = 60.0;

/// What to play.
#[derive(Debug, Clone)]
pub struct Simulation {
    /// The campaign's name, which its sends are listed by.
    pub campaign: String,
    pub recipients: usize,
    /// The population's seed: the same seed gives the same recipients, budgets and traffic.
    pub seed: u64,
    pub cap_model: CapModel,
    pub rules: Rules,
    /// How many times faster than the wall the simulated time runs.
    pub time_scale: f64,
    /// The simulated instant the campaign starts at; now when not given.
    pub start: Option<DateTime<Utc>>,
    /// Run the clock at only [`WARM_UP_SCALE`] for this first wall time, so that the campaign's
    /// first sends all go out within simulated minutes of its start, however busy the machine.
    pub warm_up: Option<Duration>,
    /// Give up waiting after this much wall time.
    pub timeout: Duration,
    /// Keep the store in this file (a temporary one otherwise).
    pub data: Option<PathBuf>,
    /// Before the campaign, a utility campaign to the same recipients this long before it, for
    /// each (the earliest first).
    pub history: Vec<TimeDelta>,
    /// What Meta does to the account during the campaign, from its start (the history's
    /// campaigns play none).
    pub scenario: Scenario,
    /// The percentage of the campaign's recipients whose opt-in it carries (none: no consent is
    /// given), for a run with `REQUIRE_OPT_IN`.
    pub opt_ins: Option<u8>,
}

/// What the simulation tells as it goes.
pub enum Progress<'a> {
    /// The sandbox and the stack are up, and the campaign is about to be sent.
    Started { sandbox: &'a str, stack: &'a str, population: &'a [Recipient] },
    /// About once a wall second: the campaign so far.
    Tick { funnel: &'a Funnel, elapsed: Duration, simulated: TimeDelta },
}

/// How the campaign ended.
pub struct Played {
    pub campaign: String,
    pub sends: Vec<SendRecord>,
    pub population: Vec<Recipient>,
    /// The simulated instant the campaign was sent at.
    pub origin: DateTime<Utc>,
    /// Whether every send finished before the timeout.
    pub finished: bool,
    pub elapsed: Duration,
    pub sandbox: sandbox::Stats,
}

/// Plays `simulation` to its end (or its timeout), telling `progress` as it goes.
pub async fn play(simulation: &Simulation, mut progress: impl FnMut(Progress<'_>)) -> anyhow::Result<Played> {
    anyhow::ensure!(simulation.recipients > 0, "a campaign needs at least one recipient");
    anyhow::ensure!(
        simulation.time_scale.is_finite() && simulation.time_scale >= 1.0,
        "the time scale must be 1 or more"
    );
    let start = simulation.start.unwrap_or_else(Utc::now);
    let started = Instant::now();
    // Without a data file, a folder of its own that goes when the run ends.
    let scratch = tempfile::Builder::new().prefix("capguard-run-").tempdir().context("a temporary folder")?;
    let path = simulation.data.clone().unwrap_or_else(|| scratch.path().join("run.redb"));
    let _ = std::fs::remove_file(&path);
    let mut history = simulation.history.clone();
    history.sort_unstable_by(|a, b| b.cmp(a));
    for before in history {
        let deadline = started + simulation.timeout;
        remember(simulation, &path, start - before, deadline).await.context("playing the recipients' history")?;
    }

    let clock = ScaledClock::new(start, simulation.time_scale);
    let clock = match simulation.warm_up {
        Some(wall) => clock.with_warm_up(wall, WARM_UP_SCALE),
        None => clock,
    };
    let World { sandbox, stack, phone_number_id } = start_world(simulation, &path, clock).await?;
    let population = sandbox.population().campaign(simulation.recipients);
    progress(Progress::Started { sandbox: &sandbox.base_url(), stack: &stack.webhook_url(), population: &population });

    let campaign = simulation.campaign.clone();
    let mut request = campaign_request(&phone_number_id, &population, &campaign, "spring_sale", Category::Marketing);
    if let Some(share) = simulation.opt_ins {
        give_opt_ins(&mut request, share, simulation.seed);
    }
    let origin = clock.now();
    let deps = Arc::clone(stack.deps());
    let sending = tokio::spawn(async move { dispatch(&deps, &request).await });

    let deadline = started + simulation.timeout;
    let mut next_tick = started + TICK;
    // Done when the dispatch has recorded every recipient and no send is unfinished: the due
    // index, which holds every unfinished send, is empty. A cheap look, so it can be frequent;
    // the whole campaign is read only for the progress and at the end.
    let finished = loop {
        tokio::time::sleep(POLL).await;
        if Instant::now() >= next_tick {
            next_tick += TICK;
            let funnel = Funnel::of(&campaign_sends(&stack.deps().store, &campaign).await?);
            progress(Progress::Tick { funnel: &funnel, elapsed: started.elapsed(), simulated: clock.now() - origin });
        }
        if sending.is_finished() && stack.deps().store.overdue(DateTime::<Utc>::MAX_UTC, 1).await?.is_empty() {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
    };
    let sends = campaign_sends(&stack.deps().store, &campaign).await?;
    if finished {
        sending.await.context("the dispatch task failed")?.context("dispatching the campaign")?;
    } else {
        sending.abort();
    }
    let stats = sandbox.stats();
    stack.shutdown().await?;
    sandbox.shutdown().await?;
    Ok(Played { campaign, sends, population, origin, finished, elapsed: started.elapsed(), sandbox: stats })
}

/// A sandbox with the simulation's seed and cap model on `clock`, and the local stack on the
/// store at `path`, listening to it.
struct World {
    sandbox: SandboxHandle,
    stack: LocalStack<EmbeddedStore>,
    phone_number_id: String,
}

async fn start_world(simulation: &Simulation, path: &Path, clock: ScaledClock) -> anyhow::Result<World> {
    let mut sandbox_config = SandboxConfig::with_cap_model(simulation.seed, clock, simulation.cap_model);
    sandbox_config.scenario = simulation.scenario.clone();
    // The sandbox's portfolio has the messaging limit capguard is told it has.
    sandbox_config.limits.messaging_limit = simulation.rules.messaging_limit.and_then(MessagingLimit::unique);
    let (token, secret) = (sandbox_config.access_token.clone(), sandbox_config.app_secret.clone());
    let phone_number_id = sandbox_config.business.phone_number_id.clone();
    let sandbox = Sandbox::start(sandbox_config).await?;
    let store = EmbeddedStore::open(path, DEFAULT_RETENTION)?;
    let timers = store.file();
    let settings = StackSettings {
        port: 0,
        rules: simulation.rules.clone(),
        sending: SendSettings::default(),
        graph_base_url: sandbox.base_url(),
        graph_version: None,
        access_token: token,
        app_secret: secret,
        verify_token: "simulation".into(),
        clock: Arc::new(clock),
        sweep_interval: DEFAULT_SWEEP_INTERVAL,
        fail_timers: 0,
        coexistence: Default::default(),
    };
    let stack = LocalStack::start(store, timers, settings).await?;
    sandbox.set_callback_url(stack.webhook_url());
    Ok(World { sandbox, stack, phone_number_id })
}

/// The request that sends `template` to every recipient of `population`.
fn campaign_request(
    phone_number_id: &str,
    population: &[Recipient],
    campaign: &str,
    template: &str,
    category: Category,
) -> DispatchRequest {
    DispatchRequest {
        phone_number_id: phone_number_id.to_owned(),
        template: TemplateName { name: template.into(), language: "en_US".into() },
        category,
        campaign: Some(campaign.to_owned()),
        idempotency_key: format!("{campaign}-{}", Utc::now().timestamp_millis()),
        retry_until: None,
        utc_offset: None,
        default_country: None,
        recipients: population
            .iter()
            .map(|r| RecipientSpec {
                to: r.number.clone(),
                components: vec![Component {
                    kind: "body".into(),
                    sub_type: None,
                    index: None,
                    parameters: vec![Parameter::text("friend")],
                    extra: Default::default(),
                }],
                opt_in: None,
            })
            .collect(),
    }
}

/// Where the simulated recipients opted in, in turn.
const OPT_IN_SOURCES: [&str; 4] = ["website_form", "qr_code", "checkout", "support_chat"];

/// Gives `share` percent of `request`'s recipients an opt-in, spread over the list by `seed`.
fn give_opt_ins(request: &mut DispatchRequest, share: u8, seed: u64) {
    for (index, recipient) in request.recipients.iter_mut().enumerate() {
        let turn = (index as u64).wrapping_mul(37).wrapping_add(seed) % 100;
        if turn < u64::from(share) {
            let source = OPT_IN_SOURCES[index % OPT_IN_SOURCES.len()].to_owned();
            recipient.opt_in = Some(OptIn { source, at: None, note: Some("capguard demo".into()) });
        }
    }
}

/// One utility campaign to the simulation's recipients at `at`, played until its sends have
/// finished and the sandbox has posted every webhook of its messages (the reads and replies that
/// come hours after a delivery among them), on the store at `path`.
async fn remember(simulation: &Simulation, path: &Path, at: DateTime<Utc>, deadline: Instant) -> anyhow::Result<()> {
    let clock = ScaledClock::new(at, simulation.time_scale);
    // The account's events belong to the campaign, not to its history.
    let simulation = &Simulation { scenario: Scenario::default(), ..simulation.clone() };
    let World { sandbox, stack, phone_number_id } = start_world(simulation, path, clock).await?;
    let population = sandbox.population().campaign(simulation.recipients);
    let campaign = format!("history-{}", at.format("%Y-%m-%d"));
    let request = campaign_request(&phone_number_id, &population, &campaign, "order_update", Category::Utility);
    dispatch(stack.deps(), &request).await.context("dispatching a history campaign")?;
    loop {
        let settled = sandbox.stats().messages_in_flight == 0
            && stack.deps().store.overdue(DateTime::<Utc>::MAX_UTC, 1).await?.is_empty();
        if settled {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the recipients' history did not settle before the timeout");
        tokio::time::sleep(POLL).await;
    }
    stack.shutdown().await?;
    sandbox.shutdown().await?;
    Ok(())
}
