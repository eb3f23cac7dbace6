//! The messaging limit's place in a send: before a slot that nothing else stops goes out, its
//! recipient takes a place in the portfolio's count ([`crate::domain::limit`]), or the send waits
//! for the time the count has room again. One read of the count, one conditional write to count
//! the contact and one to note it on the recipient; nothing at all when `MESSAGING_LIMIT` is off,
//! the limit is unlimited, or the recipient needs no place (counted within 24 h, or writing to
//! the business within their window). With a warm-up (`WARM_UP`), a marketing first attempt may
//! fill only the day's share of the limit; from a number marked new, it also takes a place in
//! that number's own count, which may hold only the day's share of the limit (one read more, and
//! the two places taken in one transaction).
//!
//! A place is taken before the send call: a crash after it, or a call that then fails, leaves the
//! count one high until the place stops counting, which holds a send a little longer; it never
//! lets one more through than the limit.

use chrono::{DateTime, TimeDelta, Utc};

use super::{Deps, Tally, UseCaseError};
use crate::domain::admission::Candidate;
use crate::domain::limit::{MessagingLimit, ReportedLimit, Room, counts, effective};
use crate::domain::quality::BusinessNumber;
use crate::domain::rules::{Category, window_open};
use crate::domain::template::{TemplateRecord, TemplateReport};
use crate::store::{CountOf, Limits, Numbers, Place, RecipientRecord, Recipients, Templates};

/// How often a contact tries again when other callers filled the bucket it read as having room.
const TRIES: usize = 3;
/// How long a send waits when every try lost its race: the count is then read again.
const RACED: TimeDelta = TimeDelta::minutes(1);

/// Whether `candidate` is what a warm-up ramps: a marketing first attempt.
fn ramped(candidate: &Candidate) -> bool {
    candidate.category == Category::Marketing && candidate.attempt == 1
}

/// Takes `candidate`'s recipient a place in the messaging limit's count, or says until when the
/// send must wait for one. `recipient` is their record when the caller has read it.
/// `share`, when given, is the percentage of the limit a slowed send may fill (a YELLOW number's
/// marketing, [`crate::domain::quality`]).
pub async fn contact<S: Limits + Recipients, R, C>(
    deps: &Deps<S, R, C>,
    candidate: &Candidate<'_>,
    recipient: Option<&RecipientRecord>,
    share: Option<u8>,
    tally: &mut Tally,
) -> Result<Option<DateTime<Utc>>, UseCaseError> {
    let Some(configured) = deps.rules.messaging_limit else { return Ok(None) };
    let mut now = deps.clock.now();
    let read;
    let recipient = match recipient {
        Some(recipient) => recipient,
        None => {
            read = deps.store.recent_recipient(candidate.recipient).await?;
            &read
        }
    };
    // A number marked new (`WARM_UP`) keeps its ramped sends to a count of its own as well, where
    // a recipient counts unless they are writing to the business: another number's place does not
    // stand for this number's.
    let warming = deps.rules.warm_up.of_number(candidate.phone_number_id).filter(|_| ramped(candidate));
    let warming = warming.filter(|_| !window_open(recipient.last_inbound_at, now));
    let in_portfolio = counts(recipient, now);
    if !in_portfolio && warming.is_none() {
        return Ok(None);
    }
    for _ in 0..TRIES {
        let count = deps.store.messaging_count(CountOf::Portfolio).await?;
        // Each try reads the clock again: a bucket's edge may have passed since the last.
        now = deps.clock.now();
        let Some(whole) = effective(configured, count.reported).unique() else { return Ok(None) };
        let slowed = |limit: u32| match share {
            Some(share) => u32::try_from(u64::from(limit) * u64::from(share) / 100).unwrap_or(limit).max(1),
            None => limit,
        };
        let mut places = Vec::with_capacity(2);
        if in_portfolio {
            // A portfolio's warm-up ramps what a marketing first attempt may fill of the limit.
            let ramp = deps.rules.warm_up.portfolio.as_ref().filter(|_| ramped(candidate));
            let limit = slowed(ramp.map_or(whole, |warm_up| warm_up.cap(whole, now)));
            match count.ledger.room(limit, now) {
                Room::FullUntil(until) => {
                    tally.add("held_for_messaging_limit");
                    return Ok(Some(until));
                }
                Room::Free { bucket, capacity } => {
                    places.push(Place::in_ledger(CountOf::Portfolio, &count.ledger, bucket, capacity, now));
                }
            }
        }
        if let Some(warm_up) = warming {
            let of = CountOf::WarmUp(candidate.phone_number_id);
            let own = deps.store.messaging_count(of).await?;
            match own.ledger.room(slowed(warm_up.cap(whole, now)), now) {
                Room::FullUntil(until) => {
                    tally.add("held_for_warm_up");
                    return Ok(Some(until));
                }
                Room::Free { bucket, capacity } => {
                    places.push(Place::in_ledger(of, &own.ledger, bucket, capacity, now))
                }
            }
        }
        // Every place or none: a lost race for one leaves the other untaken too.
        if deps.store.count_contact(&places, now).await? {
            if in_portfolio {
                deps.store.record_contact(candidate.recipient, now).await?;
            }
            tally.add("messaging_limit_contacts");
            return Ok(None);
        }
    }
    tally.add("held_for_messaging_limit");
    Ok(Some(now + RACED))
}

