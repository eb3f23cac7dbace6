//! The send queue: a large send request is cut into chunks that each fit one dispatch's time
//! budget ([`crate::budget`]), queued, and sent chunk by chunk. [`sqs`] is the queue on AWS (the
//! template's `SendQueue`, which feeds send-dispatch), [`local`] the one `capguard serve` keeps
//! in its data file. A chunk is a [`DispatchRequest`] with the request's idempotency key, so a
//! chunk delivered twice, or a request queued twice, sends nothing twice.

pub mod local;
pub mod sqs;

use std::future::Future;

use crate::budget::{CHUNK_BYTES, CHUNK_RECIPIENTS};
use crate::usecase::dispatch::DispatchRequest;

/// The queue could not take the chunks; those it took before stay queued (sending them twice
/// sends nothing twice), so the caller answers with a retryable error.
#[derive(Debug, thiserror::Error)]
#[error("the send queue did not take the request: {0}")]
pub struct QueueError(pub String);

/// Where the chunks of a large send request wait for their dispatch.
pub trait SendQueue: Send + Sync {
    fn enqueue(&self, chunks: &[DispatchRequest]) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// Cuts `request` into chunks of at most [`CHUNK_RECIPIENTS`] recipients and about
/// [`CHUNK_BYTES`] of JSON each, in order.
pub fn chunks(request: &DispatchRequest) -> Vec<DispatchRequest> {
    let empty = DispatchRequest { recipients: Vec::new(), ..request.clone() };
    let base = serde_json::to_vec(&empty).map(|b| b.len()).unwrap_or_default();
    let mut out = Vec::new();
    let mut current = empty.clone();
    let mut bytes = base;
    for recipient in &request.recipients {
        let size = serde_json::to_vec(recipient).map(|b| b.len() + 1).unwrap_or_default();
        if !current.recipients.is_empty()
            && (current.recipients.len() == CHUNK_RECIPIENTS || bytes + size > CHUNK_BYTES)
        {
            out.push(std::mem::replace(&mut current, empty.clone()));
            bytes = base;
        }
        current.recipients.push(recipient.clone());
        bytes += size;
    }
    if !current.recipients.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::rules::Category;
    use crate::usecase::dispatch::{RecipientSpec, TemplateName};
    use crate::whatsapp::send::Component;

    fn request(recipients: usize, components: Vec<Component>) -> DispatchRequest {
        DispatchRequest {
            phone_number_id: "106540352242922".into(),
            template: TemplateName { name: "spring_sale".into(), language: "en_US".into() },
            category: Category::Marketing,
            campaign: Some("spring".into()),
            idempotency_key: "spring-1".into(),
            retry_until: None,
            utc_offset: None,
            default_country: None,
            recipients: (0..recipients)
                .map(|n| RecipientSpec { to: format!("+9198{n:08}"), components: components.clone(), opt_in: None })
                .collect(),
        }
    }

    #[test]
    fn a_request_is_cut_by_count_and_keeps_every_recipient_once_in_order() {
        let whole = request(2_500, vec![]);
        let chunks = chunks(&whole);
        assert_eq!(chunks.iter().map(|c| c.recipients.len()).collect::<Vec<_>>(), [1_000, 1_000, 500]);
        let again: Vec<_> = chunks.iter().flat_map(|c| c.recipients.clone()).collect();
        assert_eq!(again, whole.recipients);
        assert!(chunks.iter().all(|c| c.idempotency_key == whole.idempotency_key && c.campaign == whole.campaign));
    }

    #[test]
    fn a_chunk_stays_under_the_message_size() {
        let body: Component = serde_json::from_value(serde_json::json!({
            "type": "body", "parameters": [{ "type": "text", "text": "x".repeat(900) }]
        }))
        .unwrap();
        let chunks = chunks(&request(600, vec![body]));
        assert!(chunks.len() > 1);
        for chunk in &chunks {
            assert!(serde_json::to_vec(chunk).unwrap().len() <= CHUNK_BYTES);
        }
    }
}
