//! Holds and their life cycle: a template Meta paused, or a business number a sender-scope error
//! halted, keeps its sends waiting (attempt unused) instead of failing them.
//!
//! A hold records why (the error code), since when, and when a held send may next go out as a
//! probe. It is lifted by the news that the cause is gone: for a template, a
//! `message_template_status_update` saying it is approved, reinstated or unpaused; for either, a
//! probe that Meta accepts, or an operator (`capguard holds lift`). Held sends wait for the next
//! probe time, one conditional write each time they look, so their items do not grow; the first
//! to look after that time is the probe. A hold older than [`HoldLimits::alarm_after`] raises an
//! alarm, and past [`HoldLimits::give_up_after`] its held sends end as `held_too_long`.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// How long after a hold is set, or after its last probe, a held send goes out as the next probe,
/// by default (`HOLD_PROBE_EVERY`). Meta's template pauses last 3 or 6 hours; a halted number
/// waits for a human. Half an hour bounds how long a lifted hold keeps its sends waiting.
pub const PROBE_EVERY: TimeDelta = TimeDelta::minutes(30);

/// What a hold stops.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum HoldKey {
    /// Every send from this business number.
    Sender { phone_number_id: String },
    /// Every send of this template (name and language) from this business number.
    Template { phone_number_id: String, name: String, language: String },
}

impl HoldKey {
    /// The hold on every send from `phone_number_id`.
    pub fn sender(phone_number_id: &str) -> Self {
        Self::Sender { phone_number_id: phone_number_id.to_owned() }
    }

    /// The hold on every send of template `name` in `language` from `phone_number_id`.
    pub fn template(phone_number_id: &str, name: &str, language: &str) -> Self {
        Self::Template {
            phone_number_id: phone_number_id.to_owned(),
            name: name.to_owned(),
            language: language.to_owned(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sender { .. } => "sender",
            Self::Template { .. } => "template",
        }
    }

    /// What lifts a hold of this kind, for the operator.
    pub fn lifted_by(&self) -> &'static str {
        match self {
            Self::Sender { .. } => "a probe send Meta accepts, or `capguard holds lift`",
            Self::Template { .. } => {
                "a message_template_status_update (APPROVED, REINSTATED or UNPAUSE), a probe send Meta accepts, \
                 or `capguard holds lift`"
            }
        }
    }

    /// Whether a template status webhook about `name` in `language` concerns this hold. Meta's
    /// template webhooks carry the language as `en-US` or `en_US`, and no phone number.
    pub fn is_template(&self, template: &str, template_language: &str) -> bool {
        let same_language = |a: &str, b: &str| a.replace('-', "_").eq_ignore_ascii_case(&b.replace('-', "_"));
        matches!(self, Self::Template { name, language, .. } if name == template && same_language(language, template_language))
    }
}

/// The holds that can keep a send of template `name` in `language` from `phone_number_id`: its
/// number's, then its template's (a halted number comes first).
pub fn keys_of(phone_number_id: &str, name: &str, language: &str) -> [HoldKey; 2] {
    [HoldKey::sender(phone_number_id), HoldKey::template(phone_number_id, name, language)]
}

impl fmt::Display for HoldKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sender { phone_number_id } => write!(f, "sender {phone_number_id}"),
            Self::Template { phone_number_id, name, language } => {
                write!(f, "template {name} ({language}) on {phone_number_id}")
            }
        }
    }
}

/// Why, since when, and until when a hold keeps its sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The error code that set it.
    pub code: i64,
    pub since: DateTime<Utc>,
    /// When a held send may next go out as a probe.
    pub probe_at: DateTime<Utc>,
}

impl Hold {
    /// A hold set at `at` by an error with `code`, probed after the default [`PROBE_EVERY`].
    pub fn new(code: i64, at: DateTime<Utc>) -> Self {
        Self { code, since: at, probe_at: at + PROBE_EVERY }
    }

    pub fn age(&self, now: DateTime<Utc>) -> TimeDelta {
        now - self.since
    }
}

/// How often a hold is probed and how long it may last (`HOLD_PROBE_EVERY`, `HOLD_ALARM_AFTER`,
/// `HOLD_GIVE_UP_AFTER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldLimits {
    /// How long a held send waits before it may go out as the probe.
    pub probe_every: TimeDelta,
    /// A hold older than this raises an alarm.
    pub alarm_after: TimeDelta,
    /// A send held longer than this ends as `held_too_long`.
    pub give_up_after: TimeDelta,
}

impl Default for HoldLimits {
    fn default() -> Self {
        Self { probe_every: PROBE_EVERY, alarm_after: TimeDelta::hours(24), give_up_after: TimeDelta::hours(72) }
    }
}

impl HoldLimits {
    pub fn new(
        probe_every: TimeDelta,
        alarm_after: TimeDelta,
        give_up_after: TimeDelta,
    ) -> Result<Self, HoldLimitsError> {
        let give_up = give_up_after.num_seconds();
        if probe_every <= TimeDelta::zero() || probe_every > give_up_after {
            return Err(HoldLimitsError::ProbeEvery(probe_every.num_seconds(), give_up));
        }
        if alarm_after <= TimeDelta::zero() || give_up_after < alarm_after {
            return Err(HoldLimitsError::AlarmAfter(alarm_after.num_seconds(), give_up));
        }
        Ok(Self { probe_every, alarm_after, give_up_after })
    }

