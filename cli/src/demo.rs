//! `capguard demo`: the whole job on one machine, in one process, in well under a minute.
//!
//! It starts the Cloud API sandbox and the local stack, sends a marketing campaign to a few hundred
//! simulated recipients of mixed kinds, and lets time run fast (by default a day a second) so the
//! whole ladder plays out: caps, retries, replies that fire waiting retries, Stop presses,
//! exhaustion. Before it, utility messages to the same recipients weeks and days earlier teach
//! capguard who reads (the engagement tiers). It prints progress as it goes and the campaign's
//! funnel at the end.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::TimeDelta;
use clap::Args;
use sandbox::{CapModel, Scenario};
use shared::domain::ladder::{DEFAULT_LADDER, DEFAULT_MIN_STEP, Ladder, parse_delay};
use shared::domain::limit::MessagingLimit;
use shared::domain::verdict::Rules;
use shared::report::Funnel;

use crate::simulation::{Progress, Simulation, play};

/// Runs a whole campaign against the sandbox with time compressed, then prints its funnel.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many recipients the campaign has.
    #[arg(long, default_value_t = 300)]
    recipients: usize,
    /// The seed of the simulated recipients: the same seed gives the same population.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// The sandbox's model of the per-user marketing limit: default, strict or loose
    /// (docs/sandbox.md, "Cap models").
    #[arg(long, default_value_t = CapModel::Default)]
    cap_model: CapModel,
    /// The retry ladder: steps may repeat but never shrink.
    #[arg(long, default_value = DEFAULT_LADDER)]
    retry_delays: String,
    /// The shortest step the ladder may have (1h unless given).
    #[arg(long)]
    retry_min_step: Option<String>,
    /// How many times faster than the wall time runs (86400: a day a second).
    #[arg(long, default_value_t = 86_400.0)]
    time_scale: f64,
    /// Give up waiting after this many wall seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Keep the data in this file, for capguard report and inspect afterwards (by default it
    /// lives in a temporary file that is removed).
    #[arg(long)]
    data: Option<std::path::PathBuf>,
    /// Before the campaign, a utility message to the same recipients this long before it, for
    /// each delay given, so that capguard knows who reads (the engagement tiers); `none` for
    /// recipients it has never seen.
    #[arg(long, default_value = DEMO_HISTORY)]
    history: String,
    /// The portfolio's messaging limit, in the sandbox and in capguard (`250`, `2k`, …): a
    /// campaign larger than it goes out over days (by default the demo's portfolio has none).
    #[arg(long)]
    messaging_limit: Option<String>,
    /// What Meta does to the account during the campaign, as `<delay> <event>` pairs
    /// (`1d quality=red, 2d quality=green, 3d template=spring_sale/paused`; docs/sandbox.md,
    /// "Account events"), or `health`: the new template paced for its first 6 h, the number
    /// rated RED from 20 h to 44 h, the template paused from 68 h to 71 h, under a messaging
    /// limit of a third of the recipients unless --messaging-limit says otherwise.
    #[arg(long, default_value = "none")]
    events: String,
    /// Require an opt-in for marketing (`REQUIRE_OPT_IN`), and give one to this percentage of
    /// the recipients (their sources `website_form`, `qr_code`, `checkout`, `support_chat`): the
    /// rest are refused up front as `no_opt_in`.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    require_opt_in: Option<u8>,
}

/// `--events`: the health story, or a scenario as written.
fn parse_events(text: &str) -> anyhow::Result<(Scenario, bool)> {
    let health = text.trim() == "health";
    let text = if health { Scenario::HEALTH } else { text };
    let scenario = text.parse::<Scenario>().map_err(|problem| anyhow::anyhow!("--events: {problem}"))?;
    Ok((scenario, health))
}

/// The demo's history: a utility message a week before the campaign, so that those who read it
/// or wrote back are engaged now.
const DEMO_HISTORY: &str = "7d";

