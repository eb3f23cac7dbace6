//! Sweep: the backstop that makes every send reach a final state on its own.
//!
//! Timers and webhooks are prompts; the store is the truth. Every unfinished send carries its due
//! time, and a sweep (a recurring schedule on AWS, a periodic task in `capguard serve`) lists the
//! sends whose due time passed more than a grace ago, reads each, and drives it on through the
//! same path a timer takes ([`drive`]): a waiting send is claimed and sent, a claimed one whose
//! outcome stayed unknown is settled, a message not yet delivered is awaited until its
//! time-to-live ends, and one never reported on by then is given up. A sweep racing a
//! timer, another sweep or a webhook is harmless: the claim and the conditional writes let one of
//! them act. A send found overdue means its prompt was lost (a failed timer, a crash, an
//! invocation that failed for good), so each one is counted for an alarm. Each sweep also counts
//! the holds in place (gauges for the alarms on halted numbers and old holds).

use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use super::retry::{RetryOutcome, Skip, drive};
use super::{Deps, Tally, UseCaseError};
use super::{holds, quality};
use crate::cloud::CloudApi;
use crate::domain::lifecycle::Phase;
use crate::schedule::RetryScheduler;
use crate::store::{SendId, SendStore};

/// How many overdue sends one sweep drives at once.
pub const PARALLELISM: usize = 8;

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Sends the listings gave as overdue.
    pub listed: usize,
    /// Of those, the ones found overdue and moved on.
    pub moved: usize,
    /// Of those, the ones that could not be moved on (a port failed); the next sweep tries again.
    pub failed: usize,
    /// Listed, but left for the next sweep because the time budget ran out.
    pub left: usize,
    pub tally: Tally,
}

/// What sweeping one send came to.
enum Swept {
    Moved(Tally),
    NotOverdue,
    Failed,
    Left,
}

/// Lists the overdue sends and drives each on, listing again while a full listing moved some
/// (a backlog after an outage drains at once, not a listing per interval), and starting no new
/// send once `budget` of wall time has passed (a Lambda invocation must end before its timeout,
/// or a send it claimed would be settled as unknown though never sent).
pub async fn sweep<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    budget: Duration,
) -> Result<SweepReport, UseCaseError> {
    let started = Instant::now();
    let mut report = SweepReport::default();
    loop {
        let before = deps.clock.now() - deps.sending.sweep_grace;
        let overdue = deps.store.overdue(before, deps.sending.sweep_limit).await?;
        let full = overdue.len() >= deps.sending.sweep_limit as usize;
        report.listed += overdue.len();
        let moved_before = report.moved;
        let mut results = futures::stream::iter(overdue)
            .map(|id| async move {
                if started.elapsed() >= budget {
                    return Swept::Left;
                }
                sweep_one(deps, &id).await
            })
            .buffer_unordered(PARALLELISM);
        while let Some(swept) = results.next().await {
            match swept {
                Swept::Moved(tally) => {
                    report.moved += 1;
                    report.tally.merge(tally);
                }
                Swept::NotOverdue => {}
                Swept::Failed => report.failed += 1,
                Swept::Left => report.left += 1,
            }
        }
        if !full || report.moved == moved_before || started.elapsed() >= budget {
            break;
        }
    }
    // How the holds and the numbers' ratings stand, for the alarms that stay raised meanwhile.
    if let Err(error) = holds::survey(deps, &mut report.tally).await {
        tracing::error!(%error, "the holds could not be listed");
        report.failed += 1;
    }
    if let Err(error) = quality::survey(deps, &mut report.tally).await {
        tracing::error!(%error, "the business numbers could not be listed");
        report.failed += 1;
    }
    if report.failed > 0 {
        report.tally.add("sweep_failures");
    }
    Ok(report)
}

async fn sweep_one<S: SendStore, R: RetryScheduler, C: CloudApi>(deps: &Deps<S, R, C>, id: &SendId) -> Swept {
    if deps.busy.is_busy(id) {
        return Swept::NotOverdue;
    }
    let mut tally = Tally::default();
    let looked = async {
        let Some(send) = deps.store.get_send(id).await? else { return Ok(None) };
        let outcome = drive(deps, &send, &mut tally).await?;
        Ok::<_, UseCaseError>(Some((send.life.phase, outcome)))
    };
    match looked.await {
        Ok(Some((phase, outcome))) if moved(&outcome) => {
            let counter = match phase {
                Phase::Waiting { .. } => "swept_waiting",
                Phase::Claimed { .. } => "swept_claimed",
                _ => "swept_in_flight",
            };
            tally.add(counter);
            // A waiting or claimed send past its grace lost its prompt (a timer, the call's own
            // answer); an accepted message not yet delivered did not: the sweep is its prompt.
            if counter == "swept_in_flight" {
                tracing::debug!(send = %id, "an undelivered message was looked at by the sweep");
            } else {
                tally.add("prompts_lost");
                tracing::warn!(send = %id, phase = counter, "an overdue send was moved on by the sweep");
            }
            Swept::Moved(tally)
        }
        Ok(_) => Swept::NotOverdue,
        Err(error) => {
            tracing::error!(send = %id, %error, "an overdue send could not be moved on; the next sweep tries again");
            Swept::Failed
        }
    }
}

/// Whether driving the send did something, that is, it really was overdue.
fn moved(outcome: &RetryOutcome) -> bool {
    match outcome {
        RetryOutcome::Sent(_)
        | RetryOutcome::Held
        | RetryOutcome::Morning
        | RetryOutcome::Settled
        | RetryOutcome::Awaiting => true,
        RetryOutcome::Skipped(why) => *why == Skip::OptedOut,
    }
}
