//! The pipeline bench over HTTP: `capguard serve` and `capguard sandbox` as two processes, a
//! campaign of 10,000 recipients posted to serve's `POST /sends`, and the same figures as the
//! in-process bench (`benches/pipeline.rs`). This is what a user who runs serve against a sandbox
//! sees: the request is queued in chunks, and each process parses and serializes its own HTTP.
//!
//! `cargo bench -p capguard --bench serve` runs the full 10,000; under `cargo test` it runs 200
//! recipients as a smoke test. When it is done it kills serve (as a crash would) and counts the
//! sends left without a status in its data file, which also proves the file opens after a kill.
//! The sandbox batches webhooks as in the in-process bench; `-- --webhook-batch 1` turns it off.

mod support;

use std::ffi::OsString;
use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use anyhow::Context;
use capguard::views::campaign_sends;
use capguard_tests::e2e::Process;
use chrono::{DateTime, Utc};
use sandbox::{Population, SandboxConfig, Stats};
use serde_json::Value;
use shared::clock::ScaledClock;
use shared::domain::rules::Category;
use shared::store::DEFAULT_RETENTION;
use shared::store::embedded::EmbeddedStore;
use shared::usecase::dispatch::{DispatchRequest, RecipientSpec, TemplateName};
use support::{CAMPAIGN, Figures, LADDER, SCALE, SEED, UNLIMITED};

const ACCESS_TOKEN: &str = "bench-access-token";
const APP_SECRET: &str = "bench-app-secret";
const POLL: Duration = Duration::from_millis(50);

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(support::recipients()))
}

async fn run(recipients: usize) -> anyhow::Result<()> {
    // Whole seconds, as --clock-anchor takes them: both processes read the same scaled time.
    let anchor = Utc::now().timestamp();
    let clock = ScaledClock::anchored(DateTime::from_timestamp(anchor, 0).context("now is a valid time")?, SCALE);
    let scratch = tempfile::Builder::new().prefix("capguard-serve-bench-").tempdir()?;
    let data = scratch.path().join("capguard.redb");
    let shared_args = [
        ("--access-token", ACCESS_TOKEN.to_owned()),
        ("--app-secret", APP_SECRET.to_owned()),
        ("--time-scale", SCALE.to_string()),
        ("--clock-anchor", anchor.to_string()),
    ];

    // serve needs the sandbox's URL and the sandbox serve's: the sandbox's port is chosen first.
    let sandbox_port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port();
    let sandbox_url = format!("http://127.0.0.1:{sandbox_port}");
    let mut serve_args = args(&["serve", "--port", "0", "--graph-base-url", &sandbox_url]);
    serve_args.extend(["--data".into(), data.clone().into()]);
    serve_args.extend(shared_args.iter().flat_map(|(flag, value)| [flag.into(), value.into()]));
    let env =
        [(shared::config::THROUGHPUT_PER_SECOND, UNLIMITED.to_string()), (shared::config::RETRY_DELAYS, LADDER.into())];
    let mut serve = Process::start(&serve_args, &env, &scratch.path().join("serve.log")).await;
    let webhook = format!("{}/webhook", serve.url());
    let mut sandbox_args = args(&["sandbox", "--port", &sandbox_port.to_string(), "--callback", &webhook]);
    sandbox_args.extend(args(&["--seed", &SEED.to_string(), "--throughput-per-second", &UNLIMITED.to_string()]));
    sandbox_args.extend(args(&["--webhook-batch", &support::webhook_batch()?.to_string()]));
    sandbox_args.extend(shared_args.iter().flat_map(|(flag, value)| [flag.into(), value.into()]));
    let sandbox = Process::start(&sandbox_args, &[], &scratch.path().join("sandbox.log")).await;

    // The recipients the sandbox's population of the same seed is made of.
    let config = SandboxConfig::new(SEED, clock);
    let request = DispatchRequest {
        phone_number_id: config.business.phone_number_id.clone(),
        template: TemplateName { name: "spring_sale".into(), language: "en_US".into() },
        category: Category::Marketing,
        campaign: Some(CAMPAIGN.into()),
        idempotency_key: CAMPAIGN.into(),
        retry_until: None,
        utc_offset: None,
        default_country: None,
        recipients: Population::new(&config)
            .campaign(recipients)
            .into_iter()
            .map(|r| RecipientSpec { to: r.number, components: vec![], opt_in: None })
            .collect(),
    };
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let get = async |url: String| -> anyhow::Result<Value> {
        let response = http.get(&url).send().await.with_context(|| format!("GET {url}"))?;
        anyhow::ensure!(response.status().is_success(), "GET {url}: HTTP {}", response.status());
        response.json::<Value>().await.with_context(|| format!("GET {url}: not JSON"))
    };

    let started = Instant::now();
    let response = http.post(format!("{}/sends", serve.url())).json(&request).send().await?;
    anyhow::ensure!(response.status().is_success(), "POST /sends: HTTP {}", response.status());
    let deadline = started + Duration::from_secs(600);
    // Dispatched when no chunk of the request is left in serve's queue.
    let dispatched = loop {
        if get(format!("{}/queue", serve.url())).await?["chunks"] == 0 {
            break started.elapsed();
        }
        anyhow::ensure!(Instant::now() < deadline, "chunks still queued after 600 s");
        tokio::time::sleep(POLL).await;
    };
    // Drained when the sandbox has no message whose webhooks are still to come.
    let stats_url = format!("{sandbox_url}/sandbox/stats");
    let (drained, stats) = loop {
        let stats: Stats = serde_json::from_value(get(stats_url.clone()).await?)?;
        if stats.messages_in_flight == 0 {
            break (started.elapsed(), stats);
        }
        anyhow::ensure!(Instant::now() < deadline, "{} messages still in flight after 600 s", stats.messages_in_flight);
        tokio::time::sleep(POLL).await;
    };
    // Then, out of the timing, until no send is in progress (the retries of capped ones run on).
    let report = format!("{}/campaigns/{CAMPAIGN}/report", serve.url());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let funnel = get(report.clone()).await?;
        if Instant::now() >= deadline || (funnel["sends"] == recipients && funnel["in_progress"] == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // And until the retries' webhooks are taken too, for the count of those given up.
    let ended = loop {
        let stats: Stats = serde_json::from_value(get(stats_url.clone()).await?)?;
        if stats.messages_in_flight == 0 || Instant::now() >= deadline {
            break stats;
        }
        tokio::time::sleep(POLL).await;
    };
    serve.kill();
    drop(sandbox);

    let store = EmbeddedStore::open(&data, DEFAULT_RETENTION).context("the data file opens after serve was killed")?;
    let sends = campaign_sends(&store, CAMPAIGN).await?;
    anyhow::ensure!(sends.len() == recipients, "{} of {recipients} sends recorded", sends.len());
    let figures = Figures::of(recipients, (dispatched, drained), (&stats, &ended), &sends);
    figures.print("pipeline over HTTP, capguard serve and capguard sandbox in two processes");
    figures.check()
}

fn args(words: &[&str]) -> Vec<OsString> {
    words.iter().map(OsString::from).collect()
}
