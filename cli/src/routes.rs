//! The local stack's routes, mirroring the HTTP API's: `GET`/`POST /webhook` and `POST /sends`,
//! plus read-only views for operators: `GET /sends/{id}`, `GET /recipients/{number}` and
//! `GET /campaigns/{campaign}/report` (JSON, or with `?format=text` or `csv` what `capguard
//! inspect` and `report` print, which they ask for while serve holds the data file), and the holds: `GET /holds` lists them and
//! `POST /holds/lift` lifts one (what `capguard holds` does on a store); `POST
//! /recipients/{number}/opt-in` records an opt-in (`capguard consent add`); `GET /limit` shows the
//! messaging limit and its count (`capguard limit`). Numbers in the views
//! are masked.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use shared::cloud::CloudApi;
use shared::domain::consent::OptIn;
use shared::domain::rules::e164_digits;
use shared::queue::local::LocalQueue;
use shared::report::Funnel;
use shared::schedule::RetryScheduler;
use shared::store::{SendId, SendStore};
use shared::usecase::holds::{self, HoldTarget};
use shared::usecase::http::{self, Reply, WebhookSecrets};
use shared::usecase::{Deps, Tally};
use shared::usecase::{consent, limit};
use shared::whatsapp::handshake::HandshakeQuery;
use shared::whatsapp::signature::SIGNATURE_HEADER;

use crate::views::{self, Format};

struct App<S, R, C> {
    deps: Arc<Deps<S, R, C>>,
    secrets: Arc<WebhookSecrets>,
    /// Where large send requests wait for their chunks' dispatch.
    queue: LocalQueue,
}

impl<S, R, C> Clone for App<S, R, C> {
    fn clone(&self) -> Self {
        Self { deps: Arc::clone(&self.deps), secrets: Arc::clone(&self.secrets), queue: self.queue.clone() }
    }
}

pub fn router<S, R, C>(deps: Arc<Deps<S, R, C>>, secrets: Arc<WebhookSecrets>, queue: LocalQueue) -> Router
where
    S: SendStore + 'static,
    R: RetryScheduler + 'static,
    C: CloudApi + 'static,
{
    Router::new()
        .route("/webhook", get(handshake::<S, R, C>).post(webhook::<S, R, C>))
        .route("/sends", post(sends::<S, R, C>))
        .route("/sends/{id}", get(send_view::<S, R, C>))
        .route("/recipients/{number}", get(recipient_view::<S, R, C>))
        .route("/recipients/{number}/opt-in", post(record_opt_in::<S, R, C>))
        .route("/campaigns/{campaign}/report", get(campaign_report::<S, R, C>))
        .route("/holds", get(holds_view::<S, R, C>))
        .route("/limit", get(limit_view::<S, R, C>))
        .route("/queue", get(queue_view::<S, R, C>))
        .route("/holds/lift", post(lift_hold::<S, R, C>))
        .layer(DefaultBodyLimit::max(http::MAX_BODY))
        .with_state(App { deps, secrets, queue })
}

/// The answer to a body that could not be read (too large: 413), logged.
fn refused(rejection: BytesRejection, route: &str) -> Response {
    tracing::warn!(route, status = %rejection.status(), %rejection, "request body refused");
    rejection.into_response()
}

fn respond(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, reply.content_type)], reply.body).into_response()
}

async fn handshake<S: SendStore, R: RetryScheduler, C: CloudApi>(
    State(app): State<App<S, R, C>>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = HandshakeQuery::from_query_string(query.as_deref().unwrap_or_default());
    respond(http::handshake(query, &app.secrets.verify_token))
}

async fn webhook<S: SendStore, R: RetryScheduler, C: CloudApi>(
    State(app): State<App<S, R, C>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return refused(rejection, "/webhook"),
    };
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    respond(http::webhook(&app.deps, &app.secrets.app_secret, signature, &body).await)
}

