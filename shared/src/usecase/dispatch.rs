//! Dispatch: a send request (one template, many recipients) becomes recorded sends and calls.
//!
//! Per recipient: validate; ask [`crate::domain::admission`] whether the send may go, and record a
//! refusal (opted out, our frequency cap, a region where marketing is never delivered) for the
//! report; a hold on the number or template records it waiting for the hold, a marketing send
//! from a number rated RED waiting for its next look, and a full messaging limit waiting for the
//! time it has room again (`MESSAGING_LIMIT`); otherwise take the
//! number's throughput turn, record the send already claimed for attempt 1 (one write) and call
//! the Cloud API; record the wamid or the error. Work that stops part-way (a dropped request, a
//! timeout, a crash) leaves each send either unrecorded, so never acknowledged, or recorded with
//! its next step due (a claimed send whose call's outcome is unknown is settled then), which a
//! timer or the sweep takes. The same request sent again finds its sends by their idempotency key,
//! sends nothing twice, sends those not recorded yet, and moves on any recorded one that is due
//! (what an interrupted run left behind).
//!
//! With the policy's `engaged_first`, a marketing request's recipients are read before any is
//! sent and start by engagement tier, the engaged first; each send keeps its recipient's tier.

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::admission::{held, recipient_for, refusal};
use super::consent::record_opt_in;
use super::limit::contact;
use super::quality::{effect_on, slow_down};
use super::retry::{RetryOutcome, drive};
use super::sending::{FirstSend, SlotOutcome, ensure_timer, record_and_send, request_for};
use super::{Deps, Tally, UseCaseError};
use crate::cloud::CloudApi;
use crate::domain::admission::{Admission, Candidate};
use crate::domain::classes::FailureClass;
use crate::domain::consent::OptIn;
use crate::domain::engagement::{Tier, engaged_first};
use crate::domain::lifecycle::Slot;
use crate::domain::policy::parse_offset;
use crate::domain::quality::QualityEffect;
use crate::domain::rules::{Category, country_id, e164_digits};
use crate::domain::verdict::{FinalReason, Verdict};
use crate::schedule::RetryScheduler;
use crate::store::{NewSend, RecipientRecord, SendId, SendRecord, SendStore, Start, TemplateRef};
use crate::whatsapp::send::Component;

/// A send request, as `POST /sends` and the send queue take it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchRequest {
    pub phone_number_id: String,
    pub template: TemplateName,
    pub category: Category,
    #[serde(default)]
    pub campaign: Option<String>,
    /// The caller's key: with the recipient, it names each send, so a repeated request sends
    /// nothing twice.
    pub idempotency_key: String,
    pub recipients: Vec<RecipientSpec>,
    /// No ladder retry is planned past this time (RFC 3339): a flash sale's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_until: Option<DateTime<Utc>>,
    /// The recipients' UTC offset (`+05:30`), for quiet hours; by default each number's
    /// country's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utc_offset: Option<String>,
    /// The country (ISO 3166, `GB`) of numbers written without `+` and a country code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_country: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateName {
    pub name: String,
    pub language: String,
}

/// One recipient and this recipient's template parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientSpec {
    /// The number as people write it: `+` and the country code, with spaces, dashes or
    /// brackets if need be, or without them given the request's `default_country`. Stored in
    /// E.164.
    pub to: String,
    #[serde(default)]
    pub components: Vec<Component>,
    /// The recipient's opt-in, recorded in their consent history before the send is judged
    /// (with `REQUIRE_OPT_IN`, marketing needs one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_in: Option<OptIn>,
}

/// What happened for one recipient.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RecipientResult {
    /// Meta accepted the first attempt.
    Accepted { to: String, send_id: SendId, wamid: String },
    /// Not sent, on purpose; recorded with the reason.
    Refused { to: String, send_id: SendId, reason: FinalReason },
    /// Meta refused the first attempt; `retry` says whether a later try follows (a backoff or a
    /// hold) or nothing more will be tried.
    Failed { to: String, send_id: SendId, code: i64, class: FailureClass, retry: bool },
    /// The call's outcome is not known yet; a webhook or the settle timer will tell.
    Pending { to: String, send_id: SendId },
    /// Recorded and due, and handed to its timer (within a minute): the request ran out of time
    /// before this recipient's turn.
    Queued { to: String, send_id: SendId },
    /// Recorded, and waiting for a hold on the number or the template to lift (see
    /// `capguard holds`); it goes out then, or ends as `held_too_long`.
    Held { to: String, send_id: SendId },
    /// This recipient was already sent to under this idempotency key: nothing sent again. (One
    /// recorded by an earlier run that stopped before sending it is sent now, and answered as
    /// the send went.)
    Duplicate { to: String, send_id: SendId },
    /// The request for this recipient is malformed: nothing recorded.
    Invalid { to: String, problems: Vec<String> },
}

