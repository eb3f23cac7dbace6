//! The clock port. Domain code never reads the time; use cases ask a [`Clock`], so that the demo
//! and the tests can run time faster than the wall.

use chrono::{DateTime, TimeDelta, Utc};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;

    /// How long to wait on the wall, from now, for `span` of this clock's time to pass.
    fn wall_time_for(&self, span: TimeDelta) -> std::time::Duration {
        span.to_std().unwrap_or_default()
    }

    /// How long a second of this clock lasts on the wall at its own pace (a warm-up aside): what
    /// a rate per second of this clock is paced by.
    fn wall_second(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
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
    warm_up: Option<WarmUp>,
}

/// A first stretch of wall time in which a clock runs at a slower scale.
#[derive(Debug, Clone, Copy)]
struct WarmUp {
    wall: std::time::Duration,
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
        Self { origin, anchor, scale, warm_up: None }
    }

    /// This clock, run at `scale` instead for its first `wall` of wall time: a burst of work at
    /// the start (a campaign's first sends) then spans simulated minutes, not hours, however
    /// busy the machine is, so that runs of one seed see the same first outcomes.
    pub fn with_warm_up(self, wall: std::time::Duration, scale: f64) -> Self {
        assert!(scale.is_finite() && scale > 0.0, "a time scale must be positive");
        Self { warm_up: Some(WarmUp { wall, scale }), ..self }
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The clock time passed after `wall` of wall time since the anchor.
    fn passed(&self, wall: std::time::Duration) -> std::time::Duration {
        match self.warm_up {
            Some(warm) if wall <= warm.wall => wall.mul_f64(warm.scale),
            Some(warm) => warm.wall.mul_f64(warm.scale) + (wall - warm.wall).mul_f64(self.scale),
            None => wall.mul_f64(self.scale),
        }
    }

    /// The wall time since the anchor at which `passed` of clock time has passed.
    fn wall_at(&self, passed: std::time::Duration) -> std::time::Duration {
        match self.warm_up {
            Some(warm) if passed <= warm.wall.mul_f64(warm.scale) => passed.div_f64(warm.scale),
            Some(warm) => warm.wall + (passed - warm.wall.mul_f64(warm.scale)).div_f64(self.scale),
            None => passed.div_f64(self.scale),
        }
    }

    fn wall_elapsed(&self) -> std::time::Duration {
        (Utc::now() - self.anchor).to_std().unwrap_or_default()
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> DateTime<Utc> {
        let passed = self.passed(self.wall_elapsed());
        self.origin + TimeDelta::from_std(passed).unwrap_or(TimeDelta::MAX)
    }

    fn wall_time_for(&self, span: TimeDelta) -> std::time::Duration {
        let Ok(span) = span.to_std() else { return std::time::Duration::ZERO };
        let wall = self.wall_elapsed();
        self.wall_at(self.passed(wall) + span).saturating_sub(wall)
    }

    fn wall_second(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1).div_f64(self.scale)
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
    fn a_warm_up_runs_slower_first_then_at_the_scale() {
        let origin = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let warming = ScaledClock::new(origin, 3_600.0).with_warm_up(std::time::Duration::from_secs(5), 10.0);
        assert!(warming.now() - origin < TimeDelta::seconds(50), "at most 5 s at ten times: {}", warming.now());
        // From inside the warm-up: the rest of it at ten times (at most 5 s), then an hour a second.
        let wall = warming.wall_time_for(TimeDelta::seconds(50) + TimeDelta::hours(1));
        assert!(wall > std::time::Duration::from_secs(1) && wall <= std::time::Duration::from_secs(6), "{wall:?}");
        assert_eq!(warming.wall_second(), std::time::Duration::from_secs(1).div_f64(3_600.0), "its own pace");
        // A warm-up of one second that ended nine seconds ago.
        let anchor = Utc::now() - TimeDelta::seconds(10);
        let warmed = ScaledClock::anchored(anchor, 3_600.0).with_warm_up(std::time::Duration::from_secs(1), 10.0);
        let passed = warmed.now() - anchor;
        assert!(
            passed >= TimeDelta::seconds(10 + 9 * 3_600) && passed < TimeDelta::seconds(10 + 19 * 3_600),
            "{passed}"
        );
        let twelve_hours = warmed.wall_time_for(TimeDelta::hours(12)).as_secs_f64();
        assert!((twelve_hours - 12.0).abs() < 1e-6, "{twelve_hours}");
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
