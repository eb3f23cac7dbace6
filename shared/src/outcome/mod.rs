//! capguard's own outcomes as events a business can react to (an SMS fallback when a send is
//! exhausted, a CRM update on an opt-out): a send capped, a retry planned, a send recovered, a
//! send exhausted, a recipient opted out, sends held, a hold lifted. The use cases [`emit`] them
//! at the point where the store took the change; they wait in [`Outcomes`] until a
//! [`Outcomes::flush`] hands them to a [`Publish`] adapter: [`eventbridge`] (an EventBridge bus,
//! on AWS) or [`lines`] (JSON lines to a file or standard output, `capguard serve --events`).
//! docs/events.md is the schema.
//!
//! An event is a notification, not the record: the table stays the truth. One that cannot be
//! published is kept for the next flush (up to [`MAX_PENDING`]) and counted
//! (`outcome_events_failed`), which raises an alarm; an event whose change was stored just before
//! the process died is not sent (`capguard report` still shows the change).
//!
//! [`emit`]: Outcomes::emit

pub mod eventbridge;
pub mod lines;

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Serialize;

use crate::domain::hold::HoldKey;
use crate::domain::rules::Category;
use crate::domain::send::SendRecord;
use crate::domain::verdict::FinalReason;
use crate::report;
use crate::usecase::Tally;

/// The source every event carries (EventBridge's `source`).
pub const SOURCE: &str = "capguard";

/// Events kept for a later flush while the publisher fails; older ones are dropped past this
/// (and counted as `outcome_events_dropped`).
pub const MAX_PENDING: usize = 10_000;

/// The longest a flush waits for the publisher: it ends a webhook's or a send request's
/// invocation, whose answer waits for it. What it did not publish by then is kept.
pub const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// Meta refused an attempt with the per-user marketing limit (131049).
    SendCapped,
    /// The next attempt of a capped send is planned, at `due`.
    RetryPlanned,
    /// A send capped before reached its recipient, on `attempt`.
    SendRecovered,
    /// A send capped before ended without reaching its recipient, and capguard will not try it
    /// again (`reason`: the ladder ran out, the region takes no marketing, its deadline, another
    /// failure, a hold that lasted too long, …).
    SendExhausted,
    /// The recipient stopped marketing (a STOP keyword, Meta's stop button, error 131050).
    RecipientOptedOut,
    /// A number or a template was halted (`code`): its sends wait until the hold is lifted.
    SendsHeld,
    /// A hold was lifted (`reason`: by_webhook, by_probe, by_operator).
    HoldLifted,
}

impl OutcomeKind {
    pub const ALL: [Self; 7] = [
        Self::SendCapped,
        Self::RetryPlanned,
        Self::SendRecovered,
        Self::SendExhausted,
        Self::RecipientOptedOut,
        Self::SendsHeld,
        Self::HoldLifted,
    ];

    /// EventBridge's `detail-type`.
    pub fn detail_type(self) -> &'static str {
        match self {
            Self::SendCapped => "Send Capped",
            Self::RetryPlanned => "Retry Planned",
            Self::SendRecovered => "Send Recovered",
            Self::SendExhausted => "Send Exhausted",
            Self::RecipientOptedOut => "Recipient Opted Out",
            Self::SendsHeld => "Sends Held",
            Self::HoldLifted => "Hold Lifted",
        }
    }
}

/// One event's `detail`: what happened, to which send, recipient, number or template. Fields
/// that do not apply to a kind are left out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub kind: OutcomeKind,
    /// When it happened (Meta's timestamp for what a webhook reported).
    #[serde(serialize_with = "rfc3339")]
    pub at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_id: Option<String>,
    /// The recipient, in E.164.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<Category>,
    /// The attempt concerned: the capped one, the planned one, the one that got through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Meta's error code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    /// When the planned attempt is due.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "rfc3339_option")]
    pub due: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn rfc3339<S: serde::Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&report::rfc3339(*at))
}

fn rfc3339_option<S: serde::Serializer>(at: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => rfc3339(at, serializer),
        None => serializer.serialize_none(),
    }
}

impl Outcome {
    fn bare(kind: OutcomeKind, at: DateTime<Utc>) -> Self {
        Self {
            kind,
            at,
            send_id: None,
            recipient: None,
            phone_number_id: None,
            campaign: None,
            template: None,
            language: None,
            category: None,
            attempt: None,
            code: None,
            due: None,
            reason: None,
        }
    }

