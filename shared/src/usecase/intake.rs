//! Intake: a verified webhook body becomes writes and timers.
//!
//! Each event of the batch: a status moves its send forward (or fails it, and the verdict plans
//! the next ladder step, a backoff, an opt-out or a hold); an inbound message opens the
//! recipient's 24 h window and makes their waiting retries due now, or opts them out when it is a
//! STOP keyword; a preference stops or resumes marketing; a system error is recorded, and a
//! sender-scope one halts the number; a template status saying a template is usable again lifts
//! its holds. Everything is idempotent, because Meta delivers at least
//! once: the caller answers 200 only when this returns `Ok`, and a redelivered batch changes
//! nothing that already happened.
//!
//! Events that concern different people are taken concurrently (a batch holds up to 1,000), those
//! of one person (the statuses of messages to them, their messages and preferences) in batch
//! order. A status carrying capguard's callback tag (Meta echoes it on `sent`, `delivered` and
//! `read`) names its send and slot itself, and links the wamid when the send call's answer has not
//! (it is still on its way, or lost); a status without one is found through the wamid's link, or
//! parked under the wamid, and linking the wamid applies it. Intake never waits for a link.
//!
//! A person is known by the number sent to and by the `wa_id` Meta reports, which can differ (a
//! Brazilian number without its ninth digit): a stop, a resume or a reply under either reaches
//! the sends of both.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::holds;
use super::quality;
use super::sending::{ensure_timer, learn_alias, opt_out_recipient, prompt_set};
use super::status::apply_status;
use super::{Deps, Tally, UseCaseError};
use crate::cloud::CloudApi;
use crate::domain::consent::sources;
use crate::domain::lifecycle::Slot;
use crate::domain::limit::ReportedLimit;
use crate::domain::quality::QualityReport;
use crate::domain::reaction::{Action, react};
use crate::domain::template::{TemplateField, TemplateReport, holding_code, send_language};
use crate::schedule::{RetryJob, RetryScheduler};
use crate::store::{
    HoldKey, Listings, Recipients, SendId, SendRecord, SendStore, Sends, StatusReport, StatusUpdate, WamidEntry,
    WamidLink,
};
use crate::whatsapp::callback::CallbackTag;
use crate::whatsapp::events::{Event, MessageEvent, StatusEvent, events};
use crate::whatsapp::webhook::{WebhookParseError, parse_webhook};

/// How many groups of events (one person's statuses, messages and preferences) one batch works
/// on at once.
pub const PARALLELISM: usize = 16;

/// Why a batch was not taken.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// Not a webhook: answer 400, Meta's redelivery would not help.
    #[error(transparent)]
    NotAWebhook(#[from] WebhookParseError),
    /// Storage or scheduling failed: answer 5xx so that Meta redelivers.
    #[error(transparent)]
    Failed(#[from] UseCaseError),
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntakeReport {
    pub events: usize,
    pub tally: Tally,
}

/// Takes one verified webhook body.
pub async fn intake<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    body: &[u8],
) -> Result<IntakeReport, IntakeError> {
    let envelope = parse_webhook(body)?;
    // Which business number each display number is: what a quality rating, reported by display
    // number, is applied by.
    let mut numbers: Vec<quality::NumberSeen> = Vec::new();
    for entry in &envelope.entry {
        for change in &entry.changes {
            if let Some(metadata) = &change.value.metadata
                && let (Some(display), Some(id)) = (&metadata.display_phone_number, &metadata.phone_number_id)
                && !numbers.contains(&(display, id, &entry.id))
            {
                numbers.push((display, id, &entry.id));
            }
        }
    }
    quality::learn(deps, &numbers, deps.clock.now()).await.map_err(IntakeError::Failed)?;
    let batch = events(&envelope);
    let batch = &batch;
    // Groups of indices rather than of references: the stream's closure then takes an owned
    // argument, which a spawned (Send) future can name.
    let mut done = futures::stream::iter(group(batch))
        .map(|members| async move {
            let mut tally = Tally::default();
            for index in members {
                on_event(deps, &batch[index], &mut tally).await?;
            }
            Ok::<_, UseCaseError>(tally)
        })
        .buffer_unordered(PARALLELISM);
    let mut tally = Tally::default();
    while let Some(group) = done.next().await {
        tally.merge(group?);
    }
    Ok(IntakeReport { events: batch.len(), tally })
}

/// The batch's events (by index) grouped by what they concern, each group in batch order, groups
/// in the order of their first event.
fn group(batch: &[Event]) -> Vec<Vec<usize>> {
    let mut index: HashMap<(u8, &str), usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (position, event) in batch.iter().enumerate() {
        // A person's statuses, messages and preferences in one group, in batch order: a reply
        // must see the cap that came just before it. A status without a recipient, by message.
        let key = match event {
            Event::Status(status) => match status.recipient {
                Some(recipient) => (1, recipient),
                None => (0, status.wamid),
            },
            Event::Message(message) => (1, message.from.unwrap_or_default()),
            Event::Preference(preference) => (1, preference.wa_id.unwrap_or_default()),
            Event::Error(error) => (2, error.phone_number_id.unwrap_or_default()),
            Event::TemplateStatus(template) => (3, template.name),
            Event::TemplateQuality(quality) => (3, quality.name),
            Event::Account(report) => (4, report.waba_id),
        };
        let at = *index.entry(key).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[at].push(position);
    }
    groups
}

async fn on_event<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    event: &Event<'_>,
    tally: &mut Tally,
) -> Result<(), UseCaseError> {
    let now = deps.clock.now();
    match event {
        // A failed status is judged with what its send says (category, attempt), once it is found.
        Event::Status(status) => on_status(deps, status, now, tally).await,
        _ => on_reaction(deps, event, react(event, &deps.rules, None).action, now, tally).await,
    }
}

