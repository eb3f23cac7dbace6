//! The items: how a send, a wamid link, a recipient and a hold are laid out as attributes, and how
//! they are read back. A missing or malformed attribute is [`StoreError::Corrupt`].
//!
//! Times are numbers: epoch seconds with up to nine decimals, so any instant round-trips exactly
//! and numbers compare in time order in conditions and index keys. `expires_at` alone is whole
//! epoch seconds, as DynamoDB's TTL wants it.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde::de::IntoDeserializer;
use serde::de::value::Error as ValueError;

use super::expr::Update;
use super::schema::{CAMPAIGN, CREATED_AT, DUE, DUE_SHARD, EXPIRES_AT, PK, RECIPIENT, WAITING_SLOT, keys};
use crate::domain::lifecycle::{Delivery, Phase, SendLife, Slot};
use crate::domain::verdict::FinalReason;
use crate::store::{
    AttemptRecord, ConsentEvent, Hold, HoldKey, RecipientRecord, RecordedError, SendId, SendRecord, StatusUpdate,
    StoreError, WamidEntry, WamidLink,
};

pub(super) type Item = HashMap<String, AttributeValue>;

// A send item's attributes besides its keys. The life's fields are top-level attributes, so that
// conditions can test them; the history is one map, keyed by slot.
pub(super) const IDEMPOTENCY_KEY: &str = "idempotency_key";
pub(super) const PHONE_NUMBER_ID: &str = "phone_number_id";
/// The template and its parameters, as compact JSON: read whole, never queried.
pub(super) const TEMPLATE: &str = "template";
pub(super) const CATEGORY: &str = "category";
/// The request's `retry_until`, when it set one.
pub(super) const RETRY_UNTIL: &str = "retry_until";
/// The request's UTC offset for the recipient, in minutes, when it set one.
pub(super) const UTC_OFFSET: &str = "utc_offset";
pub(super) const TIER: &str = "tier";
pub(super) const OPT_IN_SOURCE: &str = "opt_in_source";
/// Only when true: the first attempt waited for room under the messaging limit.
pub(super) const HELD_FOR_LIMIT: &str = "held_for_limit";
pub(super) const UPDATED_AT: &str = "updated_at";
pub(super) const PHASE: &str = "phase";
pub(super) const ATTEMPT: &str = "attempt";
pub(super) const TRY_NO: &str = "try_no";
pub(super) const TRANSIENT_RETRIES: &str = "transient_retries";
pub(super) const SUPPRESSED: &str = "suppressed";
/// How far the current slot's message got: 0 claimed, 1 accepted, 2 sent, 3 delivered, 4 read.
/// Only while claimed, in flight or succeeded: a status applies only if its rank is higher.
pub(super) const DELIVERY_RANK: &str = "delivery_rank";
/// Only when final.
pub(super) const REASON: &str = "reason";
pub(super) const MAX_ATTEMPTS: &str = "max_attempts";
/// Slot key (`a2t1`) → the slot's history; a slot's entry is created when it is claimed.
pub(super) const ATTEMPTS: &str = "attempts";

// An attempt's history, inside `attempts`: times by the event's name, then the wamid and the
// error. Short names, because every attempt repeats them and item size is what a write costs.
pub(super) const CLAIMED_AT: &str = "claimed";
pub(super) const WAMID: &str = "wamid";
pub(super) const ACCEPTED_AT: &str = "accepted";
pub(super) const SENT_AT: &str = "sent";
pub(super) const DELIVERED_AT: &str = "delivered";
pub(super) const READ_AT: &str = "read";
pub(super) const FAILED_AT: &str = "failed";
pub(super) const ERROR_CODE: &str = "code";
pub(super) const ERROR_TITLE: &str = "title";
pub(super) const PACED_AT: &str = "paced";

// Phases.
pub(super) const WAITING: &str = "waiting";
pub(super) const CLAIMED: &str = "claimed";
pub(super) const IN_FLIGHT: &str = "in_flight";
pub(super) const SUCCEEDED: &str = "succeeded";
pub(super) const FINAL: &str = "final";

// A wamid item's attributes: the link once known, and the statuses parked until then (a list of
// JSON strings, in arrival order).
pub(super) const LINK_SEND_ID: &str = "send_id";
pub(super) const LINK_SLOT: &str = "slot";
pub(super) const PARKED: &str = "parked";

