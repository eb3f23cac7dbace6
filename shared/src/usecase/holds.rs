//! Holds: setting one when a failure calls for it, lifting it (a template webhook, an accepted
//! probe, an operator), and the operator's view of them all. [`crate::domain::hold`] decides; this
//! module does the I/O. Which hold keeps a send is admission's question ([`super::admission`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Deps, Tally, UseCaseError};
use crate::domain::hold::{Hold, HoldKey, HoldLimits};
use crate::outcome::{Outcome, OutcomeKind, Outcomes};
use crate::store::Holds;

/// Sets a hold unless one is in place (the first one's age is what counts). Returns whether it
/// was set.
pub async fn set<S: Holds, R, C>(
    deps: &Deps<S, R, C>,
    key: &HoldKey,
    code: i64,
    at: DateTime<Utc>,
) -> Result<bool, UseCaseError> {
    if deps.store.get_hold(key).await?.is_some() {
        return Ok(false);
    }
    deps.store.set_hold(key, Some(deps.rules.holds.hold(code, at)), deps.clock.now()).await?;
    deps.outcomes.emit(Outcome::of_hold(OutcomeKind::SendsHeld, key, at).with_code(code));
    Ok(true)
}

/// Lifts a hold, counted under `holds_lifted_<why>`. Its held sends go out at their next look (at
/// most the probe interval, `HOLD_PROBE_EVERY`, away). Returns whether there was one.
pub async fn lift<S: Holds, R, C>(
    deps: &Deps<S, R, C>,
    key: &HoldKey,
    why: &str,
    tally: &mut Tally,
) -> Result<bool, UseCaseError> {
    lift_in(&deps.store, &deps.outcomes, key, why, deps.clock.now(), tally).await
}

/// [`lift`] on a store alone: what an operator's command does (its event, if any, in
/// `outcomes`).
pub async fn lift_in<S: Holds>(
    store: &S,
    outcomes: &Outcomes,
    key: &HoldKey,
    why: &str,
    now: DateTime<Utc>,
    tally: &mut Tally,
) -> Result<bool, UseCaseError> {
    if store.get_hold(key).await?.is_none() {
        return Ok(false);
    }
    store.set_hold(key, None, now).await?;
    tally.add(format!("holds_lifted_{why}"));
    outcomes.emit(Outcome::of_hold(OutcomeKind::HoldLifted, key, now).with_reason(why));
    Ok(true)
}

/// Lifts every hold on template `name` in `language`, whichever number it was held on (Meta's
/// template webhook names no number). Returns how many were lifted.
pub async fn lift_template<S: Holds, R, C>(
    deps: &Deps<S, R, C>,
    name: &str,
    language: &str,
    tally: &mut Tally,
) -> Result<usize, UseCaseError> {
    let mut lifted = 0;
    for (key, _) in deps.store.list_holds().await? {
        if key.is_template(name, language) && lift(deps, &key, "by_webhook", tally).await? {
            lifted += 1;
        }
    }
    Ok(lifted)
}

/// What an operator names to lift a hold: a number, and for a template hold the template's name
/// and language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldTarget {
    pub phone_number_id: String,
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
}

/// A [`HoldTarget`] that names no hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadHoldTarget {
    #[error("phone_number_id is required")]
    NoNumber,
    #[error("a template hold needs both template and language")]
    HalfATemplate,
}

impl HoldTarget {
    pub fn key(&self) -> Result<HoldKey, BadHoldTarget> {
        let phone_number_id = self.phone_number_id.trim();
        if phone_number_id.is_empty() {
            return Err(BadHoldTarget::NoNumber);
        }
        match (&self.template, &self.language) {
            (None, None) => Ok(HoldKey::sender(phone_number_id)),
            (Some(name), Some(language)) => Ok(HoldKey::template(phone_number_id, name, language)),
            _ => Err(BadHoldTarget::HalfATemplate),
        }
    }
}

/// A hold as the operator sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HoldView {
    pub kind: &'static str,
    pub phone_number_id: String,
    pub template: Option<String>,
    pub language: Option<String>,
    pub code: i64,
    pub since: DateTime<Utc>,
    pub age_seconds: i64,
    pub next_probe: DateTime<Utc>,
    /// Older than the alarm age.
    pub too_old: bool,
    /// When its held sends end as `held_too_long`.
    pub gives_up_at: DateTime<Utc>,
    pub lifted_by: &'static str,
}

impl HoldView {
    fn of(key: &HoldKey, hold: &Hold, limits: &HoldLimits, now: DateTime<Utc>) -> Self {
        let (phone_number_id, template, language) = match key {
            HoldKey::Sender { phone_number_id } => (phone_number_id.clone(), None, None),
            HoldKey::Template { phone_number_id, name, language } => {
                (phone_number_id.clone(), Some(name.clone()), Some(language.clone()))
            }
        };
        Self {
            kind: key.kind(),
            phone_number_id,
            template,
            language,
            code: hold.code,
            since: hold.since,
            age_seconds: hold.age(now).num_seconds(),
            next_probe: hold.probe_at,
            too_old: limits.too_old(hold, now),
            gives_up_at: hold.since + limits.give_up_after,
            lifted_by: key.lifted_by(),
        }
    }
}

/// Every hold in place, the oldest first.
pub async fn list<S: Holds>(store: &S, limits: &HoldLimits, now: DateTime<Utc>) -> Result<Vec<HoldView>, UseCaseError> {
    let mut holds = store.list_holds().await?;
    holds.sort_by(|(a_key, a), (b_key, b)| (a.since, a_key).cmp(&(b.since, b_key)));
    Ok(holds.iter().map(|(key, hold)| HoldView::of(key, hold, limits, now)).collect())
}

/// Counts the holds in place into `tally` as gauges, for the alarms that must stay raised while a
/// hold lasts: `holds_open`, `senders_halted_now`, `holds_too_old`.
pub async fn survey<S: Holds, R, C>(deps: &Deps<S, R, C>, tally: &mut Tally) -> Result<(), UseCaseError> {
    let now = deps.clock.now();
    let holds = deps.store.list_holds().await?;
    let count = |keep: &dyn Fn(&(HoldKey, Hold)) -> bool| holds.iter().filter(|h| keep(h)).count() as u64;
    tally.set("holds_open", holds.len() as u64);
    tally.set("senders_halted_now", count(&|(key, _)| matches!(key, HoldKey::Sender { .. })));
    tally.set("holds_too_old", count(&|(_, hold)| deps.rules.holds.too_old(hold, now)));
    Ok(())
}
