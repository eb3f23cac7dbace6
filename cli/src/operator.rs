//! The operator's views: `capguard report` (a campaign's funnel, or its per-recipient CSV) and
//! `capguard inspect` (one send's or one recipient's whole history), on the local store or a
//! deployed table.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use shared::clock::{Clock, SystemClock};
use shared::report::{CapHistory, Funnel, cap_history, write_csv};
use shared::store::{Listings, Recipients, SendId, SendRecord, Sends};

use crate::stores::{Store, StoreArgs};
use crate::views;

/// Prints a campaign's funnel, or with --csv one row per recipient.
#[derive(Debug, Args)]
pub struct ReportArgs {
    #[arg(long)]
    campaign: String,
    /// One CSV row per recipient (masked): send id, campaign, template, tier, attempts, state,
    /// reason, the attempt that recovered it, last error, when it was recorded and last changed,
    /// each attempt's wamid and when each went out.
    #[arg(long)]
    csv: bool,
    /// The funnel as JSON.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Also draw the campaign's recovery curve (its sends capped and recovered over time since
    /// its first send) to this file, as SVG.
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

/// Prints one send's history (by send id) or one recipient's state and sends (by +number).
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A send id (32 hex digits) or a recipient's number (+ and digits).
    target: String,
    /// The campaign to look for the recipient's sends in (a recipient's sends are listed by campaign).
    #[arg(long)]
    campaign: Option<String>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
}

pub async fn report(args: ReportArgs) -> anyhow::Result<()> {
    match args.store.open().await? {
        Store::Embedded(store) => report_on(&store, &args).await,
        Store::Dynamo(store) => report_on(&store, &args).await,
    }
}

async fn report_on<S: Listings>(store: &S, args: &ReportArgs) -> anyhow::Result<()> {
    let sends = views::campaign_sends(store, &args.campaign).await.context("listing the campaign's sends")?;
    if sends.is_empty() {
        bail!("campaign {:?} has no sends in this store", args.campaign);
    }
    let mut out = std::io::stdout().lock();
    if args.csv {
        write_csv(&sends, &mut out)?;
    } else if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&Funnel::of(&sends))?)?;
    } else {
        writeln!(out, "campaign {}:", args.campaign)?;
        write!(out, "{}", Funnel::of(&sends).render())?;
    }
    out.flush()?;
    if let Some(path) = &args.chart {
        recovery_chart(&args.campaign, &sends, path)?;
        eprintln!("chart written to {}", path.display());
    }
    Ok(())
}

/// The campaign's caps and recoveries, each counted up over the hours since its first send.
fn recovery_chart(campaign: &str, sends: &[SendRecord], path: &Path) -> anyhow::Result<()> {
    let first_send = sends.iter().flat_map(|send| send.attempts.iter().map(|a| a.claimed_at)).min();
    let Some(origin) = first_send else { bail!("campaign {campaign:?} has sent nothing yet: no curve to draw") };
    let hours = |at: DateTime<Utc>| (at - origin).num_milliseconds() as f64 / 3_600_000.0;
    let histories: Vec<CapHistory> = sends.iter().filter_map(cap_history).collect();
    let mut series = vec![
        ("capped".to_owned(), histories.iter().map(|h| hours(h.capped_at)).collect()),
        ("recovered".to_owned(), histories.iter().filter_map(|h| h.recovered_at.map(hours)).collect()),
    ];
    let caption = format!("campaign {campaign}: capped sends and their recoveries");
    crate::chart::cumulative(&mut series, &caption, "sends", path)
}

pub async fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    match args.store.open().await? {
        Store::Embedded(store) => inspect_on(&store, &args).await,
        Store::Dynamo(store) => inspect_on(&store, &args).await,
    }
}

async fn inspect_on<S: Sends + Recipients + Listings>(store: &S, args: &InspectArgs) -> anyhow::Result<()> {
    if let Ok(id) = SendId::try_from(args.target.clone()) {
        let send = store.get_send(&id).await?.with_context(|| format!("no send {id} in this store"))?;
        let mut out = std::io::stdout().lock();
        if args.json {
            writeln!(out, "{}", serde_json::to_string_pretty(&views::send(&send))?)?;
        } else {
            write!(out, "{}", views::send_text(&send))?;
        }
        out.flush()?;
        return Ok(());
    }
    let number = args.target.trim().trim_start_matches('+');
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        bail!("{:?} is neither a send id nor a +number", args.target);
    }
    let recipient = store.get_recipient(number).await?;
    let waiting = store.waiting_for(number).await?;
    let now = SystemClock.now();
    let sends: Vec<SendRecord> = match &args.campaign {
        Some(campaign) => {
            views::campaign_sends(store, campaign).await?.into_iter().filter(|s| s.recipient == number).collect()
        }
        None => Vec::new(),
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut view = views::recipient(&recipient, &waiting, now);
        view["sends"] = sends.iter().map(views::send).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&view)?)?;
    } else {
        write!(out, "{}", views::recipient_text(&recipient, &waiting, now))?;
        for send in &sends {
            write!(out, "{}", views::send_text(send))?;
        }
    }
    out.flush()?;
    Ok(())
}
