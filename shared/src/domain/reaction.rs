//! What capguard makes of each webhook event: its failure class and the action it calls for.
//!
//! The intake use case acts on these; `capguard webhook` prints them. A failed status is judged
//! with what is known of its send (category and attempt); without that (an operator debugging a
//! payload) it is judged as attempt 1 of a marketing send, and the retry time is left out.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::classes::{FailureClass, Remedy, classify};
use super::policy::RetryContext;
use super::quality::QualityRating;
use super::rules::Category;
use super::verdict::{Failure, FinalReason, Rules, Verdict};
use crate::whatsapp::events::{Event, MessageEvent, StatusEvent};
use crate::whatsapp::webhook::{PreferenceValue, StatusKind};

/// The action an event calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The failure goes on the escalating ladder.
    RetryLadder,
    /// Nothing more will be tried for the send; see the reason.
    Final,
    /// A transient failure: the same attempt again after a short backoff.
    RetrySoon,
    SuppressRecipient,
    ResumeRecipient,
    /// An inbound message opens the 24 h window (and fires waiting retries).
    OpenWindow,
    HoldTemplate,
    HaltSender,
    /// A template is usable again: its holds are lifted.
    LiftTemplateHold,
    /// A template's quality score changed: recorded with its history.
    RateTemplate,
    /// Meta reported the portfolio's messaging limit: it is the limit from now on.
    SetMessagingLimit,
    /// A number rated RED: its marketing first attempts wait (an alarm is raised).
    PauseMarketing,
    /// A number rated YELLOW: its marketing first attempts are slowed.
    SlowMarketing,
    /// A number rated GREEN again: its marketing goes as before.
    ResumeMarketing,
    /// A plain status, or anything else worth storing and nothing more.
    Record,
}

/// What is known of the send a status belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendContext {
    pub category: Category,
    pub attempt: u32,
    pub transient_retries: u32,
}

/// The decision on one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Reaction {
    pub action: Action,
    pub class: Option<FailureClass>,
    pub code: Option<i64>,
    pub reason: Option<FinalReason>,
    /// For a failure put on the ladder or backed off: the attempt that goes next, and when.
    pub next_attempt: Option<u32>,
    pub retry_at: Option<DateTime<Utc>>,
}

impl Reaction {
    fn plain(action: Action) -> Self {
        Self { action, class: None, code: None, reason: None, next_attempt: None, retry_at: None }
    }

    fn with_code(self, code: Option<i64>) -> Self {
        Self { class: code.map(|c| classify(c).class), code, ..self }
    }
}

/// Reads a status's pricing category as a template category, when it names one.
pub fn category_from_pricing(category: &str) -> Option<Category> {
    match category {
        "marketing" | "marketing_lite" | "group_marketing" => Some(Category::Marketing),
        "utility" | "group_utility" => Some(Category::Utility),
        "authentication" | "authentication-international" | "authentication_international" => {
            Some(Category::Authentication)
        }
        _ => None,
    }
}

/// What `event` calls for. `send` is what is known of the send a status belongs to.
pub fn react(event: &Event, rules: &Rules, send: Option<SendContext>) -> Reaction {
    match event {
        Event::Status(status) => react_to_status(status, rules, send),
        Event::Message(message) => react_to_message(message, rules),
        Event::Preference(preference) => match preference.preference {
            PreferenceValue::Stop => Reaction::plain(Action::SuppressRecipient),
            PreferenceValue::Resume => Reaction::plain(Action::ResumeRecipient),
            PreferenceValue::Other(_) => Reaction::plain(Action::Record),
        },
        Event::Error(error) => {
            let action = match classify(error.error.code).remedy {
                Remedy::HaltSender => Action::HaltSender,
                _ => Action::Record,
            };
            Reaction::plain(action).with_code(Some(error.error.code))
        }
        Event::TemplateStatus(template) => {
            let lifts = super::hold::template_event_lifts(template.event, template.title);
            let holds = super::template::holding_code(template.event, template.title);
            let action = match (lifts, holds) {
                (true, _) => Action::LiftTemplateHold,
                (false, Some(_)) => Action::HoldTemplate,
                (false, None) => Action::Record,
            };
            Reaction { code: holds, ..Reaction::plain(action) }
        }
        Event::TemplateQuality(_) => Reaction::plain(Action::RateTemplate),
        Event::Account(report) => Reaction::plain(match (report.rating, report.limit) {
            (Some(QualityRating::Red), _) => Action::PauseMarketing,
            (Some(QualityRating::Yellow), _) => Action::SlowMarketing,
            (Some(QualityRating::Green), _) => Action::ResumeMarketing,
            (None, Some(_)) => Action::SetMessagingLimit,
            (None, None) => Action::Record,
        }),
    }
}

/// What a message from a recipient calls for: an opt-out keyword, or a reply that opens the window.
fn react_to_message(message: &MessageEvent, rules: &Rules) -> Reaction {
    let said_stop =
        [&message.text, &message.payload].into_iter().flatten().any(|words| rules.opt_out_keywords.matches(words));
    let action = if said_stop { Action::SuppressRecipient } else { Action::OpenWindow };
    Reaction::plain(action).with_code(message.errors.first().map(|e| e.code))
}

fn react_to_status(status: &StatusEvent, rules: &Rules, send: Option<SendContext>) -> Reaction {
    if status.status != StatusKind::Failed {
        return Reaction::plain(Action::Record).with_code(status.errors.first().map(|e| e.code));
    }
    let Some(code) = status.errors.first().map(|e| e.code) else {
        return Reaction { reason: Some(FinalReason::FailedWithoutCode), ..Reaction::plain(Action::Final) };
    };
    let assumed = SendContext {
        category: status.pricing_category.and_then(category_from_pricing).unwrap_or(Category::Marketing),
        attempt: 1,
        transient_retries: 0,
    };
    let context = send.unwrap_or(assumed);
    let at = status.timestamp.to_datetime().unwrap_or(DateTime::UNIX_EPOCH);
    let recipient = status.recipient.unwrap_or_default();
    let failure = Failure {
        code,
        category: context.category,
        recipient,
        attempt: context.attempt,
        transient_retries: context.transient_retries,
        at,
        // Judged from the webhook alone: nothing known of the recipient or the request.
        context: RetryContext::default(),
    };
    let decision = rules.judge(&failure);
    let verdict = decision.verdict;
    let (next_attempt, retry_at) = match verdict {
        Verdict::Ladder { attempt, due } => (Some(attempt), Some(due)),
        Verdict::BackOff { due, .. } => (Some(context.attempt), Some(due)),
        _ => (None, None),
    };
    let (next_attempt, retry_at) = if send.is_some() { (next_attempt, retry_at) } else { (None, None) };
    let action = match verdict {
        Verdict::Ladder { .. } => Action::RetryLadder,
        Verdict::BackOff { .. } => Action::RetrySoon,
        Verdict::SuppressRecipient => Action::SuppressRecipient,
        Verdict::HoldTemplate { .. } => Action::HoldTemplate,
        Verdict::HaltSender { .. } => Action::HaltSender,
        Verdict::Final(_) => Action::Final,
    };
    let reason = match verdict {
        Verdict::Final(reason) => Some(reason),
        _ => None,
    };
    Reaction { action, class: Some(decision.class), code: Some(code), reason, next_attempt, retry_at }
}
