//! [`Limits`] on the DynamoDB store: one item holds the messaging limit's count, an attribute
//! `count#<bucket>` per bucket still counting, and the limit Meta last reported; one more per
//! warming number holds its own count, alike. A contact is one
//! conditional `UpdateItem` that adds one to the current bucket while it is under its capacity
//! and the neighbouring buckets are as read (so racing callers, whose clocks may sit on either
//! side of a bucket's edge, cannot overfill the count), and removes the buckets that no longer
//! count.

use super::*;
use crate::domain::limit::{Ledger, ReportedLimit};
use crate::store::prelude::*;
use crate::store::{CountOf, MessagingCount};

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

    async fn count_contact(
        &self,
        of: CountOf<'_>,
        bucket: i64,
        capacity: u32,
        neighbours: &[(i64, u32)],
        stale: &[i64],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        if capacity == 0 {
            return Ok(false);
        }
        let store_now = self.advance(now);
        let name = count_name(bucket);
        let mut update = Update::default();
        let (fresh, room) = (update.missing(&name), update.compare(&name, "<", n(capacity)));
        update.require(format!("{fresh} OR {room}"));
        for (neighbour, count) in neighbours.iter().filter(|(neighbour, _)| *neighbour != bucket) {
            let neighbour = count_name(*neighbour);
            let unchanged = match count {
                0 => update.missing(&neighbour),
                count => update.compare(&neighbour, "=", n(count)),
            };
            update.require(unchanged);
        }
        let (count, zero, one) = (update.name(&name), update.value(n(0)), update.value(n(1)));
        update.set_expression(&format!("{count} = if_not_exists({count}, {zero}) + {one}"));
        for old in stale.iter().filter(|old| **old != bucket) {
            update.remove(&count_name(*old));
        }
        update.set(EXPIRES_AT, epoch_seconds(expiry(store_now, self.retention)));
        let written = self.update(keys::LIMIT.to_owned(), &count_key(of), update, ReturnValue::None).await?;
        Ok(matches!(written, Written::Done(_)))
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
