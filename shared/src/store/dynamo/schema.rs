//! The table: its keys, indexes and TTL attribute, stated once. [`create_table`] builds a table from
//! [`TABLE`], `template.yaml` declares the same, and a test holds the two together. The item
//! layouts that live in it are described in `docs/data-model.md`.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};

use super::errors::service_failure;
use crate::store::StoreError;

/// A key attribute, spelled as CloudFormation and the API spell it (`AttributeType` is `S` or `N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAttribute {
    pub name: &'static str,
    pub attribute_type: &'static str,
}

/// A global secondary index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexDefinition {
    pub name: &'static str,
    pub partition_key: KeyAttribute,
    pub sort_key: KeyAttribute,
    /// `KEYS_ONLY` for both indexes: an update that touches no index key then costs the index
    /// nothing, and both listings need only the keys.
    pub projection_type: &'static str,
}

/// The whole table as CloudFormation would declare it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableDefinition {
    pub billing_mode: &'static str,
    pub partition_key: KeyAttribute,
    pub sort_key: KeyAttribute,
    pub indexes: &'static [IndexDefinition],
    /// The attribute DynamoDB's TTL deletes items by (epoch seconds).
    pub ttl_attribute: &'static str,
}

impl TableDefinition {
    /// Every key attribute of the table and its indexes, once each, as `AttributeDefinitions` lists them.
    pub fn attribute_definitions(&self) -> Vec<KeyAttribute> {
        let mut all = vec![self.partition_key, self.sort_key];
        for index in self.indexes {
            for key in [index.partition_key, index.sort_key] {
                if !all.iter().any(|known| known.name == key.name) {
                    all.push(key);
                }
            }
        }
        all
    }
}

pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const EXPIRES_AT: &str = "expires_at";

/// The index of sends waiting for their next slot, by recipient. Sparse: an item is in an index
/// only if it has both its keys, and a send has `waiting_slot` only while it waits.
pub const WAITING_INDEX: &str = "waiting";
/// A send's recipient (a plain attribute of the send, and the waiting index's partition key).
pub const RECIPIENT: &str = "recipient";
pub const WAITING_SLOT: &str = "waiting_slot";

/// The index of unfinished sends by due time, what a sweep reads. Sparse: a send has `due` only
/// while it is unfinished. Sharded by the send id's first hex digit, so that a campaign's wave of
/// sends due at once spreads over sixteen partitions instead of one.
pub const DUE_INDEX: &str = "due";
/// The due index's partition key: `0` to `f`, set with `due` (see [`keys::due_shard`]).
pub const DUE_SHARD: &str = "due_shard";
/// When an unfinished send's next step is due (see `Phase::due`); the due index's sort key.
pub const DUE: &str = "due";

/// The index of a campaign's sends in recording order. Sparse: a send without a campaign is not in it.
pub const CAMPAIGN_INDEX: &str = "campaign";
pub const CAMPAIGN: &str = "campaign";
pub const CREATED_AT: &str = "created_at";

const fn string(name: &'static str) -> KeyAttribute {
    KeyAttribute { name, attribute_type: "S" }
}

const fn number(name: &'static str) -> KeyAttribute {
    KeyAttribute { name, attribute_type: "N" }
}

/// capguard's one table.
pub const TABLE: TableDefinition = TableDefinition {
    billing_mode: "PAY_PER_REQUEST",
    partition_key: string(PK),
    sort_key: string(SK),
    indexes: &[
        IndexDefinition {
            name: WAITING_INDEX,
            partition_key: string(RECIPIENT),
            sort_key: string(WAITING_SLOT),
            projection_type: "KEYS_ONLY",
        },
        IndexDefinition {
            name: CAMPAIGN_INDEX,
            partition_key: string(CAMPAIGN),
            sort_key: number(CREATED_AT),
            projection_type: "KEYS_ONLY",
        },
        IndexDefinition {
            name: DUE_INDEX,
            partition_key: string(DUE_SHARD),
            sort_key: number(DUE),
            projection_type: "KEYS_ONLY",
        },
    ],
    ttl_attribute: EXPIRES_AT,
};

/// The partition key of each kind of item. Every item's sort key names its kind, so that more
/// kinds can join an item collection later without a migration; holds share one partition, so
/// that they can be listed, and their sort key names the hold.
pub mod keys {
    use crate::store::{HoldKey, SendId};

    pub const SEND: &str = "SEND";
    pub const WAMID: &str = "WAMID";
    pub const RECIPIENT: &str = "RCPT";
    /// The partition of every hold.
    pub const HOLDS: &str = "HOLDS";

    pub fn send(id: &SendId) -> String {
        format!("SEND#{id}")
    }

    /// The send id in a send item's partition key.
    pub fn send_id_of(pk: &str) -> Option<SendId> {
        SendId::try_from(pk.strip_prefix("SEND#")?.to_owned()).ok()
    }

    /// Every shard of the due index.
    pub const DUE_SHARDS: [&str; 16] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f"];

