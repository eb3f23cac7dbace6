//! [`Limits`] on the embedded store: the portfolio's count and Meta's last report in one value,
//! each warming number's count in one more, changed on the one writer thread (so a contact's check and count cannot interleave with another's).

use super::*;
use crate::domain::limit::{Ledger, ReportedLimit};
use crate::store::prelude::*;
use crate::store::{CountOf, MessagingCount};

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

impl EmbeddedStore {
    /// Applies `change` to the count `of` in one write; saves it when `change` says it changed.
    async fn change_limit<T: Send + 'static>(
        &self,
        of: CountOf<'_>,
        now: DateTime<Utc>,
        mut change: impl FnMut(&mut StoredLimit) -> (bool, T) + Send + 'static,
    ) -> Result<T, StoreError> {
        let key = limit_key(of);
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

    async fn count_contact(
        &self,
        of: CountOf<'_>,
        bucket: i64,
        capacity: u32,
        neighbours: &[(i64, u32)],
        stale: &[i64],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (stale, neighbours) = (stale.to_vec(), neighbours.to_vec());
        self.change_limit(of, now, move |stored| {
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
        self.change_limit(CountOf::Portfolio, now, move |stored| {
            let newer = stored.reported.is_none_or(|recorded| recorded.at < reported.at);
            if newer {
                stored.reported = Some(reported);
            }
            (newer, newer)
        })
        .await
    }
}
