//! The messaging limit: how many unique users the business portfolio may message outside a
//! customer-service window in a moving 24 hours (250, 2,000, 10,000, 100,000 or unlimited), and
//! the count capguard keeps of them so that a campaign larger than the limit spreads over days
//! instead of failing.
//!
//! The count is a [`Ledger`] of [`BUCKET`]-long buckets: each contact is counted in the bucket of
//! the time it was taken, and a bucket stops counting [`WINDOW`] and [`MARGIN`] after its end. So
//! a contact counts for 25 h and at most one bucket more, never less: the count may run a little
//! high, which holds a send an hour longer, never low, as long as Meta delivers within that hour.
//! The margin is there because capguard counts a user when it sends and Meta when it delivers,
//! moments later; a message to a phone that stays off for longer is delivered, and counted by
//! Meta, after capguard's place has run out. A recipient takes a new place for each send more than
//! a bucket after their last ([`counts`]); one who wrote within the customer-service window does
//! not count at all. Every template send counts, whatever its category, and so does every retry:
//! Meta's limit is on unique users, not on marketing.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::recipient::RecipientRecord;
use super::rules::window_open;

/// The moving period Meta counts unique users over.
pub const WINDOW: TimeDelta = TimeDelta::hours(24);
/// The length of one bucket of the count: how much longer than 25 h a contact may be counted.
pub const BUCKET: TimeDelta = TimeDelta::minutes(15);
/// How much longer than Meta's 24 h capguard counts a contact: Meta counts from the delivery.
pub const MARGIN: TimeDelta = TimeDelta::hours(1);

/// A portfolio's messaging limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessagingLimit {
    /// At most this many unique users in a moving 24 h.
    Unique(u32),
    Unlimited,
}

impl MessagingLimit {
    /// The most unique users in a moving 24 h, if there is a most.
    pub fn unique(self) -> Option<u32> {
        match self {
            Self::Unique(n) => Some(n),
            Self::Unlimited => None,
        }
    }

    /// A limit as Meta's webhooks and Graph fields write it: `TIER_250`, `TIER_2K` (`TIER_1K` in
    /// older payloads), `TIER_UNLIMITED`, or a number (`2000`, with `-1` for unlimited).
    /// `TIER_NOT_SET` and anything else unknown say nothing: `None`.
    pub fn from_meta(text: &str) -> Option<Self> {
        let text = text.trim();
        if let Ok(n) = text.parse::<i64>() {
            return match n {
                -1 => Some(Self::Unlimited),
                1.. => u32::try_from(n).ok().map(Self::Unique),
                _ => None,
            };
        }
        let tier = text.strip_prefix("TIER_").or_else(|| text.strip_prefix("tier_"))?;
        match tier.to_ascii_uppercase().as_str() {
            "UNLIMITED" => Some(Self::Unlimited),
            "NOT_SET" => None,
            other => count(other).map(Self::Unique),
        }
    }
}

/// `250`, `2K`, `10k`, `100K`: a count with an optional `K` for thousands.
fn count(text: &str) -> Option<u32> {
    let (digits, scale) = match text.strip_suffix(['K', 'k']) {
        Some(digits) => (digits, 1_000),
        None => (text, 1),
    };
    digits.parse::<u32>().ok().and_then(|n| n.checked_mul(scale)).filter(|n| *n > 0)
}

impl FromStr for MessagingLimit {
    type Err = String;

    /// `MESSAGING_LIMIT`'s values: `250`, `2000` or `2k`, `10k`, `100k`, `unlimited`, or Meta's
    /// own `TIER_250` style.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("unlimited") {
            return Ok(Self::Unlimited);
        }
        count(trimmed)
            .map(Self::Unique)
            .or_else(|| Self::from_meta(trimmed))
            .ok_or_else(|| format!("{text:?} is not a messaging limit (250, 2k, 10k, 100k, unlimited or off)"))
    }
}

