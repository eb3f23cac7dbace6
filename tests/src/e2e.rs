//! The end-to-end rig: the Cloud API sandbox in the test process and `capguard serve` as a child
//! process, two servers on loopback that talk only over HTTP, as Meta and a deployed capguard do.
//! They share one scaled clock (the same anchor and scale), so a 12 h retry takes half a second
//! and both agree on when it is due.
//!
//! A [`Setup`] names what a test needs (scripted recipients, configuration variables, the store);
//! [`Setup::start`] starts the sandbox, then serve pointed at it, and points the sandbox's webhooks
//! at serve's `/webhook`. The [`Rig`] then sends, looks, waits, posts webhooks of its own, and kills
//! and restarts serve. Waits poll with a deadline and fail with the last state seen and serve's
//! log. Each rig has its own data file and log, removed when it is dropped; serve is killed on
//! drop, a panic included.
//!
//! The tests run the `capguard` binary that `cargo test --workspace` (or `cargo build -p capguard`)
//! built beside the test executable.

use std::ffi::OsString;
use std::fmt::Debug;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sandbox::config::{Business, Timing};
use sandbox::{Sandbox, SandboxConfig, SandboxHandle, ScriptedOutcome, Stats};
use serde_json::{Value, json};
use shared::clock::{Clock, ScaledClock};
use shared::config;
use shared::domain::rules::Category;
use shared::usecase::dispatch::{DispatchRequest, RecipientSpec, TemplateName};
use shared::whatsapp::signature::{AppSecret, SIGNATURE_HEADER, sign};

/// Report CSV rows (no header) without what two runs never share (the times the send was
/// recorded and last changed, the wamids) and with the attempts' times replaced by how many
/// there are, sorted, so that two runs' reports compare.
pub fn timeless(rows: &[String]) -> Vec<String> {
    let columns = shared::report::CSV_COLUMNS;
    let mut timeless: Vec<String> = rows
        .iter()
        .map(|row| {
            let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(row.as_bytes());
            let record = reader.records().next().expect("a record").expect("a CSV row");
            let fields: Vec<String> = columns
                .iter()
                .zip(record.iter())
                .filter(|(column, _)| !matches!(**column, "created_at" | "updated_at" | "wamids"))
                .map(|(column, field)| match *column {
                    "attempt_times" => format!("{} attempts sent", field.split_whitespace().count()),
                    _ => field.to_owned(),
                })
                .collect();
            fields.join(",")
        })
        .collect();
    timeless.sort();
    timeless
}

/// A simulated day per wall second: the rig's ladder plays out in 3.5 s.
pub const SCALE: f64 = 86_400.0;
/// The ladder serve runs with unless a test sets `RETRY_DELAYS`: three steps, where the default's
/// seven two-day steps would take two weeks of simulated time to exhaust a send.
pub const RIG_LADDER: &str = "12h,24h,48h";
/// How long a wait may take on the wall before its test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(20);
/// The credentials both servers are given (not the sandbox's defaults, so that a server left on
/// its defaults would fail).
/// The access token the sandbox takes and serve is given.
pub const ACCESS_TOKEN: &str = "e2e-access-token";
/// The app secret the sandbox signs webhooks with and serve checks them by.
pub const APP_SECRET: &str = "e2e-app-secret";
/// Every variable `capguard serve` reads, cleared so that the caller's environment changes nothing.
const SERVE_VARIABLES: &[&str] = &[
    config::RETRY_DELAYS,
    config::RETRY_MIN_STEP,
    config::MARKETING_PAUSED_REGIONS,
    config::OPT_OUT_KEYWORDS,
    config::MARKETING_FREQUENCY_CAP,
    config::REQUIRE_OPT_IN,
    config::THROUGHPUT_PER_SECOND,
    config::SEND_ENDPOINT,
    config::DATA_RETENTION,
    config::HOLD_PROBE_EVERY,
    config::HOLD_ALARM_AFTER,
    config::HOLD_GIVE_UP_AFTER,
    config::SWEEP_INTERVAL,
    config::FORWARD_SECRET,
    config::GRAPH_API_BASE_URL,
    config::GRAPH_API_VERSION,
    config::WHATSAPP_ACCESS_TOKEN,
    config::WHATSAPP_APP_SECRET,
    config::WHATSAPP_VERIFY_TOKEN,
    "AWS_ENDPOINT_URL_DYNAMODB",
];

