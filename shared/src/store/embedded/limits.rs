//! [`Limits`] on the embedded store: the portfolio's count and Meta's last report in one value,
//! each warming number's count in one more, changed on the one writer thread (so a contact's check and count cannot interleave with another's).

use super::*;
use crate::domain::limit::{Ledger, ReportedLimit};
use crate::store::prelude::*;
use crate::store::{CountOf, MessagingCount, Place};

/// The key of a count in [`LIMIT`]: `portfolio`, or `warm_up#<phone number id>`.
pub(super) fn limit_key(of: CountOf<'_>) -> String {
    match of {
        CountOf::Portfolio => "portfolio".to_owned(),
        CountOf::WarmUp(phone_number_id) => format!("warm_up#{phone_number_id}"),
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredLimit {
    ledger: Ledger,
    reported: Option<ReportedLimit>,
}

fn load(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
    now: DateTime<Utc>,
) -> Result<StoredLimit, StoreError> {
    let stored: Option<Expiring<StoredLimit>> = decode(table, key)?;
    Ok(stored.filter(|stored| alive(stored.expires_at, now)).map(|stored| stored.value).unwrap_or_default())
}

/// A [`Place`] as the writer thread takes it: its count's key instead of its name.
struct Taking {
    key: String,
    bucket: i64,
    capacity: u32,
    neighbours: Vec<(i64, u32)>,
    stale: Vec<i64>,
}

impl Taking {
    fn of(place: &Place<'_>) -> Self {
        let Place { of, bucket, capacity, neighbours, stale } = place.clone();
        Self { key: limit_key(of), bucket, capacity, neighbours, stale }
    }
}

impl EmbeddedStore {
    /// Applies `change` to the portfolio's count in one write; saves it when `change` says it
    /// changed.
    async fn change_limit<T: Send + 'static>(
        &self,
        now: DateTime<Utc>,
        mut change: impl FnMut(&mut StoredLimit) -> (bool, T) + Send + 'static,
    ) -> Result<T, StoreError> {
        let key = limit_key(CountOf::Portfolio);
        self.write(now, move |w| {
            let mut table = w.tx.open_table(LIMIT)?;
            let mut stored = load(&table, &key, w.now)?;
            let (changed, answer) = change(&mut stored);
            if changed {
                let kept = Expiring { expires_at: w.expires_at(), value: &stored };
                table.insert(key.as_str(), encode(&kept)?.as_slice())?;
                drop(table);
                w.keep();
            }
            Ok(answer)
        })
        .await
    }
}

impl Limits for EmbeddedStore {
    async fn messaging_count(&self, of: CountOf<'_>) -> Result<MessagingCount, StoreError> {
        let key = limit_key(of);
        self.read(move |tx, now| {
            let StoredLimit { ledger, reported } = load(&tx.open_table(LIMIT)?, &key, now)?;
            Ok(MessagingCount { ledger, reported })
        })
        .await
    }

    async fn count_contact(&self, places: &[Place<'_>], now: DateTime<Utc>) -> Result<bool, StoreError> {
        if places.is_empty() {
            return Ok(false);
        }
        let places: Vec<Taking> = places.iter().map(Taking::of).collect();
        self.write(now, move |w| {
            let mut table = w.tx.open_table(LIMIT)?;
            let mut counts = Vec::with_capacity(places.len());
            for place in &places {
                let mut stored = load(&table, &place.key, w.now)?;
                let count = |bucket: i64| stored.ledger.buckets.get(&bucket).copied().unwrap_or(0);
                let moved = place
                    .neighbours
                    .iter()
                    .any(|(neighbour, was)| *neighbour != place.bucket && count(*neighbour) != *was);
                // All or none: one place without room leaves every count as it was.
                if moved || count(place.bucket) >= place.capacity {
                    return Ok(false);
                }
                for old in place.stale.iter().filter(|old| **old != place.bucket) {
                    stored.ledger.buckets.remove(old);
                }
                stored.ledger.add(place.bucket);
                counts.push((&place.key, stored));
            }
            for (key, stored) in counts {
                let kept = Expiring { expires_at: w.expires_at(), value: &stored };
                table.insert(key.as_str(), encode(&kept)?.as_slice())?;
            }
            drop(table);
            w.keep();
            Ok(true)
        })
        .await
    }

    async fn report_limit(&self, reported: ReportedLimit, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.change_limit(now, move |stored| {
            let newer = stored.reported.is_none_or(|recorded| recorded.at < reported.at);
            if newer {
                stored.reported = Some(reported);
            }
            (newer, newer)
        })
        .await
    }
}