impl fmt::Display for MessagingLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unique(n) => write!(f, "{n} unique users a day"),
            Self::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// The limit Meta last reported for the portfolio, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedLimit {
    pub limit: MessagingLimit,
    pub at: DateTime<Utc>,
}

/// The limit that applies: the one Meta last reported, or else the configured one.
pub fn effective(configured: MessagingLimit, reported: Option<ReportedLimit>) -> MessagingLimit {
    reported.map_or(configured, |reported| reported.limit)
}

/// The index of the bucket `at` falls in.
pub fn bucket_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(BUCKET.num_seconds())
}

/// When the contacts of `bucket` stop counting.
fn expiry(bucket: i64) -> DateTime<Utc> {
    DateTime::UNIX_EPOCH + BUCKET * (i32::try_from(bucket + 1).unwrap_or(i32::MAX)) + WINDOW + MARGIN
}

/// The count of contacts, bucket by bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub buckets: BTreeMap<i64, u32>,
}

/// Whether a contact may be taken now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// There is room: count the contact in `bucket`, as long as that bucket holds fewer than
    /// `capacity` (the limit less what the other buckets still count).
    Free { bucket: i64, capacity: u32 },
    /// The limit is reached until then, when enough contacts stop counting.
    FullUntil(DateTime<Utc>),
}

impl Ledger {
    /// The buckets that still count at `now`, oldest first.
    fn live(&self, now: DateTime<Utc>) -> impl Iterator<Item = (i64, u32)> + '_ {
        self.buckets.iter().filter(move |(bucket, _)| expiry(**bucket) > now).map(|(b, n)| (*b, *n))
    }

    /// The contacts counted at `now`.
    pub fn used(&self, now: DateTime<Utc>) -> u64 {
        self.live(now).map(|(_, n)| u64::from(n)).sum()
    }

    /// Buckets that no longer count at `now`: the next write may remove them.
    pub fn stale(&self, now: DateTime<Utc>) -> Vec<i64> {
        self.buckets.keys().copied().filter(|bucket| expiry(*bucket) <= now).collect()
    }

    /// Whether a contact fits under `limit` at `now`, and if not, from when.
    pub fn room(&self, limit: u32, now: DateTime<Utc>) -> Room {
        let bucket = bucket_of(now);
        let used = self.used(now);
        if used < u64::from(limit) {
            let others = used - u64::from(self.buckets.get(&bucket).copied().unwrap_or(0));
            let capacity = u32::try_from(u64::from(limit).saturating_sub(others)).unwrap_or(u32::MAX);
            return Room::Free { bucket, capacity };
        }
        let mut left = used;
        for (bucket, n) in self.live(now) {
            left -= u64::from(n);
            if left < u64::from(limit) {
                return Room::FullUntil(expiry(bucket));
            }
        }
        // Every live bucket gone leaves nothing counted: the last one's end.
        Room::FullUntil(self.live(now).last().map_or(now, |(bucket, _)| expiry(bucket)))
    }

    /// The buckets next to `bucket`, with what they hold (0: none): what a racing caller, whose
    /// clock sits on the other side of a bucket's edge, could be writing.
    pub fn neighbours(&self, bucket: i64) -> [(i64, u32); 2] {
        [bucket - 1, bucket + 1].map(|next| (next, self.buckets.get(&next).copied().unwrap_or(0)))
    }

    /// Counts one contact in `bucket`.
    pub fn add(&mut self, bucket: i64) {
        *self.buckets.entry(bucket).or_default() += 1;
    }
}

/// Whether a send to `recipient` at `now` takes a place in the count: not when they wrote within
/// the customer-service window, nor when their place was taken within the last [`BUCKET`]. Meta
/// counts a user for 24 h from the latest message, so a send later than that needs a place that
/// lasts 24 h (and the margin) from now: the one taken earlier runs out too soon. (A user sent to
/// twice in a day is thus counted twice, which holds sends a little longer, never less.)
pub fn counts(recipient: &RecipientRecord, now: DateTime<Utc>) -> bool {
    let placed = recipient.contacted_at.is_some_and(|at| at <= now && now < at + BUCKET);
    !(placed || window_open(recipient.last_inbound_at, now))
}

