//! A verified webhook body, flattened into the events capguard acts on.
//!
//! One webhook can carry many WABAs, each many changes, each many statuses, messages, preferences
//! and errors. [`events`] walks all of them and yields one [`Event`] per item, in batch order, each
//! carrying the business phone number it concerns. Events borrow their strings from the parsed
//! webhook (which borrows them from the body): taking a batch apart copies nothing.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use smallvec::SmallVec;

use super::time::UnixTime;
use super::webhook::{ChangeValue, Entry, Envelope, MessageContent, PreferenceValue, StatusKind, WebhookError};
use crate::domain::limit::MessagingLimit;
use crate::domain::quality::QualityRating;

/// One thing Meta told us.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event<'a> {
    Status(StatusEvent<'a>),
    Message(MessageEvent<'a>),
    Preference(PreferenceEvent<'a>),
    Error(SystemErrorEvent<'a>),
    TemplateStatus(TemplateStatusEvent<'a>),
    TemplateQuality(TemplateQualityEvent<'a>),
    Account(AccountEvent<'a>),
}

/// An error as capguard keeps it: the code decides, the rest explains.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorDetail<'a> {
    pub code: i64,
    pub title: Option<&'a str>,
    pub details: Option<&'a str>,
}

/// An item's errors: Meta sends one, so one is kept without an allocation.
pub type ErrorDetails<'a> = SmallVec<[ErrorDetail<'a>; 1]>;

impl<'a> From<&'a WebhookError<'a>> for ErrorDetail<'a> {
    fn from(error: &'a WebhookError<'a>) -> Self {
        Self {
            code: error.code,
            title: error.title.as_deref().or(error.message.as_deref()),
            details: error.error_data.as_ref().and_then(|d| d.details.as_deref()),
        }
    }
}

/// An outbound message's status changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusEvent<'a> {
    pub phone_number_id: Option<&'a str>,
    pub wamid: &'a str,
    /// The recipient's WhatsApp id (a phone number without `+`), or their user id when Meta
    /// omits the number.
    pub recipient: Option<&'a str>,
    pub status: StatusKind,
    pub timestamp: UnixTime,
    pub errors: ErrorDetails<'a>,
    pub callback_data: Option<&'a str>,
    pub pricing_category: Option<&'a str>,
}

/// A user wrote to the business.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageEvent<'a> {
    pub phone_number_id: Option<&'a str>,
    pub from: Option<&'a str>,
    pub wamid: &'a str,
    pub timestamp: UnixTime,
    /// The message's `type`: `text`, `button`, `interactive`, `image`, `unsupported`, …
    pub message_type: &'a str,
    /// The text body, or the label of the button or choice the user tapped.
    pub text: Option<&'a str>,
    /// The quick-reply payload, or the id of the interactive choice, the user tapped.
    pub payload: Option<&'a str>,
    /// The business message this one answers.
    pub replied_to: Option<&'a str>,
    pub errors: ErrorDetails<'a>,
}

/// A user pressed Stop or Resume for the business's marketing messages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreferenceEvent<'a> {
    pub phone_number_id: Option<&'a str>,
    pub wa_id: Option<&'a str>,
    pub preference: PreferenceValue,
    pub timestamp: UnixTime,
}

/// A value-level error: about the number or the platform, not one message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemErrorEvent<'a> {
    pub phone_number_id: Option<&'a str>,
    pub error: ErrorDetail<'a>,
}

/// A template's review status changed (`message_template_status_update`). It names the template
/// and its language but no phone number: the template belongs to the WABA (`entry.id`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateStatusEvent<'a> {
    pub waba_id: &'a str,
    pub name: &'a str,
    pub language: &'a str,
    /// `APPROVED`, `PAUSED`, `REINSTATED`, `DISABLED`, …
    pub event: &'a str,
    /// `other_info.title`: `FIRST_PAUSE`, `SECOND_PAUSE`, `UNPAUSE`, …
    pub title: Option<&'a str>,
    /// The entry's `time`, when it carries one.
    pub at: Option<DateTime<Utc>>,
}

/// What Meta reports about the account: a `business_capability_update` (the portfolio's
/// messaging limit) or a `phone_number_quality_update` (a number's limit or quality rating). The
/// limit is `max_daily_conversations_per_business` (a number, `-1` for unlimited, or a `TIER_…`
/// name), or else the older `current_limit` or `max_daily_conversation_per_phone`; the rating is
/// `quality_rating` when the value carries one, or else its event (`FLAGGED`, `UNFLAGGED`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountEvent<'a> {
    pub waba_id: &'a str,
    /// The change's `field`.
    pub field: &'a str,
    /// `phone_number_quality_update`'s `event`: `UPGRADE`, `DOWNGRADE`, `FLAGGED`, `ONBOARDING`, …
    pub event: Option<&'a str>,
    /// The business number it concerns (`phone_number_quality_update`), digits only.
    pub display_phone_number: Option<&'a str>,
    /// The limit it reports; `None` when it reports none (`TIER_NOT_SET`, or no limit field).
    pub limit: Option<MessagingLimit>,
    /// The quality rating it reports, if any.
    pub rating: Option<QualityRating>,
    /// The entry's `time`, when it carries one.
    pub at: Option<DateTime<Utc>>,
}

/// The fields of [`AccountEvent`]s.
pub const ACCOUNT_FIELDS: [&str; 2] = ["business_capability_update", "phone_number_quality_update"];

/// The field of a template's status change.
pub const TEMPLATE_STATUS_FIELD: &str = "message_template_status_update";

/// A template's quality score changed (`message_template_quality_update`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateQualityEvent<'a> {
    pub waba_id: &'a str,
    pub name: &'a str,
    pub language: &'a str,
    /// `new_quality_score`: `GREEN`, `YELLOW`, `RED` or `UNKNOWN`.
    pub score: &'a str,
    pub previous: Option<&'a str>,
    /// The entry's `time`, when it carries one.
    pub at: Option<DateTime<Utc>>,
}

