//! The sandbox over real HTTP on loopback: sends go through capguard's own Cloud API client, and
//! webhooks land in a small receiver that checks every signature over the raw bytes and parses
//! them as capguard's intake does. Time runs 36,000 times faster than the wall (ten simulated
//! hours a second) except where a test needs the limits to bite.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::DateTime;
use sandbox::config::DEFAULT_APP_SECRET;
use sandbox::{Recipient, RecipientKind, Reply, Sandbox, SandboxConfig, SandboxError, SandboxHandle};
use serde_json::{Value, json};
use shared::clock::ScaledClock;
use shared::cloud::http::{AccessToken, HttpCloudApi, HttpCloudApiConfig};
use shared::cloud::{CloudApi, CloudApiError, Endpoint};
use shared::whatsapp::send::{Component, Language, Parameter, SendRequest, Template};
use shared::whatsapp::signature::{AppSecret, SIGNATURE_HEADER, verify};
use shared::whatsapp::webhook::{Envelope, InboundMessage, Status, StatusKind, parse_webhook};
use tokio::sync::mpsc;

const FAST: f64 = 36_000.0;
const WAIT: Duration = Duration::from_secs(10);

fn config(seed: u64, scale: f64) -> SandboxConfig {
    SandboxConfig::new(seed, ScaledClock::new(DateTime::from_timestamp(1_750_000_000, 0).unwrap(), scale))
}

/// One webhook as it arrived. The parsed webhook borrows from its body, which is kept for the
/// rest of the test process.
#[derive(Debug, Clone)]
struct Arrival {
    raw: Bytes,
    envelope: Envelope<'static>,
}

/// A webhook endpoint that refuses its first `refusals` posts, then verifies and parses each.
struct Receiver {
    url: String,
    arrivals: mpsc::UnboundedReceiver<Result<Arrival, String>>,
    seen: Vec<Arrival>,
}

#[derive(Clone)]
struct ReceiverState {
    refusals: Arc<AtomicU32>,
    /// Posts carrying several updates still to refuse, after the `refusals`.
    batch_refusals: Arc<AtomicU32>,
    /// How long each answer takes, as a busy receiver's would.
    pause: Duration,
    arrivals: mpsc::UnboundedSender<Result<Arrival, String>>,
}

async fn take(State(state): State<ReceiverState>, headers: HeaderMap, raw: Bytes) -> StatusCode {
    tokio::time::sleep(state.pause).await;
    if state.refusals.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let arrival = verify(&AppSecret::new(DEFAULT_APP_SECRET), signature, &raw)
        .map_err(|e| format!("bad signature: {e}"))
        .and_then(|()| {
            parse_webhook(Box::leak(raw.to_vec().into_boxed_slice())).map_err(|e| format!("unparsable: {e}"))
        })
        .map(|envelope| Arrival { raw: raw.clone(), envelope });
    let updates = arrival.as_ref().map_or(0, |a| a.envelope.entry.iter().map(|e| e.changes.len()).sum::<usize>());
    let take_one = |n: u32| n.checked_sub(1);
    if updates > 1 && state.batch_refusals.fetch_update(Ordering::SeqCst, Ordering::SeqCst, take_one).is_ok() {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let status = if arrival.is_ok() { StatusCode::OK } else { StatusCode::UNAUTHORIZED };
    let _ = state.arrivals.send(arrival);
    status
}

impl Receiver {
    async fn start(refusals: u32) -> Self {
        Self::answering_in(refusals, 0, Duration::ZERO).await
    }

    /// A receiver that refuses its first `refusals` posts, then the first `batch_refusals` posts
    /// that carry several updates, and takes `pause` to answer each.
    async fn answering_in(refusals: u32, batch_refusals: u32, pause: Duration) -> Self {
        let (sender, arrivals) = mpsc::unbounded_channel();
        let state = ReceiverState {
            refusals: Arc::new(AtomicU32::new(refusals)),
            batch_refusals: Arc::new(AtomicU32::new(batch_refusals)),
            pause,
            arrivals: sender,
        };
        let app = Router::new().route("/webhook", post(take)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/webhook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, arrivals, seen: Vec::new() }
    }

    /// The first webhook, among those received so far and to come, that `matches`.
    async fn wait_for<T>(&mut self, what: &str, matches: impl Fn(&Arrival) -> Option<T>) -> T {
        if let Some(found) = self.seen.iter().find_map(&matches) {
            return found;
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let arrival = tokio::time::timeout_at(deadline, self.arrivals.recv())
                .await
                .unwrap_or_else(|_| panic!("no webhook with {what} in {WAIT:?}; got {:#?}", self.seen))
                .expect("the receiver is running");
            let arrival = arrival.unwrap_or_else(|problem| panic!("{problem}"));
            let found = matches(&arrival);
            self.seen.push(arrival);
            if let Some(found) = found {
                return found;
            }
        }
    }

    async fn status(&mut self, wamid: &str, status: StatusKind) -> (Status<'static>, Arrival) {
        self.wait_for(&format!("{status} for {wamid}"), |arrival| {
            statuses(&arrival.envelope)
                .find(|s| s.id == wamid && s.status == status)
                .map(|s| (s.clone(), arrival.clone()))
        })
        .await
    }

    async fn inbound_from(&mut self, number: &str) -> (InboundMessage<'static>, Arrival) {
        let from = number.trim_start_matches('+').to_owned();
        self.wait_for(&format!("a message from {from}"), |arrival| {
            arrival.envelope.entry[0].changes[0]
                .value
                .messages
                .iter()
                .find(|m| m.from.as_deref() == Some(from.as_str()))
                .map(|m| (m.clone(), arrival.clone()))
        })
        .await
    }
}

fn statuses<'a>(envelope: &'a Envelope<'static>) -> impl Iterator<Item = &'a Status<'static>> {
    envelope.entry.iter().flat_map(|e| &e.changes).flat_map(|c| &c.value.statuses)
}