/// Carries out what [`react`] decided on an event other than a status.
async fn on_reaction<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    event: &Event<'_>,
    action: Action,
    now: DateTime<Utc>,
    tally: &mut Tally,
) -> Result<(), UseCaseError> {
    match event {
        Event::Message(message) => on_message(deps, message, action, now, tally).await,
        Event::Preference(preference) => {
            let Some(wa_id) = preference.wa_id else { return Ok(()) };
            let at = preference.timestamp.to_datetime().unwrap_or(now);
            for recipient in identities(deps, wa_id).await? {
                match action {
                    Action::SuppressRecipient => {
                        opt_out_recipient(deps, &recipient, sources::MARKETING_PREFERENCES, at, tally).await?;
                    }
                    Action::ResumeRecipient
                        if deps.store.set_opt_out(&recipient, false, sources::MARKETING_PREFERENCES, at).await? =>
                    {
                        tally.add("resumed");
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        Event::Error(error) => {
            tally.add(format!("system_error_{}", error.error.code));
            if let (Action::HaltSender, Some(number)) = (action, error.phone_number_id)
                && holds::set(deps, &HoldKey::sender(number), error.error.code, now).await?
            {
                tally.add("senders_halted");
            }
            Ok(())
        }
        Event::TemplateStatus(template) => {
            tally.add("template_statuses");
            let report = TemplateReport {
                field: TemplateField::Status,
                value: template.event.to_owned(),
                title: template.title.map(str::to_owned),
                at: template.at.unwrap_or(now),
            };
            let language = send_language(template.language);
            // A report older than the template's latest status calls for nothing: a late approval
            // must not lift a newer pause. The latest one again (a redelivery) is acted on again,
            // in case the first delivery stopped before it was.
            let current = deps.store.report_template(template.name, &language, &report, now).await?;
            match action {
                Action::LiftTemplateHold if current => {
                    holds::lift_template(deps, template.name, template.language, tally).await?;
                }
                // A pause that is the template's latest status holds its sends from every number
                // of its WABA that capguard knows (the webhook names none); a number not known yet
                // meets the pause's 132015 on its first send, which holds it then.
                Action::HoldTemplate if current => {
                    let code = holding_code(template.event, template.title).unwrap_or(132015);
                    for number in deps.store.business_numbers().await? {
                        if number.waba_id.as_deref() != Some(template.waba_id) {
                            continue;
                        }
                        let Some(id) = number.phone_number_id else { continue };
                        if holds::set(deps, &HoldKey::template(&id, template.name, &language), code, now).await? {
                            tally.add("templates_held_by_webhook");
                        }
                    }
                }
                _ => {}
            }
            Ok(())
        }
        Event::TemplateQuality(quality) => {
            tally.add("template_quality_reports");
            let report = TemplateReport {
                field: TemplateField::Quality,
                value: quality.score.to_owned(),
                title: None,
                at: quality.at.unwrap_or(now),
            };
            deps.store.report_template(quality.name, &send_language(quality.language), &report, now).await?;
            Ok(())
        }
        Event::Account(report) => {
            tally.add("account_reports");
            if let (Some(rating), Some(display)) = (report.rating, report.display_phone_number) {
                let rated =
                    QualityReport { rating, at: report.at.unwrap_or(now), event: report.event.map(str::to_owned) };
                quality::report(deps, display, &rated, now, tally).await?;
            }
            if let Some(limit) = report.limit {
                let reported = ReportedLimit { limit, at: report.at.unwrap_or(now) };
                if deps.store.report_limit(reported, now).await? {
                    tally.add("messaging_limit_changes");
                }
            }
            Ok(())
        }
        Event::Status(_) => Ok(()), // taken by on_status
    }
}

/// The numbers a `wa_id` stands for: itself, and every number sent to that Meta reported as it.
async fn identities<S: Recipients, R, C>(deps: &Deps<S, R, C>, wa_id: &str) -> Result<Vec<String>, UseCaseError> {
    let mut numbers = vec![wa_id.to_owned()];
    for number in deps.store.get_recipient(wa_id).await?.numbers {
        if !numbers.contains(&number) {
            numbers.push(number);
        }
    }
    Ok(numbers)
}

/// The send and slot our callback tag names, if the status carries one.
fn tagged_link(status: &StatusEvent) -> Option<WamidLink> {
    let tag = CallbackTag::parse(status.callback_data?)?;
    let send_id = SendId::try_from(tag.send_id).ok()?;
    Some(WamidLink { send_id, slot: Slot { attempt: tag.attempt, try_no: tag.try_no } })
}

async fn on_status<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    status: &StatusEvent<'_>,
    now: DateTime<Utc>,
    tally: &mut Tally,
) -> Result<(), UseCaseError> {
    let Some(update) = StatusUpdate::of(status, now) else {
        tally.add("statuses_other");
        return Ok(());
    };
    let tagged = tagged_link(status);
    let by_tag = tagged.is_some();
    let (link, mut parked) = match tagged {
        // Our tag names the send and slot: the wamid need not be looked up.
        Some(link) => (link, Vec::new()),
        // A status without it (a failure carries none) is found through the wamid's link, or
        // parked under the wamid until the link comes.
        None => match deps.store.find_by_wamid(status.wamid).await? {
            Some(WamidEntry { link, parked }) => (link, parked),
            None => match deps.store.park_status(status.wamid, &update, now).await? {
                Some(WamidEntry { link, parked }) => (link, parked),
                None => {
                    tally.add("statuses_parked");
                    return Ok(());
                }
            },
        },
    };
    let Some(mut send) = status_send(deps, &link, &update).await? else {
        tally.add("statuses_unmatched");
        return Ok(());
    };
    let answered = send.attempt(link.slot).is_some_and(|attempt| attempt.wamid.is_some());
    if by_tag && !answered {
        // The send call's answer is lost or still on its way: the tag links the wamid from now
        // on, for the statuses that carry no tag, and brings back what was parked under it.
        parked = deps.store.link_wamid(status.wamid, &link, now).await?;
        tally.add("wamids_linked_by_tag");
    }
    // The id Meta knows the recipient by, learnt here too in case the send's answer was lost.
    if let Some(wa_id) = status.recipient {
        learn_alias(deps, wa_id, &send.recipient, update.at, tally).await?;
    }
    // Statuses parked before the link first, in arrival order; any of them applied already
    // changes nothing. (A tagged status does not look under its wamid, so statuses that a crash
    // left unapplied beside the link are brought back only by a status without a tag; see
    // docs/architecture.md.)
    for earlier in parked.iter().filter(|earlier| **earlier != update) {
        send = apply_status(deps, &link, &send, earlier, tally).await?;
    }
    apply_status(deps, &link, &send, &update, tally).await?;
    Ok(())
}

/// The send a status is for. A delivery report may go by a read a moment stale, because its write
/// re-checks the send by condition and its side effect (the marketing delivery) is idempotent; a
/// recent read that does not show the status's slot claimed yet (the send missing, or still
/// waiting for that slot, which would make the report look like old news) reads again for the
/// latest. A failure is judged on the latest, since its verdict depends on the send's counts.
async fn status_send<S: Sends, R, C>(
    deps: &Deps<S, R, C>,
    link: &WamidLink,
    update: &StatusUpdate,
) -> Result<Option<SendRecord>, UseCaseError> {
    if let StatusReport::Reached(_) = update.report
        && let Some(send) = deps.store.recent_send(&link.send_id).await?
        && send.attempt(link.slot).is_some()
    {
        return Ok(Some(send));
    }
    Ok(deps.store.get_send(&link.send_id).await?)
}

/// A message from a recipient, with what [`react`] made of it: a stop keyword opts them out,
/// anything else opens their window.
async fn on_message<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    message: &MessageEvent<'_>,
    action: Action,
    now: DateTime<Utc>,
    tally: &mut Tally,
) -> Result<(), UseCaseError> {
    let Some(from) = message.from else { return Ok(()) };
    let at = message.timestamp.to_datetime().unwrap_or(now);
    tally.add("inbound");
    for recipient in identities(deps, from).await? {
        deps.store.record_inbound(&recipient, at).await?;
        if action == Action::SuppressRecipient {
            opt_out_recipient(deps, &recipient, sources::KEYWORD, at, tally).await?;
        } else {
            fire_waiting_now(deps, &recipient, now, tally).await?;
        }
    }
    Ok(())
}

/// A reply opens the 24 h window, in which marketing does not count toward the cap: every send
/// of the recipient's that waits for a retry becomes due now, its timer replaced.
async fn fire_waiting_now<S: Sends + Listings, R: RetryScheduler, C>(
    deps: &Deps<S, R, C>,
    recipient: &str,
    now: DateTime<Utc>,
    tally: &mut Tally,
) -> Result<(), UseCaseError> {
    for waiting in deps.store.waiting_for(recipient).await? {
        if let Some(moved) = deps.store.reschedule(&waiting.send_id, now, now).await? {
            let cancelled = deps.scheduler.cancel(&RetryJob::new(waiting.send_id.clone(), waiting.slot)).await;
            prompt_set(cancelled, &waiting.send_id, tally);
            ensure_timer(deps, &moved, tally).await;
            tally.add("retries_fired_by_reply");
        }
    }
    Ok(())
}