/// The field of a template's quality change.
pub const TEMPLATE_QUALITY_FIELD: &str = "message_template_quality_update";

/// Every event in the batch, in order: entries, then changes, then within a change its
/// statuses, messages, preferences and errors.
pub fn events<'a>(envelope: &'a Envelope<'a>) -> Vec<Event<'a>> {
    let items = |v: &ChangeValue| v.statuses.len() + v.messages.len() + v.user_preferences.len() + v.errors.len() + 1;
    let mut out = Vec::with_capacity(envelope.entry.iter().flat_map(|e| &e.changes).map(|c| items(&c.value)).sum());
    for entry in &envelope.entry {
        for change in &entry.changes {
            if change.field == TEMPLATE_STATUS_FIELD {
                out.extend(template_status(entry, &change.value).map(Event::TemplateStatus));
            } else if change.field == TEMPLATE_QUALITY_FIELD {
                out.extend(template_quality(entry, &change.value).map(Event::TemplateQuality));
            } else if ACCOUNT_FIELDS.contains(&&*change.field) {
                out.push(Event::Account(account(entry, &change.field, &change.value)));
            } else {
                push_change_events(&change.value, &mut out);
            }
        }
    }
    out
}

/// A template status change, when it names a template, a language and an event.
fn template_status<'a>(entry: &'a Entry<'a>, value: &'a ChangeValue<'a>) -> Option<TemplateStatusEvent<'a>> {
    let text = |name: &str| value.extra.get(name).and_then(|v| v.as_str());
    Some(TemplateStatusEvent {
        waba_id: &entry.id,
        at: entry_time(entry),
        name: text("message_template_name")?,
        language: text("message_template_language")?,
        event: text("event")?,
        title: value.extra.get("other_info").and_then(|info| info.get("title")).and_then(|t| t.as_str()),
    })
}

/// A template quality change, when it names a template, a language and a score.
fn template_quality<'a>(entry: &'a Entry<'a>, value: &'a ChangeValue<'a>) -> Option<TemplateQualityEvent<'a>> {
    let text = |name: &str| value.extra.get(name).and_then(Value::as_str);
    Some(TemplateQualityEvent {
        waba_id: &entry.id,
        name: text("message_template_name")?,
        language: text("message_template_language")?,
        score: text("new_quality_score")?,
        previous: text("previous_quality_score"),
        at: entry_time(entry),
    })
}

/// The entry's `time` (Unix seconds), when it carries one.
fn entry_time(entry: &Entry) -> Option<DateTime<Utc>> {
    entry.extra.get("time").and_then(Value::as_i64).and_then(|at| DateTime::from_timestamp(at, 0))
}

/// An account report: the first limit field that names a limit Meta documents, and the rating.
fn account<'a>(entry: &'a Entry<'a>, field: &'a str, value: &'a ChangeValue<'a>) -> AccountEvent<'a> {
    let limit = ["max_daily_conversations_per_business", "current_limit", "max_daily_conversation_per_phone"]
        .into_iter()
        .filter_map(|name| value.extra.get(name))
        .find_map(|limit| match limit {
            Value::String(text) => MessagingLimit::from_meta(text),
            Value::Number(number) => MessagingLimit::from_meta(&number.to_string()),
            _ => None,
        });
    let text = |name: &str| value.extra.get(name).and_then(Value::as_str);
    let event = text("event");
    AccountEvent {
        waba_id: &entry.id,
        field,
        event,
        display_phone_number: text("display_phone_number"),
        limit,
        rating: QualityRating::reported(text("quality_rating"), event),
        at: entry_time(entry),
    }
}

fn push_change_events<'a>(value: &'a ChangeValue<'a>, out: &mut Vec<Event<'a>>) {
    let phone_number_id = value.metadata.as_ref().and_then(|m| m.phone_number_id.as_deref());
    for status in &value.statuses {
        out.push(Event::Status(StatusEvent {
            phone_number_id,
            wamid: &status.id,
            recipient: status.recipient_id.as_deref().or(status.recipient_user_id.as_deref()),
            status: status.status.clone(),
            timestamp: status.timestamp,
            errors: status.errors.iter().map(ErrorDetail::from).collect(),
            callback_data: status.biz_opaque_callback_data.as_deref(),
            pricing_category: status.pricing.as_ref().and_then(|p| p.category.as_deref()),
        }));
    }
    for message in &value.messages {
        let (text, payload) = match message.content() {
            MessageContent::Text(body) => (Some(body), None),
            MessageContent::QuickReply(button) => (button.text.as_deref(), button.payload.as_deref()),
            MessageContent::InteractiveReply(choice) => (choice.title.as_deref(), choice.id.as_deref()),
            MessageContent::Other { .. } => (None, None),
        };
        out.push(Event::Message(MessageEvent {
            phone_number_id,
            from: message.from.as_deref().or(message.from_user_id.as_deref()),
            wamid: &message.id,
            timestamp: message.timestamp,
            message_type: &message.kind,
            text,
            payload,
            replied_to: message.context.as_ref().and_then(|c| c.id.as_deref()),
            errors: message.errors.iter().map(ErrorDetail::from).collect(),
        }));
    }
    for preference in &value.user_preferences {
        out.push(Event::Preference(PreferenceEvent {
            phone_number_id,
            wa_id: preference.wa_id.as_deref(),
            preference: preference.value.clone(),
            timestamp: preference.timestamp,
        }));
    }
    for error in &value.errors {
        out.push(Event::Error(SystemErrorEvent { phone_number_id, error: error.into() }));
    }
}