// A recipient item's attributes. Each delivered marketing send is an attribute of its own,
// `delivered#<send id>` = when, so that recording a delivery twice adds nothing and needs no
// map to exist first (a map entry cannot be set in the write that creates the map).
pub(super) const OPTED_OUT: &str = "opted_out";
pub(super) const OPT_CHANGED_AT: &str = "opt_changed_at";
pub(super) const LAST_INBOUND_AT: &str = "last_inbound_at";
pub(super) const LAST_READ_AT: &str = "last_read_at";
/// When a send to the recipient last took a place in the messaging limit's count.
pub(super) const CONTACTED_AT: &str = "contacted_at";
/// The capped attempts since the last delivery, as a string set of `<send id>#<attempt>`: adding
/// one twice adds nothing, and its size is the count of consecutive caps.
pub(super) const CAPS: &str = "caps";
/// The numbers sent to that Meta reported under this `wa_id` (a string set).
pub(super) const NUMBERS: &str = "numbers";
const DELIVERED_PREFIX: &str = "delivered#";
/// Each consent history entry is an attribute of its own too, `consent#<when>#<change>#<source>`
/// (`<when>` in nanoseconds since the epoch: a name has no `.`, which an update expression would
/// take for a path into a map) = the entry as JSON: the same entry written twice is one attribute.
const CONSENT_PREFIX: &str = "consent#";

pub(super) fn delivered(send_id: &str) -> String {
    format!("{DELIVERED_PREFIX}{send_id}")
}

/// A consent entry's attribute: its name and value.
pub(super) fn consent_attribute(event: &ConsentEvent) -> Result<(String, AttributeValue), StoreError> {
    let name = format!("{CONSENT_PREFIX}{}#{}#{}", nanos_of(event.at), event.change.as_str(), event.source);
    let json = serde_json::to_string(event).map_err(|e| StoreError::Corrupt(format!("cannot encode consent: {e}")))?;
    Ok((name, s(json)))
}

// A hold item's attributes.
pub(super) const HOLD_CODE: &str = "code";
pub(super) const HOLD_SINCE: &str = "since";
pub(super) const HOLD_PROBE_AT: &str = "probe_at";
/// What the hold stops: the business number, and for a template hold its name and language.
pub(super) const HOLD_NUMBER: &str = "hold_number";
pub(super) const HOLD_TEMPLATE: &str = "hold_template";
pub(super) const HOLD_LANGUAGE: &str = "hold_language";

pub(super) fn s(text: impl Into<String>) -> AttributeValue {
    AttributeValue::S(text.into())
}

pub(super) fn n(number: impl Display) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

pub(super) fn time(at: DateTime<Utc>) -> AttributeValue {
    AttributeValue::N(time_number(at))
}

/// Whole epoch seconds, the form of `expires_at`.
pub(super) fn epoch_seconds(at: DateTime<Utc>) -> AttributeValue {
    n(at.timestamp())
}

/// Nanoseconds since the epoch: every instant chrono can hold fits.
pub(super) fn nanos_of(at: DateTime<Utc>) -> i128 {
    i128::from(at.timestamp()) * 1_000_000_000 + i128::from(at.timestamp_subsec_nanos())
}

pub(super) fn at_nanos(nanos: i128) -> Option<DateTime<Utc>> {
    let seconds = i64::try_from(nanos.div_euclid(1_000_000_000)).ok()?;
    let subsec = u32::try_from(nanos.rem_euclid(1_000_000_000)).ok()?;
    DateTime::from_timestamp(seconds, subsec)
}

/// An instant as a decimal number of epoch seconds, exact to the nanosecond.
pub(super) fn time_number(at: DateTime<Utc>) -> String {
    let nanos = nanos_of(at);
    let sign = if nanos < 0 { "-" } else { "" };
    let (seconds, fraction) = (nanos.unsigned_abs() / 1_000_000_000, nanos.unsigned_abs() % 1_000_000_000);
    if fraction == 0 {
        format!("{sign}{seconds}")
    } else {
        let fraction = format!("{fraction:09}");
        format!("{sign}{seconds}.{}", fraction.trim_end_matches('0'))
    }
}

