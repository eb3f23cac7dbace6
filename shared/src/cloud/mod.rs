//! The Cloud API port: sending one template message through Meta's Graph API.
//!
//! [`CloudApi`] is what dispatch and retry ask for; [`http`] implements it with reqwest against
//! graph.facebook.com, or against the local sandbox when given its base URL. The port's job is to
//! say precisely what happened to a request, because that decides whether a send may be repeated:
//! a Graph error carries Meta's `error.code` (the only thing callers branch on), while a timeout
//! after the request left means the message may have gone out, and Meta's send API has no
//! idempotency key to make a second try safe (docs/whatsapp.md#sending).

pub mod http;

use std::future::Future;

use crate::whatsapp::send::{GraphError, SendRequest, SendResponse};

/// The two send endpoints of a business phone number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/messages`: the Cloud API, any template category.
    Messages,
    /// `/marketing_messages`: the Marketing Messages API, marketing templates only.
    MarketingMessages,
}

impl Endpoint {
    /// The path segment after `/{version}/{phone-number-id}/`.
    pub fn path(self) -> &'static str {
        match self {
            Self::Messages => "messages",
            Self::MarketingMessages => "marketing_messages",
        }
    }
}

/// Why a send did not come back accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CloudApiError {
    /// Meta refused the request. Decide on `error.code`, never on the HTTP status. (Boxed: a
    /// Graph error is large, and every `Result` of the port would carry its size.)
    #[error("Graph error {} (HTTP {http_status}): {}", error.code, error.message.as_deref().unwrap_or("no message"))]
    Graph { http_status: u16, error: Box<GraphError> },
    /// No complete answer came back in time, or the connection broke before it did. With
    /// `request_sent`, the request may have reached Meta and the message may go out: the outcome
    /// is unknown, so it must not be resent blindly but settled by its webhook.
    #[error("no answer from the Cloud API ({})", if *request_sent { "the request may have been sent" } else { "nothing was sent" })]
    Timeout { request_sent: bool },
    /// The Cloud API could not be reached (connection refused, name resolution, TLS): nothing
    /// was sent.
    #[error("the Cloud API is unreachable: {0}")]
    Unreachable(String),
    /// An answer that is neither an accepted send nor a Graph error, e.g. a proxy's HTML 502.
    #[error("the Cloud API answered HTTP {http_status} with a body that is not Meta's: {body}")]
    BadResponse { http_status: u16, body: String },
}

impl CloudApiError {
    /// Meta's `error.code`, for a Graph error.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::Graph { error, .. } => Some(error.code),
            _ => None,
        }
    }

    /// Whether the message may have been accepted all the same, so that sending it again could
    /// send it twice: a timeout after the request left, a success status whose body could not be
    /// read as a send response, or a server error without Meta's error body (a gateway's 502 or
    /// 504 says nothing about whether Meta took the request behind it).
    pub fn outcome_unknown(&self) -> bool {
        match self {
            Self::Timeout { request_sent } => *request_sent,
            Self::BadResponse { http_status, .. } => (200..300).contains(http_status) || *http_status >= 500,
            Self::Graph { .. } | Self::Unreachable(_) => false,
        }
    }
}

/// Sends template messages for a business phone number.
pub trait CloudApi: Send + Sync {
    /// Posts `request` to `endpoint` of `phone_number_id`. `Ok` means accepted, not delivered:
    /// delivery, and failures such as 131049, arrive later as status webhooks.
    fn send_template(
        &self,
        phone_number_id: &str,
        request: &SendRequest,
        endpoint: Endpoint,
    ) -> impl Future<Output = Result<SendResponse, CloudApiError>> + Send;

    /// Reads the access token again, for a call refused for its token (190): true when a token
    /// newer than the one the call may have used is held (it was rotated), so that the call is
    /// worth one more try.
    fn refresh_token(&self) -> impl Future<Output = bool> + Send {
        async { false }
    }
}
