//! `capguard lab`: the recovery lab. One seeded population, several retry strategies side by
//! side, each played through the sandbox and the real local stack with time compressed; one
//! table of how many capped sends each recovered, at what cost in wasted retries and how fast.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, TimeDelta, Utc};
use clap::Args;
use futures::StreamExt;
use sandbox::CapModel;
use serde::{Deserialize, Serialize};
use shared::domain::engagement::Tier;
use shared::domain::ladder::Ladder;
use shared::domain::lifecycle::Phase;
use shared::domain::policy::{Policy, QuietHours, country_offset};
use shared::domain::rules::region_of;
use shared::domain::verdict::{FinalReason, Rules};
use shared::report::{CapHistory, cap_history, capped};
use shared::store::SendRecord;

use crate::demo::parse_history;
use crate::simulation::{Simulation, play};

/// Compares retry strategies on one simulated population.
#[derive(Debug, Args)]
pub struct LabArgs {
    /// How many recipients each run has.
    #[arg(long, default_value_t = 300)]
    recipients: usize,
    /// The first seed.
    #[arg(long, default_value_t = 11)]
    seed: u64,
    /// How many seeds to run, from --seed on; the table shows their mean and spread.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=50))]
    seeds: u64,
    /// The strategies to compare (presets: seed, meta, wapisnap, wati, interakt, immediate,
    /// capguard, capguard-ladder); all of them when not given.
    #[arg(long, value_delimiter = ',')]
    strategies: Vec<String>,
    /// A strategy of your own, as NAME=DELAYS (say `weekly=24h,7d`); may be given again.
    #[arg(long = "ladder", value_name = "NAME=DELAYS")]
    ladders: Vec<String>,
    /// capguard's default policy on a ladder of your own, as NAME=DELAYS; may be given again.
    #[arg(long = "policy", value_name = "NAME=DELAYS")]
    policies: Vec<String>,
    /// The sandbox's cap models to run each seed under (default, strict, loose).
    #[arg(long, value_delimiter = ',', default_value = "default")]
    cap_models: Vec<CapModel>,
    /// How many times faster than the wall time runs (21600: six hours a second). Faster
    /// compresses the work of a burst of retries into simulated hours, and the runs drift apart.
    #[arg(long, default_value_t = 21_600.0)]
    time_scale: f64,
    /// Give up on a run after this many wall seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Write every run's row as JSON to this file (`-` for standard output).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write every run's row as CSV to this file (`-` for standard output).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Draw the cumulative recoveries over simulated time, one line per strategy, as SVG.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Before each run's campaign, a utility message to the same recipients this long before it,
    /// for each delay given (`40d,7d`), so that the engagement tiers mean something; `none` by
    /// default: recipients capguard has never seen, all `new`.
    #[arg(long, default_value = "none")]
    history: String,
}

/// A retry strategy: a name and the rules it runs with.
#[derive(Debug, Clone)]
pub struct Strategy {
    pub name: String,
    pub rules: Rules,
}

/// The peers' calendars, `immediate` for contrast, capguard's default policy, and capguard's
/// default ladder with the policy off, to show what the policy adds to it.
pub const PRESETS: [(&str, &str); 8] = [
    ("seed", "12h,24h,48h"),
    ("meta", "24h,48h,96h"),
    ("wapisnap", "24h,48h,72h"),
    ("wati", "24h,24h,24h,24h,24h,24h,24h"),
    ("interakt", "24h,24h,24h"),
    ("immediate", "1m,1m,1m"),
    ("capguard", ""),
    ("capguard-ladder", ""),
];