/// Where serve keeps its sends. Timers are always in the data file.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    Embedded,
    Dynamo { table: String, endpoint: String },
}

/// What a rig is started with.
#[derive(Debug, Clone)]
pub struct Setup {
    scripts: Vec<(String, Vec<ScriptedOutcome>)>,
    aliases: Vec<(String, String)>,
    env: Vec<(&'static str, String)>,
    args: Vec<String>,
    store: StoreChoice,
    scale: f64,
    throughput: Option<u32>,
    timing: Option<Timing>,
    messaging_limit: Option<u32>,
    webhook_retries: Option<Vec<chrono::TimeDelta>>,
}

impl Default for Setup {
    fn default() -> Self {
        Self::new()
    }
}

impl Setup {
    /// The embedded store, the default configuration with quiet hours off, no scripts, a simulated
    /// day per second.
    pub fn new() -> Self {
        Self {
            scripts: Vec::new(),
            aliases: Vec::new(),
            // The rig's clock starts at the wall's now: with quiet hours on, a run in the
            // recipients' night (India's from 15:30 UTC) would keep every retry for their morning.
            env: vec![(config::RETRY_DELAYS, RIG_LADDER.to_owned()), (config::QUIET_HOURS, "off".to_owned())],
            args: Vec::new(),
            store: StoreChoice::Embedded,
            scale: SCALE,
            throughput: None,
            timing: None,
            messaging_limit: None,
            webhook_retries: None,
        }
    }

    /// Meta knows `number` as `wa_id`: the sandbox's answers and statuses name that id.
    pub fn alias(mut self, number: &str, wa_id: &str) -> Self {
        self.aliases.push((number.to_owned(), wa_id.to_owned()));
        self
    }

    /// serve fails its first `n` timer creations (its hidden fault-injection option).
    pub fn fail_timers(mut self, n: u32) -> Self {
        self.args.extend(["--fail-timers".to_owned(), n.to_string()]);
        self
    }

    /// How many times faster than the wall both servers' clock runs.
    pub fn time_scale(mut self, scale: f64) -> Self {
        self.scale = scale;
        self
    }

    /// Meta's throughput per business number, in the sandbox and in serve's settings.
    pub fn throughput(mut self, per_second: u32) -> Self {
        self.throughput = Some(per_second);
        self.env(config::THROUGHPUT_PER_SECOND, per_second.to_string())
    }

    /// The portfolio's messaging limit, in the sandbox (which refuses users past it) and in
    /// serve's settings (`MESSAGING_LIMIT`).
    pub fn messaging_limit(mut self, unique_users: u32) -> Self {
        self.messaging_limit = Some(unique_users);
        self.env(config::MESSAGING_LIMIT, unique_users.to_string())
    }

    /// How long the sandbox's statuses take, in simulated time.
    pub fn timing(mut self, timing: Timing) -> Self {
        self.timing = Some(timing);
        self
    }

    /// The sandbox's waits before each new try of a webhook serve did not take (simulated time).
    pub fn webhook_retries(mut self, waits: Vec<chrono::TimeDelta>) -> Self {
        self.webhook_retries = Some(waits);
        self
    }

    /// Every send to `number` takes the next of `outcomes` in the sandbox, the last repeating.
    pub fn script(mut self, number: &str, outcomes: impl IntoIterator<Item = ScriptedOutcome>) -> Self {
        self.scripts.push((number.to_owned(), outcomes.into_iter().collect()));
        self
    }

    /// A configuration variable for serve, e.g. `RETRY_DELAYS`.
    pub fn env(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.env.push((name, value.into()));
        self
    }

