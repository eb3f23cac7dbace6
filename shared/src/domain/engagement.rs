//! Engagement tiers: how recently a recipient showed they read what the business sends.
//!
//! The seed articles' advice against the per-user cap is to begin a campaign with the most active
//! users, and Meta ties the cap to "the user's recent marketing read rate". capguard knows, per
//! recipient, when they last wrote and when they last read one of the business's messages (a
//! `read` status), and which marketing messages reached them:
//!
//! - **engaged**: read or wrote within [`ENGAGED_WITHIN`];
//! - **dormant**: known (a marketing message reached them, a cap was counted, or they read or
//!   wrote longer ago), but nothing recent;
//! - **new**: nothing known.
//!
//! A marketing send keeps the tier its recipient had when its first attempt was admitted, so the
//! funnel, the report and the lab count recoveries by tier. With the policy's `engaged_first`, a
//! request's first attempts go to the engaged first, then the dormant, then the new.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::recipient::RecipientRecord;

/// How recent a read or a reply must be for its recipient to count as engaged.
pub const ENGAGED_WITHIN: TimeDelta = TimeDelta::days(30);

/// A recipient's engagement tier, in the order a request's first attempts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Engaged,
    Dormant,
    New,
}

impl Tier {
    pub const ALL: [Self; 3] = [Self::Engaged, Self::Dormant, Self::New];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Engaged => "engaged",
            Self::Dormant => "dormant",
            Self::New => "new",
        }
    }

    /// The tier of `recipient` at `now`.
    pub fn of(recipient: &RecipientRecord, now: DateTime<Utc>) -> Self {
        let recent = |at: Option<DateTime<Utc>>| at.is_some_and(|at| at <= now && now - at < ENGAGED_WITHIN);
        if recent(recipient.last_read_at) || recent(recipient.last_inbound_at) {
            return Self::Engaged;
        }
        let known = recipient.last_read_at.is_some()
            || recipient.last_inbound_at.is_some()
            || !recipient.marketing_deliveries.is_empty()
            || recipient.consecutive_caps > 0;
        if known { Self::Dormant } else { Self::New }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|tier| tier.as_str() == text).ok_or_else(|| format!("{text:?} is not a tier"))
    }
}

/// The order a request's recipients go in, engaged first: the indexes of `tiers` sorted by tier,
/// each tier in the request's own order. A recipient whose tier is unknown (not marketing, or
/// refused before its record mattered) keeps its place among the new.
pub fn engaged_first(tiers: &[Option<Tier>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..tiers.len()).collect();
    order.sort_by_key(|&index| tiers[index].unwrap_or(Tier::New));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_750_000_000, 0).unwrap()
    }

    #[test]
    fn a_recent_read_or_reply_makes_a_recipient_engaged() {
        let day = TimeDelta::days(1);
        let read = RecipientRecord { last_read_at: Some(now() - day), ..RecipientRecord::default() };
        let wrote =
            RecipientRecord { last_inbound_at: Some(now() - ENGAGED_WITHIN + day), ..RecipientRecord::default() };
        assert_eq!(Tier::of(&read, now()), Tier::Engaged);
        assert_eq!(Tier::of(&wrote, now()), Tier::Engaged);
    }

    #[test]
    fn a_known_recipient_without_a_recent_sign_is_dormant_and_an_unknown_one_new() {
        let long_ago = now() - ENGAGED_WITHIN;
        let dormant = [
            RecipientRecord { last_read_at: Some(long_ago), ..RecipientRecord::default() },
            RecipientRecord { last_inbound_at: Some(long_ago), ..RecipientRecord::default() },
            RecipientRecord { marketing_deliveries: vec![now()], ..RecipientRecord::default() },
            RecipientRecord { consecutive_caps: 1, ..RecipientRecord::default() },
        ];
        for record in &dormant {
            assert_eq!(Tier::of(record, now()), Tier::Dormant, "{record:?}");
        }
        assert_eq!(Tier::of(&RecipientRecord::default(), now()), Tier::New);
        // An opt-out alone says nothing about reading.
        let opted_out = RecipientRecord { opted_out: true, ..RecipientRecord::default() };
        assert_eq!(Tier::of(&opted_out, now()), Tier::New);
    }

    #[test]
    fn engaged_go_first_then_dormant_then_new_each_in_request_order() {
        let tiers =
            [Some(Tier::New), Some(Tier::Dormant), None, Some(Tier::Engaged), Some(Tier::Dormant), Some(Tier::Engaged)];
        assert_eq!(engaged_first(&tiers), [3, 5, 1, 4, 0, 2]);
    }

    #[test]
    fn tiers_read_back_their_names() {
        for tier in Tier::ALL {
            assert_eq!(tier.to_string().parse(), Ok(tier));
        }
        assert!("active".parse::<Tier>().is_err());
    }
}
