//! The retry ladder: how long to wait after each per-user-cap failure before trying again.
//!
//! Attempt 1 is the first send. When attempt `n` fails with the per-user cap, attempt `n + 1` is
//! due `delays[n - 1]` after the failure; when there is no such delay the send is exhausted. The
//! default retries every two days, seven times (eight attempts in all): Meta's current page asks
//! for at least 24 h between a cap and a resend, and `capguard lab` finds that two days apart, for
//! two weeks and more, recovers the most capped sends for the fewest wasted retries of the ladders
//! it compares, under each of the sandbox's cap models (README, "The retry ladder").
//!
//! A ladder is a calendar: a step may repeat (`24h,24h,24h` retries daily) but never shrink, and
//! none may be shorter than the shortest step allowed, [`DEFAULT_MIN_STEP`] unless configured
//! otherwise (`RETRY_MIN_STEP`): a resend minutes after a cap only extends the cap.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};

/// The ladder when nothing is configured.
pub const DEFAULT_LADDER: &str = "48h,48h,48h,48h,48h,48h,48h";

/// The shortest step a ladder may have when nothing else is configured.
pub const DEFAULT_MIN_STEP: TimeDelta = TimeDelta::hours(1);

/// Delays that never shrink, none shorter than the shortest step allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ladder {
    delays: Vec<TimeDelta>,
}

/// What follows a per-user-cap failure of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Retry { attempt: u32, due: DateTime<Utc> },
    Exhausted,
}

impl Ladder {
    /// The ladder of `delays`, each at least `min_step` (itself positive) and none shorter than
    /// the one before it.
    pub fn new(delays: Vec<TimeDelta>, min_step: TimeDelta) -> Result<Self, LadderError> {
        if delays.is_empty() {
            return Err(LadderError::Empty);
        }
        if min_step <= TimeDelta::zero() {
            return Err(LadderError::MinStepNotPositive(format_delay(min_step)));
        }
        if let Some(delay) = delays.iter().find(|d| **d <= TimeDelta::zero()) {
            return Err(LadderError::NotPositive(format_delay(*delay)));
        }
        if let Some(delay) = delays.iter().find(|d| **d < min_step) {
            return Err(LadderError::UnderMinimum { step: format_delay(*delay), minimum: format_delay(min_step) });
        }
        if let Some(pair) = delays.windows(2).find(|pair| pair[1] < pair[0]) {
            return Err(LadderError::Shrinks { earlier: format_delay(pair[0]), later: format_delay(pair[1]) });
        }
        Ok(Self { delays })
    }

    /// Reads `12h,24h,48h` (see [`Ladder::from_str`]) with `min_step` as the shortest step.
    pub fn parse_with_min_step(text: &str, min_step: TimeDelta) -> Result<Self, LadderError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(LadderError::Empty);
        }
        let delays = text.split(',').map(parse_delay).collect::<Result<Vec<_>, _>>()?;
        Self::new(delays, min_step)
    }

    pub fn delays(&self) -> &[TimeDelta] {
        &self.delays
    }

    /// The first send plus one retry per step.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len()).map_or(u32::MAX, |steps| steps.saturating_add(1))
    }

    /// What follows when `attempt` (1-based) failed with the cap at `failed_at`.
    pub fn after_cap(&self, attempt: u32, failed_at: DateTime<Utc>) -> NextStep {
        let step = usize::try_from(attempt).ok().and_then(|n| n.checked_sub(1)).and_then(|i| self.delays.get(i));
        match step {
            Some(delay) => NextStep::Retry { attempt: attempt + 1, due: failed_at + *delay },
            None => NextStep::Exhausted,
        }
    }
}

impl Default for Ladder {
    fn default() -> Self {
        DEFAULT_LADDER.parse().expect("the default ladder is valid")
    }
}

impl FromStr for Ladder {
    type Err = LadderError;

    /// Reads `12h,24h,48h`: comma-separated whole numbers with a unit of `s`, `m`, `h` or `d`,
    /// none shorter than [`DEFAULT_MIN_STEP`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse_with_min_step(text, DEFAULT_MIN_STEP)
    }
}

impl fmt::Display for Ladder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let steps: Vec<String> = self.delays.iter().map(|d| format_delay(*d)).collect();
        f.write_str(&steps.join(","))
    }
}

/// Reads one delay such as `12h`, `90m`, `2d` or `30s`.
pub fn parse_delay(step: &str) -> Result<TimeDelta, LadderError> {
    let step = step.trim();
    let bad = || LadderError::BadStep(step.to_owned());
    let unit_at = step.len().checked_sub(1).filter(|_| step.is_char_boundary(step.len() - 1)).ok_or_else(bad)?;
    let (number, unit) = step.split_at(unit_at);
    let number: i64 = number.parse().map_err(|_| bad())?;
    let delay = match unit {
        "s" => TimeDelta::try_seconds(number),
        "m" => TimeDelta::try_minutes(number),
        "h" => TimeDelta::try_hours(number),
        "d" => TimeDelta::try_days(number),
        _ => None,
    };
    delay.ok_or_else(bad)
}

