//! The DynamoDB adapter of the state port: [`SendStore`](super::SendStore) on one on-demand table,
//! for AWS.
//!
//! Every transition of [`SendLife`] is one `UpdateItem` of the send's item whose condition
//! expression is the transition's precondition (the slot is current, the phase allows it, the
//! status is ahead), so that no read comes before a write and two racing callers cannot both win:
//! DynamoDB applies the one whose condition holds and refuses the other. A refused condition is the
//! port's `None`. The only other item a transition writes is the wamid link, which is true in any
//! state and so is written unconditionally, first.
//!
//! A failure's next state also depends on what the caller does not know (the send's ladder length,
//! whether its recipient opted out meanwhile). The write presumes the common case (attempts left,
//! not suppressed) and says so in its condition; when that is refused, the item as it was comes
//! back with the refusal (`ALL_OLD`), [`SendLife::apply`] decides on it, and the result is
//! written with the whole life as condition (compare-and-set), so the domain stays the one spec.
//!
//! Keys, items and indexes are laid out in [`schema`] and `docs/data-model.md`, which also lists
//! what each access pattern costs. Items expire `retention` after their last write: `expires_at`
//! is DynamoDB's TTL attribute, and since TTL deletes late (up to days), reads and conditions treat
//! an item past its `expires_at` as absent. As in the embedded store, expiry is measured on the
//! callers' clock, not the wall's: the store's time is the latest time a call of this process
//! wrote at, which in Lambda is the wall clock and in tests their own.

mod errors;
mod expr;
mod holds;
mod item;
mod limits;
mod listings;
mod numbers;
mod pace;
mod recipients;
pub mod schema;
mod sends;
mod templates;
mod wamids;

use std::collections::HashMap;
use std::ops::Sub;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConsumedCapacity, KeysAndAttributes, ReturnConsumedCapacity, ReturnValue,
    ReturnValuesOnConditionCheckFailure,
};
use chrono::{DateTime, TimeDelta, Utc};

use self::errors::{Written, conditional, service_failure};
use self::expr::Update;
use self::item::*;
use self::schema::{
    CAMPAIGN, CAMPAIGN_INDEX, CREATED_AT, DUE, DUE_INDEX, DUE_SHARD, EXPIRES_AT, PK, RECIPIENT, SK, WAITING_INDEX,
    WAITING_SLOT, keys,
};
use super::{
    Hold, HoldKey, Linked, NewSend, PARK_TIME, Page, RecipientRecord, Recorded, RecordedError, SendId, SendRecord,
    Start, StatusUpdate, StoreError, WaitingSend, WamidEntry, WamidLink,
};
pub use crate::aws::AwsTarget;
use crate::domain::lifecycle::{Delivery, Effect, Input, Slot};
use crate::domain::verdict::{FinalReason, Verdict};

pub use self::schema::{TABLE, create_table, create_table_without_ttl};

/// The most sends one campaign page holds: one BatchGetItem reads at most 100 items.
const MAX_PAGE: u32 = 100;

/// How many compare-and-set rounds a transition gets before the send is reported as too busy.
/// Each round is lost only to another transition, and a send has few, so two nearly always do.
const CAS_ROUNDS: usize = 5;

/// How many delivery records past the retention a recipient item collects before one extra write
/// removes them: item size is what every write of the recipient costs, so it must stay bounded,
/// but not at one extra write per delivery.
const PRUNE_AT: usize = 8;

/// The state port on a DynamoDB table laid out as [`TABLE`].
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    retention: TimeDelta,
    clock: Arc<Mutex<DateTime<Utc>>>,
    consumed: Arc<Mutex<Consumed>>,
}

/// Capacity the store's calls consumed, as DynamoDB reported it (`ReturnConsumedCapacity=TOTAL`,
/// index writes included).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Consumed {
    pub read_units: f64,
    pub write_units: f64,
    /// Writes whose condition was refused. DynamoDB bills each like the write would have cost
    /// (at least one unit) but reports no capacity for it, so they are counted apart.
    pub refused_writes: u32,
}

impl Sub for Consumed {
    type Output = Consumed;

    fn sub(self, earlier: Consumed) -> Consumed {
        Consumed {
            read_units: self.read_units - earlier.read_units,
            write_units: self.write_units - earlier.write_units,
            refused_writes: self.refused_writes - earlier.refused_writes,
        }
    }
}

