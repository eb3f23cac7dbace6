//! DynamoDB Local for the tests: where `scripts/services` started it, and a fresh table per test.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::TimeDelta;
use shared::store::DEFAULT_RETENTION;
use shared::store::dynamo::{DynamoStore, create_table};

/// The variable `scripts/services` exports DynamoDB Local's address in.
pub const DYNAMODB_ENDPOINT: &str = "CAPGUARD_DYNAMODB_ENDPOINT";

/// DynamoDB Local's address. A test that needs it fails without it, never skips.
pub fn dynamodb_endpoint() -> String {
    std::env::var(DYNAMODB_ENDPOINT)
        .unwrap_or_else(|_| panic!("{DYNAMODB_ENDPOINT} is not set: run scripts/test, which starts DynamoDB Local"))
}

/// A store on a new table of its own, keeping items for the default retention.
pub async fn fresh_dynamo_store() -> DynamoStore {
    fresh_dynamo_store_keeping(DEFAULT_RETENTION).await
}

/// A store on a new table of its own, keeping items for `retention`.
pub async fn fresh_dynamo_store_keeping(retention: TimeDelta) -> DynamoStore {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let table = format!("capguard-test-{}-{}", std::process::id(), SERIAL.fetch_add(1, Ordering::Relaxed));
    let store = DynamoStore::connect(Some(&dynamodb_endpoint()), table, retention).await;
    create_table(store.client(), store.table()).await.expect("DynamoDB Local creates the table");
    store
}
