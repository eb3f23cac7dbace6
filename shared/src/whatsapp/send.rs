//! The Graph API's template send: `POST /{version}/{phone-number-id}/messages` (or
//! `/marketing_messages`), its success response and its error response (docs/whatsapp.md#sending).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A template message request.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct SendRequest {
    pub messaging_product: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_type: Option<String>,
    /// The recipient in international form, with `+`.
    pub to: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Template>,
    /// Ours to set, returned on status webhooks; at most [`MAX_CALLBACK_DATA_LEN`] characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub biz_opaque_callback_data: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Meta's limit on `biz_opaque_callback_data`.
pub const MAX_CALLBACK_DATA_LEN: usize = 512;

impl SendRequest {
    /// A template send to one individual.
    pub fn template(to: impl Into<String>, template: Template, callback_data: Option<String>) -> Self {
        Self {
            messaging_product: "whatsapp".into(),
            recipient_type: Some("individual".into()),
            to: to.into(),
            kind: "template".into(),
            template: Some(template),
            biz_opaque_callback_data: callback_data,
            extra: Map::new(),
        }
    }

    /// Every way this request breaks the template send's documented shape, in Meta's words where
    /// Meta has them; empty when it is well-formed.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.messaging_product != "whatsapp" {
            problems.push(format!("messaging_product must be \"whatsapp\", not {:?}", self.messaging_product));
        }
        if let Some(kind) = &self.recipient_type
            && kind != "individual"
            && kind != "group"
        {
            problems.push(format!("recipient_type must be \"individual\" or \"group\", not {kind:?}"));
        }
        if !is_international(&self.to) {
            problems.push(format!("to must be +, a country code and digits, not {:?}", self.to));
        }
        if self.kind != "template" {
            problems.push(format!("type must be \"template\", not {:?}", self.kind));
        }
        match &self.template {
            None => problems.push("template is required".into()),
            Some(template) => template.collect_problems(&mut problems),
        }
        if let Some(data) = &self.biz_opaque_callback_data
            && data.chars().count() > MAX_CALLBACK_DATA_LEN
        {
            problems.push(format!("biz_opaque_callback_data is longer than {MAX_CALLBACK_DATA_LEN} characters"));
        }
        problems
    }
}

