//! The local stack's routes, mirroring the HTTP API's: `GET`/`POST /webhook` and `POST /sends`,
//! plus read-only views for operators: `GET /sends/{id}`, `GET /recipients/{number}` and
//! `GET /campaigns/{campaign}/report`, and the holds: `GET /holds` lists them and
//! `POST /holds/lift` lifts one (what `capguard holds` does on a store). Numbers in the views are
//! masked.

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
use shared::queue::local::LocalQueue;
use shared::report::Funnel;
use shared::schedule::RetryScheduler;
use shared::store::{SendId, SendStore};
use shared::usecase::holds::{self, HoldTarget};
use shared::usecase::http::{self, Reply, WebhookSecrets};
use shared::usecase::{Deps, Tally};
use shared::whatsapp::handshake::HandshakeQuery;
use shared::whatsapp::signature::SIGNATURE_HEADER;

use crate::views;

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
        .route("/campaigns/{campaign}/report", get(campaign_report::<S, R, C>))
        .route("/holds", get(holds_view::<S, R, C>))
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

async fn send_view<S: SendStore, R: RetryScheduler, C: CloudApi>(
    State(app): State<App<S, R, C>>,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = SendId::try_from(id) else {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": "not a send id" }))).into_response();
    };
    match app.deps.store.get_send(&id).await {
        Ok(Some(send)) => axum::Json(views::send(&send)).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, axum::Json(json!({ "error": "no such send" }))).into_response(),
        Err(e) => store_failure(e),
    }
}

async fn recipient_view<S: SendStore, R: RetryScheduler, C: CloudApi>(
    State(app): State<App<S, R, C>>,
    Path(number): Path<String>,
) -> Response {
    let number = number.trim_start_matches('+').to_owned();
    let recipient = match app.deps.store.get_recipient(&number).await {
        Ok(recipient) => recipient,
        Err(e) => return store_failure(e),
    };
    match app.deps.store.waiting_for(&number).await {
        Ok(waiting) => axum::Json(views::recipient(&recipient, &waiting, app.deps.clock.now())).into_response(),
        Err(e) => store_failure(e),
    }
}

async fn campaign_report<S: SendStore, R: RetryScheduler, C: CloudApi>(
    State(app): State<App<S, R, C>>,
    Path(campaign): Path<String>,
) -> Response {
    match views::campaign_sends(&app.deps.store, &campaign).await {
        Ok(sends) => axum::Json(Funnel::of(&sends)).into_response(),
        Err(e) => store_failure(e),
    }
}

async fn holds_view<S: SendStore, R: RetryScheduler, C: CloudApi>(State(app): State<App<S, R, C>>) -> Response {
    match holds::list(&app.deps.store, &app.deps.rules.holds, app.deps.clock.now()).await {
        Ok(holds) => axum::Json(holds).into_response(),
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
