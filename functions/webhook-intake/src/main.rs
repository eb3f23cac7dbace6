//! webhook-intake: wires the configuration, the secrets and the ports once per cold start, then
//! serves the HTTP API's `/webhook` routes through [`handler`].

mod handler;

use lambda_http::{Error, Request, run, service_fn};
use shared::config::lambda::{FunctionSettings, StartError, lambda_deps};
use shared::metrics;
use shared::usecase::http::WebhookSecrets;

use crate::handler::handle;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let (deps, secrets) = lambda_deps(FunctionSettings::from_env()?).await?;
    let secrets = WebhookSecrets {
        app_secret: secrets.app_secret.ok_or(StartError::Secrets("WHATSAPP_APP_SECRET_PARAM is not set".into()))?,
        verify_token: secrets
            .verify_token
            .ok_or(StartError::Secrets("WHATSAPP_VERIFY_TOKEN_PARAM is not set".into()))?,
    };
    let (deps, secrets) = (&deps, &secrets);
    run(service_fn(move |request: Request| async move {
        let (response, tally) = handle(deps, secrets, request).await;
        metrics::emit("webhook-intake", &tally);
        Ok::<_, Error>(response)
    }))
    .await
}