    /// A hold set at `at` by an error with `code`.
    pub fn hold(&self, code: i64, at: DateTime<Utc>) -> Hold {
        Hold { code, since: at, probe_at: at + self.probe_every }
    }

    pub fn too_old(&self, hold: &Hold, now: DateTime<Utc>) -> bool {
        hold.age(now) > self.alarm_after
    }
}

/// Hold limits that do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoldLimitsError {
    #[error("the probe interval ({0}s) must be positive and no longer than the give-up age ({1}s)")]
    ProbeEvery(i64, i64),
    #[error("the alarm age ({0}s) must be positive and no longer than the give-up age ({1}s)")]
    AlarmAfter(i64, i64),
}

/// What a held send does when it looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldStep {
    /// Wait until then (the hold's next probe, or its give-up time, whichever is first).
    Wait(DateTime<Utc>),
    /// Go out as the probe, if this send wins it: the hold's probe time moves to the next one.
    Probe { next: DateTime<Utc> },
    /// The hold lasted too long: end the send as `held_too_long`.
    GiveUp,
}

/// What a send held by `hold` does at `now`.
pub fn held_step(hold: &Hold, limits: &HoldLimits, now: DateTime<Utc>) -> HeldStep {
    let give_up_at = hold.since + limits.give_up_after;
    if now >= give_up_at {
        HeldStep::GiveUp
    } else if now >= hold.probe_at {
        HeldStep::Probe { next: now + limits.probe_every }
    } else {
        HeldStep::Wait(hold.probe_at.min(give_up_at))
    }
}

/// What a `message_template_status_update` says about a template's holds.
pub fn template_event_lifts(event: &str, other_info_title: Option<&str>) -> bool {
    matches!(event.to_ascii_uppercase().as_str(), "APPROVED" | "REINSTATED")
        || other_info_title.is_some_and(|title| title.eq_ignore_ascii_case("UNPAUSE"))
}

/// Whether an error code says the access token is bad or expired: worth reading the token again
/// (it may have been rotated) and trying once more before halting the number.
pub fn is_token_error(code: i64) -> bool {
    matches!(code, 0 | 190)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).unwrap() + TimeDelta::minutes(minutes)
    }

    #[test]
    fn a_held_send_waits_for_the_probe_then_probes_then_gives_up() {
        let limits = HoldLimits::default();
        let hold = Hold::new(132015, t(0));
        assert_eq!(held_step(&hold, &limits, t(10)), HeldStep::Wait(t(30)));
        assert_eq!(held_step(&hold, &limits, t(30)), HeldStep::Probe { next: t(60) });
        assert_eq!(held_step(&hold, &limits, t(72 * 60)), HeldStep::GiveUp);
        let late = Hold { probe_at: t(72 * 60 + 30), ..hold };
        assert_eq!(held_step(&late, &limits, t(71 * 60)), HeldStep::Wait(t(72 * 60)));
    }

    #[test]
    fn the_probe_interval_is_a_setting() {
        let limits = HoldLimits { probe_every: TimeDelta::minutes(5), ..HoldLimits::default() };
        let hold = limits.hold(132015, t(0));
        assert_eq!(hold.probe_at, t(5));
        assert_eq!(held_step(&hold, &limits, t(5)), HeldStep::Probe { next: t(10) });
    }

    #[test]
    fn a_hold_is_too_old_past_the_alarm_age() {
        let limits = HoldLimits::default();
        let hold = Hold::new(131042, t(0));
        assert!(!limits.too_old(&hold, t(24 * 60)));
        assert!(limits.too_old(&hold, t(24 * 60 + 1)));
        let probe = PROBE_EVERY;
        assert!(HoldLimits::new(probe, TimeDelta::hours(2), TimeDelta::hours(1)).is_err());
        assert!(HoldLimits::new(probe, TimeDelta::zero(), TimeDelta::hours(1)).is_err());
        assert!(HoldLimits::new(TimeDelta::zero(), TimeDelta::hours(1), TimeDelta::hours(2)).is_err());
        assert!(HoldLimits::new(TimeDelta::hours(3), TimeDelta::hours(1), TimeDelta::hours(2)).is_err());
        assert!(HoldLimits::new(TimeDelta::seconds(5), TimeDelta::hours(1), TimeDelta::hours(2)).is_ok());
    }

    #[test]
    fn approval_reinstatement_and_unpause_lift_a_template_and_a_pause_does_not() {
        assert!(template_event_lifts("APPROVED", None));
        assert!(template_event_lifts("REINSTATED", None));
        assert!(template_event_lifts("PAUSED", Some("UNPAUSE")));
        assert!(!template_event_lifts("PAUSED", Some("FIRST_PAUSE")));
        assert!(!template_event_lifts("DISABLED", None));
    }

    #[test]
    fn a_template_webhook_matches_its_hold_whatever_the_language_separator() {
        let key = HoldKey::Template {
            phone_number_id: "106540352242922".into(),
            name: "spring_sale".into(),
            language: "en_US".into(),
        };
        assert!(key.is_template("spring_sale", "en-US"));
        assert!(!key.is_template("spring_sale", "pt_BR"));
        assert!(!key.is_template("autumn_sale", "en_US"));
        assert!(!HoldKey::Sender { phone_number_id: "1".into() }.is_template("spring_sale", "en_US"));
    }

    #[test]
    fn only_auth_codes_are_token_errors() {
        assert!(is_token_error(190) && is_token_error(0));
        assert!(!is_token_error(131042));
    }
}
