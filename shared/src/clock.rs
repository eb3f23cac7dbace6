//! The clock port. Domain code never reads the time; use cases ask a [`Clock`], so that the demo
//! and the tests can run time faster than the wall.

use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that starts at `origin` and runs `scale` times faster than the wall: with a scale of
/// 3,600, an hour passes every second.
#[derive(Debug, Clone, Copy)]
pub struct ScaledClock {
    origin: DateTime<Utc>,
    started: Instant,
    scale: f64,
}

impl ScaledClock {
    pub fn new(origin: DateTime<Utc>, scale: f64) -> Self {
        assert!(scale.is_finite() && scale > 0.0, "a time scale must be positive");
        Self { origin, started: Instant::now(), scale }
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// How long to wait on the wall for `span` of this clock's time to pass.
    pub fn wall_time_for(&self, span: TimeDelta) -> std::time::Duration {
        span.to_std().map(|d| d.div_f64(self.scale)).unwrap_or_default()
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = self.started.elapsed().mul_f64(self.scale);
        self.origin + TimeDelta::from_std(elapsed).unwrap_or(TimeDelta::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scaled_clock_runs_faster_than_the_wall() {
        let origin = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let clock = ScaledClock::new(origin, 3_600.0);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let passed = clock.now() - origin;
        assert!(passed >= TimeDelta::seconds(72), "{passed}");
        assert_eq!(clock.wall_time_for(TimeDelta::hours(12)), std::time::Duration::from_secs(12));
    }
}
