//! Intake: a verified webhook body becomes writes and timers.
//!
//! Each event of the batch, in order: a status moves its send forward (or fails it, and the
//! verdict plans the next ladder step, a backoff, an opt-out or a hold); an inbound message opens
//! the recipient's 24 h window and makes their waiting retries due now, or opts them out when it
//! is a STOP keyword; a preference stops or resumes marketing; a system error is recorded, and a
//! sender-scope one halts the number. Everything is idempotent, because Meta delivers at least
//! once: the caller answers 200 only when this returns `Ok`, and a redelivered batch changes
//! nothing that already happened.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::sending::{ensure_timer, judge, opt_out_recipient, record_verdict};
use super::{Deps, Tally, UseCaseError};
use crate::cloud::CloudApi;
use crate::domain::classes::Remedy;
use crate::domain::lifecycle::{Delivery, Phase, Slot};
use crate::domain::reaction::{Action, react};
use crate::domain::rules::Category;
use crate::domain::verdict::{FinalReason, Verdict};
use crate::schedule::{RetryJob, RetryScheduler};
use crate::store::{Hold, HoldKey, RecordedError, SendId, SendStore, WamidLink};
use crate::whatsapp::callback::CallbackTag;
use crate::whatsapp::events::{Event, MessageEvent, StatusEvent, events};
use crate::whatsapp::webhook::{PreferenceValue, StatusKind, WebhookParseError, parse_webhook};

/// A failed status for an unknown wamid younger than this may belong to a send whose answer is
/// still on its way: the batch is refused so that Meta redelivers it. Older ones are foreign.
pub const LINK_GRACE: TimeDelta = TimeDelta::minutes(10);

/// How long, on the wall, a recent failure waits for its wamid to be linked before the batch is
/// refused, and how often it looks.
const LINK_WAIT: Duration = Duration::from_secs(5);
const LINK_POLL: Duration = Duration::from_millis(25);

/// Why a batch was not taken.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// Not a webhook: answer 400, Meta's redelivery would not help.
    #[error(transparent)]
    NotAWebhook(#[from] WebhookParseError),
    /// Storage or scheduling failed: answer 5xx so that Meta redelivers.
    #[error(transparent)]
    Failed(#[from] UseCaseError),
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntakeReport {
    pub events: usize,
    pub tally: Tally,
}

/// Takes one verified webhook body.
pub async fn intake<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    body: &[u8],
) -> Result<IntakeReport, IntakeError> {
    let envelope = parse_webhook(body)?;
    let batch = events(&envelope);
    let mut tally = Tally::default();
    for event in &batch {
        on_event(deps, event, &mut tally).await?;
    }
    Ok(IntakeReport { events: batch.len(), tally })
}

async fn on_event<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    event: &Event,
    tally: &mut Tally,
) -> Result<(), UseCaseError> {
    let now = deps.clock.now();
    match event {
        Event::Status(status) => on_status(deps, status, now, tally).await,
        Event::Message(message) => on_message(deps, message, now, tally).await,
        Event::Preference(preference) => {
            let Some(recipient) = preference.wa_id.as_deref() else { return Ok(()) };
            let at = preference.timestamp.to_datetime().unwrap_or(now);
            match preference.preference {
                PreferenceValue::Stop => opt_out_recipient(deps, recipient, at, tally).await,
                PreferenceValue::Resume => {
                    if deps.store.set_opt_out(recipient, false, at).await? {
                        tally.add("resumed");
                    }
                    Ok(())
                }
                PreferenceValue::Other(_) => Ok(()),
            }
        }
        Event::Error(error) => {
            tally.add(format!("system_error_{}", error.error.code));
            let remedy = crate::domain::classes::classify(error.error.code).remedy;
            if let (Remedy::HaltSender, Some(number)) = (remedy, error.phone_number_id.as_deref()) {
                let key = HoldKey::Sender { phone_number_id: number.to_owned() };
                if deps.store.get_hold(&key).await?.is_none() {
                    deps.store.set_hold(&key, Some(Hold { code: error.error.code, since: now }), now).await?;
                    tally.add("senders_halted");
                }
            }
            Ok(())
        }
    }
}