impl DynamoStore {
    /// A store on the table `table`, keeping items for `retention` after their last write.
    pub fn new(client: Client, table: impl Into<String>, retention: TimeDelta) -> Self {
        Self {
            client,
            table: table.into(),
            retention,
            clock: Arc::new(Mutex::new(DateTime::<Utc>::MIN_UTC)),
            consumed: Arc::default(),
        }
    }

    /// A store whose client is configured from the environment (region from the usual variables
    /// and files, else `us-east-1`), or, given an `endpoint` such as DynamoDB Local's, talks to
    /// that endpoint with static test credentials.
    pub async fn connect(endpoint: Option<&str>, table: impl Into<String>, retention: TimeDelta) -> Self {
        let target = AwsTarget { endpoint: endpoint.map(str::to_owned), ..AwsTarget::default() };
        Self::connect_to(&target, table, retention).await
    }

    /// [`DynamoStore::connect`], with the region and the credentials' profile given rather than
    /// found (an operator's `--region` and `--profile`).
    pub async fn connect_to(target: &AwsTarget, table: impl Into<String>, retention: TimeDelta) -> Self {
        let loader = crate::aws::loader(target);
        let loader = if target.endpoint.is_some() { loader.test_credentials() } else { loader };
        Self::new(Client::new(&loader.load().await), table, retention)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Everything this store (and its clones) consumed so far. Subtract two readings to price
    /// the calls between them.
    pub fn consumed(&self) -> Consumed {
        *lock(&self.consumed)
    }

    fn meter_read(&self, capacity: Option<&ConsumedCapacity>) {
        lock(&self.consumed).read_units += capacity.and_then(ConsumedCapacity::capacity_units).unwrap_or(0.0);
    }

    fn meter_write(&self, capacity: Option<&ConsumedCapacity>) {
        lock(&self.consumed).write_units += capacity.and_then(ConsumedCapacity::capacity_units).unwrap_or(0.0);
    }

    fn meter_refusal(&self) {
        lock(&self.consumed).refused_writes += 1;
    }

    /// The store's time after a write made at `at`: it never goes back, so a late webhook neither
    /// shortens an item's life nor revives an expired one.
    fn advance(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let mut latest = lock(&self.clock);
        *latest = (*latest).max(at);
        *latest
    }

    fn now(&self) -> DateTime<Utc> {
        *lock(&self.clock)
    }

    /// Whether an item has not expired by the store's time.
    fn unexpired(&self, item: &Item) -> Result<bool, StoreError> {
        Ok(alive(Fields::new(item, pk_of(item)?).expires_at()?, self.now()))
    }

    /// The item if it exists and has not expired.
    fn live(&self, item: Option<Item>) -> Result<Option<Item>, StoreError> {
        match item {
            Some(item) if self.unexpired(&item)? => Ok(Some(item)),
            _ => Ok(None),
        }
    }

    /// A strongly consistent GetItem of a live item.
    /// Reads an item: strongly consistent, or a `recent` one (eventually consistent, half the
    /// units).
    async fn get(&self, pk: String, sk: &str, recent: bool) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .consistent_read(!recent)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| service_failure("GetItem", e))?;
        self.meter_read(output.consumed_capacity());
        self.live(output.item)
    }

    /// A Query of one of the table's indexes, its capacity reported: the caller adds the key
    /// condition and runs it with [`Self::run_query`].
    fn index_query(&self, index: &str) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
    }

    /// Every live item of the partition `pk`, read strongly, page after page: the small partitions
    /// that are listed whole (holds, business numbers, templates).
    async fn partition(&self, pk: &str) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .return_consumed_capacity(ReturnConsumedCapacity::Total);
            let output = self.run_query(query).await?;
            for item in output.items.unwrap_or_default() {
                if self.unexpired(&item)? {
                    items.push(item);
                }
            }
            start = output.last_evaluated_key;
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    /// Runs a Query and meters what it read.
    async fn run_query(&self, query: QueryFluentBuilder) -> Result<QueryOutput, StoreError> {
        let output = query.send().await.map_err(|e| service_failure("Query", e))?;
        self.meter_read(output.consumed_capacity());
        Ok(output)
    }

    /// An unconditional PutItem.
    async fn put(&self, item: Item) -> Result<(), StoreError> {
        let output = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| service_failure("PutItem", e))?;
        self.meter_write(output.consumed_capacity());
        Ok(())
    }

    /// An UpdateItem of the item (`pk`, `sk`) that returns `returns` when written and the item as
    /// it was when refused.
    async fn update(
        &self,
        pk: String,
        sk: &str,
        update: Update,
        returns: ReturnValue,
    ) -> Result<Written<Option<Item>>, StoreError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .return_values(returns)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Total);
        match conditional("UpdateItem", update.apply(request).send().await)? {
            Written::Done(output) => {
                self.meter_write(output.consumed_capacity());
                Ok(Written::Done(output.attributes))
            }
            Written::Refused(old) => {
                self.meter_refusal();
                Ok(Written::Refused(old))
            }
        }
    }

    /// Conditions a change of a send on the send being alive, and stamps it: `updated_at` is the
    /// change's time, `expires_at` the retention from the store's time.
    fn stamp_send(&self, update: &mut Update, at: DateTime<Utc>) {
        let now = self.advance(at);
        let alive = update.compare(EXPIRES_AT, ">", epoch_seconds(now));
        update.require(alive);
        update.set(UPDATED_AT, time(at));
        update.set(EXPIRES_AT, epoch_seconds(expiry(now, self.retention)));
    }

    /// Applies a stamped update to the send `id`: the send as it now is, or the item as it was.
    async fn update_send(&self, id: &SendId, update: Update) -> Result<Written<SendRecord>, StoreError> {
        match self.update(keys::send(id), keys::SEND, update, ReturnValue::AllNew).await? {
            Written::Done(Some(item)) => Ok(Written::Done(decode_send(&item)?)),
            Written::Done(None) => Err(StoreError::Unavailable(format!("UpdateItem of send {id} returned no item"))),
            Written::Refused(old) => Ok(Written::Refused(old)),
        }
    }

    /// Applies a transition whose condition is its whole precondition: refused means `None`.
    async fn transition(&self, id: &SendId, update: Update) -> Result<Option<SendRecord>, StoreError> {
        match self.update_send(id, update).await? {
            Written::Done(send) => Ok(Some(send)),
            Written::Refused(_) => Ok(None),
        }
    }

    /// Applies `input` to the send as `old` shows it, by compare-and-set: the new life is written
    /// only if the stored life is still the one it was computed from, else again from what is
    /// stored then. `history` adds the transition's record to the write.
    async fn compare_and_set(
        &self,
        id: &SendId,
        mut old: Option<Item>,
        input: Input,
        at: DateTime<Utc>,
        history: impl Fn(&mut Update),
    ) -> Result<Option<SendRecord>, StoreError> {
        for _ in 0..CAS_ROUNDS {
            let Some(item) = self.live(old)? else {
                return Ok(None);
            };
            let before = decode_send(&item)?.life;
            let mut life = before;
            if life.apply(input) == Effect::Unchanged {
                return Ok(None);
            }
            let mut update = Update::default();
            self.stamp_send(&mut update, at);
            require_life(&mut update, &before);
            write_life(&mut update, id, &life);
            history(&mut update);
            match self.update_send(id, update).await? {
                Written::Done(send) => return Ok(Some(send)),
                Written::Refused(now) => old = now,
            }
        }
        Err(StoreError::Unavailable(format!("send {id} kept changing during {CAS_ROUNDS} attempts to apply {input:?}")))
    }

    /// Applies a change to a recipient's item, creating it if needed. `change` adds its SET/ADD
    /// clauses and its own condition; `None` when that condition is refused. An expired item is
    /// deleted first, as TTL would have, so that nothing of it outlives its retention.
    async fn update_recipient(
        &self,
        recipient: &str,
        at: DateTime<Utc>,
        returns: ReturnValue,
        change: impl Fn(&mut Update),
    ) -> Result<Option<Item>, StoreError> {
        for first_try in [true, false] {
            let now = self.advance(at);
            let mut update = Update::default();
            change(&mut update);
            let (absent, alive) = (update.missing(PK), update.compare(EXPIRES_AT, ">", epoch_seconds(now)));
            update.require(format!("{absent} OR {alive}"));
            update.set(EXPIRES_AT, epoch_seconds(expiry(now, self.retention)));
            match self.update(keys::recipient(recipient), keys::RECIPIENT, update, returns.clone()).await? {
                Written::Done(item) => return Ok(Some(item.unwrap_or_default())),
                Written::Refused(Some(old)) if first_try && !self.unexpired(&old)? => {
                    self.delete_expired(keys::recipient(recipient), keys::RECIPIENT, now).await?;
                }
                Written::Refused(_) => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Deletes an item only if it has expired by `now`.
    async fn delete_expired(&self, pk: String, sk: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .condition_expression("#expires_at <= :now")
            .expression_attribute_names("#expires_at", EXPIRES_AT)
            .expression_attribute_values(":now", epoch_seconds(now))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match conditional("DeleteItem", result)? {
            Written::Done(output) => self.meter_write(output.consumed_capacity()),
            // Written meanwhile: alive again, which is what the caller wants.
            Written::Refused(_) => self.meter_refusal(),
        }
        Ok(())
    }

    /// Removes a recipient's delivery records that are past the retention, once there are enough
    /// of them to be worth a write. Best effort: the delivery itself is already recorded.
    async fn prune_deliveries(&self, recipient: &str, item: &Item, now: DateTime<Utc>) {
        let stale: Vec<String> = match delivery_times(item, recipient) {
            Ok(times) => times
                .into_iter()
                .filter(|(_, at)| !alive(expiry(*at, self.retention), now))
                .map(|(name, _)| name.to_owned())
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "recipient item with unreadable deliveries");
                return;
            }
        };
        if stale.len() < PRUNE_AT {
            return;
        }
        let mut update = Update::default();
        for name in &stale {
            update.remove(name);
        }
        let exists = update.exists(PK);
        update.require(exists);
        if let Err(e) = self.update(keys::recipient(recipient), keys::RECIPIENT, update, ReturnValue::None).await {
            tracing::warn!(error = %e, stale = stale.len(), "could not prune a recipient's old deliveries");
        }
    }

    /// Reads the given send items, eventually consistent, and returns the live ones found.
    async fn batch_get_sends(&self, ids: &[SendId]) -> Result<HashMap<SendId, SendRecord>, StoreError> {
        let mut pending: Vec<Item> = ids
            .iter()
            .map(|id| HashMap::from([(PK.to_owned(), s(keys::send(id))), (SK.to_owned(), s(keys::SEND))]))
            .collect();
        let mut found = HashMap::new();
        let mut pause = Duration::from_millis(25);
        for round in 0..6 {
            if pending.is_empty() {
                break;
            }
            if round > 0 {
                // Unprocessed keys mean throttling: back off before asking again.
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(false)
                .build()
                .map_err(|e| StoreError::Unavailable(format!("BatchGetItem request: {e}")))?;
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|e| service_failure("BatchGetItem", e))?;
            for capacity in output.consumed_capacity() {
                self.meter_read(Some(capacity));
            }
            for item in output.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default() {
                if let Some(item) = self.live(Some(item))? {
                    let send = decode_send(&item)?;
                    found.insert(send.id.clone(), send);
                }
            }
            pending =
                output.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).map(|k| k.keys).unwrap_or_default();
        }
        if pending.is_empty() {
            Ok(found)
        } else {
            Err(StoreError::Throttled(format!("BatchGetItem left {} keys unprocessed", pending.len())))
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values are plain numbers, valid whatever a panicking holder was doing.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Requires the send's current slot to be `slot`.
fn require_slot(update: &mut Update, slot: Slot) {
    let attempt = update.compare(ATTEMPT, "=", n(slot.attempt));
    let try_no = update.compare(TRY_NO, "=", n(slot.try_no));
    update.require(attempt);
    update.require(try_no);
}

fn require_phase(update: &mut Update, phases: &[&str]) {
    let clause = update.one_of(PHASE, phases.iter().map(|phase| s(*phase)));
    update.require(clause);
}

/// The path of a field of a slot's history.
fn attempt_field(slot: Slot, field: &str) -> String {
    format!("{ATTEMPTS}.{}.{field}", slot_key(slot))
}

/// What a failure of the current slot leads to if the send is not suppressed and, for the ladder,
/// has attempts left: the one write that [`SendLife`]'s rule comes to in the common case. Its
/// presumptions become conditions; a send they do not fit is settled by compare-and-set.
#[derive(Debug, Clone, Copy, PartialEq)]
struct FailurePlan {
    slot: Slot,
    /// `None` leaves the count as it is.
    transient_retries: Option<u32>,
    next: AfterFailure,
    presumes_unsuppressed: bool,
    presumes_attempts: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum AfterFailure {
    Wait(DateTime<Utc>),
    End(FinalReason),
}

impl FailurePlan {
    fn of(slot: Slot, verdict: Verdict) -> Self {
        let wait = |slot, transient_retries, due| FailurePlan {
            slot,
            transient_retries,
            next: AfterFailure::Wait(due),
            presumes_unsuppressed: true,
            presumes_attempts: None,
        };
        let end = |reason| FailurePlan {
            slot,
            transient_retries: None,
            next: AfterFailure::End(reason),
            presumes_unsuppressed: false,
            presumes_attempts: None,
        };
        let next_try = Slot { try_no: slot.try_no + 1, ..slot };
        match verdict {
            Verdict::Ladder { attempt, due } if attempt == slot.attempt + 1 => {
                FailurePlan { presumes_attempts: Some(attempt), ..wait(Slot { attempt, try_no: 1 }, Some(0), due) }
            }
            Verdict::Ladder { .. } => end(FinalReason::Exhausted),
            Verdict::BackOff { retry, due } => wait(next_try, Some(retry), due),
            Verdict::HoldTemplate { due } | Verdict::HaltSender { due } => wait(next_try, None, due),
            Verdict::SuppressRecipient => end(FinalReason::OptedOut),
            Verdict::Final(reason) => end(reason),
        }
    }

    fn write(&self, update: &mut Update, id: &SendId) {
        update.set(ATTEMPT, n(self.slot.attempt));
        update.set(TRY_NO, n(self.slot.try_no));
        if let Some(retries) = self.transient_retries {
            update.set(TRANSIENT_RETRIES, n(retries));
        }
        update.remove(DELIVERY_RANK);
        match self.next {
            AfterFailure::Wait(due) => {
                update.set(PHASE, s(WAITING));
                enter_due_index(update, id, due);
                enter_waiting_index(update, self.slot);
            }
            AfterFailure::End(reason) => {
                update.set(PHASE, s(FINAL));
                update.set(REASON, s(reason.as_str()));
                leave_due_index(update);
            }
        }
        if self.presumes_unsuppressed {
            let clause = update.compare(SUPPRESSED, "=", AttributeValue::Bool(false));
            update.require(clause);
        }
        if let Some(attempt) = self.presumes_attempts {
            let clause = update.compare(MAX_ATTEMPTS, ">=", n(attempt));
            update.require(clause);
        }
    }
}

/// Records a failure in the failed slot's history.
fn write_failure(update: &mut Update, slot: Slot, error: &RecordedError, at: DateTime<Utc>) {
    update.set(&attempt_field(slot, FAILED_AT), time(at));
    update.set(&attempt_field(slot, ERROR_CODE), n(error.code));
    if let Some(title) = &error.title {
        update.set(&attempt_field(slot, ERROR_TITLE), s(title.clone()));
    }
}

/// A position in a campaign's listing, handed out as the next page's token:
/// `<created_at in epoch nanoseconds>.<send id>`, as the embedded store's.
struct PageToken {
    created_at: DateTime<Utc>,
    id: SendId,
}

impl PageToken {
    fn parse(token: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::BadPageToken(token.to_owned());
        let (nanos, id) = token.split_once('.').ok_or_else(bad)?;
        Ok(Self {
            created_at: nanos.parse().ok().and_then(at_nanos).ok_or_else(bad)?,
            id: SendId::try_from(id.to_owned()).map_err(|_| bad())?,
        })
    }

    fn token(&self) -> String {
        format!("{}.{}", nanos_of(self.created_at), self.id)
    }

    /// The campaign index key of this position, as `ExclusiveStartKey`.
    fn start_key(&self, campaign: &str) -> Item {
        HashMap::from([
            (CAMPAIGN.to_owned(), s(campaign)),
            (CREATED_AT.to_owned(), time(self.created_at)),
            (PK.to_owned(), s(keys::send(&self.id))),
            (SK.to_owned(), s(keys::SEND)),
        ])
    }
}

#[cfg(test)]
mod tests;
