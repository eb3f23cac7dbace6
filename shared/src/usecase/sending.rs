//! What the use cases share: sending one slot at most once, and acting on a failure's verdict.
//!
//! A slot is sent only after it was claimed, so it is sent at most once. The claim is the last
//! write before the call (after the throughput turn), and it records when the send is to be
//! settled if nothing is heard: a crash between the claim and the answer leaves a claimed send
//! whose due time a sweep finds. The call's outcome is one of three: Meta accepted it (the wamid
//! is recorded and linked, and statuses parked under it are applied), Meta refused it (the error
//! is judged like a webhook failure), or nobody knows (the call timed out after the request left,
//! or a gateway answered 5xx): then nothing is resent, and a settle timer looks again when the
//! claim's wait is over, by when a webhook has usually told.

use chrono::{DateTime, Utc};

use super::holds;
use super::status::apply_status;
use super::{Deps, Tally, UseCaseError};
use crate::cloud::{CloudApi, CloudApiError};
use crate::domain::classes::{FailureClass, classify};
use crate::domain::consent::sources;
use crate::domain::hold::is_token_error;
use crate::domain::lifecycle::{Effect, Input, Phase, Slot};
use crate::domain::policy::RetryContext;
use crate::domain::rules::Category;
use crate::domain::verdict::{Decision, Failure, FinalReason, Verdict};
use crate::outcome::{Outcome, OutcomeKind};
use crate::schedule::{RetryJob, RetryScheduler, ScheduleError};
use crate::store::{
    Listings, NewSend, Recipients, RecordedError, SendId, SendRecord, SendStore, Sends, Start, TemplateRef, WamidLink,
};
use crate::whatsapp::callback::CallbackTag;
use crate::whatsapp::send::{Language, SendRequest, SendResponse, Template};

/// The code recorded when the Cloud API could not be reached or answered without a Meta error
/// (connection refused, HTTP 4xx without a Graph body), or when capguard settled a send itself:
/// not one of Meta's codes.
pub const CALL_FAILED_CODE: i64 = -1;

/// How a slot's send call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotOutcome {
    Accepted {
        wamid: String,
    },
    Failed {
        error: RecordedError,
        decision: Decision,
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

/// Takes the number's next throughput turn, claims the send's current slot and sends it; `None`
/// when the claim went to someone else (nothing is sent then).
pub async fn claim_and_send<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    send: &SendRecord,
    tally: &mut Tally,
) -> Result<Option<SlotOutcome>, UseCaseError> {
    let slot = send.life.slot;
    let _working = deps.busy.hold(&send.id);
    // The turn comes before the claim: a crash while waiting for it leaves the send due, not
    // claimed-and-never-sent.
    deps.throttle.turn(&send.phone_number_id).await;
    let now = deps.clock.now();
    let Some(claimed) = deps.store.claim(&send.id, slot, now, now + deps.sending.outcome_wait).await? else {
        return Ok(None);
    };
    send_slot(deps, &claimed, slot, tally).await.map(Some)
}

/// How recording a new send that may go now came out.
#[derive(Debug)]
pub enum FirstSend {
    /// Recorded claimed for attempt 1, and sent: how the call ended.
    Sent(SlotOutcome),
    /// A send with this id was recorded before (a repeated request): this is that send, and
    /// nothing was sent.
    Known(Box<SendRecord>),
}

/// Takes the number's next throughput turn, then records `send` already claimed for attempt 1
/// and sends it: one write where recording the send and claiming it took two. The caller holds
/// the send busy ([`crate::usecase::Busy`]) while it does. The turn comes first for the reason it
/// does in [`claim_and_send`]; a repeated request therefore spends a turn on each send it finds
/// recorded.
pub async fn record_and_send<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    send: &NewSend,
    tally: &mut Tally,
) -> Result<FirstSend, UseCaseError> {
    deps.throttle.turn(&send.phone_number_id).await;
    let now = deps.clock.now();
    let recorded = deps.store.record_send(send, Start::Claim(now + deps.sending.outcome_wait), now).await?;
    if !recorded.created {
        return Ok(FirstSend::Known(Box::new(recorded.send)));
    }
    send_slot(deps, &recorded.send, Slot::FIRST, tally).await.map(FirstSend::Sent)
}