/// Reads [`time_number`]'s form back (DynamoDB hands numbers back in that same plain form).
pub(super) fn parse_time_number(text: &str) -> Option<DateTime<Utc>> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) || fraction.len() > 9 {
        return None;
    }
    let fraction: i128 = format!("{fraction:0<9}").parse().ok()?;
    let magnitude = whole.parse::<i128>().ok()?.checked_mul(1_000_000_000)? + fraction;
    at_nanos(if negative { -magnitude } else { magnitude })
}

/// A slot as a map key and index sort key: `a<attempt>t<try>`.
pub(super) fn slot_key(slot: Slot) -> String {
    format!("a{}t{}", slot.attempt, slot.try_no)
}

pub(super) fn parse_slot_key(text: &str) -> Option<Slot> {
    let (attempt, try_no) = text.strip_prefix('a')?.split_once('t')?;
    Some(Slot { attempt: attempt.parse().ok()?, try_no: try_no.parse().ok()? })
}

pub(super) fn rank(delivery: Delivery) -> u8 {
    match delivery {
        Delivery::Accepted => 1,
        Delivery::Sent => 2,
        Delivery::Delivered => 3,
        Delivery::Read => 4,
    }
}

fn delivery_of_rank(rank: u8) -> Option<Delivery> {
    match rank {
        1 => Some(Delivery::Accepted),
        2 => Some(Delivery::Sent),
        3 => Some(Delivery::Delivered),
        4 => Some(Delivery::Read),
        _ => None,
    }
}

/// The attempt field a status's time goes to.
pub(super) fn delivery_field(delivery: Delivery) -> &'static str {
    match delivery {
        Delivery::Accepted => ACCEPTED_AT,
        Delivery::Sent => SENT_AT,
        Delivery::Delivered => DELIVERED_AT,
        Delivery::Read => READ_AT,
    }
}

