//! A send, as the domain knows it: its id, what it sends to whom, how it starts, and everything
//! recorded of it (its life, see [`super::lifecycle`], and each slot's history).

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::engagement::Tier;
use super::hold::{HoldKey, keys_of};
use super::lifecycle::{DELIVERY_HORIZON, Phase, SendLife, Slot};
use super::policy::{RetryContext, country_offset};
use super::recipient::RecipientRecord;
use super::rules::{CUSTOMER_SERVICE_WINDOW, Category, region_of};
use super::verdict::FinalReason;
use crate::whatsapp::send::Component;

/// A send's id: derived from the business number, the caller's idempotency key and the
/// recipient, so that recording the same send twice finds the first one. 32 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SendId(String);

impl SendId {
    pub fn derive(phone_number_id: &str, idempotency_key: &str, recipient: &str) -> Self {
        let mut hash = Sha256::new();
        for part in [phone_number_id, idempotency_key, recipient] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        Self(hex::encode(&hash.finalize()[..16]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SendId {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        if text.len() == 32 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Self(text))
        } else {
            Err(format!("{text:?} is not a send id (32 lowercase hex digits)"))
        }
    }
}

impl From<SendId> for String {
    fn from(id: SendId) -> Self {
        id.0
    }
}

impl std::fmt::Display for SendId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The template a send uses, with this recipient's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateRef {
    pub name: String,
    pub language: String,
    #[serde(default)]
    pub components: Vec<Component>,
}

/// A send to record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewSend {
    pub idempotency_key: String,
    /// The recipient's number: digits only, country code first, no `+`.
    pub recipient: String,
    pub phone_number_id: String,
    pub template: TemplateRef,
    pub category: Category,
    pub campaign: Option<String>,
    /// The ladder's length plus one.
    pub max_attempts: u32,
    /// No ladder retry is planned past this time (the request's `retry_until`).
    #[serde(default)]
    pub retry_until: Option<DateTime<Utc>>,
    /// The recipient's UTC offset in minutes, when the request gave one (quiet hours).
    #[serde(default)]
    pub utc_offset_minutes: Option<i32>,
    /// The recipient's engagement tier when the first attempt was admitted (marketing only).
    #[serde(default)]
    pub tier: Option<Tier>,
    /// The source of the recipient's opt-in standing when the first attempt was admitted
    /// (marketing only; none when no opt-in was recorded).
    #[serde(default)]
    pub opt_in_source: Option<String>,
    /// Whether the first attempt waited for room under the messaging limit.
    #[serde(default)]
    pub held_for_limit: bool,
}

impl NewSend {
    pub fn id(&self) -> SendId {
        SendId::derive(&self.phone_number_id, &self.idempotency_key, &self.recipient)
    }
}

/// How a new send starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Waiting for attempt 1, due at the given time: the caller claims it just before its call,
    /// and a send whose caller stopped before that is simply due (a sweep sends it).
    Due(DateTime<Utc>),
    /// Claimed for attempt 1 as it is recorded: the caller sends it now, in one write where a
    /// recording and a claim took two. Unless the call's outcome is recorded first, it is settled
    /// at the given time, as any claim.
    Claim(DateTime<Utc>),
    /// Refused up front: recorded as final, for the report, and never sent.
    Refuse(FinalReason),
}

impl Start {
    /// The life a send starts with when recorded at `now`, and the slot it claims then, if any.
    pub fn life(self, max_attempts: u32, now: DateTime<Utc>) -> (SendLife, Option<Slot>) {
        match self {
            Self::Due(due) => (SendLife::new(max_attempts, due), None),
            // What `Input::Claim` makes of a new send, due now.
            Self::Claim(settle_by) => {
                let life = SendLife { phase: Phase::Claimed { due: settle_by }, ..SendLife::new(max_attempts, now) };
                (life, Some(Slot::FIRST))
            }
            Self::Refuse(reason) => (SendLife::refused(max_attempts, reason), None),
        }
    }
}