/// The answer to a send request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DispatchAnswer {
    pub results: Vec<RecipientResult>,
    #[serde(skip)]
    pub tally: Tally,
}

/// A request that cannot be taken at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    #[error("the send request is invalid: {0}")]
    Invalid(String),
}

/// A body that is not a send request.
#[derive(Debug, thiserror::Error)]
#[error("the body is not a send request: {0}")]
pub struct NotASendRequest(#[from] serde_json::Error);

impl DispatchRequest {
    /// Reads a send request from JSON, as `POST /sends` and the send queue carry it.
    pub fn parse(body: &[u8]) -> Result<Self, NotASendRequest> {
        Ok(serde_json::from_slice(body)?)
    }

    /// Problems with the request as a whole (each recipient is checked on its own).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (field, value) in [
            ("phone_number_id", &self.phone_number_id),
            ("template.name", &self.template.name),
            ("template.language", &self.template.language),
            ("idempotency_key", &self.idempotency_key),
        ] {
            if value.trim().is_empty() {
                problems.push(format!("{field} is required"));
            }
        }
        if self.recipients.is_empty() {
            problems.push("recipients is empty".into());
        }
        if let Err(problem) = self.utc_offset_minutes() {
            problems.push(format!("utc_offset: {problem}"));
        }
        if let Some(Err(problem)) = self.default_country.as_deref().map(country_id) {
            problems.push(format!("default_country: {problem}"));
        }
        problems
    }

    /// The request's UTC offset in minutes, if it gave one.
    pub fn utc_offset_minutes(&self) -> Result<Option<i32>, String> {
        self.utc_offset.as_deref().map(|text| parse_offset(text).map(|o| o.local_minus_utc() / 60)).transpose()
    }
}

/// Dispatches a request, recipients concurrently within the throughput.
pub async fn dispatch<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    request: &DispatchRequest,
) -> Result<DispatchAnswer, UseCaseOrRequestError> {
    dispatch_by(deps, request, None).await
}

/// [`dispatch`], starting no send after `start_by`: a recipient whose turn comes later is
/// recorded, due now, and handed to its timer ([`RecipientResult::Queued`]), so that the caller
/// ends within its time budget ([`crate::budget`]).
pub async fn dispatch_by<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    request: &DispatchRequest,
    start_by: Option<Instant>,
) -> Result<DispatchAnswer, UseCaseOrRequestError> {
    let problems = request.problems();
    if !problems.is_empty() {
        return Err(DispatchError::Invalid(problems.join("; ")).into());
    }
    // Owned recipients keep the stream's closure free of a borrowed argument, which a spawned
    // (Send) future could not name. Started in turn (the engaged first, when the policy says so)
    // and taken as they finish: a slow recipient (a call backing off, or one that hangs until its
    // timeout) must not keep the others from starting.
    let mut outcomes: Vec<(usize, RecipientOutcome)> = futures::stream::iter(turns(deps, request).await)
        .map(|(index, known)| {
            let recipient = request.recipients[index].clone();
            async move { (index, dispatch_one(deps, request, &recipient, known, start_by).await) }
        })
        .buffer_unordered(deps.sending.parallelism.max(1))
        .collect()
        .await;
    outcomes.sort_unstable_by_key(|(index, _)| *index);
    let mut answer = DispatchAnswer { results: Vec::with_capacity(outcomes.len()), tally: Tally::default() };
    for (_, outcome) in outcomes {
        let (result, tally) = outcome?;
        answer.results.push(result);
        answer.tally.merge(tally);
    }
    Ok(answer)
}

