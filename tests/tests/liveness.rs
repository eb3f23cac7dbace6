//! Liveness: every send reaches a final state on its own, whatever fails on the way, and no
//! attempt is ever sent twice.
//!
//! The fault-injection harness runs a use case once for every port call it makes (store,
//! scheduler and Cloud API, counted together), failing or crashing that call in each of the four
//! ways of `capguard_tests::faults`. Then it lets recovery happen as it would in production: the
//! same request or webhook again (a client repeats a request that got no answer; Meta redelivers
//! what was not answered 200), due timers firing, and the sweep, with time moving on until
//! nothing is left to do. It checks that every send is finished and that the Cloud API saw at
//! most one call per (send, attempt, try). Every scenario runs on the embedded store, and the
//! dispatch and the orphan-status scenarios on DynamoDB Local too.
//!
//! The Cloud API is a stand-in in this process (fault injection is what fakes are for here): it
//! decides each send's fate from a script and queues the status webhooks Meta would post.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capguard_tests::clock::ManualClock;
use capguard_tests::dynamo::fresh_dynamo_store;
use capguard_tests::faults::{Fault, Faults, FaultyCloud, FaultyScheduler, FaultyStore};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use shared::clock::Clock;
use shared::cloud::{CloudApi, CloudApiError, Endpoint};
use shared::domain::lifecycle::{Phase, Slot};
use shared::domain::rules::Category;
use shared::domain::verdict::{FinalReason, Rules};
use shared::schedule::{RetryJob, RetryScheduler, ScheduleError};
use shared::store::embedded::EmbeddedStore;
use shared::store::prelude::*;
use shared::store::{DEFAULT_RETENTION, Hold, HoldKey, SendRecord, SendStore};
use shared::usecase::dispatch::{DispatchRequest, RecipientResult, RecipientSpec, TemplateName, dispatch};
use shared::usecase::intake::intake;
use shared::usecase::retry::retry;
use shared::usecase::sweep::sweep;
use shared::usecase::{Deps, SendSettings};
use shared::whatsapp::send::{SendRequest, SendResponse};

const PHONE: &str = "106540352242922";
const SWEEP_BUDGET: Duration = Duration::from_secs(30);

/// What the stand-in Meta does with one send to a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Accepted; `sent` and `delivered` follow, tagged.
    Deliver,
    /// Accepted; a `failed` 131049 follows, untagged (Meta's failures carry no callback data).
    CapLater,
    /// Refused at once with 131049.
    CapNow,
    /// Accepted, but the answer is lost (a timeout after the request left); the tagged `sent`
    /// and `delivered` follow.
    AnswerLost,
    /// Accepted, but a gateway answers 502 without Meta's body; `sent` and `delivered` follow.
    Gateway,
    /// Accepted, the answer lost, and the untagged `failed` 131049 comes before the tagged `sent`.
    AnswerLostThenCap,
}

/// The stand-in Meta's state: scripts, every call's callback tag, the statuses it will post.
#[derive(Debug, Default)]
struct Meta {
    scripts: Mutex<HashMap<String, (Vec<Fate>, usize)>>,
    /// The `biz_opaque_callback_data` of every call that reached it: one per (send, attempt, try)
    /// at most.
    calls: Mutex<Vec<String>>,
    /// Statuses to post, each a `statuses[]` item.
    pending: Mutex<Vec<Value>>,
    serial: AtomicU64,
}

impl Meta {
    fn script(&self, number: &str, fates: &[Fate]) {
        self.scripts.lock().unwrap().insert(digits(number), (fates.to_vec(), 0));
    }

    fn next_fate(&self, to: &str) -> Fate {
        let mut scripts = self.scripts.lock().unwrap();
        let Some((fates, taken)) = scripts.get_mut(to) else { return Fate::Deliver };
        let fate = fates.get(*taken).or(fates.last()).copied().unwrap_or(Fate::Deliver);
        *taken += 1;
        fate
    }

    fn take_pending(&self) -> Vec<Value> {
        std::mem::take(&mut *self.pending.lock().unwrap())
    }