/// `POST /sends`. The dispatch runs on a task of its own, so that a client that closes its
/// connection does not stop it part-way: what it answers is lost, what it sends is not.
async fn sends<S: SendStore + 'static, R: RetryScheduler + 'static, C: CloudApi + 'static>(
    State(app): State<App<S, R, C>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return refused(rejection, "/sends"),
    };
    let received = tokio::time::Instant::now();
    let (deps, queue) = (Arc::clone(&app.deps), app.queue.clone());
    match tokio::spawn(async move { http::sends(&deps, &queue, &body, received).await }).await {
        Ok(reply) => respond(reply),
        Err(error) => {
            tracing::error!(%error, "the dispatch task failed");
            (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({ "error": "the dispatch failed", "retry": true })))
                .into_response()
        }
    }
}

fn store_failure(error: impl std::fmt::Display) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({ "error": error.to_string() }))).into_response()
}

/// A view's options: `?format=text|json|csv` (JSON unless given) and, for a recipient, the
/// `campaign` whose sends to them to show.
#[derive(Debug, Default)]
struct ViewQuery {
    format: Option<Format>,
    campaign: Option<String>,
}

impl ViewQuery {
    /// The options, or why they are not any (a format it does not know).
    fn parse(query: Option<&str>) -> Result<Self, String> {
        let mut parsed = Self::default();
        for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*name {
                "format" => {
                    let format =
                        Format::parse(&value).ok_or_else(|| format!("format {value:?} is not text, json or csv"))?;
                    parsed.format = Some(format);
                }
                "campaign" => parsed.campaign = Some(value.into_owned()),
                _ => {}
            }
        }
        Ok(parsed)
    }
}

/// A rendered view, with its content type.
fn rendered(text: String, format: Format) -> Response {
    let content_type = match format {
        Format::Json => "application/json",
        Format::Text => "text/plain; charset=utf-8",
        Format::Csv => "text/csv; charset=utf-8",
    };
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

async fn send_view<S: SendStore, R: RetryScheduler, C: CloudApi>(
    State(app): State<App<S, R, C>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = match ViewQuery::parse(query.as_deref()) {
        Ok(query) => query,
        Err(error) => return (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": error }))).into_response(),
    };
    let Ok(id) = SendId::try_from(id) else {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": "not a send id" }))).into_response();
    };
    match app.deps.store.get_send(&id).await {
        Ok(Some(send)) => match query.format.unwrap_or(Format::Json) {
            Format::Json => axum::Json(views::send(&send)).into_response(),
            format => rendered(views::send_text(&send), format),
        },
        Ok(None) => (StatusCode::NOT_FOUND, axum::Json(json!({ "error": format!("no send {id} in this store") })))
            .into_response(),
        Err(e) => store_failure(e),
    }
}

async fn recipient_view<S: SendStore, R: RetryScheduler, C: CloudApi>(
    State(app): State<App<S, R, C>>,
    Path(number): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = match ViewQuery::parse(query.as_deref()) {
        Ok(query) => query,
        Err(error) => return (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": error }))).into_response(),
    };
    let number = number.trim_start_matches('+').to_owned();
    let format = query.format.unwrap_or(Format::Json);
    let now = app.deps.clock.now();
    match views::recipient_report(&app.deps.store, &number, query.campaign.as_deref(), now, format).await {
        Ok(text) => rendered(text, format),
        Err(e) => store_failure(e),
    }
}

/// `POST /recipients/{number}/opt-in` with an opt-in (`{"source": …, "at": …, "note": …}`):
/// 200 with whether it was new, 400 for a bad number or opt-in.
async fn record_opt_in<S: SendStore, R: RetryScheduler, C: CloudApi>(
    State(app): State<App<S, R, C>>,
    Path(number): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return refused(rejection, "/recipients/{number}/opt-in"),
    };
    let bad_request = |error: String| (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": error }))).into_response();
    // As the other recipient routes: the number with or without its `+`.
    let number = match e164_digits(&format!("+{}", number.trim_start_matches('+')), None) {
        Ok(number) => number,
        Err(problem) => return bad_request(format!("the number {problem}")),
    };
    let opt_in = match serde_json::from_slice::<OptIn>(&body) {
        Ok(opt_in) => opt_in,
        Err(e) => return bad_request(format!("not an opt-in: {e}")),
    };
    let now = app.deps.clock.now();
    let problems = opt_in.problems(now);
    if !problems.is_empty() {
        return bad_request(problems.join("; "));
    }
    match consent::record_opt_in(&app.deps.store, &number, &opt_in, None, now).await {
        Ok(recorded) => axum::Json(json!({ "recorded": recorded })).into_response(),
        Err(e) => store_failure(e),
    }
}

async fn campaign_report<S: SendStore, R: RetryScheduler, C: CloudApi>(
    State(app): State<App<S, R, C>>,
    Path(campaign): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = match ViewQuery::parse(query.as_deref()) {
        Ok(query) => query,
        Err(error) => return (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": error }))).into_response(),
    };
    let format = query.format.unwrap_or(Format::Json);
    match views::campaign_sends(&app.deps.store, &campaign).await {
        Ok(sends) if sends.is_empty() && format != Format::Json => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "error": format!("campaign {campaign:?} has no sends in this store") })),
        )
            .into_response(),
        Ok(sends) if format == Format::Json => axum::Json(Funnel::of(&sends)).into_response(),
        Ok(sends) => match views::campaign_report(&campaign, &sends, format) {
            Ok(text) => rendered(text, format),
            Err(e) => store_failure(e),
        },
        Err(e) => store_failure(e),
    }
}

