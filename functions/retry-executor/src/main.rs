//! retry-executor: wires the configuration, the access token and the ports once per cold start,
//! then handles each schedule's firing through [`handler`].

mod handler;

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use shared::environment::{FunctionSettings, lambda_deps};
use shared::metrics::emf_line;
use shared::schedule::RetryJob;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let (deps, _) = lambda_deps(FunctionSettings::from_env()?).await?;
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<RetryJob>| async move {
        let (outcome, report) = handler::handle(deps, &event.payload).await?;
        if let Some(line) = emf_line("retry-executor", &report.tally, chrono::Utc::now().timestamp_millis()) {
            println!("{line}");
        }
        Ok::<_, Error>(outcome)
    }))
    .await
}