    /// How often each callback tag was sent, for those sent more than once.
    fn doubles(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::<String, usize>::new();
        for tag in self.calls.lock().unwrap().iter() {
            *counts.entry(tag.clone()).or_default() += 1;
        }
        counts.into_iter().filter(|(_, n)| *n > 1).collect()
    }
}

fn digits(number: &str) -> String {
    number.trim_start_matches('+').to_owned()
}

/// One `statuses[]` item as Meta writes it.
fn status(wamid: &str, kind: &str, to: &str, tag: Option<&str>, code: Option<i64>, at: DateTime<Utc>) -> Value {
    let mut item = json!({ "id": wamid, "status": kind, "timestamp": at.timestamp().to_string(), "recipient_id": to });
    if let Some(tag) = tag {
        item["biz_opaque_callback_data"] = json!(tag);
    }
    if let Some(code) = code {
        item["errors"] = json!([{ "code": code, "title": "This message was not delivered to maintain healthy ecosystem engagement." }]);
    }
    item
}

/// A webhook body: `changes` in one entry of Meta's envelope.
fn envelope(changes: Vec<Value>) -> Vec<u8> {
    json!({ "object": "whatsapp_business_account", "entry": [{ "id": "102290129340398", "changes": changes }] })
        .to_string()
        .into_bytes()
}

fn statuses_body(statuses: Vec<Value>) -> Vec<u8> {
    envelope(vec![json!({ "field": "messages", "value": { "messaging_product": "whatsapp",
        "metadata": { "display_phone_number": "15550783881", "phone_number_id": PHONE }, "statuses": statuses } })])
}

/// The Cloud API stand-in.
#[derive(Debug, Clone)]
struct FakeMeta {
    meta: Arc<Meta>,
    clock: Arc<ManualClock>,
}

impl CloudApi for FakeMeta {
    async fn send_template(
        &self,
        _phone_number_id: &str,
        request: &SendRequest,
        _endpoint: Endpoint,
    ) -> Result<SendResponse, CloudApiError> {
        let to = digits(&request.to);
        let tag = request.biz_opaque_callback_data.clone().unwrap_or_default();
        self.meta.calls.lock().unwrap().push(tag.clone());
        let fate = self.meta.next_fate(&to);
        let wamid = format!("wamid.fake-{}", self.meta.serial.fetch_add(1, Ordering::Relaxed));
        let now = self.clock.now();
        let later = |seconds| now + TimeDelta::seconds(seconds);
        let tagged = Some(tag.as_str());
        let statuses = match fate {
            Fate::CapNow => {
                let error = json!({ "error": { "message": "(#131049) not delivered", "type": "OAuthException",
                                               "code": 131049, "fbtrace_id": "AbC" } });
                let error = serde_json::from_value(error["error"].clone()).expect("a Graph error");
                return Err(CloudApiError::Graph { http_status: 400, error: Box::new(error) });
            }
            Fate::CapLater => vec![status(&wamid, "failed", &to, None, Some(131049), later(2))],
            Fate::AnswerLostThenCap => vec![
                status(&wamid, "failed", &to, None, Some(131049), later(2)),
                status(&wamid, "sent", &to, tagged, None, later(1)),
            ],
            Fate::Deliver | Fate::AnswerLost | Fate::Gateway => vec![
                status(&wamid, "sent", &to, tagged, None, later(1)),
                status(&wamid, "delivered", &to, tagged, None, later(2)),
            ],
        };
        self.meta.pending.lock().unwrap().extend(statuses);
        match fate {
            Fate::AnswerLost | Fate::AnswerLostThenCap => Err(CloudApiError::Timeout { request_sent: true }),
            Fate::Gateway => Err(CloudApiError::BadResponse { http_status: 502, body: "<html>502</html>".into() }),
            _ => Ok(serde_json::from_value(json!({
                "messaging_product": "whatsapp",
                "contacts": [{ "input": request.to, "wa_id": to }],
                "messages": [{ "id": wamid }],
            }))
            .expect("a send response")),
        }
    }
}

/// Each timer by its schedule name: its job and due time.
type TimerTable = BTreeMap<String, (RetryJob, DateTime<Utc>)>;

