//! Posting a body to the business's HTTPS endpoint, signed again as Meta signs it
//! (`X-Hub-Signature-256: sha256=<HMAC-SHA256 of the body, hex>`) with the forwarding secret, so a
//! receiver that already checks Meta's signature needs only the secret changed (or is given the
//! app secret as the forwarding secret, and needs no change at all).

use std::time::Duration;

use futures::future::BoxFuture;

use super::{DELIVERY_HEADER, Forward, ForwardError, delivery_id};
use crate::whatsapp::signature::{AppSecret, SIGNATURE_HEADER, sign};

/// How long one post may take before it counts as failed (and is tried again).
pub const POST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct HttpForward {
    client: reqwest::Client,
    url: String,
    secret: AppSecret,
}

impl HttpForward {
    pub fn new(url: String, secret: AppSecret) -> Result<Self, ForwardError> {
        // A redirect would turn the POST into a bodiless GET that answers 200: a 3xx is a failure.
        let client = reqwest::Client::builder()
            .timeout(POST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ForwardError::Refused(format!("building the HTTP client: {e}")))?;
        Ok(Self { client, url, secret })
    }
}

impl Forward for HttpForward {
    fn forward<'a>(&'a self, body: &'a [u8]) -> BoxFuture<'a, Result<(), ForwardError>> {
        Box::pin(async move {
            let answer = self
                .client
                .post(&self.url)
                .header("content-type", "application/json")
                .header(SIGNATURE_HEADER, sign(&self.secret, body))
                .header(DELIVERY_HEADER, delivery_id(body))
                .body(body.to_vec())
                .send()
                .await
                .map_err(|e| ForwardError::Failed(format!("posting to the forward endpoint: {}", without_url(e))))?;
            let status = answer.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(ForwardError::Failed(format!("the forward endpoint answered {status}")))
            }
        })
    }
}

/// A reqwest error without the URL, which may carry a token in its query.
fn without_url(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(&error);
    while let Some(current) = cause {
        text = format!("{text}: {current}");
        cause = current.source();
    }
    text
}