    /// A flag of serve's, e.g. `--forward-url URL`.
    pub fn arg(mut self, flag: &str, value: impl Into<String>) -> Self {
        self.args.extend([flag.to_owned(), value.into()]);
        self
    }

    /// Sends kept in this DynamoDB table (which must exist) instead of the data file.
    pub fn dynamodb(mut self, table: impl Into<String>, endpoint: impl Into<String>) -> Self {
        self.store = StoreChoice::Dynamo { table: table.into(), endpoint: endpoint.into() };
        self
    }

    /// Starts the sandbox, then serve against it on the same clock.
    pub async fn start(self) -> Rig {
        // Whole seconds, as serve's --clock-anchor takes them.
        let anchor = Utc::now().timestamp();
        let clock =
            ScaledClock::anchored(DateTime::from_timestamp(anchor, 0).expect("now is a valid time"), self.scale);
        let mut config = SandboxConfig::new(17, clock);
        config.access_token = ACCESS_TOKEN.to_owned();
        config.app_secret = AppSecret::new(APP_SECRET);
        if let Some(timing) = &self.timing {
            config.timing = timing.clone();
        }
        if let Some(waits) = &self.webhook_retries {
            config.webhook_retries = waits.clone();
        }
        if let Some(per_second) = self.throughput {
            config.limits.throughput_per_second = per_second;
        }
        config.limits.messaging_limit = self.messaging_limit;
        for (number, outcomes) in &self.scripts {
            config.script(number, outcomes.iter().copied());
        }
        for (number, wa_id) in &self.aliases {
            config.alias(number, wa_id);
        }
        let business = config.business.clone();
        let sandbox = Sandbox::start(config).await.expect("the sandbox starts on 127.0.0.1");
        let files = TempFiles::new();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("an HTTP client");
        let mut rig = Rig { serve: None, sandbox, clock, anchor, business, setup: self, files, http };
        rig.start_serve().await;
        rig
    }
}

/// The two servers of one test, and what the test does to them.
pub struct Rig {
    // Dropped first: serve is killed before its files are removed.
    serve: Option<Process>,
    pub sandbox: SandboxHandle,
    clock: ScaledClock,
    anchor: i64,
    business: Business,
    setup: Setup,
    files: TempFiles,
    http: reqwest::Client,
}

impl Rig {
    /// The time both servers read.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The business number sends go from.
    pub fn phone_number_id(&self) -> &str {
        &self.business.phone_number_id
    }

    /// serve's base URL (`http://127.0.0.1:PORT`).
    pub fn serve_url(&self) -> &str {
        &self.serve.as_ref().expect("serve is running").url
    }

    async fn start_serve(&mut self) {
        let mut args: Vec<OsString> = vec!["serve".into(), "--port".into(), "0".into(), "--data".into()];
        args.push(self.files.data.clone().into());
        if let StoreChoice::Dynamo { table, endpoint } = &self.setup.store {
            args.extend(["--dynamodb".into(), table.into(), "--dynamodb-endpoint".into(), endpoint.into()]);
        }
        for (flag, value) in [
            ("--graph-base-url", self.sandbox.base_url()),
            ("--access-token", ACCESS_TOKEN.to_owned()),
            ("--app-secret", APP_SECRET.to_owned()),
            ("--time-scale", self.setup.scale.to_string()),
            ("--clock-anchor", self.anchor.to_string()),
        ] {
            args.extend([flag.into(), value.into()]);
        }
        args.extend(self.setup.args.iter().map(OsString::from));
        let serve = Process::start(&args, &self.setup.env, &self.files.log).await;
        self.sandbox.set_callback_url(format!("{}/webhook", serve.url));
        self.serve = Some(serve);
    }

    /// Kills serve with SIGKILL, as a crash would, and waits for it to be gone.
    pub fn kill_serve(&mut self) {
        let mut serve = self.serve.take().expect("serve is running");
        serve.kill();
    }

