//! Which store an operator command reads: the local stack's embedded file, or a deployed
//! DynamoDB table (`--dynamodb TABLE`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use shared::config::Settings;
use shared::store::dynamo::DynamoStore;
use shared::store::embedded::EmbeddedStore;

/// The local stack's data file when none is given.
pub const DEFAULT_DATA_FILE: &str = "capguard.redb";

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The local stack's data file.
    #[arg(long, default_value = DEFAULT_DATA_FILE)]
    pub data: PathBuf,
    /// Read a deployed DynamoDB table instead (the stack's TableName output).
    #[arg(long, value_name = "TABLE")]
    pub dynamodb: Option<String>,
    /// The DynamoDB endpoint with --dynamodb, e.g. DynamoDB Local's; AWS's own when not given.
    #[arg(long, env = "AWS_ENDPOINT_URL_DYNAMODB")]
    pub dynamodb_endpoint: Option<String>,
}

/// The store an operator command reads.
pub enum Store {
    Embedded(EmbeddedStore),
    Dynamo(DynamoStore),
}

impl StoreArgs {
    pub async fn open(&self) -> anyhow::Result<Store> {
        // The retention serve and the functions keep items for, so that what a command writes
        // (a lifted hold) expires as theirs does.
        let retention = Settings::from_env()?.retention;
        match &self.dynamodb {
            Some(table) => Ok(Store::Dynamo(
                DynamoStore::connect(self.dynamodb_endpoint.as_deref(), table.clone(), retention).await,
            )),
            None => {
                if !self.data.exists() {
                    anyhow::bail!(
                        "{} does not exist: run capguard serve first, or give --data or --dynamodb",
                        self.data.display()
                    );
                }
                let store = EmbeddedStore::open(&self.data, retention)
                    .with_context(|| format!("opening {}", self.data.display()))?;
                Ok(Store::Embedded(store))
            }
        }
    }
}
