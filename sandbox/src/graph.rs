//! The Graph API surface: `POST /{version}/{phone-number-id}/messages` and
//! `/marketing_messages`, answering as Meta does (docs/whatsapp.md#sending).
//!
//! A send is checked in Meta's order: the token (190), the body's shape (100, 131008, 132000),
//! the template (132001; 134100 for a non-marketing template on `/marketing_messages`), then the
//! throughput (130429) and pair (131056) limits. A send that passes is answered 200 with a fresh
//! wamid, and its webhooks go to a background task that posts each when it falls due.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::Map;
use shared::clock::Clock;
use shared::cloud::Endpoint;
use shared::domain::rules::Category;
use shared::whatsapp::send::{
    GraphError, GraphErrorData, GraphErrorResponse, SendRequest, SendResponse, SentContact, SentMessage,
};

use crate::SandboxState;
use crate::config::HANG;

pub(crate) fn router(state: Arc<SandboxState>) -> Router {
    Router::new()
        .route("/{version}/{phone_number_id}/messages", post(messages))
        .route("/{version}/{phone_number_id}/marketing_messages", post(marketing_messages))
        .route("/sandbox/stats", get(stats))
        .fallback(unknown_path)
        .with_state(state)
}

async fn messages(
    State(state): State<Arc<SandboxState>>,
    Path((_version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(send(&state, &phone_number_id, Endpoint::Messages, &headers, &body)).await
}

async fn marketing_messages(
    State(state): State<Arc<SandboxState>>,
    Path((_version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(send(&state, &phone_number_id, Endpoint::MarketingMessages, &headers, &body)).await
}

/// What a send comes to: an answer now, or a request held unanswered.
enum Sent {
    Now(Response),
    Hang,
}

async fn answer(sent: Sent) -> Response {
    match sent {
        Sent::Now(response) => response,
        // The client gives up long before; a closed connection drops this wait.
        Sent::Hang => {
            tokio::time::sleep(HANG).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
    }
}

/// `GET /sandbox/stats`: the counters so far, for a client in another process (a bench, a test).
/// Not a Graph path: Meta has nothing like it.
async fn stats(State(state): State<Arc<SandboxState>>) -> Json<crate::Stats> {
    Json(state.stats())
}

async fn unknown_path(State(state): State<Arc<SandboxState>>) -> Response {
    refuse(&state, Refusal::new(StatusCode::BAD_REQUEST, 100, "Unknown path components", None))
}

/// A Graph error about to be answered.
struct Refusal {
    http: StatusCode,
    code: i64,
    message: &'static str,
    details: Option<String>,
}

impl Refusal {
    fn new(http: StatusCode, code: i64, message: &'static str, details: Option<String>) -> Self {
        Self { http, code, message, details }
    }

    /// A synchronous limit, in Meta's words.
    fn limit(code: i64) -> Self {
        match code {
            130429 => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                code,
                "Rate limit hit",
                Some("Cloud API message throughput has been reached.".into()),
            ),
            crate::config::MESSAGING_LIMIT_CODE => Self::new(
                StatusCode::BAD_REQUEST,
                code,
                "Spam rate limit hit",
                Some("Message failed to send because there are restrictions on how many messages can be sent from this phone number.".into()),
            ),
            _ => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                code,
                "(Business Account, Consumer Account) pair rate limit hit",
                Some("Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time.".into()),
            ),
        }
    }
}

fn send(
    state: &Arc<SandboxState>,
    phone_number_id: &str,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: &[u8],
) -> Sent {
    let (request, category) = match check(state, endpoint, headers, body) {
        Ok(checked) => checked,
        Err(refusal) => return Sent::Now(refuse(state, refusal)),
    };
    let now = state.config.clock.now();
    let accepted = {
        let mut world = state.world();
        world
            .admit(now, phone_number_id, &request.to)
            .map(|()| world.accept(now, phone_number_id, &request, category, endpoint))
    };
    let accepted = match accepted {
        Ok(accepted) => accepted,
        Err(code) => return Sent::Now(refuse(state, Refusal::limit(code))),
    };
    if accepted.hangs {
        state.count(|stats| stats.hung += 1);
        return Sent::Hang;
    }
    state.count(|stats| {
        stats.accepted += 1;
        stats.paced += u64::from(accepted.paced);
    });
    state.post_in_background(accepted.webhooks);
    let response = SendResponse {
        messaging_product: Some("whatsapp".into()),
        contacts: vec![SentContact {
            input: Some(request.to.clone()),
            wa_id: Some(state.config.known_as(&request.to)),
            extra: Map::new(),
        }],
        messages: vec![SentMessage {
            id: accepted.wamid,
            // Meta reports `message_status` for marketing templates, and for a template it paces.
            message_status: match (accepted.paced, category) {
                (true, _) => Some("held_for_quality_assessment".into()),
                (false, Category::Marketing) => Some("accepted".into()),
                (false, _) => None,
            },
            extra: Map::new(),
        }],
        extra: Map::new(),
    };
    Sent::Now(Json(response).into_response())
}

/// Everything about a send that does not depend on the limits: its token, shape and template.
fn check(
    state: &SandboxState,
    endpoint: Endpoint,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(SendRequest, Category), Refusal> {
    let token =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if token != Some(state.config.access_token.as_str()) {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            190,
            "Invalid OAuth access token - Cannot parse access token",
            None,
        ));
    }
    let request: SendRequest = serde_json::from_slice(body)
        .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, 100, "Invalid parameter", Some(e.to_string())))?;
    let problems = request.problems();
    if !problems.is_empty() {
        let (code, message) = if problems.iter().any(|p| p.ends_with("is required")) {
            (131008, "Required parameter is missing")
        } else if problems.iter().any(|p| p.contains("parameters")) {
            (132000, "Number of parameters does not match the expected number of params")
        } else {
            (100, "Invalid parameter")
        };
        return Err(Refusal::new(StatusCode::BAD_REQUEST, code, message, Some(problems.join("; "))));
    }
    let (name, language) =
        request.template.as_ref().map(|t| (t.name.as_str(), t.language.code.as_str())).unwrap_or_default();
    let Some(category) = state.config.templates.get(name).copied() else {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            132001,
            "Template name does not exist in the translation",
            Some(format!("template name ({name}) does not exist in {language}")),
        ));
    };
    if let Some(code) = state.world().template_stopped(name) {
        let (message, details) = match code {
            132015 => ("Template is Paused", "the template is paused because of low quality"),
            _ => ("Template is Disabled", "the template has been disabled"),
        };
        return Err(Refusal::new(StatusCode::BAD_REQUEST, code, message, Some(format!("{name}: {details}"))));
    }
    if endpoint == Endpoint::MarketingMessages && category != Category::Marketing {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            134100,
            "Marketing Messages API only accepts marketing templates",
            Some(format!("template {name} is a {} template; send it to /messages", category.as_str())),
        ));
    }
    Ok((request, category))
}

fn refuse(state: &SandboxState, refusal: Refusal) -> Response {
    state.count(|stats| stats.record_refused(refusal.code));
    let error = GraphError {
        code: refusal.code,
        message: Some(format!("(#{}) {}", refusal.code, refusal.message)),
        kind: Some("OAuthException".into()),
        error_subcode: None,
        error_data: refusal.details.map(|details| GraphErrorData {
            messaging_product: Some("whatsapp".into()),
            details: Some(details),
            extra: Map::new(),
        }),
        fbtrace_id: Some(state.world().next_trace_id()),
        is_transient: None,
        error_user_title: None,
        error_user_msg: None,
        extra: Map::new(),
    };
    (refusal.http, Json(GraphErrorResponse { error })).into_response()
}
