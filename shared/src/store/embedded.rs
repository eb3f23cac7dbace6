//! The embedded adapter of the state port: [`SendStore`] on a redb file, for the local stack.
//!
//! `capguard serve` and `capguard demo` keep their sends, recipients and holds here instead of
//! DynamoDB, in one file that survives a restart. Every change is one redb write transaction that
//! reads the item, applies the domain's rule ([`SendLife::apply`] for a send) and writes back only
//! if something changed. redb runs one write transaction at a time, so the read and the write of a
//! transition cannot interleave with another's: that is what grants a claim to exactly one caller,
//! where DynamoDB needs a condition expression.
//!
//! Values are JSON. Besides the items themselves, index tables serve the port's other access
//! patterns without scans (a wamid's send, a recipient's waiting sends, a campaign's sends in
//! recording order, the unfinished sends by due time), each kept in step in the same transaction
//! as the send it indexes. The local scheduler keeps its own table in the same file, through
//! [`EmbeddedStore::database`].
//!
//! Items expire after the retention, measured on the callers' clock rather than the wall's: the
//! demo and the tests run on clocks far from the wall, and would otherwise find their data expired
//! the moment they wrote it. The store remembers the latest time a write was made at, and reads
//! treat an item whose `expires_at` is not after that time as absent.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{
    AttemptRecord, Hold, HoldKey, Linked, NewSend, PARK_TIME, Page, RecipientRecord, Recorded, RecordedError, SendId,
    SendRecord, SendStore, Start, StatusUpdate, StoreError, WaitingSend, WamidEntry, WamidLink,
};
use crate::domain::lifecycle::{Delivery, Effect, Input, Phase, SendLife, Slot};
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
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    retention: TimeDelta,
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
        tx.open_table(CLOCK)?;
        tx.commit()?;
        Ok(Self { db: Arc::new(db), retention })
    }

    /// The database itself, for a neighbour that keeps its own tables in the same file (redb
    /// allows one open handle per file).
    pub fn database(&self) -> Arc<Database> {
        Arc::clone(&self.db)
    }

    /// Runs `op` on a read snapshot, on the blocking pool, with the store's current time.
    async fn read<T: Send + 'static>(
        &self,
        op: impl FnOnce(&ReadTransaction, DateTime<Utc>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = Arc::clone(&self.db);
        blocking(move || {
            let tx = db.begin_read()?;
            let now = latest_write(&tx.open_table(CLOCK)?)?;
            op(&tx, now)
        })
        .await
    }

    /// Runs `op` in one write transaction made at `at`, on the blocking pool. `op` commits what it
    /// changed; dropping the transaction uncommitted leaves the store as it was.
    async fn write<T: Send + 'static>(
        &self,
        at: DateTime<Utc>,
        op: impl FnOnce(Write) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = Arc::clone(&self.db);
        let retention = self.retention;
        blocking(move || {
            let tx = db.begin_write()?;
            let now = {
                let mut clock = tx.open_table(CLOCK)?;
                // Webhooks report times in the past: the store's time never goes back.
                let now = latest_write(&clock)?.max(at);
                clock.insert(CLOCK_KEY, encode(&now)?.as_slice())?;
                now
            };
            op(Write { tx, now, retention })
        })
        .await
    }

    /// Applies `step` to the send `id` in one write transaction, and saves the send only if `step`
    /// changed it.
    async fn change_send(
        &self,
        id: &SendId,
        at: DateTime<Utc>,
        step: impl FnOnce(&mut SendRecord) -> Effect + Send + 'static,
    ) -> Result<Option<SendRecord>, StoreError> {
        let id = id.clone();
        self.write(at, move |w| {
            let Some(mut send) = load_send(&w.tx.open_table(SENDS)?, id.as_str(), w.now)? else {
                return Ok(None);
            };
            let before = send.clone();
            if step(&mut send) == Effect::Unchanged {
                return Ok(None);
            }
            save_changed(&w, &mut send, &before, at)?;
            w.tx.commit()?;
            Ok(Some(send))
        })
        .await
    }

    /// Applies `change` to the recipient's record in one write transaction, and saves the record
    /// only if it changed. Returns what `change` returns.
    async fn change_recipient<T: Send + 'static>(
        &self,
        recipient: &str,
        at: DateTime<Utc>,
        change: impl FnOnce(&Write, &mut StoredRecipient) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let recipient = recipient.to_owned();
        self.write(at, move |w| {
            let before = load_recipient(&w.tx.open_table(RECIPIENTS)?, &recipient, w.now, w.retention)?;
            let mut stored = before.clone();
            let result = change(&w, &mut stored)?;
            if stored != before {
                stored.record.consecutive_caps = u32::try_from(stored.counted_caps.len()).unwrap_or(u32::MAX);
                let stored = Expiring { expires_at: w.expires_at(), value: &stored };
                w.tx.open_table(RECIPIENTS)?.insert(recipient.as_str(), encode(&stored)?.as_slice())?;
                w.tx.commit()?;
            }
            Ok(result)
        })
        .await
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

/// An open write transaction, and the store's time as of it.
struct Write {
    tx: WriteTransaction,
    now: DateTime<Utc>,
    retention: TimeDelta,
}

impl Write {
    fn expires_at(&self) -> DateTime<Utc> {
        after(self.now, self.retention)
    }
}