/// The strategy a preset names. `immediate` is the one ladder under the minimum step: the lab
/// runs it to show what not to do, and nothing else accepts it.
pub fn preset(name: &str) -> anyhow::Result<Strategy> {
    let Some((_, delays)) = PRESETS.iter().find(|(preset, _)| *preset == name) else {
        let names: Vec<&str> = PRESETS.iter().map(|(name, _)| *name).collect();
        bail!("unknown strategy {name:?}: one of {}, or --ladder/--policy NAME=DELAYS", names.join(", "));
    };
    // A peer's calendar is the bare ladder: the same offsets for every recipient.
    let calendar = |ladder| Rules { ladder, policy: Policy::off(), ..Rules::default() };
    let rules = match (name, *delays) {
        ("capguard", _) => Rules::default(),
        ("capguard-ladder", _) => calendar(Ladder::default()),
        ("immediate", delays) => calendar(Ladder::parse_with_min_step(delays, TimeDelta::seconds(1))?),
        (_, delays) => calendar(delays.parse()?),
    };
    Ok(Strategy { name: name.to_owned(), rules })
}

/// A strategy of the user's, as `NAME=DELAYS`, held to the usual minimum step: a bare calendar,
/// or with capguard's default `policy` on top.
pub fn custom(text: &str, policy: Policy) -> anyhow::Result<Strategy> {
    let flag = if policy == Policy::off() { "--ladder" } else { "--policy" };
    let (name, delays) = text.split_once('=').with_context(|| format!("{flag} {text:?}: expected NAME=DELAYS"))?;
    anyhow::ensure!(!name.trim().is_empty(), "{flag} {text:?}: the name is empty");
    let ladder: Ladder = delays.parse().with_context(|| format!("{flag} {text:?}"))?;
    Ok(Strategy { name: name.trim().to_owned(), rules: Rules { ladder, policy, ..Rules::default() } })
}

/// One run: a strategy on one seed under one cap model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub strategy: String,
    pub ladder: String,
    pub cap_model: String,
    pub seed: u64,
    pub recipients: usize,
    /// Sends the per-user cap refused at least once, in a region where it can be recovered.
    pub capped: u64,
    /// Of those, the ones delivered on a retry.
    pub recovered: u64,
    pub recovered_retry_1: u64,
    pub recovered_retry_2: u64,
    pub recovered_retry_3: u64,
    /// Delivered on the fourth retry or later.
    pub recovered_later: u64,
    /// Recovered as a share of capped.
    pub recovered_share: Option<f64>,
    /// Capped sends that ran out of retries.
    pub exhausted: u64,
    /// Retries sent (attempts after the first, of capped sends).
    pub retries: u64,
    /// Retries the cap refused again.
    pub wasted: u64,
    /// Retries sent in the recipient's night (21:00 to 09:00 local, by the number's country).
    pub night_retries: u64,
    pub retries_per_recovery: Option<f64>,
    /// Retries the cap refused again, per capped send recovered.
    pub wasted_per_recovery: Option<f64>,
    /// From the first cap to the delivery, in simulated hours.
    pub median_hours_to_recovery: Option<f64>,
    pub p90_hours_to_recovery: Option<f64>,
    /// Sends still unfinished when the run stopped (0 unless it timed out).
    pub unfinished: u64,
    /// The sends, the capped and the recovered by the recipient's engagement tier at the first
    /// attempt.
    pub sends_engaged: u64,
    pub capped_engaged: u64,
    pub recovered_engaged: u64,
    pub sends_dormant: u64,
    pub capped_dormant: u64,
    pub recovered_dormant: u64,
    pub sends_new: u64,
    pub capped_new: u64,
    pub recovered_new: u64,
}

/// One engagement tier's part of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TierRow {
    pub sends: u64,
    pub capped: u64,
    pub recovered: u64,
}

impl Row {
    /// What became of `tier`'s recipients.
    pub fn tier(&self, tier: Tier) -> TierRow {
        let (sends, capped, recovered) = match tier {
            Tier::Engaged => (self.sends_engaged, self.capped_engaged, self.recovered_engaged),
            Tier::Dormant => (self.sends_dormant, self.capped_dormant, self.recovered_dormant),
            Tier::New => (self.sends_new, self.capped_new, self.recovered_new),
        };
        TierRow { sends, capped, recovered }
    }

