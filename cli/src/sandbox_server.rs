//! `capguard sandbox`: the Cloud API sandbox on its own, for pointing a separate `capguard serve`
//! (or any client) at a local graph.facebook.com that behaves like WhatsApp, caps included.

use anyhow::Context;
use clap::Args;
use sandbox::{CapModel, Sandbox, SandboxConfig, Scenario};
use shared::domain::limit::MessagingLimit;
use shared::whatsapp::signature::AppSecret;

/// Serves the sandbox's POST /{version}/{phone-number-id}/messages and /marketing_messages, and
/// its counters at GET /sandbox/stats.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// 0 for any free port.
    #[arg(long, default_value_t = 0)]
    port: u16,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// The sandbox's model of the per-user marketing limit: default, strict or loose
    /// (docs/sandbox.md, "Cap models").
    #[arg(long, default_value_t = CapModel::Default)]
    cap_model: CapModel,
    /// Where to post the status webhooks (capguard serve's /webhook).
    #[arg(long)]
    callback: Option<String>,
    /// The app secret the webhooks are signed with.
    #[arg(long, env = shared::config::WHATSAPP_APP_SECRET, hide_env_values = true)]
    app_secret: Option<String>,
    /// The bearer token the sandbox accepts.
    #[arg(long, env = shared::config::WHATSAPP_ACCESS_TOKEN, hide_env_values = true)]
    access_token: Option<String>,
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Meta's throughput limit, in messages per second per phone number (beyond it: 130429).
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u32).range(1..))]
    throughput_per_second: u32,
    /// The most status and message updates one webhook POST carries, as Meta aggregates them
    /// (up to 1,000); 1 posts each on its own.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    webhook_batch: u16,
    /// The wall instant (unix seconds) the scaled clock starts from; now when not given.
    #[arg(long)]
    clock_anchor: Option<i64>,
    /// The portfolio's messaging limit (`250`, `2k`, …, `unlimited`): sends to more unique users
    /// in a moving 24 h are refused with 131048.
    #[arg(long, default_value = "unlimited")]
    messaging_limit: MessagingLimit,
    /// What Meta does to the account while the sandbox runs, as `<delay> <event>` pairs from its
    /// start (`1d quality=red, 2d quality=green, 3d template=spring_sale/paused`; docs/sandbox.md,
    /// "Account events"), with --callback, which their webhooks go to.
    #[arg(long, requires = "callback")]
    events: Option<Scenario>,
}

pub async fn run(args: SandboxArgs) -> anyhow::Result<()> {
    let clock = crate::clock_from(args.time_scale, args.clock_anchor)?;
    let mut config = SandboxConfig::with_cap_model(args.seed, clock, args.cap_model);
    config.port = args.port;
    config.limits.throughput_per_second = args.throughput_per_second;
    config.webhook_batch = args.webhook_batch.into();
    config.callback_url = args.callback.clone();
    config.limits.messaging_limit = args.messaging_limit.unique();
    config.scenario = args.events.clone().unwrap_or_default();
    if let Some(secret) = &args.app_secret {
        config.app_secret = AppSecret::new(secret.as_bytes());
    }
    if let Some(token) = &args.access_token {
        config.access_token = token.clone();
    }
    let sandbox = Sandbox::start(config).await.context("starting the sandbox")?;
    println!("capguard sandbox: listening on {}", sandbox.base_url());
    crate::until_stopped().await;
    sandbox.shutdown().await?;
    Ok(())
}
