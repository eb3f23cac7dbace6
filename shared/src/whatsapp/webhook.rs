//! Meta's webhook payloads, as they arrive on `POST /webhook`.
//!
//! Written from docs/whatsapp.md#webhooks. Every struct keeps the fields it does not name in `extra`, and
//! every closed-looking set of values (`status`, `type`, `value`) has an `Other` arm that keeps the
//! unknown string: Meta adds fields and values without notice, and a webhook we cannot parse is a
//! webhook Meta redelivers for seven days. Only a body that is not JSON, or not a WhatsApp Business
//! Account object at all, is an error.

use serde::Serialize;
use serde_json::{Map, Value};

use super::open::{Text, open_enum, open_object};
use super::time::UnixTime;

/// The `object` value of every WhatsApp webhook.
pub const WHATSAPP_OBJECT: &str = "whatsapp_business_account";

/// Why a body is not a WhatsApp webhook.
#[derive(Debug, thiserror::Error)]
pub enum WebhookParseError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body is not a WhatsApp webhook: {0}")]
    NotAWebhook(String),
    #[error("body is a webhook for object {0:?}, not {WHATSAPP_OBJECT:?}")]
    WrongObject(String),
}

/// Parses a webhook body. Call it on bytes whose signature was already verified.
pub fn parse_webhook(body: &[u8]) -> Result<Envelope<'_>, WebhookParseError> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => WebhookParseError::NotAWebhook(e.to_string()),
        _ => WebhookParseError::NotJson(e.to_string()),
    })?;
    if envelope.object != WHATSAPP_OBJECT {
        return Err(WebhookParseError::WrongObject(envelope.object.into()));
    }
    Ok(envelope)
}

/// The outer envelope: `{"object": ..., "entry": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Envelope<'a> {
    pub object: Text<'a>,
    pub entry: Vec<Entry<'a>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

open_object!(Envelope { object: "object" required, entry: "entry" required });

/// One WhatsApp Business Account's share of a batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry<'a> {
    /// The WABA id.
    pub id: Text<'a>,
    pub changes: Vec<Change<'a>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

open_object!(Entry { id: "id" required, changes: "changes" });

/// One change: a `field` (`messages`, `user_preferences`, …) and its `value`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change<'a> {
    pub field: Text<'a>,
    pub value: ChangeValue<'a>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

open_object!(Change { field: "field" required, value: "value" });

/// The `value` of a change. Fields that a `field` does not use are simply empty; the values of
/// fields we do not interpret (template status updates, account alerts, …) stay in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChangeValue<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messaging_product: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<Contact<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<InboundMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<Status<'a>>,
    /// Value-level (system) errors: no wamid, e.g. 130429 or 131000.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<WebhookError<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub user_preferences: Vec<UserPreference<'a>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

open_object!(ChangeValue {
    messaging_product: "messaging_product",
    metadata: "metadata",
    contacts: "contacts",
    messages: "messages",
    statuses: "statuses",
    errors: "errors",
    user_preferences: "user_preferences"
});

/// The business phone number the change concerns.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Metadata<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_phone_number: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number_id: Option<Text<'a>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

open_object!(Metadata { display_phone_number: "display_phone_number", phone_number_id: "phone_number_id" });

/// A user the change mentions. `wa_id` may be absent for users with a username (2026).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Contact<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_user_id: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile<'a>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

open_object!(Contact { wa_id: "wa_id", user_id: "user_id", parent_user_id: "parent_user_id", profile: "profile" });

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Profile<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<Text<'a>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

open_object!(Profile { name: "name", username: "username" });

/// An outbound message's status update (`statuses[]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status<'a> {
    /// The wamid the send response returned.
    pub id: Text<'a>,
    pub status: StatusKind,
    pub timestamp: UnixTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient_id: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient_type: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient_participant_id: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient_identity_key_hash: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient_user_id: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_recipient_user_id: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub biz_opaque_callback_data: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation: Option<Box<Conversation<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pricing: Option<Box<Pricing<'a>>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<WebhookError<'a>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

open_object!(Status { id: "id" required, status: "status" required, timestamp: "timestamp" required, recipient_id: "recipient_id", recipient_type: "recipient_type", recipient_participant_id: "recipient_participant_id", recipient_identity_key_hash: "recipient_identity_key_hash", recipient_user_id: "recipient_user_id", parent_recipient_user_id: "parent_recipient_user_id", biz_opaque_callback_data: "biz_opaque_callback_data", conversation: "conversation", pricing: "pricing", errors: "errors" });

