//! The operator's views: `capguard report` (a campaign's funnel, or its per-recipient CSV) and
//! `capguard inspect` (one send's or one recipient's whole history), on the local store, a
//! deployed table, or through the `capguard serve` that holds the local store open.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use shared::clock::{Clock, SystemClock};
use shared::domain::rules::e164_digits;
use shared::privacy::mask_number;
use shared::report::{CapHistory, cap_history};
use shared::store::{Listings, Recipients, SendId, SendRecord, Sends};

use crate::stores::{Store, StoreArgs};
use crate::views::{self, Format};

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
    let format = match (args.csv, args.json) {
        (true, _) => Format::Csv,
        (false, true) => Format::Json,
        (false, false) => Format::Text,
    };
    let text = match args.store.open().await? {
        Store::Embedded(store) => report_on(&store, &args, format).await?,
        Store::Dynamo(store) => report_on(&store, &args, format).await?,
        Store::Served(serve) => {
            if args.chart.is_some() {
                bail!("--chart reads the data file itself, which {} holds open: stop it first", serve.url);
            }
            let text = serve.get(&["campaigns", &args.campaign, "report"], &[("format", format.as_str())]).await?;
            // Serve's JSON view answers a campaign it has not seen yet with an empty funnel.
            let empty = format == Format::Json
                && serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|funnel| funnel["sends"] == 0);
            if empty {
                bail!("campaign {:?} has no sends in this store", args.campaign);
            }
            text
        }
    };
    print(&text)
}

async fn report_on<S: Listings>(store: &S, args: &ReportArgs, format: Format) -> anyhow::Result<String> {
    let sends = views::campaign_sends(store, &args.campaign).await.context("listing the campaign's sends")?;
    let text = views::campaign_report(&args.campaign, &sends, format)?;
    if let Some(path) = &args.chart {
        recovery_chart(&args.campaign, &sends, path)?;
        eprintln!("chart written to {}", path.display());
    }
    Ok(text)
}

/// Writes a command's output; a reader that went away (`| head`) ends it as an I/O error that
/// `main` takes for success.
fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// What a running `capguard serve` at `base` answers on the view at `path` (its segments), as
/// text. An error never repeats the URL, which may hold a number.
pub(crate) async fn served(base: &str, path: &[&str], query: &[(&str, &str)]) -> anyhow::Result<String> {
    served_request(base, path, query, None).await
}

/// `capguard serve`'s answer to a request at `path`: a GET, or with `body` a POST of that JSON.
pub(crate) async fn served_request(
    base: &str,
    path: &[&str],
    query: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(base).with_context(|| format!("{base:?} is not a URL"))?;
    url.path_segments_mut().map_err(|()| anyhow::anyhow!("{base:?} cannot take a path"))?.extend(path);
    url.query_pairs_mut().extend_pairs(query);
    let client = reqwest::Client::new();
    let request = match body {
        Some(body) => client.post(url).json(body),
        None => client.get(url),
    };
    let response = request
        .send()
        .await
        .map_err(reqwest::Error::without_url)
        .with_context(|| format!("capguard serve at {base} does not answer"))?;
    let status = response.status();
    let body = response.text().await.map_err(reqwest::Error::without_url).context("reading capguard serve's answer")?;
    if !status.is_success() {
        let error = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(body);
        bail!("{error}");
    }
    Ok(body)
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
    let format = if args.json { Format::Json } else { Format::Text };
    let target = Target::of(&args.target)?;
    let text = match args.store.open().await? {
        Store::Embedded(store) => inspect_on(&store, &target, args.campaign.as_deref(), format).await?,
        Store::Dynamo(store) => inspect_on(&store, &target, args.campaign.as_deref(), format).await?,
        Store::Served(serve) => {
            let mut query = vec![("format", format.as_str())];
            if let Some(campaign) = &args.campaign {
                query.push(("campaign", campaign));
            }
            match &target {
                Target::Send(id) => serve.get(&["sends", id.as_str()], &query).await?,
                Target::Recipient(number) => serve.get(&["recipients", number], &query).await?,
            }
        }
    };
    print(&text)
}

/// What `capguard inspect` looks at.
enum Target {
    Send(SendId),
    /// A recipient's number, as digits.
    Recipient(String),
}

impl Target {
    fn of(text: &str) -> anyhow::Result<Self> {
        if let Ok(id) = SendId::try_from(text.to_owned()) {
            return Ok(Self::Send(id));
        }
        match e164_digits(text, None) {
            Ok(number) => Ok(Self::Recipient(number)),
            Err(problem) => bail!("{} is neither a send id nor a +number: it {problem}", mask_number(text)),
        }
    }
}

async fn inspect_on<S: Sends + Recipients + Listings>(
    store: &S,
    target: &Target,
    campaign: Option<&str>,
    format: Format,
) -> anyhow::Result<String> {
    match target {
        Target::Send(id) => {
            let send = store.get_send(id).await?.with_context(|| format!("no send {id} in this store"))?;
            Ok(match format {
                Format::Json => serde_json::to_string_pretty(&views::send(&send))? + "\n",
                Format::Text | Format::Csv => views::send_text(&send),
            })
        }
        Target::Recipient(number) => views::recipient_report(store, number, campaign, SystemClock.now(), format).await,
    }
}
