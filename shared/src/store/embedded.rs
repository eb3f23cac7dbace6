//! The embedded adapter of the state port: [`SendStore`](super::SendStore) on a redb file, for the
//! local stack.
//!
//! `capguard serve` and `capguard demo` keep their sends, recipients and holds here instead of
//! DynamoDB, in one file that survives a restart. Every change reads the item, applies the
//! domain's rule ([`SendLife::apply`](crate::domain::lifecycle::SendLife::apply) for a send) and
//! writes back only if something changed, on the one writer thread, which runs the changes one
//! after the other and commits the ones queued together in one redb transaction before answering
//! any of them ([`writer`]: group commit). So the read and the write of a transition cannot
//! interleave with another's: that is what grants a claim to exactly one caller, where DynamoDB
//! needs a condition expression; and a change that was answered is durable.
//!
//! Values are JSON. Besides the items themselves, index tables serve the port's other access
//! patterns without scans (a wamid's send, a recipient's waiting sends, a campaign's sends in
//! recording order, the unfinished sends by due time), each kept in step in the same transaction
//! as the send it indexes. The local scheduler and the local queue keep their own tables in the
//! same file, and write them through the same writer ([`StoreFile`]).
//!
//! Items expire after the retention, measured on the callers' clock rather than the wall's: the
//! demo and the tests run on clocks far from the wall, and would otherwise find their data expired
//! the moment they wrote it. The store remembers the latest time a write was made at, and reads
//! treat an item whose `expires_at` is not after that time as absent.

mod holds;
mod limits;
mod listings;
mod numbers;
mod recipients;
mod sends;
mod templates;
mod wamids;
mod writer;

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use writer::{Write, Writer};

use super::{
    AttemptRecord, Hold, HoldKey, Linked, NewSend, PARK_TIME, Page, RecipientRecord, Recorded, RecordedError, SendId,
    SendRecord, Start, StatusUpdate, StoreError, WaitingSend, WamidEntry, WamidLink,
};
use crate::domain::lifecycle::{Delivery, Effect, Input, Phase, Slot};
use crate::domain::verdict::{FinalReason, Verdict};

/// Send id → [`SendRecord`].
const SENDS: TableDefinition<&str, &[u8]> = TableDefinition::new("store.sends");
/// Wamid → [`StoredWamid`]: its link, and the statuses parked under it. A link has no expiry of
/// its own: it lives as long as its send.
const WAMIDS: TableDefinition<&str, &[u8]> = TableDefinition::new("store.wamids");
/// (recipient, send id) for every send waiting for a slot after its first.
const WAITING: TableDefinition<(&str, &str), ()> = TableDefinition::new("store.waiting");
/// (due time in nanoseconds, send id) for every unfinished send: what a sweep reads.
const DUE: TableDefinition<(i128, &str), ()> = TableDefinition::new("store.due");
/// (campaign, `created_at` in nanoseconds, send id) for every send of a campaign: recording order.
const CAMPAIGNS: TableDefinition<(&str, i128, &str), ()> = TableDefinition::new("store.campaigns");
/// Recipient → [`Expiring`] [`StoredRecipient`].
const RECIPIENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("store.recipients");
/// Send id → [`Expiring`] `()`: the marketing deliveries already counted on their recipient, since
/// a delivered status may be reported more than once.
const COUNTED_DELIVERIES: TableDefinition<&str, &[u8]> = TableDefinition::new("store.counted_deliveries");
/// [`HoldKey`] as JSON → [`Expiring`] [`Hold`].
const HOLDS: TableDefinition<&str, &[u8]> = TableDefinition::new("store.holds");
/// [`limits::limit_key`] → [`Expiring`] messaging limit count (and Meta's last report).
const LIMIT: TableDefinition<&str, &[u8]> = TableDefinition::new("store.limit");
/// Display number → [`Expiring`] [`crate::domain::quality::BusinessNumber`].
const NUMBERS: TableDefinition<&str, &[u8]> = TableDefinition::new("store.numbers");
/// `<name>#<language>` → [`Expiring`] [`crate::domain::template::TemplateRecord`].
const TEMPLATES: TableDefinition<&str, &[u8]> = TableDefinition::new("store.templates");
/// [`CLOCK_KEY`] → the latest time a write was made at, as JSON: the store's "now" for expiry.
const CLOCK: TableDefinition<&str, &[u8]> = TableDefinition::new("store.clock");
const CLOCK_KEY: &str = "latest";

