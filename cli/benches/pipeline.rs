//! Sends per second through the whole local pipeline: dispatch → sandbox → signed status
//! webhooks → intake → embedded store, at 10,000 recipients.
//!
//! `cargo bench -p capguard --bench pipeline` runs the full 10,000; under `cargo test` (no
//! `--bench` flag) it runs 200 recipients as a smoke test, so the suite proves it still works.
//! Throughput limits are lifted on both sides: this measures capguard, not Meta's 80 msg/s. The
//! sandbox batches its webhooks as Meta does under load (up to 100 updates a POST); `cargo bench
//! -p capguard --bench pipeline -- --webhook-batch 1` posts each update on its own. The ladder
//! (`support::LADDER`) puts every retry after the first wave, so the timing is the campaign's
//! first sends and their webhooks; the retries run after it, before the sends are counted.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use capguard::local::{DEFAULT_SWEEP_INTERVAL, LocalStack, StackSettings};
use capguard::views::campaign_sends;
use chrono::Utc;
use sandbox::{Sandbox, SandboxConfig};
use shared::clock::ScaledClock;
use shared::domain::rules::Category;
use shared::domain::verdict::Rules;
use shared::store::DEFAULT_RETENTION;
use shared::store::embedded::EmbeddedStore;
use shared::usecase::SendSettings;
use shared::usecase::dispatch::{DispatchRequest, RecipientSpec, TemplateName, dispatch};
use support::{CAMPAIGN, Figures, LADDER, SCALE, SEED, UNLIMITED};

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(support::recipients()))
}

async fn run(recipients: usize) -> anyhow::Result<()> {
    let clock = ScaledClock::new(Utc::now(), SCALE);
    let mut config = SandboxConfig::new(SEED, clock);
    config.limits.throughput_per_second = UNLIMITED;
    config.webhook_batch = support::webhook_batch()?;
    let (token, secret, phone) =
        (config.access_token.clone(), config.app_secret.clone(), config.business.phone_number_id.clone());
    let sandbox = Sandbox::start(config).await?;

    let scratch = tempfile::Builder::new().prefix("capguard-pipeline-").tempdir()?;
    let path = scratch.path().join("pipeline.redb");
    let store = EmbeddedStore::open(&path, DEFAULT_RETENTION)?;
    let timers = store.file();
    let sending = SendSettings { throughput_per_second: UNLIMITED, parallelism: 64, ..SendSettings::default() };
    let settings = StackSettings {
        port: 0,
        rules: Rules { ladder: LADDER.parse()?, ..Rules::default() },
        sending,
        graph_base_url: sandbox.base_url(),
        graph_version: None,
        access_token: token,
        app_secret: secret,
        verify_token: "bench".into(),
        clock: Arc::new(clock),
        sweep_interval: DEFAULT_SWEEP_INTERVAL,
        fail_timers: 0,
        coexistence: Default::default(),
    };
    let stack = LocalStack::start(store, timers, settings).await?;
    sandbox.set_callback_url(stack.webhook_url());

    let request = DispatchRequest {
        phone_number_id: phone,
        template: TemplateName { name: "spring_sale".into(), language: "en_US".into() },
        category: Category::Marketing,
        campaign: Some(CAMPAIGN.into()),
        idempotency_key: CAMPAIGN.into(),
        retry_until: None,
        utc_offset: None,
        default_country: None,
        recipients: sandbox
            .population()
            .campaign(recipients)
            .into_iter()
            .map(|r| RecipientSpec { to: r.number, components: vec![], opt_in: None })
            .collect(),
    };
    let started = Instant::now();
    let answer = dispatch(stack.deps(), &request).await?;
    let dispatched = started.elapsed();
    anyhow::ensure!(answer.results.len() == recipients, "every recipient has a result");

    // Done when the sandbox has nothing left to post: every accepted message's status webhooks
    // were taken by the intake (or, past the sandbox's retries, given up on: counted below).
    let deadline = started + Duration::from_secs(600);
    let drained = loop {
        let stats = sandbox.stats();
        if stats.messages_in_flight == 0 {
            break started.elapsed();
        }
        anyhow::ensure!(Instant::now() < deadline, "{} messages still in flight after 600 s", stats.messages_in_flight);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stats = sandbox.stats();
    // Then, out of the timing, until every send has finished (the retries of capped ones run on
    // after the first wave, a day of the ladder a second).
    let deadline = Instant::now() + Duration::from_secs(120);
    let sends = loop {
        let sends = campaign_sends(&stack.deps().store, CAMPAIGN).await?;
        if Instant::now() >= deadline || sends.iter().all(|s| s.life.phase.is_terminal()) {
            break sends;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // And until the retries' webhooks are taken too, for the count of those given up.
    while sandbox.stats().messages_in_flight > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let figures = Figures::of(recipients, (dispatched, drained), (&stats, &sandbox.stats()), &sends);
    figures.print("pipeline, in one process");

    stack.shutdown().await?;
    sandbox.shutdown().await?;
    figures.check()
}
