//! retry-executor: wires the configuration, the access token and the ports once per cold start,
//! then handles each schedule's firing, and each sweep, through [`handler`].

mod handler;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use shared::environment::{FunctionSettings, lambda_deps};
use shared::metrics::emf_line;

use crate::handler::Invocation;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let (deps, _) = lambda_deps(FunctionSettings::from_env()?).await?;
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let time_left = time_left(event.context.deadline);
        let invocation = Invocation::from_payload(event.payload)?;
        let (outcome, tally) = handler::handle(deps, &invocation, time_left).await?;
        if let Some(line) = emf_line("retry-executor", &tally, chrono::Utc::now().timestamp_millis()) {
            println!("{line}");
        }
        Ok::<_, Error>(outcome)
    }))
    .await
}

/// What remains of the invocation until its deadline (milliseconds since the epoch).
fn time_left(deadline_ms: u64) -> Duration {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Duration::from_millis(deadline_ms).saturating_sub(now)
}