async fn start(config: SandboxConfig, receiver: &Receiver) -> SandboxHandle {
    let sandbox = Sandbox::start(config).await.unwrap();
    sandbox.set_callback_url(&receiver.url);
    sandbox
}

fn client(sandbox: &SandboxHandle, token: &str) -> HttpCloudApi {
    HttpCloudApi::new(HttpCloudApiConfig::new(AccessToken::new(token)).with_base_url(sandbox.base_url())).unwrap()
}

fn api(sandbox: &SandboxHandle) -> HttpCloudApi {
    client(sandbox, sandbox::config::DEFAULT_ACCESS_TOKEN)
}

fn template(name: &str, to: &str) -> SendRequest {
    let button = Component {
        kind: "button".into(),
        sub_type: Some("quick_reply".into()),
        index: Some("0".into()),
        parameters: vec![Parameter::payload("STOP_PROMO")],
        extra: Default::default(),
    };
    let template = Template {
        name: name.into(),
        language: Language { code: "en_US".into(), policy: None },
        components: vec![button],
        extra: Default::default(),
    };
    SendRequest::template(to, template, Some("send=abc;attempt=1".into()))
}

async fn send(api: &HttpCloudApi, request: &SendRequest) -> Result<String, CloudApiError> {
    let response = api.send_template("106540352242922", request, Endpoint::Messages).await?;
    Ok(response.wamid().unwrap().to_owned())
}

fn someone(sandbox: &SandboxHandle, kind: RecipientKind, prefix: &str) -> Recipient {
    let campaign = sandbox.population().campaign(400);
    campaign.into_iter().find(|r| r.kind == kind && r.number.starts_with(prefix)).expect("such a recipient")
}

fn graph_code(error: &CloudApiError) -> (u16, i64, String) {
    match error {
        CloudApiError::Graph { http_status, error } => {
            (*http_status, error.code, error.error_data.as_ref().and_then(|d| d.details.clone()).unwrap_or_default())
        }
        other => panic!("not a Graph error: {other:?}"),
    }
}

#[tokio::test]
async fn a_send_without_the_right_token_is_refused_with_code_190() {
    let sandbox = Sandbox::start(config(1, FAST)).await.unwrap();
    let to = someone(&sandbox, RecipientKind::Engaged, "+").number;
    let error = send(&client(&sandbox, "wrong"), &template("spring_sale", &to)).await.unwrap_err();
    assert_eq!(graph_code(&error).0, 401);
    assert_eq!(graph_code(&error).1, 190);
    assert!(send(&api(&sandbox), &template("spring_sale", &to)).await.is_ok());
    let stats = sandbox.stats();
    assert_eq!((stats.accepted, stats.refused.get(&190).copied()), (1, Some(1)));
    sandbox.shutdown().await.unwrap();
}

