//! What the two pipeline benches share: how a send left without a status is told, and the figures
//! they print (the last two lines are sends per second and the count left without a status).

use std::time::Duration;

use sandbox::Stats;
use shared::domain::lifecycle::{Delivery, Phase};
use shared::domain::verdict::FinalReason;
use shared::store::SendRecord;

/// The bench's campaign, and its request's idempotency key.
pub const CAMPAIGN: &str = "pipeline";
/// The sandbox's seed: both benches send to the same recipients.
pub const SEED: u64 = 11;
/// A simulated day per wall second: the retries of capped sends play out in seconds.
pub const SCALE: f64 = 86_400.0;
/// The retry ladder of both benches: its first step (10 simulated days, 10 s of wall time) comes
/// after the first wave has drained, as a real ladder's (12 h or more) comes long after a
/// campaign's dispatch. So the timing measures the pipeline, not the ladder's calendar; the
/// retries still run, out of the timing, before the sends are counted.
pub const LADDER: &str = "10d,11d,12d";

/// Far above what either side can do: this measures capguard, not Meta's 80 messages a second.
pub const UNLIMITED: u32 = 1_000_000;

/// The most updates the sandbox puts in one webhook POST unless `--webhook-batch N` says
/// otherwise: Meta aggregates deliveries under load (up to 1,000 updates a POST), and a campaign
/// of thousands is load. `-- --webhook-batch 1` posts each update on its own, the worst case.
pub const WEBHOOK_BATCH: usize = 100;

/// The `--webhook-batch N` passed to the bench, or [`WEBHOOK_BATCH`].
pub fn webhook_batch() -> anyhow::Result<usize> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|arg| arg == "--webhook-batch") {
        None => Ok(WEBHOOK_BATCH),
        Some(at) => {
            let value = args.get(at + 1).map(String::as_str).unwrap_or_default();
            match value.parse() {
                Ok(batch @ 1..=1000) => Ok(batch),
                _ => anyhow::bail!("--webhook-batch takes 1 to 1000 updates a POST, not {value:?}"),
            }
        }
    }
}

/// 10,000 recipients under `cargo bench` (which passes `--bench`); 200 under `cargo test`, as a
/// smoke test that proves the bench still works.
pub fn recipients() -> usize {
    if std::env::args().any(|arg| arg == "--bench") { 10_000 } else { 200 }
}

/// Sends still claimed or accepted with no status, and those capguard settled itself
/// (`outcome_unknown`, `undelivered`) without ever hearing of their last attempt.
fn left_without_status(sends: &[SendRecord]) -> usize {
    let heard = |send: &SendRecord| {
        send.attempts.last().is_some_and(|a| {
            a.sent_at.is_some() || a.delivered_at.is_some() || a.read_at.is_some() || a.failed_at.is_some()
        })
    };
    sends
        .iter()
        .filter(|send| match send.life.phase {
            Phase::Claimed { .. } | Phase::InFlight { delivery: Delivery::Accepted, .. } => true,
            Phase::Final { reason: FinalReason::OutcomeUnknown | FinalReason::Undelivered } => !heard(send),
            _ => false,
        })
        .count()
}

/// One run's figures.
pub struct Figures {
    recipients: usize,
    /// Messages the sandbox answered with a wamid within the timing.
    accepted: u64,
    /// From the request to the last recipient dispatched.
    dispatched: Duration,
    /// From the request to the last status webhook taken.
    drained: Duration,
    webhooks: u64,
    /// The POSTs that carried them.
    posts: u64,
    /// Webhooks the sandbox gave up on, retries' included.
    abandoned: u64,
    left_without_status: usize,
    /// Sends still waiting (for a retry) when the bench stopped waiting for them.
    unfinished: usize,
}

impl Figures {
    /// A run's figures from its timings, the sandbox's counters once the first wave drained
    /// (`drained`) and once every retry ended (`ended`), and the campaign's sends then.
    pub fn of(
        recipients: usize,
        (dispatched, drained): (Duration, Duration),
        (at_drain, ended): (&Stats, &Stats),
        sends: &[SendRecord],
    ) -> Self {
        Self {
            recipients,
            accepted: at_drain.accepted,
            dispatched,
            drained,
            webhooks: at_drain.statuses_posted.values().sum(),
            posts: at_drain.webhook_posts,
            abandoned: ended.webhooks_abandoned,
            left_without_status: left_without_status(sends),
            unfinished: sends.iter().filter(|send| !send.life.phase.is_terminal()).count(),
        }
    }

    /// Fails the run when the sandbox gave up on a webhook the intake never took, a send was
    /// left without a status, or a send had not finished: then the figures measure a pipeline
    /// that loses or strands work.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.abandoned == 0, "the sandbox gave up on {} webhooks", self.abandoned);
        anyhow::ensure!(self.unfinished == 0, "{} sends had not finished after their retries", self.unfinished);
        anyhow::ensure!(self.left_without_status == 0, "{} sends left without a status", self.left_without_status);
        Ok(())
    }

    pub fn print(&self, title: &str) {
        let per_second = |d: Duration| self.recipients as f64 / d.as_secs_f64();
        println!("{title}: {} recipients, {} accepted by the sandbox", self.recipients, self.accepted);
        println!(
            "  dispatch (record, claim, call, record the wamid): {:.2} s, {:.0} sends/s",
            self.dispatched.as_secs_f64(),
            per_second(self.dispatched)
        );
        println!(
            "  status webhooks taken: {} ({:.0}/s) in {} POSTs; given up by the sandbox: {}",
            self.webhooks,
            self.webhooks as f64 / self.drained.as_secs_f64(),
            self.posts,
            self.abandoned
        );
        println!(
            "  whole pipeline, until every status webhook was taken (dispatch → sandbox → webhook → intake → store): {:.2} s, {:.0} sends/s",
            self.drained.as_secs_f64(),
            per_second(self.drained)
        );
        println!("  sends left without a status once every retry ended: {}", self.left_without_status);
    }
}
