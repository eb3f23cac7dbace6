//! Sends per second through the whole local pipeline: dispatch → sandbox → signed status
//! webhooks → intake → embedded store, at 10,000 recipients.
//!
//! `cargo bench -p capguard --bench pipeline` runs the full 10,000; under `cargo test` (no
//! `--bench` flag) it runs 200 recipients as a smoke test, so the suite proves it still works.
//! Throughput limits are lifted on both sides: this measures capguard, not Meta's 80 msg/s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use capguard::local::{DEFAULT_SWEEP_INTERVAL, LocalStack, StackSettings};
use capguard::views::campaign_sends;
use chrono::Utc;
use sandbox::{Sandbox, SandboxConfig};
use shared::clock::ScaledClock;
use shared::domain::lifecycle::{Delivery, Phase};
use shared::domain::rules::Category;
use shared::domain::verdict::{FinalReason, Rules};
use shared::store::embedded::EmbeddedStore;
use shared::store::{DEFAULT_RETENTION, SendRecord};
use shared::usecase::SendSettings;
use shared::usecase::dispatch::{DispatchRequest, RecipientSpec, TemplateName, dispatch};

fn main() -> anyhow::Result<()> {
    let full = std::env::args().any(|arg| arg == "--bench");
    let recipients = if full { 10_000 } else { 200 };
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(recipients))
}

async fn run(recipients: usize) -> anyhow::Result<()> {
    let clock = ScaledClock::new(Utc::now(), 86_400.0);
    let mut config = SandboxConfig::new(11, clock);
    config.limits.throughput_per_second = 1_000_000;
    let (token, secret, phone) =
        (config.access_token.clone(), config.app_secret.clone(), config.business.phone_number_id.clone());
    let sandbox = Sandbox::start(config).await?;

    let scratch = tempfile::Builder::new().prefix("capguard-pipeline-").tempdir()?;
    let path = scratch.path().join("pipeline.redb");
    let store = EmbeddedStore::open(&path, DEFAULT_RETENTION)?;
    let timers = store.database();
    let sending = SendSettings { throughput_per_second: 1_000_000, parallelism: 64, ..SendSettings::default() };
    let settings = StackSettings {
        port: 0,
        rules: Rules::default(),
        sending,
        graph_base_url: sandbox.base_url(),
        graph_version: None,
        access_token: token,
        app_secret: secret,
        verify_token: "bench".into(),
        clock: Arc::new(clock),
        sweep_interval: DEFAULT_SWEEP_INTERVAL,
        fail_timers: 0,
    };
    let stack = LocalStack::start(store, timers, settings).await?;
    sandbox.set_callback_url(stack.webhook_url());

    let request = DispatchRequest {
        phone_number_id: phone,
        template: TemplateName { name: "spring_sale".into(), language: "en_US".into() },
        category: Category::Marketing,
        campaign: Some("pipeline".into()),
        idempotency_key: "pipeline".into(),
        recipients: sandbox
            .population()
            .campaign(recipients)
            .into_iter()
            .map(|r| RecipientSpec { to: r.number, components: vec![] })
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
    let webhooks: u64 = stats.statuses_posted.values().sum();
    // Then, out of the timing, until every send has finished (the retries of capped ones run on
    // after the first wave, a day of the ladder a second): a send whose statuses were lost is
    // left claimed or accepted, or settled by capguard itself as never heard of.
    let deadline = Instant::now() + Duration::from_secs(120);
    let sends = loop {
        let sends = campaign_sends(&stack.deps().store, "pipeline").await?;
        if Instant::now() >= deadline || sends.iter().all(|s| s.life.phase.is_terminal()) {
            break sends;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let heard = |send: &SendRecord| {
        send.attempts.last().is_some_and(|a| {
            a.sent_at.is_some() || a.delivered_at.is_some() || a.read_at.is_some() || a.failed_at.is_some()
        })
    };
    let unsettled = sends
        .iter()
        .filter(|send| match send.life.phase {
            Phase::Claimed { .. } | Phase::InFlight { delivery: Delivery::Accepted, .. } => true,
            Phase::Final { reason: FinalReason::OutcomeUnknown | FinalReason::Undelivered } => !heard(send),
            _ => false,
        })
        .count();
    println!("pipeline: {recipients} recipients, {} accepted by the sandbox", stats.accepted);
    println!(
        "  dispatch (record, claim, call, record the wamid): {:.2} s, {:.0} sends/s",
        dispatched.as_secs_f64(),
        recipients as f64 / dispatched.as_secs_f64()
    );
    println!(
        "  whole pipeline, until every status webhook was taken (dispatch → sandbox → webhook → intake → store): {:.2} s, {:.0} sends/s",
        drained.as_secs_f64(),
        recipients as f64 / drained.as_secs_f64()
    );
    println!(
        "  status webhooks taken: {webhooks} ({:.0}/s); given up by the sandbox: {}; sends left without a status once every retry ended: {unsettled}",
        webhooks as f64 / drained.as_secs_f64(),
        stats.webhooks_abandoned
    );

    stack.shutdown().await?;
    sandbox.shutdown().await?;
    Ok(())
}
