//! Retry: something asks a send to move on (its timer fired, a sweep found it overdue, its send
//! request came again), and [`drive`] looks at the send as stored and does what its state says is
//! due: a waiting send whose time has come is claimed and sent; a claimed send whose outcome
//! stayed unknown past its wait is settled as `outcome_unknown`; a message Meta accepted and has
//! not delivered by its claim's due time is awaited until its time-to-live runs out, and settled
//! as `undelivered` if nothing was reported by then. A send with nothing due yet keeps its timer
//! (set again if it was lost), and a finished send is left alone.
//!
//! The timer's own slot says nothing here: a duplicate or stale firing drives the send as it now
//! is, and the claim lets one caller send a slot, never two. A held template or halted sender
//! keeps the send waiting without using the attempt, until the hold's probe or its end.

use chrono::{DateTime, TimeDelta, Utc};

use super::admission::admission;
use super::holds;
use super::limit::contact;
use super::quality::{effect_on, slow_down};
use super::sending::{CALL_FAILED_CODE, SlotOutcome, claim_and_send, ensure_timer, record_verdict};
use super::{Deps, Tally, UseCaseError};
use crate::cloud::CloudApi;
use crate::domain::admission::{Admission, Candidate};
use crate::domain::hold::{HeldStep, Hold, HoldKey, held_step};
use crate::domain::lifecycle::Phase;
use crate::domain::quality::QualityEffect;
use crate::domain::verdict::{Decision, FinalReason, Verdict};
use crate::outcome::Outcome;
use crate::schedule::{RetryJob, RetryScheduler};
use crate::store::{RecordedError, SendRecord, SendStore};

/// How early a prompt may come and still count as on time. EventBridge Scheduler's `at()` is
/// whole seconds, so a timer can fire a fraction of a second before the exact due time; a minute
/// is nothing beside the ladder's hours and the outcome wait's minutes.
pub const EARLY: TimeDelta = TimeDelta::minutes(1);

/// What a firing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOutcome {
    /// The slot was claimed and sent.
    Sent(SlotOutcome),
    /// Nothing to do, and why.
    Skipped(Skip),
    /// The sender or template is held, its number is rated RED, or the messaging limit is full:
    /// the send waits for its next look, attempt unused.
    Held,
    /// A ladder retry came due in the recipient's night: it waits for their morning, attempt
    /// unused.
    Morning,
    /// A send whose outcome stayed unknown, whose message was never reported on, or whose hold
    /// lasted too long, was settled.
    Settled,
    /// A message Meta accepted was not delivered by its claim's due time: it is looked at again
    /// when no status can come any more.
    Awaiting,
}

/// Why a firing did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    /// No such send (never recorded, or expired).
    UnknownSend,
    /// The send has ended.
    Finished,
    /// Nothing is due yet: an early, duplicate or stale firing.
    NotDue,
    /// Another caller claimed the slot first.
    AlreadyClaimed,
    /// The recipient opted out meanwhile; the send ended.
    OptedOut,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryReport {
    pub outcome: RetryOutcome,
    pub tally: Tally,
}

/// Handles one timer firing.
pub async fn retry<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    job: &RetryJob,
) -> Result<RetryReport, UseCaseError> {
    let mut tally = Tally::default();
    let outcome = match deps.store.get_send(&job.send_id).await? {
        None => RetryOutcome::Skipped(Skip::UnknownSend),
        Some(send) => drive(deps, &send, &mut tally).await?,
    };
    Ok(RetryReport { outcome, tally })
}

/// Moves `send` (as just read) on if its next step is due, and otherwise makes sure it will be.
pub async fn drive<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    send: &SendRecord,
    tally: &mut Tally,
) -> Result<RetryOutcome, UseCaseError> {
    let now = deps.clock.now();
    let due_now = |due: DateTime<Utc>| due <= now + EARLY;
    match send.life.phase {
        Phase::Succeeded { .. } | Phase::Final { .. } => Ok(RetryOutcome::Skipped(Skip::Finished)),
        Phase::Waiting { due } if due_now(due) => fire(deps, send, now, tally).await,
        Phase::Waiting { .. } => {
            ensure_timer(deps, send, tally).await;
            Ok(RetryOutcome::Skipped(Skip::NotDue))
        }
        // Not while this process is still making the call (the clock can outrun the wall).
        Phase::Claimed { due } if due_now(due) && !deps.busy.is_busy(&send.id) => {
            settle(deps, send, FinalReason::OutcomeUnknown, "no answer from the send call and no webhook", tally).await
        }
        Phase::InFlight { due, .. } if due_now(due) => {
            let deadline = send.delivery_deadline();
            if due_now(deadline) {
                let why = "no delivery reported within the message's lifetime";
                return settle(deps, send, FinalReason::Undelivered, why, tally).await;
            }
            // Refused when a status or another look moved the send on meanwhile: nothing was due.
            if deps.store.await_delivery(&send.id, send.life.slot, deadline, now).await?.is_none() {
                return Ok(RetryOutcome::Skipped(Skip::NotDue));
            }
            tally.add("deliveries_awaited");
            Ok(RetryOutcome::Awaiting)
        }
        Phase::Claimed { .. } | Phase::InFlight { .. } => Ok(RetryOutcome::Skipped(Skip::NotDue)),
    }
}

