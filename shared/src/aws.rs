//! The AWS SDK's configuration for the adapters: the environment's (credentials, region) on AWS,
//! or an emulator's address with test credentials (moto's server, in tests and locally).

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_scheduler::config::Credentials;

/// Where and as whom to reach AWS: each part the environment's (the SDK's usual variables and
/// files) unless given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsTarget {
    /// An emulator's address (DynamoDB Local, moto), reached with test credentials.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// The profile of the shared config and credentials files.
    pub profile: Option<String>,
}

/// The environment's configuration, or with `endpoint` an emulator's in `us-east-1`.
pub async fn sdk_config(endpoint: Option<&str>) -> SdkConfig {
    let loader = aws_config::defaults(BehaviorVersion::latest());
    match endpoint {
        None => loader.load().await,
        Some(url) => {
            loader
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("test", "test", None, None, "capguard-emulator"))
                .endpoint_url(url)
                .load()
                .await
        }
    }
}