#[tokio::test]
async fn malformed_sends_are_refused_with_meta_shaped_errors_listing_the_problems() {
    let sandbox = Sandbox::start(config(1, FAST)).await.unwrap();
    let api = api(&sandbox);
    let to = someone(&sandbox, RecipientKind::Engaged, "+").number;

    let mut nameless = template("spring_sale", &to);
    nameless.template.as_mut().unwrap().name = String::new();
    let (http, code, details) = graph_code(&send(&api, &nameless).await.unwrap_err());
    assert_eq!((http, code), (400, 131008));
    assert!(details.contains("template.name is required"), "{details}");

    let mut mixed = template("spring_sale", &to);
    mixed.template.as_mut().unwrap().components[0].parameters =
        vec![Parameter::text("Alex"), Parameter::named_text("code", "FEST20")];
    assert_eq!(graph_code(&send(&api, &mixed).await.unwrap_err()).1, 132000);

    let local = template("spring_sale", "9812345678");
    let (_, code, details) = graph_code(&send(&api, &local).await.unwrap_err());
    assert_eq!(code, 100);
    assert!(details.contains("to must be +"), "{details}");

    let unknown = template("no_such_template", &to);
    assert_eq!(graph_code(&send(&api, &unknown).await.unwrap_err()).1, 132001);

    let utility = template("order_update", &to);
    let error = api.send_template("106540352242922", &utility, Endpoint::MarketingMessages).await.unwrap_err();
    assert_eq!(graph_code(&error).1, 134100);

    let not_json = reqwest::Client::new()
        .post(format!("{}/v25.0/106540352242922/messages", sandbox.base_url()))
        .bearer_auth(sandbox::config::DEFAULT_ACCESS_TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status().as_u16(), 400);
    let body: Value = not_json.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!(100));
    assert!(body["error"]["fbtrace_id"].is_string());

    assert_eq!(sandbox.stats().accepted, 0);
    sandbox.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_accepted_send_answers_a_fresh_wamid_and_the_contact_repeatably_for_the_seed() {
    let mut wamids = Vec::new();
    for _ in 0..2 {
        let sandbox = Sandbox::start(config(5, FAST)).await.unwrap();
        let api = api(&sandbox);
        let to = someone(&sandbox, RecipientKind::Engaged, "+91").number;
        let marketing =
            api.send_template("106540352242922", &template("spring_sale", &to), Endpoint::Messages).await.unwrap();
        assert!(marketing.wamid().unwrap().starts_with("wamid."));
        assert_eq!(marketing.contacts[0].input.as_deref(), Some(to.as_str()));
        assert_eq!(marketing.contacts[0].wa_id.as_deref(), Some(&to[1..]));
        assert_eq!(marketing.messages[0].message_status.as_deref(), Some("accepted"));
        let utility =
            api.send_template("106540352242922", &template("order_update", &to), Endpoint::Messages).await.unwrap();
        assert_eq!(utility.messages[0].message_status, None);
        assert_ne!(marketing.wamid(), utility.wamid());
        wamids.push((marketing.wamid().unwrap().to_owned(), utility.wamid().unwrap().to_owned()));
        sandbox.shutdown().await.unwrap();
    }
    assert_eq!(wamids[0], wamids[1], "the same seed and sends give the same wamids");
}

