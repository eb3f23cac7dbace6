//! The timeout budget: every timeout, visibility timeout and batch size of the deployment,
//! derived here from a few limits, so that no part outlives the one that waits for it.
//! `template.yaml` repeats the derived figures and `tests/tests/template.rs` checks them against
//! this module.
//!
//! The limits: API Gateway's HTTP API cuts an integration off after 30 s (its maximum, AWS's
//! quotas page for HTTP APIs); AWS advises a queue's visibility timeout of six times the timeout
//! of the function it feeds (Lambda's SQS event source documentation); an SQS message holds at
//! most 256 KiB.
//!
//! One send can take at most [`ONE_SEND`]: each of its immediate retries may wait out the
//! connect timeout and its backoff, and its last call the whole request timeout. A dispatch stops
//! starting sends once less than that (and a margin for the writes after the call) is left; the
//! recipients it did not reach are recorded and due, each under its own timer, and go out from
//! the retry executor within a minute.

use std::time::Duration;

/// API Gateway's HTTP API integration timeout: the most a synchronous `POST /sends` may take.
pub const HTTP_API_LIMIT: Duration = Duration::from_secs(30);
/// How long a Cloud API call waits for a connection (nothing has been sent until it is up).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a Cloud API call waits for the whole exchange; after that its outcome is unknown.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Immediate retries of a call refused as throttled or unreachable, and the first one's wait
/// (each next waits four times longer).
pub const CALL_RETRIES: u32 = 3;
pub const CALL_BACKOFF: Duration = Duration::from_millis(250);
/// The writes and timer after a send's last call.
pub const STORE_MARGIN: Duration = Duration::from_secs(3);

/// The longest one send can take: 3 × 3 s + 0.25 + 1 + 4 s + 10 s = 24.25 s.
pub const ONE_SEND: Duration =
    CONNECT_TIMEOUT.saturating_mul(CALL_RETRIES).saturating_add(backoffs(CALL_RETRIES)).saturating_add(REQUEST_TIMEOUT);

const fn backoffs(retries: u32) -> Duration {
    let mut total = Duration::ZERO;
    let mut wait = CALL_BACKOFF;
    let mut n = 0;
    while n < retries {
        total = total.saturating_add(wait);
        wait = wait.saturating_mul(4);
        n += 1;
    }
    total
}

/// What must be left of an invocation for one more send to start.
pub const SEND_RESERVE: Duration = ONE_SEND.saturating_add(STORE_MARGIN);

/// The most recipients `POST /sends` answers synchronously, one result each; a larger request is
/// accepted (202) and sent from the queue in chunks. 100 sends take 1.25 s at Meta's default 80
/// messages per second.
pub const SYNC_RECIPIENTS: usize = 100;
/// How long a synchronous `POST /sends` starts sends for: its last send then ends before the HTTP
/// API gives up (30 s − 27.25 s = 2.75 s).
pub const SYNC_START_WINDOW: Duration = HTTP_API_LIMIT.saturating_sub(SEND_RESERVE);

/// What remains of an invocation until its deadline (milliseconds since the epoch, as the
/// Lambda runtime gives it).
pub fn time_left(deadline_ms: u64) -> Duration {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Duration::from_millis(deadline_ms).saturating_sub(now)
}

/// send-dispatch's timeout (`Timeout` in template.yaml).
pub const DISPATCH_TIMEOUT: Duration = Duration::from_secs(120);
/// The most recipients in one queued chunk: 12.5 s of sending at 80 messages per second, well
/// inside the 92.75 s a chunk's invocation may start sends for.
pub const CHUNK_RECIPIENTS: usize = 1_000;
/// The most bytes of one queued chunk, under SQS's 256 KiB per message.
pub const CHUNK_BYTES: usize = 200 * 1024;
/// Queue messages per send-dispatch invocation: one chunk, so that a chunk's budget is the
/// invocation's.
pub const QUEUE_BATCH_SIZE: u32 = 1;
/// The most send-dispatch instances the send queue's event source runs at once (2 is the least
/// SQS allows). Every instance shares each number's throughput (`shared::pace`), so more would
/// only slow each chunk down: at the default 80 messages a second two chunks of 1,000 take 25 s
/// each, well inside their 92.75 s.
pub const QUEUE_MAX_CONCURRENCY: u32 = 2;
/// The send queue's visibility timeout: six times send-dispatch's timeout.
pub const QUEUE_VISIBILITY: Duration = DISPATCH_TIMEOUT.saturating_mul(6);

/// webhook-intake's timeout: the HTTP API's limit (it answers through it).
pub const INTAKE_TIMEOUT: Duration = HTTP_API_LIMIT;
/// retry-executor's timeout: a sweep's work, then the reserve for its last send.
pub const RETRY_TIMEOUT: Duration = Duration::from_secs(90);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_adds_up() {
        assert_eq!(ONE_SEND, Duration::from_millis(24_250));
        assert_eq!(SYNC_START_WINDOW, Duration::from_millis(2_750));
        assert!(SYNC_START_WINDOW > Duration::ZERO, "a synchronous request can start a send");
        assert!(RETRY_TIMEOUT > SEND_RESERVE && DISPATCH_TIMEOUT > SEND_RESERVE);
        assert_eq!(QUEUE_VISIBILITY, Duration::from_secs(720));
        let chunk_window = DISPATCH_TIMEOUT - SEND_RESERVE;
        assert!(Duration::from_secs(1) * (CHUNK_RECIPIENTS as u32) / 80 < chunk_window, "a chunk fits at 80/s");
    }
}
