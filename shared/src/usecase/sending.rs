//! What the use cases share: sending one claimed slot, and acting on a failure's verdict.
//!
//! A slot is sent only after it was claimed (by the dispatch's recording, or by a timer's claim),
//! so it is sent at most once. Its outcome is one of three: Meta accepted it (the wamid is
//! recorded and linked), Meta refused it (the error is judged like a webhook failure), or nobody
//! knows (the call timed out after the request left): then nothing is resent, and a settle timer
//! looks again after `outcome_wait`, by when a webhook has usually told.

use chrono::{DateTime, Utc};

use super::{Deps, Tally, UseCaseError};
use crate::cloud::{CloudApi, CloudApiError};
use crate::domain::classes::{FailureClass, classify};
use crate::domain::lifecycle::{Phase, Slot};
use crate::domain::rules::Category;
use crate::domain::verdict::{Failure, FinalReason, Verdict};
use crate::schedule::{RetryJob, RetryScheduler};
use crate::store::{Hold, HoldKey, RecordedError, SendId, SendRecord, SendStore, TemplateRef};
use crate::whatsapp::callback::CallbackTag;
use crate::whatsapp::send::{Language, SendRequest, Template};

/// The code recorded when the Cloud API could not be reached or answered without a Meta error
/// (connection refused, HTTP 5xx without a Graph body): not one of Meta's codes.
pub const CALL_FAILED_CODE: i64 = -1;

/// How a slot's send call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotOutcome {
    Accepted {
        wamid: String,
    },
    Failed {
        error: RecordedError,
        verdict: Verdict,
    },
    /// The call may have reached Meta; a settle timer will look again.
    Unknown,
}

/// The Graph request for one slot of a send to `recipient` (digits), tagged with its slot.
pub fn request_for(recipient: &str, template: &TemplateRef, send_id: &SendId, slot: Slot) -> SendRequest {
    let template = Template {
        name: template.name.clone(),
        language: Language { code: template.language.clone(), policy: None },
        components: template.components.clone(),
        extra: Default::default(),
    };
    let tag = CallbackTag { send_id: send_id.to_string(), attempt: slot.attempt, try_no: slot.try_no };
    SendRequest::template(format!("+{recipient}"), template, Some(tag.to_string()))
}

/// Sends a slot the caller has claimed, and records what came of it.
pub async fn send_slot<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    send: &SendRecord,
    slot: Slot,
    tally: &mut Tally,
) -> Result<SlotOutcome, UseCaseError> {
    let request = request_for(&send.recipient, &send.template, &send.id, slot);
    let mut retries = 0;
    loop {
        deps.throttle.turn(&send.phone_number_id).await;
        let result = deps.cloud.send_template(&send.phone_number_id, &request, deps.sending.endpoint).await;
        let now = deps.clock.now();
        let (error, retryable) = match result {
            Ok(response) => match response.wamid() {
                Some(wamid) => {
                    deps.store.record_accepted(&send.id, slot, wamid, now).await?;
                    tally.add("sends");
                    return Ok(SlotOutcome::Accepted { wamid: wamid.to_owned() });
                }
                None => return settle_later(deps, send, slot, tally).await,
            },
            Err(e) if e.outcome_unknown() => return settle_later(deps, send, slot, tally).await,
            Err(CloudApiError::Graph { error, .. }) => {
                let retryable = classify(error.code).class == FailureClass::Transient;
                (RecordedError { code: error.code, title: error.message }, retryable)
            }
            Err(e @ (CloudApiError::Timeout { .. } | CloudApiError::Unreachable(_))) => {
                (RecordedError { code: CALL_FAILED_CODE, title: Some(e.to_string()) }, true)
            }
            Err(e @ CloudApiError::BadResponse { http_status, .. }) => {
                (RecordedError { code: CALL_FAILED_CODE, title: Some(e.to_string()) }, http_status >= 500)
            }
        };
        if retryable && retries < deps.sending.call_retries {
            tokio::time::sleep(deps.sending.call_backoff * 4_u32.saturating_pow(retries)).await;
            retries += 1;
            continue;
        }
        let verdict = if error.code == CALL_FAILED_CODE {
            unreachable_verdict(deps, send, retryable, now)
        } else {
            judge(deps, send, slot, error.code, now)
        };
        record_verdict(deps, send, slot, &error, verdict, now, tally).await?;
        return Ok(SlotOutcome::Failed { error, verdict });
    }
}

/// A call that failed without a Meta error: backed off like a transient failure when the service
/// was unavailable, final when it answered with something else.
fn unreachable_verdict<S, R, C>(
    deps: &Deps<S, R, C>,
    send: &SendRecord,
    retryable: bool,
    now: DateTime<Utc>,
) -> Verdict {
    if !retryable {
        return Verdict::Final(FinalReason::InvalidRequest);
    }
    let retry = send.life.transient_retries + 1;
    match deps.rules.backoff.delay(retry) {
        Some(delay) => Verdict::BackOff { retry, due: now + delay },
        None => Verdict::Final(FinalReason::TransientExhausted),
    }
}

