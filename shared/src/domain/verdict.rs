//! What capguard does about a failed send: the class of its code, then the rules.
//!
//! [`Rules::judge`] is the one place where a failure becomes a decision: the ladder for a
//! marketing send capped outside a paused region, a short backoff for a transient failure, and so
//! on down the [`Remedy`] the code's row names.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::classes::{Classification, FailureClass, Remedy, classify};
use super::hold::HoldLimits;
use super::ladder::{Ladder, NextStep};
use super::policy::{Placed, Policy, RetryContext};
use super::rules::{Backoff, Category, FrequencyCap, OptOutKeywords, PausedRegions};

/// Every rule that shapes a decision, as configured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    pub ladder: Ladder,
    /// How each ladder step is placed for its recipient.
    pub policy: Policy,
    pub paused_regions: PausedRegions,
    pub opt_out_keywords: OptOutKeywords,
    pub frequency_cap: FrequencyCap,
    pub backoff: Backoff,
    pub holds: HoldLimits,
    /// Marketing only to recipients with an opt-in recorded (`REQUIRE_OPT_IN`).
    pub require_opt_in: bool,
    /// The portfolio's messaging limit, counted and kept to (`MESSAGING_LIMIT`); `None` is off.
    pub messaging_limit: Option<super::limit::MessagingLimit>,
    /// The ramps of a portfolio or numbers new to marketing (`WARM_UP`); none by default.
    pub warm_up: super::limit::WarmUps,
    /// The percentage of throughput and messaging limit a YELLOW-rated number's marketing first
    /// attempts may take (`QUALITY_YELLOW_SHARE`).
    pub yellow_share: super::quality::YellowShare,
}

/// Why nothing more will be tried for a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalReason {
    /// Capped on every step of the ladder.
    Exhausted,
    /// Capped in a region where Meta delivers no marketing at all (the US).
    MarketingPausedRegion,
    /// A per-user-cap failure of a utility or authentication send: never laddered.
    NotMarketing,
    OptedOut,
    Unreachable,
    InvalidRequest,
    TemplateRejected,
    SenderBlocked,
    TransientExhausted,
    UnknownCode,
    /// A `failed` status that carried no error code.
    FailedWithoutCode,
    /// Cancelled by the business.
    Cancelled,
    /// Refused up front: the recipient already had the frequency cap's worth of marketing.
    FrequencyCap,
    /// Refused up front because the business number was halted (recorded by versions before
    /// holds had a life cycle; a send under a hold now waits for it).
    SenderHalted,
    /// Refused up front because the template was held (as `SenderHalted`).
    TemplateHeld,
    /// Held (a paused template, a halted number) for longer than `HOLD_GIVE_UP_AFTER`.
    HeldTooLong,
    /// The send call's outcome never became known, and no webhook settled it in time.
    OutcomeUnknown,
    /// Meta accepted the message but reported neither delivery nor failure before its
    /// time-to-live ran out: it was dropped.
    Undelivered,
    /// Capped, and its next step came after the request's `retry_until`.
    Deadline,
    /// Refused up front: marketing to a recipient with no opt-in recorded, with `REQUIRE_OPT_IN`.
    NoOptIn,
}

impl FinalReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exhausted => "exhausted",
            Self::MarketingPausedRegion => "marketing_paused_region",
            Self::NotMarketing => "not_marketing",
            Self::OptedOut => "opted_out",
            Self::Unreachable => "unreachable",
            Self::InvalidRequest => "invalid_request",
            Self::TemplateRejected => "template_rejected",
            Self::SenderBlocked => "sender_blocked",
            Self::TransientExhausted => "transient_exhausted",
            Self::UnknownCode => "unknown_code",
            Self::FailedWithoutCode => "failed_without_code",
            Self::Cancelled => "cancelled",
            Self::FrequencyCap => "frequency_cap",
            Self::SenderHalted => "sender_halted",
            Self::TemplateHeld => "template_held",
            Self::HeldTooLong => "held_too_long",
            Self::OutcomeUnknown => "outcome_unknown",
            Self::Undelivered => "undelivered",
            Self::Deadline => "deadline",
            Self::NoOptIn => "no_opt_in",
        }
    }
}

/// One failed attempt, with what the rules need to know about it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Failure<'a> {
    pub code: i64,
    pub category: Category,
    /// The recipient's number (with or without `+`).
    pub recipient: &'a str,
    /// The attempt that failed, 1-based.
    pub attempt: u32,
    /// Transient retries this attempt has had already.
    pub transient_retries: u32,
    pub at: DateTime<Utc>,
    /// What the policy knows of the send and its recipient.
    pub context: RetryContext,
}