impl SendStore for EmbeddedStore {
    async fn record_send(&self, send: &NewSend, start: Start, now: DateTime<Utc>) -> Result<Recorded, StoreError> {
        let new = send.clone();
        self.write(now, move |w| {
            let id = new.id();
            let found: Option<SendRecord> = decode(&w.tx.open_table(SENDS)?, id.as_str())?;
            match found {
                Some(send) if alive(send.expires_at, w.now) => return Ok(Recorded { send, created: false }),
                Some(expired) => forget(&w.tx, &expired)?,
                None => {}
            }
            let life = match start {
                Start::Due(due) => SendLife::new(new.max_attempts, due),
                Start::Refuse(reason) => SendLife::refused(new.max_attempts, reason),
            };
            let send = SendRecord {
                id,
                idempotency_key: new.idempotency_key,
                recipient: new.recipient,
                phone_number_id: new.phone_number_id,
                template: new.template,
                category: new.category,
                campaign: new.campaign,
                created_at: now,
                updated_at: now,
                expires_at: w.expires_at(),
                life,
                attempts: Vec::new(),
            };
            if let Some(campaign) = &send.campaign {
                let key = (campaign.as_str(), instant_key(send.created_at), send.id.as_str());
                w.tx.open_table(CAMPAIGNS)?.insert(key, ())?;
            }
            save_send(&w.tx, &send, None)?;
            w.tx.commit()?;
            Ok(Recorded { send, created: true })
        })
        .await
    }

    async fn get_send(&self, id: &SendId) -> Result<Option<SendRecord>, StoreError> {
        let id = id.clone();
        self.read(move |tx, now| load_send(&tx.open_table(SENDS)?, id.as_str(), now)).await
    }

