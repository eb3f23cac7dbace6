//! send-dispatch: wires the configuration, the access token and the ports once per cold start,
//! then takes HTTP API requests (a large one is queued in chunks on `SEND_QUEUE_URL`) and queue
//! batches through [`handler`].

mod handler;

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use shared::budget::time_left;
use shared::config;
use shared::config::lambda::{FunctionSettings, lambda_deps};
use shared::metrics;
use shared::queue::sqs::SqsQueue;

use crate::handler::{Invocation, InvocationError, handle_http, handle_queue};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let (deps, _) = lambda_deps(FunctionSettings::from_env()?).await?;
    // The first send of a cold start then finds its connection to Meta open.
    deps.cloud.warm().await;
    let url = std::env::var(config::SEND_QUEUE_URL).map_err(|_| format!("{} is not set", config::SEND_QUEUE_URL))?;
    let queue = SqsQueue::connect(url, None).await;
    let (deps, queue) = (&deps, &queue);
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let time_left = time_left(event.context.deadline);
        let (answer, mut tally) = match Invocation::from_event(event.payload)? {
            Invocation::Http(request) => {
                let (response, tally) = handle_http(deps, queue, &request).await;
                (serde_json::to_value(response).map_err(InvocationError::Answer)?, tally)
            }
            Invocation::Queue(batch) => {
                let (response, tally) = handle_queue(deps, &batch, time_left).await;
                (serde_json::to_value(response).map_err(InvocationError::Answer)?, tally)
            }
        };
        deps.outcomes.flush(&mut tally).await;
        metrics::emit("send-dispatch", &tally);
        Ok::<_, InvocationError>(answer)
    }))
    .await
}