/// How the limits the account sends under stand, for an operator (`capguard limit`, serve's `GET
/// /limit`): the messaging limit and its count, each business number's quality rating, and each
/// template's status and quality.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LimitView {
    /// `MESSAGING_LIMIT`; `None` when off (nothing is counted).
    pub configured: Option<MessagingLimit>,
    /// What Meta last reported, which replaces the configured limit.
    pub reported: Option<ReportedLimit>,
    /// The limit sends are kept to now, if any.
    pub applies: Option<MessagingLimit>,
    /// Unique users counted in the moving 24 h.
    pub counted: u64,
    /// When a full count has room again.
    pub room_at: Option<DateTime<Utc>>,
    /// While the portfolio's warm-up ramps (`WARM_UP`): the percentage of the limit marketing
    /// first attempts may fill today.
    pub warm_up_share: Option<u8>,
    /// The numbers marked new (`WARM_UP`), each with its count and today's share.
    pub warming_numbers: Vec<WarmingNumber>,
    /// The business numbers, each with the quality ratings Meta reported.
    pub numbers: Vec<BusinessNumber>,
    /// The templates Meta reported on, each with its status and quality history.
    pub templates: Vec<TemplateRecord>,
}

/// A number marked new, as its warm-up stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WarmingNumber {
    pub phone_number_id: String,
    /// The percentage of the limit its marketing first attempts may reach today; `None` once its
    /// ramp is over.
    pub share: Option<u8>,
    /// How many users those reach in a moving 24 h, and how many they may.
    pub counted: u64,
    pub cap: Option<u32>,
}

