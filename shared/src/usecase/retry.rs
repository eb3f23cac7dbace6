//! Retry: a timer fired for (send, slot). Look again before sending: the send may have been
//! delivered, opted out, cancelled or exhausted since the timer was set, or this may be a second
//! firing of the same timer. Only a waiting send whose current slot this is, claimed now, is sent.
//! A held template or halted sender keeps the send waiting without using the attempt.

use super::sending::{CALL_FAILED_CODE, SlotOutcome, record_verdict, send_slot};
use super::{Deps, Tally, UseCaseError};
use crate::cloud::CloudApi;
use crate::domain::lifecycle::Phase;
use crate::domain::rules::Category;
use crate::domain::verdict::{FinalReason, Verdict};
use crate::schedule::{JobPurpose, RetryJob, RetryScheduler};
use crate::store::{HoldKey, RecordedError, SendRecord, SendStore};

/// What a firing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOutcome {
    /// The slot was claimed and sent.
    Sent(SlotOutcome),
    /// Nothing to do, and why: `unknown_send`, `finished`, `not_due` (a duplicate or stale
    /// firing), `already_claimed`, `opted_out`.
    Skipped(&'static str),
    /// The sender or template is held: the send waits for its next look, attempt unused.
    Held,
    /// A send whose outcome stayed unknown was settled as such.
    Settled,
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
        None => RetryOutcome::Skipped("unknown_send"),
        Some(send) => match job.purpose {
            JobPurpose::Send => fire(deps, &send, job, &mut tally).await?,
            JobPurpose::Settle => settle(deps, &send, job, &mut tally).await?,
        },
    };
    Ok(RetryReport { outcome, tally })
}

async fn fire<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    send: &SendRecord,
    job: &RetryJob,
    tally: &mut Tally,
) -> Result<RetryOutcome, UseCaseError> {
    let slot = job.slot();
    if send.life.phase.is_terminal() {
        return Ok(RetryOutcome::Skipped("finished"));
    }
    if send.life.slot != slot || !matches!(send.life.phase, Phase::Waiting { .. }) {
        return Ok(RetryOutcome::Skipped("not_due"));
    }
    let now = deps.clock.now();
    if send.category == Category::Marketing && deps.store.get_recipient(&send.recipient).await?.opted_out {
        if deps.store.finish_waiting(&send.id, FinalReason::OptedOut, now).await?.is_some() {
            tally.add("retries_cancelled");
        }
        return Ok(RetryOutcome::Skipped("opted_out"));
    }
    if let Some((verdict, code)) = held(deps, send).await? {
        // The slot is claimed and failed as held without a call: the attempt keeps its number and
        // the send waits for its next look under a new timer.
        if deps.store.claim(&send.id, slot, now).await?.is_some() {
            let error = RecordedError { code, title: Some("held: not sent".into()) };
            record_verdict(deps, send, slot, &error, verdict, now, tally).await?;
        }
        return Ok(RetryOutcome::Held);
    }
    let Some(claimed) = deps.store.claim(&send.id, slot, now).await? else {
        return Ok(RetryOutcome::Skipped("already_claimed"));
    };
    tally.add(format!("retries_sent_attempt_{}", slot.attempt));
    Ok(RetryOutcome::Sent(send_slot(deps, &claimed, slot, tally).await?))
}

/// The hold that keeps this send waiting, if any, as the verdict to record and its code.
async fn held<S: SendStore, R, C>(
    deps: &Deps<S, R, C>,
    send: &SendRecord,
) -> Result<Option<(Verdict, i64)>, UseCaseError> {
    let sender = HoldKey::Sender { phone_number_id: send.phone_number_id.clone() };
    if let Some(hold) = deps.store.get_hold(&sender).await? {
        return Ok(Some((Verdict::HaltSender, hold.code)));
    }
    let template = HoldKey::Template {
        phone_number_id: send.phone_number_id.clone(),
        name: send.template.name.clone(),
        language: send.template.language.clone(),
    };
    Ok(deps.store.get_hold(&template).await?.map(|hold| (Verdict::HoldTemplate, hold.code)))
}

async fn settle<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    send: &SendRecord,
    job: &RetryJob,
    tally: &mut Tally,
) -> Result<RetryOutcome, UseCaseError> {
    if send.life.slot != job.slot() || send.life.phase != Phase::Claimed {
        return Ok(RetryOutcome::Skipped("finished"));
    }
    let error =
        RecordedError { code: CALL_FAILED_CODE, title: Some("no answer from the send call and no webhook".into()) };
    let verdict = Verdict::Final(FinalReason::OutcomeUnknown);
    record_verdict(deps, send, job.slot(), &error, verdict, deps.clock.now(), tally).await?;
    Ok(RetryOutcome::Settled)
}
