//! Meta's throughput limit per business number (80 messages a second by default; past it, error
//! 130429), kept by every process that sends.
//!
//! One process spaces its own calls evenly ([`Throttle::new`]): that is the whole story for
//! `capguard serve`, which is one process. A deployment runs as many Lambda instances as there are
//! requests, timers and queue messages at once, and each would take the full rate for itself. So
//! a deployed [`Throttle`] books every call's turn in a count shared through the table
//! ([`Throttle::shared`], [`TurnBook`]): turn `n` of a wall-clock second `s` starts at
//! `s + (n - 1) / rate`, so the deployment's calls are spaced evenly whatever the number of
//! instances, and a full second sends the caller to the next. Booking costs one conditional write
//! per call (one more per full second skipped). Wall clocks of Lambda instances agree to within
//! milliseconds, well inside Meta's allowance of a second's burst.
//!
//! A booked turn that is not used (the claim went to someone else, the process died) is a turn
//! lost, never one too many. When the shared count cannot be reached, the process paces itself
//! alone and logs it: the claim that follows needs the same table, so such a gap is short.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::store::StoreError;

/// A count of turns per business number per wall-clock second, shared by every process.
pub trait TurnBook: Send + Sync + Debug {
    /// Takes one of the `rate` turns of `number` in the Unix second `second`: its place, from 1 to
    /// `rate`, or `None` when all are taken. The first booking of a second starts after the
    /// `past` places whose time has gone by, so that a second begun idle is not sent at once.
    fn book<'a>(
        &'a self,
        number: &'a str,
        second: u64,
        past: u32,
        rate: u32,
    ) -> BoxFuture<'a, Result<Option<u32>, StoreError>>;
}

/// Spaces send calls so that no business number exceeds its throughput.
#[derive(Debug)]
pub struct Throttle {
    per_second: u32,
    next_free: Mutex<HashMap<String, Instant>>,
    shared: Option<Shared>,
}

impl Throttle {
    /// Paces this process's calls alone.
    pub fn new(per_second: u32) -> Self {
        Self { per_second: per_second.max(1), next_free: Mutex::default(), shared: None }
    }

    /// Paces the calls of every process that books in `book`.
    pub fn shared(per_second: u32, book: Arc<dyn TurnBook>) -> Self {
        Self { shared: Some(Shared { book, first_open: Default::default() }), ..Self::new(per_second) }
    }

