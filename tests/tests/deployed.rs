//! The deployed artifacts, tested as deployed: the three function binaries behind a stand-in of
//! the Lambda Runtime API, configured only by the environment `template.yaml` gives them, with
//! their secrets in SSM, timers in EventBridge Scheduler and send queue in SQS (moto), the table in
//! DynamoDB Local and the sandbox as the Cloud API (`capguard_tests::deployed`).
//!
//! One campaign runs through the stack and through `capguard serve`, side by side in real time:
//! 104 recipients (over the synchronous limit, so it goes through the send queue), three of them
//! capped, of whom one replies and one opts out, and a fifth recipient on a template that Meta
//! pauses and then approves again. Both give the same report. The stack's functions start with an
//! access token that is rotated in SSM before the campaign: they must pick up the new one without
//! halting the number.

use std::process::Command;
use std::time::Duration;

use capguard_tests::deployed::{Secrets, Stack};
use capguard_tests::dynamo::{dynamodb_endpoint, fresh_dynamo_store};
use capguard_tests::e2e::{ACCESS_TOKEN, APP_SECRET, Rig, Setup, capguard_binary, request, timeless};
use sandbox::ScriptedOutcome::{Delivered, Failed};
use sandbox::config::{Delay, Timing};
use sandbox::{Reply, SandboxConfig, SandboxHandle, ScriptedOutcome};
use serde_json::{Value, json};
use shared::clock::ScaledClock;
use shared::domain::rules::Category;
use shared::usecase::dispatch::DispatchRequest;
use shared::whatsapp::signature::{AppSecret, SIGNATURE_HEADER, sign};

const CAMPAIGN: &str = "deployed";
/// How long the whole campaign may take: the stack's timers fire a minute out at the earliest.
const SETTLING: Duration = Duration::from_secs(240);

/// The recipients and what the sandbox does with each.
struct Cast {
    delivered: String,
    recovered: String,
    replies: String,
    opts_out: String,
    held: String,
    bulk: Vec<String>,
}

impl Cast {
    fn new() -> Self {
        let number = |n: u32| format!("+91987650{n:04}");
        Self {
            delivered: number(1),
            recovered: number(2),
            replies: number(3),
            opts_out: number(4),
            held: number(5),
            bulk: (100..200).map(number).collect(),
        }
    }

    fn scripts(&self) -> Vec<(String, Vec<ScriptedOutcome>)> {
        let capped = vec![Failed(131049), Delivered];
        let mut scripts = vec![
            (self.delivered.clone(), vec![Delivered]),
            (self.recovered.clone(), capped.clone()),
            (self.replies.clone(), capped.clone()),
            (self.opts_out.clone(), capped),
            (self.held.clone(), vec![Failed(132015), Delivered]),
        ];
        scripts.extend(self.bulk.iter().map(|number| (number.clone(), vec![Delivered])));
        scripts
    }

    /// The campaign's two requests: the large one, and one recipient on the other template.
    fn requests(&self, phone_number_id: &str) -> [DispatchRequest; 2] {
        let mut large: Vec<&str> = vec![&self.delivered, &self.recovered, &self.replies, &self.opts_out];
        large.extend(self.bulk.iter().map(String::as_str));
        let mut held = request(phone_number_id, CAMPAIGN, "weekly_offers", Category::Marketing, &[&self.held]);
        held.idempotency_key = format!("{CAMPAIGN}-request-2");
        [request(phone_number_id, CAMPAIGN, "spring_sale", Category::Marketing, &large), held]
    }
}

/// Statuses within a second, so that the campaign's pace is set by the timers.
fn quick() -> Timing {
    let ms = |from, to| Delay::new(chrono::TimeDelta::milliseconds(from), chrono::TimeDelta::milliseconds(to));
    Timing {
        sent: ms(100, 300),
        delivered: ms(200, 600),
        read: ms(500, 1_000),
        failed: ms(200, 600),
        reply: ms(500, 1_000),
        skip_delivered_probability: 0.0,
    }
}

/// Webhook retries within the campaign's few minutes: a webhook a busy receiver did not take in
/// time is tried again seconds later, not at Meta's minutes and hours, which real time here would
/// wait out past the test's end (the send would stay in flight, its status never taken).
fn quick_retries() -> Vec<chrono::TimeDelta> {
    [0, 1, 5, 15, 30, 60].into_iter().map(chrono::TimeDelta::seconds).collect()
}