/// `conversation` on a status (omitted from v24.0 on, except in free-entry-point windows).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Conversation<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_timestamp: Option<UnixTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<ConversationOrigin<'a>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

open_object!(Conversation { id: "id", expiration_timestamp: "expiration_timestamp", origin: "origin" });

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConversationOrigin<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<Text<'a>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

open_object!(ConversationOrigin { kind: "type" });

/// `pricing` on a status. `category` is an open set (`marketing`, `utility`, `marketing_lite`, …).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Pricing<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pricing_model: Option<Text<'a>>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<Text<'a>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

open_object!(Pricing { billable: "billable", pricing_model: "pricing_model", kind: "type", category: "category" });

/// An error inside a webhook: on a failed status, on an inbound message, or at value level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookError<'a> {
    pub code: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_data: Option<ErrorData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub href: Option<Text<'a>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

open_object!(WebhookError { code: "code" required, title: "title", message: "message", error_data: "error_data", href: "href" });

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ErrorData<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Text<'a>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

open_object!(ErrorData { details: "details" });

/// An inbound message from a user (`messages[]`).
///
/// Text, template quick-reply buttons and interactive replies are typed; every other `type` keeps
/// its object in `extra` under the type's name, which [`InboundMessage::content`] hands back raw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboundMessage<'a> {
    pub id: Text<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_user_id: Option<Text<'a>>,
    pub timestamp: UnixTime,
    #[serde(rename = "type")]
    pub kind: Text<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<MessageContext<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<TextBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub button: Option<QuickReplyButton<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interactive: Option<Interactive<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<WebhookError<'a>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

open_object!(InboundMessage { id: "id" required, from: "from", from_user_id: "from_user_id", timestamp: "timestamp" required, kind: "type" required, context: "context", text: "text", button: "button", interactive: "interactive", errors: "errors" });

/// What an inbound message carries, by type.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageContent<'a> {
    Text(&'a str),
    /// A tap on a template's quick-reply button.
    QuickReply(&'a QuickReplyButton<'a>),
    /// A tap on an interactive reply button or list row.
    InteractiveReply(&'a ReplyChoice<'a>),
    /// Any other type, or a known type whose object is missing: its name and its raw object.
    Other {
        kind: &'a str,
        raw: Option<&'a Value>,
    },
}

impl InboundMessage<'_> {
    pub fn content(&self) -> MessageContent<'_> {
        let interactive_choice =
            self.interactive.as_ref().and_then(|i| i.button_reply.as_ref().or(i.list_reply.as_ref()));
        match (self.kind.as_str(), &self.text, &self.button, interactive_choice) {
            ("text", Some(text), _, _) => MessageContent::Text(&text.body),
            ("button", _, Some(button), _) => MessageContent::QuickReply(button),
            ("interactive", _, _, Some(choice)) => MessageContent::InteractiveReply(choice),
            (kind, ..) => MessageContent::Other { kind, raw: self.extra.get(kind) },
        }
    }
}

/// `context` of a reply: the business message it answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MessageContext<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Text<'a>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

open_object!(MessageContext { from: "from", id: "id" });

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextBody<'a> {
    pub body: Text<'a>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

open_object!(TextBody { body: "body" required });

/// A template quick-reply tap: `payload` is what the send set, `text` the button's label.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QuickReplyButton<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<Text<'a>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

open_object!(QuickReplyButton { payload: "payload", text: "text" });

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Interactive<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub button_reply: Option<ReplyChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub list_reply: Option<ReplyChoice<'a>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

open_object!(Interactive { kind: "type", button_reply: "button_reply", list_reply: "list_reply" });

/// An interactive reply: the `id` the business gave the choice and its `title`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReplyChoice<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<Text<'a>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

open_object!(ReplyChoice { id: "id", title: "title" });

/// A `user_preferences` item: the user pressed Stop or Resume for marketing messages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserPreference<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<Text<'a>>,
    pub value: PreferenceValue,
    /// An integer here, a string everywhere else; [`UnixTime`] takes both.
    pub timestamp: UnixTime,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

open_object!(UserPreference { wa_id: "wa_id", detail: "detail", category: "category", value: "value" required, timestamp: "timestamp" required });

