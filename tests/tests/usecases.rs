//! The three use cases through their ports as they run on AWS: the DynamoDB adapter on DynamoDB
//! Local, the EventBridge Scheduler adapter on moto, and a Cloud API stand-in served over HTTP on
//! loopback whose answer per recipient each test scripts. Time is a manual clock the test moves.
//! Webhooks are handed to the intake use case as Meta's bytes (the signature is the endpoint's
//! business, tested with the functions).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use capguard_tests::clock::ManualClock;
use capguard_tests::outcomes::Recorded;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use shared::clock::Clock;
use shared::cloud::http::{AccessToken, HttpCloudApi, HttpCloudApiConfig};
use shared::domain::consent::{ConsentChange, OptIn, sources};
use shared::domain::engagement::Tier;
use shared::domain::hold::{Hold, PROBE_EVERY};
use shared::domain::lifecycle::{DELIVERY_HORIZON, Delivery, Phase, Slot};
use shared::domain::rules::Category;
use shared::domain::verdict::{FinalReason, Rules};
use shared::outcome::{Outcome, OutcomeKind};
use shared::schedule::eventbridge::{EventBridgeScheduler, EventBridgeSettings, TargetRetryPolicy};
use shared::schedule::{JobPurpose, RetryJob};
use shared::store::dynamo::DynamoStore;
use shared::store::prelude::*;
use shared::store::{CountOf, HoldKey, SendId, SendRecord};
use shared::usecase::dispatch::{DispatchRequest, RecipientResult, RecipientSpec, TemplateName, dispatch};
use shared::usecase::holds;
use shared::usecase::intake::intake;
use shared::usecase::retry::{RetryOutcome, Skip, retry};
use shared::usecase::sending::SlotOutcome;
use shared::usecase::sweep::sweep;
use shared::usecase::{Deps, SendSettings, Tally};

const PHONE: &str = "106540352242922";
const INDIA: &str = "+919812345678";
const INDIA_2: &str = "+919812345679";
const US: &str = "+16505551234";

/// How the stand-in answers a send to one number.
#[derive(Clone, Debug)]
enum Answer {
    Accept,
    Refuse {
        http: u16,
        code: i64,
    },
    /// Answer only after the client has given up.
    Hang,
}

#[derive(Default)]
struct StandIn {
    answers: Mutex<HashMap<String, Answer>>,
    /// Every request taken: (to, biz_opaque_callback_data).
    requests: Mutex<Vec<(String, String)>>,
    /// When each request arrived, by recipient.
    arrivals: Mutex<Vec<(String, std::time::Instant)>>,
    /// The bearer token accepted, when one is required: any other is refused with 190.
    token: Mutex<Option<String>>,
}

impl StandIn {
    fn answer(&self, to: &str, answer: Answer) {
        self.answers.lock().unwrap().insert(to.to_owned(), answer);
    }

    fn sends_to(&self, to: &str) -> Vec<String> {
        self.requests.lock().unwrap().iter().filter(|(t, _)| t == to).map(|(_, tag)| tag.clone()).collect()
    }
}

async fn messages(
    State(stand_in): State<Arc<StandIn>>,
    Path((_, _)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let to = body["to"].as_str().unwrap_or_default().to_owned();
    let tag = body["biz_opaque_callback_data"].as_str().unwrap_or_default().to_owned();
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let wrong_token = stand_in.token.lock().unwrap().as_deref().is_some_and(|token| Some(token) != bearer);
    let answer = if wrong_token {
        Answer::Refuse { http: 401, code: 190 }
    } else {
        stand_in.answers.lock().unwrap().get(&to).cloned().unwrap_or(Answer::Accept)
    };
    stand_in.arrivals.lock().unwrap().push((to.clone(), std::time::Instant::now()));
    let serial = {
        let mut requests = stand_in.requests.lock().unwrap();
        requests.push((to.clone(), tag));
        requests.len()
    };
    match answer {
        Answer::Accept => Json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{ "input": to, "wa_id": to.trim_start_matches('+') }],
            "messages": [{ "id": format!("wamid.standin{serial}") }],
        }))
        .into_response(),
        Answer::Refuse { http, code } => (
            StatusCode::from_u16(http).unwrap(),
            Json(json!({ "error": { "message": format!("(#{code}) refused"), "type": "OAuthException", "code": code,
                                    "fbtrace_id": "AbCdEf" } })),
        )
            .into_response(),
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
    }
}

struct World {
    deps: Deps<DynamoStore, EventBridgeScheduler, HttpCloudApi>,
    clock: Arc<ManualClock>,
    stand_in: Arc<StandIn>,
    schedules: aws_sdk_scheduler::Client,
    group: String,
    /// What the token source answers (the parameter in SSM, on AWS).
    token: Arc<Mutex<String>>,
    /// The outcome events the use cases published.
    events: Arc<Recorded>,
}

/// The default rules on a three-step ladder, which the tests below climb step by step.
async fn world() -> World {
    world_with(Rules { ladder: "12h,24h,48h".parse().unwrap(), ..Rules::default() }).await
}

async fn world_with(rules: Rules) -> World {
    let stand_in = Arc::new(StandIn::default());
    let app = axum::Router::new()
        .route("/{version}/{phone}/messages", axum::routing::post(messages))
        .with_state(Arc::clone(&stand_in));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let store = capguard_tests::dynamo::fresh_dynamo_store().await;
    let endpoint = std::env::var("CAPGUARD_SCHEDULER_ENDPOINT")
        .unwrap_or_else(|_| panic!("CAPGUARD_SCHEDULER_ENDPOINT is not set: run scripts/test, which starts moto"));
    let group = format!("usecases-{}", store.table());
    let schedules = shared::schedule::eventbridge::sdk_client(Some(&endpoint)).await;
    schedules.create_schedule_group().name(&group).send().await.expect("moto creates the group");
    let scheduler = EventBridgeScheduler::new(
        schedules.clone(),
        EventBridgeSettings {
            group_name: group.clone(),
            target_arn: "arn:aws:lambda:us-east-1:123456789012:function:capguard-retry-executor".into(),
            role_arn: "arn:aws:iam::123456789012:role/capguard-scheduler".into(),
            dead_letter_arn: "arn:aws:sqs:us-east-1:123456789012:capguard-retry-dlq".into(),
            retry_policy: TargetRetryPolicy::default(),
        },
    );
    let mut cloud = HttpCloudApiConfig::new(AccessToken::new("test-token")).with_base_url(base_url);
    cloud.request_timeout = Duration::from_millis(400);
    let token = Arc::new(Mutex::new("rotated-token".to_owned()));
    let source = Arc::clone(&token);
    let cloud = HttpCloudApi::new(cloud).unwrap().with_token_source(Arc::new(move || {
        let current = AccessToken::new(source.lock().unwrap().clone());
        Box::pin(async move { Ok(current) })
    }));
    let clock = Arc::new(ManualClock::at(DateTime::from_timestamp(1_767_225_600, 0).unwrap()));
    let sending = SendSettings { call_backoff: Duration::from_millis(10), ..SendSettings::default() };
    let events = Arc::new(Recorded::default());
    let deps = Deps::new(store, scheduler, cloud, clock.clone(), rules, sending).with_outcomes(events.clone());
    World { deps, clock, stand_in, schedules, group, token, events }
}

impl World {
    fn request(&self, key: &str, category: Category, template: &str, to: &[&str]) -> DispatchRequest {
        DispatchRequest {
            phone_number_id: PHONE.into(),
            template: TemplateName { name: template.into(), language: "en_US".into() },
            category,
            campaign: Some("usecases".into()),
            idempotency_key: key.into(),
            retry_until: None,
            utc_offset: None,
            default_country: None,
            recipients: to
                .iter()
                .map(|t| RecipientSpec { to: (*t).into(), components: vec![], opt_in: None })
                .collect(),
        }
    }

    async fn send_one(&self, key: &str, to: &str) -> RecipientResult {
        self.send_with(key, Category::Marketing, "spring_sale", to).await
    }

    async fn send_with(&self, key: &str, category: Category, template: &str, to: &str) -> RecipientResult {
        let answer = dispatch(&self.deps, &self.request(key, category, template, &[to])).await.expect("dispatch runs");
        answer.results.into_iter().next().unwrap()
    }