async fn holds_view<S: SendStore, R: RetryScheduler, C: CloudApi>(State(app): State<App<S, R, C>>) -> Response {
    match holds::list(&app.deps.store, &app.deps.rules.holds, app.deps.clock.now()).await {
        Ok(holds) => axum::Json(holds).into_response(),
        Err(e) => store_failure(e),
    }
}

/// `GET /limit`: how the messaging limit stands (`?format=text` for an operator).
async fn limit_view<S: SendStore, R: RetryScheduler, C: CloudApi>(
    State(app): State<App<S, R, C>>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = match ViewQuery::parse(query.as_deref()) {
        Ok(query) => query,
        Err(error) => return (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": error }))).into_response(),
    };
    match limit::view(&app.deps.store, &app.deps.rules, app.deps.clock.now()).await {
        Ok(view) => match query.format.unwrap_or(Format::Json) {
            Format::Json => axum::Json(view).into_response(),
            format => rendered(view.text(), format),
        },
        Err(e) => store_failure(e),
    }
}

/// `GET /queue`: how many chunks of large send requests wait to be dispatched (the one being
/// dispatched included): `{"chunks": n}`.
async fn queue_view<S: SendStore, R: RetryScheduler, C: CloudApi>(State(app): State<App<S, R, C>>) -> Response {
    match app.queue.queued().await {
        Ok(chunks) => axum::Json(json!({ "chunks": chunks })).into_response(),
        Err(e) => store_failure(e),
    }
}

/// `POST /holds/lift` with `{"phone_number_id": …}` for a halted number, plus `"template"` and
/// `"language"` for a held template: 200 when a hold was lifted, 404 when there was none.
async fn lift_hold<S: SendStore, R: RetryScheduler, C: CloudApi>(
    State(app): State<App<S, R, C>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return refused(rejection, "/holds/lift"),
    };
    let bad_request = |error: String| (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": error }))).into_response();
    let key = match serde_json::from_slice::<HoldTarget>(&body)
        .map_err(|e| e.to_string())
        .and_then(|t| t.key().map_err(|e| e.to_string()))
    {
        Ok(key) => key,
        Err(error) => return bad_request(error),
    };
    let mut tally = Tally::default();
    match holds::lift(&app.deps, &key, "by_operator", &mut tally).await {
        Ok(true) => axum::Json(json!({ "lifted": key.to_string() })).into_response(),
        Ok(false) => {
            (StatusCode::NOT_FOUND, axum::Json(json!({ "error": format!("no hold on {key}") }))).into_response()
        }
        Err(e) => store_failure(e),
    }
}