/// The decision on one failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Attempt `attempt` goes out at `due`.
    Ladder {
        attempt: u32,
        due: DateTime<Utc>,
    },
    /// The same attempt goes out again at `due`; this is transient retry number `retry`.
    BackOff {
        retry: u32,
        due: DateTime<Utc>,
    },
    SuppressRecipient,
    /// The template is held; the send looks again at `due` (the probe interval after the failure).
    HoldTemplate {
        due: DateTime<Utc>,
    },
    /// The business number is halted; the send looks again at `due`.
    HaltSender {
        due: DateTime<Utc>,
    },
    Final(FinalReason),
}

/// A verdict with the class of the code it was taken on, so that nothing downstream classifies
/// the code again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub class: FailureClass,
    pub verdict: Verdict,
}

impl Decision {
    /// A verdict capguard takes without a Meta code (an unreachable Cloud API, a send it settles
    /// itself): the class of a code the table does not know.
    pub fn own(verdict: Verdict) -> Self {
        Self { class: FailureClass::Unknown, verdict }
    }

    /// Whether the failure was the per-user marketing limit.
    pub fn capped(&self) -> bool {
        self.class == FailureClass::PerUserCap
    }
}

impl Rules {
    /// The decision on `failure`: its code's remedy ([`classify`]) refined by these rules.
    pub fn judge(&self, failure: &Failure) -> Decision {
        let row = classify(failure.code);
        Decision { class: row.class, verdict: self.verdict(failure, row) }
    }

    fn verdict(&self, failure: &Failure, row: Classification) -> Verdict {
        match row.remedy {
            Remedy::Ladder if !failure.category.takes_ladder() => Verdict::Final(FinalReason::NotMarketing),
            Remedy::Ladder if self.paused_regions.covers(failure.recipient) => {
                Verdict::Final(FinalReason::MarketingPausedRegion)
            }
            Remedy::Ladder => match self.ladder.after_cap(failure.attempt, failure.at) {
                NextStep::Retry { attempt, due } => match self.policy.place(failure.at, due, &failure.context) {
                    Placed::At(due) => Verdict::Ladder { attempt, due },
                    Placed::PastDeadline => Verdict::Final(FinalReason::Deadline),
                },
                NextStep::Exhausted => Verdict::Final(FinalReason::Exhausted),
            },
            Remedy::SuppressRecipient => Verdict::SuppressRecipient,
            Remedy::BackOff => {
                let retry = failure.transient_retries + 1;
                match self.backoff.delay(retry) {
                    Some(delay) => Verdict::BackOff { retry, due: failure.at + delay },
                    None => Verdict::Final(FinalReason::TransientExhausted),
                }
            }
            Remedy::HoldTemplate => Verdict::HoldTemplate { due: failure.at + self.holds.probe_every },
            Remedy::HaltSender => Verdict::HaltSender { due: failure.at + self.holds.probe_every },
            Remedy::GiveUp => Verdict::Final(give_up_reason(row)),
        }
    }
}

