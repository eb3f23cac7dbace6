//! A clock the test sets: time stands still until the test moves it.

use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};
use shared::clock::Clock;

#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn at(start: DateTime<Utc>) -> Self {
        Self(Mutex::new(start))
    }

    /// Moves the time on by `by`; returns the new time.
    pub fn advance(&self, by: TimeDelta) -> DateTime<Utc> {
        let mut now = self.0.lock().unwrap();
        *now += by;
        *now
    }

    /// Sets the time (forward only: a store's time never goes back).
    pub fn set(&self, to: DateTime<Utc>) {
        let mut now = self.0.lock().unwrap();
        assert!(to >= *now, "the clock only moves forward");
        *now = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}