/// Delays as `--history` takes them: comma-separated, or `none`.
pub fn parse_history(text: &str) -> anyhow::Result<Vec<TimeDelta>> {
    match text.trim() {
        "none" => Ok(Vec::new()),
        text => text.split(',').map(|delay| parse_delay(delay).context("--history")).collect(),
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.recipients == 0 {
        bail!("--recipients must be at least 1");
    }
    if !(args.time_scale.is_finite() && args.time_scale >= 1.0) {
        bail!("--time-scale must be 1 or more");
    }
    let min_step = match &args.retry_min_step {
        Some(text) => parse_delay(text).context("--retry-min-step")?,
        None => DEFAULT_MIN_STEP,
    };
    let ladder = Ladder::parse_with_min_step(&args.retry_delays, min_step).context("--retry-delays")?;
    let history = parse_history(&args.history)?;
    let (scenario, health) = parse_events(&args.events)?;
    let messaging_limit = args
        .messaging_limit
        .as_deref()
        .map(str::parse::<MessagingLimit>)
        .transpose()
        .map_err(|problem| anyhow::anyhow!("--messaging-limit: {problem}"))?;
    // The health story spreads the campaign over three days, so that its events meet first
    // attempts as well as retries.
    let third = u32::try_from(args.recipients.div_ceil(3)).unwrap_or(u32::MAX);
    let messaging_limit = messaging_limit.or_else(|| health.then_some(MessagingLimit::Unique(third)));
    let mut account = messaging_limit.map(|limit| format!(", messaging limit {limit}")).unwrap_or_default();
    if let Some(share) = args.require_opt_in {
        account.push_str(&format!(", opt-in required ({share}% gave one)"));
    }
    println!(
        "capguard demo: {} recipients, seed {}, cap model {}, ladder {ladder}, time x{}, history {}{account}",
        args.recipients, args.seed, args.cap_model, args.time_scale, args.history
    );
    let simulation = Simulation {
        campaign: format!("demo-{}", args.seed),
        recipients: args.recipients,
        seed: args.seed,
        cap_model: args.cap_model,
        rules: Rules { ladder, messaging_limit, require_opt_in: args.require_opt_in.is_some(), ..Rules::default() },
        time_scale: args.time_scale,
        start: None,
        warm_up: None,
        timeout: Duration::from_secs(args.timeout_secs),
        data: args.data.clone(),
        history,
        scenario: scenario.clone(),
        opt_ins: args.require_opt_in,
    };
    if !scenario.is_empty() {
        println!("account events to come (simulated time from the campaign's start):");
        for timed in scenario.events() {
            println!("  {timed}");
        }
    }
    let mut told = 0;
    let played = play(&simulation, |progress| match progress {
        Progress::Started { sandbox, stack, population } => {
            let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
            for recipient in population {
                *kinds.entry(recipient.kind.as_str()).or_default() += 1;
            }
            let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
            println!("  sandbox {sandbox}  local stack {stack}  recipients by kind: {}", kinds.join(", "));
        }
        Progress::Tick { funnel, elapsed, simulated } => {
            for timed in scenario.events()[told..].iter().take_while(|timed| timed.after <= simulated) {
                println!("  account: {timed}");
                told += 1;
            }
            // With account events, the sends Meta holds for pacing too.
            let paced = if scenario.is_empty() { String::new() } else { format!("  paced {:>3}", funnel.paced) };
            println!(
                "  {:>5.1}s  (+{:>3}d {:>2}h)  recorded {:>4}  delivered {:>4}  capped {:>4}  exhausted {:>3}  opted out {:>3}  in progress {:>4}{paced}",
                elapsed.as_secs_f64(),
                simulated.num_days(),
                simulated.num_hours() % 24,
                funnel.sends,
                funnel.delivered,
                funnel.capped,
                funnel.exhausted,
                funnel.opted_out,
                funnel.in_progress,
            );
            let _ = std::io::stdout().flush();
        }
    })
    .await?;
    let funnel = Funnel::of(&played.sends);
    if !played.finished {
        println!("  stopped waiting after {} s; {} sends still in progress", args.timeout_secs, funnel.in_progress);
    }

    let campaign = &played.campaign;
    println!("\nfunnel of campaign {campaign} ({:.1} s):", played.elapsed.as_secs_f64());
    print!("{}", funnel.render());
    if !funnel.adds_up() {
        bail!("the funnel does not add up: {funnel:?}");
    }
    println!("  every recipient is counted once: {} sends in {} outcomes", funnel.sends, funnel.sends);
    let stats = &played.sandbox;
    println!(
        "sandbox: {} accepted, webhooks posted {:?}, failures {:?}",
        stats.accepted, stats.statuses_posted, stats.failures_posted
    );
    if !stats.refused.is_empty() {
        println!("sandbox: refused at once {:?}", stats.refused);
    }
    if messaging_limit.is_some() {
        println!("sandbox: at most {} unique users in a moving 24 h", stats.messaging_limit_peak);
    }
    if !scenario.is_empty() {
        println!("sandbox: {} account events played, {} sends paced", stats.account_events, stats.paced);
    }
    if let Some(path) = &args.data {
        println!("data kept in {}: capguard report --campaign {campaign} --data {}", path.display(), path.display());
    }
    Ok(())
}