/// Sends a slot the caller has claimed, and records what came of it.
async fn send_slot<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    send: &SendRecord,
    slot: Slot,
    tally: &mut Tally,
) -> Result<SlotOutcome, UseCaseError> {
    let request = request_for(&send.recipient, &send.template, &send.id, slot);
    let mut retries = 0;
    let mut token_refreshed = false;
    loop {
        if retries > 0 || token_refreshed {
            deps.throttle.turn(&send.phone_number_id).await;
        }
        let result = deps.cloud.send_template(&send.phone_number_id, &request, deps.sending.endpoint).await;
        let now = deps.clock.now();
        if let Err(CloudApiError::Graph { error, .. }) = &result {
            if error.code == 130429 {
                tally.add("throttled_130429");
            }
            // A refused token may have been rotated: read it again and try once more (nothing
            // was sent) before the number is halted.
            if is_token_error(error.code) && !token_refreshed {
                token_refreshed = true;
                if deps.cloud.refresh_token().await {
                    tally.add("tokens_refreshed");
                    continue;
                }
            }
        }
        let (error, retryable, decision) = match result {
            Ok(response) => match response.wamid() {
                Some(wamid) => return accepted(deps, send, slot, &response, wamid, tally).await,
                None => return settle_later(deps, send, slot, tally).await,
            },
            Err(e) if e.outcome_unknown() => return settle_later(deps, send, slot, tally).await,
            // Meta's own refusal proves nothing was sent: a transient one may be tried again.
            Err(CloudApiError::Graph { error, .. }) => {
                let decision = judge(deps, send, slot, error.code, now).await?;
                let retryable = decision.class == FailureClass::Transient;
                (RecordedError { code: error.code, title: error.message }, retryable, decision)
            }
            Err(e @ (CloudApiError::Timeout { .. } | CloudApiError::Unreachable(_))) => {
                let decision = unreachable_decision(deps, send, true, now);
                (RecordedError { code: CALL_FAILED_CODE, title: Some(e.to_string()) }, true, decision)
            }
            // A rate limiter in front of Meta turned the request away; anything else is final.
            Err(e @ CloudApiError::BadResponse { http_status, .. }) => {
                let retryable = http_status == 429;
                let decision = unreachable_decision(deps, send, retryable, now);
                (RecordedError { code: CALL_FAILED_CODE, title: Some(e.to_string()) }, retryable, decision)
            }
        };
        if retryable && retries < deps.sending.call_retries {
            tokio::time::sleep(deps.sending.call_backoff * 4_u32.saturating_pow(retries)).await;
            retries += 1;
            continue;
        }
        record_verdict(deps, send, slot, &error, decision, now, tally).await?;
        return Ok(SlotOutcome::Failed { error, decision });
    }
}

/// The `message_status` of a send Meta holds for pacing.
pub const HELD_FOR_PACING: &str = "held_for_quality_assessment";

/// Records an accepted slot: the wamid linked (statuses that came before it applied), and the
/// recipient's `wa_id` remembered when Meta knows them by another number.
async fn accepted<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    send: &SendRecord,
    slot: Slot,
    response: &SendResponse,
    wamid: &str,
    tally: &mut Tally,
) -> Result<SlotOutcome, UseCaseError> {
    let now = deps.clock.now();
    let linked = deps.store.record_accepted(&send.id, slot, wamid, now).await?;
    tally.add("sends");
    // Meta holds a paced template's message until it has assessed the template: the report says
    // so rather than "in progress". (A crash before this note only leaves the send unlabelled.)
    let held = |m: &crate::whatsapp::send::SentMessage| m.message_status.as_deref() == Some(HELD_FOR_PACING);
    if response.messages.first().is_some_and(held) {
        deps.store.record_paced(&send.id, slot, now).await?;
        tally.add("sends_paced");
    }
    if !linked.parked.is_empty() {
        let mut current = match linked.send {
            Some(send) => send,
            None => deps.store.get_send(&send.id).await?.unwrap_or_else(|| send.clone()),
        };
        let link = WamidLink { send_id: send.id.clone(), slot };
        for update in &linked.parked {
            current = apply_status(deps, &link, &current, update, tally).await?;
        }
        tally.add("parked_statuses_applied");
    }
    if let Some(wa_id) = response.contacts.first().and_then(|contact| contact.wa_id.as_deref()) {
        learn_alias(deps, wa_id, &send.recipient, now, tally).await?;
    }
    Ok(SlotOutcome::Accepted { wamid: wamid.to_owned() })
}

