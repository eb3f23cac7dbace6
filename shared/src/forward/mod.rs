//! Coexistence: every verified webhook body goes on, byte for byte, to the business's own
//! WhatsApp stack (an inbox, a chatbot, a CRM) that Meta's single webhook URL per app would
//! otherwise leave deaf. [`Forward`] is the port the webhook endpoint hands a body to once its
//! signature holds, before the intake and before answering Meta, so a body is either durably on
//! its way or Meta delivers it again:
//!
//! - [`sqs`]: onto an SQS queue: the business's own (it reads the bodies itself), or on AWS the
//!   template's `ForwardQueue`, whose consumer (the webhook-forward function) posts each body to
//!   the business's HTTPS endpoint with [`http`], SQS retrying it and parking it in a dead-letter
//!   queue at the end;
//! - [`local`]: into `capguard serve`'s data file, whose worker posts or queues each body the same
//!   way, with backoff, and sets aside those that never go through.
//!
//! A body can arrive more than once (Meta delivers at least once, and a batch whose intake failed
//! is forwarded again when Meta redelivers it): each post carries [`DELIVERY_HEADER`], the same
//! for the same bytes, for the receiver to drop repeats. docs/coexistence.md says what a receiver
//! gets.

pub mod http;
pub mod local;
pub mod sqs;

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

/// The largest body forwarded: an SQS message's limit (a queue's `MaximumMessageSize` goes up to
/// 1 MiB; the template's forward queue is set to it). Meta's batches are far smaller in practice,
/// but Meta allows up to 3 MB.
pub const MAX_FORWARDED_BODY: usize = 1024 * 1024;

/// A header on each forwarded post: the SHA-256 of the body, hex. Repeats of one body carry the
/// same value.
pub const DELIVERY_HEADER: &str = "X-Capguard-Delivery";

/// The delivery id of `body`.
pub fn delivery_id(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Why a body did not go on.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// It may go through later (an endpoint down, a queue unreachable): try again.
    #[error("forwarding failed: {0}")]
    Failed(String),
    /// It never will (too large, not text for a queue): counted and set aside, never retried.
    #[error("the body cannot be forwarded: {0}")]
    Refused(String),
}

/// Where verified webhook bodies go.
pub trait Forward: Send + Sync {
    /// Hands `body` on. `Ok` once it is delivered, or durably on its way.
    fn forward<'a>(&'a self, body: &'a [u8]) -> BoxFuture<'a, Result<(), ForwardError>>;
}

/// Where an operator asked bodies to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardTarget {
    /// Posted to this HTTPS endpoint, signed with the forwarding secret.
    Endpoint { url: String },
    /// Sent to this SQS queue.
    Queue { url: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_id_is_the_bodys_sha256() {
        assert_eq!(delivery_id(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(delivery_id(b"{}"), delivery_id(b"{}"));
        assert_ne!(delivery_id(b"{}"), delivery_id(b"{ }"));
    }
}
