//! The webhooks the sandbox posts, byte for byte as Meta would: the envelope of
//! docs/whatsapp.md#webhooks around statuses, inbound messages or a `user_preferences` change,
//! serialized with Meta's escaping (non-ASCII as `\uXXXX`, `/` as `\/`), signed over those exact
//! bytes with the app secret, and posted with Meta-like retries.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use shared::clock::{Clock, ScaledClock};
use shared::whatsapp::signature::{AppSecret, SIGNATURE_HEADER, sign};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};

use crate::SandboxError;
use crate::config::{Business, SandboxConfig};
use crate::stats::{Posted, Stats};

/// Where Meta's error codes send people; absolute in some payloads, relative in others.
const ERROR_CODES_HREF: &str = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/";

/// The `errors[]` item of a failed status, in Meta's words.
pub(crate) fn status_error(code: i64) -> Value {
    let (title, details) = match code {
        131049 => (
            "This message was not delivered to maintain healthy ecosystem engagement.",
            "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
        ),
        131050 => (
            "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business",
            "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business",
        ),
        _ => (
            "Message undeliverable",
            "Message Undeliverable. The recipient’s phone number is not a WhatsApp phone number, or the recipient has not accepted WhatsApp’s new Terms of Service and Privacy Policy.",
        ),
    };
    json!({
        "code": code,
        "title": title,
        "message": title,
        "error_data": { "details": details },
        "href": ERROR_CODES_HREF,
    })
}

/// One `changes[]` item, `{"value": …, "field": …}`, for the business number `phone_number_id`:
/// the value led by `messaging_product` and `metadata`, as Meta orders them.
pub(crate) fn change(business: &Business, phone_number_id: &str, field: &str, mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        let mut ordered = serde_json::Map::new();
        ordered.insert("messaging_product".into(), json!("whatsapp"));
        ordered.insert(
            "metadata".into(),
            json!({ "display_phone_number": business.display_phone_number, "phone_number_id": phone_number_id }),
        );
        ordered.append(map);
        value = Value::Object(ordered);
    }
    json!({ "value": value, "field": field })
}

/// `{"object": …, "entry": [{"id": waba, "changes": [...]}]}` around one or more changes, in
/// Meta's escaped bytes.
pub(crate) fn envelope(business: &Business, changes: Vec<Value>) -> Vec<u8> {
    let body = json!({
        "object": "whatsapp_business_account",
        "entry": [ { "id": business.waba_id, "changes": changes } ],
    });
    meta_escaped(&body.to_string())
}