/// An error Meta reported for an attempt: the code decides, the title explains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedError {
    pub code: i64,
    pub title: Option<String>,
}

/// One slot's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub slot: Slot,
    pub claimed_at: DateTime<Utc>,
    pub wamid: Option<String>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub read_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    pub error: Option<RecordedError>,
    /// When Meta's answer said it holds the message for pacing (`held_for_quality_assessment`):
    /// it goes out, or is dropped with 132015, when Meta has assessed the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paced_at: Option<DateTime<Utc>>,
}

impl AttemptRecord {
    /// Whether Meta still holds the attempt's message for pacing: paced, and not reported sent,
    /// delivered, read or failed since.
    pub fn paced(&self) -> bool {
        self.paced_at.is_some()
            && [self.sent_at, self.delivered_at, self.read_at, self.failed_at].iter().all(Option::is_none)
    }

    /// A slot just claimed at `at`: nothing heard of it yet.
    pub fn claimed(slot: Slot, at: DateTime<Utc>) -> Self {
        Self {
            slot,
            claimed_at: at,
            wamid: None,
            accepted_at: None,
            sent_at: None,
            delivered_at: None,
            read_at: None,
            failed_at: None,
            error: None,
            paced_at: None,
        }
    }
}

/// Everything known about a send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendRecord {
    pub id: SendId,
    pub idempotency_key: String,
    pub recipient: String,
    pub phone_number_id: String,
    pub template: TemplateRef,
    pub category: Category,
    pub campaign: Option<String>,
    /// No ladder retry is planned past this time (the request's `retry_until`).
    #[serde(default)]
    pub retry_until: Option<DateTime<Utc>>,
    /// The recipient's UTC offset in minutes, when the request gave one (quiet hours).
    #[serde(default)]
    pub utc_offset_minutes: Option<i32>,
    /// The recipient's engagement tier when the first attempt was admitted (marketing only).
    #[serde(default)]
    pub tier: Option<Tier>,
    /// The source of the recipient's opt-in standing when the first attempt was admitted
    /// (marketing only; none when no opt-in was recorded).
    #[serde(default)]
    pub opt_in_source: Option<String>,
    /// Whether the first attempt waited for room under the messaging limit.
    #[serde(default)]
    pub held_for_limit: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the store may forget the send (TTL).
    pub expires_at: DateTime<Utc>,
    pub life: SendLife,
    /// Every claimed slot, in order.
    pub attempts: Vec<AttemptRecord>,
}

impl SendRecord {
    pub fn attempt(&self, slot: Slot) -> Option<&AttemptRecord> {
        self.attempts.iter().find(|a| a.slot == slot)
    }

    /// Until when the current slot's message may stay undelivered: [`DELIVERY_HORIZON`] after
    /// Meta first answered for it (the send call's answer, or a status that came ahead of it).
    pub fn delivery_deadline(&self) -> DateTime<Utc> {
        // Without an answer on record (which every accepted slot has), from its claim: a time
        // that never moves, unlike the send's last change.
        let first_heard = self
            .attempt(self.life.slot)
            .map(|attempt| attempt.accepted_at.into_iter().chain(attempt.sent_at).min().unwrap_or(attempt.claimed_at))
            .unwrap_or(self.created_at);
        first_heard + DELIVERY_HORIZON
    }

    /// What the policy knows when it places the retry of `slot`, capped, at `now`, given the
    /// recipient's record when it was read.
    pub fn retry_context(&self, slot: Slot, recipient: Option<&RecipientRecord>, now: DateTime<Utc>) -> RetryContext {
        let offset = self.utc_offset();
        RetryContext {
            window_until: recipient.and_then(|r| r.last_inbound_at).map(|at| at + CUSTOMER_SERVICE_WINDOW),
            retry_until: self.retry_until,
            utc_offset: offset,
            consecutive_caps: recipient.map_or(0, |r| r.consecutive_caps),
            attempt_sent_at: self.attempt(slot).map(|attempt| attempt.claimed_at),
            now: Some(now),
        }
    }

