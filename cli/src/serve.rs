//! `capguard serve`: the local stack as a long-running server, with the same configuration
//! variables as the Lambda functions. Against the sandbox (started in this process) by default,
//! or, given a base URL and a token, against the real Cloud API. Data lives in a file and
//! survives a restart; timers that fell due while it was down fire as soon as it is back.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use sandbox::{Sandbox, SandboxConfig};
use shared::config::{self, Settings};
use shared::domain::ladder::parse_delay;
use shared::forward::Forward;
use shared::forward::http::HttpForward;
use shared::forward::sqs::SqsForward;
use shared::outcome::Publish;
use shared::outcome::lines::JsonLines;
use shared::store::dynamo::{AwsTarget, DynamoStore};
use shared::store::embedded::{EmbeddedStore, StoreFile};
use shared::whatsapp::signature::AppSecret;

use crate::local::{Coexistence, LocalStack, StackSettings};
use crate::stores::{DEFAULT_DATA_FILE, serve_address_file};

/// Serves GET/POST /webhook, POST /sends and read-only views on localhost.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The data file (sends, recipients, timers).
    #[arg(long, default_value = DEFAULT_DATA_FILE)]
    data: PathBuf,
    /// Keep sends in this DynamoDB table instead of the data file (timers stay in the file).
    #[arg(long, value_name = "TABLE")]
    dynamodb: Option<String>,
    #[arg(long, env = "AWS_ENDPOINT_URL_DYNAMODB")]
    dynamodb_endpoint: Option<String>,
    /// The Cloud API's base URL; without it a sandbox is started in this process.
    #[arg(long, env = config::GRAPH_API_BASE_URL)]
    graph_base_url: Option<String>,
    #[arg(long, env = config::GRAPH_API_VERSION)]
    graph_version: Option<String>,
    /// Required with --graph-base-url.
    #[arg(long, env = config::WHATSAPP_ACCESS_TOKEN, hide_env_values = true)]
    access_token: Option<String>,
    /// The app secret webhooks are signed with (the sandbox's when it runs here).
    #[arg(long, env = config::WHATSAPP_APP_SECRET, hide_env_values = true)]
    app_secret: Option<String>,
    #[arg(long, env = config::WHATSAPP_VERIFY_TOKEN, hide_env_values = true, default_value = "capguard-local")]
    verify_token: String,
    /// How many times faster than the wall time runs (1 for real time).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// The wall instant (unix seconds) the scaled clock starts from, shared with a separate
    /// sandbox so both read the same time; now when not given.
    #[arg(long)]
    clock_anchor: Option<i64>,
    /// The in-process sandbox's seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// How often to sweep for sends whose timer never came (clock time: s, m, h or d).
    #[arg(long, env = config::SWEEP_INTERVAL, default_value = "5m")]
    sweep_interval: String,
    /// Fault injection for tests: the first N timer creations fail.
    #[arg(long, hide = true, default_value_t = 0)]
    fail_timers: u32,
    /// The AWS region of the table (--dynamodb) and the forward queue (the SDK's usual variables
    /// and files otherwise).
    #[arg(long)]
    region: Option<String>,
    /// The profile of the AWS config and credentials files to sign in with, with --dynamodb or
    /// --forward-queue.
    #[arg(long)]
    profile: Option<String>,
    #[command(flatten)]
    coexistence: CoexistenceArgs,
    #[command(flatten)]
    settings: SettingsArgs,
}

/// What serve hands your own WhatsApp stack (docs/coexistence.md, docs/events.md).
#[derive(Debug, Args)]
#[command(next_help_heading = "Coexistence")]
struct CoexistenceArgs {
    /// Post every verified webhook body, byte for byte, to your own receiver at this URL, signed
    /// with --forward-secret (X-Hub-Signature-256, as Meta signs); kept in the data file until it
    /// is taken.
    #[arg(long, value_name = "URL", requires = "forward_secret", conflicts_with = "forward_queue")]
    forward_url: Option<String>,
    /// The secret forwarded bodies are signed with.
    #[arg(long, env = config::FORWARD_SECRET, hide_env_values = true)]
    forward_secret: Option<String>,
    /// Send every verified webhook body to this SQS queue instead (AWS_ENDPOINT_URL_SQS points it
    /// at an emulator; --region and --profile apply).
    #[arg(long, value_name = "SQS_URL")]
    forward_queue: Option<String>,
    /// Write capguard's outcome events (send capped, retry planned, recovered, exhausted, opted
    /// out, held, hold lifted) as JSON lines to this file, or to standard output with `-`.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
}