/// A waiting send whose time has come: unless its admission refuses it (its recipient opted out
/// meanwhile), a hold keeps it or the messaging limit is full until later, its slot is claimed and
/// sent.
async fn fire<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    send: &SendRecord,
    now: DateTime<Utc>,
    tally: &mut Tally,
) -> Result<RetryOutcome, UseCaseError> {
    let slot = send.life.slot;
    match admission(deps, &Candidate::due(send)).await? {
        Admission::Refuse(reason) => {
            if deps.store.finish_waiting(&send.id, reason, now).await?.is_some() {
                tally.add("retries_cancelled");
                if let Some(outcome) = Outcome::ended_after_cap(send, reason, false, now) {
                    deps.outcomes.emit(outcome);
                }
            }
            return Ok(match reason {
                FinalReason::OptedOut => RetryOutcome::Skipped(Skip::OptedOut),
                _ => RetryOutcome::Settled,
            });
        }
        Admission::Wait { key, hold } => return held(deps, send, &key, &hold, now, tally).await,
        Admission::Morning(morning) => {
            if let Some(moved) = deps.store.reschedule(&send.id, morning, now).await? {
                ensure_timer(deps, &moved, tally).await;
                tally.add("retries_kept_for_morning");
            }
            return Ok(RetryOutcome::Morning);
        }
        Admission::Go => {}
    }
    if let Some(until) = gate(deps, send, now, tally).await? {
        return keep_waiting(deps, send, until, now, tally).await;
    }
    match claim_and_send(deps, send, tally).await? {
        Some(outcome) => {
            tally.add(format!("retries_sent_attempt_{}", slot.attempt));
            Ok(RetryOutcome::Sent(outcome))
        }
        None => Ok(RetryOutcome::Skipped(Skip::AlreadyClaimed)),
    }
}

/// What may still keep a send that nothing refuses or holds: a first attempt that waited is
/// paused or slowed by its number's rating as a new one is, and any attempt counts toward the
/// messaging limit. Returns when to look again, or `None` with the send's place in the count
/// taken (and a slowed send's extra throughput turns waited for): it may go.
async fn gate<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    send: &SendRecord,
    now: DateTime<Utc>,
    tally: &mut Tally,
) -> Result<Option<DateTime<Utc>>, UseCaseError> {
    let candidate = Candidate::due(send);
    let rated = effect_on(deps, &candidate).await?;
    if rated == QualityEffect::Pause {
        tally.add("held_for_quality");
        return Ok(Some(now + deps.rules.holds.probe_every));
    }
    if let Some(room_at) = contact(deps, &candidate, None, rated.share(), tally).await? {
        return Ok(Some(room_at));
    }
    slow_down(deps, &send.phone_number_id, rated).await;
    Ok(None)
}

/// Keeps a waiting send waiting until `until` (one conditional write, and its timer).
async fn keep_waiting<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    send: &SendRecord,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
    tally: &mut Tally,
) -> Result<RetryOutcome, UseCaseError> {
    if let Some(moved) = deps.store.reschedule(&send.id, until, now).await? {
        ensure_timer(deps, &moved, tally).await;
    }
    Ok(RetryOutcome::Held)
}

/// A due send that a hold keeps: it waits for the hold's next probe (one conditional write that
/// moves its due time, so a crash on either side of it leaves a waiting send), goes out as the
/// probe, or ends when the hold has lasted too long. A probe Meta accepts lifts the send's holds.
async fn held<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    send: &SendRecord,
    key: &HoldKey,
    hold: &Hold,
    now: DateTime<Utc>,
    tally: &mut Tally,
) -> Result<RetryOutcome, UseCaseError> {
    let step = held_step(hold, &deps.rules.holds, now);
    // A probe is a send like any other: its number's rating and the messaging limit may keep it,
    // and leave the probe to a send they do not keep.
    if matches!(step, HeldStep::Probe { .. })
        && let Some(until) = gate(deps, send, now, tally).await?
    {
        return keep_waiting(deps, send, until, now, tally).await;
    }
    let wait_until = match step {
        HeldStep::GiveUp => {
            if deps.store.finish_waiting(&send.id, FinalReason::HeldTooLong, now).await?.is_some() {
                tally.add("held_sends_ended");
                if let Some(outcome) = Outcome::ended_after_cap(send, FinalReason::HeldTooLong, false, now) {
                    deps.outcomes.emit(outcome);
                }
            }
            return Ok(RetryOutcome::Settled);
        }
        HeldStep::Probe { next } if deps.store.take_probe(key, hold.probe_at, next, now).await? => {
            tally.add("hold_probes");
            let Some(outcome) = claim_and_send(deps, send, tally).await? else {
                return Ok(RetryOutcome::Skipped(Skip::AlreadyClaimed));
            };
            if matches!(outcome, SlotOutcome::Accepted { .. }) {
                for key in send.hold_keys() {
                    holds::lift(deps, &key, "by_probe", tally).await?;
                }
            }
            return Ok(RetryOutcome::Sent(outcome));
        }
        // Someone else took this probe: wait for the next one.
        HeldStep::Probe { next } => next,
        HeldStep::Wait(until) => until,
    };
    if let Some(moved) = deps.store.reschedule(&send.id, wait_until, now).await? {
        ensure_timer(deps, &moved, tally).await;
        tally.add("retries_held");
    }
    Ok(RetryOutcome::Held)
}

/// Ends a send whose wait ran out with nothing heard.
async fn settle<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    send: &SendRecord,
    reason: FinalReason,
    why: &str,
    tally: &mut Tally,
) -> Result<RetryOutcome, UseCaseError> {
    let error = RecordedError { code: CALL_FAILED_CODE, title: Some(why.to_owned()) };
    let now = deps.clock.now();
    record_verdict(deps, send, send.life.slot, &error, Decision::own(Verdict::Final(reason)), now, tally).await?;
    Ok(RetryOutcome::Settled)
}