/// The view at `now`.
pub async fn view<S: Limits + Numbers + Templates>(
    store: &S,
    rules: &crate::domain::verdict::Rules,
    now: DateTime<Utc>,
) -> Result<LimitView, crate::store::StoreError> {
    let configured = rules.messaging_limit;
    let count = store.messaging_count(CountOf::Portfolio).await?;
    let applies = configured.map(|configured| effective(configured, count.reported));
    let room_at = match applies.and_then(MessagingLimit::unique).map(|limit| count.ledger.room(limit, now)) {
        Some(Room::FullUntil(at)) => Some(at),
        _ => None,
    };
    let warm_up_share =
        rules.warm_up.portfolio.as_ref().filter(|_| applies.is_some()).and_then(|warm_up| warm_up.share(now));
    let mut warming_numbers = Vec::new();
    for (phone_number_id, warm_up) in rules.warm_up.numbers.iter().filter(|_| applies.is_some()) {
        let own = store.messaging_count(CountOf::WarmUp(phone_number_id)).await?;
        let cap = applies.and_then(MessagingLimit::unique).map(|whole| warm_up.cap(whole, now));
        let (share, counted) = (warm_up.share(now), own.ledger.used(now));
        warming_numbers.push(WarmingNumber { phone_number_id: phone_number_id.clone(), share, counted, cap });
    }
    let counted = count.ledger.used(now);
    let mut numbers = store.business_numbers().await?;
    numbers.sort_by(|a, b| a.display.cmp(&b.display));
    // Numbers are masked in every view.
    for number in &mut numbers {
        number.display = crate::privacy::mask_number(&number.display);
    }
    let mut templates = store.templates().await?;
    templates.sort_by(|a, b| (&a.name, &a.language).cmp(&(&b.name, &b.language)));
    Ok(LimitView {
        configured,
        reported: count.reported,
        applies,
        counted,
        room_at,
        warm_up_share,
        warming_numbers,
        numbers,
        templates,
    })
}

impl LimitView {
    /// The view as an operator reads it.
    pub fn text(&self) -> String {
        let reported = |r: &ReportedLimit| format!("{}, reported by Meta {}", r.limit, crate::report::rfc3339(r.at));
        let mut out = match (self.applies, &self.reported, self.configured) {
            (None, Some(r), _) => {
                format!("messaging limit: not kept (MESSAGING_LIMIT is off); Meta reported {}\n", reported(r))
            }
            (None, None, _) => "messaging limit: not kept (MESSAGING_LIMIT is off)\n".to_owned(),
            (Some(_), Some(r), Some(configured)) => {
                format!("messaging limit: {} (configured: {configured})\n", reported(r))
            }
            (Some(applies), _, _) => format!("messaging limit: {applies}, as configured\n"),
        };
        out.push_str(&format!("counted in the moving 24 h: {}\n", self.counted));
        if let Some(share) = self.warm_up_share {
            out.push_str(&format!("warm-up: marketing first attempts may fill {share}% of it today\n"));
        }
        if let Some(at) = self.room_at {
            out.push_str(&format!("full: room again at {}\n", crate::report::rfc3339(at)));
        }
        for warming in &self.warming_numbers {
            let id = &warming.phone_number_id;
            out.push_str(&match (warming.share, warming.cap) {
                (Some(share), Some(cap)) => format!(
                    "warm-up of number {id}: its marketing first attempts may reach {cap} users today ({share}% of the limit), {} so far\n",
                    warming.counted
                ),
                (Some(share), None) => format!("warm-up of number {id}: {share}% today, of an unlimited limit: nothing is ramped\n"),
                (None, _) => format!("warm-up of number {id}: over, the whole limit\n"),
            });
        }
        for number in &self.numbers {
            let id = number.phone_number_id.as_deref().unwrap_or("id not known yet");
            let rating = match &number.quality {
                Some(report) => format!("rated {} since {}", report.rating, crate::report::rfc3339(report.at)),
                None => "no rating reported".to_owned(),
            };
            out.push_str(&format!("number {} ({id}): {rating}\n", number.display));
            for report in &number.history {
                let event = report.event.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
                out.push_str(&format!("  {} {}{event}\n", crate::report::rfc3339(report.at), report.rating));
            }
        }
        for template in &self.templates {
            let value =
                |report: Option<&TemplateReport>| report.map_or("not reported", |r| r.value.as_str()).to_owned();
            out.push_str(&format!(
                "template {} ({}): status {}, quality {}\n",
                template.name,
                template.language,
                value(template.status.as_ref()),
                value(template.quality.as_ref())
            ));
            for report in &template.history {
                let title = report.title.as_deref().map(|t| format!(" ({t})")).unwrap_or_default();
                let at = crate::report::rfc3339(report.at);
                out.push_str(&format!("  {at} {} {}{title}\n", report.field.as_str(), report.value));
            }
        }
        out
    }
}
