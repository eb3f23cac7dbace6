//! Admission: may a send's slot go out now, or why not. The one decision that dispatch (a first
//! attempt), a timer and the sweep (a retry) all take before they claim a slot.
//!
//! In order: what refuses the send for good (marketing only: a region where Meta delivers no
//! marketing, an opt-out, no opt-in when `REQUIRE_OPT_IN` is on, the frequency cap; a retry is
//! checked for the opt-out alone, since the others held when its first attempt went), then what keeps it waiting (the recipient's night for
//! a ladder retry, then a halted number before a held template). A send that passes goes.

use chrono::{DateTime, FixedOffset, Utc};

use super::hold::{Hold, HoldKey, keys_of};
use super::recipient::RecipientRecord;
use super::rules::{Category, window_open};
use super::send::{NewSend, SendRecord, TemplateRef};
use super::verdict::{FinalReason, Rules};

/// Which attempt is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A send's first attempt, as it is requested.
    First,
    /// A later attempt (the ladder, a backoff, a hold's probe), or a first one that waited.
    Retry,
}

/// The send asking to go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate<'a> {
    pub category: Category,
    /// The recipient's number, as digits.
    pub recipient: &'a str,
    pub phone_number_id: &'a str,
    pub template: &'a TemplateRef,
    pub stage: Stage,
    /// The request's `retry_until`: a slot due after it does not go.
    pub retry_until: Option<DateTime<Utc>>,
    /// The slot's attempt: 1 for the first, more for the ladder's retries.
    pub attempt: u32,
    /// The recipient's UTC offset, for a marketing send (quiet hours).
    pub utc_offset: Option<FixedOffset>,
}

impl<'a> Candidate<'a> {
    /// A send about to be recorded: its first attempt.
    pub fn first(send: &'a NewSend) -> Self {
        let NewSend { category, recipient, phone_number_id, template, .. } = send;
        Self {
            category: *category,
            recipient,
            phone_number_id,
            template,
            stage: Stage::First,
            retry_until: None,
            attempt: 1,
            utc_offset: None,
        }
    }

    /// A recorded send whose slot is due.
    pub fn due(send: &'a SendRecord) -> Self {
        let SendRecord { category, recipient, phone_number_id, template, retry_until, .. } = send;
        Self {
            category: *category,
            recipient,
            phone_number_id,
            template,
            stage: Stage::Retry,
            retry_until: *retry_until,
            attempt: send.life.slot.attempt,
            utc_offset: if *category == Category::Marketing { send.utc_offset() } else { None },
        }
    }

    /// Whether the decision needs what is known of the recipient: for marketing only, and not for a
    /// first attempt that its region refuses anyway.
    pub fn needs_recipient(&self, rules: &Rules) -> bool {
        self.category == Category::Marketing
            && !(self.stage == Stage::First && rules.paused_regions.covers(self.recipient))
    }

    /// The holds that can keep this send, in the order they count.
    pub fn hold_keys(&self) -> [HoldKey; 2] {
        keys_of(self.phone_number_id, &self.template.name, &self.template.language)
    }
}

/// What the store holds that the decision needs: the recipient's record (when
/// [`Candidate::needs_recipient`]; without it, nothing that depends on it refuses) and the holds
/// in place among [`Candidate::hold_keys`], in that order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    pub recipient: Option<&'a RecipientRecord>,
    pub holds: &'a [(HoldKey, Hold)],
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Go,
    /// Not sent, ever: the send ends with this reason.
    Refuse(FinalReason),
    /// A hold keeps the send waiting, attempt unused.
    Wait {
        key: HoldKey,
        hold: Hold,
    },
    /// The recipient's night: a ladder retry that comes due in it (its timer late, or a sweep
    /// that found it) waits for their morning, attempt unused.
    Morning(DateTime<Utc>),
}