/// Timers kept in memory: what a test fires by hand, as EventBridge Scheduler would at their time.
#[derive(Debug, Clone, Default)]
struct Timers(Arc<Mutex<TimerTable>>);

impl Timers {
    /// Takes the timers due by `now` out, as a schedule is deleted once it has run.
    fn take_due(&self, now: DateTime<Utc>) -> Vec<RetryJob> {
        let mut timers = self.0.lock().unwrap();
        let due: Vec<String> = timers.iter().filter(|(_, (_, at))| *at <= now).map(|(name, _)| name.clone()).collect();
        due.into_iter().filter_map(|name| timers.remove(&name)).map(|(job, _)| job).collect()
    }
}

impl RetryScheduler for Timers {
    async fn schedule(&self, job: &RetryJob, due: DateTime<Utc>, _now: DateTime<Utc>) -> Result<(), ScheduleError> {
        self.0.lock().unwrap().entry(job.schedule_name()).or_insert((job.clone(), due));
        Ok(())
    }

    async fn cancel(&self, job: &RetryJob) -> Result<(), ScheduleError> {
        self.0.lock().unwrap().remove(&job.schedule_name());
        Ok(())
    }
}

/// The use cases the harness runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// A send request to five recipients, each with another fate.
    Dispatch,
    /// One webhook batch with every status of two sends: sent, delivered, and a failure.
    Statuses,
    /// A send whose answer was lost: its untagged failure comes first (parked), then its tagged
    /// `sent` (which links the wamid and applies the failure).
    Orphan,
    /// A capped send's retry timer firing.
    Retry,
    /// A reply that brings a waiting retry forward.
    Reply,
    /// A stop that ends a waiting retry.
    OptOut,
    /// The sweep, finding a waiting retry whose timer was lost.
    Sweep,
    /// A retry firing while the sender is halted (the operator lifts the halt afterwards).
    Held,
}

type Ports<S> = Deps<FaultyStore<S>, FaultyScheduler<Timers>, FaultyCloud<FakeMeta>>;

struct World<S: SendStore> {
    deps: Ports<S>,
    faults: Arc<Faults>,
    clock: Arc<ManualClock>,
    meta: Arc<Meta>,
    timers: Timers,
    campaign: String,
    numbers: Vec<String>,
    /// The trigger's webhooks, made once, so that a redelivery is the same bytes.
    batches: Vec<Vec<u8>>,
}