/// The send and slot a status belongs to: by wamid, or by our callback tag when the wamid was
/// never linked (the send call's answer was lost). A failure for a wamid not linked yet is waited
/// for a moment, on the wall: Meta can post a failure before the send call's answer has been
/// recorded, and the answer usually lands within milliseconds. (The wait is on the wall because
/// the webhook's own timestamp says nothing about how late our recording is.)
async fn link_of<S: SendStore>(store: &S, status: &StatusEvent) -> Result<Option<WamidLink>, UseCaseError> {
    let deadline = tokio::time::Instant::now() + LINK_WAIT;
    loop {
        if let Some(link) = store.find_by_wamid(&status.wamid).await? {
            return Ok(Some(link));
        }
        let tagged = status.callback_data.as_deref().and_then(CallbackTag::parse).and_then(|tag| {
            let send_id = SendId::try_from(tag.send_id).ok()?;
            Some(WamidLink { send_id, slot: Slot { attempt: tag.attempt, try_no: tag.try_no } })
        });
        let waiting_worth_it = status.status == StatusKind::Failed;
        if tagged.is_some() || !waiting_worth_it || tokio::time::Instant::now() >= deadline {
            return Ok(tagged);
        }
        tokio::time::sleep(LINK_POLL).await;
    }
}

async fn on_status<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    status: &StatusEvent,
    now: DateTime<Utc>,
    tally: &mut Tally,
) -> Result<(), UseCaseError> {
    let at = status.timestamp.to_datetime().unwrap_or(now);
    let link = link_of(&deps.store, status).await?;
    let send = match &link {
        Some(link) => deps.store.get_send(&link.send_id).await?,
        None => None,
    };
    let (Some(link), Some(send)) = (link, send) else {
        if status.status == StatusKind::Failed && now - at < LINK_GRACE {
            return Err(UseCaseError::NotYetLinked { wamid: status.wamid.clone() });
        }
        tally.add("statuses_unmatched");
        return Ok(());
    };
    let delivery = match &status.status {
        StatusKind::Sent => Delivery::Sent,
        StatusKind::Delivered => Delivery::Delivered,
        StatusKind::Read | StatusKind::Played => Delivery::Read,
        StatusKind::Failed => {
            let Some(error) = status.errors.first() else {
                let error = RecordedError { code: super::sending::CALL_FAILED_CODE, title: None };
                let verdict = Verdict::Final(FinalReason::FailedWithoutCode);
                return record_verdict(deps, &send, link.slot, &error, verdict, at, tally).await;
            };
            let recorded = RecordedError { code: error.code, title: error.title.clone() };
            let verdict = judge(deps, &send, link.slot, error.code, at);
            return record_verdict(deps, &send, link.slot, &recorded, verdict, at, tally).await;
        }
        StatusKind::Other(_) => {
            tally.add("statuses_other");
            return Ok(());
        }
    };
    let was_succeeded = matches!(send.life.phase, Phase::Succeeded { .. });
    let Some(updated) = deps.store.record_status(&send.id, link.slot, delivery, at).await? else {
        return Ok(());
    };
    if delivery.is_success() && !was_succeeded && matches!(updated.life.phase, Phase::Succeeded { .. }) {
        tally.add("delivered");
        if link.slot.attempt > 1 {
            tally.add(format!("recovered_attempt_{}", link.slot.attempt));
        }
        if send.category == Category::Marketing {
            deps.store.record_marketing_delivery(&send.recipient, &send.id, at).await?;
        }
    }
    if delivery == Delivery::Read {
        tally.add("read");
    }
    Ok(())
}

async fn on_message<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    message: &MessageEvent,
    now: DateTime<Utc>,
    tally: &mut Tally,
) -> Result<(), UseCaseError> {
    let Some(recipient) = message.from.as_deref() else { return Ok(()) };
    let at = message.timestamp.to_datetime().unwrap_or(now);
    deps.store.record_inbound(recipient, at).await?;
    tally.add("inbound");
    if react(&Event::Message(message.clone()), &deps.rules, None).action == Action::SuppressRecipient {
        return opt_out_recipient(deps, recipient, at, tally).await;
    }
    fire_waiting_now(deps, recipient, now, tally).await
}

/// A reply opens the 24 h window, in which marketing does not count toward the cap: every send
/// of the recipient's that waits for a retry becomes due now, its timer replaced.
async fn fire_waiting_now<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    recipient: &str,
    now: DateTime<Utc>,
    tally: &mut Tally,
) -> Result<(), UseCaseError> {
    for waiting in deps.store.waiting_for(recipient).await? {
        if let Some(moved) = deps.store.reschedule(&waiting.send_id, now, now).await? {
            deps.scheduler.cancel(&RetryJob::new(waiting.send_id.clone(), waiting.slot)).await?;
            ensure_timer(deps, &moved).await?;
            tally.add("retries_fired_by_reply");
        }
    }
    Ok(())
}