impl CoexistenceArgs {
    async fn coexistence(&self, target: &AwsTarget) -> anyhow::Result<Coexistence> {
        let forward: Option<Arc<dyn Forward>> = match (&self.forward_url, &self.forward_queue) {
            (Some(url), _) => {
                let secret = self.forward_secret.clone().context("--forward-secret is required with --forward-url")?;
                Some(Arc::new(HttpForward::new(url.clone(), AppSecret::new(secret))?))
            }
            (None, Some(url)) => Some(Arc::new(SqsForward::connect_to(url.clone(), target).await)),
            (None, None) => None,
        };
        let events: Option<Arc<dyn Publish>> = match &self.events {
            Some(path) if path.as_os_str() == "-" => Some(Arc::new(JsonLines::stdout())),
            Some(path) => Some(Arc::new(
                JsonLines::append_to(path).with_context(|| format!("opening {} for the events", path.display()))?,
            )),
            None => None,
        };
        Ok(Coexistence { forward, events })
    }
}

/// Every setting the functions read from their environment, as a flag or the same variable
/// (README, "Configuration"), checked the same way.
#[derive(Debug, Args)]
#[command(next_help_heading = "Settings (as the functions take them)")]
struct SettingsArgs {
    #[arg(long, env = config::RETRY_DELAYS)]
    retry_delays: Option<String>,
    #[arg(long, env = config::RETRY_MIN_STEP)]
    retry_min_step: Option<String>,
    #[arg(long, env = config::QUIET_HOURS)]
    quiet_hours: Option<String>,
    #[arg(long, env = config::REST_AFTER_CAP)]
    rest_after_cap: Option<String>,
    #[arg(long, env = config::STRETCH_FROM_CAPS)]
    stretch_from_caps: Option<String>,
    #[arg(long, env = config::RETRY_IN_WINDOW)]
    retry_in_window: Option<String>,
    #[arg(long, env = config::ENGAGED_FIRST)]
    engaged_first: Option<String>,
    #[arg(long, env = config::REQUIRE_OPT_IN)]
    require_opt_in: Option<String>,
    #[arg(long, env = config::MESSAGING_LIMIT)]
    messaging_limit: Option<String>,
    #[arg(long, env = config::WARM_UP)]
    warm_up: Option<String>,
    #[arg(long, env = config::QUALITY_YELLOW_SHARE)]
    quality_yellow_share: Option<String>,
    #[arg(long, env = config::MARKETING_PAUSED_REGIONS)]
    marketing_paused_regions: Option<String>,
    #[arg(long, env = config::OPT_OUT_KEYWORDS)]
    opt_out_keywords: Option<String>,
    #[arg(long, env = config::MARKETING_FREQUENCY_CAP)]
    marketing_frequency_cap: Option<String>,
    #[arg(long, env = config::DATA_RETENTION)]
    data_retention: Option<String>,
    #[arg(long, env = config::SEND_ENDPOINT)]
    send_endpoint: Option<String>,
    #[arg(long, env = config::THROUGHPUT_PER_SECOND)]
    throughput_per_second: Option<String>,
    #[arg(long, env = config::HOLD_PROBE_EVERY)]
    hold_probe_every: Option<String>,
    #[arg(long, env = config::HOLD_ALARM_AFTER)]
    hold_alarm_after: Option<String>,
    #[arg(long, env = config::HOLD_GIVE_UP_AFTER)]
    hold_give_up_after: Option<String>,
}

