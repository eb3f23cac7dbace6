//! A recipient, as the domain knows it: consent and opt-out, replies, reads, marketing deliveries,
//! caps, aliases.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::consent::{ConsentEvent, latest_opt_in};

/// What is known about a recipient.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecipientRecord {
    pub recipient: String,
    pub opted_out: bool,
    /// When the opt-out state last changed; an older stop or resume changes nothing.
    pub opt_changed_at: Option<DateTime<Utc>>,
    pub last_inbound_at: Option<DateTime<Utc>>,
    /// When a message of the business's was last reported read (the latest `read` status).
    #[serde(default)]
    pub last_read_at: Option<DateTime<Utc>>,
    /// Delivered marketing messages, one per send, most recent within the retention.
    pub marketing_deliveries: Vec<DateTime<Utc>>,
    /// Per-user-cap failures since the last delivery.
    pub consecutive_caps: u32,
    /// When this is a `wa_id` Meta reported for sends to other numbers (a Brazilian number
    /// without its ninth digit, say): those numbers. A stop or a reply under this id is theirs.
    pub numbers: Vec<String>,
    /// Opt-ins, opt-outs and resumes, oldest first.
    #[serde(default)]
    pub consent: Vec<ConsentEvent>,
    /// When a send to the recipient last took a place in the messaging limit's count
    /// ([`super::limit`]): a send more than a bucket later takes a new one.
    #[serde(default)]
    pub contacted_at: Option<DateTime<Utc>>,
}

impl RecipientRecord {
    /// The latest opt-in recorded for the recipient, if any.
    pub fn opt_in(&self) -> Option<&ConsentEvent> {
        latest_opt_in(&self.consent)
    }
}