/// A warm-up (`WARM_UP`): for a portfolio or number new to marketing, the share of the messaging
/// limit its marketing first attempts may take, day by day from `from` (10 % on the first day,
/// say, then 25 %, 50 %, …), so that it does not message its whole allowance of strangers on day
/// one. Retries, utility and authentication are not ramped; they count toward the limit as ever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmUp {
    pub from: DateTime<Utc>,
    /// The percentage of each day in turn; from the day after the last, the whole limit.
    pub ramp: Vec<u8>,
}

impl WarmUp {
    /// The ramp a warm-up takes unless told otherwise.
    pub const DEFAULT_RAMP: [u8; 4] = [10, 25, 50, 75];

    /// The percentage of the limit at `now`, while the ramp lasts (its first day's before `from`).
    pub fn share(&self, now: DateTime<Utc>) -> Option<u8> {
        let day = usize::try_from((now - self.from).num_days().max(0)).unwrap_or(usize::MAX);
        self.ramp.get(day).copied()
    }

    /// What marketing first attempts may fill of `limit` at `now`: at least one a day.
    pub fn cap(&self, limit: u32, now: DateTime<Utc>) -> u32 {
        match self.share(now) {
            Some(share) => u32::try_from(u64::from(limit) * u64::from(share) / 100).unwrap_or(limit).max(1),
            None => limit,
        }
    }
}

impl FromStr for WarmUp {
    type Err = String;

