//! What a sandbox run has done so far: sends accepted and refused, webhooks posted by status and
//! failure code, and how webhook delivery went. The demo prints it; tests assert on it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a posted webhook carried, for counting.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Posted {
    /// A status; `failed` ones with their error code.
    Status { status: &'static str, code: Option<i64> },
    /// A message from the recipient.
    Inbound,
    /// A `user_preferences` change.
    Preference,
    /// An account or template webhook: a limit, a number's rating, a template's status or quality.
    Account,
}

/// Counters since the sandbox started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Sends answered 200 with a wamid.
    pub accepted: u64,
    /// Sends taken and never answered (a scripted hang): whether they went out is unknown.
    pub hung: u64,
    /// Sends refused synchronously, by Graph error code.
    pub refused: BTreeMap<i64, u64>,
    /// Status webhooks the receiver took, by status (`sent`, `delivered`, `read`, `failed`).
    pub statuses_posted: BTreeMap<String, u64>,
    /// `failed` status webhooks the receiver took, by error code.
    pub failures_posted: BTreeMap<i64, u64>,
    /// Inbound-message webhooks the receiver took (replies and quick-reply taps).
    pub inbound_posted: u64,
    /// `user_preferences` webhooks the receiver took (Stop, Resume).
    pub preferences_posted: u64,
    /// Account and template webhooks the receiver took (a limit, a rating, a template's status).
    #[serde(default)]
    pub account_updates_posted: u64,
    /// Account events played, by scenario or on command (a limit, a rating, a template's status
    /// or quality, pacing).
    #[serde(default)]
    pub account_events: u64,
    /// Sends answered `held_for_quality_assessment`: held by Meta's pacing before going out.
    #[serde(default)]
    pub paced: u64,
    /// The most unique users counted toward the messaging limit in a moving 24 h.
    #[serde(default)]
    pub messaging_limit_peak: u64,
    /// Webhook POSTs the receiver took: one per update, or fewer with batching on.
    pub webhook_posts: u64,
    /// Tries of a webhook after its first failed.
    pub webhook_retries: u64,
    /// Webhooks given up after every try failed.
    pub webhooks_abandoned: u64,
    /// Webhooks that fell due while no callback URL was set.
    pub webhooks_without_callback: u64,
    /// Accepted messages whose webhooks are still to come.
    pub messages_in_flight: u64,
}

impl Stats {
    pub(crate) fn record_posted(&mut self, posted: &Posted) {
        match posted {
            Posted::Status { status, code } => {
                *self.statuses_posted.entry((*status).to_owned()).or_default() += 1;
                if let Some(code) = code {
                    *self.failures_posted.entry(*code).or_default() += 1;
                }
            }
            Posted::Inbound => self.inbound_posted += 1,
            Posted::Preference => self.preferences_posted += 1,
            Posted::Account => self.account_updates_posted += 1,
        }
    }

    pub(crate) fn record_refused(&mut self, code: i64) {
        *self.refused.entry(code).or_default() += 1;
    }
}