/// A call that failed without a Meta error: backed off like a transient failure when nothing
/// was sent, final when it was refused for good.
fn unreachable_decision<S, R, C>(
    deps: &Deps<S, R, C>,
    send: &SendRecord,
    retryable: bool,
    now: DateTime<Utc>,
) -> Decision {
    if !retryable {
        return Decision::own(Verdict::Final(FinalReason::InvalidRequest));
    }
    let retry = send.life.transient_retries + 1;
    Decision::own(match deps.rules.backoff.delay(retry) {
        Some(delay) => Verdict::BackOff { retry, due: now + delay },
        None => Verdict::Final(FinalReason::TransientExhausted),
    })
}

/// The call's outcome is unknown: nothing is resent, and a timer settles the slot when the
/// claim's wait is over, unless a webhook settles it first. The claim's due time is the same
/// moment, so a lost timer is found by a sweep.
async fn settle_later<S, R: RetryScheduler, C>(
    deps: &Deps<S, R, C>,
    send: &SendRecord,
    slot: Slot,
    tally: &mut Tally,
) -> Result<SlotOutcome, UseCaseError> {
    let now = deps.clock.now();
    let due = send.life.phase.due().unwrap_or(now + deps.sending.outcome_wait);
    let set = deps.scheduler.schedule(&RetryJob::settle(send.id.clone(), slot), due, now).await;
    prompt_set(set, &send.id, tally);
    tally.add("outcome_unknown");
    Ok(SlotOutcome::Unknown)
}

/// Takes what setting or cancelling a timer came to. A timer is a prompt, not the truth: the send's
/// due time in the store is what makes it go, and a sweep finds a send whose timer was never set
/// (or a cancelled timer that fires anyway finds nothing to do). So a scheduler failure does not
/// fail the work around it; it is logged and counted (`timers_failed`).
pub fn prompt_set(result: Result<(), ScheduleError>, send: &SendId, tally: &mut Tally) {
    if let Err(error) = result {
        tracing::warn!(%send, %error, "a timer could not be set or cancelled; the sweep covers the send");
        tally.add("timers_failed");
    }
}

/// Remembers that Meta knows `number` as `wa_id`, when they differ, and stops marketing to
/// `number` if the stop came under `wa_id` before capguard knew it was theirs.
pub async fn learn_alias<S: Sends + Recipients + Listings, R: RetryScheduler, C>(
    deps: &Deps<S, R, C>,
    wa_id: &str,
    number: &str,
    at: DateTime<Utc>,
    tally: &mut Tally,
) -> Result<(), UseCaseError> {
    if wa_id == number || !wa_id.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(());
    }
    let known_as = deps.store.record_alias(wa_id, number, at).await?;
    if known_as.opted_out && !deps.store.get_recipient(number).await?.opted_out {
        opt_out_recipient(deps, number, sources::WA_ID, known_as.opt_changed_at.unwrap_or(at), tally).await?;
    }
    Ok(())
}

/// The decision on `code` for this send's `slot`. A cap placed by a policy that retries inside
/// an open window reads when the recipient last wrote (a recent read: a message a moment old
/// only means the retry waits for its step).
pub async fn judge<S: Recipients, R, C>(
    deps: &Deps<S, R, C>,
    send: &SendRecord,
    slot: Slot,
    code: i64,
    at: DateTime<Utc>,
) -> Result<Decision, UseCaseError> {
    // Only a cap that takes the ladder is placed by the policy: no other failure pays for the
    // recipient's record or the number's region.
    let policy = &deps.rules.policy;
    let laddered = send.category.takes_ladder() && classify(code).class == FailureClass::PerUserCap;
    let context = if laddered {
        let needs_recipient = policy.in_window || policy.stretch_from.is_some();
        let recipient = if needs_recipient { Some(deps.store.recent_recipient(&send.recipient).await?) } else { None };
        send.retry_context(slot, recipient.as_ref(), deps.clock.now())
    } else {
        RetryContext::default()
    };
    let failure = Failure {
        code,
        category: send.category,
        recipient: &send.recipient,
        attempt: slot.attempt,
        transient_retries: send.life.transient_retries,
        at,
        context,
    };
    Ok(deps.rules.judge(&failure))
}