open_enum!(
    /// A status update's `status`. `deleted` and `warning` are On-Premises-era values still seen.
    StatusKind {
        Sent => "sent",
        Delivered => "delivered",
        Read => "read",
        Played => "played",
        Failed => "failed",
    }
);

open_enum!(
    /// A `user_preferences` item's `value`.
    PreferenceValue {
        Stop => "stop",
        Resume => "resume",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_that_is_not_json_is_named_as_such() {
        let err = parse_webhook(b"hub.challenge=1").unwrap_err();
        assert!(matches!(err, WebhookParseError::NotJson(_)), "{err}");
    }

    #[test]
    fn json_without_an_entry_list_is_not_a_webhook() {
        let err = parse_webhook(br#"{"object":"whatsapp_business_account"}"#).unwrap_err();
        assert!(matches!(err, WebhookParseError::NotAWebhook(_)), "{err}");
    }

    #[test]
    fn another_object_is_refused() {
        let err = parse_webhook(br#"{"object":"page","entry":[]}"#).unwrap_err();
        assert!(matches!(err, WebhookParseError::WrongObject(ref o) if o == "page"), "{err}");
    }

    #[test]
    fn unknown_fields_and_values_are_kept_not_refused() {
        let body = br#"{"object":"whatsapp_business_account","new_top":1,"entry":[{"id":"1","changes":[
            {"field":"messages","value":{"metadata":{"phone_number_id":"9"},"statuses":[
              {"id":"wamid.1","status":"warning","timestamp":"10","recipient_id":"1","shiny":true}]}}]}]}"#;
        let envelope = parse_webhook(body).unwrap();
        assert_eq!(envelope.extra["new_top"], 1);
        let status = &envelope.entry[0].changes[0].value.statuses[0];
        assert_eq!(status.status, StatusKind::Other("warning".into()));
        assert_eq!(status.extra["shiny"], true);
        let round_trip = serde_json::to_value(status).unwrap();
        assert_eq!(round_trip["status"], "warning");
        assert_eq!(round_trip["shiny"], true);
    }

    #[test]
    fn strings_are_borrowed_from_the_body_unless_they_had_escapes_and_fields_are_named_once() {
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[
            {"field":"messages","value":{"statuses":[{"id":"wamid.1","status":"failed","timestamp":"10",
              "errors":[{"code":131049,"title":"caf\u00e9","href":"\/docs"}],"sh\u00efny":"\"x\""}]}}]}]}"#;
        let envelope = parse_webhook(body).unwrap();
        let status = &envelope.entry[0].changes[0].value.statuses[0];
        assert!(status.id.is_borrowed(), "{:?}", status.id);
        let error = &status.errors[0];
        assert_eq!(error.title.as_deref(), Some("café"));
        assert!(!error.title.as_ref().unwrap().is_borrowed(), "an escaped string is decoded into its own copy");
        assert_eq!(error.href.as_deref(), Some("/docs"));
        assert_eq!(status.extra["shïny"], "\"x\"");
        assert!(parse_webhook(br#"{"object":"whatsapp_business_account","entry":[],"entry":[]}"#).is_err());
    }

    #[test]
    fn an_unknown_message_type_keeps_its_name_and_raw_object() {
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[
            {"field":"messages","value":{"messages":[
              {"id":"wamid.2","from":"1","timestamp":"10","type":"location",
               "location":{"latitude":1.5,"longitude":2.5}}]}}]}]}"#;
        let envelope = parse_webhook(body).unwrap();
        let message = &envelope.entry[0].changes[0].value.messages[0];
        match message.content() {
            MessageContent::Other { kind, raw } => {
                assert_eq!(kind, "location");
                assert_eq!(raw.unwrap()["latitude"], 1.5);
            }
            other => panic!("expected Other, got {other:?}"),
        }
    }

    #[test]
    fn a_user_preference_with_an_unknown_value_is_kept() {
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[
            {"field":"user_preferences","value":{"user_preferences":[
              {"wa_id":"1","value":"signup","signup_id":"s1","timestamp":1731705721}]}}]}]}"#;
        let envelope = parse_webhook(body).unwrap();
        let pref = &envelope.entry[0].changes[0].value.user_preferences[0];
        assert_eq!(pref.value, PreferenceValue::Other("signup".into()));
        assert_eq!(pref.timestamp.seconds(), 1_731_705_721);
        assert_eq!(pref.extra["signup_id"], "s1");
    }
}