    async fn send(&self, id: &SendId) -> SendRecord {
        self.deps.store.get_send(id).await.unwrap().expect("the send is recorded")
    }

    /// Meta's webhook for one status of `wamid`.
    async fn status(&self, wamid: &str, to: &str, status: &str, code: Option<i64>, callback: Option<&str>) {
        let mut item = json!({ "id": wamid, "status": status, "timestamp": self.clock.now().timestamp().to_string(),
                               "recipient_id": to.trim_start_matches('+') });
        if let Some(code) = code {
            item["errors"] = json!([{ "code": code, "title": "refused", "message": "refused" }]);
        }
        if let Some(callback) = callback {
            item["biz_opaque_callback_data"] = json!(callback);
        }
        self.webhook(json!({ "field": "messages", "value": { "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550783881", "phone_number_id": PHONE }, "statuses": [item] } }))
            .await;
    }

    async fn webhook(&self, change: Value) {
        let body = json!({ "object": "whatsapp_business_account", "entry": [{ "id": "102290129340398", "changes": [change] }] });
        intake(&self.deps, body.to_string().as_bytes()).await.expect("the batch is taken");
    }

    async fn reply(&self, from: &str, text: &str) {
        self.webhook(json!({ "field": "messages", "value": { "messaging_product": "whatsapp",
            "metadata": { "phone_number_id": PHONE },
            "messages": [{ "from": from.trim_start_matches('+'), "id": format!("wamid.in{}", self.clock.now().timestamp()),
                           "timestamp": self.clock.now().timestamp().to_string(), "type": "text", "text": { "body": text } }] } }))
            .await;
    }

    async fn press_stop(&self, who: &str) {
        self.press(who, "stop").await;
    }

    /// The recipient's marketing preference (`stop` or `resume`), as Meta's webhook reports it.
    async fn press(&self, who: &str, value: &str) {
        self.webhook(json!({ "field": "user_preferences", "value": { "messaging_product": "whatsapp",
            "metadata": { "phone_number_id": PHONE },
            "user_preferences": [{ "wa_id": who.trim_start_matches('+'), "detail": "User changed their marketing preference",
                                   "category": "marketing_messages", "value": value, "timestamp": self.clock.now().timestamp() }] } }))
            .await;
    }

    /// The `at(...)` expression of a schedule moto holds, or `None` when it holds none.
    async fn schedule(&self, job: &RetryJob) -> Option<String> {
        match self.schedules.get_schedule().group_name(&self.group).name(job.schedule_name()).send().await {
            Ok(found) => found.schedule_expression().map(str::to_owned),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => None,
            Err(e) => panic!("moto failed: {e:?}"),
        }
    }

    /// The outcome events published since the last look.
    async fn events(&self) -> Vec<Outcome> {
        self.events.take(&self.deps.outcomes).await
    }

    async fn event_kinds(&self) -> Vec<OutcomeKind> {
        self.events.kinds(&self.deps.outcomes).await
    }

    async fn fire(&self, job: &RetryJob) -> RetryOutcome {
        retry(&self.deps, job).await.expect("the retry runs").outcome
    }
}

fn at_expression(due: DateTime<Utc>) -> String {
    format!("at({})", due.format("%Y-%m-%dT%H:%M:%S"))
}

fn accepted(result: &RecipientResult) -> (SendId, String) {
    match result {
        RecipientResult::Accepted { send_id, wamid, .. } => (send_id.clone(), wamid.clone()),
        other => panic!("expected accepted, got {other:?}"),
    }
}

fn sent_wamid(outcome: &RetryOutcome) -> String {
    match outcome {
        RetryOutcome::Sent(SlotOutcome::Accepted { wamid }) => wamid.clone(),
        other => panic!("expected a sent retry, got {other:?}"),
    }
}

const SLOT_2: Slot = Slot { attempt: 2, try_no: 1 };

#[tokio::test]
async fn a_capped_send_climbs_the_ladder_and_is_recovered() {
    let w = world().await;
    let (id, wamid) = accepted(&w.send_one("recover", INDIA).await);
    let capped_at = w.clock.advance(TimeDelta::seconds(30));
    w.status(&wamid, INDIA, "failed", Some(131049), None).await;

    let send = w.send(&id).await;
    let due = capped_at + TimeDelta::hours(12);
    assert_eq!((send.life.slot, send.life.phase), (SLOT_2, Phase::Waiting { due }));
    let job = RetryJob::new(id.clone(), SLOT_2);
    assert_eq!(w.schedule(&job).await, Some(at_expression(due)), "the retry is scheduled at its exact due time");
    let [capped, planned] = <[Outcome; 2]>::try_from(w.events().await).expect("two events");
    assert_eq!((capped.kind, capped.attempt, capped.code), (OutcomeKind::SendCapped, Some(1), Some(131049)));
    assert_eq!((capped.send_id.as_deref(), capped.recipient.as_deref()), (Some(id.as_str()), Some(INDIA)));
    assert_eq!((capped.campaign.as_deref(), capped.template.as_deref()), (Some("usecases"), Some("spring_sale")));
    assert_eq!((planned.kind, planned.attempt, planned.due), (OutcomeKind::RetryPlanned, Some(2), Some(due)));

    w.clock.advance(TimeDelta::hours(12));
    let retried = sent_wamid(&w.fire(&job).await);
    w.status(&retried, INDIA, "delivered", None, Some(&format!("send={id};attempt=2;try=1"))).await;
    let send = w.send(&id).await;
    assert_eq!(send.life.phase, Phase::Succeeded { delivery: Delivery::Delivered });
    let recovered = w.events().await;
    assert_eq!(
        recovered.iter().map(|e| (e.kind, e.attempt)).collect::<Vec<_>>(),
        [(OutcomeKind::SendRecovered, Some(2))]
    );
    w.status(&retried, INDIA, "delivered", None, Some(&format!("send={id};attempt=2;try=1"))).await;
    assert!(w.events().await.is_empty(), "a redelivered status publishes nothing again");
    assert_eq!(w.stand_in.sends_to(INDIA).len(), 2);
    assert_eq!(w.deps.store.get_recipient(&INDIA[1..]).await.unwrap().marketing_deliveries.len(), 1);
}

#[tokio::test]
async fn a_send_capped_on_every_step_is_exhausted_and_scheduled_no_more() {
    let w = world().await;
    let (id, mut wamid) = accepted(&w.send_one("exhaust", INDIA).await);
    for attempt in 2..=4 {
        w.clock.advance(TimeDelta::minutes(1));
        w.status(&wamid, INDIA, "failed", Some(131049), None).await;
        let job = RetryJob::new(id.clone(), Slot { attempt, try_no: 1 });
        assert!(w.schedule(&job).await.is_some(), "attempt {attempt} is scheduled");
        let Phase::Waiting { due } = w.send(&id).await.life.phase else { panic!("waiting for attempt {attempt}") };
        if attempt == 4 {
            assert!(due >= w.clock.now() + TimeDelta::hours(96), "the third cap in a row doubles the 48 h step");
        }
        // At its due time, which the policy placed in the recipient's daytime.
        w.clock.set(due);
        wamid = sent_wamid(&w.fire(&job).await);
    }
    let kinds = w.event_kinds().await;
    assert_eq!(kinds.iter().filter(|k| **k == OutcomeKind::SendCapped).count(), 3, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == OutcomeKind::RetryPlanned).count(), 3, "{kinds:?}");
    w.status(&wamid, INDIA, "failed", Some(131049), None).await;
    let send = w.send(&id).await;
    assert_eq!(send.life.phase, Phase::Final { reason: FinalReason::Exhausted });
    let last = w.events().await;
    assert_eq!(last.iter().map(|e| e.kind).collect::<Vec<_>>(), [OutcomeKind::SendCapped, OutcomeKind::SendExhausted]);
    assert_eq!((last[1].attempt, last[1].reason.as_deref()), (Some(4), Some("exhausted")));
    assert_eq!(send.attempts.len(), 4);
    assert_eq!(w.schedule(&RetryJob::new(id, Slot { attempt: 5, try_no: 1 })).await, None);
    assert_eq!(w.stand_in.sends_to(INDIA).len(), 4, "four attempts in all");
    assert_eq!(w.deps.store.get_recipient(&INDIA[1..]).await.unwrap().consecutive_caps, 4);
}