    /// `2026-12-01` (the default ramp) or `2026-12-01:10%,25%,50%`; a day is a date or an RFC 3339
    /// time.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (day, ramp) =
            match text.split_once(['/', ' ']).or_else(|| text.rsplit_once(':').filter(|(_, r)| r.contains('%'))) {
                Some((day, ramp)) => (day, Some(ramp)),
                None => (text, None),
            };
        let from = DateTime::parse_from_rfc3339(day)
            .map(|at| at.to_utc())
            .or_else(|_| {
                chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
                    .map(|date| date.and_time(chrono::NaiveTime::MIN).and_utc())
            })
            .map_err(|_| format!("{day:?} is not a date (2026-12-01) or an RFC 3339 time"))?;
        let ramp = match ramp {
            None => Self::DEFAULT_RAMP.to_vec(),
            Some(ramp) => ramp
                .split(',')
                .map(|step| {
                    let step = step.trim();
                    step.strip_suffix('%')
                        .and_then(|n| n.trim().parse::<u8>().ok())
                        .filter(|n| (1..=100).contains(n))
                        .ok_or_else(|| format!("{step:?} is not a percentage from 1% to 100%"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        if ramp.windows(2).any(|pair| pair[1] < pair[0]) {
            return Err(format!("the ramp {ramp:?} must not go down"));
        }
        Ok(Self { from, ramp })
    }
}

/// `WARM_UP`: the warm-ups configured. One without a number ramps the whole portfolio's marketing
/// first attempts against its count; one per number marked new (`<phone number id>@<warm-up>`)
/// ramps that number's against a count of its own, so that a new number in an established
/// portfolio does not message the portfolio's whole allowance of strangers on its first day,
/// while the portfolio's other numbers go on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WarmUps {
    pub portfolio: Option<WarmUp>,
    /// By phone number id.
    pub numbers: BTreeMap<String, WarmUp>,
}

impl WarmUps {
    /// The warm-up of number `phone_number_id`, if it is marked new.
    pub fn of_number(&self, phone_number_id: &str) -> Option<&WarmUp> {
        self.numbers.get(phone_number_id)
    }
}

impl FromStr for WarmUps {
    type Err = String;

    /// Warm-ups separated by `;`: `2026-12-01:10%,25%` for the portfolio (at most one), and
    /// `106540352242922@2026-12-01:10%,25%` for a number.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut warm_ups = Self::default();
        for entry in text.split(';').map(str::trim).filter(|entry| !entry.is_empty()) {
            match entry.split_once('@') {
                Some((number, warm_up)) => {
                    let number = number.trim();
                    // Not echoed: a phone number written where the id belongs stays out of the logs.
                    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) {
                        return Err("what comes before @ must be a phone number id (Meta's digits for the number, \
                            not the number itself)"
                            .to_owned());
                    }
                    if warm_ups.numbers.insert(number.to_owned(), warm_up.parse()?).is_some() {
                        return Err(format!("phone number id {number} has two warm-ups"));
                    }
                }
                None if warm_ups.portfolio.is_some() => {
                    return Err("two warm-ups for the portfolio: give the others a phone number id".to_owned());
                }
                None => warm_ups.portfolio = Some(entry.parse()?),
            }
        }
        Ok(warm_ups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).unwrap() + TimeDelta::minutes(minutes)
    }

    #[test]
    fn limits_read_as_configured_and_as_meta_writes_them() {
        assert_eq!("250".parse(), Ok(MessagingLimit::Unique(250)));
        assert_eq!("2k".parse(), Ok(MessagingLimit::Unique(2_000)));
        assert_eq!("100K".parse(), Ok(MessagingLimit::Unique(100_000)));
        assert_eq!("Unlimited".parse(), Ok(MessagingLimit::Unlimited));
        assert_eq!("TIER_10K".parse(), Ok(MessagingLimit::Unique(10_000)));
        assert!("0".parse::<MessagingLimit>().is_err());
        assert!("lots".parse::<MessagingLimit>().is_err());
        assert_eq!(MessagingLimit::from_meta("TIER_1K"), Some(MessagingLimit::Unique(1_000)));
        assert_eq!(MessagingLimit::from_meta("TIER_50"), Some(MessagingLimit::Unique(50)));
        assert_eq!(MessagingLimit::from_meta("TIER_UNLIMITED"), Some(MessagingLimit::Unlimited));
        assert_eq!(MessagingLimit::from_meta("-1"), Some(MessagingLimit::Unlimited));
        assert_eq!(MessagingLimit::from_meta("2000"), Some(MessagingLimit::Unique(2_000)));
        assert_eq!(MessagingLimit::from_meta("TIER_NOT_SET"), None);
        assert_eq!(MessagingLimit::from_meta("HIGH"), None);
    }

    #[test]
    fn a_contact_counts_for_a_day_an_hour_and_at_most_one_bucket_more() {
        let mut ledger = Ledger::default();
        ledger.add(bucket_of(t(5)));
        assert_eq!(ledger.used(t(5)), 1);
        assert_eq!(ledger.used(t(25 * 60)), 1, "a day and an hour after its bucket began");
        assert_eq!(ledger.used(t(25 * 60 + 14)), 1, "until then after its bucket's end");
        assert_eq!(ledger.used(t(25 * 60 + 15)), 0);
        assert_eq!(ledger.stale(t(25 * 60 + 15)), vec![bucket_of(t(5))]);
        assert!(ledger.stale(t(25 * 60)).is_empty());
    }

    #[test]
    fn a_full_ledger_has_room_again_when_its_oldest_contacts_stop_counting() {
        let mut ledger = Ledger::default();
        for _ in 0..2 {
            ledger.add(bucket_of(t(0)));
        }
        ledger.add(bucket_of(t(60)));
        assert_eq!(ledger.room(4, t(61)), Room::Free { bucket: bucket_of(t(61)), capacity: 2 });
        assert_eq!(ledger.room(3, t(61)), Room::FullUntil(t(25 * 60 + 15)));
        // Two must stop counting before a limit of 2 has room: both at the first bucket's end.
        assert_eq!(ledger.room(2, t(61)), Room::FullUntil(t(25 * 60 + 15)));
        assert_eq!(ledger.room(1, t(61)), Room::FullUntil(t(26 * 60 + 15)));
        assert_eq!(ledger.room(3, t(25 * 60 + 15)), Room::Free { bucket: bucket_of(t(25 * 60 + 15)), capacity: 2 });
        // The current bucket's own contacts are what the capacity leaves room for.
        let mut busy = Ledger::default();
        busy.add(bucket_of(t(61)));
        assert_eq!(busy.room(3, t(61)), Room::Free { bucket: bucket_of(t(61)), capacity: 3 });
    }

    #[test]
    fn a_recipient_takes_a_new_place_unless_just_placed_or_writing() {
        let fresh = RecipientRecord::default();
        assert!(counts(&fresh, t(0)));
        let counted = RecipientRecord { contacted_at: Some(t(0)), ..RecipientRecord::default() };
        assert!(!counts(&counted, t(14)), "the place just taken covers a day from now too");
        assert!(counts(&counted, t(15)), "later, Meta's day runs past that place");
        assert!(counts(&counted, t(23 * 60)));
        let wrote = RecipientRecord { last_inbound_at: Some(t(-60)), ..RecipientRecord::default() };
        assert!(!counts(&wrote, t(0)));
    }

    #[test]
    fn warm_ups_are_for_the_portfolio_or_for_numbers_marked_new() {
        let warm_ups: WarmUps = "2026-01-01:10%; 106540352242922@2026-01-02:20%,40% ;".parse().unwrap();
        assert_eq!(warm_ups.portfolio.as_ref().map(|w| w.ramp.clone()), Some(vec![10]));
        let number = warm_ups.of_number("106540352242922").unwrap();
        assert_eq!((number.from, number.ramp.clone()), (t(24 * 60), vec![20, 40]));
        assert_eq!(warm_ups.of_number("999"), None);
        let only_number: WarmUps = "42@2026-01-01".parse().unwrap();
        assert_eq!(only_number.portfolio, None);
        assert_eq!(only_number.of_number("42").map(|w| w.ramp.clone()), Some(WarmUp::DEFAULT_RAMP.to_vec()));
        let problem = "+91 98765 43210@2026-01-01".parse::<WarmUps>().unwrap_err();
        assert!(!problem.contains("98765"), "the number is not repeated: {problem}");
        for (text, says) in [
            ("2026-01-01; 2026-02-01", "two warm-ups for the portfolio"),
            ("42@2026-01-01; 42@2026-02-01", "two warm-ups"),
            ("+91 98@2026-01-01", "must be a phone number id"),
            ("42@soon", "not a date"),
        ] {
            let problem = text.parse::<WarmUps>().unwrap_err();
            assert!(problem.contains(says), "{text}: {problem}");
        }
    }

    #[test]
    fn a_warm_up_ramps_the_share_of_the_limit_day_by_day_then_leaves_it_whole() {
        let warm_up: WarmUp = "2026-01-01/10%,25%,50%".parse().unwrap();
        assert_eq!(warm_up.from, t(0));
        assert_eq!(warm_up.cap(250, t(0)), 25);
        assert_eq!(warm_up.cap(250, t(-60)), 25, "before it starts: its first day's");
        assert_eq!(warm_up.cap(250, t(24 * 60 + 1)), 62);
        assert_eq!(warm_up.cap(250, t(2 * 24 * 60)), 125);
        assert_eq!(warm_up.cap(250, t(3 * 24 * 60)), 250);
        assert_eq!(warm_up.cap(5, t(0)), 1, "at least one a day");
        let default: WarmUp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(default.ramp, WarmUp::DEFAULT_RAMP);
        assert!("2026-01-01/10%,5%".parse::<WarmUp>().is_err(), "a ramp that goes down");
        assert!("2026-01-01/0%".parse::<WarmUp>().is_err());
        assert!("soon".parse::<WarmUp>().is_err());
    }

    #[test]
    fn the_reported_limit_wins_over_the_configured_one() {
        let configured = MessagingLimit::Unique(250);
        assert_eq!(effective(configured, None), configured);
        let reported = ReportedLimit { limit: MessagingLimit::Unique(2_000), at: t(0) };
        assert_eq!(effective(configured, Some(reported)), MessagingLimit::Unique(2_000));
    }
}
