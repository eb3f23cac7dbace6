//! `capguard`: the local stack and the operator's tool.

mod webhook;

use std::process::ExitCode;

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
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => usage_error(&format!("error: {e:#}")),
    }
}

/// Exit 2 with the message's first line on stderr.
fn usage_error(message: &str) -> ExitCode {
    eprintln!("{}", message.lines().find(|l| !l.trim().is_empty()).unwrap_or("error"));
    ExitCode::from(2)
}