    /// An event about `send`, on `attempt`.
    pub fn of_send(kind: OutcomeKind, send: &SendRecord, attempt: u32, at: DateTime<Utc>) -> Self {
        Self {
            send_id: Some(send.id.to_string()),
            recipient: Some(format!("+{}", send.recipient.trim_start_matches('+'))),
            phone_number_id: Some(send.phone_number_id.clone()),
            campaign: send.campaign.clone(),
            template: Some(send.template.name.clone()),
            language: Some(send.template.language.clone()),
            category: Some(send.category),
            attempt: Some(attempt),
            ..Self::bare(kind, at)
        }
    }

    /// The Send Exhausted event of a send that ends for `reason` after a cap (this failure's,
    /// `capped_now`, or an earlier attempt's), on its current attempt; none for a send never
    /// capped, or one ended by an opt-out (its Recipient Opted Out says so).
    pub fn ended_after_cap(
        send: &SendRecord,
        reason: FinalReason,
        capped_now: bool,
        at: DateTime<Utc>,
    ) -> Option<Self> {
        let capped = capped_now || send.attempts.iter().any(crate::report::capped);
        (capped && reason != FinalReason::OptedOut).then(|| {
            Self::of_send(OutcomeKind::SendExhausted, send, send.life.slot.attempt, at).with_reason(reason.as_str())
        })
    }

    /// A recipient's opt-out (`recipient` as the store keys it: digits without the `+`).
    pub fn opted_out(recipient: &str, at: DateTime<Utc>) -> Self {
        Self {
            recipient: Some(format!("+{}", recipient.trim_start_matches('+'))),
            ..Self::bare(OutcomeKind::RecipientOptedOut, at)
        }
    }

    /// A hold set or lifted.
    pub fn of_hold(kind: OutcomeKind, key: &HoldKey, at: DateTime<Utc>) -> Self {
        let bare = Self::bare(kind, at);
        match key {
            HoldKey::Sender { phone_number_id } => Self { phone_number_id: Some(phone_number_id.clone()), ..bare },
            HoldKey::Template { phone_number_id, name, language } => Self {
                phone_number_id: Some(phone_number_id.clone()),
                template: Some(name.clone()),
                language: Some(language.clone()),
                ..bare
            },
        }
    }

    pub fn with_code(self, code: i64) -> Self {
        Self { code: Some(code), ..self }
    }

    pub fn with_due(self, due: DateTime<Utc>) -> Self {
        Self { due: Some(due), ..self }
    }

    pub fn with_reason(self, reason: impl Into<String>) -> Self {
        Self { reason: Some(reason.into()), ..self }
    }

    /// The event as one JSON object, shaped like the EventBridge event a rule receives
    /// (`source`, `detail-type`, `time`, `detail`): what `capguard serve --events` writes.
    pub fn envelope(&self) -> serde_json::Value {
        serde_json::json!({
            "source": SOURCE,
            "detail-type": self.kind.detail_type(),
            "time": report::rfc3339(self.at),
            "detail": self,
        })
    }
}

/// The publisher could not take a batch; none of it is assumed taken.
#[derive(Debug, thiserror::Error)]
#[error("publishing outcome events failed: {0}")]
pub struct PublishError(pub String);

/// Where outcome events go.
pub trait Publish: Send + Sync {
    /// Publishes `batch` in order. On an error, the events it names as not taken (all of them
    /// unless it knows better) are tried again at the next flush.
    fn publish<'a>(&'a self, batch: &'a [Outcome]) -> BoxFuture<'a, Result<(), Unpublished>>;
}

/// What a failed publish left untaken, and why.
#[derive(Debug)]
pub struct Unpublished {
    pub left: Vec<Outcome>,
    pub error: PublishError,
}

/// The events of the use cases, waiting for a flush. Without a publisher, events are dropped as
/// they are emitted.
#[derive(Default)]
pub struct Outcomes {
    publisher: Option<Arc<dyn Publish>>,
    pending: Mutex<Vec<Outcome>>,
}

impl std::fmt::Debug for Outcomes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcomes").field("publishing", &self.publisher.is_some()).finish_non_exhaustive()
    }
}

impl Outcomes {
    pub fn publishing(publisher: Arc<dyn Publish>) -> Self {
        Self { publisher: Some(publisher), pending: Mutex::default() }
    }