    /// Starts serve again on the same data file and clock (on a new port, which the sandbox's
    /// webhooks follow).
    pub async fn restart_serve(&mut self) {
        assert!(self.serve.is_none(), "kill serve first");
        self.start_serve().await;
    }

    /// `POST /sends`, closing the connection after `after` if serve has not answered by then, as
    /// a client that gives up does; true when it gave up.
    pub async fn dispatch_and_hang_up(&self, request: &DispatchRequest, after: Duration) -> bool {
        let url = format!("{}/sends", self.serve_url());
        match self.http.post(&url).json(request).timeout(after).send().await {
            Ok(response) => {
                self.json_of(&url, response, 200).await;
                false
            }
            Err(e) if e.is_timeout() => true,
            Err(e) => fail(&url, e),
        }
    }

    /// `POST /sends`: the per-recipient results.
    pub async fn dispatch(&self, request: &DispatchRequest) -> Vec<Value> {
        let url = format!("{}/sends", self.serve_url());
        let response = self.http.post(&url).json(request).send().await.unwrap_or_else(|e| fail(&url, e));
        let body = self.json_of(&url, response, 200).await;
        body["results"].as_array().cloned().unwrap_or_else(|| fail(&url, format!("no results in {body}")))
    }

    /// `POST /sends` of a request over the synchronous limit: the 202 answer, and how long it took.
    pub async fn dispatch_queued(&self, request: &DispatchRequest) -> (Value, Duration) {
        let url = format!("{}/sends", self.serve_url());
        let started = std::time::Instant::now();
        let response = self.http.post(&url).json(request).send().await.unwrap_or_else(|e| fail(&url, e));
        let body = self.json_of(&url, response, 202).await;
        (body, started.elapsed())
    }

    /// Sends `template` to one recipient as its own request; returns the send's id and the result.
    pub async fn send_one(&self, campaign: &str, template: &str, category: Category, to: &str) -> (String, Value) {
        let request = request(self.phone_number_id(), campaign, template, category, &[to]);
        let result = self.dispatch(&request).await.remove(0);
        let id = result["send_id"].as_str().unwrap_or_else(|| fail("POST /sends", format!("{result}"))).to_owned();
        (id, result)
    }

    /// `GET` a view of serve's as JSON, expecting 200.
    pub async fn get(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.serve_url());
        let response = self.http.get(&url).send().await.unwrap_or_else(|e| fail(&url, e));
        self.json_of(&url, response, 200).await
    }

    /// `GET /sends/{id}`.
    pub async fn send(&self, id: &str) -> Value {
        self.get(&format!("/sends/{id}")).await
    }

    /// `GET /recipients/{number}`.
    pub async fn recipient(&self, number: &str) -> Value {
        self.get(&format!("/recipients/{number}")).await
    }

    /// `GET /campaigns/{campaign}/report`: the funnel.
    pub async fn report(&self, campaign: &str) -> Value {
        self.get(&format!("/campaigns/{campaign}/report")).await
    }

    /// Posts `body` to serve's `/webhook`, signed as Meta signs it; returns the HTTP status and
    /// how long the answer took.
    pub async fn post_webhook_timed(&self, body: &[u8]) -> (u16, Duration) {
        let started = std::time::Instant::now();
        let status = self.post_webhook(body).await;
        (status, started.elapsed())
    }

