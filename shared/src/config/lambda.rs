//! A deployed function's setup: its configuration variables, validated at start with a message
//! naming the variable at fault, its secrets, read once per cold start from SSM Parameter Store,
//! and the ports built on them (DynamoDB, EventBridge Scheduler, the Graph API).

use std::collections::HashMap;
use std::sync::Arc;

use aws_config::{BehaviorVersion, SdkConfig};
use chrono::TimeDelta;

use crate::clock::SystemClock;
use crate::cloud::http::{
    AccessToken, ClientBuildError, HttpCloudApi, HttpCloudApiConfig, TokenReadError, TokenSource,
};
use crate::config::{self, ConfigError, Settings};
use crate::domain::verdict::Rules;
use crate::outcome::eventbridge::EventBridgePublisher;
use crate::pace::Throttle;
use crate::schedule::eventbridge::{EventBridgeScheduler, EventBridgeSettings, TargetRetryPolicy};
use crate::store::dynamo::DynamoStore;
use crate::usecase::{Deps, SendSettings};
use crate::whatsapp::signature::AppSecret;

/// The ports a deployed function runs on.
pub type LambdaDeps = Deps<DynamoStore, EventBridgeScheduler, HttpCloudApi>;

/// Everything a function reads from its environment.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSettings {
    pub rules: Rules,
    pub table: String,
    pub retention: TimeDelta,
    pub scheduler: EventBridgeSettings,
    pub graph_base_url: Option<String>,
    pub graph_version: Option<String>,
    pub sending: SendSettings,
    /// The SSM parameters this function may read; a function reads only those it needs.
    pub secret_params: SecretParams,
    /// The bus outcome events go to, if any.
    pub event_bus: Option<String>,
}

/// SSM parameter names of the secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretParams {
    pub app_secret: Option<String>,
    pub access_token: Option<String>,
    pub verify_token: Option<String>,
    pub forward_secret: Option<String>,
}

/// The secrets, as read.
#[derive(Debug, Clone)]
pub struct Secrets {
    pub app_secret: Option<AppSecret>,
    pub access_token: Option<AccessToken>,
    pub verify_token: Option<String>,
    /// What forwarded bodies are signed with (the same HMAC as Meta's, another key).
    pub forward_secret: Option<AppSecret>,
}

/// Why a function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("reading the secrets from SSM Parameter Store failed: {0}")]
    Secrets(String),
    #[error(transparent)]
    Client(#[from] ClientBuildError),
}

impl FunctionSettings {
    /// Reads the settings from variables looked up by name.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| {
            lookup(name).filter(|v| !v.trim().is_empty()).ok_or(ConfigError { name, message: "is not set".into() })
        };
        let Settings { rules, retention, sending } = Settings::from_lookup(&lookup)?;
        Ok(Self {
            rules,
            table: required(config::TABLE_NAME)?,
            retention,
            scheduler: EventBridgeSettings {
                group_name: required(config::SCHEDULE_GROUP)?,
                target_arn: required(config::RETRY_FUNCTION_ARN)?,
                role_arn: required(config::SCHEDULER_ROLE_ARN)?,
                dead_letter_arn: required(config::SCHEDULER_DLQ_ARN)?,
                retry_policy: TargetRetryPolicy::default(),
            },
            graph_base_url: lookup(config::GRAPH_API_BASE_URL),
            graph_version: lookup(config::GRAPH_API_VERSION),
            sending,
            secret_params: SecretParams {
                app_secret: lookup(config::WHATSAPP_APP_SECRET_PARAM),
                access_token: lookup(config::WHATSAPP_ACCESS_TOKEN_PARAM),
                verify_token: lookup(config::WHATSAPP_VERIFY_TOKEN_PARAM),
                forward_secret: None,
            },
            event_bus: lookup(config::EVENT_BUS_NAME).filter(|bus| !bus.trim().is_empty()),
        })
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

/// Reads the secrets whose parameters are named, in one call.
pub async fn load_secrets(sdk: &SdkConfig, params: &SecretParams) -> Result<Secrets, StartError> {
    let names: Vec<&String> = [&params.app_secret, &params.access_token, &params.verify_token, &params.forward_secret]
        .into_iter()
        .flatten()
        .collect();
    let mut values: HashMap<String, String> = HashMap::new();
    if !names.is_empty() {
        let client = aws_sdk_ssm::Client::new(sdk);
        let output = client
            .get_parameters()
            .set_names(Some(names.iter().map(|n| n.to_string()).collect()))
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| StartError::Secrets(aws_sdk_ssm::error::DisplayErrorContext(e).to_string()))?;
        if let Some(missing) = output.invalid_parameters().first() {
            return Err(StartError::Secrets(format!("parameter {missing} does not exist")));
        }
        for parameter in output.parameters() {
            if let (Some(name), Some(value)) = (parameter.name(), parameter.value()) {
                values.insert(name.to_owned(), value.to_owned());
            }
        }
    }
    let value = |name: &Option<String>| name.as_ref().and_then(|n| values.get(n).cloned());
    Ok(Secrets {
        app_secret: value(&params.app_secret).map(AppSecret::new),
        access_token: value(&params.access_token).map(AccessToken::new),
        verify_token: value(&params.verify_token),
        forward_secret: value(&params.forward_secret).map(AppSecret::new),
    })
}

