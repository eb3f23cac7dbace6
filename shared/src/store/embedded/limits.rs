//! [`Limits`] on the embedded store: the count and Meta's last report in one value, changed on
//! the one writer thread (so a contact's check and count cannot interleave with another's).

use super::*;
use crate::domain::limit::{Ledger, ReportedLimit};
use crate::store::MessagingCount;
use crate::store::prelude::*;

/// The one key of [`LIMIT`].
pub(super) const LIMIT_KEY: &str = "portfolio";

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredLimit {
    ledger: Ledger,
    reported: Option<ReportedLimit>,
}

fn load(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    now: DateTime<Utc>,
) -> Result<StoredLimit, StoreError> {
    let stored: Option<Expiring<StoredLimit>> = decode(table, LIMIT_KEY)?;
    Ok(stored.filter(|stored| alive(stored.expires_at, now)).map(|stored| stored.value).unwrap_or_default())
}

impl EmbeddedStore {
    /// Applies `change` to the stored count in one write; saves it when `change` says it changed.
    async fn change_limit<T: Send + 'static>(
        &self,
        now: DateTime<Utc>,
        mut change: impl FnMut(&mut StoredLimit) -> (bool, T) + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write(now, move |w| {
            let mut table = w.tx.open_table(LIMIT)?;
            let mut stored = load(&table, w.now)?;
            let (changed, answer) = change(&mut stored);
            if changed {
                let kept = Expiring { expires_at: w.expires_at(), value: &stored };
                table.insert(LIMIT_KEY, encode(&kept)?.as_slice())?;
                drop(table);
                w.keep();
            }
            Ok(answer)
        })
        .await
    }
}

impl Limits for EmbeddedStore {
    async fn messaging_count(&self) -> Result<MessagingCount, StoreError> {
        self.read(move |tx, now| {
            let StoredLimit { ledger, reported } = load(&tx.open_table(LIMIT)?, now)?;
            Ok(MessagingCount { ledger, reported })
        })
        .await
    }

    async fn count_contact(
        &self,
        bucket: i64,
        capacity: u32,
        neighbours: &[(i64, u32)],
        stale: &[i64],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (stale, neighbours) = (stale.to_vec(), neighbours.to_vec());
        self.change_limit(now, move |stored| {
            let count = |bucket: i64| stored.ledger.buckets.get(&bucket).copied().unwrap_or(0);
            let moved = neighbours.iter().any(|(neighbour, was)| *neighbour != bucket && count(*neighbour) != *was);
            if moved || count(bucket) >= capacity {
                return (false, false);
            }
            for old in stale.iter().filter(|old| **old != bucket) {
                stored.ledger.buckets.remove(old);
            }
            stored.ledger.add(bucket);
            (true, true)
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