/// The expiry an item written at `at` gets.
pub(super) fn expiry(at: DateTime<Utc>, retention: TimeDelta) -> DateTime<Utc> {
    at.checked_add_signed(retention).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Whether an item whose `expires_at` is `expires_at` still exists at `now`, TTL or not.
pub(super) fn alive(expires_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    expires_at.timestamp() > now.timestamp()
}

/// Writes every field of a send's life: the phase with what only that phase has (removing what
/// it has not), the waiting index's sort key exactly while it waits, and the due index's keys
/// exactly while it is unfinished.
pub(super) fn write_life(update: &mut Update, id: &SendId, life: &SendLife) {
    update.set(ATTEMPT, n(life.slot.attempt));
    update.set(TRY_NO, n(life.slot.try_no));
    update.set(TRANSIENT_RETRIES, n(life.transient_retries));
    update.set(SUPPRESSED, AttributeValue::Bool(life.suppressed));
    update.set(MAX_ATTEMPTS, n(life.max_attempts));
    let (phase, rank_now) = match life.phase {
        Phase::Waiting { .. } => (WAITING, None),
        Phase::Claimed { .. } => (CLAIMED, Some(0)),
        Phase::InFlight { delivery, .. } => (IN_FLIGHT, Some(rank(delivery))),
        Phase::Succeeded { delivery } => (SUCCEEDED, Some(rank(delivery))),
        Phase::Final { reason } => {
            update.set(REASON, s(reason.as_str()));
            (FINAL, None)
        }
    };
    update.set(PHASE, s(phase));
    match rank_now {
        Some(rank_now) => update.set(DELIVERY_RANK, n(rank_now)),
        None => update.remove(DELIVERY_RANK),
    }
    match life.phase.due() {
        Some(due) => enter_due_index(update, id, due),
        None => leave_due_index(update),
    }
    if waits_for_a_retry(life) {
        enter_waiting_index(update, life.slot);
    } else {
        leave_waiting_index(update);
    }
    if !matches!(life.phase, Phase::Final { .. }) {
        update.remove(REASON);
    }
}

/// Sets the send's due time, which lists it in the due index under its shard.
pub(super) fn enter_due_index(update: &mut Update, id: &SendId, due: DateTime<Utc>) {
    update.set(DUE, time(due));
    update.set(DUE_SHARD, s(keys::due_shard(id)));
}

/// Removes the due time: a finished send leaves the due index.
pub(super) fn leave_due_index(update: &mut Update) {
    update.remove(DUE);
}

/// Whether a send belongs in the waiting index: it waits for a slot after its first (a retry, a
/// backoff, a held try), which a reply can bring forward and an opt-out ends. A new send waiting
/// for its first slot is sent within moments and stays out, which spares two index writes.
pub(super) fn waits_for_a_retry(life: &SendLife) -> bool {
    matches!(life.phase, Phase::Waiting { .. }) && life.slot != Slot::FIRST
}

/// Lists the send under its recipient in the waiting index.
pub(super) fn enter_waiting_index(update: &mut Update, slot: Slot) {
    update.set(WAITING_SLOT, s(slot_key(slot)));
}

pub(super) fn leave_waiting_index(update: &mut Update) {
    update.remove(WAITING_SLOT);
}

/// Requires the item's life to be exactly `life`: the condition of a compare-and-set.
pub(super) fn require_life(update: &mut Update, life: &SendLife) {
    let equal = |update: &mut Update, name: &str, value: AttributeValue| {
        let clause = update.compare(name, "=", value);
        update.require(clause);
    };
    equal(update, ATTEMPT, n(life.slot.attempt));
    equal(update, TRY_NO, n(life.slot.try_no));
    equal(update, TRANSIENT_RETRIES, n(life.transient_retries));
    equal(update, SUPPRESSED, AttributeValue::Bool(life.suppressed));
    match life.phase {
        Phase::Waiting { due } => {
            equal(update, PHASE, s(WAITING));
            equal(update, DUE, time(due));
        }
        Phase::Claimed { due } => {
            equal(update, PHASE, s(CLAIMED));
            equal(update, DUE, time(due));
        }
        Phase::InFlight { delivery, due } => {
            equal(update, PHASE, s(IN_FLIGHT));
            equal(update, DELIVERY_RANK, n(rank(delivery)));
            equal(update, DUE, time(due));
        }
        Phase::Succeeded { delivery } => {
            equal(update, PHASE, s(SUCCEEDED));
            equal(update, DELIVERY_RANK, n(rank(delivery)));
        }
        Phase::Final { reason } => {
            equal(update, PHASE, s(FINAL));
            equal(update, REASON, s(reason.as_str()));
        }
    }
}

/// A freshly claimed slot's history entry.
pub(super) fn claimed_attempt(at: DateTime<Utc>) -> AttributeValue {
    AttributeValue::M(HashMap::from([(CLAIMED_AT.to_owned(), time(at))]))
}

/// Typed reads of an item's attributes, naming the item when one is missing or malformed.
pub(super) struct Fields<'a> {
    item: &'a Item,
    what: &'a str,
}

impl<'a> Fields<'a> {
    pub fn new(item: &'a Item, what: &'a str) -> Self {
        Self { item, what }
    }

    fn corrupt(&self, name: &str, problem: &str) -> StoreError {
        StoreError::Corrupt(format!("{}: attribute {name} {problem}", self.what))
    }

    fn get(&self, name: &str) -> Result<&'a AttributeValue, StoreError> {
        self.item.get(name).ok_or_else(|| self.corrupt(name, "is missing"))
    }

    pub fn text(&self, name: &str) -> Result<&'a str, StoreError> {
        self.get(name)?.as_s().map(String::as_str).map_err(|_| self.corrupt(name, "is not a string"))
    }

    pub fn opt_text(&self, name: &str) -> Result<Option<&'a str>, StoreError> {
        self.item.contains_key(name).then(|| self.text(name)).transpose()
    }

    pub fn number<T: FromStr>(&self, name: &str) -> Result<T, StoreError> {
        let text = self.get(name)?.as_n().map_err(|_| self.corrupt(name, "is not a number"))?;
        text.parse().map_err(|_| self.corrupt(name, &format!("is out of range: {text}")))
    }

    pub fn opt_number<T: FromStr>(&self, name: &str) -> Result<Option<T>, StoreError> {
        self.item.contains_key(name).then(|| self.number(name)).transpose()
    }

    pub fn time(&self, name: &str) -> Result<DateTime<Utc>, StoreError> {
        let text = self.get(name)?.as_n().map_err(|_| self.corrupt(name, "is not a number"))?;
        parse_time_number(text).ok_or_else(|| self.corrupt(name, &format!("is not a time: {text}")))
    }

    pub fn opt_time(&self, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.item.contains_key(name).then(|| self.time(name)).transpose()
    }

    /// `expires_at`, in whole seconds.
    pub fn expires_at(&self) -> Result<DateTime<Utc>, StoreError> {
        let seconds: i64 = self.number(EXPIRES_AT)?;
        DateTime::from_timestamp(seconds, 0).ok_or_else(|| self.corrupt(EXPIRES_AT, "is out of range"))
    }

    pub fn flag(&self, name: &str) -> Result<bool, StoreError> {
        self.get(name)?.as_bool().copied().map_err(|_| self.corrupt(name, "is not a boolean"))
    }

    pub fn opt_flag(&self, name: &str) -> Result<Option<bool>, StoreError> {
        self.item.contains_key(name).then(|| self.flag(name)).transpose()
    }

    pub fn map(&self, name: &str) -> Result<&'a Item, StoreError> {
        self.get(name)?.as_m().map_err(|_| self.corrupt(name, "is not a map"))
    }
}