#[tokio::test]
async fn a_marketing_send_to_a_us_number_fails_with_a_signed_131049_webhook_and_canada_does_not() {
    let mut receiver = Receiver::start(0).await;
    let sandbox = start(config(2, FAST), &receiver).await;
    let api = api(&sandbox);
    let us = someone(&sandbox, RecipientKind::Us, "+1650").number;
    let canada = someone(&sandbox, RecipientKind::Engaged, "+1416").number;

    let wamid = send(&api, &template("spring_sale", &us)).await.unwrap();
    let (failed, arrival) = receiver.status(&wamid, StatusKind::Failed).await;
    assert_eq!(failed.errors[0].code, 131049);
    assert_eq!(failed.recipient_id.as_deref(), Some(&us[1..]));
    assert_eq!(failed.biz_opaque_callback_data, None, "Meta does not promise it on failed");
    assert_eq!(arrival.envelope.entry[0].changes[0].field, "messages");
    let metadata = arrival.envelope.entry[0].changes[0].value.metadata.clone().unwrap();
    assert_eq!(metadata.phone_number_id.as_deref(), Some("106540352242922"));
    let raw = String::from_utf8(arrival.raw.to_vec()).unwrap();
    assert!(raw.contains(r"https:\/\/developers.facebook.com"), "Meta escapes '/': {raw}");

    let utility = send(&api, &template("order_update", &us)).await.unwrap();
    receiver.status(&utility, StatusKind::Sent).await;
    let canadian = send(&api, &template("spring_sale", &canada)).await.unwrap();
    receiver.status(&canadian, StatusKind::Sent).await;

    assert_eq!(sandbox.stats().failures_posted.get(&131049).copied(), Some(1));
    sandbox.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_spent_budget_yields_131049_and_a_reply_window_suppresses_it() {
    let mut receiver = Receiver::start(0).await;
    let mut config = config(3, FAST);
    let fatigued = config.kinds.get_mut(&RecipientKind::Fatigued).unwrap();
    (fatigued.budget, fatigued.background_per_day, fatigued.read_probability) = ((1, 1), 0.0, 0.0);
    let sandbox = start(config, &receiver).await;
    let api = api(&sandbox);
    let to = someone(&sandbox, RecipientKind::Fatigued, "+91").number;

    let first = send(&api, &template("spring_sale", &to)).await.unwrap();
    let (sent, _) = receiver.status(&first, StatusKind::Sent).await;
    assert_eq!(sent.biz_opaque_callback_data.as_deref(), Some("send=abc;attempt=1"));
    let second = send(&api, &template("weekly_offers", &to)).await.unwrap();
    let (failed, _) = receiver.status(&second, StatusKind::Failed).await;
    assert_eq!(failed.errors[0].code, 131049);

    sandbox.reply(&to, Reply::Text("Tell me more".into())).await.unwrap();
    receiver.inbound_from(&to).await;
    let third = send(&api, &template("spring_sale", &to)).await.unwrap();
    receiver.status(&third, StatusKind::Sent).await;
    assert!(
        !receiver
            .seen
            .iter()
            .flat_map(|a| statuses(&a.envelope))
            .any(|s| s.id == third && s.status == StatusKind::Failed),
        "inside the window the cap does not apply"
    );
    sandbox.shutdown().await.unwrap();
}

#[tokio::test]
async fn sending_faster_than_the_pair_rate_is_refused_with_131056() {
    let mut config = config(4, 1.0);
    config.limits.pair_burst = 1;
    let sandbox = Sandbox::start(config).await.unwrap();
    let api = api(&sandbox);
    let campaign = sandbox.population().campaign(2);
    send(&api, &template("order_update", &campaign[0].number)).await.unwrap();
    let error = send(&api, &template("order_update", &campaign[0].number)).await.unwrap_err();
    assert_eq!(graph_code(&error).1, 131056);
    send(&api, &template("order_update", &campaign[1].number)).await.expect("another user is not limited");
    assert_eq!(sandbox.stats().refused.get(&131056).copied(), Some(1));
    sandbox.shutdown().await.unwrap();
}

#[tokio::test]
async fn sending_past_the_throughput_is_refused_with_130429() {
    let mut config = config(4, 1.0);
    config.limits.throughput_per_second = 2;
    let sandbox = Sandbox::start(config).await.unwrap();
    let api = api(&sandbox);
    // Three sends back to back; on a busy machine a second may turn between them, which lets the
    // third through, so a few rounds are allowed (each to new recipients: no pair limit).
    let campaign = sandbox.population().campaign(15);
    let mut refused = None;
    for round in campaign.chunks(3) {
        let mut answers = Vec::new();
        for recipient in round {
            answers.push(send(&api, &template("order_update", &recipient.number)).await);
        }
        if let Some(Err(error)) = answers.iter().find(|answer| answer.is_err()) {
            refused = Some(graph_code(error).1);
            break;
        }
    }
    assert_eq!(refused, Some(130429), "a third send within one second is refused");
    sandbox.shutdown().await.unwrap();
}

#[tokio::test]
async fn pressing_stop_posts_a_signed_user_preferences_webhook_and_marketing_then_fails_with_131050() {
    let mut receiver = Receiver::start(0).await;
    let sandbox = start(config(6, FAST), &receiver).await;
    let api = api(&sandbox);
    let to = someone(&sandbox, RecipientKind::Engaged, "+55").number;

    sandbox.press_stop(&to).await.unwrap();
    let change = receiver
        .wait_for("user_preferences", |a| {
            Some(a.clone()).filter(|a| a.envelope.entry[0].changes[0].field == "user_preferences")
        })
        .await;
    let preference = &change.envelope.entry[0].changes[0].value.user_preferences[0];
    assert_eq!(preference.wa_id.as_deref(), Some(&to[1..]));
    assert_eq!(preference.value.as_str(), "stop");
    let raw: Value = serde_json::from_slice(&change.raw).unwrap();
    assert!(raw["entry"][0]["changes"][0]["value"]["user_preferences"][0]["timestamp"].is_i64(), "an integer here");

    let marketing = send(&api, &template("spring_sale", &to)).await.unwrap();
    assert_eq!(receiver.status(&marketing, StatusKind::Failed).await.0.errors[0].code, 131050);
    let utility = send(&api, &template("order_update", &to)).await.unwrap();
    receiver.status(&utility, StatusKind::Sent).await;

    sandbox.press_resume(&to).await.unwrap();
    let again = send(&api, &template("spring_sale", &to)).await.unwrap();
    receiver.status(&again, StatusKind::Sent).await;
    assert_eq!(sandbox.stats().preferences_posted, 2);
    sandbox.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_reply_posts_inbound_text_and_a_tap_carries_the_template_wamid() {
    let mut receiver = Receiver::start(0).await;
    let sandbox = start(config(7, FAST), &receiver).await;
    let api = api(&sandbox);
    let to = someone(&sandbox, RecipientKind::Engaged, "+44").number;

    let tap = Reply::QuickReply { payload: "STOP_PROMO".into(), text: "Stop promotions".into() };
    assert!(matches!(sandbox.reply(&to, tap.clone()).await, Err(SandboxError::NothingToAnswer(_))));

    let wamid = send(&api, &template("spring_sale", &to)).await.unwrap();
    // The handle's calls can run on any task.
    fn on_any_task<F: std::future::Future + Send>(future: F) -> F {
        future
    }
    let text_id = on_any_task(sandbox.reply(&to, Reply::Text("Olá / ok".into()))).await.unwrap();
    let (text, arrival) = receiver.inbound_from(&to).await;
    assert_eq!(text.id, text_id);
    assert_eq!(text.text.unwrap().body, "Olá / ok");
    let raw = String::from_utf8(arrival.raw.to_vec()).unwrap();
    assert!(raw.contains(r"Ol\u00e1 \/ ok"), "{raw}");

    let tap_id = sandbox.reply(&to, tap).await.unwrap();
    let tap = receiver
        .wait_for("the tap", |a| a.envelope.entry[0].changes[0].value.messages.iter().find(|m| m.id == tap_id).cloned())
        .await;
    assert_eq!(tap.kind, "button");
    assert_eq!(tap.context.unwrap().id.as_deref(), Some(wamid.as_str()));
    assert_eq!(tap.button.unwrap().payload.as_deref(), Some("STOP_PROMO"));
    assert_eq!(sandbox.stats().inbound_posted, 2);
    sandbox.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_delivered_send_posts_sent_then_delivered_or_read_with_pricing_and_callback_data() {
    let mut receiver = Receiver::start(0).await;
    let mut config = config(8, FAST);
    config.kinds.get_mut(&RecipientKind::Engaged).unwrap().read_probability = 1.0;
    let sandbox = start(config, &receiver).await;
    let api = api(&sandbox);
    let to = someone(&sandbox, RecipientKind::Engaged, "+91").number;

    let request = template("spring_sale", &to);
    let wamid = api.send_template("106540352242922", &request, Endpoint::MarketingMessages).await.unwrap();
    let wamid = wamid.wamid().unwrap().to_owned();
    let (sent, _) = receiver.status(&wamid, StatusKind::Sent).await;
    let (read, _) = receiver.status(&wamid, StatusKind::Read).await;
    assert_eq!(sent.pricing.unwrap().category.as_deref(), Some("marketing_lite"));
    assert_eq!(read.biz_opaque_callback_data.as_deref(), Some("send=abc;attempt=1"));
    let delivered = receiver
        .seen
        .iter()
        .flat_map(|a| statuses(&a.envelope))
        .find(|s| s.id == wamid && s.status == StatusKind::Delivered);
    // Pricing comes with exactly one of delivered and read: read carries it when delivered was skipped.
    assert_eq!(delivered.is_some(), read.pricing.is_none());
    assert!(sent.timestamp <= read.timestamp);
    sandbox.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_replier_writes_back_on_its_own_after_a_delivery() {
    let mut receiver = Receiver::start(0).await;
    let mut config = config(9, FAST);
    config.kinds.get_mut(&RecipientKind::Replier).unwrap().reply_probability = 1.0;
    let sandbox = start(config, &receiver).await;
    let to = someone(&sandbox, RecipientKind::Replier, "+91").number;
    let wamid = send(&api(&sandbox), &template("spring_sale", &to)).await.unwrap();
    let (message, _) = receiver.inbound_from(&to).await;
    if message.kind == "button" {
        assert_eq!(message.context.unwrap().id.as_deref(), Some(wamid.as_str()));
    } else {
        assert_eq!(message.kind, "text");
    }
    sandbox.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_webhook_the_receiver_refuses_is_retried_and_one_never_taken_is_counted() {
    let mut receiver = Receiver::start(2).await;
    let mut config = config(10, FAST);
    config.webhook_retries = vec![chrono::TimeDelta::zero(), chrono::TimeDelta::minutes(1)];
    let sandbox = start(config, &receiver).await;
    let to = someone(&sandbox, RecipientKind::Engaged, "+91").number;

    sandbox.press_stop(&to).await.unwrap();
    receiver
        .wait_for("user_preferences", |a| a.envelope.entry[0].changes[0].value.user_preferences.first().cloned())
        .await;
    assert_eq!((sandbox.stats().webhook_retries, sandbox.stats().preferences_posted), (2, 1));

    let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone_url = format!("http://{}/webhook", gone.local_addr().unwrap());
    drop(gone);
    sandbox.set_callback_url(gone_url);
    let error = sandbox.press_resume(&to).await.unwrap_err();
    assert!(matches!(error, SandboxError::WebhookNotTaken { attempts: 3, .. }), "{error:?}");
    assert_eq!(sandbox.stats().webhooks_abandoned, 1);
    sandbox.shutdown().await.unwrap();
}

#[tokio::test]
async fn with_batching_on_the_updates_waiting_together_go_in_one_signed_post_in_order() {
    // A receiver that takes 20 ms to answer and refuses the first post of several updates:
    // updates pile up behind the posts in flight, and a refused batch is retried whole.
    let mut receiver = Receiver::answering_in(0, 1, Duration::from_millis(20)).await;
    let mut config = config(12, FAST);
    config.webhook_batch = 8;
    let sandbox = start(config, &receiver).await;
    let api = api(&sandbox);
    let recipients: Vec<Recipient> = sandbox.population().campaign(60);
    for recipient in &recipients {
        // A send refused at once (a pair or throughput limit) posts nothing; the rest count.
        let _ = send(&api, &template("spring_sale", &recipient.number)).await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while sandbox.stats().messages_in_flight > 0 {
        assert!(tokio::time::Instant::now() < deadline, "webhooks still to come after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = sandbox.stats();
    let posted: u64 = stats.statuses_posted.values().sum::<u64>() + stats.inbound_posted;
    assert!(posted > 60, "every accepted send posts at least its sent status: {stats:?}");
    while let Ok(arrival) = receiver.arrivals.try_recv() {
        receiver.seen.push(arrival.unwrap_or_else(|problem| panic!("{problem}")));
    }
    let changes: Vec<usize> =
        receiver.seen.iter().map(|a| a.envelope.entry.iter().map(|e| e.changes.len()).sum()).collect();
    assert_eq!(changes.iter().sum::<usize>() as u64, posted, "each update taken once, in one change of a post");
    assert!(changes.iter().all(|&n| (1..=8).contains(&n)), "no post over the batch size: {changes:?}");
    assert!(changes.len() < changes.iter().sum::<usize>(), "some posts carried several updates: {changes:?}");
    let retried = stats.webhook_retries as usize;
    assert!(retried > 1 && changes.contains(&retried), "the refused batch was retried whole ({retried}): {changes:?}");
    // A message's updates still come in order: its sent before its delivered or read.
    let mut first_sent = std::collections::HashMap::new();
    for (position, arrival) in receiver.seen.iter().enumerate() {
        for status in statuses(&arrival.envelope) {
            match status.status {
                StatusKind::Sent => {
                    first_sent.entry(status.id.clone()).or_insert(position);
                }
                StatusKind::Failed => {}
                _ => assert!(
                    first_sent.get(&status.id).is_some_and(|&sent| sent < position),
                    "{} came before its sent",
                    status.status
                ),
            }
        }
    }
    sandbox.shutdown().await.unwrap();
}

/// Issue 14, item 6: a scenario's account events happen at their times after the start, each
/// with the signed webhook Meta would post, in order: pacing answers a template's sends
/// `held_for_quality_assessment` while it lasts, and a paused template's sends are refused.
#[tokio::test]
async fn a_scenario_plays_its_account_events_at_their_times_with_their_webhooks() {
    let mut receiver = Receiver::start(0).await;
    // A simulated hour is a wall second: the first send has two before the pacing starts, the
    // second four before it stops, and the rest come within the receiver's ten.
    let mut config = config(12, 3_600.0);
    config.scenario = "2h pace=spring_sale/2h, 7h pace=spring_sale/off, 8h quality=red, \
        8h template=spring_sale/paused, 8h template_quality=spring_sale/red, 8h limit=2k"
        .parse()
        .unwrap();
    let sandbox = start(config, &receiver).await;
    let api = api(&sandbox);
    let status_of = async |to: &str| {
        let answer = api.send_template("106540352242922", &template("spring_sale", to), Endpoint::Messages).await;
        answer.map(|answer| answer.messages[0].message_status.clone().unwrap_or_default())
    };
    let to = someone(&sandbox, RecipientKind::Engaged, "+91").number;
    assert_eq!(status_of(&to).await.unwrap(), "accepted", "before the pacing starts");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let other = someone(&sandbox, RecipientKind::Engaged, "+55").number;
    assert_eq!(status_of(&other).await.unwrap(), "held_for_quality_assessment", "while it is paced");

    let limit = receiver
        .wait_for("business_capability_update", |a| {
            Some(a.clone()).filter(|a| a.envelope.entry[0].changes[0].field == "business_capability_update")
        })
        .await;
    let raw: Value = serde_json::from_slice(&limit.raw).unwrap();
    assert_eq!(raw["entry"][0]["changes"][0]["value"]["max_daily_conversations_per_business"], 2_000);
    let account: Vec<Value> = receiver
        .seen
        .iter()
        .filter(|a| a.envelope.entry[0].changes[0].field != "messages")
        .map(|a| serde_json::from_slice::<Value>(&a.raw).unwrap()["entry"][0]["changes"][0].clone())
        .collect();
    let fields: Vec<&str> = account.iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert_eq!(
        fields,
        [
            "phone_number_quality_update",
            "message_template_status_update",
            "message_template_quality_update",
            "business_capability_update"
        ]
    );
    assert_eq!(account[0]["value"]["event"], "FLAGGED");
    assert_eq!(account[1]["value"]["event"], "PAUSED");
    assert_eq!(account[2]["value"]["previous_quality_score"], "UNKNOWN");
    assert_eq!(account[2]["value"]["new_quality_score"], "RED");
    let refused = status_of(&to).await.unwrap_err();
    assert_eq!(graph_code(&refused).1, 132015, "the paused template's send");
    let stats = sandbox.stats();
    assert_eq!((stats.account_events, stats.paced), (6, 1), "{stats:?}");
    sandbox.shutdown().await.unwrap();
}