    /// Keeps `outcome` for the next flush.
    pub fn emit(&self, outcome: Outcome) {
        if self.publisher.is_some() {
            self.lock().push(outcome);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Outcome>> {
        // A list of events is whole whatever a panicking holder was doing.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes what is pending, counting `outcome_events` published, `outcome_events_failed`
    /// not (kept for the next flush) and `outcome_events_dropped` past [`MAX_PENDING`].
    pub async fn flush(&self, tally: &mut Tally) {
        let Some(publisher) = &self.publisher else { return };
        let batch = std::mem::take(&mut *self.lock());
        if batch.is_empty() {
            return;
        }
        let sent = batch.len() as u64;
        let published = tokio::time::timeout(FLUSH_TIMEOUT, publisher.publish(&batch)).await;
        let published = published.unwrap_or_else(|_| {
            Err(Unpublished { left: batch.clone(), error: PublishError(format!("no answer within {FLUSH_TIMEOUT:?}")) })
        });
        match published {
            Ok(()) => tally.add_n("outcome_events", sent),
            Err(Unpublished { left, error }) => {
                tracing::error!(%error, left = left.len(), "outcome events were not published; kept for the next flush");
                tally.add_n("outcome_events", sent.saturating_sub(left.len() as u64));
                tally.add_n("outcome_events_failed", left.len() as u64);
                let mut pending = self.lock();
                let mut kept = left;
                kept.append(&mut pending);
                let dropped = kept.len().saturating_sub(MAX_PENDING);
                kept.drain(..dropped);
                tally.add_n("outcome_events_dropped", dropped as u64);
                *pending = kept;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes batches until told to fail, then refuses the second half of each.
    #[derive(Default)]
    struct HalfFails {
        taken: Mutex<Vec<Outcome>>,
        failing: std::sync::atomic::AtomicBool,
    }

    impl Publish for HalfFails {
        fn publish<'a>(&'a self, batch: &'a [Outcome]) -> BoxFuture<'a, Result<(), Unpublished>> {
            Box::pin(async move {
                let half =
                    if self.failing.load(std::sync::atomic::Ordering::SeqCst) { batch.len() / 2 } else { batch.len() };
                self.taken.lock().unwrap().extend_from_slice(&batch[..half]);
                if half == batch.len() {
                    Ok(())
                } else {
                    Err(Unpublished { left: batch[half..].to_vec(), error: PublishError("refused".into()) })
                }
            })
        }
    }

    fn opted_out(n: i64) -> Outcome {
        Outcome::opted_out(&format!("9198{n:08}"), DateTime::from_timestamp(1_767_225_600 + n, 0).unwrap())
    }

    #[tokio::test]
    async fn events_left_by_a_failed_publish_go_at_the_next_flush_in_order() {
        let publisher = Arc::new(HalfFails::default());
        let outcomes = Outcomes::publishing(publisher.clone());
        publisher.failing.store(true, std::sync::atomic::Ordering::SeqCst);
        (0..4).for_each(|n| outcomes.emit(opted_out(n)));
        let mut tally = Tally::default();
        outcomes.flush(&mut tally).await;
        assert_eq!((tally.get("outcome_events"), tally.get("outcome_events_failed")), (2, 2));

        publisher.failing.store(false, std::sync::atomic::Ordering::SeqCst);
        outcomes.emit(opted_out(4));
        let mut tally = Tally::default();
        outcomes.flush(&mut tally).await;
        assert_eq!((tally.get("outcome_events"), tally.get("outcome_events_failed")), (3, 0));
        let taken = publisher.taken.lock().unwrap().clone();
        assert_eq!(taken, (0..5).map(opted_out).collect::<Vec<_>>(), "each once, in the order emitted");
    }

    #[test]
    fn without_a_publisher_nothing_is_kept() {
        let outcomes = Outcomes::default();
        outcomes.emit(opted_out(1));
        assert!(outcomes.lock().is_empty());
    }

    #[test]
    fn an_envelope_has_the_eventbridge_fields_and_leaves_out_what_does_not_apply() {
        let event = opted_out(7).envelope();
        assert_eq!(event["source"], "capguard");
        assert_eq!(event["detail-type"], "Recipient Opted Out");
        assert_eq!(event["time"], "2026-01-01T00:00:07Z");
        assert_eq!(
            event["detail"],
            serde_json::json!({ "kind": "recipient_opted_out", "at": "2026-01-01T00:00:07Z", "recipient": "+919800000007" })
        );
    }
}
