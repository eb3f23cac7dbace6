//! webhook-intake: wires the configuration, the secrets and the ports once per cold start, then
//! serves the HTTP API's `/webhook` routes through [`handler`].

mod handler;

use std::sync::Arc;

use aws_config::BehaviorVersion;
use lambda_http::{Error, Request, run, service_fn};
use shared::config;
use shared::config::lambda::{FunctionSettings, StartError, lambda_deps};
use shared::forward::sqs::SqsForward;
use shared::metrics;
use shared::usecase::http::WebhookSecrets;

use crate::handler::handle;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let (mut deps, secrets) = lambda_deps(FunctionSettings::from_env()?).await?;
    // Every verified body goes on to the business's own stack, through a queue, when asked.
    if let Some(arn) = std::env::var(config::FORWARD_QUEUE_ARN).ok().filter(|arn| !arn.trim().is_empty()) {
        let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
        let queue = SqsForward::for_arn(&sdk, &arn).map_err(|e| format!("{}: {e}", config::FORWARD_QUEUE_ARN))?;
        deps = deps.with_forward(Arc::new(queue));
    }
    let secrets = WebhookSecrets {
        app_secret: secrets.app_secret.ok_or(StartError::Secrets("WHATSAPP_APP_SECRET_PARAM is not set".into()))?,
        verify_token: secrets
            .verify_token
            .ok_or(StartError::Secrets("WHATSAPP_VERIFY_TOKEN_PARAM is not set".into()))?,
    };
    let (deps, secrets) = (&deps, &secrets);
    run(service_fn(move |request: Request| async move {
        let (response, mut tally) = handle(deps, secrets, request).await;
        deps.outcomes.flush(&mut tally).await;
        metrics::emit("webhook-intake", &tally);
        Ok::<_, Error>(response)
    }))
    .await
}