/// Either the request was refused whole, or a port failed part-way (what was done is durable, and
/// the same request again completes it without sending anything twice).
#[derive(Debug, thiserror::Error)]
pub enum UseCaseOrRequestError {
    #[error(transparent)]
    Request(#[from] DispatchError),
    #[error(transparent)]
    UseCase(#[from] UseCaseError),
}

/// What dispatching one recipient came to, with its counts.
type RecipientOutcome = Result<(RecipientResult, Tally), UseCaseError>;

/// How long (on the deps' clock) a recipient's record read to order the request stays good for
/// its admission: about as stale as a recent read may be anyway (`crate::store`). A record older
/// than this (most of a large request's) is read again, so that a stop or a delivery that came
/// meanwhile counts.
const KNOWN_FOR: TimeDelta = TimeDelta::seconds(5);

/// A recipient's record as the ordering read it.
struct Known {
    record: RecipientRecord,
    read_at: DateTime<Utc>,
}

/// The order the request's recipients start in, each with its record when the ordering read it.
/// With the policy's `engaged_first`, a marketing request's recipients are read first (the reads
/// admission makes anyway, which it then reuses) and start by tier; otherwise in request order.
/// A read that fails only loses the recipient its place: admission reads it again.
async fn turns<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    request: &DispatchRequest,
) -> Vec<(usize, Option<Known>)> {
    let count = request.recipients.len();
    if !(deps.rules.policy.engaged_first && request.category == Category::Marketing && count > 1) {
        return (0..count).map(|index| (index, None)).collect();
    }
    // By index, not by reference, for the same reason as the dispatch's own stream.
    let mut known: Vec<(usize, Option<Known>)> = futures::stream::iter(0..count)
        .map(|index| async move {
            let Ok(send) = new_send(request, &request.recipients[index], deps.rules.ladder.max_attempts()) else {
                return (index, None);
            };
            let read = match recipient_for(deps, &Candidate::first(&send)).await {
                Ok(read) => read,
                Err(error) => {
                    tracing::debug!(%error, "a recipient's record could not be read for the order; admission reads it");
                    None
                }
            };
            (index, read.map(|record| Known { record, read_at: deps.clock.now() }))
        })
        .buffer_unordered(deps.sending.parallelism.max(1))
        .collect()
        .await;
    known.sort_unstable_by_key(|(index, _)| *index);
    let now = deps.clock.now();
    let tiers: Vec<Option<Tier>> =
        known.iter().map(|(_, known)| known.as_ref().map(|k| Tier::of(&k.record, now))).collect();
    let mut slots: Vec<Option<(usize, Option<Known>)>> = known.into_iter().map(Some).collect();
    engaged_first(&tiers).into_iter().filter_map(|index| slots[index].take()).collect()
}

/// The send a request makes to one recipient, or why it cannot be made.
fn new_send(request: &DispatchRequest, recipient: &RecipientSpec, max_attempts: u32) -> Result<NewSend, Vec<String>> {
    let number = e164_digits(&recipient.to, request.default_country.as_deref())
        .map_err(|problem| vec![format!("to {problem}")])?;
    Ok(NewSend {
        idempotency_key: request.idempotency_key.clone(),
        recipient: number,
        phone_number_id: request.phone_number_id.clone(),
        template: TemplateRef {
            name: request.template.name.clone(),
            language: request.template.language.clone(),
            components: recipient.components.clone(),
        },
        category: request.category,
        campaign: request.campaign.clone(),
        max_attempts,
        retry_until: request.retry_until,
        // Checked with the request's other problems.
        utc_offset_minutes: request.utc_offset_minutes().ok().flatten(),
        tier: None,
        opt_in_source: None,
        held_for_limit: false,
    })
}

async fn dispatch_one<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    request: &DispatchRequest,
    recipient: &RecipientSpec,
    known: Option<Known>,
    start_by: Option<Instant>,
) -> RecipientOutcome {
    let mut tally = Tally::default();
    let to = recipient.to.clone();
    let mut send = match new_send(request, recipient, deps.rules.ladder.max_attempts()) {
        Ok(send) => send,
        Err(problems) => return Ok((RecipientResult::Invalid { to, problems }, tally)),
    };
    let id = send.id();
    let mut problems = request_for(&send.recipient, &send.template, &id, Slot::FIRST).problems();
    problems.extend(recipient.opt_in.iter().flat_map(|opt_in| opt_in.problems(deps.clock.now())));
    if !problems.is_empty() {
        return Ok((RecipientResult::Invalid { to, problems }, tally));
    }

    let working = deps.busy.hold(&id);
    let mut record = match known.filter(|known| deps.clock.now() - known.read_at < KNOWN_FOR) {
        Some(known) => Some(known.record),
        None => recipient_for(deps, &Candidate::first(&send)).await?,
    };
    if let Some(opt_in) = &recipient.opt_in
        && record_opt_in(&deps.store, &send.recipient, opt_in, record.as_mut(), deps.clock.now()).await?
    {
        tally.add("opt_ins_recorded");
    }
    send.tier = record.as_ref().map(|record| Tier::of(record, deps.clock.now()));
    send.opt_in_source = record.as_ref().and_then(|record| record.opt_in()).map(|opt_in| opt_in.source.clone());
    let candidate = Candidate::first(&send);
    // Admission before the recording: a refusal is recorded as the send's end, a send a hold
    // keeps (or one this run has no time left for) is recorded due now, and a send free to go is
    // recorded already claimed, and sent.
    let refused = refusal(deps, &candidate, record.as_ref());
    let out_of_time = start_by.is_some_and(|end| Instant::now() >= end);
    let start = match refused {
        Some(reason) => Start::Refuse(reason),
        None if out_of_time => Start::Due(deps.clock.now()),
        None => match held(deps, &candidate).await? {
            Admission::Wait { .. } => Start::Due(deps.clock.now()),
            // `refusal` has judged all that refuses, and no first attempt waits for a morning:
            // only a hold keeps it now, its number's quality rating, or the messaging limit.
            Admission::Go | Admission::Refuse(_) | Admission::Morning(_) => {
                // A RED number's marketing waits; a YELLOW one's takes a share of the limit and
                // of the throughput.
                let rated = effect_on(deps, &candidate).await?;
                let room = match rated {
                    QualityEffect::Pause => None,
                    _ => contact(deps, &candidate, record.as_ref(), rated.share(), &mut tally).await?,
                };
                match (rated, room) {
                    (QualityEffect::Pause, _) => {
                        tally.add("held_for_quality");
                        Start::Due(deps.clock.now() + deps.rules.holds.probe_every)
                    }
                    (_, Some(room_at)) => {
                        send.held_for_limit = true;
                        Start::Due(room_at)
                    }
                    (_, None) => {
                        slow_down(deps, &send.phone_number_id, rated).await;
                        return match record_and_send(deps, &send, &mut tally).await? {
                            FirstSend::Sent(outcome) => {
                                tally.add("accepted_requests");
                                Ok((sent(to, id, outcome), tally))
                            }
                            FirstSend::Known(first) => {
                                drop(working);
                                resume(deps, to, &first, tally).await
                            }
                        };
                    }
                }
            }
        },
    };
    let now = deps.clock.now();
    let recorded = deps.store.record_send(&send, start, now).await?;
    if out_of_time {
        // The send is recorded; its timer moves it on (a finished one has none).
        ensure_timer(deps, &recorded.send, &mut tally).await;
        if recorded.created && matches!(start, Start::Due(_)) {
            tally.add("dispatch_handed_to_timers");
            return Ok((RecipientResult::Queued { to, send_id: id }, tally));
        }
        if !recorded.created {
            tally.add("duplicates");
            return Ok((RecipientResult::Duplicate { to, send_id: id }, tally));
        }
    }
    if !recorded.created {
        drop(working);
        return resume(deps, to, &recorded.send, tally).await;
    }
    tally.add("accepted_requests");
    if let Start::Refuse(reason) = start {
        tally.add(format!("suppressed_{}", reason.as_str()));
        return Ok((RecipientResult::Refused { to, send_id: id, reason }, tally));
    }
    // It waits for the hold like any held send: for its probe, or its end.
    tally.add("held_on_arrival");
    let result = match drive(deps, &recorded.send, &mut tally).await? {
        RetryOutcome::Sent(outcome) => sent(to, id, outcome),
        RetryOutcome::Settled => RecipientResult::Refused { to, send_id: id, reason: FinalReason::HeldTooLong },
        _ => RecipientResult::Held { to, send_id: id },
    };
    Ok((result, tally))
}