/// The partition key of an item, or an error naming what it should have been.
pub(super) fn pk_of(item: &Item) -> Result<&str, StoreError> {
    Fields::new(item, "an item").text(PK)
}

/// The partition key of a send's item (or of its entry in an index), and the send id in it.
pub(super) fn send_key_of(item: &Item) -> Result<(&str, SendId), StoreError> {
    let pk = pk_of(item)?;
    let id = keys::send_id_of(pk).ok_or_else(|| StoreError::Corrupt(format!("{pk:?} is not a send's key")))?;
    Ok((pk, id))
}

pub(super) fn decode_send(item: &Item) -> Result<SendRecord, StoreError> {
    let (pk, id) = send_key_of(item)?;
    let f = Fields::new(item, pk);
    let template = serde_json::from_str(f.text(TEMPLATE)?)
        .map_err(|e| StoreError::Corrupt(format!("{pk}: attribute {TEMPLATE} is not a template: {e}")))?;
    let category = f.text(CATEGORY)?.parse().map_err(|e: String| StoreError::Corrupt(format!("{pk}: {e}")))?;
    let mut attempts =
        f.map(ATTEMPTS)?.iter().map(|(key, value)| decode_attempt(pk, key, value)).collect::<Result<Vec<_>, _>>()?;
    attempts.sort_by_key(|attempt| attempt.slot);
    Ok(SendRecord {
        id,
        idempotency_key: f.text(IDEMPOTENCY_KEY)?.to_owned(),
        recipient: f.text(RECIPIENT)?.to_owned(),
        phone_number_id: f.text(PHONE_NUMBER_ID)?.to_owned(),
        template,
        category,
        campaign: f.opt_text(CAMPAIGN)?.map(str::to_owned),
        retry_until: f.opt_time(RETRY_UNTIL)?,
        utc_offset_minutes: f.opt_number(UTC_OFFSET)?,
        tier: f
            .opt_text(TIER)?
            .map(str::parse)
            .transpose()
            .map_err(|e: String| StoreError::Corrupt(format!("{pk}: {e}")))?,
        opt_in_source: f.opt_text(OPT_IN_SOURCE)?.map(str::to_owned),
        held_for_limit: f.opt_flag(HELD_FOR_LIMIT)?.unwrap_or(false),
        created_at: f.time(CREATED_AT)?,
        updated_at: f.time(UPDATED_AT)?,
        expires_at: f.expires_at()?,
        life: decode_life(&f)?,
        attempts,
    })
}