    /// The recipient's UTC offset: the request's, or their number's country's (quiet hours).
    pub fn utc_offset(&self) -> Option<FixedOffset> {
        match self.utc_offset_minutes {
            Some(minutes) => FixedOffset::east_opt(minutes * 60),
            None => region_of(&self.recipient).and_then(|region| country_offset(&region)),
        }
    }

    /// The holds that can keep this send: its number's, then its template's.
    pub fn hold_keys(&self) -> [HoldKey; 2] {
        keys_of(&self.phone_number_id, &self.template.name, &self.template.language)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_id_is_stable_and_depends_on_every_part() {
        let id = SendId::derive("106540352242922", "spring-1", "919812345678");
        assert_eq!(id, SendId::derive("106540352242922", "spring-1", "919812345678"));
        assert_eq!(id.as_str().len(), 32);
        assert_ne!(id, SendId::derive("106540352242922", "spring-2", "919812345678"));
        assert_ne!(id, SendId::derive("106540352242922", "spring-1", "919812345679"));
        assert_ne!(SendId::derive("a", "bc", "d"), SendId::derive("ab", "c", "d"));
    }

    #[test]
    fn a_send_id_reads_back_only_from_its_own_form() {
        let id = SendId::derive("1", "2", "3");
        assert_eq!(SendId::try_from(id.to_string()), Ok(id));
        assert!(SendId::try_from("ABC".to_owned()).is_err());
        assert!(SendId::try_from("g".repeat(32)).is_err());
    }

    #[test]
    fn a_send_recorded_claimed_is_a_new_send_claimed_at_once() {
        use crate::domain::lifecycle::{Effect, Input};
        let now = DateTime::from_timestamp(1_793_000_000, 0).expect("a time");
        let settle_by = now + chrono::TimeDelta::minutes(15);
        let mut claimed = SendLife::new(4, now);
        assert_eq!(claimed.apply(Input::Claim(Slot::FIRST, settle_by)), Effect::Send(Slot::FIRST));
        assert_eq!(Start::Claim(settle_by).life(4, now), (claimed, Some(Slot::FIRST)));
        assert_eq!(Start::Due(now).life(4, now), (SendLife::new(4, now), None));
        let refused = Start::Refuse(FinalReason::OptedOut).life(4, now).0;
        assert_eq!(refused.phase, Phase::Final { reason: FinalReason::OptedOut });
    }

    #[test]
    fn a_message_may_stay_undelivered_until_the_horizon_after_meta_first_answered_for_it() {
        let at = |s: i64| DateTime::from_timestamp(1_793_000_000 + s, 0).expect("a time");
        let attempt = |slot: Slot| AttemptRecord::claimed(slot, at(0));
        let second = Slot { attempt: 2, try_no: 1 };
        let mut send = SendRecord {
            id: SendId::derive("1", "2", "3"),
            idempotency_key: "2".into(),
            recipient: "3".into(),
            phone_number_id: "1".into(),
            template: TemplateRef { name: "t".into(), language: "en".into(), components: Vec::new() },
            category: Category::Marketing,
            campaign: None,
            retry_until: None,
            utc_offset_minutes: None,
            tier: None,
            opt_in_source: None,
            held_for_limit: false,
            created_at: at(0),
            updated_at: at(50),
            expires_at: at(1_000_000),
            life: SendLife { slot: second, ..SendLife::new(4, at(0)) },
            attempts: vec![AttemptRecord { accepted_at: Some(at(1)), ..attempt(Slot::FIRST) }, attempt(second)],
        };
        assert_eq!(send.delivery_deadline(), at(0) + DELIVERY_HORIZON, "nothing heard for the slot: from its claim");
        send.attempts[1].sent_at = Some(at(30));
        assert_eq!(send.delivery_deadline(), at(30) + DELIVERY_HORIZON, "a status ahead of the answer");
        send.attempts[1].accepted_at = Some(at(31));
        assert_eq!(send.delivery_deadline(), at(30) + DELIVERY_HORIZON, "whichever came first");
    }
}