    fn tier_mut(&mut self, tier: Tier) -> [&mut u64; 3] {
        match tier {
            Tier::Engaged => [&mut self.sends_engaged, &mut self.capped_engaged, &mut self.recovered_engaged],
            Tier::Dormant => [&mut self.sends_dormant, &mut self.capped_dormant, &mut self.recovered_dormant],
            Tier::New => [&mut self.sends_new, &mut self.capped_new, &mut self.recovered_new],
        }
    }
}

/// A run's row and, for the chart, when (hours after the campaign was sent) each recovery came.
#[derive(Debug, Clone)]
pub struct Run {
    pub row: Row,
    pub recoveries: Vec<f64>,
}

/// Measures a finished campaign's sends.
pub fn measure(
    strategy: &Strategy,
    cap_model: CapModel,
    seed: u64,
    origin: DateTime<Utc>,
    sends: &[SendRecord],
) -> Run {
    let hours = |delta: TimeDelta| delta.num_milliseconds() as f64 / 3_600_000.0;
    let mut row = Row {
        strategy: strategy.name.clone(),
        ladder: strategy.rules.ladder.to_string(),
        cap_model: cap_model.to_string(),
        seed,
        recipients: sends.len(),
        capped: 0,
        recovered: 0,
        recovered_retry_1: 0,
        recovered_retry_2: 0,
        recovered_retry_3: 0,
        recovered_later: 0,
        recovered_share: None,
        exhausted: 0,
        retries: 0,
        wasted: 0,
        night_retries: 0,
        retries_per_recovery: None,
        wasted_per_recovery: None,
        median_hours_to_recovery: None,
        p90_hours_to_recovery: None,
        unfinished: 0,
        sends_engaged: 0,
        capped_engaged: 0,
        recovered_engaged: 0,
        sends_dormant: 0,
        capped_dormant: 0,
        recovered_dormant: 0,
        sends_new: 0,
        capped_new: 0,
        recovered_new: 0,
    };
    let mut to_recovery = Vec::new();
    let mut recoveries = Vec::new();
    for send in sends {
        if !send.life.phase.is_terminal() {
            row.unfinished += 1;
        }
        if let Some(tier) = send.tier {
            *row.tier_mut(tier)[0] += 1;
        }
        let paused = send.life.phase == (Phase::Final { reason: FinalReason::MarketingPausedRegion });
        if !send.attempts.iter().any(capped) || paused {
            continue;
        }
        row.capped += 1;
        let recovered = matches!(send.life.phase, Phase::Succeeded { .. }) && send.life.slot.attempt > 1;
        if let Some(tier) = send.tier {
            let [_, tier_capped, tier_recovered] = row.tier_mut(tier);
            *tier_capped += 1;
            *tier_recovered += u64::from(recovered);
        }
        let offset = region_of(&send.recipient).and_then(|region| country_offset(&region));
        let retries = send.attempts.iter().filter(|a| a.slot.attempt > 1);
        for retry in retries {
            row.retries += 1;
            if capped(retry) {
                row.wasted += 1;
            }
            if offset.is_some_and(|offset| QuietHours::default().covers(retry.claimed_at, offset)) {
                row.night_retries += 1;
            }
        }
        match send.life.phase {
            Phase::Succeeded { .. } if send.life.slot.attempt > 1 => {
                row.recovered += 1;
                match send.life.slot.attempt - 1 {
                    1 => row.recovered_retry_1 += 1,
                    2 => row.recovered_retry_2 += 1,
                    3 => row.recovered_retry_3 += 1,
                    _ => row.recovered_later += 1,
                }
                if let Some(CapHistory { capped_at, recovered_at: Some(delivered) }) = cap_history(send) {
                    to_recovery.push(hours(delivered - capped_at));
                    recoveries.push(hours(delivered - origin));
                }
            }
            Phase::Final { reason: FinalReason::Exhausted } => row.exhausted += 1,
            _ => {}
        }
    }
    if row.capped > 0 {
        row.recovered_share = Some(row.recovered as f64 / row.capped as f64);
    }
    if row.recovered > 0 {
        row.retries_per_recovery = Some(row.retries as f64 / row.recovered as f64);
        row.wasted_per_recovery = Some(row.wasted as f64 / row.recovered as f64);
    }
    to_recovery.sort_by(f64::total_cmp);
    recoveries.sort_by(f64::total_cmp);
    row.median_hours_to_recovery = quantile(&to_recovery, 0.5);
    row.p90_hours_to_recovery = quantile(&to_recovery, 0.9);
    Run { row, recoveries }
}