    /// Waits for this number's next free turn.
    pub async fn turn(&self, phone_number_id: &str) {
        if let Some(shared) = &self.shared {
            match shared.turn(phone_number_id, self.per_second).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "the shared throughput count failed: pacing this process alone"),
            }
        }
        self.own_turn(phone_number_id).await;
    }

    async fn own_turn(&self, phone_number_id: &str) {
        let interval = Duration::from_secs(1) / self.per_second;
        let now = Instant::now();
        let start = {
            let mut next_free = self.next_free.lock().await;
            let slot = next_free.entry(phone_number_id.to_owned()).or_insert(now);
            let start = (*slot).max(now);
            *slot = start + interval;
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

#[derive(Debug)]
struct Shared {
    book: Arc<dyn TurnBook>,
    /// Per number, the first second this process has not seen full: where its next booking
    /// starts, so that a backlog costs one refused write per full second, not one per call.
    first_open: std::sync::Mutex<HashMap<String, u64>>,
}

impl Shared {
    async fn turn(&self, number: &str, rate: u32) -> Result<(), StoreError> {
        let now = SystemTime::now();
        let mut second = self.first_open(number).max(unix_seconds(now));
        loop {
            let past = places_past(second, now, rate);
            if let Some(place) = self.book.book(number, second, past, rate).await? {
                if let Ok(wait) = turn_start(second, place, rate).duration_since(SystemTime::now()) {
                    tokio::time::sleep(wait).await;
                }
                return Ok(());
            }
            second += 1;
            self.set_first_open(number, second);
        }
    }

    fn first_open(&self, number: &str) -> u64 {
        self.first_open.lock().unwrap_or_else(PoisonError::into_inner).get(number).copied().unwrap_or_default()
    }

    fn set_first_open(&self, number: &str, second: u64) {
        let mut first_open = self.first_open.lock().unwrap_or_else(PoisonError::into_inner);
        let known = first_open.entry(number.to_owned()).or_default();
        *known = (*known).max(second);
    }
}

/// When turn `place` of `rate` in the Unix second `second` may call.
fn turn_start(second: u64, place: u32, rate: u32) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(second) + Duration::from_secs(1) * (place - 1) / rate
}

/// How many of the `rate` places of the Unix second `second` have started by `now`.
fn places_past(second: u64, now: SystemTime, rate: u32) -> u32 {
    let into = now.duration_since(UNIX_EPOCH + Duration::from_secs(second)).unwrap_or_default();
    let past = into.as_nanos() * u128::from(rate) / 1_000_000_000;
    u32::try_from(past).unwrap_or(rate).min(rate)
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_throttle_spaces_one_numbers_calls_and_not_anothers() {
        let throttle = Throttle::new(10);
        let start = Instant::now();
        for _ in 0..5 {
            throttle.turn("a").await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(400));
        let other = Instant::now();
        throttle.turn("b").await;
        assert_eq!(other.elapsed(), Duration::ZERO);
    }

    /// A book in memory that records the seconds it was asked about.
    #[derive(Debug, Default)]
    struct Counts {
        taken: std::sync::Mutex<HashMap<u64, u32>>,
        asked: std::sync::Mutex<Vec<u64>>,
    }

    impl TurnBook for Counts {
        fn book<'a>(
            &'a self,
            _: &'a str,
            second: u64,
            past: u32,
            rate: u32,
        ) -> BoxFuture<'a, Result<Option<u32>, StoreError>> {
            self.asked.lock().unwrap().push(second);
            let mut taken = self.taken.lock().unwrap();
            let taken = taken.entry(second).or_insert(past);
            let place = (*taken < rate).then(|| {
                *taken += 1;
                *taken
            });
            Box::pin(async move { Ok(place) })
        }
    }

    #[test]
    fn a_turn_starts_at_its_place_in_its_second() {
        let start = turn_start(100, 3, 5);
        assert_eq!(start.duration_since(UNIX_EPOCH).unwrap(), Duration::from_millis(100_400));
        assert_eq!(turn_start(100, 1, 5), UNIX_EPOCH + Duration::from_secs(100));
    }

    #[test]
    fn places_whose_time_has_gone_by_are_past() {
        let second = 1_000;
        let at = |millis| UNIX_EPOCH + Duration::from_millis(second * 1_000 + millis);
        assert_eq!(places_past(second, at(0), 20), 0);
        assert_eq!(places_past(second, at(749), 20), 14);
        assert_eq!(places_past(second, at(750), 20), 15);
        assert_eq!(places_past(second + 1, at(750), 20), 0, "a second still to come");
        assert_eq!(places_past(second - 1, at(750), 20), 20, "a second gone by");
    }

    #[tokio::test]
    async fn full_seconds_send_the_turn_on_and_are_not_asked_again() {
        let book = Arc::new(Counts::default());
        let now = unix_seconds(SystemTime::now());
        // Other processes took every turn of this second and the next.
        book.taken.lock().unwrap().extend([(now, 5), (now + 1, 5)]);
        let throttle = Throttle::shared(5, book.clone());
        throttle.turn("a").await;
        assert!(SystemTime::now() >= turn_start(now + 2, 1, 5), "the turn waited for its second");
        throttle.turn("a").await;
        let asked = book.asked.lock().unwrap().clone();
        assert_eq!(asked[..3], [now, now + 1, now + 2]);
        assert_eq!(asked.len(), 4, "the second turn starts where the first found room: {asked:?}");
        assert_eq!(book.taken.lock().unwrap()[&(now + 2)], 2);
    }
}
