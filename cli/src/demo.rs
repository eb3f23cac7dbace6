//! `capguard demo`: the whole job on one machine, in one process, in well under a minute.
//!
//! It starts the Cloud API sandbox and the local stack, sends a marketing campaign to a few hundred
//! simulated recipients of mixed kinds, and lets time run fast (by default a 12 h wait takes a
//! second) so the whole 12 h / 24 h / 48 h ladder plays out: caps, retries, replies that fire
//! waiting retries, Stop presses, exhaustion. It prints progress as it goes and the campaign's
//! funnel at the end.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use clap::Args;
use sandbox::{Sandbox, SandboxConfig};
use shared::clock::{Clock, ScaledClock};
use shared::domain::ladder::{DEFAULT_LADDER, DEFAULT_MIN_STEP, Ladder, parse_delay};
use shared::domain::rules::Category;
use shared::domain::verdict::Rules;
use shared::report::Funnel;
use shared::store::DEFAULT_RETENTION;
use shared::store::embedded::EmbeddedStore;
use shared::usecase::SendSettings;
use shared::usecase::dispatch::{DispatchRequest, RecipientSpec, TemplateName, dispatch};
use shared::whatsapp::send::{Component, Parameter};

use crate::local::{DEFAULT_SWEEP_INTERVAL, LocalStack, StackSettings};
use crate::views::campaign_sends;

/// Runs a whole campaign against the sandbox with time compressed, then prints its funnel.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many recipients the campaign has.
    #[arg(long, default_value_t = 300)]
    recipients: usize,
    /// The seed of the simulated recipients: the same seed gives the same population.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// The retry ladder: steps may repeat but never shrink.
    #[arg(long, default_value = DEFAULT_LADDER)]
    retry_delays: String,
    /// The shortest step the ladder may have (1h unless given).
    #[arg(long)]
    retry_min_step: Option<String>,
    /// How many times faster than the wall time runs (43200: 12 hours a second).
    #[arg(long, default_value_t = 43_200.0)]
    time_scale: f64,
    /// Give up waiting after this many wall seconds.
    #[arg(long, default_value_t = 50)]
    timeout_secs: u64,
    /// Keep the data in this file, for capguard report and inspect afterwards (by default it
    /// lives in a temporary file that is removed).
    #[arg(long)]
    data: Option<std::path::PathBuf>,
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
    let rules = Rules { ladder, ..Rules::default() };
    let clock = ScaledClock::new(Utc::now(), args.time_scale);
    let started = Instant::now();

    let sandbox_config = SandboxConfig::new(args.seed, clock);
    let (token, secret) = (sandbox_config.access_token.clone(), sandbox_config.app_secret.clone());
    let phone_number_id = sandbox_config.business.phone_number_id.clone();
    let sandbox = Sandbox::start(sandbox_config).await?;

    // Without --data, a folder of its own that goes when the demo ends.
    let scratch = tempfile::Builder::new().prefix("capguard-demo-").tempdir().context("a temporary folder")?;
    let path = args.data.clone().unwrap_or_else(|| scratch.path().join("demo.redb"));
    let _ = std::fs::remove_file(&path);
    let store = EmbeddedStore::open(&path, DEFAULT_RETENTION)?;
    let timers = store.file();
    let settings = StackSettings {
        port: 0,
        rules,
        sending: SendSettings::default(),
        graph_base_url: sandbox.base_url(),
        graph_version: None,
        access_token: token,
        app_secret: secret,
        verify_token: "demo".into(),
        clock: Arc::new(clock),
        sweep_interval: DEFAULT_SWEEP_INTERVAL,
        fail_timers: 0,
    };
    let ladder = settings.rules.ladder.to_string();
    let stack = LocalStack::start(store, timers, settings).await?;
    sandbox.set_callback_url(stack.webhook_url());

    let population = sandbox.population().campaign(args.recipients);
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    for recipient in &population {
        *kinds.entry(recipient.kind.as_str()).or_default() += 1;
    }
    println!(
        "capguard demo: {} recipients, seed {}, ladder {ladder}, time x{}",
        args.recipients, args.seed, args.time_scale
    );
    println!(
        "  sandbox {}  local stack {}  recipients by kind: {}",
        sandbox.base_url(),
        stack.webhook_url(),
        kinds.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
    );

    let campaign = format!("demo-{}", args.seed);
    let request = DispatchRequest {
        phone_number_id,
        template: TemplateName { name: "spring_sale".into(), language: "en_US".into() },
        category: Category::Marketing,
        campaign: Some(campaign.clone()),
        idempotency_key: format!("demo-{}-{}", args.seed, Utc::now().timestamp_millis()),
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
            })
            .collect(),
    };
    let deps = Arc::clone(stack.deps());
    let sending = tokio::spawn(async move { dispatch(&deps, &request).await });

    let deadline = started + Duration::from_secs(args.timeout_secs);
    let origin = clock.now();
    let funnel = loop {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let sends = campaign_sends(&stack.deps().store, &campaign).await?;
        let funnel = Funnel::of(&sends);
        let simulated = clock.now() - origin;
        println!(
            "  {:>5.1}s  (+{:>3}d {:>2}h)  recorded {:>4}  delivered {:>4}  capped {:>4}  exhausted {:>3}  opted out {:>3}  in progress {:>4}",
            started.elapsed().as_secs_f64(),
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
        let all_recorded = funnel.sends as usize == args.recipients && sending.is_finished();
        if all_recorded && funnel.in_progress == 0 {
            break funnel;
        }
        if Instant::now() >= deadline {
            println!("  stopped waiting after {} s; {} sends still in progress", args.timeout_secs, funnel.in_progress);
            break funnel;
        }
    };
    sending.await.context("the dispatch task failed")?.context("dispatching the campaign")?;

    println!("\nfunnel of campaign {campaign} ({:.1} s):", started.elapsed().as_secs_f64());
    print!("{}", funnel.render());
    if !funnel.adds_up() {
        bail!("the funnel does not add up: {funnel:?}");
    }
    println!("  every recipient is counted once: {} sends in {} outcomes", funnel.sends, funnel.sends);
    let stats = sandbox.stats();
    println!(
        "sandbox: {} accepted, webhooks posted {:?}, failures {:?}",
        stats.accepted, stats.statuses_posted, stats.failures_posted
    );

    stack.shutdown().await?;
    sandbox.shutdown().await?;
    if let Some(path) = &args.data {
        println!("data kept in {}: capguard report --campaign {campaign} --data {}", path.display(), path.display());
    }
    Ok(())
}
