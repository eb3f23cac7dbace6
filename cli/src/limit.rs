//! `capguard limit`: how the limits the account sends under stand: the messaging limit sends are
//! kept to (as configured, or as Meta last reported it), the unique users counted in the moving
//! 24 h and when a full count has room again, each business number's quality rating and each
//! template's status and quality, with their history. On the local store, through a running `capguard serve`, or with
//! `--dynamodb` on a deployed table (`MESSAGING_LIMIT` is then read from the environment, as the
//! functions read it).

use clap::Args;
use shared::clock::{Clock, SystemClock};
use shared::domain::verdict::Rules;
use shared::store::{Limits, Numbers, Templates};
use shared::usecase::limit::view;

use crate::stores::{Store, StoreArgs};

/// Shows the messaging limit, its count and the numbers' quality ratings.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// The view as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn run(args: LimitArgs) -> anyhow::Result<()> {
    let text = match args.store.open().await? {
        Store::Embedded(store) => shown(&store, args.json).await?,
        Store::Dynamo(store) => shown(&store, args.json).await?,
        Store::Served(serve) => serve.get(&["limit"], &[("format", if args.json { "json" } else { "text" })]).await?,
    };
    print!("{}", text.trim_end());
    println!();
    Ok(())
}

async fn shown<S: Limits + Numbers + Templates>(store: &S, json: bool) -> anyhow::Result<String> {
    let limit = view(store, &Rules::from_env()?, SystemClock.now()).await?;
    Ok(if json { serde_json::to_string_pretty(&limit)? } else { limit.text() })
}