/// A value that carries no `expires_at` of its own, stored with one.
#[derive(Serialize, Deserialize)]
struct Expiring<T> {
    expires_at: DateTime<Utc>,
    value: T,
}

/// A wamid's entry: its link once known, and until then the statuses that came for it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredWamid {
    #[serde(flatten)]
    link: Option<WamidLink>,
    #[serde(default)]
    parked: Vec<StatusUpdate>,
    /// Until when parked statuses wait for a link that never came; unset once linked.
    #[serde(default)]
    parked_until: Option<DateTime<Utc>>,
}

/// A recipient as stored: the record, and which capped attempts its count holds (so that a
/// redelivered failure is not counted twice).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct StoredRecipient {
    #[serde(flatten)]
    record: RecipientRecord,
    #[serde(default)]
    counted_caps: std::collections::BTreeSet<String>,
}

/// The state port on an embedded, file-backed redb database.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: Arc<Writer>,
    retention: TimeDelta,
}

/// The store's file as its neighbours use it (the local scheduler's timers, the local queue's
/// chunks, each in tables of their own): the database for reads, and the store's writer for
/// writes. A neighbour's write thus shares the store's group commits, instead of holding the
/// file's one write lock through a durable commit of its own while the store's writes wait.
#[derive(Clone)]
pub struct StoreFile {
    db: Arc<Database>,
    writer: Arc<Writer>,
}

impl std::fmt::Debug for StoreFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreFile").finish_non_exhaustive()
    }
}