impl SettingsArgs {
    /// The settings, read as the functions read their environment.
    fn settings(&self) -> Result<Settings, config::ConfigError> {
        let given = [
            (config::RETRY_DELAYS, &self.retry_delays),
            (config::RETRY_MIN_STEP, &self.retry_min_step),
            (config::QUIET_HOURS, &self.quiet_hours),
            (config::REST_AFTER_CAP, &self.rest_after_cap),
            (config::STRETCH_FROM_CAPS, &self.stretch_from_caps),
            (config::RETRY_IN_WINDOW, &self.retry_in_window),
            (config::ENGAGED_FIRST, &self.engaged_first),
            (config::REQUIRE_OPT_IN, &self.require_opt_in),
            (config::MESSAGING_LIMIT, &self.messaging_limit),
            (config::WARM_UP, &self.warm_up),
            (config::QUALITY_YELLOW_SHARE, &self.quality_yellow_share),
            (config::MARKETING_PAUSED_REGIONS, &self.marketing_paused_regions),
            (config::OPT_OUT_KEYWORDS, &self.opt_out_keywords),
            (config::MARKETING_FREQUENCY_CAP, &self.marketing_frequency_cap),
            (config::DATA_RETENTION, &self.data_retention),
            (config::SEND_ENDPOINT, &self.send_endpoint),
            (config::THROUGHPUT_PER_SECOND, &self.throughput_per_second),
            (config::HOLD_PROBE_EVERY, &self.hold_probe_every),
            (config::HOLD_ALARM_AFTER, &self.hold_alarm_after),
            (config::HOLD_GIVE_UP_AFTER, &self.hold_give_up_after),
        ];
        Settings::from_lookup(|name| given.iter().find(|(n, _)| *n == name).and_then(|(_, value)| (*value).clone()))
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    // The same settings, with the same checks, as the Lambda functions read.
    let Settings { rules, retention, sending } = args.settings.settings()?;
    let sweep_interval = parse_delay(&args.sweep_interval)
        .ok()
        .filter(|interval| *interval > chrono::TimeDelta::zero())
        .with_context(|| {
            format!(
                "--sweep-interval (or {}): {:?} is not a period such as 5m",
                config::SWEEP_INTERVAL,
                args.sweep_interval
            )
        })?;
    let clock = crate::clock_from(args.time_scale, args.clock_anchor)?;
    let (sandbox, graph_base_url, access_token, app_secret) = match &args.graph_base_url {
        Some(url) => {
            let token = args
                .access_token
                .clone()
                .context("--access-token (or WHATSAPP_ACCESS_TOKEN) is required with --graph-base-url")?;
            let secret = args
                .app_secret
                .clone()
                .context("--app-secret (or WHATSAPP_APP_SECRET) is required with --graph-base-url")?;
            (None, url.clone(), token, AppSecret::new(secret))
        }
        None => {
            let mut config = SandboxConfig::new(args.seed, clock);
            if let Some(secret) = &args.app_secret {
                config.app_secret = AppSecret::new(secret.as_bytes());
            }
            let (token, secret) = (config.access_token.clone(), config.app_secret.clone());
            let sandbox = Sandbox::start(config).await?;
            let url = sandbox.base_url();
            (Some(sandbox), url, token, secret)
        }
    };
    let aws = AwsTarget { endpoint: None, region: args.region.clone(), profile: args.profile.clone() };
    let coexistence = args.coexistence.coexistence(&aws).await?;
    let events_on_stdout = args.coexistence.events.as_deref().is_some_and(|path| path.as_os_str() == "-");
    let settings = StackSettings {
        port: args.port,
        rules,
        sending,
        graph_base_url,
        graph_version: args.graph_version.clone(),
        access_token,
        app_secret,
        verify_token: args.verify_token.clone(),
        clock: Arc::new(clock),
        sweep_interval,
        fail_timers: args.fail_timers,
        coexistence,
    };
    let opening = || format!("opening {}", args.data.display());
    match &args.dynamodb {
        Some(table) => {
            let timers = StoreFile::open(&args.data).with_context(opening)?;
            let target = AwsTarget {
                endpoint: args.dynamodb_endpoint.clone(),
                region: args.region.clone(),
                profile: args.profile.clone(),
            };
            let store = DynamoStore::connect_to(&target, table.clone(), retention).await;
            serve(LocalStack::start(store, timers, settings).await?, sandbox, &args.data, events_on_stdout).await
        }
        None => {
            let store = EmbeddedStore::open(&args.data, retention).with_context(opening)?;
            let timers = store.file();
            serve(LocalStack::start(store, timers, settings).await?, sandbox, &args.data, events_on_stdout).await
        }
    }
}

async fn serve<S: shared::store::SendStore + 'static>(
    stack: LocalStack<S>,
    sandbox: Option<sandbox::SandboxHandle>,
    data: &Path,
    events_on_stdout: bool,
) -> anyhow::Result<()> {
    // Standard output is the events' alone when they go there: one JSON object a line.
    let say = |line: String| if events_on_stdout { eprintln!("{line}") } else { println!("{line}") };
    say(format!("capguard serve: listening on http://{} (webhook {})", stack.addr(), stack.webhook_url()));
    if let Some(sandbox) = &sandbox {
        sandbox.set_callback_url(stack.webhook_url());
        say(format!("capguard serve: sandbox at {}", sandbox.base_url()));
    }
    // While the data file is held open, `capguard report` and `inspect` ask serve instead. Left
    // behind by a kill, it names an address that no longer answers, which they say.
    let address_file = serve_address_file(data);
    std::fs::write(&address_file, format!("http://{}\n", stack.addr()))
        .with_context(|| format!("writing {}", address_file.display()))?;
    crate::until_stopped().await;
    let _ = std::fs::remove_file(&address_file);
    stack.shutdown().await?;
    if let Some(sandbox) = sandbox {
        sandbox.shutdown().await?;
    }
    Ok(())
}
