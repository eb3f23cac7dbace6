//! Quality ratings in a send's path ([`crate::domain::quality`]): which business number a display
//! number is (learnt from webhooks, whose metadata names both), the rating Meta last reported for
//! each, and what it does to a marketing first attempt: nothing, a slower pace, or a wait.
//!
//! The ratings are read for marketing first attempts only, from a list of the numbers that each
//! process keeps for [`FRESH_FOR`] of wall time (one Query of a handful of items), and forgets at
//! once when it takes a rating itself: a RED reported to one Lambda instance reaches the others'
//! sends within that time.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{Deps, Tally, UseCaseError};
use crate::domain::admission::Candidate;
use crate::domain::quality::{BusinessNumber, QualityEffect, QualityRating, QualityReport, effect, turns};
use crate::domain::rules::Category;
use crate::store::Numbers;

/// How long a process trusts the numbers it read.
pub const FRESH_FOR: Duration = Duration::from_secs(30);

/// What a process knows of the business numbers: the list as last read, and the display numbers
/// it has already recorded (each is written once per process).
#[derive(Debug, Default)]
pub struct NumberBook {
    read: Mutex<Option<(Instant, Arc<Vec<BusinessNumber>>)>>,
    learnt: Mutex<HashSet<(String, String, String)>>,
}

impl NumberBook {
    fn fresh(&self) -> Option<Arc<Vec<BusinessNumber>>> {
        let read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        read.as_ref().filter(|(at, _)| at.elapsed() < FRESH_FOR).map(|(_, numbers)| Arc::clone(numbers))
    }

    fn keep(&self, numbers: Arc<Vec<BusinessNumber>>) {
        *self.read.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), numbers));
    }

    fn forget(&self) {
        *self.read.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// The rating Meta last reported for `phone_number_id`, if capguard knows one.
pub async fn rating_of<S: Numbers, R, C>(
    deps: &Deps<S, R, C>,
    phone_number_id: &str,
) -> Result<Option<QualityRating>, UseCaseError> {
    let numbers = match deps.numbers.fresh() {
        Some(numbers) => numbers,
        None => {
            let numbers = Arc::new(deps.store.business_numbers().await?);
            deps.numbers.keep(Arc::clone(&numbers));
            numbers
        }
    };
    Ok(numbers
        .iter()
        .find(|number| number.phone_number_id.as_deref() == Some(phone_number_id))
        .and_then(|number| number.quality.as_ref())
        .map(|report| report.rating))
}

/// What its number's rating does to `candidate` (read only for a marketing first attempt).
pub async fn effect_on<S: Numbers, R, C>(
    deps: &Deps<S, R, C>,
    candidate: &Candidate<'_>,
) -> Result<QualityEffect, UseCaseError> {
    if candidate.category != Category::Marketing || candidate.attempt != 1 {
        return Ok(QualityEffect::None);
    }
    let rating = rating_of(deps, candidate.phone_number_id).await?;
    Ok(effect(rating, candidate.category, candidate.attempt, deps.rules.yellow_share))
}

/// Paces a slowed send to its share of the number's rate: before its own turn it takes that many
/// turns of a pace kept for the number's slowed sends alone (`<number>#slowed`), so that the
/// number's other sends (utility, authentication, retries) are not kept waiting behind them.
pub async fn slow_down<S, R, C>(deps: &Deps<S, R, C>, phone_number_id: &str, effect: QualityEffect) {
    if let QualityEffect::Slow { share } = effect {
        let slowed = format!("{phone_number_id}#slowed");
        for _ in 0..turns(share) {
            deps.throttle.turn(&slowed).await;
        }
    }
}

/// A business number as a webhook names it: display number, phone number id, WABA.
pub type NumberSeen<'a> = (&'a str, &'a str, &'a str);

/// Records which number and WABA each display number in a webhook is, once per process.
pub async fn learn<S: Numbers, R, C>(
    deps: &Deps<S, R, C>,
    seen: &[NumberSeen<'_>],
    now: DateTime<Utc>,
) -> Result<(), UseCaseError> {
    for (display, phone_number_id, waba_id) in seen {
        let known = ((*display).to_owned(), (*phone_number_id).to_owned(), (*waba_id).to_owned());
        if deps.numbers.learnt.lock().unwrap_or_else(PoisonError::into_inner).contains(&known) {
            continue;
        }
        deps.store.learn_number(display, phone_number_id, waba_id, now).await?;
        deps.numbers.forget();
        deps.numbers.learnt.lock().unwrap_or_else(PoisonError::into_inner).insert(known);
    }
    Ok(())
}

/// Records a rating Meta reported for `display`.
pub async fn report<S: Numbers, R, C>(
    deps: &Deps<S, R, C>,
    display: &str,
    report: &QualityReport,
    now: DateTime<Utc>,
    tally: &mut Tally,
) -> Result<(), UseCaseError> {
    if deps.store.report_quality(display, report, now).await? {
        tally.add(format!("numbers_rated_{}", report.rating.as_str().to_ascii_lowercase()));
        if report.rating == QualityRating::Red {
            let number = crate::privacy::mask_number(display);
            tracing::warn!(%number, "a business number was rated RED: its marketing first attempts wait");
        }
    }
    deps.numbers.forget();
    Ok(())
}

/// Counts the numbers rated RED and YELLOW now into `tally` as gauges, for the alarm that must
/// stay raised while a number is RED: `numbers_red_now`, `numbers_yellow_now`.
pub async fn survey<S: Numbers, R, C>(deps: &Deps<S, R, C>, tally: &mut Tally) -> Result<(), UseCaseError> {
    let numbers = deps.store.business_numbers().await?;
    let rated = |rating| numbers.iter().filter(|n| n.quality.as_ref().is_some_and(|q| q.rating == rating)).count();
    tally.set("numbers_red_now", rated(QualityRating::Red) as u64);
    tally.set("numbers_yellow_now", rated(QualityRating::Yellow) as u64);
    Ok(())
}
