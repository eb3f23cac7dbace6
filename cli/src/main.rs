//! `capguard`: the local stack and the operator's tool.

mod demo;
mod local;
mod operator;
mod routes;
mod sandbox_server;
mod serve;
mod stores;
mod views;
mod webhook;

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use shared::clock::ScaledClock;

#[derive(Debug, Parser)]
#[command(
    name = "capguard",
    version,
    about = "Recovers WhatsApp marketing sends refused by the per-user limit (131049)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Demo(demo::DemoArgs),
    Serve(serve::ServeArgs),
    Sandbox(sandbox_server::SandboxArgs),
    Report(operator::ReportArgs),
    Inspect(operator::InspectArgs),
    Webhook(webhook::WebhookArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version: print in full and succeed.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => return usage_error(&e.render().to_string()),
    };
    let outcome = match cli.command {
        Command::Webhook(args) => webhook::run(args),
        command => run_async(command),
    };
    let _ = std::io::stdout().flush();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => usage_error(&format!("error: {e:#}")),
    }
}

fn run_async(command: Command) -> anyhow::Result<()> {
    init_logs();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        match command {
            Command::Demo(args) => demo::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Sandbox(args) => sandbox_server::run(args).await,
            Command::Report(args) => operator::report(args).await,
            Command::Inspect(args) => operator::inspect(args).await,
            Command::Webhook(_) => unreachable!("handled without a runtime"),
        }
    })
}

/// Logs go to stderr, warnings and errors only unless `RUST_LOG` asks for more.
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Exit 2 with the message's first line on stderr.
fn usage_error(message: &str) -> ExitCode {
    eprintln!("{}", message.lines().find(|l| !l.trim().is_empty()).unwrap_or("error"));
    ExitCode::from(2)
}

/// A server's clock: `time_scale` times faster than the wall since the anchor (unix seconds;
/// now when not given), so that separate servers given the same anchor read the same time.
fn clock_from(time_scale: f64, anchor: Option<i64>) -> anyhow::Result<ScaledClock> {
    anyhow::ensure!(time_scale.is_finite() && time_scale >= 1.0, "--time-scale must be 1 or more");
    let anchor = match anchor {
        Some(seconds) => DateTime::from_timestamp(seconds, 0).context("--clock-anchor is out of range")?,
        None => Utc::now(),
    };
    Ok(ScaledClock::anchored(anchor, time_scale))
}

/// Waits for Ctrl-C or SIGTERM.
async fn until_stopped() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