/// A number and a campaign no other run of this process uses.
fn serial() -> u64 {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

impl<S: SendStore> World<S> {
    fn new(store: S) -> Self {
        let faults = Faults::new();
        let clock = Arc::new(ManualClock::at(DateTime::from_timestamp(1_767_225_600, 0).unwrap()));
        let meta = Arc::new(Meta::default());
        let timers = Timers::default();
        let cloud = FakeMeta { meta: Arc::clone(&meta), clock: Arc::clone(&clock) };
        let sending = SendSettings {
            throughput_per_second: 1_000_000,
            call_backoff: Duration::from_millis(1),
            ..SendSettings::default()
        };
        let deps = Deps::new(
            FaultyStore::new(store, Arc::clone(&faults)),
            FaultyScheduler::new(timers.clone(), Arc::clone(&faults)),
            FaultyCloud::new(cloud, Arc::clone(&faults)),
            clock.clone(),
            Rules::default(),
            sending,
        );
        let run = serial();
        // Every world has a store of its own, so the same numbers serve every run.
        let numbers = (0..5).map(|i| format!("+91987650000{i}")).collect();
        World {
            deps,
            faults,
            clock,
            meta,
            timers,
            campaign: format!("liveness-{}-{run}", std::process::id()),
            numbers,
            batches: Vec::new(),
        }
    }

    fn request(&self, count: usize) -> DispatchRequest {
        DispatchRequest {
            phone_number_id: PHONE.into(),
            template: TemplateName { name: "spring_sale".into(), language: "en_US".into() },
            category: Category::Marketing,
            campaign: Some(self.campaign.clone()),
            idempotency_key: format!("{}-request", self.campaign),
            retry_until: None,
            utc_offset: None,
            default_country: None,
            recipients: self.numbers[..count]
                .iter()
                .map(|to| RecipientSpec { to: to.clone(), components: vec![], opt_in: None })
                .collect(),
        }
    }

    async fn sends(&self) -> Vec<SendRecord> {
        let mut sends = Vec::new();
        let mut token = None;
        loop {
            let page = self.deps.store.inner.campaign_sends(&self.campaign, token.as_deref(), 100).await.unwrap();
            sends.extend(page.items);
            match page.next {
                Some(next) => token = Some(next),
                None => return sends,
            }
        }
    }

    /// Delivers every status Meta has to post, each batch until it is taken.
    async fn deliver_pending(&self) {
        for item in self.meta.take_pending() {
            intake(&self.deps, &statuses_body(vec![item])).await.expect("a redelivered status is taken");
        }
    }

    /// Sets the scene without faults: what has happened before the use case runs.
    async fn setup(&mut self, scenario: Scenario) {
        let first = &self.numbers[0];
        match scenario {
            Scenario::Dispatch => {
                let fates =
                    [Fate::Deliver, Fate::CapLater, Fate::CapNow, Fate::AnswerLost, Fate::Gateway].map(|fate| [fate]);
                for (number, fate) in self.numbers.iter().zip(fates) {
                    self.meta.script(number, &fate);
                }
            }
            Scenario::Statuses => {
                self.meta.script(first, &[Fate::Deliver]);
                self.meta.script(&self.numbers[1], &[Fate::CapLater, Fate::Deliver]);
                dispatch(&self.deps, &self.request(2)).await.unwrap();
                self.batches = vec![statuses_body(self.meta.take_pending())];
            }
            Scenario::Orphan => {
                self.meta.script(first, &[Fate::AnswerLostThenCap, Fate::Deliver]);
                dispatch(&self.deps, &self.request(1)).await.unwrap();
                self.batches = self.meta.take_pending().into_iter().map(|item| statuses_body(vec![item])).collect();
            }
            Scenario::Retry | Scenario::Reply | Scenario::OptOut | Scenario::Sweep | Scenario::Held => {
                self.meta.script(first, &[Fate::CapLater, Fate::Deliver]);
                dispatch(&self.deps, &self.request(1)).await.unwrap();
                self.deliver_pending().await;
                let waiting = self.sends().await.remove(0);
                assert!(matches!(waiting.life.phase, Phase::Waiting { .. }), "{waiting:?}");
                let now = self.clock.advance(TimeDelta::hours(1)).timestamp();
                let from = digits(first);
                self.batches = match scenario {
                    Scenario::Reply => vec![envelope(vec![json!({ "field": "messages", "value": {
                        "messaging_product": "whatsapp", "metadata": { "phone_number_id": PHONE },
                        "messages": [{ "from": from, "id": format!("wamid.in-{from}"), "timestamp": now.to_string(),
                                       "type": "text", "text": { "body": "Is this still on?" } }] } })])],
                    Scenario::OptOut => vec![envelope(vec![json!({ "field": "user_preferences", "value": {
                        "messaging_product": "whatsapp", "metadata": { "phone_number_id": PHONE },
                        "user_preferences": [{ "wa_id": from, "detail": "User requested to stop marketing messages",
                                               "category": "marketing_messages", "value": "stop", "timestamp": now }] } })])],
                    _ => {
                        self.clock.advance(TimeDelta::hours(12));
                        Vec::new()
                    }
                };
                if scenario == Scenario::Sweep {
                    self.timers.0.lock().unwrap().clear();
                }
                if scenario == Scenario::Held {
                    let hold = Hold::new(131042, self.clock.now());
                    self.deps.store.inner.set_hold(&self.sender(), Some(hold), self.clock.now()).await.unwrap();
                }
            }
        }
    }

    fn sender(&self) -> HoldKey {
        HoldKey::Sender { phone_number_id: PHONE.into() }
    }

    /// The use case under test; an error is what its caller would answer with.
    async fn trigger(&self, scenario: Scenario) -> Result<(), String> {
        match scenario {
            Scenario::Dispatch => dispatch(&self.deps, &self.request(5)).await.map(drop).map_err(|e| e.to_string()),
            Scenario::Sweep => sweep(&self.deps, SWEEP_BUDGET).await.map(drop).map_err(|e| e.to_string()),
            Scenario::Retry | Scenario::Held => {
                let send = self.sends().await.remove(0);
                let job = RetryJob::new(send.id, Slot { attempt: 2, try_no: 1 });
                retry(&self.deps, &job).await.map(drop).map_err(|e| e.to_string())
            }
            _ => {
                for batch in &self.batches {
                    intake(&self.deps, batch).await.map_err(|e| e.to_string())?;
                }
                Ok(())
            }
        }
    }

    /// What production does after a failure: the request or webhook again, then timers, the
    /// sweep and Meta's webhooks, with time moving on, until every send is finished.
    async fn recover(&self, scenario: Scenario) -> Result<(), Vec<SendRecord>> {
        self.faults.disarm();
        self.trigger(scenario).await.expect("the repeat runs without faults");
        if scenario == Scenario::Held {
            self.deps.store.inner.set_hold(&self.sender(), None, self.clock.now()).await.unwrap();
        }
        for _ in 0..200 {
            self.deliver_pending().await;
            for job in self.timers.take_due(self.clock.now()) {
                retry(&self.deps, &job).await.expect("a timer's retry runs");
            }
            sweep(&self.deps, SWEEP_BUDGET).await.expect("the sweep runs");
            let unfinished: Vec<SendRecord> =
                self.sends().await.into_iter().filter(|send| !send.life.phase.is_terminal()).collect();
            if unfinished.is_empty() && self.meta.pending.lock().unwrap().is_empty() {
                return Ok(());
            }
            self.clock.advance(TimeDelta::hours(6));
        }
        Err(self.sends().await.into_iter().filter(|send| !send.life.phase.is_terminal()).collect())
    }
}

/// What a scenario's runs came to.
#[derive(Debug, Default)]
struct Findings {
    runs: usize,
    faults_struck: usize,
    stranded: Vec<String>,
    doubles: Vec<String>,
}

/// Runs `scenario` once per port call and fault kind, on stores from `store`, until a run sees
/// no fault; every run recovers and is checked.
async fn exercise<S, F, Fut>(scenario: Scenario, kinds: &[Fault], store: F) -> Findings
where
    S: SendStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let mut findings = Findings::default();
    let started = Instant::now();
    for &fault in kinds {
        for k in 0.. {
            let mut world = World::new(store().await);
            world.setup(scenario).await;
            world.faults.arm(k, fault);
            let _ = world.faults.run(world.trigger(scenario)).await;
            let struck = world.faults.struck();
            findings.runs += 1;
            findings.faults_struck += usize::from(struck);
            if let Err(unfinished) = world.recover(scenario).await {
                findings.stranded.push(format!("{fault:?} at call {k}: {unfinished:#?}"));
            }
            let doubles = world.meta.doubles();
            if !doubles.is_empty() {
                findings.doubles.push(format!("{fault:?} at call {k}: {doubles:?}"));
            }
            if scenario == Scenario::OptOut {
                let send = world.sends().await.remove(0);
                assert_eq!(
                    send.life.phase,
                    Phase::Final { reason: FinalReason::OptedOut },
                    "{fault:?} at call {k}: the retry after the stop must end"
                );
            }
            if scenario == Scenario::Held {
                // A hold never claims the slot, so no fault can leave it claimed and unsent.
                let send = world.sends().await.remove(0);
                assert!(
                    matches!(send.life.phase, Phase::Succeeded { .. }),
                    "{fault:?} at call {k}: the held retry goes out once the halt lifts: {send:?}"
                );
            }
            if !struck {
                break;
            }
        }
    }
    println!(
        "fault injection, {scenario:?}: {} runs, {} with a fault, {} stranded, {} with a double send ({:.1} s)",
        findings.runs,
        findings.faults_struck,
        findings.stranded.len(),
        findings.doubles.len(),
        started.elapsed().as_secs_f64()
    );
    findings
}

