//! A verified webhook body, flattened into the events capguard acts on.
//!
//! One webhook can carry many WABAs, each many changes, each many statuses, messages, preferences
//! and errors. [`events`] walks all of them and yields one [`Event`] per item, in batch order, each
//! carrying the business phone number it concerns.

use serde::Serialize;

use super::time::UnixTime;
use super::webhook::{ChangeValue, Envelope, MessageContent, PreferenceValue, StatusKind, WebhookError};

/// One thing Meta told us.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    Status(StatusEvent),
    Message(MessageEvent),
    Preference(PreferenceEvent),
    Error(SystemErrorEvent),
    TemplateStatus(TemplateStatusEvent),
}

/// An error as capguard keeps it: the code decides, the rest explains.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorDetail {
    pub code: i64,
    pub title: Option<String>,
    pub details: Option<String>,
}

impl From<&WebhookError> for ErrorDetail {
    fn from(error: &WebhookError) -> Self {
        Self {
            code: error.code,
            title: error.title.clone().or_else(|| error.message.clone()),
            details: error.error_data.as_ref().and_then(|d| d.details.clone()),
        }
    }
}

/// An outbound message's status changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusEvent {
    pub phone_number_id: Option<String>,
    pub wamid: String,
    /// The recipient's WhatsApp id (a phone number without `+`), or their user id when Meta
    /// omits the number.
    pub recipient: Option<String>,
    pub status: StatusKind,
    pub timestamp: UnixTime,
    pub errors: Vec<ErrorDetail>,
    pub callback_data: Option<String>,
    pub pricing_category: Option<String>,
}

/// A user wrote to the business.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageEvent {
    pub phone_number_id: Option<String>,
    pub from: Option<String>,
    pub wamid: String,
    pub timestamp: UnixTime,
    /// The message's `type`: `text`, `button`, `interactive`, `image`, `unsupported`, …
    pub message_type: String,
    /// The text body, or the label of the button or choice the user tapped.
    pub text: Option<String>,
    /// The quick-reply payload, or the id of the interactive choice, the user tapped.
    pub payload: Option<String>,
    /// The business message this one answers.
    pub replied_to: Option<String>,
    pub errors: Vec<ErrorDetail>,
}

/// A user pressed Stop or Resume for the business's marketing messages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreferenceEvent {
    pub phone_number_id: Option<String>,
    pub wa_id: Option<String>,
    pub preference: PreferenceValue,
    pub timestamp: UnixTime,
}

/// A value-level error: about the number or the platform, not one message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemErrorEvent {
    pub phone_number_id: Option<String>,
    pub error: ErrorDetail,
}

/// A template's review status changed (`message_template_status_update`). It names the template
/// and its language but no phone number: the template belongs to the WABA (`entry.id`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateStatusEvent {
    pub waba_id: String,
    pub name: String,
    pub language: String,
    /// `APPROVED`, `PAUSED`, `REINSTATED`, `DISABLED`, …
    pub event: String,
    /// `other_info.title`: `FIRST_PAUSE`, `SECOND_PAUSE`, `UNPAUSE`, …
    pub title: Option<String>,
}

/// The field of a template's status change.
pub const TEMPLATE_STATUS_FIELD: &str = "message_template_status_update";

/// Every event in the batch, in order: entries, then changes, then within a change its
/// statuses, messages, preferences and errors.
pub fn events(envelope: &Envelope) -> Vec<Event> {
    let mut out = Vec::new();
    for entry in &envelope.entry {
        for change in &entry.changes {
            if change.field == TEMPLATE_STATUS_FIELD {
                out.extend(template_status(&entry.id, &change.value).map(Event::TemplateStatus));
            } else {
                push_change_events(&change.value, &mut out);
            }
        }
    }
    out
}

/// A template status change, when it names a template, a language and an event.
fn template_status(waba_id: &str, value: &ChangeValue) -> Option<TemplateStatusEvent> {
    let text = |name: &str| value.extra.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    Some(TemplateStatusEvent {
        waba_id: waba_id.to_owned(),
        name: text("message_template_name")?,
        language: text("message_template_language")?,
        event: text("event")?,
        title: value
            .extra
            .get("other_info")
            .and_then(|info| info.get("title"))
            .and_then(|t| t.as_str())
            .map(str::to_owned),
    })
}

fn push_change_events(value: &ChangeValue, out: &mut Vec<Event>) {
    let phone_number_id = value.metadata.as_ref().and_then(|m| m.phone_number_id.clone());
    for status in &value.statuses {
        out.push(Event::Status(StatusEvent {
            phone_number_id: phone_number_id.clone(),
            wamid: status.id.clone(),
            recipient: status.recipient_id.clone().or_else(|| status.recipient_user_id.clone()),
            status: status.status.clone(),
            timestamp: status.timestamp,
            errors: status.errors.iter().map(ErrorDetail::from).collect(),
            callback_data: status.biz_opaque_callback_data.clone(),
            pricing_category: status.pricing.as_ref().and_then(|p| p.category.clone()),
        }));
    }
    for message in &value.messages {
        let (text, payload) = match message.content() {
            MessageContent::Text(body) => (Some(body.to_owned()), None),
            MessageContent::QuickReply(button) => (button.text.clone(), button.payload.clone()),
            MessageContent::InteractiveReply(choice) => (choice.title.clone(), choice.id.clone()),
            MessageContent::Other { .. } => (None, None),
        };
        out.push(Event::Message(MessageEvent {
            phone_number_id: phone_number_id.clone(),
            from: message.from.clone().or_else(|| message.from_user_id.clone()),
            wamid: message.id.clone(),
            timestamp: message.timestamp,
            message_type: message.kind.clone(),
            text,
            payload,
            replied_to: message.context.as_ref().and_then(|c| c.id.clone()),
            errors: message.errors.iter().map(ErrorDetail::from).collect(),
        }));
    }
    for preference in &value.user_preferences {
        out.push(Event::Preference(PreferenceEvent {
            phone_number_id: phone_number_id.clone(),
            wa_id: preference.wa_id.clone(),
            preference: preference.value.clone(),
            timestamp: preference.timestamp,
        }));
    }
    for error in &value.errors {
        out.push(Event::Error(SystemErrorEvent { phone_number_id: phone_number_id.clone(), error: error.into() }));
    }
}
