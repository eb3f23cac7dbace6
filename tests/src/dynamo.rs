//! DynamoDB Local for the tests: where `scripts/services` started it, and a fresh table per test.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::TimeDelta;
use shared::store::DEFAULT_RETENTION;
use shared::store::dynamo::{DynamoStore, create_table_without_ttl};

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
///
/// The table has TTL off: tests run on clocks months away from the wall's, and DynamoDB Local's
/// TTL, which goes by the wall clock, would delete within seconds items that are alive on the
/// test's clock. The store treats expired items as absent on its own; `dynamo_capacity` checks
/// that `create_table` turns TTL on.
pub async fn fresh_dynamo_store_keeping(retention: TimeDelta) -> DynamoStore {
    let store = DynamoStore::connect(Some(&dynamodb_endpoint()), unique_table_name(), retention).await;
    create_table_without_ttl(store.client(), store.table()).await.expect("DynamoDB Local creates the table");
    store
}

/// A table name no other test of any process uses against the same DynamoDB Local.
pub fn unique_table_name() -> String {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    format!("capguard-test-{}-{}", std::process::id(), SERIAL.fetch_add(1, Ordering::Relaxed))
}
