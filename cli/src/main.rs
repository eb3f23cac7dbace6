//! `capguard`: the local stack and the operator's tool.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use anyhow::Context;
use capguard::{consent, demo, holds, lab, limit, operator, sandbox_server, send, serve, webhook};
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
    /// How logs are written to standard error: `text` (coloured only on a terminal) or `json`,
    /// one object per line. `RUST_LOG` sets how much (warnings and errors by default).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    Demo(demo::DemoArgs),
    /// The recovery lab: retry strategies side by side on one simulated population.
    Lab(lab::LabArgs),
    Serve(Box<serve::ServeArgs>),
    Send(send::SendArgs),
    Sandbox(sandbox_server::SandboxArgs),
    Report(operator::ReportArgs),
    Inspect(operator::InspectArgs),
    Holds(holds::HoldsArgs),
    Consent(consent::ConsentArgs),
    Limit(limit::LimitArgs),
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
        Err(e) => {
            // The whole of clap's message: what is wrong, and the usage.
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    let outcome = match cli.command {
        Command::Webhook(args) => webhook::run(args),
        command => run_async(command, cli.log_format),
    };
    let _ = std::io::stdout().flush();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of the output went away (`capguard report --csv | head`): nothing more to
        // say to anyone.
        Err(e) if reader_gone(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Whether `error` is a write to a pipe whose reader has closed it.
fn reader_gone(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run_async(command: Command, log_format: LogFormat) -> anyhow::Result<()> {
    init_logs(log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        match command {
            Command::Demo(args) => demo::run(args).await,
            Command::Lab(args) => lab::run(args).await,
            Command::Serve(args) => serve::run(*args).await,
            Command::Send(args) => send::run(args).await,
            Command::Sandbox(args) => sandbox_server::run(args).await,
            Command::Report(args) => operator::report(args).await,
            Command::Inspect(args) => operator::inspect(args).await,
            Command::Holds(args) => holds::run(args).await,
            Command::Limit(args) => limit::run(args).await,
            Command::Consent(args) => consent::run(args).await,
            Command::Webhook(_) => unreachable!("handled without a runtime"),
        }
    })
}

/// Logs go to stderr, warnings and errors only unless `RUST_LOG` asks for more; colours only on a
/// terminal.
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => logs.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_pipe_is_told_from_other_failures() {
        let closed = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe)).context("printing");
        assert!(reader_gone(&closed));
        let full = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert!(!reader_gone(&full) && !reader_gone(&anyhow::anyhow!("campaign \"x\" has no sends")));
    }
}
