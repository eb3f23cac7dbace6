//! The state port: every send's attempts, every recipient's opt-out, window and recent deliveries,
//! and the holds on senders and templates.
//!
//! [`SendStore`] is the sum of eight capabilities ([`Sends`], [`WamidLinks`], [`Recipients`],
//! [`Listings`], [`Holds`], [`Limits`], [`Numbers`], [`Templates`]); [`dynamo`] implements them on DynamoDB for AWS, [`embedded`] on a
//! file-backed embedded database for the local stack. The nouns they store (a send, a recipient, a
//! hold) are the domain's. Both carry out the send state machine of
//! [`crate::domain::lifecycle`] with conditional writes: a transition whose precondition does not
//! hold (a claimed slot claimed again, a duplicate or older status, a failure of a slot that has
//! moved on) changes nothing and returns `None`. The contract suite in `tests/` runs the same
//! checks against both adapters.
//!
//! **Recent reads.** The `recent_*` reads return an item as it was at most a moment ago: on
//! DynamoDB an eventually consistent read, at half the read units of a strong one, which may miss
//! a write made within about the last second; the embedded store always reads the latest. They
//! are for reads that a conditional write re-checks, or whose staleness only widens a race that
//! exists anyway; `docs/data-model.md` lists where each is used and why that is safe.

pub mod dynamo;
pub mod embedded;

use std::future::Future;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

pub use crate::domain::consent::ConsentEvent;
pub use crate::domain::hold::{Hold, HoldKey};
use crate::domain::lifecycle::{Delivery, Slot};
pub use crate::domain::limit::{Ledger, ReportedLimit};
pub use crate::domain::quality::{BusinessNumber, QualityReport};
pub use crate::domain::recipient::RecipientRecord;
pub use crate::domain::send::{AttemptRecord, NewSend, RecordedError, SendId, SendRecord, Start, TemplateRef};
pub use crate::domain::template::{TemplateRecord, TemplateReport};
use crate::domain::verdict::{FinalReason, Verdict};

/// How long items are kept when nothing is configured (`DATA_RETENTION`).
pub const DEFAULT_RETENTION: TimeDelta = TimeDelta::days(90);

/// How long a status for a wamid nobody linked waits for its link. A send call's answer links
/// its wamid within seconds; a status still unlinked after a day is another app's.
pub const PARK_TIME: TimeDelta = TimeDelta::days(1);

/// The result of recording a send.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub send: SendRecord,
    /// False when a send with the same id existed: `send` is that first send, unchanged.
    pub created: bool,
}

/// Where a wamid leads: its send and slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WamidLink {
    pub send_id: SendId,
    pub slot: Slot,
}

/// A wamid's link, with the statuses that arrived for it before it was linked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WamidEntry {
    pub link: WamidLink,
    /// Statuses parked under the wamid before the link existed, in arrival order. They stay
    /// beside the link (a crash before they were applied must not lose them), and applying one
    /// again changes nothing.
    pub parked: Vec<StatusUpdate>,
}

/// What a status webhook reported about one message, as much as a send needs of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    pub at: DateTime<Utc>,
    pub report: StatusReport,
}

/// A status's news: how far the message got, or that it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusReport {
    Reached(Delivery),
    /// `failed`, with Meta's first error (a `failed` without one is final).
    Failed(Option<RecordedError>),
}

/// What recording a send call's wamid did.
#[derive(Debug, Clone, PartialEq)]
pub struct Linked {
    /// The send as it now is, or `None` when it had already moved past `Claimed`.
    pub send: Option<SendRecord>,
    /// Statuses that were parked under the wamid before it was linked: the caller applies them.
    pub parked: Vec<StatusUpdate>,
}

/// A send waiting for its next slot, as listed for its recipient.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WaitingSend {
    pub send_id: SendId,
    pub slot: Slot,
}

/// One page of a listing; `next` continues it.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// Why the store could not answer. Nothing was changed unless the error says so.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store is throttling: try again shortly.
    #[error("the store is throttling requests: {0}")]
    Throttled(String),
    /// The store could not be reached or failed: try again.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// An item could not be read back: a bug or a foreign writer.
    #[error("a stored item is corrupt: {0}")]
    Corrupt(String),
    /// A pagination token this store did not hand out.
    #[error("the page token is not valid: {0}")]
    BadPageToken(String),
}

/// The state port: every capability below, one bound for the use cases and the adapters'
/// contract suite. Each capability is a trait of its own, so that an adapter implements, and a
/// reader finds, each in one place.
pub trait SendStore: Sends + WamidLinks + Recipients + Listings + Holds + Limits + Numbers + Templates {}