    /// The due index shard of a send: the first hex digit of its id, uniform over the sixteen.
    pub fn due_shard(id: &SendId) -> &'static str {
        let first = id.as_str().as_bytes()[0];
        DUE_SHARDS.iter().find(|shard| shard.as_bytes()[0] == first).copied().unwrap_or(DUE_SHARDS[0])
    }

    pub fn wamid(wamid: &str) -> String {
        format!("WAMID#{wamid}")
    }

    pub fn recipient(number: &str) -> String {
        format!("RCPT#{number}")
    }

    /// The partition of the business numbers.
    pub const NUMBERS: &str = "NUMBERS";

    /// A business number's sort key in [`NUMBERS`]: its display number.
    pub fn number(display: &str) -> String {
        format!("NUMBER#{display}")
    }

    /// The partition of the templates Meta reported on.
    pub const TEMPLATES: &str = "TEMPLATES";

    /// A template's sort key in [`TEMPLATES`].
    pub fn template(name: &str, language: &str) -> String {
        format!("TEMPLATE#{name}#{language}")
    }

    /// The partition and sort key of the messaging limit's item: its count and Meta's last report.
    pub const LIMIT: &str = "LIMIT";

    /// The sort key of a throughput count.
    pub const TURNS: &str = "TURNS";

    /// The partition key of counter `shard` of `number`'s throughput count in the Unix second
    /// `second`.
    pub fn turns(number: &str, second: u64, shard: u32) -> String {
        format!("TURNS#{number}#{second}#{shard}")
    }

    /// A hold's sort key in [`HOLDS`].
    pub fn hold(key: &HoldKey) -> String {
        match key {
            HoldKey::Sender { phone_number_id } => format!("HOLD#SENDER#{phone_number_id}"),
            HoldKey::Template { phone_number_id, name, language } => {
                format!("HOLD#TEMPLATE#{phone_number_id}#{name}#{language}")
            }
        }
    }
}

/// How long [`create_table`] waits for a new table to become active.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

fn invalid(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Unavailable(format!("table definition: {e}"))
}

/// Creates the table `name` as [`TABLE`] describes it (on demand), waits until it is active, and
/// turns TTL on. For tests and the local stack; a deployment gets its table from `template.yaml`.
pub async fn create_table(client: &Client, name: &str) -> Result<(), StoreError> {
    create_table_without_ttl(client, name).await?;
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(TABLE.ttl_attribute)
                .enabled(true)
                .build()
                .map_err(invalid)?,
        )
        .send()
        .await
        .map_err(|e| service_failure("UpdateTimeToLive", e))?;
    Ok(())
}

/// [`create_table`] without turning TTL on, for tests whose clocks are far from the wall's:
/// DynamoDB Local's TTL deletes by the wall clock, within seconds, items that are alive on the
/// test's clock. The store's own expiry rule does not depend on TTL.
pub async fn create_table_without_ttl(client: &Client, name: &str) -> Result<(), StoreError> {
    let key = |attribute: KeyAttribute, key_type: KeyType| {
        KeySchemaElement::builder().attribute_name(attribute.name).key_type(key_type).build().map_err(invalid)
    };
    let mut create = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::from(TABLE.billing_mode))
        .key_schema(key(TABLE.partition_key, KeyType::Hash)?)
        .key_schema(key(TABLE.sort_key, KeyType::Range)?);
    for attribute in TABLE.attribute_definitions() {
        create = create.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attribute.name)
                .attribute_type(ScalarAttributeType::from(attribute.attribute_type))
                .build()
                .map_err(invalid)?,
        );
    }
    for index in TABLE.indexes {
        create = create.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index.name)
                .key_schema(key(index.partition_key, KeyType::Hash)?)
                .key_schema(key(index.sort_key, KeyType::Range)?)
                .projection(Projection::builder().projection_type(ProjectionType::from(index.projection_type)).build())
                .build()
                .map_err(invalid)?,
        );
    }
    create.send().await.map_err(|e| service_failure("CreateTable", e))?;
    wait_until_active(client, name).await
}

/// TTL can only be turned on once the table is active (at once on DynamoDB Local, seconds on AWS).
async fn wait_until_active(client: &Client, name: &str) -> Result<(), StoreError> {
    let started = tokio::time::Instant::now();
    loop {
        let described = client.describe_table().table_name(name).send().await;
        let status = described.map_err(|e| service_failure("DescribeTable", e))?.table.and_then(|t| t.table_status);
        if status == Some(TableStatus::Active) {
            return Ok(());
        }
        if started.elapsed() > ACTIVE_TIMEOUT {
            return Err(StoreError::Unavailable(format!("table {name} is not active after {ACTIVE_TIMEOUT:?}")));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_attribute_is_defined_once() {
        let names: Vec<_> = TABLE.attribute_definitions().iter().map(|a| a.name).collect();
        assert_eq!(names, [PK, SK, RECIPIENT, WAITING_SLOT, CAMPAIGN, CREATED_AT, DUE_SHARD, DUE]);
    }

    #[test]
    fn sends_spread_over_every_due_shard() {
        let shards: std::collections::BTreeSet<&str> =
            (0..400).map(|n| keys::due_shard(&crate::store::SendId::derive("1", &n.to_string(), "2"))).collect();
        assert_eq!(shards.len(), keys::DUE_SHARDS.len());
    }
}
