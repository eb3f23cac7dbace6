//! [`CloudApi`] over HTTPS with reqwest and rustls: `POST {base}/{version}/{phone-number-id}/messages`
//! with a bearer token, as docs/whatsapp.md#sending describes.
//!
//! One [`reqwest::Client`] is built per [`HttpCloudApi`] and reused by every call, so a campaign
//! rides on a few kept-alive connections instead of a TLS handshake per message. Redirects are not
//! followed: Graph does not redirect sends, and following one would post the message again.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use reqwest::{Client, StatusCode};

use super::{CloudApi, CloudApiError, Endpoint};
use crate::whatsapp::send::{GraphErrorResponse, SendRequest, SendResponse};

/// Meta's Graph API.
pub const DEFAULT_BASE_URL: &str = "https://graph.facebook.com";
/// The Graph API version the current documentation uses.
pub const DEFAULT_API_VERSION: &str = "v25.0";
/// How long to wait for a connection: nothing has been sent until it is up.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = crate::budget::CONNECT_TIMEOUT;
/// How long to wait for the whole exchange, after which the outcome is unknown.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = crate::budget::REQUEST_TIMEOUT;

/// A Graph API access token. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// Where and how [`HttpCloudApi`] sends.
#[derive(Debug, Clone)]
pub struct HttpCloudApiConfig {
    pub token: AccessToken,
    /// Scheme and host, without the version: [`DEFAULT_BASE_URL`], or the sandbox's address.
    pub base_url: String,
    pub api_version: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl HttpCloudApiConfig {
    /// Meta's Graph API with the default version and timeouts.
    pub fn new(token: AccessToken) -> Self {
        Self {
            token,
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_version: DEFAULT_API_VERSION.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    pub fn with_base_url(self, base_url: impl Into<String>) -> Self {
        Self { base_url: base_url.into(), ..self }
    }

    /// The configuration for `token`, with Meta's address and API version unless others are given
    /// (the sandbox's address, a pinned version).
    pub fn graph(token: AccessToken, base_url: Option<String>, api_version: Option<String>) -> Self {
        let defaults = Self::new(token);
        Self {
            base_url: base_url.unwrap_or(defaults.base_url),
            api_version: api_version.unwrap_or(defaults.api_version),
            ..defaults
        }
    }
}

/// The HTTP client could not be built (the TLS backend failed to initialise).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the Cloud API's HTTP client: {0}")]
pub struct ClientBuildError(#[source] reqwest::Error);

/// Where the access token can be read again: SSM Parameter Store in Lambda. It answers the
/// current token, or why it could not read one.
pub type TokenSource =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<AccessToken, TokenReadError>> + Send>> + Send + Sync>;

/// Why a [`TokenSource`] answered no token (never with the token in it).
#[derive(Debug, thiserror::Error)]
pub enum TokenReadError {
    /// The store could not be read; `detail` is its own error.
    #[error("reading {name}: {detail}")]
    Unreadable { name: String, detail: String },
    #[error("{name} has no value")]
    Empty { name: String },
}

/// The Cloud API over HTTPS.
#[derive(Clone)]
pub struct HttpCloudApi {
    client: Client,
    config: HttpCloudApiConfig,
    /// The token in use: the configured one until a refresh reads another.
    token: Arc<RwLock<AccessToken>>,
    /// When a refresh last read a token other than the one in use.
    changed_at: Arc<RwLock<Option<tokio::time::Instant>>>,
    source: Option<TokenSource>,
}

impl std::fmt::Debug for HttpCloudApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCloudApi")
            .field("config", &self.config)
            .field("refreshable", &self.source.is_some())
            .finish()
    }
}

impl HttpCloudApi {
    pub fn new(config: HttpCloudApiConfig) -> Result<Self, ClientBuildError> {
        let client = Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(ClientBuildError)?;
        let token = Arc::new(RwLock::new(config.token.clone()));
        Ok(Self { client, config, token, changed_at: Arc::default(), source: None })
    }

    /// Reads the token from `source` again when Meta refuses one (see [`CloudApi::refresh_token`]).
    pub fn with_token_source(self, source: TokenSource) -> Self {
        Self { source: Some(source), ..self }
    }

    /// Opens the connection to the Cloud API before a send needs it (TCP, and TLS against Meta), so
    /// that a cold start's first send does not pay the handshakes: a `HEAD` of the API's root,
    /// whose answer does not matter. Returns whether any answer came; a failure is only logged,
    /// since the first send connects anyway. It waits no longer than a connection may take, so a
    /// slow Meta cannot hold up a start.
    pub async fn warm(&self) -> bool {
        let url = format!("{}/{}/", self.config.base_url.trim_end_matches('/'), self.config.api_version);
        match self.client.head(url).timeout(self.config.connect_timeout).send().await {
            Ok(_) => true,
            Err(error) => {
                let error = error_chain(&error);
                tracing::warn!(%error, "could not open the Cloud API connection ahead of the first send");
                false
            }
        }
    }

    fn current_token(&self) -> AccessToken {
        self.token.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn url(&self, phone_number_id: &str, endpoint: Endpoint) -> String {
        format!(
            "{}/{}/{}/{}",
            self.config.base_url.trim_end_matches('/'),
            self.config.api_version,
            phone_number_id,
            endpoint.path()
        )
    }
}

impl CloudApi for HttpCloudApi {
    async fn send_template(
        &self,
        phone_number_id: &str,
        request: &SendRequest,
        endpoint: Endpoint,
    ) -> Result<SendResponse, CloudApiError> {
        let response = self
            .client
            .post(self.url(phone_number_id, endpoint))
            .bearer_auth(&self.current_token().0)
            .json(request)
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = response.status();
        // The request is known to have arrived: whatever stops the answer now leaves it unknown.
        let body = response.bytes().await.map_err(|_| CloudApiError::Timeout { request_sent: true })?;
        read_answer(status, &body)
    }

    /// Calls made at once all fail with the old token, and only the first refresh finds a new
    /// one: a token that changed less than a call's longest time ago (connect and request
    /// timeouts) may be newer than the one a refused call used, so that call too is worth its
    /// one more try.
    async fn refresh_token(&self) -> bool {
        let Some(source) = &self.source else { return false };
        match source().await {
            Ok(fresh) => {
                let now = tokio::time::Instant::now();
                let mut token = self.token.write().unwrap_or_else(PoisonError::into_inner);
                let mut changed_at = self.changed_at.write().unwrap_or_else(PoisonError::into_inner);
                if *token != fresh {
                    *token = fresh;
                    *changed_at = Some(now);
                }
                let in_flight = self.config.connect_timeout + self.config.request_timeout;
                changed_at.is_some_and(|at| now.duration_since(at) <= in_flight)
            }
            Err(error) => {
                tracing::warn!(%error, "could not read the access token again");
                false
            }
        }
    }
}

/// What a failed exchange says about whether the request left.
fn transport_error(error: &reqwest::Error) -> CloudApiError {
    if error.is_connect() {
        if error.is_timeout() {
            CloudApiError::Timeout { request_sent: false }
        } else {
            CloudApiError::Unreachable(error_chain(error))
        }
    } else if error.is_builder() {
        CloudApiError::Unreachable(error_chain(error))
    } else {
        // A timeout or a connection broken after connecting: the request may be at Meta.
        CloudApiError::Timeout { request_sent: true }
    }
}

/// reqwest's own message is generic ("error sending request"); the cause is in its sources.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// An accepted send, a Graph error, or neither.
fn read_answer(status: StatusCode, body: &[u8]) -> Result<SendResponse, CloudApiError> {
    let http_status = status.as_u16();
    let bad_response = || CloudApiError::BadResponse { http_status, body: String::from_utf8_lossy(body).into_owned() };
    if status.is_success() {
        let response: SendResponse = serde_json::from_slice(body).map_err(|_| bad_response())?;
        if response.wamid().is_none() {
            return Err(bad_response());
        }
        return Ok(response);
    }
    match serde_json::from_slice::<GraphErrorResponse>(body) {
        Ok(GraphErrorResponse { error }) => Err(CloudApiError::Graph { http_status, error: Box::new(error) }),
        Err(_) => Err(bad_response()),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use axum::extract::{ConnectInfo, Path, State};
    use axum::http::{HeaderMap, StatusCode as AxumStatus};
    use axum::response::IntoResponse;
    use axum::routing::post;
    use axum::{Json, Router};
    use serde_json::{Value, json};

    use super::*;
    use crate::whatsapp::send::{Language, Template};

    #[tokio::test(start_paused = true)]
    async fn a_rotated_token_is_worth_one_more_try_to_every_call_refused_meanwhile() {
        let source: TokenSource = Arc::new(|| Box::pin(async { Ok(AccessToken::new("rotated")) }));
        let config = HttpCloudApiConfig::new(AccessToken::new("expired"));
        let api = HttpCloudApi::new(config.clone()).unwrap().with_token_source(source);
        assert!(api.refresh_token().await, "the first refusal reads the rotated token");
        assert_eq!(api.current_token(), AccessToken::new("rotated"));
        assert!(api.refresh_token().await, "a call refused with the old token at the same time tries again too");
        tokio::time::advance(config.connect_timeout + config.request_timeout + Duration::from_secs(1)).await;
        assert!(!api.refresh_token().await, "a refusal long after is the rotated token's own");
        assert!(!HttpCloudApi::new(config).unwrap().refresh_token().await, "no source, nothing to read");
    }

    /// What the test server saw: each request's path, token, body and the client's address.
    #[derive(Debug, Clone)]
    struct Seen {
        path: String,
        authorization: Option<String>,
        body: Value,
        peer: SocketAddr,
    }

    type Log = Arc<Mutex<Vec<Seen>>>;

    /// A stand-in Graph API whose answer depends on the phone number id, so that one server
    /// covers every case.
    async fn answer(
        State(log): State<Log>,
        ConnectInfo(peer): ConnectInfo<SocketAddr>,
        Path((version, phone, endpoint)): Path<(String, String, String)>,
        headers: HeaderMap,
        Json(body): Json<Value>,
    ) -> axum::response::Response {
        let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
        log.lock().unwrap().push(Seen { path: format!("/{version}/{phone}/{endpoint}"), authorization, body, peer });
        match phone.as_str() {
            "paced" => Json(json!({
                "messaging_product": "whatsapp",
                "contacts": [ { "input": "+919812345678", "wa_id": "919812345678" } ],
                "messages": [ { "id": "wamid.PACED", "message_status": "accepted" } ] }))
            .into_response(),
            "plain" => Json(json!({ "messaging_product": "whatsapp", "messages": [ { "id": "wamid.PLAIN" } ] }))
                .into_response(),
            "refused" => (
                AxumStatus::BAD_REQUEST,
                Json(json!({ "error": {
                    "message": "(#131056) (Business Account, Consumer Account) pair rate limit hit",
                    "type": "OAuthException", "code": 131056,
                    "error_data": { "messaging_product": "whatsapp", "details": "Too many messages to this user." },
                    "fbtrace_id": "AbC123" } })),
            )
                .into_response(),
            "proxy" => (AxumStatus::BAD_GATEWAY, "<html>502 Bad Gateway</html>").into_response(),
            "empty" => Json(json!({ "messaging_product": "whatsapp", "messages": [] })).into_response(),
            "slow" => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Json(json!({ "messages": [ { "id": "wamid.LATE" } ] })).into_response()
            }
            other => (AxumStatus::NOT_FOUND, format!("no case {other}")).into_response(),
        }
    }

    /// Any other request: logged, and answered as Graph answers an unknown path.
    async fn elsewhere(
        State(log): State<Log>,
        ConnectInfo(peer): ConnectInfo<SocketAddr>,
        uri: axum::http::Uri,
    ) -> AxumStatus {
        log.lock().unwrap().push(Seen { path: uri.path().to_owned(), authorization: None, body: Value::Null, peer });
        AxumStatus::BAD_REQUEST
    }

    async fn serve() -> (String, Log) {
        let log = Log::default();
        let app = Router::new()
            .route("/{version}/{phone}/{endpoint}", post(answer))
            .fallback(elsewhere)
            .with_state(log.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
        });
        (format!("http://{addr}"), log)
    }

    fn client(base_url: &str) -> HttpCloudApi {
        let config = HttpCloudApiConfig {
            request_timeout: Duration::from_millis(300),
            ..HttpCloudApiConfig::new(AccessToken::new("test-token")).with_base_url(base_url)
        };
        HttpCloudApi::new(config).unwrap()
    }

    fn request() -> SendRequest {
        let template = Template {
            name: "spring_sale".into(),
            language: Language { code: "en_US".into(), policy: None },
            components: Vec::new(),
            extra: Default::default(),
        };
        SendRequest::template("+919812345678", template, Some("send=abc;attempt=1".into()))
    }

    #[tokio::test]
    async fn an_accepted_send_returns_the_wamid_with_or_without_message_status() {
        let (base, log) = serve().await;
        let api = client(&base);

        let paced = api.send_template("paced", &request(), Endpoint::Messages).await.unwrap();
        assert_eq!(paced.wamid(), Some("wamid.PACED"));
        assert_eq!(paced.messages[0].message_status.as_deref(), Some("accepted"));
        assert_eq!(paced.contacts[0].wa_id.as_deref(), Some("919812345678"));

        let plain = api.send_template("plain", &request(), Endpoint::MarketingMessages).await.unwrap();
        assert_eq!(plain.wamid(), Some("wamid.PLAIN"));
        assert_eq!(plain.messages[0].message_status, None);

        let seen = log.lock().unwrap().clone();
        assert_eq!(seen[0].path, "/v25.0/paced/messages");
        assert_eq!(seen[1].path, "/v25.0/plain/marketing_messages");
        assert_eq!(seen[0].authorization.as_deref(), Some("Bearer test-token"));
        assert_eq!(seen[0].body, serde_json::to_value(request()).unwrap());
        assert_eq!(seen[0].peer, seen[1].peer, "the second call should reuse the first call's connection");
    }

    #[tokio::test]
    async fn warming_opens_the_connection_that_the_first_send_uses() {
        let (base, log) = serve().await;
        let api = client(&base);
        assert!(api.warm().await, "any answer warms");
        api.send_template("plain", &request(), Endpoint::Messages).await.unwrap();
        let seen = log.lock().unwrap().clone();
        assert_eq!(seen[0].path, "/v25.0/");
        assert_eq!(seen[0].authorization, None, "warming sends no token");
        assert_eq!(seen[1].path, "/v25.0/plain/messages");
        assert_eq!(seen[0].peer, seen[1].peer, "the send reuses the warmed connection");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(!client(&format!("http://{addr}")).warm().await, "an unreachable API is only logged");
    }

    #[tokio::test]
    async fn a_graph_error_keeps_meta_s_code() {
        let (base, _) = serve().await;
        let error = client(&base).send_template("refused", &request(), Endpoint::Messages).await.unwrap_err();
        assert_eq!(error.code(), Some(131056));
        let CloudApiError::Graph { http_status, error } = error else { panic!("not a Graph error: {error:?}") };
        assert_eq!(http_status, 400);
        assert_eq!(error.error_data.unwrap().details.as_deref(), Some("Too many messages to this user."));
    }

    #[tokio::test]
    async fn a_gateway_error_without_metas_body_leaves_the_outcome_unknown() {
        let (base, log) = serve().await;
        let error = client(&base).send_template("proxy", &request(), Endpoint::Messages).await.unwrap_err();
        assert_eq!(error, CloudApiError::BadResponse { http_status: 502, body: "<html>502 Bad Gateway</html>".into() });
        assert!(error.outcome_unknown(), "Meta may have taken the request behind the gateway");
        assert_eq!(log.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_success_without_a_wamid_is_a_bad_response_whose_outcome_is_unknown() {
        let (base, _) = serve().await;
        let error = client(&base).send_template("empty", &request(), Endpoint::Messages).await.unwrap_err();
        assert!(matches!(error, CloudApiError::BadResponse { http_status: 200, .. }), "{error:?}");
        assert!(error.outcome_unknown());
    }

    #[tokio::test]
    async fn a_refused_connection_is_unreachable_and_sent_nothing() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let error = client(&format!("http://{addr}")).send_template("paced", &request(), Endpoint::Messages).await;
        let error = error.unwrap_err();
        assert!(matches!(error, CloudApiError::Unreachable(_)), "{error:?}");
        assert!(!error.outcome_unknown());
    }

    #[tokio::test]
    async fn a_slow_answer_times_out_with_the_request_sent() {
        let (base, log) = serve().await;
        let error = client(&base).send_template("slow", &request(), Endpoint::Messages).await.unwrap_err();
        assert_eq!(error, CloudApiError::Timeout { request_sent: true });
        assert!(error.outcome_unknown());
        assert_eq!(log.lock().unwrap().len(), 1, "the request reached the server");
    }

    #[test]
    fn the_token_is_never_printed() {
        let config = HttpCloudApiConfig::new(AccessToken::new("EAAG-secret"));
        assert!(!format!("{config:?}").contains("EAAG-secret"));
    }
}