fn assert_clean(findings: &Findings) {
    assert!(findings.faults_struck > 0, "no fault struck: the harness exercised nothing");
    assert!(findings.stranded.is_empty(), "stranded sends:\n{}", findings.stranded.join("\n"));
    assert!(findings.doubles.is_empty(), "attempts sent twice:\n{}", findings.doubles.join("\n"));
}

/// A fresh embedded store in a file of its own. The file is removed when the process ends its
/// use: a run keeps it only while it runs.
async fn embedded() -> EmbeddedStore {
    let file = tempfile::Builder::new().prefix("capguard-liveness-").suffix(".redb").tempfile();
    let path = file.expect("a temporary file").into_temp_path();
    // The open handle keeps the data; the name goes with `path`.
    EmbeddedStore::open(&path, DEFAULT_RETENTION).expect("the embedded store opens")
}

macro_rules! embedded_scenarios {
    ($($name:ident: $scenario:expr,)+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                assert_clean(&exercise($scenario, &Fault::ALL, embedded).await);
            }
        )+
    };
}

embedded_scenarios! {
    every_fault_in_a_dispatch_leaves_no_send_stranded_or_sent_twice: Scenario::Dispatch,
    every_fault_in_a_batch_of_statuses_leaves_no_send_stranded_or_sent_twice: Scenario::Statuses,
    every_fault_around_an_orphan_status_leaves_no_send_stranded_or_sent_twice: Scenario::Orphan,
    every_fault_in_a_retry_firing_leaves_no_send_stranded_or_sent_twice: Scenario::Retry,
    every_fault_in_a_reply_leaves_no_send_stranded_or_sent_twice: Scenario::Reply,
    every_fault_in_an_opt_out_leaves_no_send_stranded_or_sent_twice: Scenario::OptOut,
    every_fault_in_a_sweep_leaves_no_send_stranded_or_sent_twice: Scenario::Sweep,
    every_fault_in_a_retry_held_by_a_halt_leaves_no_send_stranded_or_sent_twice: Scenario::Held,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_in_a_dispatch_on_dynamodb_leaves_no_send_stranded_or_sent_twice() {
    assert_clean(&exercise(Scenario::Dispatch, &[Fault::FailAfter, Fault::CrashAfter], fresh_dynamo_store).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_around_an_orphan_status_on_dynamodb_leaves_no_send_stranded_or_sent_twice() {
    assert_clean(&exercise(Scenario::Orphan, &[Fault::Fail, Fault::Crash], fresh_dynamo_store).await);
}

/// Strandings 5 and 6 of issue 8 on DynamoDB Local: a failure that arrives untagged before its
/// send's answer is recorded is parked and answered at once, and a later tagged status links the
/// wamid and applies it, so the send climbs the ladder.
#[tokio::test]
async fn a_failure_before_its_link_is_parked_then_applied_when_a_tag_links_the_wamid() {
    let mut world = World::new(fresh_dynamo_store().await);
    world.setup(Scenario::Orphan).await;
    let send = world.sends().await.remove(0);
    assert!(matches!(send.life.phase, Phase::Claimed { .. }), "the answer was lost: {send:?}");
    let started = Instant::now();
    let failure = intake(&world.deps, &world.batches[0]).await.expect("taken at once");
    assert_eq!(failure.tally.get("statuses_parked"), 1);
    assert!(started.elapsed() < Duration::from_secs(1), "no wait for a link: {:?}", started.elapsed());
    let sent = intake(&world.deps, &world.batches[1]).await.expect("taken");
    assert_eq!((sent.tally.get("wamids_linked_by_tag"), sent.tally.get("retries_scheduled")), (1, 1));
    let laddered = world.sends().await.remove(0);
    assert_eq!(laddered.life.slot, Slot { attempt: 2, try_no: 1 }, "{laddered:?}");
    assert!(matches!(laddered.life.phase, Phase::Waiting { .. }));
    assert_eq!(world.deps.store.inner.get_recipient(&digits(&world.numbers[0])).await.unwrap().consecutive_caps, 1);
}

/// Stranding 9: a gateway's 502 without Meta's body is an unknown outcome: the slot is not sent
/// again in-process, and the webhooks that follow settle it.
#[tokio::test]
async fn a_gateway_error_is_not_resent_and_its_webhooks_settle_it() {
    let world = World::new(embedded().await);
    world.meta.script(&world.numbers[0], &[Fate::Gateway]);
    let answer = dispatch(&world.deps, &world.request(1)).await.unwrap();
    assert!(matches!(answer.results[0], RecipientResult::Pending { .. }), "{:?}", answer.results);
    assert_eq!(world.meta.calls.lock().unwrap().len(), 1, "sent once");
    world.deliver_pending().await;
    let send = world.sends().await.remove(0);
    assert!(matches!(send.life.phase, Phase::Succeeded { .. }), "{send:?}");
}

/// Stranding 10: the recipient's side effects of a status are made before the send's own write,
/// so a process that dies right after that write loses neither the delivery (for the frequency
/// cap) nor the cap count when the webhook comes again.
#[tokio::test]
async fn side_effects_survive_a_crash_right_after_the_sends_own_write() {
    for (fate, kind) in [(Fate::Deliver, "delivered"), (Fate::CapLater, "failed")] {
        // The first call after which the send has moved is its own write; crash right after it.
        for k in 0.. {
            let world = World::new(embedded().await);
            world.meta.script(&world.numbers[0], &[fate]);
            dispatch(&world.deps, &world.request(1)).await.unwrap();
            let statuses = world.meta.take_pending();
            let last = statuses.iter().rposition(|s| s["status"] == kind).expect("the status");
            for earlier in &statuses[..last] {
                intake(&world.deps, &statuses_body(vec![earlier.clone()])).await.unwrap();
            }
            let before = world.sends().await.remove(0).life;
            let batch = statuses_body(vec![statuses[last].clone()]);
            world.faults.arm(k, Fault::CrashAfter);
            assert!(world.faults.run(intake(&world.deps, &batch)).await.is_none(), "the batch has no call {k}");
            if world.sends().await.remove(0).life == before {
                continue;
            }
            world.faults.disarm();
            intake(&world.deps, &batch).await.expect("Meta redelivers");
            let recipient = world.deps.store.inner.get_recipient(&digits(&world.numbers[0])).await.unwrap();
            match fate {
                Fate::Deliver => assert_eq!(recipient.marketing_deliveries.len(), 1, "{recipient:?}"),
                _ => assert_eq!(recipient.consecutive_caps, 1, "{recipient:?}"),
            }
            break;
        }
    }
}

/// Meta posts up to 1,000 updates in one webhook, and API Gateway cuts an integration at 30 s:
/// a batch of 1,000 statuses of different sends must be taken well inside that, on DynamoDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_a_thousand_statuses_is_taken_well_inside_thirty_seconds_on_dynamodb() {
    const SENDS: usize = 1_000;
    let mut world = World::new(fresh_dynamo_store().await);
    world.deps.sending.parallelism = 64;
    world.numbers = (0..SENDS).map(|i| format!("+9197{:08}", serial() * 10_000 + i as u64)).collect();
    let answer = dispatch(&world.deps, &world.request(SENDS)).await.unwrap();
    assert!(answer.results.iter().all(|r| matches!(r, RecipientResult::Accepted { .. })));
    let delivered: Vec<Value> = world.meta.take_pending().into_iter().filter(|s| s["status"] == "delivered").collect();
    assert_eq!(delivered.len(), SENDS);
    let batch = statuses_body(delivered);

    let started = Instant::now();
    let report = intake(&world.deps, &batch).await.expect("the batch is taken");
    let took = started.elapsed();
    println!("a batch of {SENDS} delivered statuses on DynamoDB Local: taken in {} ms", took.as_millis());
    assert_eq!((report.events, report.tally.get("delivered")), (SENDS, SENDS as u64));
    assert!(took < Duration::from_secs(30), "API Gateway would have cut it at 30 s: {took:?}");
    let sends = world.sends().await;
    assert_eq!(sends.iter().filter(|s| matches!(s.life.phase, Phase::Succeeded { .. })).count(), SENDS);
}