/// Records a slot's failure and carries out its verdict: the timer for the next slot, the cap
/// count, the recipient's opt-out, a hold. `send` is the send as last read. Safe to run again for
/// the same failure (a redelivered webhook): the record applies once, and the cap count (once per
/// attempt), the timer and the opt-out are idempotent. The cap is counted before the failure is
/// recorded, so a crash between the two writes loses nothing: the redelivery finds the failure
/// unrecorded and counts it again, which counts it once. Returns the send as it now is.
pub async fn record_verdict<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    send: &SendRecord,
    slot: Slot,
    error: &RecordedError,
    decision: Decision,
    at: DateTime<Utc>,
    tally: &mut Tally,
) -> Result<SendRecord, UseCaseError> {
    let (capped, verdict) = (decision.capped(), decision.verdict);
    // What the send as read says the failure does: nothing, when it was recorded already or is
    // stale (slots only move forward), which spares a write that would be refused.
    let mut preview = send.life;
    let moot = slot <= send.life.slot && preview.apply(Input::Failed(slot, verdict)) == Effect::Unchanged;
    if capped && !moot {
        deps.store.record_cap(&send.recipient, &send.id, slot.attempt, at).await?;
    }
    let applied = if moot { None } else { deps.store.record_failure(&send.id, slot, error, verdict, at).await? };
    let fresh = applied.is_some();
    let current = match applied {
        Some(record) => record,
        None if moot => send.clone(),
        None => deps.store.get_send(&send.id).await?.unwrap_or_else(|| send.clone()),
    };
    ensure_timer(deps, &current, tally).await;
    if fresh {
        tally.add(format!("failed_{}", error.code));
        if capped {
            tally.add("capped");
            deps.outcomes.emit(Outcome::of_send(OutcomeKind::SendCapped, send, slot.attempt, at).with_code(error.code));
        }
        if let Verdict::Final(reason) = verdict
            && let Some(outcome) = Outcome::ended_after_cap(send, reason, capped, at)
        {
            deps.outcomes.emit(Outcome { attempt: Some(slot.attempt), ..outcome.with_code(error.code) });
        }
    }
    match verdict {
        Verdict::Ladder { attempt, due } if fresh => {
            tally.add("retries_scheduled");
            deps.outcomes.emit(Outcome::of_send(OutcomeKind::RetryPlanned, send, attempt, at).with_due(due));
        }
        Verdict::BackOff { .. } if fresh => tally.add("retries_soon"),
        Verdict::SuppressRecipient => {
            opt_out_recipient(deps, &send.recipient, sources::ERROR_131050, at, tally).await?
        }
        Verdict::HoldTemplate { .. } | Verdict::HaltSender { .. } => {
            let [sender, template] = send.hold_keys();
            let (key, counter) = if matches!(verdict, Verdict::HaltSender { .. }) {
                (sender, "senders_halted")
            } else {
                (template, "templates_held")
            };
            if holds::set(deps, &key, error.code, at).await? && fresh {
                tally.add(counter);
            }
        }
        Verdict::Final(reason) if fresh => tally.add(reason.as_str()),
        _ => {}
    }
    Ok(current)
}

/// Makes sure a waiting send has its timer (creating one that exists is a no-op). The send's due
/// time in the store is what guarantees it goes out; the timer makes it go out on time.
pub async fn ensure_timer<S, R: RetryScheduler, C>(deps: &Deps<S, R, C>, send: &SendRecord, tally: &mut Tally) {
    if let Phase::Waiting { due } = send.life.phase {
        let job = RetryJob::new(send.id.clone(), send.life.slot);
        prompt_set(deps.scheduler.schedule(&job, due, deps.clock.now()).await, &send.id, tally);
    }
}

/// Stops marketing to a recipient: records the opt-out (from `source`, one of
/// [`crate::domain::consent::sources`]) and ends every waiting marketing send, cancelling its
/// timer. Safe to run again.
pub async fn opt_out_recipient<S: Sends + Recipients + Listings, R: RetryScheduler, C>(
    deps: &Deps<S, R, C>,
    recipient: &str,
    source: &str,
    at: DateTime<Utc>,
    tally: &mut Tally,
) -> Result<(), UseCaseError> {
    if deps.store.set_opt_out(recipient, true, source, at).await? {
        tally.add("opted_out");
        deps.outcomes.emit(Outcome::opted_out(recipient, at));
    }
    for waiting in deps.store.waiting_for(recipient).await? {
        let Some(send) = deps.store.get_send(&waiting.send_id).await? else { continue };
        if send.category != Category::Marketing {
            continue;
        }
        let now = deps.clock.now();
        if deps.store.finish_waiting(&send.id, FinalReason::OptedOut, now).await?.is_some() {
            prompt_set(deps.scheduler.cancel(&RetryJob::new(send.id.clone(), waiting.slot)).await, &send.id, tally);
            tally.add("retries_cancelled");
        }
    }
    Ok(())
}
