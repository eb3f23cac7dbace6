//! The AWS SDK's configuration for the adapters: the environment's (credentials, region) on AWS,
//! or an emulator's address with test credentials (moto's server, in tests and locally).

use aws_config::meta::region::RegionProviderChain;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use std::fmt::Debug;

use aws_sdk_scheduler::config::Credentials;
use aws_sdk_scheduler::error::{ProvideErrorMetadata, SdkError};

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
    load(&AwsTarget { endpoint: endpoint.map(str::to_owned), ..AwsTarget::default() }).await
}

/// The configuration for `target`: its region (else the environment's, else `us-east-1`; an
/// emulator's is `us-east-1`), its profile, and for an emulator test credentials.
pub async fn load(target: &AwsTarget) -> SdkConfig {
    let loader = loader(target);
    match target.endpoint {
        Some(_) => loader.credentials_provider(Credentials::new("test", "test", None, None, "capguard-emulator")),
        None => loader,
    }
    .load()
    .await
}

/// [`load`]'s loader, without an emulator's test credentials: DynamoDB Local keeps a database per
/// access key, so the DynamoDB adapter brings the SDK's own test credentials, which its tables
/// (and the deployed functions') have always been created with.
pub fn loader(target: &AwsTarget) -> aws_config::ConfigLoader {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    loader = match (&target.region, &target.endpoint) {
        (Some(region), _) => loader.region(Region::new(region.clone())),
        // An emulator answers in any region: none is looked for.
        (None, Some(_)) => loader.region(Region::from_static("us-east-1")),
        // A profile's own region: the loader's chain reads the profile it was given.
        (None, None) if target.profile.is_some() => loader,
        (None, None) => {
            loader.region(RegionProviderChain::default_provider().or_else(Region::from_static("us-east-1")))
        }
    };
    if let Some(profile) = &target.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(endpoint) = &target.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    loader
}

/// An SDK call's failure in one line: the service's code and message, or what went wrong on the way (each
/// cause once), without the SDK's debug dump of the request and response.
pub fn readable<E, R>(error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: Debug,
{
    if let Some(code) = error.code() {
        return match error.message() {
            Some(message) => format!("{code}: {message}"),
            None => code.to_owned(),
        };
    }
    let mut parts = vec![error.to_string()];
    let mut cause = std::error::Error::source(error);
    while let Some(current) = cause {
        let text = current.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        cause = current.source();
    }
    parts.join(": ")
}
