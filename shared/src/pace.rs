//! Meta's throughput limit per business number (80 messages a second by default; past it, error
//! 130429), kept by every process that sends.
//!
//! One process spaces its own calls evenly ([`Throttle::new`]): that is the whole story for
//! `capguard serve`, which is one process. A deployment runs as many Lambda instances as there are
//! requests, timers and queue messages at once, and each would take the full rate for itself. So
//! a deployed [`Throttle`] books every call's turn in a count shared through the table
//! ([`Throttle::shared`], [`TurnBook`]). The `rate` turns of a wall-clock second `s` are numbered
//! from 0, and turn `i` starts at `s + i / rate`, so the deployment's calls are spaced evenly
//! whatever the number of instances; a full second sends the caller to the next. The turns of a
//! second are counted in [`shards`] counters of at most [`SHARD_RATE`] turns each (counter `k`
//! holds the turns `i` with `i % shards == k`), so that no counter is written faster than a
//! DynamoDB item allows even at Meta's top rate of 1,000 a second. Booking costs one conditional
//! write per call, and one refused write per full counter met. Wall clocks of Lambda instances
//! agree to within milliseconds, well inside Meta's allowance of a second's burst.
//!
//! A booked turn that is not used (the claim went to someone else, the process died, or the
//! booking came back after its second was over) is a turn lost, never one too many. When the
//! shared count cannot be reached after a few tries, the process paces itself alone and logs it:
//! failing open costs at worst some 130429 answers, each only a short backoff, while failing closed
//! would stop every send on one throttled item; and the claim that follows needs the same table,
//! so such a gap is short.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::store::StoreError;

/// The most turns one counter holds in a second: a quarter of what DynamoDB writes to one item in
/// a second (1,000), leaving room for the refused writes of callers that find it full.
pub const SHARD_RATE: u32 = 250;

/// How many times a failed booking is tried again, and the wait before the first retry (each
/// next one waits four times longer).
const BOOKING_RETRIES: u32 = 2;
const BOOKING_BACKOFF: Duration = Duration::from_millis(50);

/// One counter of turns: shard `shard` of a number's Unix second `second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Counter {
    pub second: u64,
    pub shard: u32,
}

/// Counts of turns per business number, shared by every process.
pub trait TurnBook: Send + Sync + Debug {
    /// Takes one of the `capacity` turns `counter` holds: its place, from 1 to `capacity`, or
    /// `None` when all are taken. The first booking of a counter starts after the `past` places
    /// whose time has gone by, so that a second begun idle is not sent all at once.
    fn book<'a>(
        &'a self,
        number: &'a str,
        counter: Counter,
        past: u32,
        capacity: u32,
    ) -> BoxFuture<'a, Result<Option<u32>, StoreError>>;
}

/// Spaces send calls so that no business number exceeds its throughput.
#[derive(Debug)]
pub struct Throttle {
    per_second: u32,
    /// How long a second of the process's clock lasts on the wall: a second, unless the clock
    /// runs fast (the demo, the lab, `capguard serve --time-scale`), whose sandbox counts its
    /// limit in the same fast time.
    second: Duration,
    next_free: Mutex<HashMap<String, Instant>>,
    shared: Option<Shared>,
}

impl Throttle {
    /// Paces this process's calls alone.
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second: per_second.max(1),
            second: Duration::from_secs(1),
            next_free: Mutex::default(),
            shared: None,
        }
    }

    /// Paces in a clock whose second lasts `second` on the wall.
    pub fn with_second(self, second: Duration) -> Self {
        Self { second, ..self }
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
        let interval = self.second / self.per_second;
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
    /// starts, so that a backlog costs refused writes once per full second, not once per call.
    first_open: std::sync::Mutex<HashMap<String, u64>>,
}

impl Shared {
    async fn turn(&self, number: &str, rate: u32) -> Result<(), StoreError> {
        let shards = shards(rate);
        let mut second = self.first_open(number);
        loop {
            let now = SystemTime::now();
            second = second.max(unix_seconds(now));
            let past = places_past(second, now, rate);
            // Processes start at different counters, so that they meet full ones less often.
            let first = now.duration_since(UNIX_EPOCH).unwrap_or_default().subsec_nanos() % shards;
            for shard in (0..shards).map(|k| (first + k) % shards) {
                let counter = Counter { second, shard };
                let capacity = in_shard(rate, shards, shard);
                let Some(place) = self.book(number, counter, in_shard(past, shards, shard), capacity).await? else {
                    continue;
                };
                let start = turn_start(second, (place - 1) * shards + shard, rate);
                match start.duration_since(SystemTime::now()) {
                    Ok(wait) => tokio::time::sleep(wait).await,
                    // The booking came back after its second was over: the turn is lost.
                    Err(_) if unix_seconds(SystemTime::now()) > second => break,
                    Err(_) => {}
                }
                return Ok(());
            }
            second += 1;
            self.set_first_open(number, second);
        }
    }