fn is_international(to: &str) -> bool {
    to.strip_prefix('+')
        .is_some_and(|digits| (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Template {
    pub name: String,
    pub language: Language,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<Component>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Template {
    fn collect_problems(&self, problems: &mut Vec<String>) {
        if self.name.trim().is_empty() {
            problems.push("template.name is required".into());
        }
        if self.language.code.trim().is_empty() {
            problems.push("template.language.code is required".into());
        }
        for (i, component) in self.components.iter().enumerate() {
            component.collect_problems(i, problems);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Language {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// A `header`, `body` or `button` component with its parameters.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Component {
    #[serde(rename = "type")]
    pub kind: String,
    /// Buttons only: `quick_reply`, `url`, `copy_code`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_type: Option<String>,
    /// Buttons only: the button's position, as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Parameter>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Component {
    fn collect_problems(&self, i: usize, problems: &mut Vec<String>) {
        let at = format!("template.components[{i}]");
        match self.kind.as_str() {
            "header" | "body" | "footer" | "carousel" | "limited_time_offer" => {}
            "button" => {
                if self.sub_type.is_none() {
                    problems.push(format!("{at}: a button needs sub_type"));
                }
                if self.index.as_deref().is_none_or(|i| i.parse::<u8>().is_err()) {
                    problems.push(format!("{at}: a button needs index as a string of digits"));
                }
            }
            other => problems.push(format!("{at}: unknown component type {other:?}")),
        }
        let named = self.parameters.iter().filter(|p| p.parameter_name.is_some()).count();
        if named != 0 && named != self.parameters.len() {
            problems.push(format!("{at}: named and positional parameters are mixed"));
        }
        for (j, parameter) in self.parameters.iter().enumerate() {
            if let Some(problem) = parameter.problem() {
                problems.push(format!("{at}.parameters[{j}]: {problem}"));
            }
        }
    }
}

/// One parameter: `text`, `payload`, `currency`, `date_time`, `image`, … Typed for the ones we
/// fill; the others keep their object in `extra` under their type's name.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Parameter {
    #[serde(rename = "type")]
    pub kind: String,
    /// Set when the template was created with named parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Parameter {
    /// A positional text parameter.
    pub fn text(text: impl Into<String>) -> Self {
        Self { kind: "text".into(), parameter_name: None, text: Some(text.into()), payload: None, extra: Map::new() }
    }

    /// A named text parameter.
    pub fn named_text(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self { parameter_name: Some(name.into()), ..Self::text(text) }
    }

    /// A quick-reply button's payload, returned in the user's tap.
    pub fn payload(payload: impl Into<String>) -> Self {
        Self {
            kind: "payload".into(),
            parameter_name: None,
            text: None,
            payload: Some(payload.into()),
            extra: Map::new(),
        }
    }

    fn problem(&self) -> Option<String> {
        match self.kind.as_str() {
            "text" if self.text.is_none() => Some("a text parameter needs text".into()),
            "payload" if self.payload.is_none() => Some("a payload parameter needs payload".into()),
            "text" | "payload" => None,
            kind if self.extra.contains_key(kind) => None,
            kind => Some(format!("a {kind} parameter needs a {kind:?} object")),
        }
    }
}

/// 200 from the send endpoint: accepted, not delivered.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct SendResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_product: Option<String>,
    #[serde(default)]
    pub contacts: Vec<SentContact>,
    pub messages: Vec<SentMessage>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl SendResponse {
    /// The wamid of the (single) message the request sent.
    pub fn wamid(&self) -> Option<&str> {
        self.messages.first().map(|m| m.id.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct SentContact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct SentMessage {
    pub id: String,
    /// Only for paced templates: `accepted` or `held_for_quality_assessment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_status: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A Graph error response: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct GraphErrorResponse {
    pub error: GraphError,
}

/// Decide on `code` alone; the rest is for people.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct GraphError {
    pub code: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_subcode: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_data: Option<GraphErrorData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbtrace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_transient: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_user_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_user_msg: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct GraphErrorData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn documented_request() -> Value {
        json!({
          "messaging_product": "whatsapp", "recipient_type": "individual", "to": "+16505551234", "type": "template",
          "template": { "name": "spring_sale", "language": { "code": "en_US" }, "components": [
              { "type": "header", "parameters": [ { "type": "image", "image": { "id": "4490709327384033" } } ] },
              { "type": "body", "parameters": [ { "type": "text", "text": "Alex" },
                                               { "type": "text", "parameter_name": "code", "text": "FEST20" } ] },
              { "type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [ { "type": "payload", "payload": "STOP_PROMO" } ] },
              { "type": "button", "sub_type": "url", "index": "1", "parameters": [ { "type": "text", "text": "A12345" } ] } ] },
          "biz_opaque_callback_data": "msg=01HX;attempt=1"
        })
    }

    #[test]
    fn the_documented_request_round_trips_unchanged() {
        let request: SendRequest = serde_json::from_value(documented_request()).unwrap();
        assert_eq!(serde_json::to_value(&request).unwrap(), documented_request());
        let body = &request.template.as_ref().unwrap().components[1];
        assert_eq!(body.parameters[1].parameter_name.as_deref(), Some("code"));
        assert_eq!(
            request.template.as_ref().unwrap().components[2].parameters[0].payload.as_deref(),
            Some("STOP_PROMO")
        );
    }

    #[test]
    fn mixing_named_and_positional_parameters_is_a_problem() {
        let request: SendRequest = serde_json::from_value(documented_request()).unwrap();
        let problems = request.problems();
        assert_eq!(problems, vec!["template.components[1]: named and positional parameters are mixed".to_owned()]);
    }

    #[test]
    fn a_well_formed_request_has_no_problems() {
        let template = Template {
            name: "spring_sale".into(),
            language: Language { code: "en_US".into(), policy: None },
            components: vec![Component {
                kind: "body".into(),
                sub_type: None,
                index: None,
                parameters: vec![Parameter::named_text("name", "Alex"), Parameter::named_text("code", "FEST20")],
                extra: Map::new(),
            }],
            extra: Map::new(),
        };
        let request = SendRequest::template("+447700900123", template, Some("send=1;attempt=1".into()));
        assert_eq!(request.problems(), Vec::<String>::new());
    }

    #[test]
    fn a_malformed_request_lists_every_problem() {
        let request: SendRequest = serde_json::from_value(json!({
            "messaging_product": "sms", "to": "16505551234", "type": "text",
            "template": { "name": "", "language": { "code": "" }, "components": [
                { "type": "button", "parameters": [ { "type": "text" }, { "type": "image" } ] },
                { "type": "sidebar" } ] }
        }))
        .unwrap();
        let problems = request.problems();
        assert_eq!(problems.len(), 10, "{problems:#?}");
    }

    #[test]
    fn success_responses_parse_with_and_without_message_status() {
        let paced: SendResponse = serde_json::from_value(json!({
            "messaging_product": "whatsapp", "contacts": [ { "input": "+16505551234", "wa_id": "16505551234" } ],
            "messages": [ { "id": "wamid.HBgL", "message_status": "accepted" } ] }))
        .unwrap();
        assert_eq!(paced.wamid(), Some("wamid.HBgL"));
        assert_eq!(paced.messages[0].message_status.as_deref(), Some("accepted"));

        let legacy: SendResponse =
            serde_json::from_str(include_str!("../../../tests/fixtures/graph/send_response_legacy.json")).unwrap();
        assert_eq!(legacy.wamid(), Some("wamid.gBGGSFcCNEOPAgkO_KJ55r4w_ww"));
        assert_eq!(legacy.messages[0].message_status, None);
    }

    #[test]
    fn the_documented_error_response_parses() {
        let response: GraphErrorResponse = serde_json::from_value(json!({ "error": {
            "message": "(#130429) Rate limit hit", "type": "OAuthException", "code": 130429,
            "error_data": { "messaging_product": "whatsapp", "details": "Cloud API message throughput has been reached." },
            "error_subcode": 2494055, "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam" } }))
        .unwrap();
        assert_eq!(response.error.code, 130429);
        assert_eq!(response.error.error_subcode, Some(2_494_055));
        assert_eq!(
            response.error.error_data.unwrap().details.as_deref(),
            Some("Cloud API message throughput has been reached.")
        );
    }
}