/// May `candidate` go at `now`?
pub fn admit(rules: &Rules, candidate: &Candidate, facts: Facts, now: DateTime<Utc>) -> Admission {
    if let Some(reason) = refusal(rules, candidate, facts.recipient, now) {
        return Admission::Refuse(reason);
    }
    if let Some(morning) = night(rules, candidate, facts.recipient, now) {
        return Admission::Morning(morning);
    }
    match facts.holds.first() {
        Some((key, hold)) => Admission::Wait { key: key.clone(), hold: hold.clone() },
        None => Admission::Go,
    }
}

fn refusal(
    rules: &Rules,
    candidate: &Candidate,
    recipient: Option<&RecipientRecord>,
    now: DateTime<Utc>,
) -> Option<FinalReason> {
    // A retry, a backoff's try or a held slot that comes due after the request's deadline (a
    // hold or an outage kept it past it) does not go.
    if candidate.stage == Stage::Retry && candidate.retry_until.is_some_and(|until| now > until) {
        return Some(FinalReason::Deadline);
    }
    if candidate.category != Category::Marketing {
        return None;
    }
    let first = candidate.stage == Stage::First;
    if first && rules.paused_regions.covers(candidate.recipient) {
        return Some(FinalReason::MarketingPausedRegion);
    }
    let recipient = recipient?;
    if recipient.opted_out {
        return Some(FinalReason::OptedOut);
    }
    if first && rules.require_opt_in && recipient.opt_in().is_none() {
        return Some(FinalReason::NoOptIn);
    }
    if first && !rules.frequency_cap.allows(&recipient.marketing_deliveries, now) {
        return Some(FinalReason::FrequencyCap);
    }
    None
}

