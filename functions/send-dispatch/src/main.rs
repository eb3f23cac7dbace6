//! send-dispatch: wires the configuration, the access token and the ports once per cold start,
//! then takes HTTP API requests and queue batches through [`handler`].

mod handler;

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use shared::environment::{FunctionSettings, lambda_deps};
use shared::metrics::emf_line;

use crate::handler::{Invocation, handle_http, handle_queue};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let (deps, _) = lambda_deps(FunctionSettings::from_env()?).await?;
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let (answer, tally) = match Invocation::from_event(event.payload)? {
            Invocation::Http(request) => {
                let (response, tally) = handle_http(deps, &request).await;
                (serde_json::to_value(response)?, tally)
            }
            Invocation::Queue(batch) => {
                let (response, tally) = handle_queue(deps, &batch).await;
                (serde_json::to_value(response)?, tally)
            }
        };
        if let Some(line) = emf_line("send-dispatch", &tally, chrono::Utc::now().timestamp_millis()) {
            println!("{line}");
        }
        Ok::<_, Error>(answer)
    }))
    .await
}
