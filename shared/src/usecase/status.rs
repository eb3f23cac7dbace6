//! Applying one status report to the send it belongs to: shared by intake (a webhook's status)
//! and by sending (statuses that were parked under a wamid until its send call's answer linked
//! it).
//!
//! A status moves its send forward, or fails it and the verdict plans what follows. Its recipient
//! side effects come first (the marketing delivery for the frequency cap, the read for the
//! engagement tier, the cap count), each idempotent on its own, so that a crash between them and
//! the send's own write loses nothing when the status is applied again. A status that the send as read shows to be old news writes
//! nothing at all.

use chrono::{DateTime, Utc};

use super::sending::{CALL_FAILED_CODE, judge, record_verdict};
use super::{Deps, Tally, UseCaseError};
use crate::cloud::CloudApi;
use crate::domain::lifecycle::{Delivery, Effect, Input, Phase};
use crate::domain::rules::Category;
use crate::domain::verdict::{Decision, FinalReason, Verdict};
use crate::outcome::{Outcome, OutcomeKind};
use crate::schedule::RetryScheduler;
use crate::store::{RecordedError, SendRecord, SendStore, StatusReport, StatusUpdate, WamidLink};
use crate::whatsapp::events::StatusEvent;
use crate::whatsapp::webhook::StatusKind;

impl StatusUpdate {
    /// What a status webhook reports, if it reports anything a send needs (`sent`, `delivered`,
    /// `read`, `played`, `failed`); `now` stands in for a timestamp Meta left out.
    pub fn of(status: &StatusEvent, now: DateTime<Utc>) -> Option<Self> {
        let report = match &status.status {
            StatusKind::Sent => StatusReport::Reached(Delivery::Sent),
            StatusKind::Delivered => StatusReport::Reached(Delivery::Delivered),
            StatusKind::Read | StatusKind::Played => StatusReport::Reached(Delivery::Read),
            StatusKind::Failed => StatusReport::Failed(
                status.errors.first().map(|e| RecordedError { code: e.code, title: e.title.map(str::to_owned) }),
            ),
            StatusKind::Other(_) => return None,
        };
        Some(Self { at: status.timestamp.to_datetime().unwrap_or(now), report })
    }
}

/// Applies `update` to the send `link` names, as `send` was last read; returns the send as it
/// now is.
pub async fn apply_status<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    link: &WamidLink,
    send: &SendRecord,
    update: &StatusUpdate,
    tally: &mut Tally,
) -> Result<SendRecord, UseCaseError> {
    let (slot, at) = (link.slot, update.at);
    let delivery = match &update.report {
        StatusReport::Failed(Some(error)) => {
            let decision = judge(deps, send, slot, error.code, at).await?;
            return record_verdict(deps, send, slot, error, decision, at, tally).await;
        }
        StatusReport::Failed(None) => {
            let error = RecordedError { code: CALL_FAILED_CODE, title: Some("failed without an error code".into()) };
            let decision = Decision::own(Verdict::Final(FinalReason::FailedWithoutCode));
            return record_verdict(deps, send, slot, &error, decision, at, tally).await;
        }
        StatusReport::Reached(delivery) => *delivery,
    };
    let succeeded = |send: &SendRecord| matches!(send.life.phase, Phase::Succeeded { .. });
    // The message reached the recipient whatever becomes of the status write (even one for a
    // send settled meanwhile): it counts toward our frequency cap (once per send), and it counts
    // before the write, or in the same one.
    let counts = delivery.is_success() && send.category == Category::Marketing && !succeeded(send);
    let mut preview = send.life;
    let unchanged = slot <= send.life.slot && preview.apply(Input::Status(slot, delivery)) == Effect::Unchanged;
    // The recipient read it: their engagement tier, whatever becomes of the status write (a read
    // of an earlier attempt, or of a send settled meanwhile, is a read all the same). Once per
    // send and slot (a read the send already shows is old news), and before the send's own
    // write, so a redelivered status that finds the send unchanged has nothing left to record.
    let already_read = slot == send.life.slot && send.life.phase == (Phase::Succeeded { delivery: Delivery::Read });
    if delivery == Delivery::Read && !already_read {
        deps.store.record_read(&send.recipient, at).await?;
    }
    let updated = match (counts, unchanged) {
        (true, true) => {
            deps.store.record_marketing_delivery(&send.recipient, &send.id, at).await?;
            None
        }
        (true, false) => deps.store.record_marketing_status(&send.recipient, &send.id, slot, delivery, at).await?,
        (false, true) => None,
        (false, false) => deps.store.record_status(&send.id, slot, delivery, at).await?,
    };
    let Some(updated) = updated else {
        return Ok(send.clone());
    };
    if delivery.is_success() && !succeeded(send) && succeeded(&updated) {
        tally.add("delivered");
        if slot.attempt > 1 {
            tally.add(format!("recovered_attempt_{}", slot.attempt));
            deps.outcomes.emit(Outcome::of_send(OutcomeKind::SendRecovered, &updated, slot.attempt, at));
        }
    }
    if delivery == Delivery::Read {
        tally.add("read");
    }
    Ok(updated)
}