fn decode_life(f: &Fields) -> Result<SendLife, StoreError> {
    let delivery = || {
        let rank: u8 = f.number(DELIVERY_RANK)?;
        delivery_of_rank(rank).ok_or_else(|| f.corrupt(DELIVERY_RANK, &format!("is not a delivery: {rank}")))
    };
    let phase = match f.text(PHASE)? {
        WAITING => Phase::Waiting { due: f.time(DUE)? },
        CLAIMED => Phase::Claimed { due: f.time(DUE)? },
        IN_FLIGHT => Phase::InFlight { delivery: delivery()?, due: f.time(DUE)? },
        SUCCEEDED => Phase::Succeeded { delivery: delivery()? },
        FINAL => {
            let reason = f.text(REASON)?;
            let reason = FinalReason::deserialize(IntoDeserializer::<ValueError>::into_deserializer(reason))
                .map_err(|_| f.corrupt(REASON, &format!("is not a reason: {reason}")))?;
            Phase::Final { reason }
        }
        other => return Err(f.corrupt(PHASE, &format!("is not a phase: {other}"))),
    };
    Ok(SendLife {
        max_attempts: f.number(MAX_ATTEMPTS)?,
        slot: Slot { attempt: f.number(ATTEMPT)?, try_no: f.number(TRY_NO)? },
        transient_retries: f.number(TRANSIENT_RETRIES)?,
        suppressed: f.flag(SUPPRESSED)?,
        phase,
    })
}

fn decode_attempt(pk: &str, key: &str, value: &AttributeValue) -> Result<AttemptRecord, StoreError> {
    let what = format!("{pk} attempt {key}");
    let slot = parse_slot_key(key).ok_or_else(|| StoreError::Corrupt(format!("{what}: not a slot")))?;
    let map = value.as_m().map_err(|_| StoreError::Corrupt(format!("{what}: not a map")))?;
    let f = Fields::new(map, &what);
    let error = match f.opt_number(ERROR_CODE)? {
        Some(code) => Some(RecordedError { code, title: f.opt_text(ERROR_TITLE)?.map(str::to_owned) }),
        None => None,
    };
    Ok(AttemptRecord {
        slot,
        claimed_at: f.time(CLAIMED_AT)?,
        wamid: f.opt_text(WAMID)?.map(str::to_owned),
        accepted_at: f.opt_time(ACCEPTED_AT)?,
        sent_at: f.opt_time(SENT_AT)?,
        delivered_at: f.opt_time(DELIVERED_AT)?,
        read_at: f.opt_time(READ_AT)?,
        failed_at: f.opt_time(FAILED_AT)?,
        error,
        paced_at: f.opt_time(PACED_AT)?,
    })
}

/// A wamid item's link and parked statuses; `None` when it holds parked statuses alone.
pub(super) fn decode_wamid(item: &Item) -> Result<Option<WamidEntry>, StoreError> {
    let pk = pk_of(item)?;
    let f = Fields::new(item, pk);
    let Some(send_id) = f.opt_text(LINK_SEND_ID)? else {
        return Ok(None);
    };
    let slot = f.text(LINK_SLOT)?;
    let link = WamidLink {
        send_id: send_id.to_owned().try_into().map_err(|e: String| StoreError::Corrupt(format!("{pk}: {e}")))?,
        slot: parse_slot_key(slot).ok_or_else(|| f.corrupt(LINK_SLOT, &format!("is not a slot: {slot}")))?,
    };
    Ok(Some(WamidEntry { link, parked: decode_parked(item)? }))
}

/// The statuses parked in a wamid item, in arrival order.
pub(super) fn decode_parked(item: &Item) -> Result<Vec<StatusUpdate>, StoreError> {
    let pk = pk_of(item)?;
    let Some(list) = item.get(PARKED) else {
        return Ok(Vec::new());
    };
    let list = list.as_l().map_err(|_| Fields::new(item, pk).corrupt(PARKED, "is not a list"))?;
    list.iter()
        .map(|entry| {
            let text = entry.as_s().map_err(|_| Fields::new(item, pk).corrupt(PARKED, "holds a non-string"))?;
            serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{pk}: a parked status: {e}")))
        })
        .collect()
}

/// A status as a parked list's entry.
pub(super) fn encode_parked(update: &StatusUpdate) -> Result<AttributeValue, StoreError> {
    serde_json::to_string(update).map(s).map_err(|e| StoreError::Corrupt(format!("cannot encode a parked status: {e}")))
}

/// A string set attribute's members; none when the attribute is missing.
pub(super) fn string_set<'a>(item: &'a Item, name: &str, what: &str) -> Result<Vec<&'a str>, StoreError> {
    match item.get(name) {
        None => Ok(Vec::new()),
        Some(value) => Ok(value
            .as_ss()
            .map_err(|_| Fields::new(item, what).corrupt(name, "is not a string set"))?
            .iter()
            .map(String::as_str)
            .collect()),
    }
}