/// Writes a delay in hours, minutes or seconds: the largest that divides it.
pub fn format_delay(delay: TimeDelta) -> String {
    let seconds = delay.num_seconds();
    match seconds {
        s if s != 0 && s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s != 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LadderError {
    #[error("the retry ladder is empty: give at least one delay, e.g. {DEFAULT_LADDER}")]
    Empty,
    #[error("retry delay {0:?} is not a whole number followed by s, m, h or d (e.g. 12h)")]
    BadStep(String),
    #[error("retry delay {0} is not positive: every wait must be longer than zero")]
    NotPositive(String),
    #[error("the shortest step allowed, {0}, is not positive")]
    MinStepNotPositive(String),
    #[error("retry delay {step} is shorter than the shortest step allowed, {minimum}")]
    UnderMinimum { step: String, minimum: String },
    #[error("retry delays may repeat but never shrink: {later} after {earlier} does")]
    Shrinks { earlier: String, later: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn the_default_retries_every_two_days_seven_times() {
        let ladder = Ladder::default();
        assert_eq!(ladder.delays(), &[TimeDelta::hours(48); 7]);
        assert_eq!(ladder.max_attempts(), 8);
        assert_eq!(ladder.to_string(), "48h,48h,48h,48h,48h,48h,48h");
    }

    #[test]
    fn each_failure_schedules_the_next_attempt_after_its_own_step() {
        let ladder: Ladder = "12h,24h,48h".parse().unwrap();
        let t = at(1_751_142_888);
        assert_eq!(ladder.after_cap(1, t), NextStep::Retry { attempt: 2, due: t + TimeDelta::hours(12) });
        assert_eq!(ladder.after_cap(2, t), NextStep::Retry { attempt: 3, due: t + TimeDelta::hours(24) });
        assert_eq!(ladder.after_cap(3, t), NextStep::Retry { attempt: 4, due: t + TimeDelta::hours(48) });
        assert_eq!(ladder.after_cap(4, t), NextStep::Exhausted);
        assert_eq!(ladder.after_cap(0, t), NextStep::Exhausted);
    }

    #[test]
    fn units_and_spaces_are_read() {
        let ladder = Ladder::parse_with_min_step(" 30s, 90m ,2d", TimeDelta::seconds(30)).unwrap();
        assert_eq!(ladder.delays(), &[TimeDelta::seconds(30), TimeDelta::minutes(90), TimeDelta::days(2)]);
        assert_eq!(ladder.to_string(), "30s,90m,48h");
        assert_eq!("1d,2d,4d".parse::<Ladder>().unwrap().to_string(), "24h,48h,96h");
    }

    #[test]
    fn a_calendar_may_repeat_its_steps_but_not_shrink_or_go_under_the_minimum() {
        let daily: Ladder = "24h,24h,24h,24h,24h,24h".parse().unwrap();
        assert_eq!(daily.max_attempts(), 7);
        let t = at(1_751_142_888);
        assert_eq!(daily.after_cap(3, t), NextStep::Retry { attempt: 4, due: t + TimeDelta::hours(24) });
        assert_eq!("1h,1h".parse::<Ladder>().unwrap().delays(), &[TimeDelta::hours(1); 2], "the minimum itself");
        assert_eq!(
            "59m,2h".parse::<Ladder>(),
            Err(LadderError::UnderMinimum { step: "59m".into(), minimum: "1h".into() })
        );
        let quick = Ladder::parse_with_min_step("15s,30s,30s", TimeDelta::seconds(15)).unwrap();
        assert_eq!(quick.delays(), &[TimeDelta::seconds(15), TimeDelta::seconds(30), TimeDelta::seconds(30)]);
        assert_eq!(
            Ladder::parse_with_min_step("10s", TimeDelta::seconds(15)),
            Err(LadderError::UnderMinimum { step: "10s".into(), minimum: "15s".into() })
        );
        let zero = Ladder::parse_with_min_step("1h", TimeDelta::zero());
        assert_eq!(zero, Err(LadderError::MinStepNotPositive("0s".into())));
    }

    #[test]
    fn nonsense_is_refused_with_a_clear_message() {
        let cases = [
            ("", LadderError::Empty),
            ("  ", LadderError::Empty),
            ("12h,,48h", LadderError::BadStep(String::new())),
            ("12", LadderError::BadStep("12".into())),
            ("12x", LadderError::BadStep("12x".into())),
            ("h", LadderError::BadStep("h".into())),
            ("1.5h", LadderError::BadStep("1.5h".into())),
            ("0h", LadderError::NotPositive("0s".into())),
            ("-1h", LadderError::NotPositive("-1h".into())),
            ("24h,12h", LadderError::Shrinks { earlier: "24h".into(), later: "12h".into() }),
            ("48h,24h,24h", LadderError::Shrinks { earlier: "48h".into(), later: "24h".into() }),
            ("30m,1h", LadderError::UnderMinimum { step: "30m".into(), minimum: "1h".into() }),
            ("99999999999999d", LadderError::BadStep("99999999999999d".into())),
            ("12ü", LadderError::BadStep("12ü".into())),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<Ladder>(), Err(expected), "{text:?}");
        }
        assert!(LadderError::Empty.to_string().contains("48h,48h,48h,48h,48h,48h,48h"));
    }
}