impl<T: Sends + WamidLinks + Recipients + Listings + Holds + Limits + Numbers + Templates> SendStore for T {}

/// A send's life: recording it, and each transition of [`crate::domain::lifecycle::SendLife`].
///
/// Every method that changes a send returns the send as it now is, or `None` when the transition
/// did not apply (its precondition in [`crate::domain::lifecycle::SendLife`] did not hold); it never reads and then writes.
pub trait Sends: Send + Sync {
    /// Records a send, or finds the one recorded with the same id.
    fn record_send(
        &self,
        send: &NewSend,
        start: Start,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Recorded, StoreError>> + Send;

    fn get_send(&self, id: &SendId) -> impl Future<Output = Result<Option<SendRecord>, StoreError>> + Send;

    /// [`Sends::get_send`] where an answer a moment stale is safe (see the module's
    /// note on recent reads).
    fn recent_send(&self, id: &SendId) -> impl Future<Output = Result<Option<SendRecord>, StoreError>> + Send {
        self.get_send(id)
    }

    /// Claims `slot` before its HTTP call: granted to exactly one caller, never twice. Unless the
    /// call's outcome is recorded first, the send is due to be settled at `settle_by`.
    fn claim(
        &self,
        id: &SendId,
        slot: Slot,
        now: DateTime<Utc>,
        settle_by: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<SendRecord>, StoreError>> + Send;

    /// Records the wamid the send call returned for `slot`. The wamid is linked to the send and
    /// slot in every case, even when a webhook already moved the send past `Claimed` (then
    /// `send` is `None`), so that a later failure finds it; statuses parked under it come back.
    fn record_accepted(
        &self,
        id: &SendId,
        slot: Slot,
        wamid: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Linked, StoreError>> + Send;

    /// Notes that Meta's answer for `slot` said it holds the message for pacing; nothing changes
    /// for a slot that was not claimed.
    fn record_paced(
        &self,
        id: &SendId,
        slot: Slot,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A message Meta accepted for `slot` and has not reported delivered by its due time: it may
    /// stay so until `until`, when it is looked at again. Only ever moves the due time later.
    fn await_delivery(
        &self,
        id: &SendId,
        slot: Slot,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<SendRecord>, StoreError>> + Send;

    /// Applies a status webhook: only forward, only for the send's current slot.
    fn record_status(
        &self,
        id: &SendId,
        slot: Slot,
        delivery: Delivery,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<SendRecord>, StoreError>> + Send;

    /// A status that says the marketing send `id` reached `recipient`: counts the delivery toward
    /// the recipient's frequency cap as [`Recipients::record_marketing_delivery`] does (once per
    /// send, even when the status itself changes nothing, as for a send settled meanwhile), then
    /// applies the status as [`Sends::record_status`] does. A store that can make both changes in
    /// one write does; then an error leaves both undone, and a redelivered webhook counts again.
    fn record_marketing_status(
        &self,
        recipient: &str,
        id: &SendId,
        slot: Slot,
        delivery: Delivery,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<SendRecord>, StoreError>> + Send
    where
        Self: Recipients,
    {
        async move {
            self.record_marketing_delivery(recipient, id, at).await?;
            self.record_status(id, slot, delivery, at).await
        }
    }

    /// Applies a failure of `slot` (from the send call or a webhook), decided by `verdict`.
    fn record_failure(
        &self,
        id: &SendId,
        slot: Slot,
        error: &RecordedError,
        verdict: Verdict,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<SendRecord>, StoreError>> + Send;

    /// Moves a waiting send's due time: to `due` (a hold), or earlier (a reply).
    fn reschedule(
        &self,
        id: &SendId,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<SendRecord>, StoreError>> + Send;

    /// Ends a waiting send for `reason` (opt-out, cancel).
    fn finish_waiting(
        &self,
        id: &SendId,
        reason: FinalReason,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<SendRecord>, StoreError>> + Send;
}

/// Which send and slot each message id (wamid) belongs to, and the statuses that came before the
/// link.
pub trait WamidLinks: Send + Sync {
    /// The send and slot a wamid belongs to, with any statuses parked under it; `None` when it
    /// is not linked (statuses parked under it alone are not an entry).
    fn find_by_wamid(&self, wamid: &str) -> impl Future<Output = Result<Option<WamidEntry>, StoreError>> + Send;

    /// Links a wamid to its send and slot (as learnt from a status's callback tag); writing the
    /// same link again changes nothing. Returns the statuses parked under it.
    fn link_wamid(
        &self,
        wamid: &str,
        link: &WamidLink,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<StatusUpdate>, StoreError>> + Send;

    /// Parks a status for a wamid that is not linked yet, for [`PARK_TIME`], so that linking
    /// the wamid applies it. When the wamid is linked meanwhile, nothing is parked and its entry
    /// comes back instead.
    fn park_status(
        &self,
        wamid: &str,
        update: &StatusUpdate,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<WamidEntry>, StoreError>> + Send;
}

/// What is known of each recipient: opt-out, replies, marketing deliveries, caps, aliases.
pub trait Recipients: Send + Sync {
    /// The recipient's state; a recipient never seen has the default state.
    fn get_recipient(&self, recipient: &str) -> impl Future<Output = Result<RecipientRecord, StoreError>> + Send;

    /// [`Recipients::get_recipient`] where an answer a moment stale is safe (see the module's
    /// note on recent reads).
    fn recent_recipient(&self, recipient: &str) -> impl Future<Output = Result<RecipientRecord, StoreError>> + Send {
        self.get_recipient(recipient)
    }

    /// Records a stop (`true`) or resume (`false`) made at `at`, with its entry from `source` in
    /// the consent history ([`crate::domain::consent::sources`]); an older change than the one
    /// recorded changes nothing. Returns whether it applied.
    fn set_opt_out(
        &self,
        recipient: &str,
        opted_out: bool,
        source: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Adds an opt-in to the recipient's consent history at `now` (the opt-in's own time may be
    /// long past, and the record's retention counts from `now`); the same entry again adds
    /// nothing. An opt-in leaves an opt-out as it is (see [`crate::domain::consent`]). Returns
    /// whether it was added.
    fn record_opt_in(
        &self,
        recipient: &str,
        opt_in: &ConsentEvent,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records an inbound message at `at` (keeps the latest).
    fn record_inbound(&self, recipient: &str, at: DateTime<Utc>)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records that a message of the business's was read at `at` (keeps the latest): the
    /// recipient's engagement tier.
    fn record_read(&self, recipient: &str, at: DateTime<Utc>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records a delivered marketing send (once per send) and resets the consecutive caps.
    fn record_marketing_delivery(
        &self,
        recipient: &str,
        send: &SendId,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Counts the per-user-cap failure of `send`'s attempt `attempt`, once however often it is
    /// reported; returns the recipient's count since the last delivery.
    fn record_cap(
        &self,
        recipient: &str,
        send: &SendId,
        attempt: u32,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<u32, StoreError>> + Send;

    /// Records that a send to the recipient took a place in the messaging limit's count at `at`
    /// (keeps the latest).
    fn record_contact(&self, recipient: &str, at: DateTime<Utc>)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records that Meta knows `number` as `wa_id` (they differ); returns `wa_id`'s record.
    fn record_alias(
        &self,
        wa_id: &str,
        number: &str,
        at: DateTime<Utc>,
    ) -> impl Future<Output = Result<RecipientRecord, StoreError>> + Send;
}

/// The listings the indexes serve: a recipient's waiting sends, the overdue sends, a campaign's
/// sends.
pub trait Listings: Send + Sync {
    /// The recipient's sends that wait for a slot after their first (a retry, a backoff, a held
    /// try): what a reply brings forward and an opt-out ends. A new send waiting for its first
    /// slot is not listed.
    fn waiting_for(&self, recipient: &str) -> impl Future<Output = Result<Vec<WaitingSend>, StoreError>> + Send;

    /// Up to `limit` unfinished sends whose due time is at or before `before`, the most overdue
    /// first: what a sweep moves on. The listing may lag a write a moment, and a listed send may
    /// have moved on since: callers look at the send itself before acting.
    fn overdue(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<SendId>, StoreError>> + Send;

    /// A campaign's sends in the order they were recorded, `limit` at a time.
    fn campaign_sends(
        &self,
        campaign: &str,
        page: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Page<SendRecord>, StoreError>> + Send;
}

/// Holds on a business number or a template, and their probes.
pub trait Holds: Send + Sync {
    /// Sets (`Some`) or lifts (`None`) a hold.
    fn set_hold(
        &self,
        key: &HoldKey,
        hold: Option<Hold>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn get_hold(&self, key: &HoldKey) -> impl Future<Output = Result<Option<Hold>, StoreError>> + Send;

    /// [`Holds::get_hold`] where an answer a moment stale is safe (see the module's
    /// note on recent reads).
    fn recent_hold(&self, key: &HoldKey) -> impl Future<Output = Result<Option<Hold>, StoreError>> + Send {
        self.get_hold(key)
    }

    /// Every hold in place.
    fn list_holds(&self) -> impl Future<Output = Result<Vec<(HoldKey, Hold)>, StoreError>> + Send;

    /// Takes a hold's probe: when its probe time is still `probe_at`, moves it to `next` and
    /// returns true, to exactly one caller; false when someone took it first or the hold is gone.
    fn take_probe(
        &self,
        key: &HoldKey,
        probe_at: DateTime<Utc>,
        next: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// The portfolio's messaging limit: its count of contacts ([`crate::domain::limit`]) and the
/// limit Meta last reported; and the count of each number that warms up.
pub trait Limits: Send + Sync {
    /// The count `of` as it stands, and (for the portfolio's) the limit Meta last reported (read
    /// strongly: the count's past buckets are what leaves room in the current one).
    fn messaging_count(&self, of: CountOf<'_>) -> impl Future<Output = Result<MessagingCount, StoreError>> + Send;

    /// Counts one contact in each of `places` (at least one), all or none: each in its count's
    /// bucket, only while that bucket holds fewer than its capacity and its neighbours (the
    /// buckets just before and after, which a racing caller's clock may still or already be in)
    /// hold what they held when the capacity was worked out (0: none); drops the stale buckets.
    /// Returns whether it was counted. Racing callers cannot overfill a count: each write's
    /// condition covers every bucket another caller could be writing.
    fn count_contact(
        &self,
        places: &[Place<'_>],
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records the limit Meta reported; a report older than the one recorded changes nothing.
    /// Returns whether it applied.
    fn report_limit(
        &self,
        reported: ReportedLimit,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// The business numbers capguard has seen, and their quality ratings
/// ([`crate::domain::quality`]).
pub trait Numbers: Send + Sync {
    /// Records that Meta's display number `display` is `phone_number_id`, of the WhatsApp Business
    /// Account `waba_id` (as a webhook's entry and metadata name them).
    fn learn_number(
        &self,
        display: &str,
        phone_number_id: &str,
        waba_id: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds a rating Meta reported for `display` to its history (once), and makes it the number's
    /// rating unless a later one is recorded; returns whether it did.
    fn report_quality(
        &self,
        display: &str,
        report: &QualityReport,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every number known, with its ratings.
    fn business_numbers(&self) -> impl Future<Output = Result<Vec<BusinessNumber>, StoreError>> + Send;
}

/// What Meta reported about each template ([`crate::domain::template`]).
pub trait Templates: Send + Sync {
    /// Adds a report about template `name` in `language` to its history (once), and makes it its
    /// current status or quality unless a later one is recorded; returns whether it is the current
    /// one (a redelivered report still is).
    fn report_template(
        &self,
        name: &str,
        language: &str,
        report: &TemplateReport,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every template Meta reported on.
    fn templates(&self) -> impl Future<Output = Result<Vec<TemplateRecord>, StoreError>> + Send;
}

/// Which count a contact is kept in: the portfolio's, which the messaging limit is kept to, or
/// the one of a number that warms up, which its warm-up is kept to
/// ([`crate::domain::limit::WarmUps`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountOf<'a> {
    Portfolio,
    /// The count of phone number id `.0`'s contacts by its ramped sends.
    WarmUp(&'a str),
}

/// One place a contact takes in a count ([`Limits::count_contact`]), worked out from the count as
/// read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place<'a> {
    pub of: CountOf<'a>,
    pub bucket: i64,
    /// How many the bucket may hold, the other buckets' counts as read taken off the limit.
    pub capacity: u32,
    /// The buckets beside `bucket`, with their counts as read.
    pub neighbours: Vec<(i64, u32)>,
    /// The buckets that no longer count, to drop.
    pub stale: Vec<i64>,
}

impl<'a> Place<'a> {
    /// The place in `bucket` of count `of`, as `ledger` shows it at `now`.
    pub fn in_ledger(of: CountOf<'a>, ledger: &Ledger, bucket: i64, capacity: u32, now: DateTime<Utc>) -> Self {
        Self { of, bucket, capacity, neighbours: ledger.neighbours(bucket).to_vec(), stale: ledger.stale(now) }
    }
}

/// What [`Limits::messaging_count`] reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessagingCount {
    pub ledger: Ledger,
    pub reported: Option<ReportedLimit>,
}

/// The port's traits, for calling a store's methods on a concrete type:
/// `use shared::store::prelude::*;`.
pub mod prelude {
    pub use super::{Holds, Limits, Listings, Numbers, Recipients, SendStore, Sends, Templates, WamidLinks};
}
