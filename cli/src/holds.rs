//! `capguard holds`: lists the holds on business numbers and templates, or lifts one, on the local
//! store or, with `--dynamodb`, on a deployed table. A running `capguard serve` keeps its data file
//! to itself: use its `GET /holds` and `POST /holds/lift` routes then.

use anyhow::bail;
use clap::{Args, Subcommand};
use shared::clock::{Clock, SystemClock};
use shared::domain::verdict::Rules;
use shared::outcome::Outcomes;
use shared::report::rfc3339;
use shared::store::Holds;
use shared::usecase::Tally;
use shared::usecase::holds::{self, HoldTarget};

use crate::stores::{Store, StoreArgs};

/// Lists the holds (a halted number, a held template), or lifts one.
#[derive(Debug, Args)]
pub struct HoldsArgs {
    #[command(subcommand)]
    action: Option<HoldsAction>,
    /// The list as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Subcommand)]
enum HoldsAction {
    /// Lifts the hold on a number (with --template and --language, on that template): its held
    /// sends go out at their next look, within half an hour.
    Lift {
        phone_number_id: String,
        #[arg(long, requires = "language")]
        template: Option<String>,
        #[arg(long, requires = "template")]
        language: Option<String>,
    },
}

pub async fn run(args: HoldsArgs) -> anyhow::Result<()> {
    match args.store.open().await? {
        Store::Embedded(store) => run_on(&store, &args).await,
        Store::Dynamo(store) => run_on(&store, &args).await,
        Store::Served(serve) => anyhow::bail!(
            "capguard serve at {url} holds the data file open: ask it (GET {url}/holds, POST {url}/holds/lift), or stop it first",
            url = serve.url
        ),
    }
}

async fn run_on<S: Holds>(store: &S, args: &HoldsArgs) -> anyhow::Result<()> {
    let now = SystemClock.now();
    match &args.action {
        None => {
            let rules = Rules::from_env()?;
            let holds = holds::list(store, &rules.holds, now).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&holds)?);
            } else if holds.is_empty() {
                println!("no holds");
            } else {
                for hold in &holds {
                    let what = match (&hold.template, &hold.language) {
                        (Some(name), Some(language)) => {
                            format!("template {name} ({language}) on {}", hold.phone_number_id)
                        }
                        _ => format!("sender {}", hold.phone_number_id),
                    };
                    let flag = if hold.too_old { "  TOO OLD" } else { "" };
                    println!(
                        "{what}: code {}, since {} ({} h), next probe {}, held sends end at {}{flag}\n  lifted by {}",
                        hold.code,
                        rfc3339(hold.since),
                        hold.age_seconds / 3600,
                        rfc3339(hold.next_probe),
                        rfc3339(hold.gives_up_at),
                        hold.lifted_by,
                    );
                }
            }
        }
        Some(HoldsAction::Lift { phone_number_id, template, language }) => {
            let target = HoldTarget {
                phone_number_id: phone_number_id.clone(),
                template: template.clone(),
                language: language.clone(),
            };
            let key = target.key()?;
            if !holds::lift_in(store, &Outcomes::default(), &key, "by_operator", now, &mut Tally::default()).await? {
                bail!("there is no hold on {key}");
            }
            println!("lifted the hold on {key}");
        }
    }
    Ok(())
}
