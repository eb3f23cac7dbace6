//! retry-executor: wires the configuration, the access token and the ports once per cold start,
//! then handles each schedule's firing, and each sweep, through [`handler`].

mod handler;

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use shared::budget::time_left;
use shared::config::lambda::{FunctionSettings, lambda_deps};
use shared::metrics;

use crate::handler::Invocation;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let (deps, _) = lambda_deps(FunctionSettings::from_env()?).await?;
    // The first send of a cold start then finds its connection to Meta open.
    deps.cloud.warm().await;
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let time_left = time_left(event.context.deadline);
        let invocation = Invocation::from_payload(event.payload)?;
        let handled = handler::handle(deps, &invocation, time_left).await;
        // What the work stored before a failure has its events too.
        let mut tally = handled.as_ref().map(|(_, tally)| tally.clone()).unwrap_or_default();
        deps.outcomes.flush(&mut tally).await;
        metrics::emit("retry-executor", &tally);
        handled.map(|(outcome, _)| outcome)
    }))
    .await
}