impl StoreFile {
    /// Opens the file at `path` for neighbours alone, creating it if missing: the timers and the
    /// queue of a stack whose store is elsewhere (DynamoDB).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Arc::new(Database::create(path)?);
        // Only neighbours write here, and no item of theirs expires: no retention applies.
        let writer = Arc::new(Writer::start(Arc::clone(&db), TimeDelta::zero())?);
        Ok(Self { db, writer })
    }

    /// The database, for reads (and for creating a table once, at start).
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Runs `op` in one of the writer's transactions and answers once that transaction is
    /// committed: durable, as every store write. `op` may run more than once, each time in a
    /// fresh transaction, when a write grouped with it failed.
    pub async fn write<T: Send + 'static>(
        &self,
        mut op: impl FnMut(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        // Made at the epoch, so that the store's time stays as it is.
        self.writer.write(DateTime::UNIX_EPOCH, move |w| op(w.tx)).await
    }
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").field("retention", &self.retention).finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens the store in the file at `path`, creating the file and its tables if missing. Items
    /// are kept for `retention` after their last write.
    pub fn open(path: &Path, retention: TimeDelta) -> Result<Self, StoreError> {
        let db = Database::create(path)?;
        // Read transactions cannot create tables, and every read must find its table.
        let tx = db.begin_write()?;
        tx.open_table(SENDS)?;
        tx.open_table(WAMIDS)?;
        tx.open_table(WAITING)?;
        tx.open_table(DUE)?;
        tx.open_table(CAMPAIGNS)?;
        tx.open_table(RECIPIENTS)?;
        tx.open_table(COUNTED_DELIVERIES)?;
        tx.open_table(HOLDS)?;
        tx.open_table(LIMIT)?;
        tx.open_table(NUMBERS)?;
        tx.open_table(TEMPLATES)?;
        tx.open_table(CLOCK)?;
        tx.commit()?;
        let db = Arc::new(db);
        let writer = Arc::new(Writer::start(Arc::clone(&db), retention)?);
        Ok(Self { db, writer, retention })
    }

    /// The file, for a neighbour that keeps its own tables in it (redb allows one open handle
    /// per file): its writes then share the store's group commits.
    pub fn file(&self) -> StoreFile {
        StoreFile { db: Arc::clone(&self.db), writer: Arc::clone(&self.writer) }
    }

    /// Runs `op` on a read snapshot with the store's current time, on the caller's thread: for
    /// reads of an item or a few, which take microseconds, less than a hop to the blocking pool
    /// and back would (measured: the local pipeline moved about 10 % more sends with its point
    /// reads here, for a tenth less CPU).
    async fn read<T>(
        &self,
        op: impl FnOnce(&ReadTransaction, DateTime<Utc>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        snapshot(&self.db, op)
    }

    /// [`EmbeddedStore::read`] on the blocking pool, for a scan that may take milliseconds (a
    /// campaign's page, the sweep's listing), which must not hold up an async worker.
    async fn scan<T: Send + 'static>(
        &self,
        op: impl FnOnce(&ReadTransaction, DateTime<Utc>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = Arc::clone(&self.db);
        blocking(move || snapshot(&db, op)).await
    }

    /// Runs `op` as one write made at `at`: alone, and answered once it is durable (see
    /// [`writer`]: it shares its commit with the writes queued beside it). `op` calls
    /// [`Write::keep`] when it changed something; it may run more than once, against the store as
    /// it then is, when a write grouped with it failed.
    async fn write<T: Send + 'static>(
        &self,
        at: DateTime<Utc>,
        op: impl FnMut(&Write<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.writer.write(at, op).await
    }

    /// Applies `step` to the send `id` in one write, and saves the send only if `step`
    /// changed it.
    async fn change_send(
        &self,
        id: &SendId,
        at: DateTime<Utc>,
        mut step: impl FnMut(&mut SendRecord) -> Effect + Send + 'static,
    ) -> Result<Option<SendRecord>, StoreError> {
        let id = id.clone();
        self.write(at, move |w| Self::change_send_in(w, &id, at, &mut step)).await
    }

    /// [`EmbeddedStore::change_send`] in the open transaction.
    fn change_send_in(
        w: &Write<'_>,
        id: &SendId,
        at: DateTime<Utc>,
        step: impl FnOnce(&mut SendRecord) -> Effect,
    ) -> Result<Option<SendRecord>, StoreError> {
        let Some(mut send) = load_send(&w.tx.open_table(SENDS)?, id.as_str(), w.now)? else {
            return Ok(None);
        };
        let before = send.clone();
        if step(&mut send) == Effect::Unchanged {
            return Ok(None);
        }
        save_changed(w, &mut send, &before, at)?;
        w.keep();
        Ok(Some(send))
    }

    /// Applies `change` to the recipient's record in one write, and saves the record
    /// only if it changed. Returns what `change` returns.
    async fn change_recipient<T: Send + 'static>(
        &self,
        recipient: &str,
        at: DateTime<Utc>,
        mut change: impl FnMut(&Write<'_>, &mut StoredRecipient) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let recipient = recipient.to_owned();
        self.write(at, move |w| Self::change_recipient_in(w, &recipient, &mut change)).await
    }

    /// [`EmbeddedStore::change_recipient`] in the open transaction.
    fn change_recipient_in<T>(
        w: &Write<'_>,
        recipient: &str,
        change: impl FnOnce(&Write<'_>, &mut StoredRecipient) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let before = load_recipient(&w.tx.open_table(RECIPIENTS)?, recipient, w.now, w.retention)?;
        let mut stored = before.clone();
        let result = change(w, &mut stored)?;
        if stored != before {
            stored.record.consecutive_caps = u32::try_from(stored.counted_caps.len()).unwrap_or(u32::MAX);
            let stored = Expiring { expires_at: w.expires_at(), value: &stored };
            w.tx.open_table(RECIPIENTS)?.insert(recipient, encode(&stored)?.as_slice())?;
            w.keep();
        }
        Ok(result)
    }

    /// Links `wamid` to `link` in the open transaction, keeping any parked statuses; returns them.
    fn link(w: &Write, wamid: &str, link: &WamidLink) -> Result<Vec<StatusUpdate>, StoreError> {
        let mut wamids = w.tx.open_table(WAMIDS)?;
        let mut entry: StoredWamid = decode(&wamids, wamid)?.unwrap_or_default();
        entry.link = Some(link.clone());
        entry.parked_until = None;
        wamids.insert(wamid, encode(&entry)?.as_slice())?;
        Ok(entry.parked)
    }
}

/// Where a campaign page ends: the index key of its last send, handed out as the next page's token.
struct PagePosition {
    nanos: i128,
    id: SendId,
}

impl PagePosition {
    fn of(send: &SendRecord) -> Self {
        Self { nanos: instant_key(send.created_at), id: send.id.clone() }
    }

    fn token(&self) -> String {
        format!("{}.{}", self.nanos, self.id)
    }

    fn parse(token: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::BadPageToken(token.to_owned());
        let (nanos, id) = token.split_once('.').ok_or_else(bad)?;
        Ok(Self { nanos: nanos.parse().map_err(|_| bad())?, id: SendId::try_from(id.to_owned()).map_err(|_| bad())? })
    }
}

/// Runs `op` on a new read snapshot, with the store's current time.
fn snapshot<T>(
    db: &Database,
    op: impl FnOnce(&ReadTransaction, DateTime<Utc>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = db.begin_read()?;
    let now = latest_write(&tx.open_table(CLOCK)?)?;
    op(&tx, now)
}

/// Runs blocking redb work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|failed| StoreError::Unavailable(format!("a store task did not finish: {failed}")))?
}

fn load_send(
    sends: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Option<SendRecord>, StoreError> {
    let send: Option<SendRecord> = decode(sends, id)?;
    Ok(send.filter(|send| alive(send.expires_at, now)))
}

/// Saves a send that changed at `at` from `before`: its expiry pushed on, its index entries in
/// step.
fn save_changed(w: &Write, send: &mut SendRecord, before: &SendRecord, at: DateTime<Utc>) -> Result<(), StoreError> {
    // A webhook may report an older time than the send's last change.
    send.updated_at = send.updated_at.max(at);
    send.expires_at = w.expires_at();
    save_send(w.tx, send, Some(before))
}

/// Writes the send and brings its waiting and due entries in step with its phase (`before` is
/// the send as stored until now, if it was).
fn save_send(tx: &WriteTransaction, send: &SendRecord, before: Option<&SendRecord>) -> Result<(), StoreError> {
    tx.open_table(SENDS)?.insert(send.id.as_str(), encode(send)?.as_slice())?;
    let mut waiting = tx.open_table(WAITING)?;
    let key = (send.recipient.as_str(), send.id.as_str());
    // As in DynamoDB's waiting index: the sends waiting for a slot after their first.
    if matches!(send.life.phase, Phase::Waiting { .. }) && send.life.slot != Slot::FIRST {
        waiting.insert(key, ())?;
    } else {
        waiting.remove(key)?;
    }
    let (was, next) = (before.and_then(|before| before.life.phase.due()), send.life.phase.due());
    if was == next {
        return Ok(());
    }
    let mut due = tx.open_table(DUE)?;
    if let Some(was) = was {
        due.remove((instant_key(was), send.id.as_str()))?;
    }
    if let Some(next) = next {
        due.insert((instant_key(next), send.id.as_str()), ())?;
    }
    Ok(())
}

/// Removes the index entries of a send that outlived its retention, before its id is recorded
/// afresh: they would list the new send at the old one's place, or lead an old wamid to it.
fn forget(tx: &WriteTransaction, send: &SendRecord) -> Result<(), StoreError> {
    tx.open_table(WAITING)?.remove((send.recipient.as_str(), send.id.as_str()))?;
    if let Some(due) = send.life.phase.due() {
        tx.open_table(DUE)?.remove((instant_key(due), send.id.as_str()))?;
    }
    if let Some(campaign) = &send.campaign {
        tx.open_table(CAMPAIGNS)?.remove((campaign.as_str(), instant_key(send.created_at), send.id.as_str()))?;
    }
    let mut wamids = tx.open_table(WAMIDS)?;
    for wamid in send.attempts.iter().filter_map(|attempt| attempt.wamid.as_deref()) {
        wamids.remove(wamid)?;
    }
    Ok(())
}

/// The recipient as of `now`: the default if never seen or expired, and only the marketing
/// deliveries within the retention.
fn load_recipient(
    recipients: &impl ReadableTable<&'static str, &'static [u8]>,
    recipient: &str,
    now: DateTime<Utc>,
    retention: TimeDelta,
) -> Result<StoredRecipient, StoreError> {
    let stored: Option<Expiring<StoredRecipient>> = decode(recipients, recipient)?;
    let mut stored = match stored {
        Some(stored) if alive(stored.expires_at, now) => stored.value,
        _ => StoredRecipient {
            record: RecipientRecord { recipient: recipient.to_owned(), ..RecipientRecord::default() },
            ..StoredRecipient::default()
        },
    };
    stored.record.marketing_deliveries.retain(|&delivered| alive(after(delivered, retention), now));
    Ok(stored)
}

/// What names one capped attempt among a recipient's counted caps.
fn cap_token(send: &SendId, attempt: u32) -> String {
    format!("{send}#{attempt}")
}

fn attempt_mut(send: &mut SendRecord, slot: Slot) -> Option<&mut AttemptRecord> {
    send.attempts.iter_mut().find(|attempt| attempt.slot == slot)
}

fn delivery_time(attempt: &mut AttemptRecord, delivery: Delivery) -> &mut Option<DateTime<Utc>> {
    match delivery {
        Delivery::Accepted => &mut attempt.accepted_at,
        Delivery::Sent => &mut attempt.sent_at,
        Delivery::Delivered => &mut attempt.delivered_at,
        Delivery::Read => &mut attempt.read_at,
    }
}

/// The store's time: the latest time a write was made at.
fn latest_write(clock: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<DateTime<Utc>, StoreError> {
    Ok(decode(clock, CLOCK_KEY)?.unwrap_or(DateTime::<Utc>::MIN_UTC))
}

fn alive(expires_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    expires_at > now
}

fn after(at: DateTime<Utc>, span: TimeDelta) -> DateTime<Utc> {
    at.checked_add_signed(span).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// An instant as an index key that sorts in time order, to the nanosecond.
fn instant_key(at: DateTime<Utc>) -> i128 {
    i128::from(at.timestamp()) * 1_000_000_000 + i128::from(at.timestamp_subsec_nanos())
}

fn decode<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, StoreError> {
    let Some(bytes) = table.get(key)? else {
        return Ok(None);
    };
    serde_json::from_slice(bytes.value()).map(Some).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(format!("cannot encode an item: {e}")))
}

fn encode_text<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("cannot encode a key: {e}")))
}

// Every redb failure means the same to a caller: the store failed, and the call may be retried.

impl From<redb::DatabaseError> for StoreError {
    fn from(error: redb::DatabaseError) -> Self {
        Self::Unavailable(error.to_string())
    }
}

impl From<redb::TransactionError> for StoreError {
    fn from(error: redb::TransactionError) -> Self {
        Self::Unavailable(error.to_string())
    }
}

impl From<redb::TableError> for StoreError {
    fn from(error: redb::TableError) -> Self {
        Self::Unavailable(error.to_string())
    }
}

impl From<redb::StorageError> for StoreError {
    fn from(error: redb::StorageError) -> Self {
        Self::Unavailable(error.to_string())
    }
}

impl From<redb::CommitError> for StoreError {
    fn from(error: redb::CommitError) -> Self {
        Self::Unavailable(error.to_string())
    }
}

#[cfg(test)]
mod tests;