/// The `q` quantile of sorted `values` (nearest rank).
fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

/// How long (wall time) each run's clock runs at a simulated minute a second while its campaign's
/// first sends go out: time enough for every run of a batch, so that the strategies of one seed
/// start from the same first outcomes.
pub const LAB_WARM_UP: Duration = Duration::from_secs(5);

/// The simulated instant every run's campaign is sent at, so that runs compare: a Monday, 09:00 UTC.
pub fn lab_start() -> DateTime<Utc> {
    DateTime::from_timestamp(1_780_304_400, 0).expect("a valid instant")
}

/// Everything the lab was asked to run.
pub struct Plan {
    pub recipients: usize,
    pub seeds: Vec<u64>,
    pub strategies: Vec<Strategy>,
    pub cap_models: Vec<CapModel>,
    pub time_scale: f64,
    pub timeout: Duration,
    /// The recipients' history: a utility campaign this long before each run's, for each.
    pub history: Vec<TimeDelta>,
}

/// How many runs go at once: a run mostly waits for its simulated days to pass, but each is a
/// sandbox and a stack, and a machine too busy makes their timers late.
pub const RUNS_AT_ONCE: usize = 24;

/// Runs every strategy on every seed under every cap model, [`RUNS_AT_ONCE`] at a time, in order.
pub async fn run_plan(plan: &Plan, mut done: impl FnMut(&Run)) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for &cap_model in &plan.cap_models {
        let pairs = plan.seeds.iter().flat_map(|&seed| plan.strategies.iter().map(move |strategy| (seed, strategy)));
        let batch = pairs.map(|(seed, strategy)| async move {
            let simulation = Simulation {
                campaign: format!("lab-{}-{seed}", strategy.name),
                recipients: plan.recipients,
                seed,
                cap_model,
                rules: strategy.rules.clone(),
                time_scale: plan.time_scale,
                start: Some(lab_start()),
                warm_up: Some(LAB_WARM_UP),
                timeout: plan.timeout,
                data: None,
                history: plan.history.clone(),
                scenario: Default::default(),
                opt_ins: None,
            };
            let played = play(&simulation, |_| {}).await?;
            Ok::<_, anyhow::Error>(measure(strategy, cap_model, seed, played.origin, &played.sends))
        });
        let mut batch = futures::stream::iter(batch).buffered(RUNS_AT_ONCE);
        while let Some(run) = batch.next().await {
            let run = run?;
            done(&run);
            runs.push(run);
        }
    }
    Ok(runs)
}