    /// Posts `body` to serve's `/webhook`, signed as Meta signs it; returns the HTTP status.
    pub async fn post_webhook(&self, body: &[u8]) -> u16 {
        let url = format!("{}/webhook", self.serve_url());
        let signature = sign(&AppSecret::new(APP_SECRET), body);
        let sent = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body.to_vec())
            .send()
            .await;
        sent.unwrap_or_else(|e| fail(&url, e)).status().as_u16()
    }

    /// A status webhook in Meta's envelope for this rig's business, with `statuses` in one batch.
    pub fn status_webhook(&self, statuses: &[Value]) -> Vec<u8> {
        let body = json!({
            "object": "whatsapp_business_account",
            "entry": [{
                "id": self.business.waba_id,
                "changes": [{
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {
                            "display_phone_number": self.business.display_phone_number,
                            "phone_number_id": self.business.phone_number_id,
                        },
                        "statuses": statuses,
                    },
                    "field": "messages",
                }],
            }],
        });
        body.to_string().into_bytes()
    }

    /// Polls `GET /sends/{id}` until `done` holds; fails after [`DEADLINE`] with the last view.
    pub async fn wait_for_send(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        self.wait_until(what, async || self.send(id).await, done).await
    }

    /// Polls the campaign's funnel until `done` holds.
    pub async fn wait_for_report(&self, campaign: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        self.wait_until(what, async || self.report(campaign).await, done).await
    }

    /// Polls the sandbox's counters until `done` holds. A webhook is counted once serve has
    /// answered it 2xx, which is after serve's views show its effects.
    pub async fn wait_for_stats(&self, what: &str, done: impl Fn(&Stats) -> bool) -> Stats {
        self.wait_until(what, async || self.sandbox.stats(), done).await
    }

    /// Waits until both servers' clock reads `at` or later.
    pub async fn wait_for_time(&self, at: DateTime<Utc>) {
        self.wait_until(&format!("the clock to reach {at}"), async || self.now(), |now| *now >= at).await;
    }

    /// Polls `look` until `done` holds of what it returns; fails after [`DEADLINE`] with the last.
    pub async fn wait_until<T: Debug>(&self, what: &str, look: impl AsyncFnMut() -> T, done: impl Fn(&T) -> bool) -> T {
        self.wait_within(DEADLINE, what, look, done).await
    }

    /// [`Self::wait_until`] for work known to take longer, failing after `limit`.
    pub async fn wait_within<T: Debug>(
        &self,
        limit: Duration,
        what: &str,
        mut look: impl AsyncFnMut() -> T,
        done: impl Fn(&T) -> bool,
    ) -> T {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let seen = look().await;
            if done(&seen) {
                return seen;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("waited {limit:?} for {what}; last seen: {seen:#?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// An operator command (`report`, `inspect`, …) on this rig's store (its data file, which
    /// serve may hold open, or its table), run as a user runs it: whether it succeeded, its
    /// stdout and its stderr.
    pub async fn operator(&self, args: &[&str]) -> (bool, String, String) {
        let mut command = Command::new(capguard_binary());
        command.args(args);
        match &self.setup.store {
            StoreChoice::Embedded => command.arg("--data").arg(&self.files.data),
            StoreChoice::Dynamo { table, endpoint } => {
                command.args(["--dynamodb", table, "--dynamodb-endpoint", endpoint])
            }
        };
        for name in SERVE_VARIABLES {
            command.env_remove(name);
        }
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("the command runs")
            .expect("capguard starts");
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("UTF-8");
        (output.status.success(), text(output.stdout), text(output.stderr))
    }

    /// `capguard report --campaign C --csv` on this rig's store: the data rows, sorted.
    pub async fn report_csv(&self, campaign: &str) -> Vec<String> {
        let (ok, stdout, stderr) = self.operator(&["report", "--campaign", campaign, "--csv"]).await;
        assert!(ok, "capguard report failed: {stderr}");
        let mut lines: Vec<String> = stdout.lines().map(str::to_owned).collect();
        assert_eq!(lines.first().cloned(), Some(shared::report::CSV_COLUMNS.join(",")), "{stdout}");
        lines.remove(0);
        lines.sort();
        lines
    }

    async fn json_of(&self, url: &str, response: reqwest::Response, expected: u16) -> Value {
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_else(|e| fail(url, e));
        if status != expected {
            fail(url, format!("HTTP {status}, expected {expected}: {text}"));
        }
        serde_json::from_str(&text).unwrap_or_else(|e| fail(url, format!("{e}: {text}")))
    }
}

fn fail(what: &str, problem: impl std::fmt::Display) -> ! {
    panic!("{what}: {problem}")
}

/// A send request of `template` from `phone_number_id` to `numbers`, keyed by the campaign.
pub fn request(
    phone_number_id: &str,
    campaign: &str,
    template: &str,
    category: Category,
    numbers: &[&str],
) -> DispatchRequest {
    DispatchRequest {
        phone_number_id: phone_number_id.to_owned(),
        template: TemplateName { name: template.to_owned(), language: "en_US".to_owned() },
        category,
        campaign: Some(campaign.to_owned()),
        idempotency_key: format!("{campaign}-request-1"),
        retry_until: None,
        utc_offset: None,
        default_country: None,
        recipients: numbers
            .iter()
            .map(|to| RecipientSpec { to: (*to).to_owned(), components: vec![], opt_in: None })
            .collect(),
    }
}

/// One status of a status webhook, as Meta writes it (`timestamp` a string of unix seconds).
pub fn status(wamid: &str, status: &str, at: DateTime<Utc>, recipient_id: &str) -> Value {
    json!({ "id": wamid, "status": status, "timestamp": at.timestamp().to_string(), "recipient_id": recipient_id })
}

/// The `capguard` binary beside the test executable (`target/debug/capguard`).
pub fn capguard_binary() -> PathBuf {
    let binary = crate::workspace_binary("capguard");
    assert!(binary.is_file(), "{} is missing: build it: cargo build -p capguard", binary.display());
    binary
}

/// A running `capguard` command that serves (`serve`, `sandbox`), killed on drop.
pub struct Process {
    child: Child,
    name: String,
    url: String,
    log: PathBuf,
}

impl Process {
    /// Starts `capguard <args>` with serve's variables cleared and `env` set, its stderr appended
    /// to `log`, and waits for its "capguard <command>: listening on <url>" line.
    pub async fn start(args: &[OsString], env: &[(&'static str, String)], log: &Path) -> Self {
        let name = args.first().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
        let stderr = File::options().create(true).append(true).open(log).expect("the process log opens");
        let mut command = Command::new(capguard_binary());
        command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr);
        for variable in SERVE_VARIABLES {
            command.env_remove(variable);
        }
        command.envs(env.iter().map(|(variable, value)| (*variable, value)));
        let mut child = command.spawn().unwrap_or_else(|e| panic!("capguard {name} starts: {e}"));
        let stdout = child.stdout.take().expect("the process's stdout is piped");
        let (found, listening) = tokio::sync::oneshot::channel();
        // Reads the stdout to its end, so that the process never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let url = line
                    .strip_prefix("capguard ")
                    .and_then(|rest| rest.split_once(": listening on "))
                    .and_then(|(_, rest)| rest.split(' ').next());
                if let (Some(url), Some(found)) = (url, found.take()) {
                    let _ = found.send(url.to_owned());
                }
            }
        });
        let mut process = Self { child, name, url: String::new(), log: log.to_owned() };
        match tokio::time::timeout(DEADLINE, listening).await {
            Ok(Ok(url)) => process.url = url,
            Ok(Err(_)) => panic!("capguard {} exited before listening:\n{}", process.name, log_tail(log)),
            Err(_) => panic!("capguard {} did not listen in {DEADLINE:?}:\n{}", process.name, log_tail(log)),
        }
        process
    }

    /// Its base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Kills it with SIGKILL, as a crash would, and waits for it to be gone.
    pub fn kill(&mut self) {
        // Child::kill is SIGKILL on Unix; an error means it has exited already.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("capguard {}'s log ({}):\n{}", self.name, self.log.display(), log_tail(&self.log));
        }
    }
}

/// The last lines of a log, for a failure message.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// serve's data file and log, in a folder of their own removed with it.
struct TempFiles {
    data: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl TempFiles {
    fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("capguard-e2e-").tempdir().expect("a temporary folder");
        Self { data: dir.path().join("capguard.redb"), log: dir.path().join("serve.log"), _dir: dir }
    }
}