/// A recipient's record as of `now`; deliveries older than the retention are left out.
pub(super) fn decode_recipient(
    recipient: &str,
    item: &Item,
    now: DateTime<Utc>,
    retention: TimeDelta,
) -> Result<RecipientRecord, StoreError> {
    let pk = pk_of(item)?;
    let f = Fields::new(item, pk);
    let mut deliveries = delivery_times(item, pk)?
        .into_iter()
        .map(|(_, at)| at)
        .filter(|at| alive(expiry(*at, retention), now))
        .collect::<Vec<_>>();
    deliveries.sort();
    Ok(RecipientRecord {
        recipient: recipient.to_owned(),
        opted_out: f.opt_flag(OPTED_OUT)?.unwrap_or(false),
        opt_changed_at: f.opt_time(OPT_CHANGED_AT)?,
        last_inbound_at: f.opt_time(LAST_INBOUND_AT)?,
        last_read_at: f.opt_time(LAST_READ_AT)?,
        marketing_deliveries: deliveries,
        consecutive_caps: u32::try_from(string_set(item, CAPS, pk)?.len()).unwrap_or(u32::MAX),
        numbers: string_set(item, NUMBERS, pk)?.into_iter().map(str::to_owned).collect(),
        consent: consent_history(item, pk)?,
        contacted_at: f.opt_time(CONTACTED_AT)?,
    })
}

/// Every `consent#…` attribute of a recipient item, oldest first.
fn consent_history(item: &Item, pk: &str) -> Result<Vec<ConsentEvent>, StoreError> {
    let f = Fields::new(item, pk);
    let mut history = item
        .keys()
        .filter(|name| name.starts_with(CONSENT_PREFIX))
        .map(|name| serde_json::from_str::<ConsentEvent>(f.text(name)?).map_err(|e| f.corrupt(name, &e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    history.sort_by(|a, b| (a.at, a.change, &a.source).cmp(&(b.at, b.change, &b.source)));
    Ok(history)
}

/// Every `delivered#<send id>` attribute of a recipient item, with its time.
pub(super) fn delivery_times<'a>(item: &'a Item, pk: &str) -> Result<Vec<(&'a str, DateTime<Utc>)>, StoreError> {
    let f = Fields::new(item, pk);
    item.keys()
        .filter(|name| name.starts_with(DELIVERED_PREFIX))
        .map(|name| Ok((name.as_str(), f.time(name)?)))
        .collect()
}

/// A hold item's attributes, but for its keys and expiry.
pub(super) fn hold_attributes(key: &HoldKey, hold: &Hold) -> Item {
    let mut item = HashMap::from([
        (HOLD_CODE.to_owned(), n(hold.code)),
        (HOLD_SINCE.to_owned(), time(hold.since)),
        (HOLD_PROBE_AT.to_owned(), time(hold.probe_at)),
    ]);
    match key {
        HoldKey::Sender { phone_number_id } => {
            item.insert(HOLD_NUMBER.to_owned(), s(phone_number_id.as_str()));
        }
        HoldKey::Template { phone_number_id, name, language } => {
            item.insert(HOLD_NUMBER.to_owned(), s(phone_number_id.as_str()));
            item.insert(HOLD_TEMPLATE.to_owned(), s(name.as_str()));
            item.insert(HOLD_LANGUAGE.to_owned(), s(language.as_str()));
        }
    }
    item
}

pub(super) fn decode_hold(item: &Item) -> Result<(HoldKey, Hold), StoreError> {
    let f = Fields::new(item, "a hold");
    let phone_number_id = f.text(HOLD_NUMBER)?.to_owned();
    let key = match (f.opt_text(HOLD_TEMPLATE)?, f.opt_text(HOLD_LANGUAGE)?) {
        (Some(name), Some(language)) => {
            HoldKey::Template { phone_number_id, name: name.to_owned(), language: language.to_owned() }
        }
        _ => HoldKey::Sender { phone_number_id },
    };
    Ok((key, Hold { code: f.number(HOLD_CODE)?, since: f.time(HOLD_SINCE)?, probe_at: f.time(HOLD_PROBE_AT)? }))
}

#[cfg(test)]
mod tests;