pub async fn run(args: LabArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.recipients > 0, "--recipients must be at least 1");
    let mut strategies = Vec::new();
    if args.strategies.is_empty() && args.ladders.is_empty() && args.policies.is_empty() {
        for (name, _) in PRESETS {
            strategies.push(preset(name)?);
        }
    }
    for name in &args.strategies {
        strategies.push(preset(name.trim())?);
    }
    for ladder in &args.ladders {
        strategies.push(custom(ladder, Policy::off())?);
    }
    for ladder in &args.policies {
        strategies.push(custom(ladder, Policy::default())?);
    }
    let plan = Plan {
        recipients: args.recipients,
        seeds: (args.seed..args.seed + args.seeds).collect(),
        strategies,
        cap_models: args.cap_models.clone(),
        time_scale: args.time_scale,
        timeout: Duration::from_secs(args.timeout_secs),
        history: parse_history(&args.history)?,
    };
    let table_to_stdout = !(is_stdout(&args.json) || is_stdout(&args.csv));
    if table_to_stdout {
        println!(
            "capguard lab: {} recipients, seeds {}, {} strategies, cap models {}, time x{}",
            plan.recipients,
            seeds_text(&plan.seeds),
            plan.strategies.len(),
            plan.cap_models.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", "),
            plan.time_scale
        );
    }
    let runs = run_plan(&plan, |run| {
        if table_to_stdout {
            let row = &run.row;
            println!(
                "  {} on seed {} ({}): {} of {} capped recovered",
                row.strategy, row.seed, row.cap_model, row.recovered, row.capped
            );
        }
    })
    .await?;
    let unfinished: u64 = runs.iter().map(|r| r.row.unfinished).sum();
    if table_to_stdout {
        print!("{}", table(&runs));
        if !plan.history.is_empty() {
            print!("{}", tier_table(&runs));
        }
    }
    if let Some(path) = &args.json {
        let rows: Vec<&Row> = runs.iter().map(|r| &r.row).collect();
        write_out(path, &serde_json::to_vec_pretty(&rows)?)?;
    }
    if let Some(path) = &args.csv {
        write_out(path, &csv_rows(&runs)?)?;
    }
    if let Some(path) = &args.chart {
        chart(&runs, path)?;
        if table_to_stdout {
            println!("chart written to {}", path.display());
        }
    }
    if unfinished > 0 {
        bail!("{unfinished} sends were still unfinished when their runs timed out (--timeout-secs)");
    }
    Ok(())
}

fn is_stdout(path: &Option<PathBuf>) -> bool {
    path.as_deref().is_some_and(|p| p == Path::new("-"))
}

