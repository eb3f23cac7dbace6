//! Meta's synchronous send limits: throughput per business number (130429) and the pair rate to
//! one user (131056), both in simulated time.
//!
//! Each is a generic cell rate: one message per `interval`, with bursts of up to `burst`
//! messages that borrow from the following intervals. That is Meta's description of the pair
//! limit ("a burst of 20 means waiting about 2 min" at one per 6 s); for throughput the burst is
//! one second's worth. A refused send takes nothing from the allowance.

use std::collections::HashMap;
use std::hash::Hash;

use chrono::{DateTime, TimeDelta, Utc};

/// A rate limit per key.
#[derive(Debug)]
pub(crate) struct RateLimit<K> {
    interval: TimeDelta,
    burst: u32,
    /// Per key, when its allowance is next fully paid back: the "theoretical arrival time".
    paid_back: HashMap<K, DateTime<Utc>>,
}

impl<K: Eq + Hash> RateLimit<K> {
    pub(crate) fn new(interval: TimeDelta, burst: u32) -> Self {
        Self { interval, burst: burst.max(1), paid_back: HashMap::new() }
    }

    /// `messages_per_second`, with bursts of one second's worth.
    pub(crate) fn per_second(messages_per_second: u32) -> Self {
        let rate = messages_per_second.max(1);
        Self::new(TimeDelta::nanoseconds(1_000_000_000 / i64::from(rate)), rate)
    }

    /// Takes one message for `key` at `now`, or refuses it.
    pub(crate) fn admit(&mut self, key: K, now: DateTime<Utc>) -> bool {
        let start = self.paid_back.get(&key).copied().map_or(now, |at| at.max(now));
        let paid_back = start + self.interval;
        if paid_back - now > self.interval * self.burst as i32 {
            return false;
        }
        self.paid_back.insert(key, paid_back);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_750_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn one_message_per_interval_without_a_burst() {
        let mut limit = RateLimit::new(TimeDelta::seconds(6), 1);
        assert!(limit.admit("a", at(0)));
        assert!(!limit.admit("a", at(3)));
        assert!(limit.admit("b", at(3)), "another user is not affected");
        assert!(limit.admit("a", at(6)));
    }

    #[test]
    fn a_burst_borrows_from_the_following_intervals() {
        let mut limit = RateLimit::new(TimeDelta::seconds(6), 20);
        assert!((0..20).all(|_| limit.admit("a", at(0))));
        assert!(!limit.admit("a", at(0)));
        // The burst is paid back one interval at a time: two minutes for twenty messages.
        assert!(limit.admit("a", at(6)));
        assert!(!limit.admit("a", at(7)));
        assert!((0..19).all(|_| limit.admit("a", at(126))));
    }

    #[test]
    fn throughput_allows_one_second_s_worth_at_once() {
        let mut limit = RateLimit::per_second(3);
        assert!((0..3).all(|_| limit.admit("phone", at(0))));
        assert!(!limit.admit("phone", at(0)));
        assert!(limit.admit("phone", at(1)));
    }
}