/// A send recorded by an earlier run of this request: sent already, or left due by a run that
/// stopped before sending it, which this run finishes. It is that run's send, not this one's work
/// in progress (the caller has let go of it).
async fn resume<S: SendStore, R: RetryScheduler, C: CloudApi>(
    deps: &Deps<S, R, C>,
    to: String,
    first: &SendRecord,
    mut tally: Tally,
) -> Result<(RecipientResult, Tally), UseCaseError> {
    tally.add("duplicates");
    let send_id = first.id.clone();
    let result = match drive(deps, first, &mut tally).await? {
        RetryOutcome::Sent(outcome) => {
            tally.add("resumed");
            sent(to, send_id, outcome)
        }
        _ => RecipientResult::Duplicate { to, send_id },
    };
    Ok((result, tally))
}

/// The answer for a recipient whose slot went out.
fn sent(to: String, send_id: SendId, outcome: SlotOutcome) -> RecipientResult {
    match outcome {
        SlotOutcome::Accepted { wamid } => RecipientResult::Accepted { to, send_id, wamid },
        SlotOutcome::Unknown => RecipientResult::Pending { to, send_id },
        SlotOutcome::Failed { error, decision } => RecipientResult::Failed {
            to,
            send_id,
            code: error.code,
            class: decision.class,
            retry: !matches!(decision.verdict, Verdict::Final(_) | Verdict::SuppressRecipient),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_without_recipients_or_names_is_refused_whole() {
        let request: DispatchRequest = serde_json::from_value(serde_json::json!({
            "phone_number_id": "", "template": {"name": "spring_sale", "language": ""},
            "category": "marketing", "idempotency_key": "k", "recipients": []
        }))
        .unwrap();
        assert_eq!(
            request.problems(),
            ["phone_number_id is required", "template.language is required", "recipients is empty"]
        );
    }

    #[test]
    fn unknown_fields_in_a_request_are_refused() {
        let parsed = serde_json::from_value::<DispatchRequest>(serde_json::json!({
            "phone_number_id": "1", "template": {"name": "t", "language": "en"}, "category": "marketing",
            "idempotency_key": "k", "recipients": [{"to": "+919812345678"}], "priority": "high"
        }));
        assert!(parsed.is_err());
    }
}