    async fn claim(
        &self,
        id: &SendId,
        slot: Slot,
        now: DateTime<Utc>,
        settle_by: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError> {
        self.change_send(id, now, move |send| {
            let effect = send.life.apply(Input::Claim(slot, settle_by));
            if let Effect::Send(slot) = effect {
                send.attempts.push(claimed(slot, now));
            }
            effect
        })
        .await
    }

    async fn record_accepted(
        &self,
        id: &SendId,
        slot: Slot,
        wamid: &str,
        now: DateTime<Utc>,
    ) -> Result<Linked, StoreError> {
        let (id, wamid) = (id.clone(), wamid.to_owned());
        self.write(now, move |w| {
            let Some(mut send) = load_send(&w.tx.open_table(SENDS)?, id.as_str(), w.now)? else {
                return Ok(Linked { send: None, parked: Vec::new() });
            };
            // Linked even when a webhook has already moved the send on (the answer came late): a
            // later webhook naming only this wamid must still find its send.
            let parked = Self::link(&w, &wamid, &WamidLink { send_id: send.id.clone(), slot })?;
            let before = send.clone();
            let changed = send.life.apply(Input::Accepted(slot, now)) != Effect::Unchanged;
            if changed {
                if let Some(attempt) = attempt_mut(&mut send, slot) {
                    attempt.wamid = Some(wamid);
                    attempt.accepted_at = Some(now);
                }
                save_changed(&w, &mut send, &before, now)?;
            }
            w.tx.commit()?;
            Ok(Linked { send: changed.then_some(send), parked })
        })
        .await
    }

    async fn find_by_wamid(&self, wamid: &str) -> Result<Option<WamidEntry>, StoreError> {
        let wamid = wamid.to_owned();
        self.read(move |tx, now| {
            let Some(StoredWamid { link: Some(link), parked, .. }) = decode(&tx.open_table(WAMIDS)?, &wamid)? else {
                return Ok(None);
            };
            let send = load_send(&tx.open_table(SENDS)?, link.send_id.as_str(), now)?;
            Ok(send.map(|_| WamidEntry { link, parked }))
        })
        .await
    }

    async fn link_wamid(
        &self,
        wamid: &str,
        link: &WamidLink,
        now: DateTime<Utc>,
    ) -> Result<Vec<StatusUpdate>, StoreError> {
        let (wamid, link) = (wamid.to_owned(), link.clone());
        self.write(now, move |w| {
            let parked = Self::link(&w, &wamid, &link)?;
            w.tx.commit()?;
            Ok(parked)
        })
        .await
    }

    async fn park_status(
        &self,
        wamid: &str,
        update: &StatusUpdate,
        now: DateTime<Utc>,
    ) -> Result<Option<WamidEntry>, StoreError> {
        let (wamid, update) = (wamid.to_owned(), update.clone());
        self.write(now, move |w| {
            let mut wamids = w.tx.open_table(WAMIDS)?;
            let mut entry: StoredWamid = decode(&wamids, &wamid)?.unwrap_or_default();
            if let Some(link) = entry.link {
                return Ok(Some(WamidEntry { link, parked: entry.parked }));
            }
            if entry.parked_until.is_some_and(|until| !alive(until, w.now)) {
                entry.parked.clear();
            }
            if !entry.parked.contains(&update) {
                entry.parked.push(update);
            }
            entry.parked_until = Some(after(w.now, PARK_TIME));
            wamids.insert(wamid.as_str(), encode(&entry)?.as_slice())?;
            drop(wamids);
            w.tx.commit()?;
            Ok(None)
        })
        .await
    }

    async fn record_status(
        &self,
        id: &SendId,
        slot: Slot,
        delivery: Delivery,
        at: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError> {
        self.change_send(id, at, move |send| {
            let effect = send.life.apply(Input::Status(slot, delivery, at));
            if effect != Effect::Unchanged
                && let Some(attempt) = attempt_mut(send, slot)
            {
                *delivery_time(attempt, delivery) = Some(at);
            }
            effect
        })
        .await
    }

    async fn record_failure(
        &self,
        id: &SendId,
        slot: Slot,
        error: &RecordedError,
        verdict: Verdict,
        at: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError> {
        let error = error.clone();
        self.change_send(id, at, move |send| {
            let effect = send.life.apply(Input::Failed(slot, verdict));
            if effect != Effect::Unchanged
                && let Some(attempt) = attempt_mut(send, slot)
            {
                attempt.failed_at = Some(at);
                attempt.error = Some(error);
            }
            effect
        })
        .await
    }

    async fn reschedule(
        &self,
        id: &SendId,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError> {
        self.change_send(id, now, move |send| {
            // Only a hold pushes a send later; a reply can only bring it forward.
            let input = match send.life.phase {
                Phase::Waiting { due: current } if due > current => Input::Replan(due),
                _ => Input::Reply(due),
            };
            send.life.apply(input)
        })
        .await
    }

    async fn finish_waiting(
        &self,
        id: &SendId,
        reason: FinalReason,
        now: DateTime<Utc>,
    ) -> Result<Option<SendRecord>, StoreError> {
        self.change_send(id, now, move |send| {
            if reason == FinalReason::OptedOut {
                return send.life.apply(Input::OptOut);
            }
            let effect = send.life.apply(Input::Cancel);
            // The domain ends a waiting send on the business's word as "cancelled"; the caller
            // may name a more precise reason, which the report should show.
            if effect != Effect::Unchanged {
                send.life.phase = Phase::Final { reason };
            }
            effect
        })
        .await
    }

    async fn get_recipient(&self, recipient: &str) -> Result<RecipientRecord, StoreError> {
        let recipient = recipient.to_owned();
        let retention = self.retention;
        self.read(move |tx, now| load_recipient(&tx.open_table(RECIPIENTS)?, &recipient, now, retention))
            .await
            .map(|stored| stored.record)
    }

    async fn set_opt_out(&self, recipient: &str, opted_out: bool, at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.change_recipient(recipient, at, move |_, stored| {
            let record = &mut stored.record;
            if record.opt_changed_at.is_some_and(|changed| at < changed) {
                return Ok(false);
            }
            record.opted_out = opted_out;
            record.opt_changed_at = Some(at);
            Ok(true)
        })
        .await
    }

    async fn record_inbound(&self, recipient: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.change_recipient(recipient, at, move |_, stored| {
            stored.record.last_inbound_at = stored.record.last_inbound_at.max(Some(at));
            Ok(())
        })
        .await
    }

    async fn record_marketing_delivery(
        &self,
        recipient: &str,
        send: &SendId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let send = send.clone();
        self.change_recipient(recipient, at, move |w, stored| {
            let mut counted = w.tx.open_table(COUNTED_DELIVERIES)?;
            let marker: Option<Expiring<()>> = decode(&counted, send.as_str())?;
            if marker.is_some_and(|marker| alive(marker.expires_at, w.now)) {
                return Ok(());
            }
            counted.insert(send.as_str(), encode(&Expiring { expires_at: w.expires_at(), value: () })?.as_slice())?;
            let deliveries = &mut stored.record.marketing_deliveries;
            deliveries.insert(deliveries.partition_point(|&delivered| delivered <= at), at);
            stored.counted_caps.clear();
            Ok(())
        })
        .await
    }

    async fn record_cap(
        &self,
        recipient: &str,
        send: &SendId,
        attempt: u32,
        at: DateTime<Utc>,
    ) -> Result<u32, StoreError> {
        let counted = cap_token(send, attempt);
        self.change_recipient(recipient, at, move |_, stored| {
            stored.counted_caps.insert(counted);
            Ok(u32::try_from(stored.counted_caps.len()).unwrap_or(u32::MAX))
        })
        .await
    }

    async fn record_alias(&self, wa_id: &str, number: &str, at: DateTime<Utc>) -> Result<RecipientRecord, StoreError> {
        let number = number.to_owned();
        self.change_recipient(wa_id, at, move |_, stored| {
            if !stored.record.numbers.contains(&number) {
                stored.record.numbers.push(number);
            }
            Ok(stored.record.clone())
        })
        .await
    }

    async fn waiting_for(&self, recipient: &str) -> Result<Vec<WaitingSend>, StoreError> {
        let recipient = recipient.to_owned();
        self.read(move |tx, now| {
            let sends = tx.open_table(SENDS)?;
            let mut waiting = Vec::new();
            for entry in tx.open_table(WAITING)?.range((recipient.as_str(), "")..)? {
                let (key, _) = entry?;
                let (of, id) = key.value();
                if of != recipient {
                    break;
                }
                if let Some(send) = load_send(&sends, id, now)? {
                    waiting.push(WaitingSend { send_id: send.id, slot: send.life.slot });
                }
            }
            Ok(waiting)
        })
        .await
    }

    async fn overdue(&self, before: DateTime<Utc>, limit: u32) -> Result<Vec<SendId>, StoreError> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        self.read(move |tx, now| {
            let sends = tx.open_table(SENDS)?;
            let mut overdue = Vec::new();
            // Send ids are lowercase hex, so "~" sorts after every id due at `before`.
            for entry in tx.open_table(DUE)?.range(..=(instant_key(before), "~"))? {
                if overdue.len() == limit {
                    break;
                }
                let (key, _) = entry?;
                let (_, id) = key.value();
                // A send that outlived its retention while unfinished is gone, not overdue.
                if let Some(send) = load_send(&sends, id, now)? {
                    overdue.push(send.id);
                }
            }
            Ok(overdue)
        })
        .await
    }

    async fn campaign_sends(
        &self,
        campaign: &str,
        page: Option<&str>,
        limit: u32,
    ) -> Result<Page<SendRecord>, StoreError> {
        let campaign = campaign.to_owned();
        let position = page.map(PagePosition::parse).transpose()?;
        // A page of nothing would hand back the token it was given, and a caller would loop.
        let limit = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
        self.read(move |tx, now| {
            let sends = tx.open_table(SENDS)?;
            let index = tx.open_table(CAMPAIGNS)?;
            let range = match &position {
                Some(last) => {
                    let last = (campaign.as_str(), last.nanos, last.id.as_str());
                    index.range((Bound::Excluded(last), Bound::Unbounded))?
                }
                None => index.range((campaign.as_str(), i128::MIN, "")..)?,
            };
            let mut items: Vec<SendRecord> = Vec::new();
            let mut next = None;
            for entry in range {
                let (key, _) = entry?;
                let (of, _, id) = key.value();
                if of != campaign {
                    break;
                }
                if items.len() == limit {
                    next = items.last().map(|last| PagePosition::of(last).token());
                    break;
                }
                if let Some(send) = load_send(&sends, id, now)? {
                    items.push(send);
                }
            }
            Ok(Page { items, next })
        })
        .await
    }

    async fn set_hold(&self, key: &HoldKey, hold: Option<Hold>, now: DateTime<Utc>) -> Result<(), StoreError> {
        let key = encode_text(key)?;
        self.write(now, move |w| {
            {
                let mut holds = w.tx.open_table(HOLDS)?;
                match hold {
                    Some(hold) => {
                        let stored = Expiring { expires_at: w.expires_at(), value: hold };
                        holds.insert(key.as_str(), encode(&stored)?.as_slice())?;
                    }
                    None => {
                        holds.remove(key.as_str())?;
                    }
                }
            }
            w.tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn get_hold(&self, key: &HoldKey) -> Result<Option<Hold>, StoreError> {
        let key = encode_text(key)?;
        self.read(move |tx, now| {
            let stored: Option<Expiring<Hold>> = decode(&tx.open_table(HOLDS)?, &key)?;
            Ok(stored.filter(|stored| alive(stored.expires_at, now)).map(|stored| stored.value))
        })
        .await
    }

    async fn list_holds(&self) -> Result<Vec<(HoldKey, Hold)>, StoreError> {
        self.read(move |tx, now| {
            let mut holds = Vec::new();
            for entry in tx.open_table(HOLDS)?.iter()? {
                let (key, value) = entry?;
                let key: HoldKey = serde_json::from_str(key.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let stored: Expiring<Hold> =
                    serde_json::from_slice(value.value()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                if alive(stored.expires_at, now) {
                    holds.push((key, stored.value));
                }
            }
            Ok(holds)
        })
        .await
    }

    async fn take_probe(
        &self,
        key: &HoldKey,
        probe_at: DateTime<Utc>,
        next: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let key = encode_text(key)?;
        self.write(now, move |w| {
            let taken = {
                let mut holds = w.tx.open_table(HOLDS)?;
                let stored: Option<Expiring<Hold>> = decode(&holds, &key)?;
                match stored {
                    Some(mut stored) if alive(stored.expires_at, w.now) && stored.value.probe_at == probe_at => {
                        stored.value.probe_at = next;
                        holds.insert(key.as_str(), encode(&stored)?.as_slice())?;
                        true
                    }
                    _ => false,
                }
            };
            w.tx.commit()?;
            Ok(taken)
        })
        .await
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
    save_send(&w.tx, send, Some(before))
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
    let mut due = tx.open_table(DUE)?;
    if let Some(was) = before.and_then(|before| before.life.phase.due()) {
        due.remove((instant_key(was), send.id.as_str()))?;
    }
    if let Some(next) = send.life.phase.due() {
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

fn claimed(slot: Slot, at: DateTime<Utc>) -> AttemptRecord {
    AttemptRecord {
        slot,
        claimed_at: at,
        wamid: None,
        accepted_at: None,
        sent_at: None,
        delivered_at: None,
        read_at: None,
        failed_at: None,
        error: None,
    }
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
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::domain::rules::Category;
    use crate::store::{DEFAULT_RETENTION, TemplateRef};

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    fn slot(attempt: u32, try_no: u32) -> Slot {
        Slot { attempt, try_no }
    }

    const RECIPIENT: &str = "919812345678";

    fn new_send(key: &str, recipient: &str, campaign: Option<&str>) -> NewSend {
        NewSend {
            idempotency_key: key.to_owned(),
            recipient: recipient.to_owned(),
            phone_number_id: "106540352242922".to_owned(),
            template: TemplateRef { name: "spring_sale".to_owned(), language: "en".to_owned(), components: vec![] },
            category: Category::Marketing,
            campaign: campaign.map(str::to_owned),
            max_attempts: 4,
        }
    }

    fn capped(attempt: u32, due: DateTime<Utc>) -> Verdict {
        Verdict::Ladder { attempt, due }
    }

    fn cap_error() -> RecordedError {
        RecordedError { code: 131049, title: Some("per-user cap".to_owned()) }
    }

    /// A database file of its own, removed when the test ends.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(test: &str) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            Self(std::env::temp_dir().join(format!("capguard-embedded-{test}-{}-{n}.redb", std::process::id())))
        }

        fn open(&self, retention: TimeDelta) -> EmbeddedStore {
            EmbeddedStore::open(&self.0, retention).unwrap()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// How long after its claim a test's send is settled if nothing is heard.
    const SETTLE: TimeDelta = TimeDelta::minutes(15);

    /// Records `send` due at `at` and claims its first slot then, as dispatch does.
    async fn claimed_send(store: &EmbeddedStore, send: &NewSend, at: DateTime<Utc>) -> SendRecord {
        let id = store.record_send(send, Start::Due(at), at).await.unwrap().send.id;
        store.claim(&id, Slot::FIRST, at, at + SETTLE).await.unwrap().unwrap()
    }

    /// A send claimed as attempt 1 and capped: waiting for attempt 2 at `t(43_200)`.
    async fn waiting_send(store: &EmbeddedStore, key: &str, recipient: &str) -> SendRecord {
        let id = claimed_send(store, &new_send(key, recipient, None), t(0)).await.id;
        store.record_failure(&id, Slot::FIRST, &cap_error(), capped(2, t(43_200)), t(5)).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn data_survives_closing_and_reopening_the_file() {
        let file = TempFile::new("reopen");
        let store = file.open(DEFAULT_RETENTION);
        let send = claimed_send(&store, &new_send("k1", RECIPIENT, Some("spring")), t(0)).await;
        store.record_accepted(&send.id, Slot::FIRST, "wamid.1", t(1)).await.unwrap().send.unwrap();
        store.set_opt_out(RECIPIENT, true, t(2)).await.unwrap();
        let hold = HoldKey::Sender { phone_number_id: "106540352242922".to_owned() };
        store.set_hold(&hold, Some(Hold::new(131042, t(3))), t(3)).await.unwrap();
        drop(store);

        let store = file.open(DEFAULT_RETENTION);
        let found = store.get_send(&send.id).await.unwrap().unwrap();
        let due = t(1) + crate::domain::lifecycle::DELIVERY_HORIZON;
        assert_eq!(found.life.phase, Phase::InFlight { delivery: Delivery::Accepted, due });
        assert_eq!(found.attempt(Slot::FIRST).unwrap().wamid.as_deref(), Some("wamid.1"));
        let link = WamidLink { send_id: send.id.clone(), slot: Slot::FIRST };
        assert_eq!(store.find_by_wamid("wamid.1").await.unwrap(), Some(WamidEntry { link, parked: vec![] }));
        assert_eq!(store.overdue(due, 10).await.unwrap(), vec![send.id.clone()], "the in-flight send's due time");
        assert!(store.get_recipient(RECIPIENT).await.unwrap().opted_out);
        assert_eq!(store.get_hold(&hold).await.unwrap(), Some(Hold::new(131042, t(3))));
        assert_eq!(store.campaign_sends("spring", None, 10).await.unwrap().items, vec![found]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn exactly_one_of_32_concurrent_claimers_gets_the_slot() {
        let file = TempFile::new("claimers");
        let store = Arc::new(file.open(DEFAULT_RETENTION));
        let id = waiting_send(&store, "k1", RECIPIENT).await.id;
        let claimers: Vec<_> = (0..32)
            .map(|_| {
                let (store, id) = (Arc::clone(&store), id.clone());
                tokio::spawn(async move { store.claim(&id, slot(2, 1), t(43_200), t(44_100)).await.unwrap() })
            })
            .collect();
        let mut granted = Vec::new();
        for claimer in claimers {
            granted.extend(claimer.await.unwrap());
        }
        assert_eq!(granted.len(), 1);
        assert_eq!(granted[0].life.phase, Phase::Claimed { due: t(44_100) });
        let stored = store.get_send(&id).await.unwrap().unwrap();
        assert_eq!(stored.attempts.iter().map(|a| a.slot).collect::<Vec<_>>(), vec![Slot::FIRST, slot(2, 1)]);
    }

    #[tokio::test]
    async fn recording_the_same_send_twice_finds_the_first_unchanged() {
        let file = TempFile::new("idempotent");
        let store = file.open(DEFAULT_RETENTION);
        let send = new_send("k1", RECIPIENT, Some("spring"));
        let first = store.record_send(&send, Start::Due(t(0)), t(0)).await.unwrap();
        assert!(first.created);
        assert_eq!(first.send.id, send.id());
        assert_eq!(first.send.life, SendLife::new(4, t(0)));
        assert!(first.send.attempts.is_empty());
        assert_eq!(first.send.expires_at, t(0) + DEFAULT_RETENTION);

        let again = store.record_send(&send, Start::Refuse(FinalReason::FrequencyCap), t(60)).await.unwrap();
        assert!(!again.created);
        assert_eq!(again.send, first.send);
        assert_eq!(store.campaign_sends("spring", None, 10).await.unwrap().items.len(), 1);
    }

    #[tokio::test]
    async fn a_refused_send_is_recorded_final_without_attempts() {
        let file = TempFile::new("refused");
        let store = file.open(DEFAULT_RETENTION);
        let refused = store
            .record_send(&new_send("k1", RECIPIENT, None), Start::Refuse(FinalReason::SenderHalted), t(0))
            .await
            .unwrap();
        assert_eq!(refused.send.life.phase, Phase::Final { reason: FinalReason::SenderHalted });
        assert!(refused.send.attempts.is_empty());
        assert_eq!(store.claim(&refused.send.id, Slot::FIRST, t(1), t(901)).await.unwrap(), None);
        assert!(store.overdue(t(10_000), 10).await.unwrap().is_empty(), "a final send is never overdue");
    }

    #[tokio::test]
    async fn statuses_fill_the_attempt_in_order_and_a_skipped_delivered_stays_empty() {
        let file = TempFile::new("statuses");
        let store = file.open(DEFAULT_RETENTION);
        let id = claimed_send(&store, &new_send("k1", RECIPIENT, None), t(0)).await.id;
        store.record_accepted(&id, Slot::FIRST, "wamid.1", t(1)).await.unwrap().send.unwrap();
        store.record_status(&id, Slot::FIRST, Delivery::Sent, t(2)).await.unwrap().unwrap();
        let read = store.record_status(&id, Slot::FIRST, Delivery::Read, t(4)).await.unwrap().unwrap();
        assert_eq!(read.life.phase, Phase::Succeeded { delivery: Delivery::Read });
        assert_eq!(read.updated_at, t(4));
        let attempt = read.attempt(Slot::FIRST).unwrap();
        assert_eq!(
            (attempt.accepted_at, attempt.sent_at, attempt.delivered_at, attempt.read_at),
            (Some(t(1)), Some(t(2)), None, Some(t(4)))
        );
        assert_eq!(store.record_status(&id, Slot::FIRST, Delivery::Delivered, t(3)).await.unwrap(), None);
        assert_eq!(store.record_status(&id, Slot::FIRST, Delivery::Read, t(4)).await.unwrap(), None);
        assert_eq!(store.get_send(&id).await.unwrap().unwrap(), read);
    }

    #[tokio::test]
    async fn an_accept_after_a_status_changes_nothing_but_still_links_the_wamid() {
        let file = TempFile::new("late-accept");
        let store = file.open(DEFAULT_RETENTION);
        let id = claimed_send(&store, &new_send("k1", RECIPIENT, None), t(0)).await.id;
        let sent = store.record_status(&id, Slot::FIRST, Delivery::Sent, t(1)).await.unwrap().unwrap();
        assert_eq!(store.record_accepted(&id, Slot::FIRST, "wamid.1", t(2)).await.unwrap().send, None);
        assert_eq!(store.get_send(&id).await.unwrap(), Some(sent));
        let link = WamidLink { send_id: id, slot: Slot::FIRST };
        assert_eq!(store.find_by_wamid("wamid.1").await.unwrap(), Some(WamidEntry { link, parked: vec![] }));
    }

    #[tokio::test]
    async fn a_failure_records_its_error_and_moves_the_send_to_its_next_slot() {
        let file = TempFile::new("failure");
        let store = file.open(DEFAULT_RETENTION);
        let send = waiting_send(&store, "k1", RECIPIENT).await;
        assert_eq!(send.life.slot, slot(2, 1));
        assert_eq!(send.life.phase, Phase::Waiting { due: t(43_200) });
        let attempt = send.attempt(Slot::FIRST).unwrap();
        assert_eq!((attempt.failed_at, attempt.error.clone()), (Some(t(5)), Some(cap_error())));
        let again = store.record_failure(&send.id, Slot::FIRST, &cap_error(), capped(2, t(50_000)), t(6)).await;
        assert_eq!(again.unwrap(), None);
        assert_eq!(store.claim(&send.id, Slot::FIRST, t(7), t(907)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_hold_replans_a_waiting_send_later_and_a_reply_brings_it_earlier() {
        let file = TempFile::new("reschedule");
        let store = file.open(DEFAULT_RETENTION);
        let id = waiting_send(&store, "k1", RECIPIENT).await.id;
        let later = store.reschedule(&id, t(50_000), t(10)).await.unwrap().unwrap();
        assert_eq!(later.life.phase, Phase::Waiting { due: t(50_000) });
        let earlier = store.reschedule(&id, t(600), t(600)).await.unwrap().unwrap();
        assert_eq!(earlier.life.phase, Phase::Waiting { due: t(600) });
        assert_eq!(store.reschedule(&id, t(600), t(601)).await.unwrap(), None);

        store.claim(&id, slot(2, 1), t(700), t(1_600)).await.unwrap().unwrap();
        assert_eq!(store.reschedule(&id, t(90_000), t(701)).await.unwrap(), None);
        assert_eq!(store.reschedule(&id, t(0), t(701)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn finishing_a_waiting_send_ends_it_with_the_reason_given() {
        let file = TempFile::new("finish");
        let store = file.open(DEFAULT_RETENTION);
        let opted_out = waiting_send(&store, "k1", RECIPIENT).await.id;
        let cancelled = waiting_send(&store, "k2", RECIPIENT).await.id;
        let unknown = waiting_send(&store, "k3", RECIPIENT).await.id;

        let ended = store.finish_waiting(&opted_out, FinalReason::OptedOut, t(10)).await.unwrap().unwrap();
        assert_eq!(ended.life.phase, Phase::Final { reason: FinalReason::OptedOut });
        let ended = store.finish_waiting(&cancelled, FinalReason::Cancelled, t(10)).await.unwrap().unwrap();
        assert_eq!(ended.life.phase, Phase::Final { reason: FinalReason::Cancelled });
        let ended = store.finish_waiting(&unknown, FinalReason::OutcomeUnknown, t(10)).await.unwrap().unwrap();
        assert_eq!(ended.life.phase, Phase::Final { reason: FinalReason::OutcomeUnknown });

        assert_eq!(store.finish_waiting(&cancelled, FinalReason::Cancelled, t(11)).await.unwrap(), None);
        assert!(store.waiting_for(RECIPIENT).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_opt_out_while_in_flight_marks_the_send_suppressed() {
        let file = TempFile::new("opt-out-in-flight");
        let store = file.open(DEFAULT_RETENTION);
        let id = claimed_send(&store, &new_send("k1", RECIPIENT, None), t(0)).await.id;
        let marked = store.finish_waiting(&id, FinalReason::OptedOut, t(1)).await.unwrap().unwrap();
        assert!(marked.life.suppressed);
        assert_eq!(marked.life.phase, Phase::Claimed { due: t(0) + SETTLE });
        let failed = store.record_failure(&id, Slot::FIRST, &cap_error(), capped(2, t(43_200)), t(2)).await.unwrap();
        assert_eq!(failed.unwrap().life.phase, Phase::Final { reason: FinalReason::OptedOut });
    }

    #[tokio::test]
    async fn an_unknown_recipient_reads_as_the_default() {
        let file = TempFile::new("unknown-recipient");
        let store = file.open(DEFAULT_RETENTION);
        let record = store.get_recipient(RECIPIENT).await.unwrap();
        assert_eq!(record, RecipientRecord { recipient: RECIPIENT.to_owned(), ..RecipientRecord::default() });
    }

    #[tokio::test]
    async fn an_opt_change_older_than_the_recorded_one_does_not_apply() {
        let file = TempFile::new("opt-out");
        let store = file.open(DEFAULT_RETENTION);
        assert!(store.set_opt_out(RECIPIENT, true, t(10)).await.unwrap());
        assert!(!store.set_opt_out(RECIPIENT, false, t(5)).await.unwrap());
        let record = store.get_recipient(RECIPIENT).await.unwrap();
        assert!(record.opted_out);
        assert_eq!(record.opt_changed_at, Some(t(10)));
        assert!(store.set_opt_out(RECIPIENT, false, t(20)).await.unwrap());
        assert!(!store.get_recipient(RECIPIENT).await.unwrap().opted_out);
    }

    #[tokio::test]
    async fn an_inbound_message_keeps_the_latest_time() {
        let file = TempFile::new("inbound");
        let store = file.open(DEFAULT_RETENTION);
        store.record_inbound(RECIPIENT, t(20)).await.unwrap();
        store.record_inbound(RECIPIENT, t(10)).await.unwrap();
        assert_eq!(store.get_recipient(RECIPIENT).await.unwrap().last_inbound_at, Some(t(20)));
        store.record_inbound(RECIPIENT, t(30)).await.unwrap();
        assert_eq!(store.get_recipient(RECIPIENT).await.unwrap().last_inbound_at, Some(t(30)));
    }

    #[tokio::test]
    async fn a_marketing_delivery_counts_once_per_send_and_resets_the_caps() {
        let file = TempFile::new("deliveries");
        let store = file.open(DEFAULT_RETENTION);
        let (first, second) = (SendId::derive("1", "a", RECIPIENT), SendId::derive("1", "b", RECIPIENT));
        store.record_cap(RECIPIENT, &first, 1, t(0)).await.unwrap();
        store.record_marketing_delivery(RECIPIENT, &first, t(10)).await.unwrap();
        store.record_cap(RECIPIENT, &second, 1, t(11)).await.unwrap();
        store.record_marketing_delivery(RECIPIENT, &first, t(12)).await.unwrap();
        store.record_marketing_delivery(RECIPIENT, &second, t(5)).await.unwrap();
        let record = store.get_recipient(RECIPIENT).await.unwrap();
        assert_eq!(record.marketing_deliveries, vec![t(5), t(10)]);
        assert_eq!(record.consecutive_caps, 0);
    }

    #[tokio::test]
    async fn each_capped_attempt_counts_once() {
        let file = TempFile::new("caps");
        let store = file.open(DEFAULT_RETENTION);
        let send = SendId::derive("1", "a", RECIPIENT);
        assert_eq!(store.record_cap(RECIPIENT, &send, 1, t(0)).await.unwrap(), 1);
        assert_eq!(store.record_cap(RECIPIENT, &send, 2, t(1)).await.unwrap(), 2);
        assert_eq!(store.record_cap(RECIPIENT, &send, 2, t(2)).await.unwrap(), 2, "a redelivered failure");
        assert_eq!(store.record_cap("447700900123", &send, 1, t(2)).await.unwrap(), 1);
        assert_eq!(store.get_recipient(RECIPIENT).await.unwrap().consecutive_caps, 2);
    }

    #[tokio::test]
    async fn waiting_for_lists_only_the_recipients_waiting_sends_with_their_slot() {
        let file = TempFile::new("waiting");
        let store = file.open(DEFAULT_RETENTION);
        let waiting = waiting_send(&store, "k1", RECIPIENT).await.id;
        let claimed = waiting_send(&store, "k2", RECIPIENT).await.id;
        store.claim(&claimed, slot(2, 1), t(43_200), t(44_100)).await.unwrap().unwrap();
        claimed_send(&store, &new_send("k3", RECIPIENT, None), t(0)).await;
        waiting_send(&store, "k4", "447700900123").await;
        // A neighbour whose number extends this one's must not be listed with it.
        waiting_send(&store, "k5", &format!("{RECIPIENT}0")).await;

        assert_eq!(
            store.waiting_for(RECIPIENT).await.unwrap(),
            vec![WaitingSend { send_id: waiting, slot: slot(2, 1) }]
        );
        assert!(store.waiting_for("15550000000").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn campaign_pages_follow_recording_order_and_continue_exactly_after_the_last_item() {
        let file = TempFile::new("campaign");
        let store = file.open(DEFAULT_RETENTION);
        let mut recorded = Vec::new();
        for n in 0..5 {
            let send = new_send(&format!("k{n}"), RECIPIENT, Some("spring"));
            recorded.push(claimed_send(&store, &send, t(n)).await.id);
        }
        // Two sends recorded at the same instant are listed by id.
        let mut same_time: Vec<SendId> = Vec::new();
        for key in ["x", "y", "z"] {
            let send = new_send(key, RECIPIENT, Some("spring"));
            same_time.push(claimed_send(&store, &send, t(100)).await.id);
        }
        same_time.sort();
        recorded.extend(same_time);
        claimed_send(&store, &new_send("other", RECIPIENT, Some("summer")), t(2)).await;
        claimed_send(&store, &new_send("none", RECIPIENT, None), t(2)).await;

        let mut listed = Vec::new();
        let mut token = None;
        loop {
            let page = store.campaign_sends("spring", token.as_deref(), 3).await.unwrap();
            assert!(page.items.len() <= 3);
            listed.extend(page.items.into_iter().map(|send| send.id));
            match page.next {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        assert_eq!(listed, recorded);
        assert!(store.campaign_sends("autumn", None, 3).await.unwrap().items.is_empty());
    }

    #[tokio::test]
    async fn a_page_token_the_store_did_not_hand_out_is_refused() {
        let file = TempFile::new("bad-token");
        let store = file.open(DEFAULT_RETENTION);
        for token in ["", "garbage", "12.not-an-id", "x.00000000000000000000000000000000"] {
            let refused = store.campaign_sends("spring", Some(token), 3).await;
            assert!(matches!(refused, Err(StoreError::BadPageToken(_))), "{token:?}: {refused:?}");
        }
    }

    #[tokio::test]
    async fn a_hold_is_set_read_and_lifted() {
        let file = TempFile::new("holds");
        let store = file.open(DEFAULT_RETENTION);
        let template = HoldKey::Template {
            phone_number_id: "106540352242922".to_owned(),
            name: "spring_sale".to_owned(),
            language: "en".to_owned(),
        };
        let sender = HoldKey::Sender { phone_number_id: "106540352242922".to_owned() };
        let hold = Hold::new(132015, t(0));
        store.set_hold(&template, Some(hold.clone()), t(0)).await.unwrap();
        assert_eq!(store.get_hold(&template).await.unwrap(), Some(hold));
        assert_eq!(store.get_hold(&sender).await.unwrap(), None);
        store.set_hold(&template, None, t(1)).await.unwrap();
        assert_eq!(store.get_hold(&template).await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_item_past_its_retention_reads_as_absent_and_its_id_can_be_recorded_afresh() {
        let file = TempFile::new("retention");
        let store = file.open(TimeDelta::days(1));
        let old = claimed_send(&store, &new_send("k1", RECIPIENT, Some("spring")), t(0)).await;
        store.record_accepted(&old.id, Slot::FIRST, "wamid.old", t(1)).await.unwrap().send.unwrap();
        store.record_cap(RECIPIENT, &old.id, 1, t(0)).await.unwrap();
        store.record_marketing_delivery(RECIPIENT, &SendId::derive("1", "2", RECIPIENT), t(0)).await.unwrap();
        assert_eq!(store.get_recipient(RECIPIENT).await.unwrap().marketing_deliveries, vec![t(0)]);

        // Any later write moves the store's time on.
        store.record_inbound("447700900123", t(2 * 86_400)).await.unwrap();
        assert_eq!(store.get_send(&old.id).await.unwrap(), None);
        assert_eq!(store.find_by_wamid("wamid.old").await.unwrap(), None);
        assert_eq!(store.claim(&old.id, slot(2, 1), t(2 * 86_400), t(2 * 86_400)).await.unwrap(), None);
        assert!(store.overdue(t(100 * 86_400), 10).await.unwrap().is_empty(), "an expired send is not overdue");
        let recipient = store.get_recipient(RECIPIENT).await.unwrap();
        assert_eq!((recipient.consecutive_caps, recipient.marketing_deliveries.len()), (0, 0));

        let later = t(2 * 86_400);
        let again = store.record_send(&new_send("k1", RECIPIENT, Some("spring")), Start::Due(later), later).await;
        let again = again.unwrap();
        assert!(again.created);
        let listed = store.campaign_sends("spring", None, 10).await.unwrap().items;
        assert_eq!(listed, vec![again.send]);
    }

    #[tokio::test]
    async fn a_record_that_does_not_deserialize_is_corrupt() {
        let file = TempFile::new("corrupt");
        let store = file.open(DEFAULT_RETENTION);
        let id = SendId::derive("1", "2", RECIPIENT);
        let db = store.database();
        let tx = db.begin_write().unwrap();
        tx.open_table(SENDS).unwrap().insert(id.as_str(), b"{not json".as_slice()).unwrap();
        tx.commit().unwrap();
        assert!(matches!(store.get_send(&id).await, Err(StoreError::Corrupt(_))));
    }
}
