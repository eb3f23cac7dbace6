//! The use cases, written against the ports so that they run unchanged in Lambda and in the
//! local stack: [`intake`] (a verified webhook body), [`dispatch`] (a send request), [`retry`]
//! (a timer firing: drive a send on) and [`sweep`] (find every send whose prompt never came, and
//! drive it on). [`sending`] and [`status`] hold what they share: sending one slot at most once,
//! acting on a failure's verdict, applying a status; [`consent`] records an opt-in; [`limit`] keeps
//! sends within the portfolio's messaging limit, and [`quality`] applies a number's quality rating. [`http`] is their HTTP face, shared by the
//! Lambda handlers and `capguard serve`.

pub mod admission;
pub mod consent;
pub mod dispatch;
pub mod holds;
pub mod http;
pub mod intake;
pub mod limit;
pub mod quality;
pub mod retry;
pub mod sending;
pub mod status;
pub mod sweep;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use chrono::TimeDelta;
use serde::Serialize;

use crate::clock::Clock;
use crate::cloud::{CloudApi, Endpoint};
use crate::domain::verdict::Rules;
use crate::forward::Forward;
use crate::outcome::{Outcomes, Publish};
pub use crate::pace::Throttle;
use crate::schedule::RetryScheduler;
use crate::store::{SendStore, StoreError};

/// What the use cases work with: the ports, the clock and the rules.
pub struct Deps<S, R, C> {
    pub store: S,
    pub scheduler: R,
    pub cloud: C,
    pub clock: Arc<dyn Clock>,
    pub rules: Rules,
    pub sending: SendSettings,
    pub throttle: Throttle,
    pub busy: Busy,
    /// capguard's outcomes as events, waiting for the caller's flush (none by default).
    pub outcomes: Outcomes,
    /// Where verified webhook bodies go on to (the business's own stack), if anywhere.
    pub forward: Option<Arc<dyn Forward>>,
    /// The business numbers and their ratings, as this process last read them.
    pub numbers: quality::NumberBook,
}

impl<S: SendStore, R: RetryScheduler, C: CloudApi> Deps<S, R, C> {
    pub fn new(store: S, scheduler: R, cloud: C, clock: Arc<dyn Clock>, rules: Rules, sending: SendSettings) -> Self {
        let second = clock.wall_second();
        let throttle = Throttle::new(sending.throughput_per_second).with_second(second);
        Self {
            store,
            scheduler,
            cloud,
            clock,
            rules,
            sending,
            throttle,
            busy: Busy::default(),
            outcomes: Outcomes::default(),
            forward: None,
            numbers: quality::NumberBook::default(),
        }
    }

    /// Publishes outcome events through `publisher` (at each flush).
    pub fn with_outcomes(self, publisher: Arc<dyn Publish>) -> Self {
        Self { outcomes: Outcomes::publishing(publisher), ..self }
    }

    /// Forwards every verified webhook body to `forward`.
    pub fn with_forward(self, forward: Arc<dyn Forward>) -> Self {
        Self { forward: Some(forward), ..self }
    }
}

/// The sends this process is working on (recording, claiming, calling): a sweep leaves them
/// alone, and no other path settles their claim, because their due times may pass while the work
/// goes on when the clock runs faster than the wall (the demo, `capguard serve --time-scale`).
/// The work ends with their next prompt set; a crash empties the set, which is when the sweep
/// must act.
#[derive(Debug, Default)]
pub struct Busy(std::sync::Mutex<HashMap<crate::store::SendId, usize>>);

impl Busy {
    /// Marks `id` as being worked on until the guard is dropped.
    pub fn hold(&self, id: &crate::store::SendId) -> BusyGuard<'_> {
        *self.lock().entry(id.clone()).or_default() += 1;
        BusyGuard { busy: self, id: id.clone() }
    }

    pub fn is_busy(&self, id: &crate::store::SendId) -> bool {
        self.lock().contains_key(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<crate::store::SendId, usize>> {
        // A count is whole whatever a panicking holder was doing.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Held while a send is worked on.
#[derive(Debug)]
pub struct BusyGuard<'a> {
    busy: &'a Busy,
    id: crate::store::SendId,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        let mut held = self.busy.lock();
        if let Some(count) = held.get_mut(&self.id) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.id);
            }
        }
    }
}

/// How sends go out.
#[derive(Debug, Clone, PartialEq)]
pub struct SendSettings {
    /// `/messages`, or `/marketing_messages` for the Marketing Messages API.
    pub endpoint: Endpoint,
    /// Messages per second per business number (Meta's default is 80).
    pub throughput_per_second: u32,
    /// Immediate retries of a send call refused as throttled or unavailable (nothing was sent).
    pub call_retries: u32,
    /// The wall wait before the first of those retries; each next one waits four times longer.
    pub call_backoff: Duration,
    /// How long a claimed send waits for its call's answer or a webhook before it is settled as
    /// `outcome_unknown`.
    pub outcome_wait: TimeDelta,
    /// Recipients of one dispatch request sent concurrently.
    pub parallelism: usize,
    /// How long past its due time a send must be before a sweep moves it on: its timer's chance
    /// to fire first.
    pub sweep_grace: TimeDelta,
    /// The most overdue sends one sweep takes on.
    pub sweep_limit: u32,
}

impl Default for SendSettings {
    fn default() -> Self {
        Self {
            endpoint: Endpoint::Messages,
            throughput_per_second: 80,
            call_retries: crate::budget::CALL_RETRIES,
            call_backoff: crate::budget::CALL_BACKOFF,
            outcome_wait: TimeDelta::minutes(15),
            parallelism: 16,
            sweep_grace: TimeDelta::minutes(5),
            sweep_limit: 1_000,
        }
    }
}

/// Why a use case stopped. Everything it did before is durable and safe to do again: the caller
/// answers with a retryable error (5xx, a failed SQS message, a failed invocation).
#[derive(Debug, thiserror::Error)]
pub enum UseCaseError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Counters of what a use case did, for metrics (CloudWatch embedded metric format in Lambda).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally(BTreeMap<String, u64>);

impl Tally {
    pub fn add(&mut self, name: impl Into<String>) {
        *self.0.entry(name.into()).or_default() += 1;
    }

    /// Adds `count` to `name` (nothing at all for 0).
    pub fn add_n(&mut self, name: impl Into<String>, count: u64) {
        if count > 0 {
            *self.0.entry(name.into()).or_default() += count;
        }
    }

    /// Sets a gauge: a count of how things stand, not of what happened.
    pub fn set(&mut self, name: impl Into<String>, value: u64) {
        self.0.insert(name.into(), value);
    }

    pub fn merge(&mut self, other: Tally) {
        for (name, count) in other.0 {
            *self.0.entry(name).or_default() += count;
        }
    }

    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or_default()
    }

    pub fn counters(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(name, count)| (name.as_str(), *count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_counts_and_merges() {
        let mut tally = Tally::default();
        tally.add("sends");
        tally.add("sends");
        let mut other = Tally::default();
        other.add("sends");
        other.add("capped");
        tally.merge(other);
        assert_eq!((tally.get("sends"), tally.get("capped"), tally.get("none")), (3, 1, 0));
    }
}
