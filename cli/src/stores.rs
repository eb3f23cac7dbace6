//! Which store an operator command reads: the local stack's embedded file (or, while `capguard
//! serve` holds it open, serve's views), or a deployed DynamoDB table (`--dynamodb TABLE`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use shared::config::Settings;
use shared::store::dynamo::{AwsTarget, DynamoStore};
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
    /// The table's AWS region with --dynamodb (the SDK's usual variables and files otherwise).
    #[arg(long)]
    pub region: Option<String>,
    /// The profile of the AWS config and credentials files to sign in with, with --dynamodb.
    #[arg(long)]
    pub profile: Option<String>,
}

/// The store an operator command reads.
pub enum Store {
    Embedded(EmbeddedStore),
    Dynamo(DynamoStore),
    /// The data file could not be opened, and a `capguard serve` left its address beside it: its
    /// views answer.
    Served(Served),
}

/// The `capguard serve` that holds a data file open, as its address file names it.
pub struct Served {
    pub url: String,
    /// Why the file itself could not be opened.
    pub open_error: String,
}

impl Served {
    /// Serve's view at `path`; when serve does not answer (a stale address file), the file's own
    /// error too.
    pub async fn get(&self, path: &[&str], query: &[(&str, &str)]) -> anyhow::Result<String> {
        crate::operator::served(&self.url, path, query)
            .await
            .with_context(|| format!("the data file could not be opened ({})", self.open_error))
    }
}

/// Where `capguard serve` writes its address while it holds `data` open, for the operator
/// commands that cannot open the file meanwhile.
pub fn serve_address_file(data: &Path) -> PathBuf {
    let mut name = data.as_os_str().to_owned();
    name.push(".serve");
    PathBuf::from(name)
}

impl StoreArgs {
    pub async fn open(&self) -> anyhow::Result<Store> {
        // The retention serve and the functions keep items for, so that what a command writes
        // (a lifted hold) expires as theirs does.
        let retention = Settings::from_env()?.retention;
        match &self.dynamodb {
            Some(table) => {
                let target = AwsTarget {
                    endpoint: self.dynamodb_endpoint.clone(),
                    region: self.region.clone(),
                    profile: self.profile.clone(),
                };
                Ok(Store::Dynamo(DynamoStore::connect_to(&target, table.clone(), retention).await))
            }
            None => {
                if !self.data.exists() {
                    anyhow::bail!(
                        "{} does not exist: run capguard serve first, or give --data or --dynamodb",
                        self.data.display()
                    );
                }
                match EmbeddedStore::open(&self.data, retention) {
                    Ok(store) => Ok(Store::Embedded(store)),
                    Err(error) => match std::fs::read_to_string(serve_address_file(&self.data)) {
                        Ok(address) => Ok(Store::Served(Served {
                            url: address.trim().to_owned(),
                            open_error: format!("{error:#}"),
                        })),
                        Err(_) => Err(error).with_context(|| format!("opening {}", self.data.display())),
                    },
                }
            }
        }
    }
}
