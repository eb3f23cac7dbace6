//! [`Limits`] on the DynamoDB store: one item holds the messaging limit's count, an attribute
//! `count#<bucket>` per bucket still counting, and the limit Meta last reported; one more per
//! warming number holds its own count, alike. A contact is one conditional `UpdateItem` per count
//! (a transaction of them when it takes places in two counts) that adds one to the current bucket
//! while it is under its capacity and the neighbouring buckets are as read (so racing callers,
//! whose clocks may sit on either side of a bucket's edge, cannot overfill the count), and
//! removes the buckets that no longer count.

use super::*;
use crate::domain::limit::{Ledger, ReportedLimit};
use crate::store::prelude::*;
use crate::store::{CountOf, MessagingCount, Place};

const COUNT_PREFIX: &str = "count#";
/// The limit Meta last reported, as JSON, and when (for the newer-only condition).
const REPORTED: &str = "reported";
const REPORTED_AT: &str = "reported_at";

fn count_name(bucket: i64) -> String {
    format!("{COUNT_PREFIX}{bucket}")
}

/// The sort key of a count's item: `LIMIT` for the portfolio's, `WARM_UP#<phone number id>` for a
/// warming number's (in the `LIMIT` partition both).
fn count_key(of: CountOf<'_>) -> String {
    match of {
        CountOf::Portfolio => keys::LIMIT.to_owned(),
        CountOf::WarmUp(phone_number_id) => format!("WARM_UP#{phone_number_id}"),
    }
}

impl DynamoStore {
    /// The write that takes `place`: one more in its bucket while the bucket has room and its
    /// neighbours are as read, the stale buckets dropped.
    fn place_update(&self, place: &Place<'_>, store_now: DateTime<Utc>) -> Update {
        let name = count_name(place.bucket);
        let mut update = Update::default();
        let (fresh, room) = (update.missing(&name), update.compare(&name, "<", n(place.capacity)));
        update.require(format!("{fresh} OR {room}"));
        for (neighbour, count) in place.neighbours.iter().filter(|(neighbour, _)| *neighbour != place.bucket) {
            let neighbour = count_name(*neighbour);
            let unchanged = match count {
                0 => update.missing(&neighbour),
                count => update.compare(&neighbour, "=", n(count)),
            };
            update.require(unchanged);
        }
        let (count, zero, one) = (update.name(&name), update.value(n(0)), update.value(n(1)));
        update.set_expression(&format!("{count} = if_not_exists({count}, {zero}) + {one}"));
        for old in place.stale.iter().filter(|old| **old != place.bucket) {
            update.remove(&count_name(*old));
        }
        update.set(EXPIRES_AT, epoch_seconds(expiry(store_now, self.retention)));
        update
    }
}

impl Limits for DynamoStore {
    async fn messaging_count(&self, of: CountOf<'_>) -> Result<MessagingCount, StoreError> {
        let key = count_key(of);
        let Some(item) = self.get(keys::LIMIT.to_owned(), &key, false).await? else {
            return Ok(MessagingCount::default());
        };
        let f = Fields::new(&item, &key);
        let mut ledger = Ledger::default();
        for name in item.keys().filter(|name| name.starts_with(COUNT_PREFIX)) {
            let bucket = name[COUNT_PREFIX.len()..]
                .parse::<i64>()
                .map_err(|e| StoreError::Corrupt(format!("{key}: {name}: {e}")))?;
            ledger.buckets.insert(bucket, f.number(name)?);
        }
        let reported = f
            .opt_text(REPORTED)?
            .map(serde_json::from_str::<ReportedLimit>)
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("{key}: {REPORTED}: {e}")))?;
        Ok(MessagingCount { ledger, reported })
    }

    async fn count_contact(&self, places: &[Place<'_>], now: DateTime<Utc>) -> Result<bool, StoreError> {
        if places.is_empty() || places.iter().any(|place| place.capacity == 0) {
            return Ok(false);
        }
        let store_now = self.advance(now);
        // One place is one UpdateItem; more are one transaction, so that none is taken alone.
        if let [place] = places {
            let update = self.place_update(place, store_now);
            let written = self.update(keys::LIMIT.to_owned(), &count_key(place.of), update, ReturnValue::None).await?;
            return Ok(matches!(written, Written::Done(_)));
        }
        let items = places
            .iter()
            .map(|place| {
                let key = HashMap::from([(PK.to_owned(), s(keys::LIMIT)), (SK.to_owned(), s(count_key(place.of)))]);
                self.place_update(place, store_now)
                    .transact(&self.table, key)
                    .map_err(|e| StoreError::Unavailable(format!("TransactWriteItems: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let request = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .return_consumed_capacity(ReturnConsumedCapacity::Total);
        match conditional("TransactWriteItems", request.send().await)? {
            Written::Done(output) => {
                for consumed in output.consumed_capacity() {
                    self.meter_write(Some(consumed));
                }
                Ok(true)
            }
            Written::Refused(_) => {
                self.meter_refusal();
                Ok(false)
            }
        }
    }

    async fn report_limit(&self, reported: ReportedLimit, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let store_now = self.advance(now);
        let json = serde_json::to_string(&reported)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode a messaging limit: {e}")))?;
        let mut update = Update::default();
        let (never, older) = (update.missing(REPORTED_AT), update.compare(REPORTED_AT, "<", time(reported.at)));
        update.require(format!("{never} OR {older}"));
        update.set(REPORTED, s(json));
        update.set(REPORTED_AT, time(reported.at));
        update.set(EXPIRES_AT, epoch_seconds(expiry(store_now, self.retention)));
        let written = self.update(keys::LIMIT.to_owned(), keys::LIMIT, update, ReturnValue::None).await?;
        Ok(matches!(written, Written::Done(_)))
    }
}
