//! Meta's throughput limit per business number holds for the whole deployment, not per instance:
//! four dispatchers, each with its own DynamoDB client and scheduler as four Lambda instances
//! would have, send at once from one number to a sandbox that enforces the limit as Meta does
//! (calls per second per number, a second's burst allowed, error 130429 past it).
//!
//! The deployed pacing books each call's turn in the shared table, and the sandbox refuses
//! nothing; each process pacing itself alone, as before, runs at four times the rate and is
//! refused.

use std::sync::Arc;

use capguard_tests::dynamo::{dynamodb_endpoint, fresh_dynamo_store};
use capguard_tests::moto::fresh_scheduler;
use sandbox::{Sandbox, SandboxConfig, Stats};
use shared::clock::ScaledClock;
use shared::cloud::http::{AccessToken, HttpCloudApi, HttpCloudApiConfig};
use shared::domain::rules::Category;
use shared::domain::verdict::Rules;
use shared::pace::Throttle;
use shared::store::DEFAULT_RETENTION;
use shared::store::dynamo::DynamoStore;
use shared::usecase::dispatch::{DispatchRequest, RecipientResult, RecipientSpec, TemplateName, dispatch};
use shared::usecase::{Deps, SendSettings};

/// The number's limit, in the sandbox and in capguard's settings.
const RATE: u32 = 20;
const DISPATCHERS: usize = 4;
/// Recipients per dispatcher: five seconds of the number's rate in all.
const EACH: usize = 25;
const RETRY_EXECUTOR: &str = "arn:aws:lambda:us-east-1:123456789012:function:capguard-retry-executor";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pacing {
    /// Each process books its turns in the shared table (the deployed functions).
    Shared,
    /// Each process spaces its own calls only.
    PerProcess,
}

/// Four dispatchers sending at once; what the sandbox saw, and what they answered.
async fn four_dispatchers(pacing: Pacing) -> (Stats, Vec<RecipientResult>) {
    let clock = ScaledClock::new(chrono::Utc::now(), 1.0);
    let mut config = SandboxConfig::new(23, clock);
    config.limits.throughput_per_second = RATE;
    let phone_number_id = config.business.phone_number_id.clone();
    let sandbox = Sandbox::start(config).await.expect("the sandbox starts");
    let table = fresh_dynamo_store().await.table().to_owned();
    let recipients = sandbox.population().campaign(DISPATCHERS * EACH);
    let sending = SendSettings { throughput_per_second: RATE, ..SendSettings::default() };

    let mut dispatchers = Vec::new();
    for (n, share) in recipients.chunks(EACH).enumerate() {
        let store = DynamoStore::connect(Some(&dynamodb_endpoint()), table.clone(), DEFAULT_RETENTION).await;
        let scheduler = fresh_scheduler("throughput", RETRY_EXECUTOR).await;
        let token = AccessToken::new(sandbox::config::DEFAULT_ACCESS_TOKEN);
        let cloud = HttpCloudApi::new(HttpCloudApiConfig::new(token).with_base_url(sandbox.base_url()))
            .expect("an HTTP client");
        let throttle = match pacing {
            Pacing::Shared => Throttle::shared(RATE, Arc::new(store.clone())),
            Pacing::PerProcess => Throttle::new(RATE),
        };
        let mut deps = Deps::new(store, scheduler, cloud, Arc::new(clock), Rules::default(), sending.clone());
        deps.throttle = throttle;
        let request = DispatchRequest {
            phone_number_id: phone_number_id.clone(),
            template: TemplateName { name: "order_update".into(), language: "en_US".into() },
            category: Category::Utility,
            campaign: Some("throughput".into()),
            idempotency_key: format!("dispatcher-{n}"),
            retry_until: None,
            utc_offset: None,
            default_country: None,
            recipients: share
                .iter()
                .map(|r| RecipientSpec { to: r.number.clone(), components: vec![], opt_in: None })
                .collect(),
        };
        dispatchers.push(tokio::spawn(async move { dispatch(&deps, &request).await.expect("dispatch runs").results }));
    }
    let mut results = Vec::new();
    for dispatcher in dispatchers {
        results.extend(dispatcher.await.expect("the dispatcher finishes"));
    }
    let stats = sandbox.stats();
    sandbox.shutdown().await.expect("the sandbox stops");
    (stats, results)
}

fn accepted(results: &[RecipientResult]) -> usize {
    results.iter().filter(|r| matches!(r, RecipientResult::Accepted { .. })).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_dispatchers_sharing_the_count_stay_within_the_numbers_rate() {
    let (stats, results) = four_dispatchers(Pacing::Shared).await;
    assert_eq!(stats.refused.get(&130429), None, "Meta's throughput limit was hit: {stats:?}");
    assert_eq!(accepted(&results), DISPATCHERS * EACH, "{results:?}");
    assert_eq!(stats.accepted, (DISPATCHERS * EACH) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_dispatchers_pacing_alone_exceed_it() {
    let (stats, _) = four_dispatchers(Pacing::PerProcess).await;
    assert!(stats.refused.get(&130429).is_some_and(|&n| n > 0), "four times the rate went unrefused: {stats:?}");
}