/// JSON text as Meta writes it: every non-ASCII character as `\uXXXX` (surrogate pairs beyond
/// the basic plane) and every `/` as `\/`. Both only ever occur inside strings, so the text stays
/// the same JSON value.
pub(crate) fn meta_escaped(json: &str) -> Vec<u8> {
    let mut out = String::with_capacity(json.len() + json.len() / 8);
    for c in json.chars() {
        match c {
            '/' => out.push_str("\\/"),
            c if c.is_ascii() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.into_bytes()
}

/// A webhook due at a simulated time.
#[derive(Debug, Clone)]
pub(crate) struct Scheduled {
    pub due: DateTime<Utc>,
    /// The `changes[]` item it carries.
    pub change: Value,
    pub posted: Posted,
}

/// Posts signed webhooks to the callback URL, retrying like Meta; with batching on, the updates
/// that are waiting together go out in one POST.
#[derive(Debug, Clone)]
pub(crate) struct Poster {
    delivery: Arc<Delivery>,
    /// Where updates wait for a batch, when `webhook_batch` is more than one.
    batches: Option<Batches>,
}

/// The queue to the batching task, and the task, which [`Poster::stop`] ends.
#[derive(Debug, Clone)]
struct Batches {
    queue: mpsc::UnboundedSender<Queued>,
    task: AbortHandle,
}

/// How a POST is made: the client, the signature, the retries and the counting.
#[derive(Debug)]
struct Delivery {
    client: reqwest::Client,
    secret: AppSecret,
    business: Business,
    clock: ScaledClock,
    retries: Vec<chrono::TimeDelta>,
    callback_url: RwLock<Option<String>>,
    stats: Arc<Mutex<Stats>>,
}

/// An update waiting for a batch, and who to tell once its POST is over.
#[derive(Debug)]
struct Queued {
    change: Value,
    posted: Posted,
    over: oneshot::Sender<()>,
}

/// However fast simulated time runs, a retry waits at least this long on the wall, doubled at
/// each try, so that a receiver that is restarting gets a chance.
const MIN_WALL_RETRY: Duration = Duration::from_millis(50);
/// How long one post may take before it counts as refused.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// With batching on, how many POSTs may be out at once; the updates that fall due meanwhile wait
/// and go out together in the next one.
const BATCH_POSTS_IN_FLIGHT: usize = 4;

impl Poster {
    /// Must be called on a Tokio runtime when `config.webhook_batch` is more than one: the
    /// batches are made by a task of their own.
    pub(crate) fn new(config: &SandboxConfig, stats: Arc<Mutex<Stats>>) -> Result<Self, SandboxError> {
        let client = reqwest::Client::builder()
            .timeout(POST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SandboxError::HttpClient(e.to_string()))?;
        let delivery = Arc::new(Delivery {
            client,
            secret: config.app_secret.clone(),
            business: config.business.clone(),
            clock: config.clock,
            retries: config.webhook_retries.clone(),
            callback_url: RwLock::new(config.callback_url.clone()),
            stats,
        });
        let batches = (config.webhook_batch > 1).then(|| {
            let (queue, waiting) = mpsc::unbounded_channel();
            let task = tokio::spawn(batch(delivery.clone(), waiting, config.webhook_batch)).abort_handle();
            Batches { queue, task }
        });
        Ok(Self { delivery, batches })
    }

    /// Drops the batched updates still to come and the POSTs still out, as the sandbox stops.
    pub(crate) fn stop(&self) {
        if let Some(batches) = &self.batches {
            batches.task.abort();
        }
    }

    pub(crate) fn set_callback_url(&self, url: Option<String>) {
        *self.delivery.callback_url.write().unwrap_or_else(|e| e.into_inner()) = url;
    }

    /// Waits for `webhook`'s due time, then posts it (in a batch when batching is on) and returns
    /// once its POST is over, taken or given up (counted either way).
    pub(crate) async fn post_when_due(&self, webhook: Scheduled) {
        let wait = self.delivery.clock.wall_time_for(webhook.due - self.delivery.clock.now());
        tokio::time::sleep(wait).await;
        match &self.batches {
            Some(batches) => {
                let (over, done) = oneshot::channel();
                let queued = batches.queue.send(Queued { change: webhook.change, posted: webhook.posted, over });
                // Both fail only once the sandbox is stopping, which drops what is still to come.
                if queued.is_err() || done.await.is_err() {
                    self.delivery.count(|stats| stats.webhooks_abandoned += 1);
                }
            }
            None => {
                let _ = self.delivery.post(vec![webhook.change], &[webhook.posted]).await;
            }
        }
    }

    /// Posts one update now, on its own, until the receiver answers 2xx or the retries run out.
    pub(crate) async fn post(&self, change: Value, posted: Posted) -> Result<(), SandboxError> {
        self.delivery.post(vec![change], &[posted]).await
    }
}

/// Takes the updates as they fall due and posts them, as many as are waiting (up to `most`) in
/// one POST, with at most [`BATCH_POSTS_IN_FLIGHT`] POSTs out at once. Ends when the sandbox
/// stops ([`Poster::stop`]) or its poster is dropped, dropping the POSTs still out.
async fn batch(delivery: Arc<Delivery>, mut waiting: mpsc::UnboundedReceiver<Queued>, most: usize) {
    let slots = Arc::new(Semaphore::new(BATCH_POSTS_IN_FLIGHT));
    let mut posts = JoinSet::new();
    while let Some(first) = waiting.recv().await {
        let slot = slots.clone().acquire_owned().await.expect("the semaphore is never closed");
        let mut queued = vec![first];
        while queued.len() < most {
            match waiting.try_recv() {
                Ok(next) => queued.push(next),
                Err(_) => break,
            }
        }
        let delivery = delivery.clone();
        posts.spawn(async move {
            let _slot = slot;
            let (mut changes, mut posted, mut over) = (Vec::new(), Vec::new(), Vec::new());
            for update in queued {
                changes.push(update.change);
                posted.push(update.posted);
                over.push(update.over);
            }
            let _ = delivery.post(changes, &posted).await;
            for waiter in over {
                let _ = waiter.send(());
            }
        });
        while posts.try_join_next().is_some() {}
    }
}

impl Delivery {
    /// Posts `changes` in one signed envelope until the receiver answers 2xx or the retries run
    /// out; each update is counted either way.
    async fn post(&self, changes: Vec<Value>, posted: &[Posted]) -> Result<(), SandboxError> {
        let updates = posted.len() as u64;
        let Some(url) = self.callback_url.read().unwrap_or_else(|e| e.into_inner()).clone() else {
            self.count(|stats| stats.webhooks_without_callback += updates);
            return Err(SandboxError::NoCallbackUrl);
        };
        let body = envelope(&self.business, changes);
        let signature = sign(&self.secret, &body);
        let mut last_problem = String::new();
        for (attempt, delay) in std::iter::once(None).chain(self.retries.iter().map(Some)).enumerate() {
            if let Some(delay) = delay {
                self.count(|stats| stats.webhook_retries += updates);
                let floor = MIN_WALL_RETRY * 2u32.saturating_pow(attempt.saturating_sub(1) as u32);
                tokio::time::sleep(self.clock.wall_time_for(*delay).max(floor)).await;
            }
            let sent = self
                .client
                .post(&url)
                .header("content-type", "application/json")
                .header(SIGNATURE_HEADER, &signature)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => {
                    self.count(|stats| {
                        stats.webhook_posts += 1;
                        posted.iter().for_each(|p| stats.record_posted(p));
                    });
                    return Ok(());
                }
                Ok(response) => last_problem = format!("HTTP {}", response.status().as_u16()),
                Err(error) => last_problem = error.to_string(),
            }
            tracing::debug!(attempt, problem = %last_problem, "webhook not taken");
        }
        self.count(|stats| stats.webhooks_abandoned += updates);
        Err(SandboxError::WebhookNotTaken { attempts: self.retries.len() + 1, last_problem })
    }

    fn count(&self, update: impl FnOnce(&mut Stats)) {
        update(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_the_json_value_and_changes_the_bytes() {
        let value = json!({ "text": "Olá / 😀", "plain": "ok" });
        let escaped = meta_escaped(&value.to_string());
        assert_eq!(String::from_utf8(escaped.clone()).unwrap(), r#"{"text":"Ol\u00e1 \/ \ud83d\ude00","plain":"ok"}"#);
        assert!(escaped.is_ascii());
        assert_eq!(serde_json::from_slice::<Value>(&escaped).unwrap(), value);
    }

    #[test]
    fn failure_details_carry_escapes_as_meta_s_do() {
        let business =
            Business { waba_id: "1".into(), phone_number_id: "2".into(), display_phone_number: "15550783881".into() };
        let value = json!({ "statuses": [ { "errors": [status_error(131026)] } ] });
        let body = envelope(&business, vec![change(&business, "2", "messages", value)]);
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains(r"recipient\u2019s"), "{text}");
        assert!(text.contains(r"https:\/\/developers.facebook.com"), "{text}");
        assert!(text.starts_with(r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"2"},"statuses""#));
    }
}