fn write_out(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if path == Path::new("-") {
        use std::io::Write as _;
        std::io::stdout().write_all(bytes)?;
        return Ok(());
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn seeds_text(seeds: &[u64]) -> String {
    match seeds {
        [one] => one.to_string(),
        [first, .., last] => format!("{first}-{last}"),
        [] => String::new(),
    }
}

/// Every run's row as CSV.
pub fn csv_rows(runs: &[Run]) -> anyhow::Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for run in runs {
        writer.serialize(&run.row)?;
    }
    writer.into_inner().context("finishing the CSV")
}

/// The mean, and the spread when there are several.
fn mean_spread(values: &[f64], decimals: usize, scale: f64) -> String {
    if values.is_empty() {
        return "-".to_owned();
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64 * scale;
    if values.len() == 1 {
        return format!("{mean:.decimals$}");
    }
    let (low, high) = values.iter().fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
    format!("{mean:.decimals$} ({:.decimals$}-{:.decimals$})", low * scale, high * scale)
}

/// The runs' rows by cap model, then by strategy, each in the order first run.
fn by_model(runs: &[Run]) -> BTreeMap<&str, Vec<(&str, Vec<&Row>)>> {
    let mut groups: BTreeMap<&str, Vec<(&str, Vec<&Row>)>> = BTreeMap::new();
    for run in runs {
        let rows = groups.entry(&run.row.cap_model).or_default();
        match rows.iter_mut().find(|(name, _)| *name == run.row.strategy) {
            Some((_, rows)) => rows.push(&run.row),
            None => rows.push((&run.row.strategy, vec![&run.row])),
        }
    }
    groups
}

/// One table per cap model: each strategy's mean over the seeds, with the spread.
pub fn table(runs: &[Run]) -> String {
    let mut out = String::new();
    for (cap_model, strategies) in by_model(runs) {
        out.push_str(&format!("\ncap model {cap_model}\n"));
        out.push_str("| strategy | ladder | capped | recovered (by retry 1/2/3/later) | recovered share | exhausted | wasted retries | retries per recovery | wasted per recovery | night retries | median h to recovery | p90 h |\n");
        out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (strategy, rows) in strategies {
            let of = |f: fn(&Row) -> f64| rows.iter().map(|r| f(r)).collect::<Vec<f64>>();
            let some = |f: fn(&Row) -> Option<f64>| rows.iter().filter_map(|r| f(r)).collect::<Vec<f64>>();
            let by_retry = [
                of(|r| r.recovered_retry_1 as f64),
                of(|r| r.recovered_retry_2 as f64),
                of(|r| r.recovered_retry_3 as f64),
                of(|r| r.recovered_later as f64),
            ]
            .map(|v| format!("{:.0}", v.iter().sum::<f64>() / v.len() as f64))
            .join("/");
            out.push_str(&format!(
                "| {strategy} | {} | {} | {} ({by_retry}) | {} % | {} | {} | {} | {} | {} | {} | {} |\n",
                rows[0].ladder,
                mean_spread(&of(|r| r.capped as f64), 1, 1.0),
                mean_spread(&of(|r| r.recovered as f64), 1, 1.0),
                mean_spread(&some(|r| r.recovered_share), 1, 100.0),
                mean_spread(&of(|r| r.exhausted as f64), 1, 1.0),
                mean_spread(&of(|r| r.wasted as f64), 1, 1.0),
                mean_spread(&some(|r| r.retries_per_recovery), 2, 1.0),
                mean_spread(&some(|r| r.wasted_per_recovery), 2, 1.0),
                mean_spread(&of(|r| r.night_retries as f64), 1, 1.0),
                mean_spread(&some(|r| r.median_hours_to_recovery), 0, 1.0),
                mean_spread(&some(|r| r.p90_hours_to_recovery), 0, 1.0),
            ));
        }
    }
    out
}

/// One table per cap model: each strategy's capped and recovered by engagement tier, summed over
/// the seeds.
pub fn tier_table(runs: &[Run]) -> String {
    let mut out = String::new();
    for (cap_model, strategies) in by_model(runs) {
        out.push_str(&format!(
            "\ncap model {cap_model}, by engagement tier (all seeds): recovered of capped, of the tier's sends\n"
        ));
        out.push_str("| strategy | engaged | dormant | new |\n|---|---|---|---|\n");
        for (strategy, rows) in strategies {
            let cells = Tier::ALL.map(|tier| {
                let TierRow { sends, capped, recovered } =
                    rows.iter().map(|r| r.tier(tier)).fold(TierRow::default(), |sum, part| TierRow {
                        sends: sum.sends + part.sends,
                        capped: sum.capped + part.capped,
                        recovered: sum.recovered + part.recovered,
                    });
                format!("{recovered} of {capped}, of {sends}")
            });
            out.push_str(&format!("| {strategy} | {} |\n", cells.join(" | ")));
        }
    }
    out
}

/// Cumulative recoveries over simulated time, one line per strategy (summed over the seeds of
/// the first cap model run), as SVG.
pub fn chart(runs: &[Run], path: &Path) -> anyhow::Result<()> {
    let Some(model) = runs.first().map(|r| r.row.cap_model.clone()) else { bail!("no runs to draw") };
    let mut series: Vec<(String, Vec<f64>)> = Vec::new();
    for run in runs.iter().filter(|r| r.row.cap_model == model) {
        match series.iter_mut().find(|(name, _)| *name == run.row.strategy) {
            Some((_, times)) => times.extend(&run.recoveries),
            None => series.push((run.row.strategy.clone(), run.recoveries.clone())),
        }
    }
    let caption = format!("capped sends recovered over time (cap model {model})");
    crate::chart::cumulative(&mut series, &caption, "recovered (all seeds)", path)
}