fn give_up_reason(row: Classification) -> FinalReason {
    use super::classes::FailureClass as C;
    match row.class {
        C::Unreachable => FinalReason::Unreachable,
        C::InvalidRequest => FinalReason::InvalidRequest,
        C::Template => FinalReason::TemplateRejected,
        C::Sender => FinalReason::SenderBlocked,
        C::OptOut => FinalReason::OptedOut,
        C::Transient => FinalReason::TransientExhausted,
        C::PerUserCap => FinalReason::Exhausted,
        C::Unknown => FinalReason::UnknownCode,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::domain::policy::country_offset;

    fn failure(code: i64, recipient: &str, attempt: u32) -> Failure<'_> {
        Failure {
            code,
            category: Category::Marketing,
            recipient,
            attempt,
            transient_retries: 0,
            at: DateTime::from_timestamp(1_751_142_888, 0).unwrap(),
            context: RetryContext::default(),
        }
    }

    const INDIA: &str = "919812345678";

    /// The default rules on a three-step ladder.
    fn three_steps() -> Rules {
        Rules { ladder: "12h,24h,48h".parse().unwrap(), ..Rules::default() }
    }

    #[test]
    fn a_capped_marketing_send_climbs_the_ladder_then_is_exhausted() {
        let rules = Rules { policy: Policy::off(), ..three_steps() };
        let f = failure(131049, INDIA, 1);
        assert_eq!(rules.judge(&f).verdict, Verdict::Ladder { attempt: 2, due: f.at + TimeDelta::hours(12) });
        assert_eq!(
            rules.judge(&Failure { attempt: 3, ..f }).verdict,
            Verdict::Ladder { attempt: 4, due: f.at + TimeDelta::hours(48) }
        );
        assert_eq!(rules.judge(&Failure { attempt: 4, ..f }).verdict, Verdict::Final(FinalReason::Exhausted));
    }

    #[test]
    fn a_step_past_the_requests_deadline_ends_the_send_and_one_at_night_waits_for_morning() {
        let rules = three_steps();
        let f = failure(131049, INDIA, 1);
        let deadline = RetryContext { retry_until: Some(f.at + TimeDelta::hours(11)), ..RetryContext::default() };
        assert_eq!(rules.judge(&Failure { context: deadline, ..f }).verdict, Verdict::Final(FinalReason::Deadline));
        // Capped at 20:34 UTC, resting a day: 20:34 UTC the next day, which is 17:34 at UTC-3
        // (unchanged) but 02:04 in India, where it waits for 09:00 (03:30 UTC).
        let rules =
            Rules { policy: Policy { rest_after_cap: Some(TimeDelta::hours(24)), ..Policy::default() }, ..rules };
        let rested = f.at + TimeDelta::hours(24);
        let brazil = RetryContext { utc_offset: country_offset("BR"), ..RetryContext::default() };
        assert_eq!(rules.judge(&Failure { context: brazil, ..f }).verdict, Verdict::Ladder { attempt: 2, due: rested });
        let india = RetryContext { utc_offset: country_offset("IN"), ..RetryContext::default() };
        let morning = (f.at + TimeDelta::days(2)).date_naive().and_hms_opt(3, 30, 0).unwrap().and_utc();
        assert_eq!(rules.judge(&Failure { context: india, ..f }).verdict, Verdict::Ladder { attempt: 2, due: morning });
    }

    #[test]
    fn a_capped_us_send_is_final_and_a_canadian_one_is_not() {
        let rules = Rules::default();
        assert_eq!(
            rules.judge(&failure(131049, "16505551234", 1)).verdict,
            Verdict::Final(FinalReason::MarketingPausedRegion)
        );
        assert!(matches!(rules.judge(&failure(131049, "14165550123", 1)).verdict, Verdict::Ladder { .. }));
    }

    #[test]
    fn a_capped_utility_send_is_never_laddered() {
        let f = Failure { category: Category::Utility, ..failure(131049, INDIA, 1) };
        assert_eq!(Rules::default().judge(&f).verdict, Verdict::Final(FinalReason::NotMarketing));
    }

    #[test]
    fn transient_failures_back_off_a_bounded_number_of_times() {
        let rules = Rules::default();
        let f = failure(130429, INDIA, 2);
        assert_eq!(rules.judge(&f).verdict, Verdict::BackOff { retry: 1, due: f.at + TimeDelta::seconds(4) });
        assert_eq!(
            rules.judge(&Failure { transient_retries: 3, ..f }).verdict,
            Verdict::Final(FinalReason::TransientExhausted)
        );
    }

    #[test]
    fn every_other_remedy_maps_to_its_verdict() {
        let rules = Rules::default();
        let verdict = |code| rules.judge(&failure(code, INDIA, 1)).verdict;
        assert_eq!(verdict(131050), Verdict::SuppressRecipient);
        let due = failure(0, INDIA, 1).at + rules.holds.probe_every;
        assert_eq!(verdict(132015), Verdict::HoldTemplate { due });
        assert_eq!(verdict(131042), Verdict::HaltSender { due });
        assert_eq!(verdict(131026), Verdict::Final(FinalReason::Unreachable));
        assert_eq!(verdict(132001), Verdict::Final(FinalReason::TemplateRejected));
        assert_eq!(verdict(131008), Verdict::Final(FinalReason::InvalidRequest));
        assert_eq!(verdict(424_242), Verdict::Final(FinalReason::UnknownCode));
    }

    #[test]
    fn a_decision_carries_the_class_of_its_code() {
        let rules = Rules::default();
        let decision = |code| rules.judge(&failure(code, INDIA, 1));
        assert!(decision(131049).capped());
        assert_eq!(decision(130429).class, FailureClass::Transient);
        assert_eq!(decision(131050).class, FailureClass::OptOut);
        assert_eq!(decision(424_242).class, FailureClass::Unknown);
        assert!(!Decision::own(Verdict::Final(FinalReason::OutcomeUnknown)).capped());
    }
}