async fn settle_later<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    send: &SendRecord,
    slot: Slot,
    tally: &mut Tally,
) -> Result<SlotOutcome, UseCaseError> {
    let now = deps.clock.now();
    let job = RetryJob::settle(send.id.clone(), slot);
    deps.scheduler.schedule(&job, now + deps.sending.outcome_wait, now).await?;
    tally.add("outcome_unknown");
    Ok(SlotOutcome::Unknown)
}

/// The verdict on `code` for this send's `slot`.
pub fn judge<S, R, C>(deps: &Deps<S, R, C>, send: &SendRecord, slot: Slot, code: i64, at: DateTime<Utc>) -> Verdict {
    let failure = Failure {
        code,
        category: send.category,
        recipient: &send.recipient,
        attempt: slot.attempt,
        transient_retries: send.life.transient_retries,
        at,
    };
    deps.rules.judge(&failure).1
}

/// Records a slot's failure and carries out its verdict: the timer for the next slot, the cap
/// count, the recipient's opt-out, a hold. Safe to run again for the same failure (a redelivered
/// webhook): the record applies once, and the timer and the opt-out are idempotent.
pub async fn record_verdict<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    send: &SendRecord,
    slot: Slot,
    error: &RecordedError,
    verdict: Verdict,
    at: DateTime<Utc>,
    tally: &mut Tally,
) -> Result<(), UseCaseError> {
    let applied = deps.store.record_failure(&send.id, slot, error, verdict, at).await?;
    let fresh = applied.is_some();
    let current = match applied {
        Some(record) => record,
        None => match deps.store.get_send(&send.id).await? {
            Some(record) => record,
            None => return Ok(()),
        },
    };
    ensure_timer(deps, &current).await?;
    if fresh {
        tally.add(format!("failed_{}", error.code));
        if classify(error.code).class == FailureClass::PerUserCap {
            deps.store.record_cap(&send.recipient, at).await?;
            tally.add("capped");
        }
    }
    match verdict {
        Verdict::Ladder { .. } if fresh => tally.add("retries_scheduled"),
        Verdict::BackOff { .. } if fresh => tally.add("retries_soon"),
        Verdict::SuppressRecipient => opt_out_recipient(deps, &send.recipient, at, tally).await?,
        Verdict::HoldTemplate => {
            let key = HoldKey::Template {
                phone_number_id: send.phone_number_id.clone(),
                name: send.template.name.clone(),
                language: send.template.language.clone(),
            };
            hold(deps, &key, error.code, at, fresh, "templates_held", tally).await?;
        }
        Verdict::HaltSender => {
            let key = HoldKey::Sender { phone_number_id: send.phone_number_id.clone() };
            hold(deps, &key, error.code, at, fresh, "senders_halted", tally).await?;
        }
        Verdict::Final(reason) if fresh => tally.add(reason.as_str()),
        _ => {}
    }
    Ok(())
}

async fn hold<S: SendStore, R, C>(
    deps: &Deps<S, R, C>,
    key: &HoldKey,
    code: i64,
    at: DateTime<Utc>,
    fresh: bool,
    counter: &str,
    tally: &mut Tally,
) -> Result<(), UseCaseError> {
    if deps.store.get_hold(key).await?.is_none() {
        deps.store.set_hold(key, Some(Hold { code, since: at }), deps.clock.now()).await?;
        if fresh {
            tally.add(counter);
        }
    }
    Ok(())
}

/// Makes sure a waiting send has its timer (creating one that exists is a no-op), so that a
/// failure recorded just before a crash still gets its retry when the webhook is redelivered.
pub async fn ensure_timer<S, R: RetryScheduler, C>(
    deps: &Deps<S, R, C>,
    send: &SendRecord,
) -> Result<(), UseCaseError> {
    if let Phase::Waiting { due } = send.life.phase {
        deps.scheduler.schedule(&RetryJob::new(send.id.clone(), send.life.slot), due, deps.clock.now()).await?;
    }
    Ok(())
}

/// Stops marketing to a recipient: records the opt-out and ends every waiting marketing send,
/// cancelling its timer. Safe to run again.
pub async fn opt_out_recipient<S: SendStore, R: RetryScheduler, C>(
    deps: &Deps<S, R, C>,
    recipient: &str,
    at: DateTime<Utc>,
    tally: &mut Tally,
) -> Result<(), UseCaseError> {
    if deps.store.set_opt_out(recipient, true, at).await? {
        tally.add("opted_out");
    }
    for waiting in deps.store.waiting_for(recipient).await? {
        let Some(send) = deps.store.get_send(&waiting.send_id).await? else { continue };
        if send.category != Category::Marketing {
            continue;
        }
        let now = deps.clock.now();
        if deps.store.finish_waiting(&send.id, FinalReason::OptedOut, now).await?.is_some() {
            deps.scheduler.cancel(&RetryJob::new(send.id.clone(), waiting.slot)).await?;
            tally.add("retries_cancelled");
        }
    }
    Ok(())
}
