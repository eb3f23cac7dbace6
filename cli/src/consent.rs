//! `capguard consent`: records a recipient's opt-in (where they agreed, when, a note) in their
//! consent history, or prints that history, on the local store, through the `capguard serve` that
//! holds it open, or with `--dynamodb` on a deployed table. With `REQUIRE_OPT_IN` on, marketing
//! goes only to recipients with an opt-in. An opt-out is never recorded by hand: it comes from the
//! recipient (a stop), and only their resume lifts it.

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde_json::json;
use shared::clock::{Clock, SystemClock};
use shared::domain::consent::{ConsentEvent, OptIn};
use shared::domain::rules::e164_digits;
use shared::privacy::mask_number;
use shared::store::Recipients;
use shared::usecase::consent::record_opt_in;

use crate::stores::{Store, StoreArgs};
use crate::views::consent_text;

/// Records a recipient's opt-in, or prints their consent history.
#[derive(Debug, Args)]
pub struct ConsentArgs {
    #[command(subcommand)]
    action: ConsentAction,
}

#[derive(Debug, Subcommand)]
enum ConsentAction {
    /// Records an opt-in.
    Add {
        #[command(flatten)]
        who: Who,
        /// Where they agreed: website_form, qr_code, checkout, support_chat, or another name of
        /// lowercase letters, digits and _.
        #[arg(long)]
        source: String,
        /// When they agreed (RFC 3339); now if not given.
        #[arg(long)]
        at: Option<DateTime<Utc>>,
        /// Free text kept with it: the form's version, the wording shown (up to 200 characters).
        #[arg(long)]
        note: Option<String>,
    },
    /// Prints the recipient's opt-ins, opt-outs and resumes, oldest first.
    Show {
        #[command(flatten)]
        who: Who,
        #[arg(long)]
        json: bool,
    },
}

/// The recipient, and the store that knows them.
#[derive(Debug, Args)]
struct Who {
    /// The number as people write it (`+44 7400 100127`; without `+` given --default-country).
    number: String,
    /// The country (ISO 3166, `GB`) of a number written without `+` and a country code.
    #[arg(long)]
    default_country: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn run(args: ConsentArgs) -> anyhow::Result<()> {
    let now = SystemClock.now();
    let (ConsentAction::Add { who, .. } | ConsentAction::Show { who, .. }) = &args.action;
    let number = e164_digits(&who.number, who.default_country.as_deref())
        .map_err(|problem| anyhow::anyhow!("{} {problem}", mask_number(&who.number)))?;
    match &args.action {
        ConsentAction::Add { source, at, note, .. } => {
            let opt_in = OptIn { source: source.clone(), at: *at, note: note.clone() };
            let problems = opt_in.problems(now);
            if !problems.is_empty() {
                bail!("{}", problems.join("; "));
            }
            let added = match who.store.open().await? {
                Store::Embedded(store) => record_opt_in(&store, &number, &opt_in, None, now).await?,
                Store::Dynamo(store) => record_opt_in(&store, &number, &opt_in, None, now).await?,
                Store::Served(serve) => {
                    let body = serde_json::to_value(&opt_in)?;
                    let answer = crate::operator::served_request(
                        &serve.url,
                        &["recipients", &number, "opt-in"],
                        &[],
                        Some(&body),
                    )
                    .await?;
                    serde_json::from_str::<serde_json::Value>(&answer)?["recorded"].as_bool().unwrap_or(false)
                }
            };
            let said = if added { "recorded" } else { "already recorded, nothing added" };
            println!("{said}: {} opted in from {source}", mask_number(&number));
        }
        ConsentAction::Show { json, .. } => {
            let history = match who.store.open().await? {
                Store::Embedded(store) => store.get_recipient(&number).await?.consent,
                Store::Dynamo(store) => store.get_recipient(&number).await?.consent,
                Store::Served(serve) => {
                    let view = serve.get(&["recipients", &number], &[("format", "json")]).await?;
                    let view: serde_json::Value = serde_json::from_str(&view).context("reading serve's view")?;
                    serde_json::from_value(view["consent"].clone()).context("reading serve's consent history")?
                }
            };
            if *json {
                println!("{}", serde_json::to_string_pretty(&json!({ "consent": history }))?);
            } else {
                print!("{}", history_text(&mask_number(&number), &history));
            }
        }
    }
    Ok(())
}

/// A consent history as lines of text.
fn history_text(recipient: &str, history: &[ConsentEvent]) -> String {
    if history.is_empty() {
        return format!("{recipient}: no consent recorded\n");
    }
    history.iter().map(|event| format!("{recipient}: {}\n", consent_text(event))).collect()
}
