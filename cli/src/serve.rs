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
use shared::store::dynamo::DynamoStore;
use shared::store::embedded::{EmbeddedStore, StoreFile};
use shared::whatsapp::signature::AppSecret;

use crate::local::{LocalStack, StackSettings};
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
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    // The same variables, with the same checks, as the Lambda functions read.
    let Settings { rules, retention, sending } = Settings::from_env()?;
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
    };
    let opening = || format!("opening {}", args.data.display());
    match &args.dynamodb {
        Some(table) => {
            let timers = StoreFile::open(&args.data).with_context(opening)?;
            let store = DynamoStore::connect(args.dynamodb_endpoint.as_deref(), table.clone(), retention).await;
            serve(LocalStack::start(store, timers, settings).await?, sandbox, &args.data).await
        }
        None => {
            let store = EmbeddedStore::open(&args.data, retention).with_context(opening)?;
            let timers = store.file();
            serve(LocalStack::start(store, timers, settings).await?, sandbox, &args.data).await
        }
    }
}

async fn serve<S: shared::store::SendStore + 'static>(
    stack: LocalStack<S>,
    sandbox: Option<sandbox::SandboxHandle>,
    data: &Path,
) -> anyhow::Result<()> {
    println!("capguard serve: listening on http://{} (webhook {})", stack.addr(), stack.webhook_url());
    if let Some(sandbox) = &sandbox {
        sandbox.set_callback_url(stack.webhook_url());
        println!("capguard serve: sandbox at {}", sandbox.base_url());
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