#[tokio::test]
async fn a_us_marketing_send_is_refused_up_front() {
    let w = world().await;
    match w.send_one("us", US).await {
        RecipientResult::Refused { reason, .. } => assert_eq!(reason, FinalReason::MarketingPausedRegion),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(w.stand_in.sends_to(US).is_empty(), "nothing reached the Cloud API");
}

#[tokio::test]
async fn an_opt_out_mid_ladder_cancels_the_pending_schedule() {
    let w = world().await;
    let (id, wamid) = accepted(&w.send_one("optout", INDIA).await);
    w.status(&wamid, INDIA, "failed", Some(131049), None).await;
    let job = RetryJob::new(id.clone(), SLOT_2);
    assert!(w.schedule(&job).await.is_some());

    w.clock.advance(TimeDelta::hours(1));
    w.press_stop(INDIA).await;
    assert_eq!(w.send(&id).await.life.phase, Phase::Final { reason: FinalReason::OptedOut });
    let events = w.events().await;
    let opted_out = events.last().expect("events");
    assert_eq!((opted_out.kind, opted_out.recipient.as_deref()), (OutcomeKind::RecipientOptedOut, Some(INDIA)));
    assert_eq!(w.schedule(&job).await, None, "the schedule is deleted");
    assert_eq!(w.fire(&job).await, RetryOutcome::Skipped(Skip::Finished), "a firing already on its way does nothing");
    assert_eq!(w.stand_in.sends_to(INDIA).len(), 1);
    assert!(matches!(
        w.send_one("after-stop", INDIA).await,
        RecipientResult::Refused { reason: FinalReason::OptedOut, .. }
    ));
}

#[tokio::test]
async fn a_reply_fires_the_waiting_send_early() {
    let w = world().await;
    let (id, wamid) = accepted(&w.send_one("reply", INDIA).await);
    w.status(&wamid, INDIA, "failed", Some(131049), None).await;
    let job = RetryJob::new(id.clone(), SLOT_2);

    let replied_at = w.clock.advance(TimeDelta::hours(2));
    w.reply(INDIA, "Tell me more").await;
    assert_eq!(w.send(&id).await.life.phase, Phase::Waiting { due: replied_at });
    let expression = w.schedule(&job).await.expect("the schedule is replaced, not dropped");
    assert_eq!(expression, at_expression(replied_at + TimeDelta::minutes(1)), "EventBridge's earliest: a minute on");
    sent_wamid(&w.fire(&job).await);
    assert_eq!(w.stand_in.sends_to(INDIA).len(), 2);
}

/// What `dynamo_capacity` and docs/data-model.md give for a send's happy path, measured through
/// the use cases themselves, their own reads included: dispatch, then Meta's sent, delivered and
/// read webhooks, each carrying the callback tag as Meta echoes it.
#[tokio::test]
async fn the_happy_path_costs_eleven_write_units_and_three_read_units_in_all() {
    let w = world().await;
    // What a process does once, not once a send: learn which number the display number is, and
    // read the numbers' ratings (again at most every 30 s).
    w.webhook(json!({ "field": "messages", "value": { "messaging_product": "whatsapp",
        "metadata": { "display_phone_number": "15550783881", "phone_number_id": PHONE } } }))
        .await;
    shared::usecase::quality::rating_of(&w.deps, PHONE).await.unwrap();
    let before = w.deps.store.consumed();
    let (id, wamid) = accepted(&w.send_one("units", INDIA).await);
    let tag = w.stand_in.sends_to(INDIA).pop().expect("sent with its tag");
    for status in ["sent", "delivered", "read"] {
        w.clock.advance(TimeDelta::seconds(1));
        w.status(&wamid, INDIA, status, None, Some(&tag)).await;
    }
    let cost = w.deps.store.consumed() - before;
    assert_eq!((cost.write_units, cost.read_units, cost.refused_writes), (11.0, 3.0, 0));
    assert_eq!(w.send(&id).await.life.phase, Phase::Succeeded { delivery: Delivery::Read });
    assert_eq!(w.deps.store.get_recipient(&INDIA[1..]).await.unwrap().last_read_at, Some(w.clock.now()));
}

/// The engaged (a read or a reply within 30 days) are sent first, then the dormant (reached
/// before, silent since), then the new; each send keeps its recipient's tier, for the report.
/// With the policy's `engaged_first` off, the request's own order.
#[tokio::test]
async fn a_marketing_request_goes_to_the_engaged_first_and_each_send_keeps_its_tier() {
    let mut w = world().await;
    w.deps.sending.parallelism = 1;
    let (new, dormant, reader, replier) = ("+919812345671", "+919812345672", "+919812345673", "+919812345674");
    for (key, to, status) in [("before-1", dormant, "delivered"), ("before-2", reader, "read")] {
        let (_, wamid) = accepted(&w.send_one(key, to).await);
        let tag = w.stand_in.sends_to(to).pop().expect("sent with its tag");
        w.status(&wamid, to, status, None, Some(&tag)).await;
    }
    w.reply(replier, "what's new?").await;
    w.clock.advance(TimeDelta::days(3));
    w.stand_in.requests.lock().unwrap().clear();

    let to = [new, dormant, reader, replier];
    let answer = dispatch(&w.deps, &w.request("tiers", Category::Marketing, "spring_sale", &to)).await.unwrap();
    let order: Vec<String> = w.stand_in.requests.lock().unwrap().iter().map(|(to, _)| to.clone()).collect();
    assert_eq!(order, [reader, replier, dormant, new], "engaged, then dormant, then new");
    let mut tiers = Vec::new();
    for result in &answer.results {
        tiers.push(w.send(&accepted(result).0).await.tier);
    }
    assert_eq!(
        tiers,
        [Some(Tier::New), Some(Tier::Dormant), Some(Tier::Engaged), Some(Tier::Engaged)],
        "in request order"
    );

    w.deps.rules.policy.engaged_first = false;
    w.stand_in.requests.lock().unwrap().clear();
    dispatch(&w.deps, &w.request("in-order", Category::Marketing, "spring_sale", &to)).await.unwrap();
    let order: Vec<String> = w.stand_in.requests.lock().unwrap().iter().map(|(to, _)| to.clone()).collect();
    assert_eq!(order, to, "the request's own order");
}

/// Numbers as people write them (spaces, dashes, a national number given the request's default
/// country) are one recipient in E.164: written twice in one request, it is sent once. What is
/// not a valid number is refused with the reason, and nothing is recorded for it.
#[tokio::test]
async fn numbers_as_people_write_them_are_one_recipient_in_e164() {
    let mut w = world().await;
    w.deps.sending.parallelism = 1;
    let written = ["+91 98123-45678", "098123 45678", "+91 98123"];
    let mut request = w.request("formats", Category::Marketing, "spring_sale", &written);
    request.default_country = Some("IN".into());
    let answer = dispatch(&w.deps, &request).await.unwrap();
    let (id, _) = accepted(&answer.results[0]);
    assert!(
        matches!(&answer.results[1], RecipientResult::Duplicate { send_id, .. } if *send_id == id),
        "{:?}",
        answer.results[1]
    );
    match &answer.results[2] {
        RecipientResult::Invalid { to, problems } => {
            assert_eq!((to.as_str(), problems.len()), ("+91 98123", 1));
            assert!(problems[0].contains("is not a valid number"), "{problems:?}");
        }
        other => panic!("expected invalid, got {other:?}"),
    }
    assert_eq!(w.send(&id).await.recipient, "919812345678");
    assert_eq!(w.stand_in.sends_to(INDIA).len(), 1, "sent once, in E.164");

    request.default_country = Some("Narnia".into());
    let refused = dispatch(&w.deps, &request).await.expect_err("an unknown country refuses the request");
    assert!(refused.to_string().contains("default_country: \"Narnia\" is not an ISO 3166 country code"), "{refused}");
}

#[tokio::test]
async fn duplicate_webhooks_change_nothing() {
    let w = world().await;
    let (id, wamid) = accepted(&w.send_one("dupes", INDIA).await);
    w.status(&wamid, INDIA, "failed", Some(131049), None).await;
    let once = w.send(&id).await;
    w.clock.advance(TimeDelta::minutes(5));
    w.status(&wamid, INDIA, "failed", Some(131049), None).await;
    w.status(&wamid, INDIA, "sent", None, None).await;
    assert_eq!(w.send(&id).await, once, "a redelivered failure and a late sent change nothing");
    assert_eq!(w.deps.store.get_recipient(&INDIA[1..]).await.unwrap().consecutive_caps, 1, "the cap counted once");

    let (other, other_wamid) = accepted(&w.send_one("dupes-2", INDIA_2).await);
    w.status(&other_wamid, INDIA_2, "read", None, None).await;
    let read = w.send(&other).await;
    w.status(&other_wamid, INDIA_2, "delivered", None, None).await;
    w.status(&other_wamid, INDIA_2, "read", None, None).await;
    assert_eq!(w.send(&other).await, read);
    assert_eq!(w.deps.store.get_recipient(&INDIA_2[1..]).await.unwrap().marketing_deliveries.len(), 1);
}

#[tokio::test]
async fn a_duplicate_schedule_firing_sends_nothing_twice() {
    let w = world().await;
    let (id, wamid) = accepted(&w.send_one("twice", INDIA).await);
    w.status(&wamid, INDIA, "failed", Some(131049), None).await;
    let job = RetryJob::new(id.clone(), SLOT_2);
    w.clock.advance(TimeDelta::hours(12));
    let (first, second) = tokio::join!(w.fire(&job), w.fire(&job));
    let sent = [&first, &second].iter().filter(|o| matches!(o, RetryOutcome::Sent(_))).count();
    assert_eq!(sent, 1, "{first:?} {second:?}");
    assert!(matches!(w.fire(&job).await, RetryOutcome::Skipped(_)));
    assert_eq!(w.stand_in.sends_to(INDIA).len(), 2, "attempt 1 and one attempt 2");
}

#[tokio::test]
async fn a_sender_halt_keeps_sends_waiting_without_growing_until_an_operator_lifts_it() {
    let w = world().await;
    let (id, wamid) = accepted(&w.send_one("halt-waiting", INDIA).await);
    w.status(&wamid, INDIA, "failed", Some(131049), None).await;

    w.stand_in.answer(INDIA_2, Answer::Refuse { http: 400, code: 131042 });
    let halted_at = w.clock.now();
    match w.send_one("halt", INDIA_2).await {
        RecipientResult::Failed { code, retry, .. } => assert_eq!((code, retry), (131042, true)),
        other => panic!("expected the payment failure, got {other:?}"),
    }
    let sender = HoldKey::Sender { phone_number_id: PHONE.into() };
    let hold = w.deps.store.get_hold(&sender).await.unwrap().expect("the number is halted");
    let held = w.events().await.into_iter().find(|e| e.kind == OutcomeKind::SendsHeld).expect("a held event");
    assert_eq!((held.phone_number_id.as_deref(), held.code, held.template), (Some(PHONE), Some(131042), None));
    assert_eq!((hold.code, hold.since, hold.probe_at), (131042, halted_at, halted_at + PROBE_EVERY));
    let RecipientResult::Held { send_id: arrived, .. } = w.send_one("halt-after", "+919812345670").await else {
        panic!("a send under a halt waits for it")
    };
    assert_eq!(w.send(&arrived).await.life.phase, Phase::Waiting { due: hold.probe_at });

    // Looked at again and again before the probe time: it waits, and its item does not grow.
    for hours in [12, 13, 14] {
        w.clock.set(halted_at + TimeDelta::hours(hours));
        w.deps
            .store
            .set_hold(&sender, Some(Hold { probe_at: w.clock.now() + PROBE_EVERY, ..hold.clone() }), w.clock.now())
            .await
            .unwrap();
        assert_eq!(w.fire(&RetryJob::new(id.clone(), SLOT_2)).await, RetryOutcome::Held);
        let held = w.send(&id).await;
        assert_eq!(held.life.slot, SLOT_2, "the attempt is not used up");
        assert_eq!(held.life.phase, Phase::Waiting { due: w.clock.now() + PROBE_EVERY }, "it waits for the probe");
        assert_eq!(held.attempts.len(), 1, "nothing was claimed: the item keeps its size");
    }
    assert!(w.schedule(&RetryJob::new(id.clone(), SLOT_2)).await.is_some(), "it waits under its timer");
    assert_eq!(w.stand_in.sends_to(INDIA).len(), 1);

    let mut tally = Tally::default();
    assert!(
        holds::lift_in(&w.deps.store, &w.deps.outcomes, &sender, "by_operator", w.clock.now(), &mut tally)
            .await
            .unwrap()
    );
    assert_eq!(tally.get("holds_lifted_by_operator"), 1);
    let lifted = w.events().await;
    assert_eq!(
        lifted.iter().map(|e| (e.kind, e.reason.as_deref())).collect::<Vec<_>>(),
        [(OutcomeKind::HoldLifted, Some("by_operator"))]
    );
    w.clock.advance(PROBE_EVERY);
    sent_wamid(&w.fire(&RetryJob::new(id, SLOT_2)).await);
    assert_eq!(w.stand_in.sends_to(INDIA).len(), 2, "sent once after the lift");
}

#[tokio::test]
async fn a_paused_template_waits_for_its_webhook_and_is_sent_once_afterwards() {
    let w = world().await;
    let (id, wamid) = accepted(&w.send_one("paused", INDIA).await);
    let paused_at = w.clock.advance(TimeDelta::minutes(1));
    w.status(&wamid, INDIA, "failed", Some(132015), None).await;
    let send = w.send(&id).await;
    assert_eq!(send.life.phase, Phase::Waiting { due: paused_at + PROBE_EVERY });
    assert_eq!(send.life.slot, Slot { attempt: 1, try_no: 2 });
    let template =
        HoldKey::Template { phone_number_id: PHONE.into(), name: "spring_sale".into(), language: "en_US".into() };
    assert_eq!(w.deps.store.get_hold(&template).await.unwrap().map(|h| h.code), Some(132015));
    assert!(matches!(w.send_one("paused-after", INDIA_2).await, RecipientResult::Held { .. }));
    assert!(w.stand_in.sends_to(INDIA_2).is_empty());
    assert!(matches!(
        w.send_with("paused-other", Category::Marketing, "weekly_offers", INDIA_2).await,
        RecipientResult::Accepted { .. }
    ));

    // A pause event changes nothing; the unpause lifts the hold (Meta writes the language en-US).
    let template_status = |event: &str, title: &str| {
        json!({ "field": "message_template_status_update", "value": { "event": event, "message_template_id": 594425479261596_i64,
            "message_template_name": "spring_sale", "message_template_language": "en-US", "reason": null,
            "other_info": { "title": title, "description": "" } } })
    };
    w.webhook(template_status("PAUSED", "FIRST_PAUSE")).await;
    assert!(w.deps.store.get_hold(&template).await.unwrap().is_some());
    let held = w.events().await.into_iter().find(|e| e.kind == OutcomeKind::SendsHeld).expect("a held event");
    assert_eq!(
        (held.template.as_deref(), held.language.as_deref(), held.code),
        (Some("spring_sale"), Some("en_US"), Some(132015))
    );
    w.webhook(template_status("PAUSED", "UNPAUSE")).await;
    assert_eq!(w.deps.store.get_hold(&template).await.unwrap(), None, "the unpause lifts the hold");
    let lifted = w.events().await;
    assert_eq!(
        lifted.iter().map(|e| (e.kind, e.reason.as_deref())).collect::<Vec<_>>(),
        [(OutcomeKind::HoldLifted, Some("by_webhook"))]
    );

    w.clock.set(paused_at + PROBE_EVERY);
    sent_wamid(&w.fire(&RetryJob::new(id.clone(), Slot { attempt: 1, try_no: 2 })).await);
    assert_eq!(w.fire(&RetryJob::new(id, Slot { attempt: 1, try_no: 2 })).await, RetryOutcome::Skipped(Skip::NotDue));
    assert_eq!(w.stand_in.sends_to(INDIA).len(), 2, "the held send went out once more, once");
}

#[tokio::test]
async fn one_held_send_probes_and_an_accepted_probe_lifts_the_hold() {
    let w = world().await;
    w.stand_in.answer(INDIA, Answer::Refuse { http: 400, code: 131042 });
    let halted_at = w.clock.now();
    w.send_one("probe-1", INDIA).await;
    let RecipientResult::Held { send_id: second, .. } = w.send_one("probe-2", INDIA_2).await else { panic!() };
    let first = SendId::derive(PHONE, "probe-1", INDIA.trim_start_matches('+'));
    let sender = HoldKey::Sender { phone_number_id: PHONE.into() };

    // At the probe time one send probes (refused again: the hold stays), the other waits.
    w.clock.set(halted_at + PROBE_EVERY);
    let first_slot = w.send(&first).await.life.slot;
    assert!(matches!(
        w.fire(&RetryJob::new(first.clone(), first_slot)).await,
        RetryOutcome::Sent(SlotOutcome::Failed { .. })
    ));
    assert_eq!(w.fire(&RetryJob::new(second.clone(), Slot::FIRST)).await, RetryOutcome::Held, "one probe at a time");
    let hold = w.deps.store.get_hold(&sender).await.unwrap().expect("a refused probe keeps the hold");
    assert_eq!(hold.probe_at, w.clock.now() + PROBE_EVERY);
    assert_eq!(w.stand_in.sends_to(INDIA_2).len(), 0);

    // The next probe is accepted: the hold is lifted and the other send goes out.
    w.stand_in.answer(INDIA, Answer::Accept);
    w.clock.set(hold.probe_at);
    let first_slot = w.send(&first).await.life.slot;
    sent_wamid(&w.fire(&RetryJob::new(first, first_slot)).await);
    assert_eq!(w.deps.store.get_hold(&sender).await.unwrap(), None, "an accepted probe lifts the halt");
    sent_wamid(&w.fire(&RetryJob::new(second, Slot::FIRST)).await);
    assert_eq!(w.stand_in.sends_to(INDIA_2).len(), 1);
}

#[tokio::test]
async fn a_hold_past_its_limits_raises_its_gauge_then_ends_its_sends() {
    let w = world().await;
    let sender = HoldKey::Sender { phone_number_id: PHONE.into() };
    let since = w.clock.now();
    w.deps.store.set_hold(&sender, Some(Hold::new(368, since)), since).await.unwrap();
    let RecipientResult::Held { send_id, .. } = w.send_one("old-hold", INDIA).await else { panic!() };

    // The sweep finds the held send overdue and sends it as the probe, which Meta refuses again.
    w.stand_in.answer(INDIA, Answer::Refuse { http: 400, code: 368 });
    w.clock.set(since + TimeDelta::hours(25));
    let swept = sweep(&w.deps, Duration::from_secs(30)).await.unwrap();
    assert_eq!(w.stand_in.sends_to(INDIA).len(), 1, "one probe");
    assert_eq!(
        (swept.tally.get("holds_open"), swept.tally.get("senders_halted_now"), swept.tally.get("holds_too_old")),
        (1, 1, 1),
        "the gauges the alarms read"
    );
    let views = holds::list(&w.deps.store, &w.deps.rules.holds, w.clock.now()).await.unwrap();
    assert!(views.iter().any(|v| v.phone_number_id == PHONE && v.too_old && v.code == 368));

    w.clock.set(since + TimeDelta::hours(72));
    let slot = w.send(&send_id).await.life.slot;
    assert_eq!(w.fire(&RetryJob::new(send_id.clone(), slot)).await, RetryOutcome::Settled);
    assert_eq!(w.send(&send_id).await.life.phase, Phase::Final { reason: FinalReason::HeldTooLong });
    assert_eq!(w.stand_in.sends_to(INDIA).len(), 1, "nothing after the probe");
    let kinds = w.event_kinds().await;
    assert!(!kinds.contains(&OutcomeKind::SendExhausted), "a send never capped is not exhausted: {kinds:?}");
}

/// A capped send that ends another way than its ladder (here a hold that lasted too long) is
/// reported exhausted, with the reason it ended: the business's fallback hears of every one.
#[tokio::test]
async fn a_capped_send_that_ends_another_way_is_reported_exhausted_with_its_reason() {
    let w = world().await;
    let (id, wamid) = accepted(&w.send_one("capped-then-held", INDIA).await);
    w.status(&wamid, INDIA, "failed", Some(131049), None).await;
    let since = w.clock.now();
    let sender = HoldKey::Sender { phone_number_id: PHONE.into() };
    w.deps.store.set_hold(&sender, Some(Hold::new(368, since)), since).await.unwrap();
    assert_eq!(w.event_kinds().await, [OutcomeKind::SendCapped, OutcomeKind::RetryPlanned]);

    // Past the hold's 72 h, in the recipient's daytime (13:30 in India).
    w.clock.set(since + TimeDelta::hours(80));
    assert_eq!(w.fire(&RetryJob::new(id.clone(), SLOT_2)).await, RetryOutcome::Settled);
    assert_eq!(w.send(&id).await.life.phase, Phase::Final { reason: FinalReason::HeldTooLong });
    let ended: Vec<_> = w.events().await.into_iter().map(|e| (e.kind, e.reason, e.attempt, e.send_id)).collect();
    assert_eq!(ended, [(OutcomeKind::SendExhausted, Some("held_too_long".into()), Some(2), Some(id.to_string()))]);
}

/// The default policy places each retry for its recipient: at once inside a window the
/// recipient opened, in their morning rather than their night (by the request's offset when it
/// gives one), and not at all past the request's `retry_until`.
#[tokio::test]
async fn the_policy_retries_inside_the_window_in_the_morning_and_never_past_the_deadline() {
    let w = world().await;
    let noon = |day: i64| DateTime::from_timestamp(1_780_272_000 + day * 86_400 + 12 * 3_600, 0).unwrap();

    w.clock.set(noon(0));
    let (id, wamid) = accepted(&w.send_one("in-window", INDIA).await);
    let wrote = w.clock.advance(TimeDelta::minutes(1));
    w.reply(INDIA, "Is this still on?").await;
    w.status(&wamid, INDIA, "failed", Some(131049), None).await;
    assert_eq!(w.send(&id).await.life.phase, Phase::Waiting { due: wrote }, "at once, inside the window");

    // Capped at 20:00 UTC: the 12 h step is 08:00 UTC, 13:30 in India but 05:00 at UTC-3.
    w.clock.set(noon(3) + TimeDelta::hours(8));
    let (plain, wamid) = accepted(&w.send_one("india-time", INDIA_2).await);
    w.status(&wamid, INDIA_2, "failed", Some(131049), None).await;
    let step = w.clock.now() + TimeDelta::hours(12);
    assert_eq!(w.send(&plain).await.life.phase, Phase::Waiting { due: step });
    let mut request = w.request("brazil-time", Category::Marketing, "spring_sale", &["+919812345677"]);
    request.utc_offset = Some("-03:00".into());
    let answer = dispatch(&w.deps, &request).await.unwrap();
    let (offset, wamid) = accepted(&answer.results[0]);
    w.status(&wamid, "+919812345677", "failed", Some(131049), None).await;
    assert_eq!(w.send(&offset).await.life.phase, Phase::Waiting { due: step + TimeDelta::hours(4) }, "09:00 at UTC-3");

    let mut request = w.request("flash", Category::Marketing, "spring_sale", &["+919812345676"]);
    request.retry_until = Some(w.clock.now() + TimeDelta::hours(6));
    let answer = dispatch(&w.deps, &request).await.unwrap();
    let (flash, wamid) = accepted(&answer.results[0]);
    w.status(&wamid, "+919812345676", "failed", Some(131049), None).await;
    assert_eq!(w.send(&flash).await.life.phase, Phase::Final { reason: FinalReason::Deadline });

    request.utc_offset = Some("India".into());
    let refused = dispatch(&w.deps, &request).await.unwrap_err().to_string();
    assert!(refused.contains("utc_offset: \"India\" is not a UTC offset"), "{refused}");
}

/// A ladder retry whose timer comes late, in the recipient's night, is not sent then: it waits for
/// their morning, attempt unused, and the morning's firing sends it.
#[tokio::test]
async fn a_retry_whose_timer_fires_in_the_recipients_night_waits_for_their_morning() {
    let w = world().await;
    // Noon UTC, 17:30 in India.
    let noon = DateTime::from_timestamp(1_780_272_000 + 12 * 3_600, 0).unwrap();
    w.clock.set(noon);
    let (id, wamid) = accepted(&w.send_one("late-timer", INDIA).await);
    w.status(&wamid, INDIA, "failed", Some(131049), None).await;
    // Placed at 09:00 IST the next day; its timer fires at 16:00 UTC instead, 21:30 IST.
    w.clock.set(noon + TimeDelta::hours(28));
    assert_eq!(w.fire(&RetryJob::new(id.clone(), SLOT_2)).await, RetryOutcome::Morning);
    let morning = noon + TimeDelta::minutes(39 * 60 + 30);
    assert_eq!(w.send(&id).await.life.phase, Phase::Waiting { due: morning }, "09:00 IST the day after");
    assert_eq!(w.stand_in.sends_to(INDIA).len(), 1, "nothing sent at night");
    w.clock.set(morning);
    assert!(matches!(w.fire(&RetryJob::new(id, SLOT_2)).await, RetryOutcome::Sent(_)));
    assert_eq!(w.stand_in.sends_to(INDIA).len(), 2);
}

/// A message Meta accepted keeps its claim's due time; the sweep finds it undelivered then and
/// awaits it until no status can come (no alarm: its prompt was not lost), then gives it up.
#[tokio::test]
async fn an_undelivered_message_is_awaited_by_the_sweep_then_given_up() {
    let w = world().await;
    let accepted_at = w.clock.now();
    let (id, wamid) = accepted(&w.send_one("offline", INDIA).await);
    w.status(&wamid, INDIA, "sent", None, None).await;
    let due = accepted_at + w.deps.sending.outcome_wait;
    assert_eq!(w.send(&id).await.life.phase, Phase::InFlight { delivery: Delivery::Sent, due });

    w.clock.set(due + w.deps.sending.sweep_grace + TimeDelta::minutes(1));
    let swept = sweep(&w.deps, Duration::from_secs(30)).await.unwrap();
    assert_eq!((swept.moved, swept.tally.get("deliveries_awaited"), swept.tally.get("prompts_lost")), (1, 1, 0));
    let horizon = accepted_at + DELIVERY_HORIZON;
    assert_eq!(w.send(&id).await.life.phase, Phase::InFlight { delivery: Delivery::Sent, due: horizon });
    assert_eq!(sweep(&w.deps, Duration::from_secs(30)).await.unwrap().listed, 0, "not overdue any more");

    w.clock.set(horizon + w.deps.sending.sweep_grace + TimeDelta::minutes(1));
    let swept = sweep(&w.deps, Duration::from_secs(30)).await.unwrap();
    assert_eq!((swept.moved, swept.tally.get("prompts_lost")), (1, 0));
    assert_eq!(w.send(&id).await.life.phase, Phase::Final { reason: FinalReason::Undelivered });
    assert_eq!(w.stand_in.sends_to(INDIA).len(), 1, "never sent again");
}

#[tokio::test]
async fn a_rotated_token_is_read_again_and_the_send_goes_out_without_a_halt() {
    let w = world().await;
    *w.stand_in.token.lock().unwrap() = Some("rotated-token".into());
    let answer = w.send_one("rotated", INDIA).await;
    assert!(matches!(answer, RecipientResult::Accepted { .. }), "{answer:?}");
    assert_eq!(w.stand_in.sends_to(INDIA).len(), 2, "refused once for the old token, then accepted");
    assert_eq!(w.deps.store.get_hold(&HoldKey::Sender { phone_number_id: PHONE.into() }).await.unwrap(), None);

    // A token that is still wrong after the re-read halts the number.
    *w.stand_in.token.lock().unwrap() = Some("rotated-again".into());
    *w.token.lock().unwrap() = "rotated-token".into();
    assert!(matches!(w.send_one("stale", INDIA_2).await, RecipientResult::Failed { code: 190, .. }));
    let hold = w.deps.store.get_hold(&HoldKey::Sender { phone_number_id: PHONE.into() }).await.unwrap();
    assert_eq!(hold.map(|h| h.code), Some(190));
}

/// A recipient whose call hangs until the client gives up holds one of dispatch's lanes, not
/// the whole request: the recipients after it are sent meanwhile.
#[tokio::test]
async fn a_hanging_call_does_not_hold_up_the_recipients_after_it() {
    let mut w = world().await;
    w.deps.sending.parallelism = 3;
    let others = ["+919812345671", "+919812345672", "+919812345673"];
    w.stand_in.answer(INDIA, Answer::Hang);
    let mut to = vec![INDIA];
    to.extend(others);
    let answer = dispatch(&w.deps, &w.request("lanes", Category::Marketing, "spring_sale", &to)).await.unwrap();
    assert!(matches!(answer.results[0], RecipientResult::Pending { .. }), "{:?}", answer.results[0]);
    assert!(answer.results[1..].iter().all(|r| matches!(r, RecipientResult::Accepted { .. })), "{:?}", answer.results);
    let arrivals = w.stand_in.arrivals.lock().unwrap().clone();
    let arrived = |number: &str| arrivals.iter().find(|(to, _)| to == number).expect("sent").1;
    // The client gives up on the hanging call after 400 ms; with the lanes held in order, the
    // third of the others could only start then.
    let gave_up = arrived(INDIA) + Duration::from_millis(400);
    for other in others {
        assert!(arrived(other) < gave_up, "{other} waited for the hanging call");
    }
}

#[tokio::test]
async fn a_send_whose_answer_timed_out_is_settled_by_the_later_webhook() {
    let w = world().await;
    w.stand_in.answer(INDIA, Answer::Hang);
    let id = match w.send_one("timeout", INDIA).await {
        RecipientResult::Pending { send_id, .. } => send_id,
        other => panic!("expected an unknown outcome, got {other:?}"),
    };
    assert_eq!(w.stand_in.sends_to(INDIA).len(), 1, "not resent blindly");
    let settle = RetryJob::settle(id.clone(), Slot::FIRST);
    assert_eq!(settle.purpose, JobPurpose::Settle);
    assert!(w.schedule(&settle).await.is_some(), "a settle timer waits for the webhook");

    w.status("wamid.lost-answer", INDIA, "delivered", None, Some(&format!("send={id};attempt=1;try=1"))).await;
    assert_eq!(w.send(&id).await.life.phase, Phase::Succeeded { delivery: Delivery::Delivered });
    assert_eq!(w.fire(&settle).await, RetryOutcome::Skipped(Skip::Finished));

    w.stand_in.answer(INDIA_2, Answer::Hang);
    let silent = match w.send_one("timeout-silent", INDIA_2).await {
        RecipientResult::Pending { send_id, .. } => send_id,
        other => panic!("expected an unknown outcome, got {other:?}"),
    };
    w.clock.advance(TimeDelta::minutes(15));
    assert_eq!(w.fire(&RetryJob::settle(silent.clone(), Slot::FIRST)).await, RetryOutcome::Settled);
    assert_eq!(w.send(&silent).await.life.phase, Phase::Final { reason: FinalReason::OutcomeUnknown });
}

#[tokio::test]
async fn the_frequency_cap_suppresses_a_third_marketing_message_in_a_week() {
    let w = world().await;
    for key in ["week-1", "week-2"] {
        let (_, wamid) = accepted(&w.send_one(key, INDIA).await);
        w.status(&wamid, INDIA, "delivered", None, None).await;
        w.clock.advance(TimeDelta::days(2));
    }
    assert!(matches!(
        w.send_one("week-3", INDIA).await,
        RecipientResult::Refused { reason: FinalReason::FrequencyCap, .. }
    ));
    w.clock.advance(TimeDelta::days(4));
    assert!(
        matches!(w.send_one("week-4", INDIA).await, RecipientResult::Accepted { .. }),
        "the first delivery rolled out"
    );
}

#[tokio::test]
async fn with_opt_in_required_marketing_goes_only_to_recipients_with_an_opt_in() {
    let w = world_with(Rules { require_opt_in: true, ..Rules::default() }).await;
    let mut request = w.request("consent-1", Category::Marketing, "spring_sale", &[INDIA, INDIA_2]);
    request.recipients[1].opt_in = Some(OptIn { source: "checkout".into(), at: None, note: Some("order 1042".into()) });
    let answer = dispatch(&w.deps, &request).await.unwrap();
    let refused = match &answer.results[0] {
        RecipientResult::Refused { send_id, reason: FinalReason::NoOptIn, .. } => send_id.clone(),
        other => panic!("expected a refusal for want of an opt-in, got {other:?}"),
    };
    let (agreed, _) = accepted(&answer.results[1]);
    assert!(w.stand_in.sends_to(INDIA).is_empty(), "the recipient without an opt-in was not called");
    assert_eq!(w.stand_in.sends_to(INDIA_2).len(), 1);
    assert_eq!(w.send(&agreed).await.opt_in_source.as_deref(), Some("checkout"));
    assert_eq!(w.send(&refused).await.opt_in_source, None);
    let record = w.deps.store.get_recipient(&INDIA_2[1..]).await.unwrap();
    let history: Vec<_> = record.consent.iter().map(|e| (e.change, e.source.as_str(), e.note.as_deref())).collect();
    assert_eq!(history, [(ConsentChange::OptIn, "checkout", Some("order 1042"))]);

    // The same request again, a minute later, records nothing twice and sends nothing twice.
    w.clock.advance(TimeDelta::minutes(1));
    let again = dispatch(&w.deps, &request).await.unwrap();
    assert!(again.results.iter().all(|r| matches!(r, RecipientResult::Duplicate { .. })), "{:?}", again.results);
    assert_eq!(w.deps.store.get_recipient(&INDIA_2[1..]).await.unwrap().consent.len(), 1);

    // A stop is recorded beside the opt-in and refuses; a resume restores the opt-in.
    w.press_stop(INDIA_2).await;
    assert!(matches!(
        w.send_one("consent-2", INDIA_2).await,
        RecipientResult::Refused { reason: FinalReason::OptedOut, .. }
    ));
    let history = w.deps.store.get_recipient(&INDIA_2[1..]).await.unwrap().consent;
    assert_eq!(
        history.last().map(|e| (e.change, e.source.as_str())),
        Some((ConsentChange::OptOut, sources::MARKETING_PREFERENCES))
    );
    w.clock.advance(TimeDelta::minutes(1));
    w.press(INDIA_2, "resume").await;
    assert!(matches!(w.send_one("consent-3", INDIA_2).await, RecipientResult::Accepted { .. }));

    // Utility needs no opt-in, and its undated opt-in given twice is recorded once (no record is
    // read for the decision: the use case reads it to tell).
    let mut utility = w.request("consent-4", Category::Utility, "order_update", &[INDIA]);
    utility.recipients[0].opt_in = Some(OptIn { source: "support_chat".into(), at: None, note: None });
    for _ in 0..2 {
        let result = &dispatch(&w.deps, &utility).await.unwrap().results[0];
        assert!(matches!(result, RecipientResult::Accepted { .. } | RecipientResult::Duplicate { .. }), "{result:?}");
        w.clock.advance(TimeDelta::minutes(1));
    }
    assert_eq!(w.deps.store.get_recipient(&INDIA[1..]).await.unwrap().consent.len(), 1);
    let mut bad = w.request("consent-5", Category::Marketing, "spring_sale", &[INDIA]);
    bad.recipients[0].opt_in = Some(OptIn { source: "Web Form".into(), at: None, note: None });
    match &dispatch(&w.deps, &bad).await.unwrap().results[0] {
        RecipientResult::Invalid { problems, .. } => assert!(problems[0].starts_with("opt_in.source"), "{problems:?}"),
        other => panic!("expected the opt-in refused, got {other:?}"),
    }
    assert_eq!(w.deps.store.get_recipient(&INDIA[1..]).await.unwrap().consent.len(), 1, "nothing more recorded");
}

#[tokio::test]
async fn a_utility_send_is_never_laddered() {
    let w = world().await;
    let (id, wamid) = accepted(&w.send_with("utility", Category::Utility, "order_update", INDIA).await);
    w.status(&wamid, INDIA, "failed", Some(131049), None).await;
    let send = w.send(&id).await;
    assert_eq!(send.life.phase, Phase::Final { reason: FinalReason::NotMarketing });
    assert_eq!(w.schedule(&RetryJob::new(id, SLOT_2)).await, None);
}

/// Issue 14, item 2, on DynamoDB Local and moto: a request larger than the messaging limit sends
/// the limit's worth and holds the rest, each under a timer, until the count has room again; a
/// recipient counted already takes no second place, and a lower limit reported by Meta applies.
#[tokio::test]
async fn a_request_past_the_messaging_limit_holds_the_rest_until_the_count_has_room() {
    use shared::domain::limit::{BUCKET, MARGIN, MessagingLimit, WINDOW};
    const THIRD: &str = "+919812345670";
    let w = world_with(Rules { messaging_limit: Some(MessagingLimit::Unique(2)), ..Rules::default() }).await;
    let t0 = w.clock.now();
    let answer = dispatch(&w.deps, &w.request("limit-1", Category::Marketing, "spring_sale", &[INDIA, INDIA_2, THIRD]))
        .await
        .unwrap();
    // The recipients go concurrently: any two of the three take the places.
    let held: Vec<(SendId, &str)> = answer
        .results
        .iter()
        .zip([INDIA, INDIA_2, THIRD])
        .filter_map(|(result, to)| match result {
            RecipientResult::Held { send_id, .. } => Some((send_id.clone(), to)),
            RecipientResult::Accepted { .. } => None,
            other => panic!("expected accepted or held, got {other:?}"),
        })
        .collect();
    let [(held, waiting)] = <[_; 1]>::try_from(held).expect("one held for the limit");
    let counted = [INDIA, INDIA_2, THIRD].into_iter().find(|to| *to != waiting).unwrap();
    assert_eq!(answer.tally.get("held_for_messaging_limit"), 1, "{:?}", answer.tally);
    assert!(w.stand_in.sends_to(waiting).is_empty(), "nothing past the limit reached the Cloud API");
    // Room again when the first contacts stop counting: their bucket's end, a day and the margin.
    let room_at = t0 + BUCKET + WINDOW + MARGIN;
    let send = w.send(&held).await;
    assert!(send.held_for_limit);
    assert_eq!(send.life.phase, Phase::Waiting { due: room_at });
    let job = RetryJob::new(held.clone(), Slot::FIRST);
    assert_eq!(w.schedule(&job).await, Some(at_expression(room_at)));

    // Utility to a recipient placed a minute ago takes no second place.
    w.clock.advance(TimeDelta::minutes(1));
    let utility = w.send_with("limit-2", Category::Utility, "order_update", counted).await;
    assert!(matches!(utility, RecipientResult::Accepted { .. }), "{utility:?}");
    // An early firing waits; the one at its time sends.
    assert_eq!(w.fire(&job).await, RetryOutcome::Skipped(Skip::NotDue));
    w.clock.advance(room_at - w.clock.now());
    assert!(matches!(w.fire(&job).await, RetryOutcome::Sent(SlotOutcome::Accepted { .. })));
    assert_eq!(w.stand_in.sends_to(waiting).len(), 1);
    let count = w.deps.store.messaging_count(CountOf::Portfolio).await.unwrap();
    assert_eq!(count.ledger.used(w.clock.now()), 1, "the first two stopped counting");

    // Meta lowers the limit to 1: the next new recipient waits.
    w.webhook(json!({ "field": "business_capability_update", "value": { "max_daily_conversations_per_business": 1 } }))
        .await;
    assert_eq!(
        w.deps.store.messaging_count(CountOf::Portfolio).await.unwrap().reported.map(|r| r.limit),
        Some(MessagingLimit::Unique(1))
    );
    assert!(matches!(w.send_one("limit-3", "+919812345671").await, RecipientResult::Held { .. }));
}

/// Issue 14, item 3: a warm-up lets marketing first attempts fill only the day's share of the
/// messaging limit, while utility counts toward the whole of it; the next day's share lets the
/// held ones go.
#[tokio::test]
async fn a_warm_up_ramps_marketing_first_attempts_and_not_utility() {
    use shared::domain::limit::{BUCKET, MARGIN, MessagingLimit, WINDOW};
    let rules = Rules {
        messaging_limit: Some(MessagingLimit::Unique(4)),
        warm_up: "2026-01-01:25%,100%".parse().unwrap(),
        ..Rules::default()
    };
    let w = world_with(rules).await;
    let t0 = w.clock.now();
    let marketing = ["+919812345681", "+919812345682", "+919812345683"];
    let answer = dispatch(&w.deps, &w.request("warm-1", Category::Marketing, "spring_sale", &marketing)).await.unwrap();
    let outcomes: Vec<_> = answer.results.iter().map(|r| matches!(r, RecipientResult::Held { .. })).collect();
    assert_eq!(outcomes.iter().filter(|held| **held).count(), 2, "25 % of 4 is one a day: {:?}", answer.results);
    // Utility is not ramped: it takes the limit's other places.
    for (key, to) in [("warm-2", "+919812345684"), ("warm-3", "+919812345685")] {
        let result = w.send_with(key, Category::Utility, "order_update", to).await;
        assert!(matches!(result, RecipientResult::Accepted { .. }), "{result:?}");
    }
    let view = shared::usecase::limit::view(&w.deps.store, &w.deps.rules, w.clock.now()).await.unwrap();
    assert_eq!((view.counted, view.warm_up_share), (3, Some(25)), "{view:?}");
    assert!(view.text().contains("warm-up: marketing first attempts may fill 25% of it today"), "{}", view.text());

    // The day after, the whole limit: the two held go when the first day's places stop counting.
    let room_at = t0 + BUCKET + WINDOW + MARGIN;
    w.clock.advance(room_at - t0);
    for (result, held) in answer.results.iter().zip(outcomes) {
        if held {
            let RecipientResult::Held { send_id, .. } = result else { unreachable!() };
            let outcome = w.fire(&RetryJob::new(send_id.clone(), Slot::FIRST)).await;
            assert!(matches!(outcome, RetryOutcome::Sent(SlotOutcome::Accepted { .. })), "{outcome:?}");
        }
    }
}

/// Issue 14, item 3, on DynamoDB Local and moto: a number marked new keeps its marketing first
/// attempts to the day's share of the limit, in a count of its own, while the portfolio's
/// established number goes on sending to the limit's other places; the next day's share lets the
/// held one go.
#[tokio::test]
async fn a_number_marked_new_warms_up_on_its_own_while_the_others_go_on() {
    use shared::domain::limit::{BUCKET, MARGIN, MessagingLimit};
    const NEW: &str = "209876543210987";
    let rules = Rules {
        messaging_limit: Some(MessagingLimit::Unique(10)),
        warm_up: format!("{NEW}@2026-01-01:20%,100%").parse().unwrap(),
        ..Rules::default()
    };
    let w = world_with(rules).await;
    let mut fresh =
        w.request("new-1", Category::Marketing, "spring_sale", &["+919812345691", "+919812345692", "+919812345693"]);
    fresh.phone_number_id = NEW.into();
    let answer = dispatch(&w.deps, &fresh).await.unwrap();
    let held: Vec<bool> = answer.results.iter().map(|r| matches!(r, RecipientResult::Held { .. })).collect();
    assert_eq!(held.iter().filter(|h| **h).count(), 1, "20 % of 10 is two a day: {:?}", answer.results);
    // The established number is not ramped: it takes the limit's other places.
    let established =
        w.request("old-1", Category::Marketing, "spring_sale", &["+919812345694", "+919812345695", "+919812345696"]);
    let sent = dispatch(&w.deps, &established).await.unwrap();
    assert!(sent.results.iter().all(|r| matches!(r, RecipientResult::Accepted { .. })), "{:?}", sent.results);
    let view = shared::usecase::limit::view(&w.deps.store, &w.deps.rules, w.clock.now()).await.unwrap();
    assert_eq!(view.counted, 5, "{view:?}");
    let warming = &view.warming_numbers[0];
    assert_eq!((warming.share, warming.counted, warming.cap), (Some(20), 2, Some(2)), "{view:?}");
    assert!(
        view.text().contains(&format!("warm-up of number {NEW}: its marketing first attempts may reach 2 users today"))
    );

    // A day later the first day's places still count (for 25 h), but the ramp has grown to the
    // whole limit: a new recipient of the new number goes (at 20 % it would be held).
    w.clock.advance(chrono::TimeDelta::days(1));
    let mut next = w.request("new-2", Category::Marketing, "spring_sale", &["+919812345697"]);
    next.phone_number_id = NEW.into();
    let sent = dispatch(&w.deps, &next).await.unwrap();
    assert!(matches!(sent.results[0], RecipientResult::Accepted { .. }), "{:?}", sent.results);
    let view = shared::usecase::limit::view(&w.deps.store, &w.deps.rules, w.clock.now()).await.unwrap();
    let warming = &view.warming_numbers[0];
    assert_eq!((warming.share, warming.counted, warming.cap), (Some(100), 3, Some(10)), "{view:?}");

    // Once the first day's places stop counting, the held one goes too.
    w.clock.advance(BUCKET + MARGIN);
    let (result, _) = answer.results.iter().zip(held).find(|(_, held)| *held).unwrap();
    let RecipientResult::Held { send_id, .. } = result else { unreachable!() };
    let outcome = w.fire(&RetryJob::new(send_id.clone(), Slot::FIRST)).await;
    assert!(matches!(outcome, RetryOutcome::Sent(SlotOutcome::Accepted { .. })), "{outcome:?}");
}

/// Issue 14, item 4, on DynamoDB Local and moto: a number rated YELLOW lets its marketing first
/// attempts fill only a share of the messaging limit; RED makes them wait, looked at again every
/// probe interval, while utility and ladder retries go on; GREEN lets the waiting go.
#[tokio::test]
async fn a_numbers_rating_slows_pauses_and_resumes_its_marketing_first_attempts() {
    use shared::domain::limit::MessagingLimit;
    let w = world_with(Rules { messaging_limit: Some(MessagingLimit::Unique(4)), ..Rules::default() }).await;
    let rate = |event: &'static str, rating: Option<&'static str>| {
        let mut value = json!({ "display_phone_number": "15550783881", "event": event });
        if let Some(rating) = rating {
            value["quality_rating"] = json!(rating);
        }
        json!({ "field": "phone_number_quality_update", "value": value })
    };
    // A webhook whose metadata names the display number and the phone number id.
    w.webhook(json!({ "field": "messages", "value": { "messaging_product": "whatsapp",
        "metadata": { "display_phone_number": "15550783881", "phone_number_id": PHONE } } }))
        .await;

    // YELLOW: half of the limit of 4 for marketing first attempts.
    w.webhook(rate("QUALITY_UPDATE", Some("YELLOW"))).await;
    let three = ["+919812345691", "+919812345692", "+919812345693"];
    let answer = dispatch(&w.deps, &w.request("rated-1", Category::Marketing, "spring_sale", &three)).await.unwrap();
    let held = answer.results.iter().filter(|r| matches!(r, RecipientResult::Held { .. })).count();
    assert_eq!(held, 1, "two of four places for a YELLOW number's marketing: {:?}", answer.results);

    // RED: marketing waits, and looks again every probe interval; utility goes.
    w.clock.advance(TimeDelta::minutes(1));
    w.webhook(rate("FLAGGED", None)).await;
    let paused = match w.send_one("rated-2", "+919812345694").await {
        RecipientResult::Held { send_id, .. } => send_id,
        other => panic!("expected held while RED, got {other:?}"),
    };
    let look = w.clock.now() + PROBE_EVERY;
    assert_eq!(w.send(&paused).await.life.phase, Phase::Waiting { due: look });
    let utility = w.send_with("rated-3", Category::Utility, "order_update", "+919812345695").await;
    assert!(matches!(utility, RecipientResult::Accepted { .. }), "{utility:?}");
    w.clock.advance(PROBE_EVERY);
    let job = RetryJob::new(paused.clone(), Slot::FIRST);
    assert_eq!(w.fire(&job).await, RetryOutcome::Held, "still RED");
    assert!(w.stand_in.sends_to("+919812345694").is_empty());

    // GREEN: the next look sends it.
    w.webhook(rate("UNFLAGGED", None)).await;
    w.clock.advance(PROBE_EVERY);
    assert!(matches!(w.fire(&job).await, RetryOutcome::Sent(SlotOutcome::Accepted { .. })));
    let numbers = w.deps.store.business_numbers().await.unwrap();
    let history: Vec<_> = numbers[0].history.iter().map(|r| r.rating.as_str()).collect();
    assert_eq!(history, ["YELLOW", "RED", "GREEN"]);
    let mut gauges = Tally::default();
    shared::usecase::quality::survey(&w.deps, &mut gauges).await.unwrap();
    assert_eq!((gauges.get("numbers_red_now"), gauges.get("numbers_yellow_now")), (0, 0));
}