/// What the scenario needs of a deployment.
trait Deployment {
    /// What a failure calls it.
    fn name(&self) -> &'static str;
    fn sandbox(&self) -> &SandboxHandle;
    /// Where `POST /sends` and `/webhook` are.
    fn base_url(&self) -> String;
    fn table(&self) -> &str;
}

impl Deployment for Stack {
    fn name(&self) -> &'static str {
        "the deployed stack"
    }

    fn sandbox(&self) -> &SandboxHandle {
        &self.sandbox
    }

    fn base_url(&self) -> String {
        self.api_url().to_owned()
    }

    fn table(&self) -> &str {
        &self.table
    }
}

/// `capguard serve` on a table of its own.
struct Served {
    rig: Rig,
    table: String,
}

impl Deployment for Served {
    fn name(&self) -> &'static str {
        "capguard serve"
    }

    fn sandbox(&self) -> &SandboxHandle {
        &self.rig.sandbox
    }

    fn base_url(&self) -> String {
        self.rig.serve_url().to_owned()
    }

    fn table(&self) -> &str {
        &self.table
    }
}

/// `capguard <args> --dynamodb <table>` as an operator runs it; its standard output.
async fn operator(table: &str, args: &[&str]) -> String {
    let mut command = Command::new(capguard_binary());
    command.args(args).args(["--dynamodb", table, "--dynamodb-endpoint", &dynamodb_endpoint()]);
    let output = tokio::task::spawn_blocking(move || command.output()).await.unwrap().expect("capguard runs");
    assert!(output.status.success(), "capguard {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

async fn funnel(table: &str) -> Value {
    serde_json::from_str(&operator(table, &["report", "--campaign", CAMPAIGN, "--json"]).await).expect("a JSON funnel")
}

async fn holds(table: &str) -> Value {
    serde_json::from_str(&operator(table, &["holds", "--json"]).await).expect("JSON holds")
}

/// What `look` sees once `done`, or (`Err`) the last it saw when [`SETTLING`] ran out.
async fn settle<T>(mut look: impl AsyncFnMut() -> T, done: impl Fn(&T) -> bool) -> Result<T, T> {
    let deadline = tokio::time::Instant::now() + SETTLING;
    loop {
        let seen = look().await;
        if done(&seen) {
            return Ok(seen);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(seen);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn wait_for<T: std::fmt::Debug>(what: &str, look: impl AsyncFnMut() -> T, done: impl Fn(&T) -> bool) -> T {
    settle(look, done).await.unwrap_or_else(|seen| panic!("waited {SETTLING:?} for {what}; last seen: {seen:#?}"))
}

/// The template's approval, as Meta sends it (with the language written `en-US`).
fn approved(template: &str) -> Vec<u8> {
    let value = json!({ "event": "APPROVED", "message_template_id": 594425479261596_i64, "message_template_name": template,
        "message_template_language": "en-US", "reason": null });
    let body = json!({ "object": "whatsapp_business_account", "entry": [{ "id": "102290129340398", "time": 1_767_225_600,
        "changes": [{ "field": "message_template_status_update", "value": value }] }] });
    body.to_string().into_bytes()
}

/// The campaign, through `deployment`: its funnel and its CSV report's rows, sorted (the report
/// lists sends in the order they were recorded, which the two requests race for).
async fn run(deployment: &impl Deployment, cast: &Cast, phone_number_id: &str) -> (Value, Vec<String>) {
    let http = reqwest::Client::new();
    let [large, held] = cast.requests(phone_number_id);
    let sends = format!("{}/sends", deployment.base_url());
    let answer = http.post(&sends).json(&large).send().await.expect("POST /sends");
    assert_eq!(answer.status(), 202, "{:?}", answer.text().await);
    let answer = http.post(&sends).json(&held).send().await.expect("POST /sends");
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);

    let sandbox = deployment.sandbox();
    wait_for(
        "the caps and the pause to be taken",
        async || sandbox.stats(),
        |s| s.failures_posted.get(&131049) == Some(&3) && s.failures_posted.get(&132015) == Some(&1),
    )
    .await;
    let table = deployment.table();
    let held_now = holds(table).await;
    assert_eq!(held_now.as_array().map(Vec::len), Some(1), "the paused template is held: {held_now:#}");

    sandbox.reply(&cast.replies, Reply::Text("Is the sale still on?".into())).await.expect("the reply is posted");
    sandbox.press_stop(&cast.opts_out).await.expect("the stop is posted");
    let body = approved("weekly_offers");
    let signature = sign(&AppSecret::new(APP_SECRET), &body);
    let answer = http
        .post(format!("{}/webhook", deployment.base_url()))
        .header(SIGNATURE_HEADER, signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("POST /webhook");
    assert_eq!(answer.status(), 200);
    // Taken before the answer, and well before the hold's own probe (10 s after the pause).
    let after = holds(table).await;
    assert_eq!(after, json!([]), "the approval lifts the hold");

    let ended = |f: &Value| f["in_progress"] == 0 && f["sends"] == 105;
    let funnel = match settle(async || funnel(table).await, ended).await {
        Ok(funnel) => funnel,
        Err(seen) => {
            // Which deployment, and the unfinished sends as the report shows them.
            let csv = operator(table, &["report", "--campaign", CAMPAIGN, "--csv"]).await;
            let open: Vec<&str> = csv
                .lines()
                .filter(|row| {
                    ["waiting", "claimed", "in_flight", "paced"].iter().any(|s| row.contains(&format!(",{s},")))
                })
                .collect();
            panic!(
                "{}: waited {SETTLING:?} for every send to end; last seen: {seen:#}; unfinished: {open:#?}",
                deployment.name()
            );
        }
    };
    let stats = sandbox.stats();
    assert_eq!(stats.accepted, 108, "each send went out once, each capped and held one twice: {stats:?}");
    let csv = operator(table, &["report", "--campaign", CAMPAIGN, "--csv"]).await;
    let mut rows: Vec<String> = csv.lines().map(str::to_owned).collect();
    rows.sort();
    (funnel, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployed_functions_give_the_same_report_as_serve() {
    let cast = Cast::new();
    let secrets = Secrets {
        app_secret: APP_SECRET.into(),
        access_token: "a-token-rotated-away".into(),
        verify_token: "deployed-verify-token".into(),
    };
    let mut config = SandboxConfig::new(17, ScaledClock::new(chrono::Utc::now(), 1.0));
    config.access_token = ACCESS_TOKEN.into();
    config.app_secret = AppSecret::new(APP_SECRET);
    config.timing = quick();
    config.webhook_retries = quick_retries();
    for (number, outcomes) in cast.scripts() {
        config.script(&number, outcomes);
    }
    let phone_number_id = config.business.phone_number_id.clone();
    // Real time: quiet hours off (as the serve rig has them), or a run in the recipients' night
    // (India's, from 15:30 UTC) would keep their retries for the morning.
    let overrides =
        [("RetryDelays", "15s,30s,60s"), ("RetryMinStep", "15s"), ("HoldProbeEvery", "10s"), ("QuietHours", "off")];
    let stack = Stack::start(config, secrets, &overrides).await;
    stack.rotate_secret("AccessTokenParameter", ACCESS_TOKEN).await;

    let table = fresh_dynamo_store().await.table().to_owned();
    let setup = cast
        .scripts()
        .into_iter()
        .fold(
            Setup::new().time_scale(1.0).timing(quick()).webhook_retries(quick_retries()),
            |setup, (number, outcomes)| setup.script(&number, outcomes),
        )
        .dynamodb(table.clone(), dynamodb_endpoint())
        .env(shared::config::RETRY_DELAYS, "15s,30s,60s")
        .env(shared::config::RETRY_MIN_STEP, "15s")
        .env(shared::config::HOLD_PROBE_EVERY, "10s");
    let serve = Served { rig: setup.start().await, table };
    assert_eq!(serve.rig.phone_number_id(), phone_number_id);

    let (deployed, served) = tokio::join!(run(&stack, &cast, &phone_number_id), run(&serve, &cast, &phone_number_id));
    assert_eq!(stack.failed_invocations(), Vec::<String>::new(), "every invocation succeeded");
    let refused = stack.sandbox.stats().refused;
    assert!(refused.get(&190).is_some_and(|&n| n > 0), "the started functions held the old token: {refused:?}");
    assert_eq!(deployed.0, served.0, "the funnels differ");
    assert_eq!(timeless(&deployed.1), timeless(&served.1), "the CSV reports differ");
    let expected = json!({
        "sends": 105, "accepted": 105, "delivered": 104, "read": 0, "capped": 3, "held_for_limit": 0,
        "recovered_by_retry": { "1": 2 }, "exhausted": 0, "opted_out": 1,
        "suppressed": {}, "failed_by_code": {}, "paced": 0, "in_progress": 0,
        "by_tier": { "new": { "sends": 105, "delivered": 104, "read": 0, "capped": 3, "recovered": 2, "exhausted": 0 } },
    });
    assert_eq!(deployed.0, expected, "{:#}", deployed.0);
    assert_eq!(deployed.1.len(), 106, "a header and a row per send");
}
