//! The webhook endpoint on API Gateway's HTTP API: `GET /webhook` answers Meta's verification
//! handshake, `POST /webhook` checks the signature over the raw body and hands the batch to the
//! intake use case (`shared::usecase::http` decides the answers).

use lambda_http::http::Method;
use lambda_http::{Body, Request, RequestExt, Response};
use shared::cloud::CloudApi;
use shared::schedule::RetryScheduler;
use shared::store::SendStore;
use shared::usecase::http::{self, Reply};
use shared::usecase::{Deps, Tally};
use shared::whatsapp::handshake::HandshakeQuery;
use shared::whatsapp::signature::{AppSecret, SIGNATURE_HEADER};

/// What the endpoint checks requests against.
pub struct WebhookSecrets {
    pub app_secret: AppSecret,
    pub verify_token: String,
}

/// Answers one request, and what the intake counted.
pub async fn handle<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    secrets: &WebhookSecrets,
    request: Request,
) -> (Response<Body>, Tally) {
    let reply = match *request.method() {
        Method::GET => {
            let params = request.query_string_parameters();
            http::handshake(HandshakeQuery::from_pairs(params.iter()), &secrets.verify_token)
        }
        Method::POST => {
            // lambda_http has already undone API Gateway's base64: these are the bytes Meta signed.
            let signature = request.headers().get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
            http::webhook(deps, &secrets.app_secret, signature, request.body().as_ref()).await
        }
        _ => {
            Reply { status: 405, content_type: "text/plain", body: "GET or POST only".into(), tally: Tally::default() }
        }
    };
    let response = Response::builder()
        .status(reply.status)
        .header("content-type", reply.content_type)
        .body(Body::from(reply.body))
        .expect("a valid status and a static header make a valid response");
    (response, reply.tally)
}
