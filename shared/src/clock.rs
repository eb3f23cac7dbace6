//! The clock port. Domain code never reads the time; use cases ask a [`Clock`], so that the demo
//! and the tests can run time faster than the wall.

use chrono::{DateTime, TimeDelta, Utc};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;

    /// How long to wait on the wall for `span` of this clock's time to pass.
    fn wall_time_for(&self, span: TimeDelta) -> std::time::Duration {
        span.to_std().unwrap_or_default()
    }
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that runs `scale` times faster than the wall: with a scale of 3,600, an hour passes
/// every second. It reads `origin` when the wall reads `anchor`.
#[derive(Debug, Clone, Copy)]
pub struct ScaledClock {
    origin: DateTime<Utc>,
    anchor: DateTime<Utc>,
    scale: f64,
}

impl ScaledClock {
    /// A clock that reads `origin` now.
    pub fn new(origin: DateTime<Utc>, scale: f64) -> Self {
        Self::with_anchor(origin, Utc::now(), scale)
    }

    /// A clock that read the wall's own time at `anchor` and has run fast since: every process
    /// given the same anchor and scale reads the same time, so separate servers agree.
    pub fn anchored(anchor: DateTime<Utc>, scale: f64) -> Self {
        Self::with_anchor(anchor, anchor, scale)
    }

    fn with_anchor(origin: DateTime<Utc>, anchor: DateTime<Utc>, scale: f64) -> Self {
        assert!(scale.is_finite() && scale > 0.0, "a time scale must be positive");
        Self { origin, anchor, scale }
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = (Utc::now() - self.anchor).to_std().unwrap_or_default().mul_f64(self.scale);
        self.origin + TimeDelta::from_std(elapsed).unwrap_or(TimeDelta::MAX)
    }

    fn wall_time_for(&self, span: TimeDelta) -> std::time::Duration {
        span.to_std().map(|d| d.div_f64(self.scale)).unwrap_or_default()
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

    #[test]
    fn clocks_with_the_same_anchor_agree() {
        let anchor = Utc::now() - TimeDelta::seconds(2);
        let (a, b) = (ScaledClock::anchored(anchor, 100.0), ScaledClock::anchored(anchor, 100.0));
        let (ta, tb) = (a.now(), b.now());
        assert!((tb - ta).abs() < TimeDelta::seconds(5), "{ta} vs {tb}");
        assert!(ta - anchor >= TimeDelta::seconds(200), "two wall seconds are 200 clock seconds");
    }
}
