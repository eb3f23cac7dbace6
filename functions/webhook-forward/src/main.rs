//! webhook-forward: reads its endpoint and the forwarding secret once per cold start, then posts
//! the forward queue's bodies through [`handler`].

mod handler;

use aws_config::BehaviorVersion;
use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use shared::config;
use shared::config::lambda::{SecretParams, StartError, load_secrets};
use shared::forward::http::HttpForward;
use shared::metrics;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let variable = |name: &'static str| {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty()).ok_or_else(|| format!("{name} is not set"))
    };
    let url = variable(config::FORWARD_URL)?;
    let params =
        SecretParams { forward_secret: Some(variable(config::FORWARD_SECRET_PARAM)?), ..SecretParams::default() };
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let secrets = load_secrets(&sdk, &params).await?;
    let secret = secrets.forward_secret.ok_or(StartError::Secrets("the forwarding secret is empty".into()))?;
    let forward = HttpForward::new(url, secret)?;
    let forward = &forward;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let (response, tally) = handler::handle(forward, &event.payload).await;
        metrics::emit("webhook-forward", &tally);
        Ok::<_, Error>(response)
    }))
    .await
}