/// Reads the access token from its SSM parameter again, for a token Meta refused: one rotated in
/// SSM is picked up by warm instances without a restart.
fn ssm_token_source(client: aws_sdk_ssm::Client, name: String) -> TokenSource {
    Arc::new(move || {
        let (client, name) = (client.clone(), name.clone());
        Box::pin(async move {
            let output = client.get_parameter().name(&name).with_decryption(true).send().await.map_err(|e| {
                TokenReadError::Unreadable {
                    name: name.clone(),
                    detail: aws_sdk_ssm::error::DisplayErrorContext(e).to_string(),
                }
            })?;
            output
                .parameter()
                .and_then(|parameter| parameter.value())
                .map(AccessToken::new)
                .ok_or(TokenReadError::Empty { name })
        })
    })
}

/// Builds a deployed function's ports: call once per cold start.
pub async fn lambda_deps(settings: FunctionSettings) -> Result<(LambdaDeps, Secrets), StartError> {
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let secrets = load_secrets(&sdk, &settings.secret_params).await?;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), settings.table.clone(), settings.retention);
    let scheduler = EventBridgeScheduler::new(aws_sdk_scheduler::Client::new(&sdk), settings.scheduler.clone());
    let token = secrets.access_token.clone().unwrap_or_else(|| AccessToken::new(""));
    let cloud_config =
        HttpCloudApiConfig::graph(token, settings.graph_base_url.clone(), settings.graph_version.clone());
    let mut cloud = HttpCloudApi::new(cloud_config)?;
    if let Some(name) = &settings.secret_params.access_token {
        cloud = cloud.with_token_source(ssm_token_source(aws_sdk_ssm::Client::new(&sdk), name.clone()));
    }
    // Every instance books its calls in the table, so the rate holds for the deployment.
    let throttle = Throttle::shared(settings.sending.throughput_per_second, Arc::new(store.clone()));
    let mut deps = Deps::new(store, scheduler, cloud, Arc::new(SystemClock), settings.rules, settings.sending);
    deps.throttle = throttle;
    if let Some(bus) = settings.event_bus {
        deps = deps.with_outcomes(Arc::new(EventBridgePublisher::new(aws_sdk_eventbridge::Client::new(&sdk), bus)));
    }
    Ok((deps, secrets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::Endpoint;
    use crate::store::DEFAULT_RETENTION;

    fn deployed() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            (config::TABLE_NAME, "capguard"),
            (config::SCHEDULE_GROUP, "capguard-retries"),
            (config::RETRY_FUNCTION_ARN, "arn:aws:lambda:us-east-1:123456789012:function:retry"),
            (config::SCHEDULER_ROLE_ARN, "arn:aws:iam::123456789012:role/scheduler"),
            (config::SCHEDULER_DLQ_ARN, "arn:aws:sqs:us-east-1:123456789012:retry-dlq"),
        ])
    }

    fn settings(env: &HashMap<&str, &str>) -> Result<FunctionSettings, ConfigError> {
        FunctionSettings::from_lookup(|name| env.get(name).map(|v| v.to_string()))
    }

    #[test]
    fn a_deployed_environment_is_read_with_defaults() {
        let read = settings(&deployed()).unwrap();
        assert_eq!(read.table, "capguard");
        assert_eq!(read.retention, DEFAULT_RETENTION);
        assert_eq!(read.sending.throughput_per_second, 80);
        assert_eq!(read.sending.endpoint, Endpoint::Messages);
        assert_eq!(read.rules, Rules::default());
        assert_eq!(read.secret_params, SecretParams::default());
        assert_eq!(read.event_bus, None);
    }

    #[test]
    fn an_empty_bus_is_none_and_a_named_one_is_kept() {
        let mut env = deployed();
        env.insert(config::EVENT_BUS_NAME, "");
        assert_eq!(settings(&env).unwrap().event_bus, None);
        env.insert(config::EVENT_BUS_NAME, "default");
        assert_eq!(settings(&env).unwrap().event_bus.as_deref(), Some("default"));
    }

    #[test]
    fn a_missing_or_bad_variable_is_named() {
        let mut env = deployed();
        env.remove(config::TABLE_NAME);
        assert_eq!(settings(&env).unwrap_err().name, config::TABLE_NAME);
        let mut env = deployed();
        env.insert(config::THROUGHPUT_PER_SECOND, "fast");
        assert_eq!(settings(&env).unwrap_err().name, config::THROUGHPUT_PER_SECOND);
        let mut env = deployed();
        env.insert(config::SEND_ENDPOINT, "sms");
        assert_eq!(settings(&env).unwrap_err().name, config::SEND_ENDPOINT);
        for too_short in ["1h", "30d", "42d"] {
            let mut env = deployed();
            env.insert(config::DATA_RETENTION, too_short);
            assert_eq!(settings(&env).unwrap_err().name, config::DATA_RETENTION, "{too_short}");
        }
        let mut env = deployed();
        env.insert(config::DATA_RETENTION, "43d");
        let fits = "37 days in flight, or a 48 h step doubled and moved past a night, fit";
        assert_eq!(settings(&env).unwrap().retention, TimeDelta::days(43), "{fits}");
        let mut env = deployed();
        env.insert(config::RETRY_DELAYS, "0h");
        assert_eq!(settings(&env).unwrap_err().name, config::RETRY_DELAYS);
    }
}