    /// One booking, tried again after a failure (a throttled or unreachable table).
    async fn book(&self, number: &str, counter: Counter, past: u32, capacity: u32) -> Result<Option<u32>, StoreError> {
        let mut wait = BOOKING_BACKOFF;
        let mut retries = 0;
        loop {
            match self.book.book(number, counter, past, capacity).await {
                Err(_) if retries < BOOKING_RETRIES => {
                    tokio::time::sleep(wait).await;
                    (retries, wait) = (retries + 1, wait * 4);
                }
                result => return result,
            }
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

/// How many counters the turns of one second at `rate` are kept in.
pub fn shards(rate: u32) -> u32 {
    rate.div_ceil(SHARD_RATE).max(1)
}

/// Of the turns `0..count`, how many fall in counter `shard` of `shards` (`i % shards == shard`).
fn in_shard(count: u32, shards: u32, shard: u32) -> u32 {
    (count + shards - 1 - shard) / shards
}

/// When turn `index` (from 0) of `rate` in the Unix second `second` may call.
fn turn_start(second: u64, index: u32, rate: u32) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(second) + Duration::from_secs(1) * index / rate
}

/// How many of the `rate` turns of the Unix second `second` have started by `now`.
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

    #[tokio::test(start_paused = true)]
    async fn a_throttle_on_a_fast_clock_paces_in_that_clocks_seconds() {
        // A clock 100 times faster than the wall: 10 a second of it is 1,000 a wall second.
        let throttle = Throttle::new(10).with_second(Duration::from_millis(10));
        let start = Instant::now();
        for _ in 0..5 {
            throttle.turn("a").await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(4));
    }

    /// A book in memory that records the counters it was asked about.
    #[derive(Debug, Default)]
    struct Counts {
        taken: std::sync::Mutex<HashMap<Counter, u32>>,
        asked: std::sync::Mutex<Vec<u64>>,
    }

    impl TurnBook for Counts {
        fn book<'a>(
            &'a self,
            _: &'a str,
            counter: Counter,
            past: u32,
            capacity: u32,
        ) -> BoxFuture<'a, Result<Option<u32>, StoreError>> {
            self.asked.lock().unwrap().push(counter.second);
            let mut taken = self.taken.lock().unwrap();
            let taken = taken.entry(counter).or_insert(past);
            let place = (*taken < capacity).then(|| {
                *taken += 1;
                *taken
            });
            Box::pin(async move { Ok(place) })
        }
    }

    #[test]
    fn a_turn_starts_at_its_place_in_its_second() {
        let start = turn_start(100, 2, 5);
        assert_eq!(start.duration_since(UNIX_EPOCH).unwrap(), Duration::from_millis(100_400));
        assert_eq!(turn_start(100, 0, 5), UNIX_EPOCH + Duration::from_secs(100));
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

    #[test]
    fn the_counters_share_a_seconds_turns_between_them() {
        assert_eq!((shards(1), shards(80), shards(250), shards(251), shards(1_000)), (1, 1, 1, 2, 4));
        for (rate, past) in [(80, 13), (1_000, 999), (1_001, 500), (251, 1)] {
            let shards = shards(rate);
            let capacities: Vec<u32> = (0..shards).map(|k| in_shard(rate, shards, k)).collect();
            assert_eq!(capacities.iter().sum::<u32>(), rate, "{capacities:?}");
            assert!(capacities.iter().all(|&c| c <= SHARD_RATE), "{capacities:?}");
            assert_eq!((0..shards).map(|k| in_shard(past, shards, k)).sum::<u32>(), past);
        }
        // Place p of counter k is turn (p - 1) * shards + k: every turn once, none past the rate.
        let (rate, shards) = (1_001, shards(1_001));
        let mut turns: Vec<u32> = (0..shards)
            .flat_map(|k| (1..=in_shard(rate, shards, k)).map(move |place| (place - 1) * shards + k))
            .collect();
        turns.sort_unstable();
        assert_eq!(turns, (0..rate).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn full_seconds_send_the_turn_on_and_are_not_asked_again() {
        let book = Arc::new(Counts::default());
        let now = unix_seconds(SystemTime::now());
        // Other processes took every turn of this second and the next.
        for second in [now, now + 1] {
            book.taken.lock().unwrap().insert(Counter { second, shard: 0 }, 5);
        }
        let throttle = Throttle::shared(5, book.clone());
        throttle.turn("a").await;
        assert!(SystemTime::now() >= turn_start(now + 2, 0, 5), "the turn waited for its second");
        let first = book.asked.lock().unwrap().clone();
        assert!(first.ends_with(&[now + 1, now + 2]), "{first:?}");
        throttle.turn("a").await;
        let asked = book.asked.lock().unwrap().clone();
        assert_eq!(asked[first.len()..], [now + 2], "the next turn starts where the last found room");
        assert_eq!(book.taken.lock().unwrap()[&Counter { second: now + 2, shard: 0 }], 2);
    }
}
