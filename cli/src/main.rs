//! `capguard`: the local stack and the operator's tool.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context;
use capguard::{demo, holds, lab, operator, sandbox_server, serve, webhook};
use clap::{Parser, Subcommand};

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
    /// The recovery lab: retry strategies side by side on one simulated population.
    Lab(lab::LabArgs),
    Serve(serve::ServeArgs),
    Sandbox(sandbox_server::SandboxArgs),
    Report(operator::ReportArgs),
    Inspect(operator::InspectArgs),
    Holds(holds::HoldsArgs),
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
            Command::Lab(args) => lab::run(args).await,
            Command::Serve(args) => serve::run(args).await,
            Command::Sandbox(args) => sandbox_server::run(args).await,
            Command::Report(args) => operator::report(args).await,
            Command::Inspect(args) => operator::inspect(args).await,
            Command::Holds(args) => holds::run(args).await,
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
