//! A publisher that keeps the outcome events it is given, for tests that check which events the
//! use cases emit (the real adapters have their own tests: `outcome_eventbridge`, and serve's
//! `--events` in `e2e`).

use std::sync::Mutex;

use futures::future::BoxFuture;
use shared::outcome::{Outcome, OutcomeKind, Outcomes, Publish, Unpublished};
use shared::usecase::Tally;

#[derive(Default)]
pub struct Recorded(Mutex<Vec<Outcome>>);

impl Publish for Recorded {
    fn publish<'a>(&'a self, batch: &'a [Outcome]) -> BoxFuture<'a, Result<(), Unpublished>> {
        self.0.lock().unwrap().extend_from_slice(batch);
        Box::pin(async { Ok(()) })
    }
}

impl Recorded {
    /// Flushes `outcomes` and takes what it published since the last call.
    pub async fn take(&self, outcomes: &Outcomes) -> Vec<Outcome> {
        outcomes.flush(&mut Tally::default()).await;
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    /// [`Self::take`]'s kinds, in order.
    pub async fn kinds(&self, outcomes: &Outcomes) -> Vec<OutcomeKind> {
        self.take(outcomes).await.iter().map(|outcome| outcome.kind).collect()
    }
}