/// The end of the recipient's night, for a marketing ladder retry that comes due in it: the
/// policy placed it in their daytime, and a late timer must not send it at night all the same.
/// Not while their customer-service window is open (they just wrote), and only judged with their
/// record, as the refusals are.
fn night(
    rules: &Rules,
    candidate: &Candidate,
    recipient: Option<&RecipientRecord>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let (recipient, quiet, offset) = (recipient?, rules.policy.quiet_hours?, candidate.utc_offset?);
    let ladder_retry = candidate.stage == Stage::Retry && candidate.attempt > 1;
    let wrote = window_open(recipient.last_inbound_at, now);
    (ladder_retry && candidate.category == Category::Marketing && !wrote && quiet.covers(now, offset))
        .then(|| quiet.after(now, offset))
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    const INDIA: &str = "919812345678";

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_751_142_888, 0).unwrap()
    }

    fn spring_sale() -> &'static TemplateRef {
        static TEMPLATE: std::sync::LazyLock<TemplateRef> = std::sync::LazyLock::new(|| TemplateRef {
            name: "spring_sale".into(),
            language: "en".into(),
            components: Vec::new(),
        });
        &TEMPLATE
    }

    fn marketing(recipient: &str, stage: Stage) -> Candidate<'_> {
        let phone_number_id = "106540352242922";
        Candidate {
            category: Category::Marketing,
            recipient,
            phone_number_id,
            template: spring_sale(),
            stage,
            retry_until: None,
            attempt: if stage == Stage::First { 1 } else { 2 },
            utc_offset: None,
        }
    }

    fn with(recipient: &RecipientRecord) -> Facts<'_> {
        Facts { recipient: Some(recipient), holds: &[] }
    }

    #[test]
    fn a_ladder_retry_that_comes_due_in_the_recipients_night_waits_for_their_morning() {
        let rules = Rules::default();
        let known = RecipientRecord::default();
        // 18:00 UTC is 23:30 in India: the morning is 09:00 IST, 03:30 UTC the next day.
        let night = DateTime::from_timestamp(1_751_133_600, 0).unwrap();
        let morning = night + TimeDelta::minutes(9 * 60 + 30);
        let retry =
            Candidate { utc_offset: crate::domain::policy::country_offset("IN"), ..marketing(INDIA, Stage::Retry) };
        assert_eq!(admit(&rules, &retry, with(&known), night), Admission::Morning(morning));
        let unplaced = marketing(INDIA, Stage::Retry);
        assert_eq!(admit(&rules, &unplaced, with(&known), night), Admission::Go, "no offset known: not moved");
        assert_eq!(admit(&rules, &retry, with(&known), morning), Admission::Go, "daytime");
        let wrote = RecipientRecord { last_inbound_at: Some(night - TimeDelta::hours(1)), ..known.clone() };
        assert_eq!(admit(&rules, &retry, with(&wrote), night), Admission::Go, "they just wrote");
        let waited = Candidate { attempt: 1, ..retry };
        assert_eq!(admit(&rules, &waited, with(&known), night), Admission::Go, "a first attempt that waited");
        let utility = Candidate { category: Category::Utility, ..retry };
        assert_eq!(admit(&rules, &utility, with(&known), night), Admission::Go);
        let off = Rules { policy: crate::domain::policy::Policy::off(), ..Rules::default() };
        assert_eq!(admit(&off, &retry, with(&known), night), Admission::Go, "quiet hours off");
        let holds = Facts { recipient: None, holds: &[] };
        assert_eq!(admit(&rules, &retry, holds, night), Admission::Go, "judged with the recipient only");
    }

    #[test]
    fn a_slot_due_after_the_requests_deadline_does_not_go() {
        let rules = Rules::default();
        let facts = Facts { recipient: Some(&RecipientRecord::default()), holds: &[] };
        let late = Candidate { retry_until: Some(now() - TimeDelta::minutes(1)), ..marketing(INDIA, Stage::Retry) };
        assert_eq!(admit(&rules, &late, facts, now()), Admission::Refuse(FinalReason::Deadline));
        let in_time = Candidate { retry_until: Some(now() + TimeDelta::minutes(1)), ..late };
        assert_eq!(admit(&rules, &in_time, facts, now()), Admission::Go);
        let first = Candidate { stage: Stage::First, ..late };
        assert_eq!(admit(&rules, &first, facts, now()), Admission::Go, "the first attempt is not a retry");
    }

    #[test]
    fn a_marketing_send_is_refused_for_a_paused_region_an_opt_out_or_the_frequency_cap() {
        let rules = Rules::default();
        let known = RecipientRecord::default();
        assert_eq!(
            admit(&rules, &marketing("16505551234", Stage::First), with(&known), now()),
            Admission::Refuse(FinalReason::MarketingPausedRegion)
        );
        let stopped = RecipientRecord { opted_out: true, ..RecipientRecord::default() };
        assert_eq!(
            admit(&rules, &marketing(INDIA, Stage::First), with(&stopped), now()),
            Admission::Refuse(FinalReason::OptedOut)
        );
        let rules = Rules { frequency_cap: "1/7d".parse().unwrap(), ..Rules::default() };
        let reached = RecipientRecord { marketing_deliveries: vec![now() - TimeDelta::days(1)], ..known.clone() };
        assert_eq!(
            admit(&rules, &marketing(INDIA, Stage::First), with(&reached), now()),
            Admission::Refuse(FinalReason::FrequencyCap)
        );
        assert_eq!(admit(&rules, &marketing(INDIA, Stage::First), with(&known), now()), Admission::Go);
    }

    #[test]
    fn with_opt_in_required_a_first_marketing_attempt_needs_an_opt_in_standing() {
        use crate::domain::consent::{ConsentEvent, OptIn};
        let rules = Rules { require_opt_in: true, ..Rules::default() };
        let unknown = RecipientRecord::default();
        assert_eq!(
            admit(&rules, &marketing(INDIA, Stage::First), with(&unknown), now()),
            Admission::Refuse(FinalReason::NoOptIn)
        );
        assert_eq!(admit(&Rules::default(), &marketing(INDIA, Stage::First), with(&unknown), now()), Admission::Go);
        let utility = Candidate { category: Category::Utility, ..marketing(INDIA, Stage::First) };
        assert_eq!(admit(&rules, &utility, with(&unknown), now()), Admission::Go, "utility needs no opt-in");
        assert_eq!(admit(&rules, &marketing(INDIA, Stage::Retry), with(&unknown), now()), Admission::Go);

        let opt_in = OptIn { source: "website_form".into(), at: None, note: None }.event(now() - TimeDelta::days(3));
        let agreed = RecipientRecord { consent: vec![opt_in.clone()], ..RecipientRecord::default() };
        assert_eq!(admit(&rules, &marketing(INDIA, Stage::First), with(&agreed), now()), Admission::Go);
        // A stop after the opt-in refuses; a resume after it restores the opt-in.
        let stop = ConsentEvent::of_recipient(true, "meta_131050", now() - TimeDelta::days(2));
        let stopped =
            RecipientRecord { opted_out: true, consent: vec![opt_in.clone(), stop.clone()], ..agreed.clone() };
        assert_eq!(
            admit(&rules, &marketing(INDIA, Stage::First), with(&stopped), now()),
            Admission::Refuse(FinalReason::OptedOut)
        );
        let resume = ConsentEvent::of_recipient(false, "marketing_preferences", now() - TimeDelta::days(1));
        let resumed = RecipientRecord { opted_out: false, consent: vec![opt_in, stop, resume], ..agreed };
        assert_eq!(admit(&rules, &marketing(INDIA, Stage::First), with(&resumed), now()), Admission::Go);
    }

    #[test]
    fn a_retry_is_refused_only_for_an_opt_out() {
        let rules = Rules { frequency_cap: "1/7d".parse().unwrap(), ..Rules::default() };
        let reached = RecipientRecord { marketing_deliveries: vec![now()], ..RecipientRecord::default() };
        assert_eq!(admit(&rules, &marketing(INDIA, Stage::Retry), with(&reached), now()), Admission::Go);
        assert_eq!(admit(&rules, &marketing("16505551234", Stage::Retry), with(&reached), now()), Admission::Go);
        let stopped = RecipientRecord { opted_out: true, ..reached };
        assert_eq!(
            admit(&rules, &marketing(INDIA, Stage::Retry), with(&stopped), now()),
            Admission::Refuse(FinalReason::OptedOut)
        );
    }

    #[test]
    fn utility_and_authentication_are_never_refused_but_do_wait_for_holds() {
        let rules = Rules::default();
        let utility = Candidate { category: Category::Utility, ..marketing("16505551234", Stage::First) };
        let [sender, template] = utility.hold_keys();
        assert_eq!(sender, HoldKey::sender("106540352242922"));
        assert_eq!(template, HoldKey::template("106540352242922", "spring_sale", "en"));
        let hold = Hold::new(131042, now());
        let holds = [(sender.clone(), hold.clone()), (template, hold.clone())];
        assert!(!utility.needs_recipient(&rules));
        assert!(!marketing("16505551234", Stage::First).needs_recipient(&rules), "its region refuses it");
        assert!(marketing("16505551234", Stage::Retry).needs_recipient(&rules));
        assert!(marketing(INDIA, Stage::First).needs_recipient(&rules));
        assert_eq!(admit(&rules, &utility, Facts::default(), now()), Admission::Go);
        assert_eq!(
            admit(&rules, &utility, Facts { recipient: None, holds: &holds }, now()),
            Admission::Wait { key: sender, hold }
        );
    }

    #[test]
    fn a_refusal_comes_before_a_hold() {
        let stopped = RecipientRecord { opted_out: true, ..RecipientRecord::default() };
        let [_, template] = marketing(INDIA, Stage::Retry).hold_keys();
        let holds = [(template, Hold::new(132015, now()))];
        let facts = Facts { recipient: Some(&stopped), holds: &holds };
        assert_eq!(
            admit(&Rules::default(), &marketing(INDIA, Stage::Retry), facts, now()),
            Admission::Refuse(FinalReason::OptedOut)
        );
    }
}
